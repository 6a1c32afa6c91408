"""Jupyter rendering of results: escaped text, summary line, segment table with mm:ss.s times."""

from mlx_qwen_asr.results import Segment, Transcription, format_clock


def test_format_clock():
    assert format_clock(0) == "00:00.0"
    assert format_clock(59.96) == "01:00.0"
    assert format_clock(3725.25) == "62:05.2"


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
