"""Timing a transcript you already have: text (or the text of an .srt/.vtt) + audio -> a
Transcription whose words carry the aligner's times, ready for any writer.

    result = align_transcription("talk.wav", "Hello world. How are you?")
    write_outputs(result, "talk", ["srt"])

An existing subtitle file's own times are dropped: only its text is aligned again, so cues
that drifted or were timed by hand come out on the audio's word times.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .aligner import DEFAULT_ALIGNER, aligner_name, get_aligner
from .audio.load import SAMPLE_RATE, load_audio
from .errors import OptionError, SetupError
from .languages import normalize_language
from .results import FINISH_EOS, Segment, Transcription, join_texts

SUBTITLE_SUFFIXES = (".srt", ".vtt")
# A --align value ending so (or a single word holding a path separator) names a file.
TRANSCRIPT_SUFFIXES = (".txt", ".text", ".md", ".srt", ".vtt", ".ass", ".ssa", ".sub", ".lrc", ".json", ".tsv")
_TIMING_LINE = re.compile(r"^\s*(\d+:)?\d+:\d+[.,]\d+\s*-->")
_TAG = re.compile(r"<[^>]*>")


def subtitle_text(content: str) -> str:
    """The spoken text of an SRT or WebVTT file: cue payloads joined, numbers, timing
    lines, headers, NOTE/STYLE blocks and markup tags dropped."""
    texts = []
    for block in re.split(r"\n\s*\n", content.replace("\r\n", "\n").replace("\r", "\n").strip()):
        lines = block.split("\n")
        timing = next((i for i, line in enumerate(lines) if _TIMING_LINE.match(line)), None)
        if timing is None:
            continue  # WEBVTT header, NOTE, STYLE, REGION: no timing line, no cue text
        for line in lines[timing + 1:]:
            line = _TAG.sub("", line).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
            if line:
                texts.append(line)
    return join_texts(texts)


def read_transcript(text_or_file: str) -> str:
    """`--align`'s argument: a path to a text/.srt/.vtt file, or the transcript itself.
    Raises a SetupError (OptionError) for a file that cannot be read or holds no text."""
    path = Path(text_or_file)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a long text is no valid path
        is_file = False
    if not is_file and _looks_like_a_path(str(text_or_file)):
        raise OptionError(f"--align: {text_or_file}: no such file (to align words, give the transcript text)")
    if not is_file:
        text = " ".join(str(text_or_file).split())
        if not text:
            raise OptionError("--align: the transcript is empty")
        return text
    try:
        content = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"--align: cannot read {path}: {exc}") from None
    text = subtitle_text(content) if path.suffix.lower() in SUBTITLE_SUFFIXES else " ".join(content.split())
    if not text:
        raise OptionError(f"--align: {path} holds no transcript text")
    return text


def _looks_like_a_path(text: str) -> bool:
    """A missing file rather than a transcript: a text/subtitle extension, or one word with a
    path separator (`notes/talk`); transcripts have spaces and no such endings."""
    text = text.strip()
    if Path(text).suffix.lower() in TRANSCRIPT_SUFFIXES:
        return True
    return not any(ch.isspace() for ch in text) and ("/" in text or os.sep in text)


def align_transcription(audio, text: str, language: str | None = None, *, aligner=DEFAULT_ALIGNER,
                        sample_rate: int | None = None, dtype=None) -> Transcription:
    """`text` aligned to `audio` (a path, or an array with `sample_rate`): one segment over
    the whole audio, its words timed by the forced aligner (`aligner`: hub id, directory or
    a loaded Aligner)."""
    import time

    language = normalize_language(language)
    aligner = get_aligner(aligner_name(aligner), dtype)
    start = time.perf_counter()
    samples = load_audio(audio, sample_rate)
    loaded = time.perf_counter()
    text = " ".join(str(text).split())
    words = aligner.align_samples(samples, text, language)
    duration = len(samples) / SAMPLE_RATE
    segment = Segment(0.0, duration, text, language or "", FINISH_EOS, words=words)
    timings = {"load": loaded - start, "align": time.perf_counter() - loaded}
    result = Transcription.from_segments([segment], duration, timings)
    result.source = audio if sample_rate is None else (audio, sample_rate)
    return result
