"""Render a clip's notebook view (Transcription._repr_html_) to an HTML page, and optionally
a headless-Chromium screenshot of it, with the word at --at seconds highlighted.

    python scripts/render_notebook_view.py tests/fixtures/heldout/medium_01.flac /tmp/view.html --png /tmp/view.png

    python scripts/render_notebook_view.py CLIP /tmp/view.html --compare-codecs

--compare-codecs prints, for MP3 at several bitrates, Ogg Opus and 8 kHz WAV, the embedded
size and how close the decoded audio stays: log-spectral distance to the input (dB, 0-8 kHz)
and the word error rate of the model's transcript of the decoded audio against the input's.

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
                driver.execute_script("arguments[0].currentTime = arguments[1] + (+arguments[0].dataset.delay);"
                                      "arguments[0].dispatchEvent(new Event('timeupdate'))", audio[0], at)
                WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".mqa-view .on"))
        view.screenshot(str(png))
    finally:
        driver.quit()


def encode(samples, codec: str) -> bytes:
    """`samples` (16 kHz) as one of the candidate embeddings."""
    import io

    import soundfile as sf

    from mlx_qwen_asr.audio.resample import resample

    buffer = io.BytesIO()
    kind, _, setting = codec.partition(":")
    if kind == "mp3":
        sf.write(buffer, samples, 16000, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=float(setting), bitrate_mode="CONSTANT")
    elif kind == "opus":
        sf.write(buffer, samples, 16000, format="OGG", subtype="OPUS", compression_level=float(setting))
    else:
        sf.write(buffer, resample(samples, 16000, int(setting)), int(setting), format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def log_spectral_distance(reference, decoded) -> float:
    """RMS difference of the two log power spectra (dB, 32 ms frames, floor 60 dB under the
    loudest bin) where the input is not silent, after undoing the codec's delay."""
    import numpy as np

    probe = reference[: 16000 * 4]
    lags = [float(np.dot(probe, decoded[lag:lag + len(probe)])) if lag + len(probe) <= len(decoded) else -1e18
            for lag in range(0, 3000)]
    decoded = decoded[int(np.argmax(lags)):]
    n = min(len(reference), len(decoded)) // 512 * 512

    def spectra(x):
        frames = x[:n].reshape(-1, 512) * np.hanning(512)
        return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10)

    ref, dec = spectra(reference), spectra(decoded)
    floor = ref.max() - 60
    ref, dec = np.maximum(ref, floor), np.maximum(dec, floor)
    loud = ref.max(axis=1) > ref.max() - 50
    return float(np.sqrt(((ref[loud] - dec[loud]) ** 2).mean()))


def compare_codecs(asr, clip: Path) -> None:
    import base64
    import io

    import soundfile as sf

    from mlx_qwen_asr.audio.load import load_audio
    from mlx_qwen_asr.notebook_audio import MP3_LEVEL
    from mlx_qwen_asr.testing.wer import wer

    samples = load_audio(clip)
    reference = asr.transcribe(samples, sample_rate=16000).text
    print(f"{clip.name}: {len(samples) / 16000:.1f} s; transcript of the input: {reference!r}")
    print(f"{'codec':<22}{'bytes':>8}{'base64 kB':>11}{'kbit/s':>8}{'LSD dB':>8}{'WER vs input':>14}")
    for codec in ("mp3:0.85", f"mp3:{MP3_LEVEL}", "mp3:0.95", "opus:0.9", "wav:8000", "wav:16000"):
        data = encode(samples, codec)
        decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
        decoded = load_audio((decoded, rate))
        text = asr.transcribe(decoded, sample_rate=16000).text
        name = codec + (" (used)" if codec == f"mp3:{MP3_LEVEL}" else "")
        print(f"{name:<22}{len(data):>8}{len(base64.b64encode(data)) / 1000:>11.1f}"
              f"{len(data) * 8 / (len(samples) / 16000) / 1000:>8.1f}{log_spectral_distance(samples, decoded):>8.2f}"
              f"{wer([reference], [text]):>14.3f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", help="an audio file")
    p.add_argument("out", help="the HTML page to write")
    p.add_argument("--png", help="also write a headless-Chromium screenshot of the view here")
    p.add_argument("--model", help="a Qwen3-ASR checkpoint folder (default: the trained test fixture)")
    p.add_argument("--aligner", help="a forced-aligner folder (default: the trained test fixture)")
    p.add_argument("--no-words", action="store_true", help="segments only, no word timestamps")
    p.add_argument("--compare-codecs", action="store_true", help="print the size and fidelity of candidate codecs")
    p.add_argument("--at", type=float, help="seconds into the clip to highlight in the screenshot (default: a third in)")
    args = p.parse_args(argv)
    clip = Path(args.clip)
    if not clip.is_file():
        print(f"error: {clip}: no such file", file=sys.stderr)
        return 2

    from mlx_qwen_asr import ASRModel
    from mlx_qwen_asr.errors import QwenASRError, SetupError
    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

    with tempfile.TemporaryDirectory() as tmp:
        fixtures = ROOT / "tests" / "fixtures"
        model = args.model or expand_compact(fixtures / "tiny_asr.npz", Path(tmp) / "asr")
        aligner = args.aligner or expand_compact(fixtures / "tiny_aligner.npz", Path(tmp) / "aligner")
        try:
            asr = ASRModel.load(model, dtype="float32")
            if args.compare_codecs:
                compare_codecs(asr, clip)
            result = asr.transcribe(clip, word_timestamps=not args.no_words, aligner=str(aligner))
        except QwenASRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, SetupError) else 1
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
