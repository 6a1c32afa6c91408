"""Word timestamps with Qwen3-ForcedAligner: audio + transcript -> when each word is spoken.

The official `Qwen3ForcedAligner.align` step by step (one causal pass, the argmax class at
each `<timestamp>` token, `fix_timestamps`), plus `tidy_spans` and 180 s windows for long
audio; the design and why: docs/architecture.md, "Word timestamps".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from .audio.load import SAMPLE_RATE, load_audio
from .model.aligner_network import (DEFAULT_ALIGNER, PREFILL_CHUNK, AlignerConfig, ForcedAlignerNetwork,
                                    load_aligner_network)
from .model.config import SUPPORTED_LANGUAGES
from .errors import ModelLoadError
from .model.loading import parse_dtype, resolve_model_dir
from .model_input import encode_clip
from .prompt import normalize_language
from .audio.cutting import ENERGY_WINDOW_SECONDS, quietest_cut
from .model.tokenizer import QwenTokenizer
from .word_split import locate_units, split_words

TIMESTAMP_TOKEN = "<timestamp>"
# utils.MAX_FORCE_ALIGN_INPUT_SECONDS of the official package.
MAX_ALIGN_SECONDS = 180.0
# One timestamp class of the released aligner.
MIN_DURATION = 0.08
# Long audio: window ends move to the quietest moment of their last 10 s; words ending in a
# window's last 20 s are aligned again by the next window.
WINDOW_SEARCH_SECONDS = 10.0
WINDOW_GUARD_SECONDS = 20.0


@dataclass(frozen=True)
class WordTiming:
    word: str      # the unit the aligner timed: a word or CJK character, punctuation removed
    start: float   # seconds
    end: float
    # [begin, end) characters of the unit in the aligned text (None if it cannot be found),
    # so a subtitle can show the text as written, punctuation included.
    span: tuple[int, int] | None = None
    # How sure the recognizer was of the word's text (confidence.py); None if not known.
    probability: float | None = None
    speaker: str | None = None   # who said it, when diarized (speakers/attach.py)

    @property
    def duration(self) -> float:
        return self.end - self.start


# ---------------------------------------------------------------------------------------
# Post-processing of the predicted times

def fix_timestamps(values) -> list[int]:
    """The official `Qwen3ForceAlignProcessor.fix_timestamp`, same result on every input.

    Keeps the longest non-decreasing subsequence (for each element the earliest best
    predecessor, ending at the earliest longest end, as the official O(n^2) loop picks);
    a run of at most two other elements takes the value of its nearer kept neighbour (the
    left one on a tie), a longer run is spaced evenly between its kept neighbours (or
    copies the only one). Values are truncated to int.
    """
    data = [float(v) for v in np.asarray(values).reshape(-1).tolist()]
    n = len(data)
    if n == 0:
        return []
    arr = np.asarray(data)
    dp = np.ones(n, dtype=np.int64)
    parent = np.full(n, -1, dtype=np.int64)
    for i in range(1, n):
        candidates = np.where(arr[:i] <= arr[i], dp[:i], 0)
        best = int(np.argmax(candidates))          # first index of the maximum
        if candidates[best] > 0:
            dp[i], parent[i] = candidates[best] + 1, best
    kept = np.zeros(n, dtype=bool)
    idx = int(np.argmax(dp))
    while idx != -1:
        kept[idx] = True
        idx = int(parent[idx])

    result = list(data)
    i = 0
    while i < n:
        if kept[i]:
            i += 1
            continue
        j = i
        while j < n and not kept[j]:
            j += 1
        left = next((result[k] for k in range(i - 1, -1, -1) if kept[k]), None)
        right = next((result[k] for k in range(j, n) if kept[k]), None)
        run = j - i
        for k in range(i, j):
            if left is None:
                result[k] = right
            elif right is None:
                result[k] = left
            elif run <= 2:
                result[k] = left if k - (i - 1) <= j - k else right
            else:
                result[k] = left + (right - left) / (run + 1) * (k - i + 1)
        i = j
    return [int(v) for v in result]


def _isotonic(values: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit (pool adjacent violators)."""
    means: list[float] = []
    counts: list[int] = []
    for v in values.tolist():
        mean, count = v, 1
        while means and means[-1] > mean:
            prev_mean, prev_count = means.pop(), counts.pop()
            mean = (prev_mean * prev_count + mean * count) / (prev_count + count)
            count += prev_count
        means.append(mean)
        counts.append(count)
    return np.repeat(np.asarray(means), counts)


def tidy_spans(spans: np.ndarray, duration: float, min_duration: float = MIN_DURATION) -> np.ndarray:
    """[n, 2] (start, end) seconds -> the nearest (least squares) spans that are in order,
    inside [0, duration], non-overlapping and each at least min(min_duration, duration / n)
    long. Spans already like that are unchanged; a short word widens into its neighbours.

    Works in integer microseconds, so the guarantees hold exactly after rounding (a word
    has zero length only if the text has more words than the audio has microseconds).
    """
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    n = len(spans)
    if n == 0:
        return spans
    total = int(np.floor(duration * 1e6))
    least = min(int(round(min_duration * 1e6)), total // n)
    # Boundaries start_0, end_0, start_1, ...: each end at least `least` after its start,
    # each start no earlier than the previous end. Subtracting the cumulative minimum gaps
    # turns that into "non-decreasing", a plain isotonic fit clipped to the audio.
    gaps = np.zeros(2 * n)
    gaps[1::2] = least
    offsets = np.cumsum(gaps)
    shifted = _isotonic(np.rint(spans.reshape(-1) * 1e6) - offsets)
    shifted = np.rint(np.clip(shifted, 0, total - offsets[-1]))
    return ((shifted + offsets) / 1e6).reshape(n, 2)


# ---------------------------------------------------------------------------------------
# The aligner

class Aligner:
    """A loaded Qwen3-ForcedAligner. Load once, align many."""

    def __init__(self, network: ForcedAlignerNetwork, tokenizer: QwenTokenizer, config: AlignerConfig,
                 path: Path, dtype: mx.Dtype):
        self.network = network
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.dtype = dtype
        self.prefill_chunk = PREFILL_CHUNK

    def __repr__(self) -> str:
        return f"Aligner({str(self.path)!r}, dtype={self.dtype})"

    @classmethod
    def load(cls, model: str | Path = DEFAULT_ALIGNER, dtype=None) -> "Aligner":
        model_dir = resolve_model_dir(model, flag="--aligner")
        config = AlignerConfig.from_file(model_dir / "config.json")
        mx_dtype = parse_dtype(dtype)
        network = load_aligner_network(model_dir, config, mx_dtype)
        tokenizer = QwenTokenizer.from_model_dir(model_dir, config.network.raw)
        found = tokenizer.token_to_id(TIMESTAMP_TOKEN)
        if found != config.timestamp_token_id:
            raise ModelLoadError(f"{model_dir}: the tokenizer has {TIMESTAMP_TOKEN} as {found}, "
                                 f"config.json says {config.timestamp_token_id}")
        return cls(network, tokenizer, config, model_dir, mx_dtype)

    def prompt_ids(self, words: list[str], num_audio_tokens: int) -> list[int]:
        """Ids of `<|audio_start|><|audio_pad|>*N<|audio_end|>w1<timestamp><timestamp>w2...`."""
        network = self.config.network
        stamps = TIMESTAMP_TOKEN * 2
        text = stamps.join(words) + stamps
        return ([network.audio_start_token_id] + [network.audio_token_id] * num_audio_tokens
                + [network.audio_end_token_id] + self.tokenizer.encode(text))

    def timestamp_logits(self, samples: np.ndarray, words: list[str]) -> mx.array:
        """Head outputs [2 * len(words), classify_num] at the prompt's <timestamp> tokens."""
        samples = np.asarray(samples, dtype=np.float32)
        audio_embeddings, count = encode_clip(self.network, self.config.network.audio, samples)
        ids = self.prompt_ids(words, count)
        positions = [i for i, t in enumerate(ids) if t == self.config.timestamp_token_id]
        if len(positions) != 2 * len(words):
            raise ValueError(f"{len(positions)} timestamp tokens for {len(words)} words")
        embeddings = self.network.embed_prompt(ids, audio_embeddings)
        return self.network.timestamp_logits(embeddings, positions, self.prefill_chunk)

    def predict_ms(self, samples: np.ndarray, words: list[str]) -> np.ndarray:
        """Raw predicted times in ms, [start_0, end_0, start_1, ...], before any repair."""
        classes = np.array(mx.argmax(self.timestamp_logits(samples, words), axis=-1), dtype=np.int64)
        # float32 as the official `output_id * timestamp_segment_time` tensor
        return classes.astype(np.float32) * np.float32(self.config.timestamp_segment_time)

    def _window_spans(self, samples: np.ndarray, words: list[str]) -> np.ndarray:
        """[n, 2] seconds for audio of at most MAX_ALIGN_SECONDS: the official numbers."""
        fixed = fix_timestamps(self.predict_ms(samples, words))
        return np.array([round(ms / 1000.0, 3) for ms in fixed], dtype=np.float64).reshape(-1, 2)

    def _spans(self, samples: np.ndarray, words: list[str]) -> np.ndarray:
        limit = int(MAX_ALIGN_SECONDS * SAMPLE_RATE)
        if len(samples) <= limit:
            return self._window_spans(samples, words)
        search = int(WINDOW_SEARCH_SECONDS * SAMPLE_RATE)
        energy_window = int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE)
        weights = np.array([len(w) + 1 for w in words], dtype=np.float64)  # characters ~ speaking time
        parts, cursor, first = [], 0, 0
        while first < len(words):
            remaining = len(samples) - cursor
            if remaining <= limit:
                parts.append(self._window_spans(samples[cursor:], words[first:]) + cursor / SAMPLE_RATE)
                break
            end = quietest_cut(samples, cursor + limit - search, cursor + limit, energy_window)
            rest = np.cumsum(weights[first:])
            expected = int(np.searchsorted(rest, rest[-1] * (end - cursor) / remaining)) + 1
            take = min(len(rest), int(expected * 1.25) + 16)
            window = (end - cursor) / SAMPLE_RATE
            spans = np.minimum(self._window_spans(samples[cursor:end], words[first:first + take]), window)
            horizon = window - WINDOW_GUARD_SECONDS
            keep = int(np.sum(spans[:, 1] <= horizon))  # spans are in order: a prefix
            if keep:
                parts.append(spans[:keep] + cursor / SAMPLE_RATE)
                first += keep
                cursor += int(round(spans[keep - 1, 1] * SAMPLE_RATE))
            else:
                # No word placed before the horizon (a long stretch without speech): move
                # on in time, not in words.
                cursor += int(horizon * SAMPLE_RATE)
        return np.round(np.concatenate(parts), 3)

    def align_samples(self, samples: np.ndarray, text: str, language: str | None = None, *,
                      min_duration: float = MIN_DURATION, official: bool = False) -> list[WordTiming]:
        """Align `text` to 16 kHz mono `samples` (as load_audio returns them)."""
        text = text or ""
        words = split_words(text, language)
        if not words:
            return []
        samples = np.asarray(samples, dtype=np.float32)
        spans = self._spans(samples, words)
        if not official:
            spans = tidy_spans(spans, len(samples) / SAMPLE_RATE, min_duration)
        return [WordTiming(w, float(s), float(e), where)
                for w, (s, e), where in zip(words, spans, locate_units(text, words))]

    def align(self, audio, text: str, language: str | None = None, *, sample_rate: int | None = None,
              min_duration: float = MIN_DURATION, official: bool = False) -> list[WordTiming]:
        """Word timings of `text` in `audio` (a path, or an array with `sample_rate`).

        `language` selects the word splitting (Japanese and Korean need the
        `timestamps-ja-ko` extra; None splits at spaces and CJK characters). With
        `official=True` the times are exactly the official aligner's (audio up to 180 s):
        possibly zero-length, possibly beyond the audio.
        """
        language = normalize_language(language, SUPPORTED_LANGUAGES)
        samples = load_audio(audio, sample_rate)
        return self.align_samples(samples, text, language, min_duration=min_duration, official=official)


# The loaded aligner, a resource beside the options (which hold only its name): the last
# one used, kept so that every piece, file and request reuses it; one in memory at a time.
# (name, dtype or None, aligner); dtype None: a caller's own Aligner, used as it was loaded.
_kept: tuple[str, str | None, Aligner] | None = None


def get_aligner(name: str | os.PathLike = DEFAULT_ALIGNER, dtype=None) -> Aligner:
    """The aligner `name` (hub id or directory) names, loaded at `dtype` on first use and
    kept while the same one is asked for (so a bad name fails here, before any audio)."""
    global _kept
    key = (str(name), str(parse_dtype(dtype)))
    if _kept is not None and _kept[0] == key[0] and _kept[1] in (None, key[1]):
        return _kept[2]
    _kept = None   # the old one goes before the next loads
    aligner = Aligner.load(name, dtype)
    _kept = (*key, aligner)
    return aligner


def aligner_name(aligner: str | os.PathLike | Aligner) -> str | os.PathLike:
    """The name the options hold for `aligner`. A loaded Aligner, which the public functions
    take where a name goes, becomes the kept one (get_aligner returns it for its path,
    whatever dtype is asked) and is named by its path; a name is returned as it is."""
    global _kept
    if not isinstance(aligner, Aligner):
        return aligner
    _kept = (str(aligner.path), None, aligner)
    return str(aligner.path)


def named_aligner(changes: dict) -> dict:
    """Keyword options (`TranscribeOptions.build`'s changes) with a loaded Aligner given as
    "aligner" replaced by its name (`aligner_name`): the API edge's one step for it."""
    if "aligner" not in changes:
        return changes
    return {**changes, "aligner": aligner_name(changes["aligner"])}


def align(audio, text: str, language: str | None = None, *, aligner: str | Path | Aligner = DEFAULT_ALIGNER,
          sample_rate: int | None = None, dtype=None, min_duration: float = MIN_DURATION,
          official: bool = False) -> list[WordTiming]:
    """Word timings of `text` spoken in `audio`; see `Aligner.align`. `aligner` is a hub id,
    a local directory or a loaded `Aligner`."""
    return get_aligner(aligner_name(aligner), dtype).align(audio, text, language, sample_rate=sample_rate,
                                                           min_duration=min_duration, official=official)
