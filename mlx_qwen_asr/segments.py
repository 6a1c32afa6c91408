"""Pieces of audio to segments: the work below the schedulers.

`batch.py` (the library) and `frontends/server/worker.py` (the server) decide which pieces
are decoded together; both hand them here. A piece is decoded (alone, or with others as one
batch, each row with its own options), turned into a `Segment`, given the loop remedies and
word times (`finish_piece`), and filed in its input's `InputSegments` until the input is
complete. `model` is an ASRModel (transcribe.py) throughout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from .audio.blocks import open_audio_blocks
from .audio.cutting import ENERGY_WINDOW_SECONDS, quietest_cut
from .audio.load import SAMPLE_RATE
from .confidence import attach_confidence, is_no_speech, span_probability
from .decoding import DecodeResult, RepetitionGuard, greedy_decode, greedy_decode_batch, token_budget
from .languages import forced_language
from .model_input import add_time, asr_prompt, asr_prompts
from .options import TranscribeOptions
from .prompt import ASR_TEXT_TAG, transcript_text
from .results import (FINISH_EOS, FINISH_LENGTH, FINISH_NO_SPEECH, FINISH_REPETITION, FINISH_SILENCE, Segment,
                      Transcription)

# Loop remedies: first a repetition penalty, then (segments this long or longer) two halves.
RETRY_PENALTY = 1.1
MIN_SPLIT_SECONDS = 2.0
# A loop the model ends itself ("a cool table a cool table ..." then EOS, typically over
# silence) never reaches the decoding guard's bar; the finished tokens are checked with a
# lower one: a pattern repeating 4 times at the tail (a single token 6 times). The trained
# fixture's held-out speech never meets it.
EOS_LOOP_GUARD = RepetitionGuard(short_period=1, short_repeats=6, long_repeats=4)


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


def open_speech_blocks(audio, sample_rate, options: TranscribeOptions):
    """The input's block stream, and with `skip_silence` only its speech plus the map
    (vad.SpeechMap) back to the input's clock (None without)."""
    stream = open_audio_blocks(audio, sample_rate)
    if not options.skip_silence:
        return stream, None
    from .audio.vad import speech_only

    return speech_only(stream)


def budget(samples: np.ndarray, options: TranscribeOptions) -> int:
    """Tokens a segment may generate: the option, else scaled to its duration."""
    return token_budget(len(samples) / SAMPLE_RATE) if options.max_new_tokens is None else int(options.max_new_tokens)


def decode_piece(model, samples: np.ndarray, offset: float = 0.0, options: TranscribeOptions | None = None, *,
                 repetition_penalty: float = 1.0, timings: dict | None = None, **changes) -> Segment:
    """One piece of 16 kHz mono audio through mel, encoder and decoder."""
    options = TranscribeOptions.build(options, **changes)
    timings = {} if timings is None else timings
    end = offset + len(samples) / SAMPLE_RATE
    prompt = asr_prompt(model, samples, options.context, forced_language(options.language), timings)
    if prompt is None:
        return Segment(offset, end, "", forced_language(options.language) or "", FINISH_SILENCE)
    guard = RepetitionGuard() if options.repetition_guard else None
    result = greedy_decode(model.network, prompt[1][None], budget(samples, options),
                           model.config.eos_token_ids, guard, repetition_penalty=repetition_penalty,
                           header_choices=model.header_choices(options.language),
                           no_speech_ids=model.no_speech_ids, slot=model.language_slot(options.language))
    add_time(timings, "prefill", result.prefill_s)
    add_time(timings, "decode", result.decode_s)
    return to_segment(model, result, offset, end, options, samples)


def decode_jobs(model, jobs: list[PieceJob], options: list[TranscribeOptions]) -> list[Segment]:
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
        budgets.append(budget(job.audio, row_options))
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
            segments[slot] = to_segment(model, result, job.offset, job.end, options[slot], job.audio)
    return segments


def to_segment(model, result: DecodeResult, start: float, end: float, options: TranscribeOptions,
               samples: np.ndarray | None = None) -> Segment:
    """The Segment a decoding result makes: text parsed, language found, confidence
    (confidence.py) attached; with the options' repetition guard, one that ended in a loop
    at EOS finishes as "repetition"; dropped as no speech if the options' gate says so
    (given the segment's audio, `samples`, the gate may listen to it too)."""
    raw = model.tokenizer.decode(result.tokens, skip_special_tokens=True)
    forced = forced_language(options.language)
    detected, text = transcript_text(raw, forced)
    finish = result.finish_reason
    if options.repetition_guard and finish == FINISH_EOS and ends_in_loop(result.tokens):
        finish = FINISH_REPETITION
    # A detected language's header ("language X<asr_text>") is generated; a forced one is in the prompt.
    tag = model.tokenizer.token_to_id(ASR_TEXT_TAG)
    header = result.tokens.index(tag) + 1 if forced is None and tag in result.tokens else 0
    segment = Segment(start, end, text, detected, finish, result.tokens[header:], raw=raw,
                      generated=len(result.tokens))
    attach_confidence(segment, result, header, model.tokenizer, model.language_token)
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


def finish_piece(model, segment: Segment, job: PieceJob, options: TranscribeOptions, aligner=None) -> list[Segment]:
    """A decoded piece's final segments: the loop remedies where it needs them
    (`decode_with_recovery`), then word times if an aligner is given."""
    parts = decode_with_recovery(model, segment, job.audio, job.offset, options, job.timings)
    if aligner is not None:
        attach_words(aligner, parts, job.audio, job.offset, job.timings)
    return parts


def decode_with_recovery(model, segment: Segment, samples: np.ndarray, offset: float, options: TranscribeOptions,
                         timings: dict) -> list[Segment]:
    """A decoded piece as it is, unless it looped or hit its default budget and
    `recover_loops` is on: then decoded again with a repetition penalty, then in two halves."""
    budget_was_ours = options.max_new_tokens is None
    if not (options.recover_loops and segment.finish_reason in (FINISH_REPETITION, FINISH_LENGTH) and budget_was_ours):
        return [segment]
    retry = decode_piece(model, samples, offset, options, repetition_penalty=RETRY_PENALTY, timings=timings)
    retry.retries, retry.remedy = 1, "repetition_penalty"
    if retry.finish_reason == FINISH_EOS or len(samples) < MIN_SPLIT_SECONDS * SAMPLE_RATE:
        return [retry]
    quarter = len(samples) // 4
    cut = quietest_cut(samples, quarter, len(samples) - quarter, int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE))
    halves = []
    for part, part_offset in ((samples[:cut], offset), (samples[cut:], offset + cut / SAMPLE_RATE)):
        half = decode_piece(model, part, part_offset, options, repetition_penalty=RETRY_PENALTY, timings=timings)
        half.retries, half.remedy = 2, "split"
        halves.append(half)
    return halves


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


@dataclass(eq=False)
class InputSegments:
    """One input's segments, filed piece by piece as its pieces are finished (in any order)."""

    duration: float
    timings: dict = field(default_factory=dict)   # charged as its pieces are processed
    parts: list = field(default_factory=list)     # per piece: its Segments, None while pending
    read: bool = False                            # every piece is known (the input is fully cut)
    speech: object = None                         # with skip_silence: the vad.SpeechMap back to the input's clock
    passed_on: int = 0                            # leading pieces already handed on in order

    def add_piece(self) -> int:
        """A new pending piece; its order."""
        self.parts.append(None)
        return len(self.parts) - 1

    def put(self, order: int, segments: list[Segment]) -> None:
        self.parts[order] = segments

    @property
    def complete(self) -> bool:
        return self.read and all(part is not None for part in self.parts)

    def newly_in_order(self) -> list[list[Segment]]:
        """The parts of pieces now finished with all before them, not handed on before:
        what a caller printing or reporting in order can pass on now."""
        start = self.passed_on
        while self.passed_on < len(self.parts) and self.parts[self.passed_on] is not None:
            self.passed_on += 1
        return self.parts[start:self.passed_on]

    def in_order(self) -> list[Segment]:
        """The segments of the pieces handed on so far, in order."""
        return [segment for part in self.parts[:self.passed_on] for segment in part]

    def transcription(self) -> Transcription:
        """The complete input's result, on the input's clock."""
        segments = [segment for part in self.parts for segment in part]
        if self.speech is not None:
            self.speech.remap(segments)
        return Transcription.from_segments(segments, self.duration, with_speed(self.timings, segments))
