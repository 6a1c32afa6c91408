"""Jupyter rendering of results: escaped text, summary line, segment table with mm:ss.s times;
the timeline view's structure, audio size and long-file links; and the view in headless
Chromium (word labels, the audio decodes, seeking highlights the word, views do not clash)."""

from mlx_qwen_asr.clock import clock_tenths
from mlx_qwen_asr.results import Segment, Transcription


def test_clock_tenths():
    assert clock_tenths(0) == "00:00.0"
    assert clock_tenths(59.96) == "01:00.0"
    assert clock_tenths(3725.25) == "62:05.2"


def test_transcription_html():
    segments = [Segment(0.0, 29.96, "<script>x</script> & co", "English", "eos"),
                Segment(29.96, 75.04, "more", "German", "length", retries=2, remedy="split")]
    html = Transcription.from_segments(segments, 75.04, {})._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt; &amp; co" in html
    assert "language English,German" in html and "01:15.0 of audio" in html and "finish length" in html
    assert "text may be incomplete" in html and "retries 2" in html
    assert html.count("<tr>") == 3   # header + two segments
    for time in ("00:00.0", "00:30.0", "01:15.0"):
        assert f"<td>{time}</td>" in html
    assert "<td>length (retries 2: split)</td>" in html


def test_segment_html():
    html = Segment(61.0, 62.5, "a < b", "English", "eos")._repr_html_()
    assert "<td>01:01.0</td><td>01:02.5</td>" in html and "a &lt; b" in html


# The timeline view (mlx_qwen_asr/notebook.py): structure, escaping, ids, audio size, long files.

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf

from mlx_qwen_asr.aligner import WordTiming
from mlx_qwen_asr.notebook_audio import EMBED_MAX_SECONDS

from support.heldout import HELDOUT

CLIP_14S = HELDOUT / "medium_01.flac"   # 14.4 s


def timed_segment(text: str, start: float, end: float) -> Segment:
    """A segment whose words (split on spaces) share its span evenly, with their text spans."""
    pieces, words, at = text.split(" "), [], 0
    step = (end - start) / len(pieces)
    for i, piece in enumerate(pieces):
        begin = text.index(piece, at)
        at = begin + len(piece)
        words.append(WordTiming(piece.strip('<>&"\',.'), start + i * step, start + (i + 0.8) * step, (begin, at)))
    return Segment(start, end, text, "English", "eos", words=words)


def tricky_result(source=None, duration=9.0) -> Transcription:
    segments = [timed_segment('a <b> & "quoted" it\'s', 0.0, 4.0), timed_segment("second part, here.", 4.5, 9.0)]
    result = Transcription.from_segments(segments, duration, {})
    result.source = source
    return result


def test_every_word_has_its_start_time_label_and_strip_label():
    result = tricky_result()
    html = result._repr_html_()
    for start, _, text in [item for s in result.segments for item in s.word_items()]:
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#x27;")
        assert f"<i>{clock_tenths(start, pad_minutes=False)}</i>{escaped}</span>" in html, text
        assert re.search(rf'<span class="q-lab" data-s="{start:.3f}"[^>]*>{re.escape(escaped)}</span>', html), text
    assert [clock_tenths(w.start, pad_minutes=False) for w in result.words] == ["0:00.0", "0:00.8", "0:01.6", "0:02.4", "0:03.2",
                                                            "0:04.5", "0:06.0", "0:07.5"]
    ticks = re.findall(r'<span class="q-tl"[^>]*>([^<]*)</span>', html)
    assert ticks == ["0:00", "0:01", "0:02", "0:03", "0:04", "0:05", "0:06", "0:07", "0:08", "0:09"]
    assert html.count('class="q-seg') == 2 and "1 · 0:00.0–0:04.0" in html


def test_text_is_escaped_everywhere():
    html = tricky_result()._repr_html_()
    assert "<b>" not in html.replace("<b>decoding", "") and '"quoted"' not in html
    assert "&lt;b&gt;" in html and "&amp;" in html and "&quot;quoted&quot;" in html
    assert html.count("<script") == 1   # the view's own script only


def test_two_views_have_their_own_ids_and_styles():
    first, second = tricky_result()._repr_html_(), tricky_result()._repr_html_()
    ids = re.findall(r'id="([^"]+)"', first + second)
    assert len(ids) == 2 and len(set(ids)) == 2
    for html, view_id in ((first, ids[0]), (second, ids[1])):
        selectors = re.findall(r"(#[\w-]+) \.q-", html)
        assert selectors and set(selectors) == {"#" + view_id}
        assert f'getElementById("{view_id}")' in html


def test_segments_only_view():
    segments = [Segment(0.0, 3.0, "x < y & z", "English", "eos"), Segment(3.0, 5.5, "tail", "English", "eos")]
    html = Transcription.from_segments(segments, 5.5, {})._repr_html_()
    assert 'class="q-w"' not in html and 'class="q-lab"' not in html
    assert '<span class="q-st" data-s="0.000" data-e="3.000">x &lt; y &amp; z</span>' in html
    assert '<span class="q-st" data-s="3.000" data-e="5.500">tail</span>' in html


def embedded_audio(html: str) -> tuple[str, bytes]:
    mime, data = re.search(r'<audio [^>]*src="data:([^;]+);base64,([^"]+)"', html).groups()
    return mime, base64.b64decode(data)


def test_14_s_clip_page_stays_small_and_its_audio_decodes():
    result = tricky_result(CLIP_14S, 14.41)
    html = result._repr_html_()
    assert len(html.encode("utf-8")) < 100_000, len(html)
    mime, data = embedded_audio(html)
    assert mime == "audio/mpeg"
    decoded, rate = sf.read(io.BytesIO(data))
    assert rate == 16000 and abs(len(decoded) / rate - 14.41) < 0.15


def test_without_an_mp3_encoder_the_audio_is_8_khz_wav(monkeypatch):
    real_write = sf.write

    def no_mp3(file, data, samplerate, *args, format=None, **kwargs):
        if format == "MP3":
            raise RuntimeError("no MP3 encoder")
        return real_write(file, data, samplerate, *args, format=format, **kwargs)

    monkeypatch.setattr(sf, "write", no_mp3)
    mime, data = embedded_audio(tricky_result(CLIP_14S, 14.41)._repr_html_())
    assert mime == "audio/wav" and sf.info(io.BytesIO(data)).samplerate == 8000


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    """A quiet FLAC one second over the embedding limit."""
    path = tmp_path_factory.mktemp("long") / "long talk.flac"
    seconds = EMBED_MAX_SECONDS + 1
    sf.write(path, np.random.default_rng(0).normal(0, 1e-3, seconds * 16000).astype(np.float32), 16000)
    return path, float(seconds)


def test_long_file_is_linked_not_embedded(long_file, monkeypatch, tmp_path):
    path, seconds = long_file
    monkeypatch.chdir(path.parent)   # the notebook's folder holds the file: a relative link
    html = tricky_result(path, seconds)._repr_html_()
    assert "data:audio" not in html and len(html) < 20_000
    assert '<audio controls preload="auto" data-delay="0.0000" src="long%20talk.flac">' in html
    assert "audio longer than 5 min, not embedded" in html and f">{path}</a>" in html
    monkeypatch.chdir(tmp_path)   # elsewhere: a file: URL
    assert f'src="{path.as_uri()}"' in tricky_result(path, seconds)._repr_html_()


def test_long_array_embeds_nothing_and_says_so():
    samples = np.zeros((EMBED_MAX_SECONDS + 1) * 16000, np.float32)
    html = tricky_result((samples, 16000), EMBED_MAX_SECONDS + 1.0)._repr_html_()
    assert "<audio" not in html and "audio longer than 5 min, not embedded" in html


# The view in a real browser (headless Debian Chromium, mlx_qwen_asr/testing/browser.py): a
# held-out clip transcribed by the trained fixture model, timed by the trained aligner.

from dataclasses import replace

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture(scope="module")
def timed_clip(trained_model, trained_aligner):
    from mlx_qwen_asr.aligner import Aligner

    aligner = Aligner.load(trained_aligner, dtype="float32")
    return trained_model.transcribe(CLIP_14S, word_timestamps=True, aligner=aligner)


@pytest.fixture(scope="module")
def chromium():
    from mlx_qwen_asr.testing.browser import headless_chromium

    driver = headless_chromium(1000, 1400)
    yield driver
    driver.quit()


def open_page(driver, tmp_path, *results):
    page = tmp_path / "view.html"
    page.write_text("<!doctype html><meta charset='utf-8'><body>" + "".join(r._repr_html_() for r in results),
                    encoding="utf-8")
    driver.get(page.as_uri())
    views = driver.find_elements(By.CSS_SELECTOR, ".mqa-view")
    for audio in driver.find_elements(By.TAG_NAME, "audio"):
        WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].readyState", audio) >= 1)
    return views


def seek(driver, view, seconds: float) -> None:
    """The audio to `seconds` on the transcript's clock (the audio's runs its codec delay ahead)."""
    driver.execute_script("var a = arguments[0].querySelector('audio');"
                          "a.currentTime = arguments[1] + (+a.dataset.delay);"
                          "a.dispatchEvent(new Event('timeupdate'))", view, seconds)


def audio_clock(driver, view) -> float:
    return driver.execute_script("var a = arguments[0].querySelector('audio');"
                                 "return a.currentTime - (+a.dataset.delay)", view)


def highlighted(view, css: str) -> list[str]:
    return [e.text for e in view.find_elements(By.CSS_SELECTOR, css + ".on")]


def test_browser_shows_word_times_decodes_audio_and_highlights_the_word(chromium, timed_clip, tmp_path):
    items = [item for s in timed_clip.segments for item in s.word_items()]
    assert len(items) == len(timed_clip.text.split()) > 10
    [view] = open_page(chromium, tmp_path, timed_clip)
    words = view.find_elements(By.CSS_SELECTOR, ".q-w")
    assert [w.text for w in words] == [f"{clock_tenths(start, pad_minutes=False)}\n{text}" for start, _, text in items]
    assert all(w.is_displayed() and w.size["height"] > 20 for w in words)
    assert [e.text for e in view.find_elements(By.CSS_SELECTOR, ".q-tl")][:3] == ["0:00", "0:02", "0:04"]
    duration = chromium.execute_script("return arguments[0].querySelector('audio').duration", view)
    assert abs(duration - timed_clip.duration) < 0.15, duration

    for k in (0, len(items) // 2, len(items) - 1):
        start, end, text = items[k]
        seek(chromium, view, (start + end) / 2)
        WebDriverWait(chromium, 5).until(lambda d: highlighted(view, ".q-w") == [f"{clock_tenths(start, pad_minutes=False)}\n{text}"])
        assert highlighted(view, ".q-lab") == [text]
        assert len(highlighted(view, ".q-seg")) == 1

    start, _, text = items[3]   # a click plays from the word's start
    view.find_elements(By.CSS_SELECTOR, ".q-w")[3].click()
    WebDriverWait(chromium, 5).until(lambda d: start - 0.01 <= audio_clock(d, view) < start + 2)
    chromium.save_screenshot(str(tmp_path / "view.png"))


def test_browser_two_views_and_a_segments_only_view(chromium, timed_clip, tmp_path):
    untimed = replace(timed_clip, segments=[replace(s, words=None) for s in timed_clip.segments])
    first, second = open_page(chromium, tmp_path, timed_clip, untimed)
    assert not second.find_elements(By.CSS_SELECTOR, ".q-w")
    start, end, text = timed_clip.segments[0].word_items()[2]
    seek(chromium, second, (start + end) / 2)
    WebDriverWait(chromium, 5).until(lambda d: highlighted(second, ".q-st") == [timed_clip.segments[0].text])
    assert highlighted(first, ".q-w") == []   # the other view's audio did not move
    seek(chromium, first, (start + end) / 2)
    WebDriverWait(chromium, 5).until(lambda d: highlighted(first, ".q-lab") == [text])


def test_browser_plays_the_input_in_step_with_the_view(chromium, tmp_path):
    """Chromium's decoding of the embedded audio, shifted by the view's delay, starts where
    the input does (MP3 plays its codec delay first; the view's clock allows for it)."""
    from mlx_qwen_asr.audio.load import load_audio

    [view] = open_page(chromium, tmp_path, tricky_result(CLIP_14S, 14.41))
    chromium.set_script_timeout(30)
    decoded = chromium.execute_async_script("""
        var done = arguments[arguments.length - 1], a = arguments[0].querySelector('audio');
        fetch(a.src).then(r => r.arrayBuffer())
          .then(b => new OfflineAudioContext(1, 16000 * 20, 16000).decodeAudioData(b))
          .then(buf => done({delay: +a.dataset.delay, head: Array.from(buf.getChannelData(0).slice(0, 70000))}),
                e => done({error: String(e)}));""", view)
    assert "error" not in decoded, decoded
    head, probe = np.array(decoded["head"], np.float32), load_audio(CLIP_14S)[:64000]
    lag = int(np.argmax([np.dot(probe, head[k:k + len(probe)]) for k in range(len(head) - len(probe))]))
    assert abs(lag - decoded["delay"] * 16000) <= 16, (lag, decoded["delay"])   # within 1 ms


def test_browser_playing_moves_the_highlight_along(chromium, timed_clip, tmp_path):
    items = [item for s in timed_clip.segments for item in s.word_items()]
    [view] = open_page(chromium, tmp_path, timed_clip)
    view.find_elements(By.CSS_SELECTOR, ".q-w")[2].click()   # plays (muted) from the third word
    later = {text for _, _, text in items[3:6]}
    WebDriverWait(chromium, 10).until(lambda d: set(highlighted(view, ".q-lab")) & later)
    chromium.execute_script("arguments[0].querySelector('audio').pause()", view)
    head = view.find_element(By.CSS_SELECTOR, ".q-head")
    assert head.is_displayed() and float(head.value_of_css_property("left").rstrip("px")) > 0
