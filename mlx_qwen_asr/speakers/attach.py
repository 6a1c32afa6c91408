"""Speakers onto a transcription: every word gets the speaker whose turn covers most of it
(the nearest turn if none does), and a segment is split where its words' speaker changes,
so each segment has one speaker."""

from __future__ import annotations

from dataclasses import replace

from ..results import Segment, Transcription


def speaker_at(turns: list, start: float, end: float) -> str | None:
    """The speaker with the most time in [start, end]; with none there, the nearest turn's."""
    if not turns:
        return None
    held: dict[str, float] = {}
    for turn in turns:
        overlap = min(end, turn.end) - max(start, turn.start)
        if overlap > 0:
            held[turn.speaker] = held.get(turn.speaker, 0.0) + overlap
    if held:
        return max(held, key=held.get)
    middle = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - middle, middle - t.end)).speaker


def add_speakers(result: Transcription, turns: list) -> Transcription:
    """Labels `result`'s words and segments in place (segments split per speaker) and keeps the turns."""
    segments = []
    for segment in result.segments:
        segments += split_by_speaker(segment, turns)
    result.segments = segments
    result.speaker_turns = list(turns)
    return result


def split_by_speaker(segment: Segment, turns: list) -> list[Segment]:
    if not segment.words:
        segment.speaker = speaker_at(turns, segment.start, segment.end) if segment.text.strip() else None
        return [segment]
    segment.words = [replace(w, speaker=speaker_at(turns, w.start, w.end)) for w in segment.words]
    runs: list[list] = []
    for word in segment.words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    if len(runs) == 1:
        segment.speaker = runs[0][0].speaker
        return [segment]
    pieces = []
    for index, run in enumerate(runs):
        cut = _text_start(run, segment) if index else 0
        stop = _text_start(runs[index + 1], segment) if index + 1 < len(runs) else len(segment.text)
        text = segment.text[cut:stop]
        skip = len(text) - len(text.lstrip())
        words = [replace(w, span=None if w.span is None else (w.span[0] - cut - skip, w.span[1] - cut - skip))
                 for w in run]
        start = segment.start if index == 0 else run[0].start
        end = segment.end if index + 1 == len(runs) else runs[index + 1][0].start
        # The tokens and raw output stay with the first piece: joined they are the segment's.
        first = index == 0
        pieces.append(replace(segment, start=start, end=end, text=text.strip(), words=words, speaker=run[0].speaker,
                              tokens=list(segment.tokens) if first else [], raw=segment.raw if first else "",
                              retries=segment.retries if first else 0))
    return pieces


def _text_start(run: list, segment: Segment) -> int:
    """Where a run of words begins in the segment's text."""
    spans = [w.span for w in run if w.span is not None]
    if spans:
        return spans[0][0]
    return max(0, segment.text.find(run[0].word))


def diarize_result(result: Transcription, audio, sample_rate, options) -> Transcription:
    """`result` of `audio` with its speakers (options: a DiarizeOptions); the time it took in
    its timings as "diarize"."""
    import time

    from .pipeline import diarize

    started = time.perf_counter()
    turns = diarize(audio, sample_rate=sample_rate, options=options)
    add_speakers(result, turns)
    result.timings["diarize"] = time.perf_counter() - started
    return result


def diarize_options(diarize):
    """None (no diarization) or the checked DiarizeOptions of a `diarize=` argument:
    True, a DiarizeOptions, or a dict of its fields; SciPy's presence checked too."""
    from . import clustering
    from .options import DiarizeOptions

    if diarize is None or diarize is False:
        return None
    if diarize is True:
        diarize = DiarizeOptions()
    elif isinstance(diarize, dict):
        diarize = DiarizeOptions(**diarize)
    elif not isinstance(diarize, DiarizeOptions):
        raise TypeError(f"diarize must be True, False, a DiarizeOptions or a dict, got {type(diarize).__name__}")
    clustering.check_available()
    return diarize
