"""How sure the model was: per token, per word and per segment, from the scores the decode
loop read back with each token (decoding.token_scores), and the no-speech gate built on them.

* token: the log-probability of each generated token (`Segment.logprobs`).
* word: the probability of its tokens together (their log-probabilities summed), for each
  word of the text (`Segment.word_probabilities`; `WordTiming.probability` when timed).
* segment: `avg_logprob`, the mean log-probability of the text's tokens and the EOS that
  ended it (Whisper's definition), and `no_speech_prob`, the probability the model gave
  "no speech" (the end of text, or "None" after "language") at its language slot.

A segment is dropped as no speech (`finish_reason="no_speech"`) when its text is unsure
(avg_logprob below a threshold) and either its no_speech_prob is above another (Whisper's
gate) or a speech-activity network hears (almost) no speech in its audio
(speech_presence.py): the model, trained on little non-speech, writes words over hum, pink
noise or a tone while being sure they are speech.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .word_split import is_cjk_ideograph

# Chosen on the trained fixture's held-out speech (clean and noisy) and on noise, hum and
# room tone (scripts/confidence_bench.py, docs/confidence.md).
DEFAULT_NO_SPEECH_THRESHOLD = 0.6
DEFAULT_LOGPROB_THRESHOLD = -1.0
# Held-out speech: 1.9 s of speech heard at least, spoken digits of ../shared 0.25 s; noise,
# hum, room tone and tones: none.
DEFAULT_MIN_SPEECH_SECONDS = 0.1


@dataclass(frozen=True)
class WordProbability:
    word: str                    # as written in the segment's text (punctuation attached)
    probability: float           # of the tokens that wrote it, together
    span: tuple[int, int]        # [begin, end) characters of the word in the segment's text


def attach_confidence(segment, result, header: int, tokenizer, language_token: int) -> None:
    """Set the segment's `logprobs` (one per token of `segment.tokens`, the text's: the
    result's first `header` tokens are the language header), `avg_logprob`,
    `no_speech_prob` and `word_probabilities` from its DecodeResult."""
    if len(result.scores) != len(result.tokens):
        return   # a result without scores (nothing decoded)
    segment.logprobs = [score[0] for score in result.scores[header:]]
    text_logprobs = segment.logprobs + ([result.eos_score[0]] if result.eos_score else [])
    if text_logprobs:
        segment.avg_logprob = sum(text_logprobs) / len(text_logprobs)
    if result.prompt_slot is not None:                      # language forced in the prompt
        segment.no_speech_prob = math.exp(result.prompt_slot[1])
    elif len(result.tokens) > 1 and result.tokens[0] == language_token:
        segment.no_speech_prob = math.exp(result.scores[1][1])
    elif not result.tokens and result.eos_score is not None:   # the end at once
        segment.no_speech_prob = math.exp(result.eos_score[1])
    segment.word_probabilities = word_probabilities(tokenizer, segment.tokens, segment.logprobs, segment.text)


def text_token_logprobs(tokenizer, segment) -> list[tuple[str, float]]:
    """(text, log-probability) of each token of the segment's text (after the language
    header), a token's text being what it adds to the decoded text; [] for a dropped segment."""
    if not segment.text or len(segment.logprobs) != len(segment.tokens):
        return []
    ends = token_ends(tokenizer, segment.tokens)
    text = tokenizer.decode(segment.tokens)
    return [(text[a:b], lp) for a, b, lp in zip([0] + ends[:-1], ends, segment.logprobs)]


def token_ends(tokenizer, tokens: list[int]) -> list[int]:
    """Characters of the decoded text up to and including each token (a token that ends
    inside a multi-byte character gets it when the character is complete)."""
    return [len(tokenizer.decode(tokens[:i + 1]).rstrip("\ufffd")) for i in range(len(tokens))]


def word_spans(text: str) -> list[tuple[int, int]]:
    """[begin, end) of each word: runs of non-space characters, each CJK ideograph its own."""
    spans = []
    for match in re.finditer(r"\S+", text):
        begin = match.start()
        run = begin
        for i, ch in enumerate(match.group(), begin):
            if is_cjk_ideograph(ch):
                if run < i:
                    spans.append((run, i))
                spans.append((i, i + 1))
                run = i + 1
        if run < match.end():
            spans.append((run, match.end()))
    return spans


def word_probabilities(tokenizer, tokens: list[int], logprobs: list[float], text: str) -> list[WordProbability] | None:
    """Each word of `text` (the segment's text, which `tokens` wrote) with the probability of
    the tokens that overlap it; None when the text is not the tokens' (repetitions fixed)."""
    decoded = tokenizer.decode(tokens)
    lead = len(decoded) - len(decoded.lstrip())
    if decoded.strip() != text:
        return None
    ends = [end - lead for end in token_ends(tokenizer, tokens)]
    starts = [-lead] + ends[:-1]
    words = []
    for begin, end in word_spans(text):
        total = sum(lp for lp, a, b in zip(logprobs, starts, ends) if a < end and b > begin)
        words.append(WordProbability(text[begin:end], math.exp(total), (begin, end)))
    return words


def span_probability(words: list[WordProbability] | None, span: tuple[int, int] | None) -> float | None:
    """The probability of the text at `span` (a timed word's): of the words it overlaps, together."""
    if not words or span is None:
        return None
    overlapping = [w.probability for w in words if w.span[0] < span[1] and w.span[1] > span[0]]
    return math.prod(overlapping) if overlapping else None


def is_no_speech(segment, no_speech_threshold: float | None, logprob_threshold: float | None,
                 samples=None, min_speech_seconds: float | None = None) -> bool:
    """The segment's text is unsure (avg_logprob below `logprob_threshold`; None: whatever it
    is) and either the model said "no speech" at the language slot with probability above
    `no_speech_threshold` (Whisper's gate) or, given its audio (`samples`, 16 kHz) and
    `min_speech_seconds`, a speech-activity network hears less speech than that in it (run
    only when the rest has not decided). `no_speech_threshold=None` turns the gate off. A
    segment without text has nothing to drop."""
    if no_speech_threshold is None or not segment.text:
        return False
    if logprob_threshold is not None and segment.avg_logprob is not None and segment.avg_logprob >= logprob_threshold:
        return False
    if segment.no_speech_prob is not None and segment.no_speech_prob > no_speech_threshold:
        return True
    if samples is None or min_speech_seconds is None:
        return False
    from .speech_presence import speech_seconds

    return speech_seconds(samples) < min_speech_seconds
