"""Word timestamps with Qwen3-ForcedAligner: audio + transcript -> when each word is spoken.

The official `Qwen3ForcedAligner.align` step by step (one causal pass, the argmax class at
each `<timestamp>` token, `fix_timestamps`), plus `tidy_spans` and 180 s windows for long
audio; the design and why: docs/architecture.md, "Word timestamps".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .audio.load import SAMPLE_RATE, load_audio
from .model.config import SUPPORTED_LANGUAGES, ModelConfig
from .errors import ModelLoadError
from .model.loading import load_network, parse_dtype, resolve_model_dir
from .model.network import Qwen3ASR
from .model_input import encode_clip
from .prompt import normalize_language
from .audio.cutting import ENERGY_WINDOW_SECONDS, quietest_cut
from .model.tokenizer import QwenTokenizer
from .word_split import locate_units, split_words

DEFAULT_ALIGNER = "Qwen/Qwen3-ForcedAligner-0.6B"
TIMESTAMP_TOKEN = "<timestamp>"
# utils.MAX_FORCE_ALIGN_INPUT_SECONDS of the official package.
MAX_ALIGN_SECONDS = 180.0
# One timestamp class of the released aligner.
MIN_DURATION = 0.08
# Decoder positions per forward call: bounds the attention scores of a 180 s prompt
# (~2300 audio + ~2000 text tokens) without changing the result (causal attention).
PREFILL_CHUNK = 1024
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


@dataclass(frozen=True)
class AlignerConfig:
    network: ModelConfig            # the network's sizes (head never tied to the embeddings)
    classify_num: int               # timestamp classes of the head
    timestamp_token_id: int
    timestamp_segment_time: float   # ms per class

    @classmethod
    def from_file(cls, path: str | Path) -> "AlignerConfig":
        model = ModelConfig.from_file(path)
        raw, thinker = model.raw, model.raw.get("thinker_config", {})
        kind = str(thinker.get("model_type", ""))
        if "forced_aligner" not in kind:
            raise ModelLoadError(f"{Path(path).parent} is not a Qwen3-ForcedAligner checkpoint (thinker model_type "
                                 f"{kind!r}); word timestamps need an aligner such as {DEFAULT_ALIGNER}")
        try:
            classify_num = int(thinker["classify_num"])
            token_id = int(raw["timestamp_token_id"])
            segment_time = float(raw["timestamp_segment_time"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: forced-aligner field missing or bad: {exc}") from None
        # The official thinker builds a separate [classify_num, hidden] head for aligners.
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, tie_word_embeddings=False))
        return cls(model, classify_num, token_id, segment_time)


class ForcedAlignerNetwork(Qwen3ASR):
    """Qwen3ASR with the timestamp-classification head."""

    def __init__(self, config: AlignerConfig):
        super().__init__(config.network)
        self.lm_head = nn.Linear(config.network.text.hidden_size, config.classify_num, bias=False)

    def timestamp_logits(self, embeddings: mx.array, positions: list[int],
                         chunk: int = PREFILL_CHUNK) -> mx.array:
        """[len(positions), classify_num] head outputs at `positions` of a [1, P, hidden]
        prompt: one causal pass, fed `chunk` positions at a time through a KV cache."""
        length = embeddings.shape[1]
        cache = self.make_cache(length) if length > chunk else None
        picked = []
        for start in range(0, length, chunk):
            hidden = self.decoder(embeddings[:, start:start + chunk], cache)
            local = [p - start for p in positions if start <= p < start + chunk]
            if local:
                picked.append(self.lm_head(hidden[0, mx.array(local)]))
            mx.eval(picked, cache.state() if cache is not None else [])
        if not picked:
            return mx.zeros((0, self.lm_head.weight.shape[0]), dtype=embeddings.dtype)
        return mx.concatenate(picked)


def load_aligner_network(model_dir: Path, config: AlignerConfig, dtype: mx.Dtype) -> ForcedAlignerNetwork:
    return load_network(model_dir, config.network, dtype, network=ForcedAlignerNetwork(config))


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


_loaded: dict[tuple, Aligner] = {}


def load_aligner(model: str | Path = DEFAULT_ALIGNER, dtype=None) -> Aligner:
    """Load (or reuse, for the same path and dtype) an aligner."""
    key = (str(model), str(parse_dtype(dtype)))
    if key not in _loaded:
        _loaded.clear()  # keep at most one aligner in memory
        _loaded[key] = Aligner.load(model, dtype)
    return _loaded[key]


def get_aligner(aligner, dtype=None) -> Aligner:
    """`aligner` itself if it is a loaded Aligner, else the (cached) one it names."""
    return aligner if isinstance(aligner, Aligner) else load_aligner(aligner, dtype)


def align(audio, text: str, language: str | None = None, *, aligner: str | Path | Aligner = DEFAULT_ALIGNER,
          sample_rate: int | None = None, dtype=None, min_duration: float = MIN_DURATION,
          official: bool = False) -> list[WordTiming]:
    """Word timings of `text` spoken in `audio`; see `Aligner.align`. `aligner` is a hub id,
    a local directory or a loaded `Aligner`."""
    return get_aligner(aligner, dtype).align(audio, text, language, sample_rate=sample_rate,
                                             min_duration=min_duration, official=official)
