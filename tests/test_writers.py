"""Output files: exact txt/srt/vtt/tsv content, json keys, cue wrapping, atomic writes."""

import json

import pytest

from mlx_qwen_asr import writers
from mlx_qwen_asr.clock import clock_millis
from mlx_qwen_asr.results import Segment, Transcription
from mlx_qwen_asr.writers import (atomic_write, build_cues, parse_formats, to_string, wrap,
                                  write_outputs)

LONG = ("And so my fellow Americans, ask not what your country can do for you, ask what you can do "
        "for your country. We choose to go to the moon.")


def sample() -> Transcription:
    segments = [
        Segment(0.0, 2.5, "Hello there.", "English", "eos", tokens=[1, 2]),
        Segment(2.5, 29.9996, LONG, "English", "length", tokens=[3], retries=1, remedy="repetition_penalty"),
        Segment(29.9996, 31.0, "", "", "silence"),
        Segment(3661.0, 3662.25, "我们选择登月。", "Chinese", "eos", tokens=[4]),
    ]
    return Transcription.from_segments(segments, 3662.25, {"encoder": 0.5, "decode": 1.25})


def test_timestamps():
    assert clock_millis(0) == "00:00:00.000"
    assert clock_millis(3661.0006, ",") == "01:01:01,001"
    assert clock_millis(29.9996) == "00:00:30.000"   # rounds to the millisecond, carrying over
    assert clock_millis(-0.0001) == "00:00:00.000"


def test_wrap_fits_two_lines_when_possible_and_never_exceeds_width():
    assert wrap("Hello there.") == ["Hello there."]
    two = "The quick brown fox jumps over the lazy dog and keeps on running far away"
    assert len(two) <= 84 and len(wrap(two)) == 2
    lines = wrap(LONG)
    assert len(lines) == 4 and all(len(line) <= 42 for line in lines)
    assert " ".join(lines) == LONG
    # CJK is two columns a character and breaks between characters, without spaces.
    cjk = wrap("我们选择在这个十年登上月球，不是因为它们容易，而是因为它们困难。")
    assert "".join(cjk) == "我们选择在这个十年登上月球，不是因为它们容易，而是因为它们困难。"
    assert [len(line) for line in cjk] == [21, 11]
    assert wrap("x" * 50 + " y") == ["x" * 50, "y"]   # an over-long word keeps its own line


def test_cues_one_per_segment_and_joined_only_when_asked():
    items = [(0.0, 1.0, "one"), (1.0, 2.0, "two"), (2.0, 2.5, "  "), (2.5, 9.5, "three")]
    assert [(c.start, c.end, c.lines) for c in build_cues(items)] == [
        (0.0, 1.0, ["one"]), (1.0, 2.0, ["two"]), (2.5, 9.5, ["three"])]
    joined = build_cues(items, join_seconds=7.0)   # how word items will be grouped
    assert [(c.start, c.end, c.lines) for c in joined] == [(0.0, 2.0, ["one two"]), (2.5, 9.5, ["three"])]


def test_srt_exact():
    assert to_string(sample(), "srt") == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n"
        "2\n00:00:02,500 --> 00:00:30,000\n"
        "And so my fellow Americans, ask not what\nyour country can do for you, ask what you\n"
        "can do for your country. We choose to go\nto the moon.\n\n"
        "3\n01:01:01,000 --> 01:01:02,250\n我们选择登月。\n\n"
    )


def test_vtt_exact_and_escaped():
    assert to_string(sample(), "vtt") == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nHello there.\n\n"
        "00:00:02.500 --> 00:00:30.000\n"
        "And so my fellow Americans, ask not what\nyour country can do for you, ask what you\n"
        "can do for your country. We choose to go\nto the moon.\n\n"
        "01:01:01.000 --> 01:01:02.250\n我们选择登月。\n\n"
    )
    odd = Transcription.from_segments([Segment(0, 1, "a <b> & c --> d", "English", "eos")], 1.0, {})
    assert to_string(odd, "vtt").splitlines()[3] == "a &lt;b> &amp; c --&gt; d"


def test_tsv_and_txt_exact():
    assert to_string(sample(), "tsv") == (
        "start\tend\ttext\n0\t2500\tHello there.\n2500\t30000\t" + LONG + "\n3661000\t3662250\t我们选择登月。\n")
    assert to_string(sample(), "txt") == "Hello there.\n" + LONG + "\n我们选择登月。\n"
    tabbed = Transcription.from_segments([Segment(0, 1, "a\tb\nc", "English", "eos")], 1.0, {})
    assert to_string(tabbed, "tsv").splitlines()[1] == "0\t1000\ta b c"


def test_json_has_everything():
    data = json.loads(to_string(sample(), "json", input="talks/a.wav", model="Qwen/Qwen3-ASR-0.6B",
                                options={"segment_seconds": 30.0}))
    assert data["input"] == "talks/a.wav" and data["model"] == "Qwen/Qwen3-ASR-0.6B"
    assert data["options"] == {"segment_seconds": 30.0}
    assert data["language"] == "English,Chinese" and data["languages"] == ["English", "Chinese"]
    assert data["duration"] == 3662.25 and data["finish_reason"] == "length"
    assert data["finish_reasons"] == {"eos": 2, "length": 1, "silence": 1}
    assert data["truncated"] is True and data["retries"] == 1
    assert data["timings"] == {"encoder": 0.5, "decode": 1.25}
    assert data["text"] == sample().text
    second = data["segments"][1]
    assert set(second) >= {"start", "end", "text", "language", "finish_reason", "retries", "remedy", "truncated"}
    assert (second["start"], second["end"], second["retries"], second["remedy"], second["truncated"]) == (
        2.5, 30.0, 1, "repetition_penalty", True)
    assert [s["text"] for s in data["segments"]] == [s.text for s in sample().segments]


def test_parse_formats():
    assert parse_formats("all") == ("txt", "json", "srt", "vtt", "tsv")
    assert parse_formats(["vtt,srt", "SRT", ".txt"]) == ("txt", "srt", "vtt")
    with pytest.raises(ValueError, match="unknown output format 'docx'"):
        parse_formats("txt,docx")


def test_write_outputs_creates_folders(tmp_path):
    paths = write_outputs(sample(), tmp_path / "day1" / "a", ["txt", "srt"])
    assert [p.name for p in paths] == ["a.txt", "a.srt"]
    assert (tmp_path / "day1" / "a.txt").read_text(encoding="utf-8") == to_string(sample(), "txt")
    assert sorted(p.name for p in (tmp_path / "day1").iterdir()) == ["a.srt", "a.txt"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "a.srt"
    target.write_text("old complete output\n")

    def failing_writer(result, file, **_):
        file.write("1\n00:00:00,000 --> ")
        file.flush()
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(writers.WRITERS, "srt", failing_writer)
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_write(target) as file:
            writers.WRITERS["srt"](sample(), file)
    assert target.read_text() == "old complete output\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.srt"]   # no temp file left behind

    with pytest.raises(KeyboardInterrupt):   # an interrupt, too, leaves nothing half-written
        with atomic_write(tmp_path / "new.txt") as file:
            file.write("half")
            raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["a.srt"]

    with atomic_write(target) as file:
        file.write("new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["a.srt"]
