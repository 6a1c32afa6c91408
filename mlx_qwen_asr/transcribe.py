"""Offline transcription: audio -> mel -> encoder -> prompt -> greedy decoding -> language + text."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import numpy as np

from .audio import SAMPLE_RATE, load_audio
from .config import ModelConfig
from .decoding import RepetitionGuard, greedy_decode, token_budget
from .encoder import audio_token_count
from .loading import load_network, parse_dtype, resolve_model_dir
from .mel import log_mel_spectrogram
from .model import Qwen3ASR
from .prompt import normalize_language, parse_output, prompt_text
from .tokenizer import QwenTokenizer

DEFAULT_MODEL = "Qwen/Qwen3-ASR-0.6B"
# The official pipeline feeds audio of up to 20 min as it is, however short; only clips too
# short for the mel's reflect padding (n_fft/2 samples, where the official code fails) are
# zero-padded, to the 0.5 s it pads short long-audio chunks to (utils.MIN_ASR_INPUT_SECONDS).
MIN_SAMPLES_AS_IS = 201
PAD_TO_SECONDS = 0.5
# Peak below -80 dBFS: nothing audible, so the model is not asked (it would only guess).
SILENCE_PEAK = 1e-4


@dataclass
class Transcription:
    text: str
    language: str
    duration: float                     # seconds of input audio
    tokens: list[int]                   # generated ids, EOS excluded
    finish_reason: str                  # "eos", "length", "repetition", or "silence" (not decoded)
    timings: dict = field(default_factory=dict)  # seconds per stage, decode_tokens_per_s
    raw: str = ""                       # the decoded output before parsing

    def __str__(self) -> str:
        return self.text


class ASRModel:
    """A loaded Qwen3-ASR model: network, tokenizer and config. Load once, transcribe many."""

    def __init__(self, network: Qwen3ASR, tokenizer: QwenTokenizer, config: ModelConfig, path: Path, dtype: mx.Dtype):
        self.network = network
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"ASRModel({str(self.path)!r}, dtype={self.dtype})"

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, dtype=None) -> "ASRModel":
        model_dir = resolve_model_dir(model)
        config = ModelConfig.from_file(model_dir / "config.json")
        mx_dtype = parse_dtype(dtype)
        network = load_network(model_dir, config, mx_dtype)
        tokenizer = QwenTokenizer.from_model_dir(model_dir, config.raw)
        return cls(network, tokenizer, config, model_dir, mx_dtype)

    def prompt_ids(self, num_audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
        return self.tokenizer.encode(prompt_text(num_audio_tokens, context, language))

    def transcribe(self, audio, *, sample_rate: int | None = None, language: str | None = None,
                   context: str = "", max_new_tokens: int | None = None,
                   repetition_guard: bool = True) -> Transcription:
        """Transcribe one file path or array (with `sample_rate`).

        `repetition_guard=False` gives plain greedy decoding, token for token the official
        `generate`, even through a runaway loop (until the token budget).
        """
        language = normalize_language(language, self.config.support_languages)
        timings = {}
        start = time.perf_counter()
        samples = load_audio(audio, sample_rate)
        duration = len(samples) / SAMPLE_RATE
        timings["load"] = time.perf_counter() - start
        if float(np.max(np.abs(samples))) < SILENCE_PEAK:
            return Transcription("", language or "", duration, [], "silence", timings)
        if len(samples) < MIN_SAMPLES_AS_IS:
            samples = np.pad(samples, (0, int(PAD_TO_SECONDS * SAMPLE_RATE) - len(samples)))

        start = time.perf_counter()
        mel = log_mel_spectrogram(samples, self.config.audio.num_mel_bins)
        mx.eval(mel)
        timings["mel"] = time.perf_counter() - start

        start = time.perf_counter()
        audio_embeddings = self.network.encode_audio(mel)
        mx.eval(audio_embeddings)
        timings["encoder"] = time.perf_counter() - start

        num_audio_tokens = audio_token_count(mel.shape[1], self.config.audio.chunk_frames)
        prompt = self.prompt_ids(num_audio_tokens, context, language)
        embeddings = self.network.embed_prompt(prompt, audio_embeddings)
        budget = token_budget(duration) if max_new_tokens is None else int(max_new_tokens)
        guard = RepetitionGuard() if repetition_guard else None
        result = greedy_decode(self.network, embeddings, budget, self.config.eos_token_ids, guard)
        timings["prefill"] = result.prefill_s
        timings["decode"] = result.decode_s
        timings["decode_tokens_per_s"] = len(result.tokens) / result.decode_s if result.decode_s > 0 else 0.0

        raw = self.tokenizer.decode(result.tokens, skip_special_tokens=True)
        detected, text = parse_output(raw, language)
        return Transcription(text, detected, duration, result.tokens, result.finish_reason, timings, raw)


_loaded: dict[tuple, ASRModel] = {}


def load_model(model: str | Path = DEFAULT_MODEL, dtype=None) -> ASRModel:
    """Load (or reuse, for the same path and dtype) a model."""
    key = (str(model), str(parse_dtype(dtype)))
    if key not in _loaded:
        _loaded.clear()  # keep at most one model in memory
        _loaded[key] = ASRModel.load(model, dtype)
    return _loaded[key]


def transcribe(audio, *, model: str | Path | ASRModel = DEFAULT_MODEL, language: str | None = None,
               context: str = "", dtype=None, max_new_tokens: int | None = None,
               sample_rate: int | None = None) -> Transcription:
    """Transcribe one audio file path or array (with `sample_rate`).

    `model` is a hub id, a local directory, or an `ASRModel` from `load_model()`.
    """
    if not isinstance(model, ASRModel):
        model = load_model(model, dtype)
    return model.transcribe(audio, sample_rate=sample_rate, language=language, context=context,
                            max_new_tokens=max_new_tokens)
