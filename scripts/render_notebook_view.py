"""Render a clip's notebook view (Transcription._repr_html_) to an HTML page, and optionally
a headless-Chromium screenshot of it, with the word at --at seconds highlighted.

    python scripts/render_notebook_view.py tests/fixtures/heldout/medium_01.flac /tmp/view.html --png /tmp/view.png

Without --model/--aligner it uses the repository's trained fixtures (tests/fixtures/tiny_asr.npz
and tiny_aligner.npz, written out to a temporary folder). --png needs Selenium (the `test`
extra) and Debian's chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="margin:16px;background:#f6f8fa">{view}</body></html>"""


def render_page(result, title: str) -> str:
    import html

    return PAGE.format(title=html.escape(title), view=result._repr_html_())


def screenshot(page: Path, png: Path, at: float | None, width: int = 1000) -> None:
    """The view's element as a PNG, the audio set to `at` seconds (its word highlighted)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from mlx_qwen_asr.testing.browser import headless_chromium

    driver = headless_chromium(width, 1200)
    try:
        driver.get(page.resolve().as_uri())
        view = driver.find_element(By.CSS_SELECTOR, ".mqa-view")
        audio = view.find_elements(By.TAG_NAME, "audio")
        if audio:
            WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].readyState", audio[0]) >= 1)
            if at is not None:
                driver.execute_script("arguments[0].currentTime = arguments[1];"
                                      "arguments[0].dispatchEvent(new Event('timeupdate'))", audio[0], at)
                WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".mqa-view .on"))
        view.screenshot(str(png))
    finally:
        driver.quit()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip", help="an audio file")
    p.add_argument("out", help="the HTML page to write")
    p.add_argument("--png", help="also write a headless-Chromium screenshot of the view here")
    p.add_argument("--model", help="a Qwen3-ASR checkpoint folder (default: the trained test fixture)")
    p.add_argument("--aligner", help="a forced-aligner folder (default: the trained test fixture)")
    p.add_argument("--no-words", action="store_true", help="segments only, no word timestamps")
    p.add_argument("--at", type=float, help="seconds into the clip to highlight in the screenshot (default: a third in)")
    args = p.parse_args(argv)
    clip = Path(args.clip)
    if not clip.is_file():
        print(f"error: {clip}: no such file", file=sys.stderr)
        return 2

    from mlx_qwen_asr import ASRModel
    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = ROOT / "tests" / "fixtures"
        model = args.model or expand_compact(fixtures / "tiny_asr.npz", Path(tmp) / "asr")
        aligner = args.aligner or expand_compact(fixtures / "tiny_aligner.npz", Path(tmp) / "aligner")
        asr = ASRModel.load(model, dtype="float32")
        result = asr.transcribe(clip, word_timestamps=not args.no_words, aligner=str(aligner))
        page = render_page(result, clip.name)
    out = Path(args.out)
    out.write_text(page, encoding="utf-8")
    print(f"{out}: {len(page.encode('utf-8')) / 1000:.1f} kB, {result.duration:.1f} s of audio, "
          f"{len(result.words or [])} timed words")
    if args.png:
        screenshot(out, Path(args.png), result.duration / 3 if args.at is None else args.at)
        print(args.png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
