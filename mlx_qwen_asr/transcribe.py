"""Offline transcription: audio -> pieces -> mel -> encoder -> prompt -> greedy decoding -> segments.

Audio is read block by block and cut at quiet moments into pieces of about 30 s; each is
transcribed on its own into a segment (its own language, token budget and finish reason)
and the segments are joined. A piece that loops or runs out of budget is decoded again
with a remedy.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import numpy as np

from .audio import SAMPLE_RATE
from .audio_blocks import open_audio_blocks
from .config import ModelConfig
from .decoding import DecodeResult, RepetitionGuard, greedy_decode, token_budget
from .errors import AudioError
from .loading import load_network, low_memory_settings, parse_dtype, refuse_aligner, resolve_model_dir
from .network import Qwen3ASR
from .model_input import add_time, asr_prompt
from .options import DEFAULT_MODEL, LoadOptions, TranscribeOptions
from .peer_layouts import stored_quantization
from .confidence import attach_confidence, is_no_speech, span_probability
from .languages import forced_language, language_set
from .prompt import ASR_TEXT_TAG, LANGUAGE_WORD, NO_SPEECH_NAME, prompt_text, transcript_text
from .results import (FINISH_EOS, FINISH_LENGTH, FINISH_NO_SPEECH, FINISH_REPETITION, FINISH_SILENCE, Segment,
                      Transcription)
from .cutting import ENERGY_WINDOW_SECONDS, quietest_cut
from .tokenizer import QwenTokenizer

# Loop remedies: first a repetition penalty, then (segments this long or longer) two halves.
RETRY_PENALTY = 1.1
MIN_SPLIT_SECONDS = 2.0
# A loop the model ends itself ("a cool table a cool table ..." then EOS, typically over
# silence) never reaches the decoding guard's bar; the finished tokens are checked with a
# lower one: a pattern repeating 4 times at the tail (a single token 6 times). The trained
# fixture's held-out speech never meets it.
EOS_LOOP_GUARD = RepetitionGuard(short_period=1, short_repeats=6, long_repeats=4)


class ASRModel:
    """A loaded Qwen3-ASR model: network, tokenizer and config. Load once, transcribe many."""

    def __init__(self, network: Qwen3ASR, tokenizer: QwenTokenizer, config: ModelConfig, path: Path, dtype: mx.Dtype,
                 quantize: int | None = None, low_memory: bool = False):
        self.network = network
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.dtype = dtype
        self.quantize = quantize
        self.low_memory = low_memory   # also: segments decoded one at a time by default
        # The output's "language" token, and what follows it for no speech ("language None").
        self.language_token = tokenizer.encode(LANGUAGE_WORD)[0]
        self.no_speech_ids = tuple(tokenizer.encode(NO_SPEECH_NAME)[:1])

    def __repr__(self) -> str:
        quantized = f", quantize={self.quantize}" if self.quantize else ""
        return f"ASRModel({str(self.path)!r}, dtype={self.dtype}{quantized})"

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None,
             low_memory: bool = False) -> "ASRModel":
        """`quantize` (4 or 8) quantizes the decoder's linear layers at that many bits once
        loaded (encoder and head at 8; quantization.py has the policy). It saves memory; on
        the CPU backend it is slower than float32 (docs/performance.md). `low_memory=True`
        picks the small-footprint recipe for this device (loading.low_memory_settings)."""
        LoadOptions(model, dtype, quantize)   # checked before anything is read
        model_dir = resolve_model_dir(model)
        config = ModelConfig.from_file(model_dir / "config.json")
        refuse_aligner(model_dir, config)
        if low_memory:
            dtype, quantize = low_memory_settings(dtype, quantize, bool(stored_quantization(model_dir, config.raw)))
        mx_dtype = parse_dtype(dtype)
        network = load_network(model_dir, config, mx_dtype, quantize=quantize)
        tokenizer = QwenTokenizer.from_model_dir(model_dir, config.raw)
        return cls(network, tokenizer, config, model_dir, mx_dtype, quantize, low_memory)

    def prompt_ids(self, num_audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
        return self.tokenizer.encode(prompt_text(num_audio_tokens, context, language))

    def header_tokens(self, language: str) -> list[int]:
        """The tokens of the output's header for `language`: "language", its name, "<asr_text>"."""
        return self.tokenizer.encode(f"{LANGUAGE_WORD} {language}{ASR_TEXT_TAG}")

    def header_choices(self, language) -> list[list[int]] | None:
        """The headers a language set (options.language) lets the model choose from; None otherwise."""
        names = language_set(language)
        return [self.header_tokens(name) for name in names] if names else None

    def language_slot(self, language) -> int | None:
        """Where, in a prompt that forces `language`, the model's language slot is (the
        position after "language", from the end); None when the language is not forced."""
        forced = forced_language(language)
        return -len(self.header_tokens(forced)) if forced else None

    def transcribe(self, audio, options: TranscribeOptions | None = None, *, sample_rate: int | None = None,
                   progress=None, batch_size: int | None = None, **changes) -> Transcription:
        """Transcribe one file path or array (with `sample_rate`), of any length.

        `options` (a TranscribeOptions; keyword `changes` override its fields, see options.py)
        say how. Audio longer than `segment_seconds` is cut at quiet moments; its segments
        are decoded `batch_size` at a time (default 8, or 1 for a model loaded with
        `low_memory`: each row holds its own cache; the text is the same either way), so
        memory stays bounded. `progress`, if given, is called as
        progress(done_seconds, total_seconds) as segments are done. An integer array is
        divided by its peak, as the official engine does (streamed chunks are scaled by
        their type's range instead: see audio.load_audio).
        """
        from .batch import transcribe_batch

        def on_segment(index, end_seconds, duration):
            progress(min(end_seconds, duration), duration)

        [result] = transcribe_batch(self, [audio], options, batch_size=batch_size, sample_rate=sample_rate,
                                    on_segment=on_segment if progress else None, **changes)
        return result

    def transcribe_many(self, audios: list, options: TranscribeOptions | None = None, *, on_error: str = "raise",
                        **kwargs) -> list:
        """`transcribe_batch(self, audios, options, ...)`: several inputs, segments decoded together.
        `on_error="return"` puts a bad input's exception in its place in the list instead of
        raising it (the others are still transcribed)."""
        from .batch import transcribe_batch

        return transcribe_batch(self, audios, options, on_error=on_error, **kwargs)

    def decode_with_recovery(self, samples, offset: float, options: TranscribeOptions, timings: dict,
                             first: Segment | None = None) -> list[Segment]:
        """One segment decoded (`first`, if it already was); if it looped or hit its default
        budget and `recover_loops` is on: again with a repetition penalty, then in two halves."""
        segment = first or self.decode_segment(samples, offset, options, timings=timings)
        budget_was_ours = options.max_new_tokens is None
        if not (options.recover_loops and segment.finish_reason in (FINISH_REPETITION, FINISH_LENGTH) and budget_was_ours):
            return [segment]
        retry = self.decode_segment(samples, offset, options, repetition_penalty=RETRY_PENALTY, timings=timings)
        retry.retries, retry.remedy = 1, "repetition_penalty"
        if retry.finish_reason == FINISH_EOS or len(samples) < MIN_SPLIT_SECONDS * SAMPLE_RATE:
            return [retry]
        quarter = len(samples) // 4
        cut = quietest_cut(samples, quarter, len(samples) - quarter, int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE))
        halves = []
        for part, part_offset in ((samples[:cut], offset), (samples[cut:], offset + cut / SAMPLE_RATE)):
            half = self.decode_segment(part, part_offset, options, repetition_penalty=RETRY_PENALTY, timings=timings)
            half.retries, half.remedy = 2, "split"
            halves.append(half)
        return halves

    def decode_segment(self, samples: np.ndarray, offset: float = 0.0, options: TranscribeOptions | None = None, *,
                       repetition_penalty: float = 1.0, timings: dict | None = None, **changes) -> Segment:
        """One segment of 16 kHz mono audio through mel, encoder and decoder."""
        options = TranscribeOptions.build(options, **changes)
        timings = {} if timings is None else timings
        end = offset + len(samples) / SAMPLE_RATE
        prompt = asr_prompt(self, samples, options.context, forced_language(options.language), timings)
        if prompt is None:
            return Segment(offset, end, "", forced_language(options.language) or "", FINISH_SILENCE)
        guard = RepetitionGuard() if options.repetition_guard else None
        result = greedy_decode(self.network, prompt[1][None], self.budget(samples, options),
                               self.config.eos_token_ids, guard, repetition_penalty=repetition_penalty,
                               header_choices=self.header_choices(options.language),
                               no_speech_ids=self.no_speech_ids, slot=self.language_slot(options.language))
        add_time(timings, "prefill", result.prefill_s)
        add_time(timings, "decode", result.decode_s)
        return self.segment(result, offset, end, options, samples)

    def budget(self, samples: np.ndarray, options: TranscribeOptions) -> int:
        """Tokens a segment may generate: the option, else scaled to its duration."""
        return token_budget(len(samples) / SAMPLE_RATE) if options.max_new_tokens is None else int(options.max_new_tokens)

    def segment(self, result: DecodeResult, start: float, end: float, options: TranscribeOptions,
                samples: np.ndarray | None = None) -> Segment:
        """The Segment a decoding result makes: text parsed, language found, confidence
        (confidence.py) attached; with the options' repetition guard, one that ended in a loop
        at EOS finishes as "repetition"; dropped as no speech if the options' gate says so
        (given the segment's audio, `samples`, the gate may listen to it too)."""
        raw = self.tokenizer.decode(result.tokens, skip_special_tokens=True)
        forced = forced_language(options.language)
        detected, text = transcript_text(raw, forced)
        finish = result.finish_reason
        if options.repetition_guard and finish == FINISH_EOS and ends_in_loop(result.tokens):
            finish = FINISH_REPETITION
        # A detected language's header ("language X<asr_text>") is generated; a forced one is in the prompt.
        tag = self.tokenizer.token_to_id(ASR_TEXT_TAG)
        header = result.tokens.index(tag) + 1 if forced is None and tag in result.tokens else 0
        segment = Segment(start, end, text, detected, finish, result.tokens[header:], raw=raw,
                          generated=len(result.tokens))
        attach_confidence(segment, result, header, self.tokenizer, self.language_token)
        if is_no_speech(segment, options.no_speech_threshold, options.logprob_threshold, samples,
                        options.min_speech_seconds):
            segment.text, segment.finish_reason = "", FINISH_NO_SPEECH
        return segment


def ends_in_loop(tokens: list[int]) -> bool:
    """The tokens end in a loop (EOS_LOOP_GUARD), maybe followed by one more (a full stop)."""
    return EOS_LOOP_GUARD.is_looping(tokens) or EOS_LOOP_GUARD.is_looping(tokens[:-1])


def loop_end(tokens: list[int]) -> int | None:
    """Where the first copy of a loop the tokens end in (`ends_in_loop`) ends: the tokens up to
    there say it once. None if they end in no loop."""
    guard = EOS_LOOP_GUARD
    for body in (tokens, tokens[:-1]):
        if not guard.is_looping(body):
            continue
        for period in range(1, guard.max_period + 1):
            span = period * guard.repeats_needed(period)
            start = len(body) - span
            if start < 0 or any(body[i] != body[i - period] for i in range(start + period, len(body))):
                continue
            while start >= period and body[start - period:start] == body[start:start + period]:
                start -= period
            return start + period
    return None


def open_speech_blocks(audio, sample_rate, options: TranscribeOptions):
    """The input's block stream, and with `skip_silence` only its speech plus the map
    (vad.SpeechMap) back to the input's clock (None without)."""
    stream = open_audio_blocks(audio, sample_rate)
    if not options.skip_silence:
        return stream, None
    from .vad import speech_only

    return speech_only(stream)


def attach_words(aligner, segments: list[Segment], audio: np.ndarray, offset: float, timings: dict) -> None:
    """Word times for each segment (cut from `audio`, which starts at `offset` seconds),
    shifted to the input's clock."""
    start = time.perf_counter()
    for segment in segments:
        first = int(round((segment.start - offset) * SAMPLE_RATE))
        last = int(round((segment.end - offset) * SAMPLE_RATE))
        words = aligner.align_samples(audio[first:last], segment.text, segment.language or None)
        segment.words = [replace(w, start=w.start + segment.start, end=w.end + segment.start,
                                 probability=span_probability(segment.word_probabilities, w.span)) for w in words]
    add_time(timings, "align", time.perf_counter() - start)


def with_speed(timings: dict, segments: list[Segment]) -> dict:
    """Adds decode_tokens_per_s: tokens generated per second of decoding."""
    decode = timings.get("decode", 0.0)
    tokens = sum(s.generated for s in segments)
    timings["decode_tokens_per_s"] = tokens / decode if decode > 0 else 0.0
    return timings


_loaded: dict[tuple, ASRModel] = {}


def load_model(model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None,
               low_memory: bool = False) -> ASRModel:
    """Load (or reuse, for the same path, dtype and quantization) a model; `quantize`: 4 or 8;
    `low_memory`: the small-footprint recipe for this device (see ASRModel.load)."""
    key = (str(model), str(parse_dtype(dtype)), quantize, low_memory)
    if key not in _loaded:
        _loaded.clear()  # keep at most one model in memory
        _loaded[key] = ASRModel.load(model, dtype, quantize, low_memory)
    return _loaded[key]


def transcribe(audio, options: TranscribeOptions | None = None, *, model: str | Path | ASRModel = DEFAULT_MODEL,
               dtype=None, quantize: int | None = None, sample_rate: int | None = None, on_error: str = "raise",
               **changes) -> Transcription | list:
    """Transcribe an audio file path or array (with `sample_rate`), or a list of them.

    `model` is a hub id, a local directory, or an `ASRModel` from `load_model()` (`dtype` and
    `quantize` apply when it is loaded here). A list in gives a list out, in the same order
    (`transcribe_batch`). `options` and the keyword `changes` to it: see TranscribeOptions.

    A bad input of a list (a missing or unreadable file, a bad array): `on_error="raise"`
    raises its exception, before the model loads where it can tell (a missing file);
    `on_error="return"` puts the exception in that input's place in the list and
    transcribes the others. A single input's error is always raised.
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f'on_error must be "raise" or "return", got {on_error!r}')
    options = TranscribeOptions.build(options, **changes)   # checked before the model loads
    if not isinstance(model, ASRModel):
        if on_error == "raise" or not isinstance(audio, list):
            _check_paths(audio if isinstance(audio, list) else [audio])   # before a model download
        model = load_model(model, dtype, quantize)
    if isinstance(audio, list):
        from .batch import transcribe_batch

        return transcribe_batch(model, audio, options, sample_rate=sample_rate, on_error=on_error)
    return model.transcribe(audio, options, sample_rate=sample_rate)


def _check_paths(sources: list) -> None:
    """A missing audio file is reported before the model is loaded (maybe downloaded)."""
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
            raise AudioError(f"{os.fspath(source)}: no such file")
