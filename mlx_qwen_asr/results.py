"""What a transcription returns: per-segment results and the whole-file result that joins them."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from .clock import clock_tenths
from .word_split import is_cjk_script

# Why a segment's decoding stopped (Segment.finish_reason).
FINISH_EOS = "eos"                # the model ended its text
FINISH_LENGTH = "length"          # the token budget ran out: the text is truncated
FINISH_REPETITION = "repetition"  # the text ran into a loop
FINISH_SILENCE = "silence"        # nothing decoded: the audio is silent
FINISH_NO_SPEECH = "no_speech"    # text dropped: confidence.is_no_speech
# Worst first: the whole file reports the worst of its segments.
FINISH_SEVERITY = (FINISH_LENGTH, FINISH_REPETITION, FINISH_EOS, FINISH_NO_SPEECH, FINISH_SILENCE)


@dataclass
class Segment:
    start: float                 # seconds from the start of the input
    end: float
    text: str
    language: str
    finish_reason: str           # "eos", "length" (budget hit: truncated), "repetition", "silence",
                                 # "no_speech" (text dropped: confidence.is_no_speech)
    tokens: list[int] = field(default_factory=list)   # ids of the text (the language header left out)
    retries: int = 0             # re-decodes spent on a loop or a missing EOS
    remedy: str = ""             # what the last retry did ("repetition_penalty", "split")
    raw: str = ""                # decoded output before parsing
    words: list | None = None    # WordTiming (aligner.py) with times from the input's start, if asked for
    generated: int = 0           # tokens decoded, language header included (what decoding speed counts)
    # Confidence (confidence.py): per token of `tokens` its log-probability; the text tokens'
    # (and EOS's) mean; the probability of "no speech" at the language slot; per word of
    # `text` its probability (WordProbability). None where not decoded (silence).
    logprobs: list[float] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    word_probabilities: list | None = None
    speaker: str | None = None   # who spoke it, when diarized (speakers/attach.py)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == FINISH_LENGTH

    def word_items(self) -> list[tuple[float, float, str]]:
        """(start, end, text as written) per timed word: each word's text runs to the next
        word's start, so punctuation stays attached to the word before it."""
        if not self.words:
            return []
        items = []
        for i, word in enumerate(self.words):
            if word.span is None:
                items.append((word.start, word.end, word.word))
                continue
            following = next((w.span[0] for w in self.words[i + 1:] if w.span is not None), len(self.text))
            items.append((word.start, word.end, self.text[word.span[0]:following].strip()))
        return items

    def _repr_html_(self) -> str:
        return _segments_table([self])


@dataclass
class Transcription:
    text: str
    language: str                # detected (or forced) language; "A,B" when segments differ
    duration: float              # seconds of input audio
    tokens: list[int]            # text ids of all segments (language headers and EOS excluded)
    finish_reason: str           # the worst of the segments' (see FINISH_SEVERITY)
    timings: dict = field(default_factory=dict)   # seconds per stage, decode_tokens_per_s
    raw: str = ""                # decoded output before parsing (segments joined)
    segments: list[Segment] = field(default_factory=list)
    source: object = field(default=None, repr=False)   # the input (path or array), for the Jupyter player
    speaker_turns: list | None = None   # SpeakerTurn (speakers/pipeline.py) when diarized, else None

    @property
    def speakers(self) -> list[str] | None:
        """The speakers heard, in order of first appearance (None unless diarized)."""
        if self.speaker_turns is None:
            return None
        return list(dict.fromkeys(t.speaker for t in self.speaker_turns))

    def __str__(self) -> str:
        return self.text

    @property
    def words(self) -> list | None:
        """All timed words (None unless transcribed with word_timestamps=True)."""
        if all(s.words is None for s in self.segments):
            return None
        return [w for s in self.segments for w in (s.words or [])]

    @property
    def truncated(self) -> bool:
        return any(s.truncated for s in self.segments)

    @property
    def word_probabilities(self) -> list:
        """Every segment's words with their probability (confidence.WordProbability)."""
        return [w for s in self.segments for w in (s.word_probabilities or [])]

    @property
    def retries(self) -> int:
        return sum(s.retries for s in self.segments)

    def _repr_html_(self) -> str:
        """Jupyter view (notebook.py): timeline, transcript with word times, audio, segment table."""
        from .notebook import timeline_html

        note = ""
        if self.finish_reason in (FINISH_LENGTH, FINISH_REPETITION):
            note = " &mdash; <b>decoding stopped early: the text may be incomplete</b>"
        retries = f", retries {self.retries}" if self.retries else ""
        summary = (f"language {html.escape(self.language or '-')}, {clock_tenths(self.duration)} of audio, "
                   f"finish {html.escape(self.finish_reason)}{retries}{note}")
        return timeline_html(self, summary, _segments_table(self.segments))

    @classmethod
    def from_segments(cls, segments: list[Segment], duration: float, timings: dict) -> "Transcription":
        reasons = [s.finish_reason for s in segments] or [FINISH_SILENCE]
        worst = min(reasons, key=FINISH_SEVERITY.index)
        return cls(
            text=join_texts([s.text for s in segments]),
            language=merge_languages([s.language for s in segments]),
            duration=duration,
            tokens=[t for s in segments for t in s.tokens],
            finish_reason=worst,
            timings=timings,
            raw=join_texts([s.raw for s in segments]),
            segments=segments,
        )


def _segments_table(segments: list[Segment]) -> str:
    if not segments:
        return ""
    head = "".join(f"<th>{name}</th>" for name in ("start", "end", "language", "finish", "text"))
    rows = "".join(
        f"<tr><td>{clock_tenths(s.start)}</td><td>{clock_tenths(s.end)}</td><td>{html.escape(s.language or '-')}</td>"
        f"<td>{html.escape(s.finish_reason)}{f' (retries {s.retries}: {html.escape(s.remedy)})' if s.retries else ''}</td>"
        f"<td style='text-align:left'>{html.escape(s.text)}</td></tr>"
        for s in segments
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def merge_languages(languages: list[str]) -> str:
    """Consecutive duplicates and blanks dropped, comma-joined (the official `merge_languages`)."""
    merged: list[str] = []
    for language in languages:
        language = (language or "").strip()
        if language and (not merged or merged[-1] != language):
            merged.append(language)
    return ",".join(merged)


def join_pair(left: str, right: str) -> str:
    """Two texts joined with a space, except where either side is CJK (no spaces there)."""
    return left + right if is_cjk_script(left[-1]) or is_cjk_script(right[0]) else left + " " + right


def join_texts(texts: list[str]) -> str:
    """Segment texts, stripped, joined as `join_pair` joins two; empty ones left out."""
    out = ""
    for text in texts:
        text = text.strip()
        if text:
            out = join_pair(out, text) if out else text
    return out
