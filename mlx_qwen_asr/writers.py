"""Writing a Transcription to files: txt, json, srt, vtt, tsv, and rttm (speaker turns).

Subtitle cue times come only from real boundaries: the segments' start and end, or with
word timestamps the words' (`word_phrases` groups words into phrases that end at a pause,
after sentence punctuation, or before outgrowing the lines or seconds a cue may hold).
`build_cues` takes (start, end, text) items and never invents a time inside an item: each
one is a cue, its text wrapped into lines of at most 42 columns; a segment whose text
needs more than 2 such lines (a ~30 s segment of fast speech can need 10) stays one cue
with that many lines rather than being split at made-up times. Those limits are
`CueShape`'s defaults (the CLI's --max-line-width, --max-line-count, --max-cue-seconds).

Every file is written atomically (`atomic_write`): a temporary file in the same directory,
flushed to disk, then renamed over the target, so a reader never sees half an output and a
failure leaves the previous file as it was.
"""

from __future__ import annotations

import io
import json
import os
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .clock import clock_centis, clock_millis
from .errors import OptionError
from .results import Transcription, join_pair, join_texts
from .word_split import is_cjk_script

FORMATS = ("txt", "json", "srt", "vtt", "tsv", "rttm")
# What "all" writes: every transcript format (rttm, speaker turns only, needs diarization).
ALL_FORMATS = ("txt", "json", "srt", "vtt", "tsv")
# Common subtitle guidance (Netflix, BBC): about 42 characters a line, two lines a cue.
MAX_LINE_WIDTH = 42
MAX_LINES = 2


def parse_formats(spec: str | Iterable[str]) -> tuple[str, ...]:
    """'srt,vtt' or ['txt', 'json'] or 'all' -> formats in FORMATS order, without duplicates."""
    names = [spec] if isinstance(spec, str) else list(spec)
    wanted = set()
    for name in names:
        for part in str(name).split(","):
            part = part.strip().lower().lstrip(".")
            if part == "all":
                wanted.update(ALL_FORMATS)
            elif part in FORMATS:
                wanted.add(part)
            elif part:
                raise OptionError(f"unknown output format {part!r}; choose from: {', '.join(FORMATS)}, all")
    if not wanted:
        raise OptionError(f"no output format given; choose from: {', '.join(FORMATS)}, all")
    return tuple(f for f in FORMATS if f in wanted)


# --- cues -------------------------------------------------------------------------------

@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]


def _char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _width(text: str) -> int:
    return sum(_char_width(c) for c in text)


def _units(text: str) -> Iterator[tuple[str, bool]]:
    """Breakable pieces of text and whether a space precedes them: words, and single CJK
    characters (which break anywhere and join without spaces)."""
    for match in re.finditer(r"(\s*)(\S+)", text):
        spaced = bool(match.group(1))
        run = ""
        for char in match.group(2):
            if not is_cjk_script(char):
                run += char
                continue
            for piece in (run, char):
                if piece:
                    yield piece, spaced
                    spaced = False
            run = ""
        if run:
            yield run, spaced


def wrap(text: str, max_width: int = MAX_LINE_WIDTH) -> list[str]:
    """Greedy wrap into the fewest lines of at most `max_width` columns (CJK counts 2).
    A single word wider than that gets a line of its own."""
    lines: list[str] = []
    line = ""
    for unit, spaced in _units(text):
        joined = line + (" " if spaced and line else "") + unit
        if line and _width(joined) > max_width:
            lines.append(line)
            line = unit
        else:
            line = joined
    if line:
        lines.append(line)
    return lines


def build_cues(items: Iterable[tuple[float, float, str]], max_width: int = MAX_LINE_WIDTH,
               max_lines: int = MAX_LINES, join_seconds: float = 0.0) -> list[Cue]:
    """Cues from (start, end, text) items, in order; empty texts are dropped. With the
    default `join_seconds=0` every item is its own cue."""
    cues: list[Cue] = []
    current: tuple[float, float, str] | None = None
    for start, end, text in items:
        text = " ".join(str(text).split())
        if not text:
            continue
        if current is not None:
            joined = join_pair(current[2], text)
            if end - current[0] <= join_seconds and len(wrap(joined, max_width)) <= max_lines:
                current = (current[0], end, joined)
                continue
            cues.append(Cue(current[0], current[1], wrap(current[2], max_width)))
        current = (start, end, text)
    if current is not None:
        cues.append(Cue(current[0], current[1], wrap(current[2], max_width)))
    return cues


# Word-timed cues: a phrase ends at a pause, after sentence punctuation, or before it would
# outgrow two lines or this many seconds.
MAX_CUE_SECONDS = 7.0
PAUSE_SECONDS = 0.6
SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
CLAUSE_END = (",", ";", ":", "，", "；", "：", "、")


@dataclass(frozen=True)
class CueShape:
    """How subtitle cues (and the terminal's timed lines) are shaped. Widths are in columns:
    a CJK character counts 2. `max_cue_seconds` needs word times: segment cues last as
    long as their segment."""
    max_line_width: int = MAX_LINE_WIDTH
    max_line_count: int = MAX_LINES
    max_cue_seconds: float = MAX_CUE_SECONDS

    def __post_init__(self):
        if not (isinstance(self.max_line_width, int) and self.max_line_width >= 1):
            raise OptionError(f"max_line_width must be a whole number of columns >= 1, got {self.max_line_width!r}")
        if not (isinstance(self.max_line_count, int) and self.max_line_count >= 1):
            raise OptionError(f"max_line_count must be a whole number of lines >= 1, got {self.max_line_count!r}")
        if not self.max_cue_seconds > 0:
            raise OptionError(f"max_cue_seconds must be above 0, got {self.max_cue_seconds!r}")


def cue_items(result: Transcription, shape: CueShape | None = None) -> list[tuple[float, float, str]]:
    """Cue items: phrases of timed words when there are word timestamps, else segments."""
    shape = shape or CueShape()
    if result.words is None:
        return [(s.start, s.end, s.text) for s in result.segments]
    return word_phrases([item for s in result.segments for item in s.word_items()], shape.max_line_width,
                        shape.max_line_count, shape.max_cue_seconds)


def shaped_cues(result: Transcription, shape: CueShape | None = None) -> list[Cue]:
    shape = shape or CueShape()
    return build_cues(cue_items(result, shape), shape.max_line_width, shape.max_line_count)


def speaker_cues(result: Transcription, shape: CueShape | None = None) -> list[tuple[str | None, Cue]]:
    """(speaker, cue) of a diarized result: cues never span two speakers' turns."""
    shape = shape or CueShape()
    cues = []
    for speaker, segments in speaker_runs(result):
        part = Transcription.from_segments(segments, result.duration, {})
        cues += [(speaker, cue) for cue in shaped_cues(part, shape)]
    return cues


def speaker_runs(result: Transcription) -> list[tuple[str | None, list]]:
    """Consecutive segments of one speaker, grouped (segments are split per speaker)."""
    runs: list[tuple[str | None, list]] = []
    for segment in result.segments:
        if runs and runs[-1][0] == segment.speaker:
            runs[-1][1].append(segment)
        else:
            runs.append((segment.speaker, [segment]))
    return runs


def timed_lines(result: Transcription, shape: CueShape | None = None) -> list[str]:
    """`[00:01.20 --> 00:03.50] text` per phrase (per segment without word times)."""
    lines = []
    for start, end, text in cue_items(result, shape):
        text = " ".join(str(text).split())
        if text:
            lines.append(f"[{clock_centis(start)} --> {clock_centis(end)}] {text}")
    return lines


def word_phrases(words: list[tuple[float, float, str]], max_width: int = MAX_LINE_WIDTH,
                 max_lines: int = MAX_LINES, max_seconds: float = MAX_CUE_SECONDS,
                 pause: float = PAUSE_SECONDS) -> list[tuple[float, float, str]]:
    """Readable phrases from (start, end, text) words, every time a real word time."""
    phrases: list[tuple[float, float, str]] = []
    current: tuple[float, float, str] | None = None
    for start, end, text in words:
        if not text:
            continue
        if current is not None:
            joined = join_pair(current[2], text)
            breaks = (start - current[1] > pause
                      or current[2].endswith(SENTENCE_END)
                      or end - current[0] > max_seconds
                      or len(wrap(joined, max_width)) > max_lines
                      or (current[2].endswith(CLAUSE_END) and _width(joined) > max_width))
            if not breaks:
                current = (current[0], end, joined)
                continue
            phrases.append(current)
        current = (start, end, text)
    if current is not None:
        phrases.append(current)
    return phrases


# --- writers: each writes one format to an open text file ---------------------------------

def write_txt(result: Transcription, file: TextIO, **_) -> None:
    """One line per segment (segments are ~30 s: lines read as paragraphs); diarized, one
    line per speaker turn, `SPEAKER_1: text`."""
    if result.speaker_turns is not None:
        for speaker, segments in speaker_runs(result):
            text = " ".join(join_texts([s.text for s in segments]).split())
            if text:
                file.write(f"{speaker}: {text}\n" if speaker else text + "\n")
        return
    for segment in result.segments:
        text = " ".join(segment.text.split())
        if text:
            file.write(text + "\n")


def write_srt(result: Transcription, file: TextIO, shape: CueShape | None = None, **_) -> None:
    if result.speaker_turns is not None:   # diarized: "[SPEAKER_1] " opens each cue
        for index, (speaker, cue) in enumerate(speaker_cues(result, shape), start=1):
            lines = [f"[{speaker}] " + cue.lines[0]] + cue.lines[1:] if speaker else cue.lines
            file.write(f"{index}\n{clock_millis(cue.start, ',')} --> {clock_millis(cue.end, ',')}\n")
            file.write("\n".join(lines) + "\n\n")
        return
    for index, cue in enumerate(shaped_cues(result, shape), start=1):
        file.write(f"{index}\n{clock_millis(cue.start, ',')} --> {clock_millis(cue.end, ',')}\n")
        file.write("\n".join(cue.lines) + "\n\n")


def write_vtt(result: Transcription, file: TextIO, shape: CueShape | None = None, **_) -> None:
    file.write("WEBVTT\n\n")
    cues = speaker_cues(result, shape) if result.speaker_turns is not None else [(None, c) for c in shaped_cues(result, shape)]
    for speaker, cue in cues:
        # "-->" may not appear in a WebVTT cue payload; "&" and "<" must be escaped.
        lines = [line.replace("&", "&amp;").replace("<", "&lt;").replace("-->", "--&gt;") for line in cue.lines]
        if speaker:   # a voice tag: the cue's speaker
            lines[0] = f"<v {speaker.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}>" + lines[0]
        file.write(f"{clock_millis(cue.start)} --> {clock_millis(cue.end)}\n")
        file.write("\n".join(lines) + "\n\n")


def write_tsv(result: Transcription, file: TextIO, **_) -> None:
    """Like whisper's: integer milliseconds, one row per segment (per word when words are
    timed), tabs in text made spaces."""
    if result.speaker_turns is not None:   # diarized: a speaker column
        file.write("start\tend\tspeaker\ttext\n")
        items = ([(*item, w.speaker) for s in result.segments for item, w in zip(s.word_items(), s.words)]
                 if result.words is not None else [(s.start, s.end, s.text, s.speaker) for s in result.segments])
        for start, end, text, speaker in items:
            text = " ".join(text.split())
            if text:
                file.write(f"{int(round(start * 1000))}\t{int(round(end * 1000))}\t{speaker or ''}\t{text}\n")
        return
    file.write("start\tend\ttext\n")
    items = ([item for s in result.segments for item in s.word_items()] if result.words is not None
             else [(s.start, s.end, s.text) for s in result.segments])
    for start, end, text in items:
        text = " ".join(text.split())
        if text:
            file.write(f"{int(round(start * 1000))}\t{int(round(end * 1000))}\t{text}\n")


def result_dict(result: Transcription, *, input: str | None = None, model: str | None = None,
                options: dict | None = None) -> dict:
    """Everything known about a transcription, JSON-ready."""
    segments = [
        {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text, "language": s.language,
         "finish_reason": s.finish_reason, "truncated": s.truncated, "retries": s.retries, "remedy": s.remedy,
         "tokens": list(s.tokens), "raw": s.raw, **confidence_fields(s),
         **({"words": [{"word": text, "start": round(start, 3), "end": round(end, 3),
                        **({"probability": _rounded(w.probability)} if w.probability is not None else {})}
                       for (start, end, text), w in zip(s.word_items(), s.words)]} if s.words is not None else {})}
        for i, s in enumerate(result.segments)
    ]
    languages = []
    for s in result.segments:
        if s.language and s.language not in languages:
            languages.append(s.language)
    return {
        "input": input,
        "model": model,
        "options": options or {},
        "text": result.text,
        "language": result.language,
        "languages": languages,
        "duration": round(result.duration, 3),
        "finish_reason": result.finish_reason,
        "finish_reasons": dict(Counter(s.finish_reason for s in result.segments)),
        "truncated": result.truncated,
        "retries": result.retries,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "segments": segments,
        **(_speaker_fields(result, segments) if result.speaker_turns is not None else {}),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def confidence_fields(segment) -> dict:
    """A segment's confidence (confidence.py) as JSON: per token log-probabilities, Whisper's
    avg_logprob and no_speech_prob, and each word's probability."""
    return {"logprobs": [_rounded(lp) for lp in segment.logprobs], "avg_logprob": _rounded(segment.avg_logprob),
            "no_speech_prob": _rounded(segment.no_speech_prob),
            "word_probabilities": [{"word": w.word, "probability": _rounded(w.probability)}
                                   for w in segment.word_probabilities or []]}


def _speaker_fields(result: Transcription, segments: list[dict]) -> dict:
    """Diarized: the speaker of each segment and word (added to `segments` in place), the
    speakers heard and their turns."""
    for row, segment in zip(segments, result.segments):
        row["speaker"] = segment.speaker
        for word_row, word in zip(row.get("words", []), segment.words or []):
            word_row["speaker"] = word.speaker
    return {"speakers": result.speakers,
            "speaker_turns": [{"speaker": t.speaker, "start": round(t.start, 3), "end": round(t.end, 3)}
                              for t in result.speaker_turns]}


def write_json(result: Transcription, file: TextIO, shape: CueShape | None = None, **metadata) -> None:
    json.dump(result_dict(result, **metadata), file, ensure_ascii=False, indent=2)
    file.write("\n")


def write_rttm(result: Transcription, file: TextIO, input: str | None = None, **_) -> None:
    """NIST RTTM: one SPEAKER line per turn (what diarization scorers read); the file id is
    the input's name without folder and extension."""
    if result.speaker_turns is None:
        raise OptionError("rttm holds speaker turns: transcribe with diarization (--diarize)")
    name = Path(input).stem if input and input != "-" else "stdin" if input == "-" else "audio"
    name = "_".join(name.split()) or "audio"
    for turn in result.speaker_turns:
        file.write(f"SPEAKER {name} 1 {turn.start:.3f} {turn.end - turn.start:.3f} <NA> <NA> "
                   f"{'_'.join(turn.speaker.split())} <NA> <NA>\n")


WRITERS = {"txt": write_txt, "json": write_json, "srt": write_srt, "vtt": write_vtt, "tsv": write_tsv,
           "rttm": write_rttm}


def to_string(result: Transcription, fmt: str, **metadata) -> str:
    buffer = io.StringIO()
    WRITERS[fmt](result, buffer, **metadata)
    return buffer.getvalue()


# --- files ---------------------------------------------------------------------------------

# Temporary files are hidden, next to their target: `.NAME.<8 hex>.tmp`. A run killed
# mid-write (SIGKILL, power loss) leaves one behind; `remove_stale_temps` clears them.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def _temp_file(temp: Path) -> Iterator[TextIO]:
    """A new file opened for text; flushed to disk on success, removed on any error."""
    # os.open with 0o666 lets the umask decide the mode, as for a plainly created file.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[TextIO]:
    """Open a temporary file next to `path` for writing text; on success it replaces `path`,
    on any error it is removed and `path` is left untouched."""
    path = Path(path)
    temp = _temp_path(path)
    with _temp_file(temp) as file:
        yield file
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporary files earlier runs left under `folder` when they were killed
    mid-write; returns how many. Call it only while no other run writes there (folder.py
    holds the output folder's lock)."""
    removed = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            if TEMP_NAME.match(name):
                Path(parent, name).unlink(missing_ok=True)
                removed += 1
    return removed


def write_outputs(result: Transcription, base: str | os.PathLike, formats: Iterable[str], **metadata) -> list[Path]:
    """Write `base`.<fmt> for each format (parent folders created); returns the paths.

    All or none: every format is written to a temporary file and flushed first, and only
    when all of them are complete are they renamed into place. A failure (a full disk, a
    bad value) removes the temporary files and leaves no new output of this call."""
    base = Path(base)
    base.parent.mkdir(parents=True, exist_ok=True)
    formats = list(formats)
    targets = [base.with_name(f"{base.name}.{fmt}") for fmt in formats]
    temps: list[Path] = []
    try:
        for fmt, target in zip(formats, targets):
            temps.append(_temp_path(target))
            with _temp_file(temps[-1]) as file:
                WRITERS[fmt](result, file, **metadata)
        for temp, target in zip(temps, targets):
            os.replace(temp, target)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return targets
