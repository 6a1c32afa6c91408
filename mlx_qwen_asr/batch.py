"""Batched transcription: the pieces of several inputs decoded together, up to
`batch_size` rows at a time, each input's result equal to its transcription alone.

Inputs are read and cut in order; their pieces queue up as jobs; whenever `batch_size`
are queued (and at the end) they are decoded as one batch, and every input whose pieces
are all done is finished, in input order of completion.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .aligner import get_aligner
from .audio import SAMPLE_RATE
from .decoding import RepetitionGuard, greedy_decode_batch
from .errors import QwenASRError
from .limits import check_context
from .options import TranscribeOptions
from .languages import forced_language, normalize_languages
from .results import FINISH_LENGTH, FINISH_REPETITION, FINISH_SILENCE, Segment, Transcription
from .cutting import iter_pieces
from .model_input import add_time, asr_prompts
from .transcribe import ASRModel, attach_words, open_speech_blocks, with_speed

DEFAULT_BATCH_SIZE = 8


def transcribe_batch(model: ASRModel, audios: list, options: TranscribeOptions | None = None, *,
                     batch_size: int | None = None, on_error: str = "raise", sample_rate: int | None = None,
                     progress=None, on_segment=None, on_text=None, **changes) -> list:
    """Transcribe several inputs (paths or arrays with `sample_rate`), decoding up to
    `batch_size` pieces (of any of them) together (default 8; 1 for a model loaded with
    `low_memory`, as each row holds its own key/value cache). Each result equals
    `model.transcribe` of that input alone.

    `on_error="raise"` stops at the first bad input; `"return"` puts its exception in the
    result list instead, so one bad file does not stop the others. `progress`, if given, is
    called as progress(index, result) when input `index` is done; `on_segment`, if given,
    as on_segment(index, end_seconds, duration) when one of its segments is; `on_text`, if
    given, as on_text(index, text) with each segment's text in order, as soon as it and all
    before it are decoded (the command line prints them so; joined by `join_texts` they make
    the result's text).
    """
    if on_error not in ("raise", "return"):
        raise ValueError('on_error must be "raise" or "return"')
    if batch_size is None:
        batch_size = 1 if model.low_memory else DEFAULT_BATCH_SIZE
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    options = TranscribeOptions.build(options, **changes)
    normalize_languages(options.language, model.config.support_languages)   # this model's languages
    check_context(model.tokenizer, options.context)
    run = _BatchRun(model, audios, options, sample_rate, progress, on_segment, on_text)
    for index, audio in enumerate(audios):
        try:
            run.read(index, audio, batch_size)
        except QwenASRError as exc:
            run.drop(index)
            if on_error == "raise":
                raise
            run.results[index] = exc
            if progress is not None:
                progress(index, exc)
    if run.jobs:
        run.decode_queued()
    run.finish_ready()
    return run.results


@dataclass
class PieceJob:
    """One piece of an input to decode: its audio, where it starts, the timings it is charged to."""

    index: int          # which input
    order: int          # which piece of it
    audio: np.ndarray
    offset: float
    timings: dict       # the input's timings, charged as its pieces are processed

    @property
    def end(self) -> float:
        return self.offset + len(self.audio) / SAMPLE_RATE


@dataclass
class _InputState:
    duration: float
    timings: dict
    parts: list = field(default_factory=list)   # per piece: its resulting Segments, None while pending
    read: bool = False                          # all pieces cut (the input is fully read)
    speech: object = None                       # with skip_silence: the vad.SpeechMap back to the input's clock
    passed_on: int = 0                          # pieces whose text went to on_text

    @property
    def complete(self) -> bool:
        return self.read and all(part is not None for part in self.parts)


class _BatchRun:
    """The queue of piece jobs and the inputs still in progress of one transcribe_batch call."""

    def __init__(self, model: ASRModel, audios: list, options: TranscribeOptions, sample_rate, progress,
                 on_segment=None, on_text=None):
        self.model, self.audios, self.options = model, audios, options
        self.sample_rate, self.progress, self.on_segment = sample_rate, progress, on_segment
        self.on_text = on_text
        self.aligner = get_aligner(options.aligner, model.dtype) if options.word_timestamps else None
        self.results: list = [None] * len(audios)
        self.jobs: list[PieceJob] = []
        self.inputs: dict[int, _InputState] = {}

    def read(self, index: int, audio, batch_size: int) -> None:
        """Cut input `index` into piece jobs, decoding a batch whenever `batch_size` are queued."""
        start = time.perf_counter()
        stream, speech = open_speech_blocks(audio, self.sample_rate, self.options)
        state = self.inputs[index] = _InputState(stream.duration, {"open": time.perf_counter() - start}, speech=speech)
        for order, piece in enumerate(iter_pieces(stream.blocks, self.options.segment_seconds)):
            state.parts.append(None)
            self.jobs.append(PieceJob(index, order, piece.audio, piece.start / SAMPLE_RATE, state.timings))
            if len(self.jobs) >= batch_size:
                self.decode_queued()
        state.read = True

    def drop(self, index: int) -> None:
        """Forget a bad input and its queued jobs."""
        self.inputs.pop(index, None)
        self.jobs[:] = [job for job in self.jobs if job.index != index]

    def decode_queued(self) -> None:
        model, options = self.model, self.options
        for job, segment in zip(self.jobs, decode_jobs(model, self.jobs, [options] * len(self.jobs))):
            state = self.inputs[job.index]
            parts = [segment]
            if options.recover_loops and options.max_new_tokens is None and segment.finish_reason in (FINISH_REPETITION, FINISH_LENGTH):
                parts = model.decode_with_recovery(job.audio, job.offset, options, state.timings, first=segment)
            if self.aligner is not None:
                attach_words(self.aligner, parts, job.audio, job.offset, state.timings)
            state.parts[job.order] = parts
            if self.on_segment is not None:   # on the input's clock, also with skip_silence
                end = job.end if state.speech is None else state.speech.to_input(job.end, end=True)
                self.on_segment(job.index, end, state.duration)
            self.pass_on_text(job.index, state)
        self.jobs.clear()
        self.finish_ready()

    def pass_on_text(self, index: int, state: _InputState) -> None:
        """The texts of input `index`'s pieces that are decoded with all before them, in order."""
        if self.on_text is None:
            return
        while state.passed_on < len(state.parts) and state.parts[state.passed_on] is not None:
            for segment in state.parts[state.passed_on]:
                self.on_text(index, segment.text)
            state.passed_on += 1

    def finish_ready(self) -> None:
        for index in [i for i, state in self.inputs.items() if state.complete]:
            state = self.inputs.pop(index)
            segments = [seg for part in state.parts for seg in part]
            if state.speech is not None:
                state.speech.remap(segments)
            result = Transcription.from_segments(segments, state.duration, with_speed(state.timings, segments))
            result.source = self.audios[index] if self.sample_rate is None else (self.audios[index], self.sample_rate)
            if self.options.diarize is not None:
                from .speakers.attach import diarize_result

                diarize_result(result, self.audios[index], self.sample_rate, self.options.diarize)
            self.results[index] = result
            if self.progress is not None:
                self.progress(index, result)


def decode_jobs(model: ASRModel, jobs: list[PieceJob], options: list[TranscribeOptions]) -> list[Segment]:
    """Segments of a batch, job i decoded with `options[i]` (the server batches requests
    with different languages, contexts and budgets): silent ones skipped, the rest decoded
    together, each row exactly as it would be alone."""
    segments: list[Segment | None] = []
    prompts, budgets, guards, choices, slots, live = [], [], [], [], [], []
    encoded = asr_prompts(model, [job.audio for job in jobs], [o.context for o in options],
                          [forced_language(o.language) for o in options], [job.timings for job in jobs])
    for job, row_options, prompt in zip(jobs, options, encoded):
        if prompt is None:
            segments.append(Segment(job.offset, job.end, "", forced_language(row_options.language) or "", FINISH_SILENCE))
            continue
        segments.append(None)
        prompts.append(prompt[1])
        budgets.append(model.budget(job.audio, row_options))
        guards.append(RepetitionGuard() if row_options.repetition_guard else None)
        choices.append(model.header_choices(row_options.language))
        slots.append(model.language_slot(row_options.language))
        live.append(len(segments) - 1)
    if prompts:
        decoded = greedy_decode_batch(model.network, prompts, budgets, model.config.eos_token_ids, guards,
                                      header_choices=choices, no_speech_ids=model.no_speech_ids, slots=slots)
        for slot, result in zip(live, decoded):
            job = jobs[slot]
            # The batch's time is shared: each row is charged an equal part.
            add_time(job.timings, "prefill", result.prefill_s / len(prompts))
            add_time(job.timings, "decode", result.decode_s / len(prompts))
            segments[slot] = model.segment(result, job.offset, job.end, options[slot], job.audio)
    return segments
