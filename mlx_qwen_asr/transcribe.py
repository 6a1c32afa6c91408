"""Offline transcription: audio -> segments -> mel -> encoder -> prompt -> greedy decoding -> text.

Audio is read block by block and cut at quiet moments into segments of about 30 s; each is
transcribed on its own (its own language, token budget and finish reason) and the results
are joined. A segment that loops or runs out of budget is decoded again with a remedy.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from .aligner import DEFAULT_ALIGNER, get_aligner
from .audio import SAMPLE_RATE
from .audio_stream import open_audio_stream
from .config import ModelConfig
from .decoding import DecodeResult, RepetitionGuard, greedy_decode, greedy_decode_batch, token_budget
from .encoder import audio_token_count
from .errors import AudioError, QwenASRError
from .loading import load_network, parse_dtype, resolve_model_dir
from .mel import log_mel_spectrogram
from .model import Qwen3ASR
from .prompt import normalize_language, parse_output, prompt_text
from .results import Segment, Transcription
from .segment import DEFAULT_SEGMENT_SECONDS, ENERGY_WINDOW_SECONDS, iter_segments, quietest_cut
from .tokenizer import QwenTokenizer

DEFAULT_MODEL = "Qwen/Qwen3-ASR-0.6B"
# The official pipeline feeds audio of up to 20 min as it is, however short; only clips too
# short for the mel's reflect padding (n_fft/2 samples, where the official code fails) are
# zero-padded, to the 0.5 s it pads short long-audio chunks to (utils.MIN_ASR_INPUT_SECONDS).
MIN_SAMPLES_AS_IS = 201
PAD_TO_SECONDS = 0.5
# Peak below -80 dBFS: nothing audible, so the model is not asked (it would only guess).
SILENCE_PEAK = 1e-4
# Loop remedies: first a repetition penalty, then (segments this long or longer) two halves.
RETRY_PENALTY = 1.1
MIN_SPLIT_SECONDS = 2.0
# Segments decoded together by transcribe_many.
DEFAULT_BATCH_SIZE = 8


class ASRModel:
    """A loaded Qwen3-ASR model: network, tokenizer and config. Load once, transcribe many."""

    def __init__(self, network: Qwen3ASR, tokenizer: QwenTokenizer, config: ModelConfig, path: Path, dtype: mx.Dtype,
                 quantize: int | None = None):
        self.network = network
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.dtype = dtype
        self.quantize = quantize

    def __repr__(self) -> str:
        quantized = f", quantize={self.quantize}" if self.quantize else ""
        return f"ASRModel({str(self.path)!r}, dtype={self.dtype}{quantized})"

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None) -> "ASRModel":
        """`quantize` (4 or 8) quantizes the decoder's linear layers at that many bits once
        loaded (encoder and head at 8; quantization.py has the policy). It saves memory; on
        the CPU backend it is slower than float32 (docs/performance.md)."""
        if quantize not in (None, 4, 8):
            raise ValueError(f"quantize must be 4 or 8 (bits), got {quantize!r}")
        model_dir = resolve_model_dir(model)
        config = ModelConfig.from_file(model_dir / "config.json")
        mx_dtype = parse_dtype(dtype)
        network = load_network(model_dir, config, mx_dtype, quantize=quantize)
        tokenizer = QwenTokenizer.from_model_dir(model_dir, config.raw)
        return cls(network, tokenizer, config, model_dir, mx_dtype, quantize)

    def prompt_ids(self, num_audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
        return self.tokenizer.encode(prompt_text(num_audio_tokens, context, language))

    def transcribe(self, audio, *, sample_rate: int | None = None, language: str | None = None,
                   context: str = "", max_new_tokens: int | None = None, repetition_guard: bool = True,
                   segment_seconds: float = DEFAULT_SEGMENT_SECONDS, recover_loops: bool = True,
                   progress=None, word_timestamps: bool = False, aligner=DEFAULT_ALIGNER) -> Transcription:
        """Transcribe one file path or array (with `sample_rate`), of any length.

        Audio longer than `segment_seconds` is cut at quiet moments and transcribed segment
        by segment (memory stays bounded); `max_new_tokens` is then a per-segment budget
        (default: scaled to each segment's duration). `repetition_guard=False` gives plain
        greedy decoding, token for token the official `generate`, even through a runaway
        loop; `recover_loops` re-decodes a segment that looped or hit its default budget.
        `progress`, if given, is called as progress(done_seconds, total_seconds) after each segment.
        `word_timestamps=True` times every word with the forced aligner (`aligner`: a hub id,
        a directory or a loaded `Aligner`), segment by segment, into `Segment.words`.
        """
        language = normalize_language(language, self.config.support_languages)
        aligner = get_aligner(aligner, self.dtype) if word_timestamps else None
        start = time.perf_counter()
        stream = open_audio_stream(audio, sample_rate)
        timings = {"open": time.perf_counter() - start}
        segments = []
        for piece in iter_segments(stream.blocks, segment_seconds):
            offset = piece.start / SAMPLE_RATE
            found = self._decode_with_recovery(piece.audio, offset, language, context, max_new_tokens,
                                               repetition_guard, recover_loops, timings)
            if aligner is not None:
                _attach_words(aligner, found, piece.audio, offset, timings)
            segments.extend(found)
            if progress is not None:
                progress(min(piece.end / SAMPLE_RATE, stream.duration), stream.duration)
        result = Transcription.from_segments(segments, stream.duration, _with_speed(timings, segments))
        result.source = audio if sample_rate is None else (audio, sample_rate)
        return result

    def transcribe_many(self, audios: list, *, batch_size: int = DEFAULT_BATCH_SIZE, on_error: str = "raise",
                        sample_rate: int | None = None, language: str | None = None, context: str = "",
                        max_new_tokens: int | None = None, repetition_guard: bool = True,
                        segment_seconds: float = DEFAULT_SEGMENT_SECONDS, recover_loops: bool = True,
                        progress=None, word_timestamps: bool = False, aligner=DEFAULT_ALIGNER) -> list:
        """Transcribe several inputs, decoding up to `batch_size` segments (of any of them)
        together. Each result equals `transcribe` of that input alone.

        `on_error="raise"` stops at the first bad input; `"return"` puts its exception in
        the result list instead, so one bad file does not stop the others. `progress`, if
        given, is called as progress(index, result) when input `index` is done.
        """
        if on_error not in ("raise", "return"):
            raise ValueError('on_error must be "raise" or "return"')
        language = normalize_language(language, self.config.support_languages)
        aligner = get_aligner(aligner, self.dtype) if word_timestamps else None
        results: list = [None] * len(audios)
        jobs: list[_SegmentJob] = []
        files: dict[int, _FileState] = {}

        def finish_ready() -> None:
            for index in [i for i, f in files.items() if f.complete]:
                state = files.pop(index)
                segments = [seg for part in state.parts for seg in part]
                results[index] = Transcription.from_segments(segments, state.duration, _with_speed(state.timings, segments))
                results[index].source = audios[index] if sample_rate is None else (audios[index], sample_rate)
                if progress is not None:
                    progress(index, results[index])

        def run_batch() -> None:
            decoded = self._decode_jobs(jobs, language, context, max_new_tokens, repetition_guard)
            for job, segment in zip(jobs, decoded):
                state = files[job.index]
                parts = [segment]
                if recover_loops and max_new_tokens is None and segment.finish_reason in ("repetition", "length"):
                    parts = self._decode_with_recovery(job.audio, job.offset, language, context, None,
                                                       repetition_guard, True, state.timings, first=segment)
                if aligner is not None:
                    _attach_words(aligner, parts, job.audio, job.offset, state.timings)
                state.parts[job.order] = parts
            jobs.clear()
            finish_ready()

        for index, audio in enumerate(audios):
            try:
                start = time.perf_counter()
                stream = open_audio_stream(audio, sample_rate)
                state = files[index] = _FileState(stream.duration, {"open": time.perf_counter() - start})
                for order, piece in enumerate(iter_segments(stream.blocks, segment_seconds)):
                    state.parts.append(None)
                    jobs.append(_SegmentJob(index, order, piece.audio, piece.start / SAMPLE_RATE, state.timings))
                    if len(jobs) >= batch_size:
                        run_batch()
                state.read = True
            except QwenASRError as exc:
                files.pop(index, None)
                jobs[:] = [job for job in jobs if job.index != index]
                if on_error == "raise":
                    raise
                results[index] = exc
                if progress is not None:
                    progress(index, exc)
        if jobs:
            run_batch()
        finish_ready()
        return results

    def _decode_jobs(self, jobs: list["_SegmentJob"], language, context, max_new_tokens,
                     repetition_guard) -> list[Segment]:
        """Segments of a batch: silent ones skipped, the rest decoded together."""
        prompts, budgets, live = [], [], []
        segments: list[Segment | None] = []
        for job in jobs:
            embeddings = self._prompt_embeddings(job.audio, language, context, job.timings)
            if embeddings is None:
                segments.append(Segment(job.offset, job.end, "", language or "", "silence"))
                continue
            segments.append(None)
            prompts.append(embeddings)
            budgets.append(self._budget(job.audio, max_new_tokens))
            live.append(len(segments) - 1)
        if prompts:
            guard = RepetitionGuard() if repetition_guard else None
            decoded = greedy_decode_batch(self.network, prompts, budgets, self.config.eos_token_ids, guard)
            for slot, result in zip(live, decoded):
                job = jobs[slot]
                # The batch's time is shared: each row is charged an equal part.
                _add(job.timings, "prefill", result.prefill_s / len(prompts))
                _add(job.timings, "decode", result.decode_s / len(prompts))
                segments[slot] = self._segment(result, job.offset, job.end, language)
        return segments

    def _decode_with_recovery(self, samples, offset, language, context, max_new_tokens, repetition_guard,
                              recover_loops, timings, first: Segment | None = None) -> list[Segment]:
        segment = first or self.decode_segment(samples, offset, language, context, max_new_tokens,
                                               repetition_guard, timings=timings)
        budget_was_ours = max_new_tokens is None
        if not (recover_loops and segment.finish_reason in ("repetition", "length") and budget_was_ours):
            return [segment]
        retry = self.decode_segment(samples, offset, language, context, max_new_tokens, repetition_guard,
                                    repetition_penalty=RETRY_PENALTY, timings=timings)
        retry.retries, retry.remedy = 1, "repetition_penalty"
        if retry.finish_reason == "eos" or len(samples) < MIN_SPLIT_SECONDS * SAMPLE_RATE:
            return [retry]
        quarter = len(samples) // 4
        cut = quietest_cut(samples, quarter, len(samples) - quarter, int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE))
        halves = []
        for part, part_offset in ((samples[:cut], offset), (samples[cut:], offset + cut / SAMPLE_RATE)):
            half = self.decode_segment(part, part_offset, language, context, max_new_tokens, repetition_guard,
                                       repetition_penalty=RETRY_PENALTY, timings=timings)
            half.retries, half.remedy = 2, "split"
            halves.append(half)
        return halves

    def decode_segment(self, samples: np.ndarray, offset: float = 0.0, language: str | None = None,
                       context: str = "", max_new_tokens: int | None = None, repetition_guard: bool = True,
                       repetition_penalty: float = 1.0, timings: dict | None = None) -> Segment:
        """One segment of 16 kHz mono audio through mel, encoder and decoder."""
        timings = {} if timings is None else timings
        end = offset + len(samples) / SAMPLE_RATE
        embeddings = self._prompt_embeddings(samples, language, context, timings)
        if embeddings is None:
            return Segment(offset, end, "", language or "", "silence")
        guard = RepetitionGuard() if repetition_guard else None
        result = greedy_decode(self.network, embeddings[None], self._budget(samples, max_new_tokens),
                               self.config.eos_token_ids, guard, repetition_penalty=repetition_penalty)
        _add(timings, "prefill", result.prefill_s)
        _add(timings, "decode", result.decode_s)
        return self._segment(result, offset, end, language)

    def _budget(self, samples: np.ndarray, max_new_tokens: int | None) -> int:
        return token_budget(len(samples) / SAMPLE_RATE) if max_new_tokens is None else int(max_new_tokens)

    def _prompt_embeddings(self, samples: np.ndarray, language, context, timings) -> mx.array | None:
        """[P, hidden] prompt embeddings with the audio in place; None for silence."""
        if float(np.max(np.abs(samples))) < SILENCE_PEAK:
            return None
        if len(samples) < MIN_SAMPLES_AS_IS:
            samples = np.pad(samples, (0, int(PAD_TO_SECONDS * SAMPLE_RATE) - len(samples)))

        start = time.perf_counter()
        mel = log_mel_spectrogram(samples, self.config.audio.num_mel_bins)
        mx.eval(mel)
        _add(timings, "mel", time.perf_counter() - start)

        start = time.perf_counter()
        audio_embeddings = self.network.encode_audio(mel)
        mx.eval(audio_embeddings)
        _add(timings, "encoder", time.perf_counter() - start)

        num_audio_tokens = audio_token_count(mel.shape[1], self.config.audio.chunk_frames)
        prompt = self.prompt_ids(num_audio_tokens, context, language)
        return self.network.embed_prompt(prompt, audio_embeddings)[0]

    def _segment(self, result: DecodeResult, start: float, end: float, language: str | None) -> Segment:
        raw = self.tokenizer.decode(result.tokens, skip_special_tokens=True)
        detected, text = parse_output(raw, language)
        return Segment(start, end, text, detected, result.finish_reason, result.tokens, raw=raw)


def _add(timings: dict, stage: str, seconds: float) -> None:
    timings[stage] = timings.get(stage, 0.0) + seconds


def _attach_words(aligner, segments: list[Segment], audio: np.ndarray, offset: float, timings: dict) -> None:
    """Word times for each segment (cut from `audio`, which starts at `offset` seconds),
    shifted to the input's clock."""
    start = time.perf_counter()
    for segment in segments:
        first = int(round((segment.start - offset) * SAMPLE_RATE))
        last = int(round((segment.end - offset) * SAMPLE_RATE))
        words = aligner.align_samples(audio[first:last], segment.text, segment.language or None)
        segment.words = [replace(w, start=w.start + segment.start, end=w.end + segment.start) for w in words]
    _add(timings, "align", time.perf_counter() - start)


def _with_speed(timings: dict, segments: list[Segment]) -> dict:
    """Adds decode_tokens_per_s: tokens generated per second of decoding."""
    decode = timings.get("decode", 0.0)
    tokens = sum(len(s.tokens) for s in segments)
    timings["decode_tokens_per_s"] = tokens / decode if decode > 0 else 0.0
    return timings


@dataclass
class _SegmentJob:
    index: int          # which input
    order: int          # which segment of it
    audio: np.ndarray
    offset: float
    timings: dict       # the input's timings, charged as its segments are processed

    @property
    def end(self) -> float:
        return self.offset + len(self.audio) / SAMPLE_RATE


@dataclass
class _FileState:
    duration: float
    timings: dict
    parts: list = field(default_factory=list)   # per segment: its resulting Segments, None while pending
    read: bool = False                          # all segments cut (the file is fully read)

    @property
    def complete(self) -> bool:
        return self.read and all(part is not None for part in self.parts)


_loaded: dict[tuple, ASRModel] = {}


def load_model(model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None) -> ASRModel:
    """Load (or reuse, for the same path, dtype and quantization) a model; `quantize`: 4 or 8."""
    key = (str(model), str(parse_dtype(dtype)), quantize)
    if key not in _loaded:
        _loaded.clear()  # keep at most one model in memory
        _loaded[key] = ASRModel.load(model, dtype, quantize)
    return _loaded[key]


def transcribe(audio, *, model: str | Path | ASRModel = DEFAULT_MODEL, language: str | None = None,
               context: str = "", dtype=None, quantize: int | None = None, max_new_tokens: int | None = None,
               sample_rate: int | None = None, **options) -> Transcription | list[Transcription]:
    """Transcribe an audio file path or array (with `sample_rate`), or a list of them.

    `model` is a hub id, a local directory, or an `ASRModel` from `load_model()` (`dtype` and
    `quantize` apply when it is loaded here). A list in
    gives a list out, in the same order. Other keyword options go to `ASRModel.transcribe`
    (segment_seconds, repetition_guard, recover_loops).
    """
    if not isinstance(model, ASRModel):
        if options.get("on_error", "raise") == "raise":
            _check_paths(audio if isinstance(audio, list) else [audio])   # before a model download
        model = load_model(model, dtype, quantize)
    kwargs = dict(sample_rate=sample_rate, language=language, context=context, max_new_tokens=max_new_tokens,
                  **options)
    if isinstance(audio, list):
        return model.transcribe_many(audio, **kwargs)
    return model.transcribe(audio, **kwargs)


def _check_paths(sources: list) -> None:
    """A missing audio file is reported before the model is loaded (maybe downloaded)."""
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
            raise AudioError(f"{os.fspath(source)}: no such file")
