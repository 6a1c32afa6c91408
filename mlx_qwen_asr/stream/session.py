"""Streaming transcription: feed audio as it arrives, get committed (append-only) and
partial text back, without limit, in flat memory.

`StreamingSession` schedules the steps, commits what two steps agree on, and closes a
region past `max_region_seconds` (regions.py); each step is decoded by decoder.py (encoder
and KV-cache reuse, a draft), text and word times are kept by text.py. The design and its
reasons: docs/architecture.md, "Streaming".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..aligner import get_aligner, named_aligner
from ..audio.load import SAMPLE_RATE
from ..audio.blocks import ChunkInput, open_audio_blocks
from ..decoding import token_budget
from ..errors import OptionError
from ..limits import check_context
from ..model_input import is_silent
from ..options import TranscribeOptions, check_streamable
from ..languages import forced_language, normalize_languages
from ..results import join_texts
from .decoder import StreamDecoder
from .regions import region_cut
from .text import StreamText, StreamWords
from ..segments import loop_end
from ..transcribe import ASRModel

STEP_SECONDS = 2.0
UNFIXED_STEPS = 2
UNFIXED_TOKENS = 5
# The stream's first unfixed steps come sooner (at 1.5 and 3 s, then the 2 s grid resumes at
# 4 s), so the first words can be committed 3 s into the stream; the prefix is still first
# fed back at 4 s, as the official policy does.
FIRST_COMMIT_SECONDS = 3.0
# A region is closed past 20 s, at a pause 5-15 s before its end. `keep` must exceed how far
# committed text lags the audio (the unfixed tokens, agreement, one step): with 3 s, words
# before the cut were often not committed yet and the split went wrong (the trained
# fixture's held-out 7-39 s clips: 27 % WER at 12/3 s against 0.4 % at 16/4 and 20/5 s);
# regions of 22-24 s reach lengths where the fixture starts looping at the audio's end
# (16-22 % on its 37-39 s clips).
MAX_REGION_SECONDS = 20.0
KEEP_SECONDS = 5.0


@dataclass
class StreamUpdate:
    committed: str          # stable text so far: never rewritten, only extended
    partial: str            # the tail after it, which may still change
    new_committed: str      # what this update added to `committed`
    audio_seconds: float    # audio consumed so far
    language: str = ""
    final: bool = False
    words: list | None = None   # committed words with times (WordTiming), with word_timestamps=True

    @property
    def text(self) -> str:
        return join_texts([self.committed, self.partial])


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@dataclass(frozen=True)
class StepSchedule:
    """Where a session's steps end, in samples of the stream."""
    step: int               # the grid
    unfixed_steps: int
    first_commit: int       # the stream's first unfixed_steps come evenly up to here
    catch_up: bool
    max_catch_up: int       # a catch-up step spans at most this

    @classmethod
    def build(cls, step_seconds: float, unfixed_steps: int, first_commit_seconds: float, catch_up: bool,
              keep: int) -> StepSchedule:
        step = int(step_seconds * SAMPLE_RATE)
        # A merged step spans at most `keep` (4 s with the defaults): enough when a step costs
        # somewhat more than its audio, and regions stay the length the split was tuned at
        # (the trained fixture's held-out clips: 0.4 % WER with 4 s merged steps, as regular
        # ones; 6.6 % with 10 s). A machine far slower than real time falls behind anyway.
        max_catch_up = max(step, keep // step * step)
        first_commit = min(int(first_commit_seconds * SAMPLE_RATE), unfixed_steps * step)
        return cls(step, unfixed_steps, first_commit, catch_up, max_catch_up)

    def next_end(self, decoded: int, consumed: int, at_stream_start: bool) -> int:
        """The stream position the step after `decoded` (samples) decodes up to: the next
        multiple of the step length; with catch_up, the last one that has arrived of those
        (at most `max_catch_up` ahead); at the stream's start (no region closed yet), its
        first `unfixed_steps` steps evenly up to `first_commit`, where text can first be
        committed (3 s, not 2 steps = 4 s)."""
        end = (decoded // self.step + 1) * self.step
        behind = self.catch_up and consumed >= end + self.step
        if behind:
            end = min(consumed, decoded + self.max_catch_up) // self.step * self.step
        if at_stream_start and decoded < self.first_commit and not behind:
            return (decoded * self.unfixed_steps // self.first_commit + 1) * self.first_commit // self.unfixed_steps
        return end


class StreamingSession:
    """Feed audio as it arrives; get committed and partial text back.

        session = StreamingSession(model)
        for chunk in chunks:
            update = session.feed(chunk, 16000)
            print(update.committed, "|", update.partial)
        final = session.finish()
    """

    def __init__(self, model: ASRModel, options: TranscribeOptions | None = None, *,
                 step_seconds: float = STEP_SECONDS, unfixed_steps: int = UNFIXED_STEPS,
                 unfixed_tokens: int = UNFIXED_TOKENS, max_region_seconds: float = MAX_REGION_SECONDS,
                 keep_seconds: float = KEEP_SECONDS, max_step_tokens: int | None = None,
                 catch_up: bool = False, first_commit_seconds: float = FIRST_COMMIT_SECONDS, **changes):
        """`options` and the keyword `changes` to it (see TranscribeOptions): language, context,
        word_timestamps and aligner apply; options only offline transcription uses are refused.

        `max_step_tokens` caps the tokens generated per step (default: the region's
        budget); benchmarks on random weights, which never say end-of-text, use it to
        model a real transcript's pace.

        `catch_up` is for live audio: when a feed brings several steps' worth (the machine
        fell behind while a step ran), they are decoded as one longer step, up to
        `keep_seconds`, instead of one after another. A step's cost grows little with its length,
        so on a machine somewhat slower than real time the delay stays bounded instead of
        growing without end. Off by default: then the text does not depend on how audio is fed."""
        options = check_streamable(TranscribeOptions.build(options, **named_aligner(changes)))
        check_context(model.tokenizer, options.context)
        self.options = options
        self.model = model
        self.max_step_tokens = max_step_tokens
        languages = normalize_languages(options.language, model.config.support_languages)
        self.language = forced_language(languages)
        self.decoder = StreamDecoder(model, options.context, self.language, model.header_choices(languages))
        self.text = StreamText(model.tokenizer, self.language)
        aligner = get_aligner(options.aligner, model.dtype) if options.word_timestamps else None
        self.words = StreamWords(aligner, self.text) if aligner is not None else None
        self.unfixed_steps = unfixed_steps
        self.unfixed_tokens = unfixed_tokens
        self.max_region = int(max_region_seconds * SAMPLE_RATE)
        self.keep = int(keep_seconds * SAMPLE_RATE)
        self.schedule = StepSchedule.build(step_seconds, unfixed_steps, first_commit_seconds, catch_up, self.keep)
        if self.max_region < 4 * self.keep:
            raise ValueError("max_region_seconds must be at least four times keep_seconds")
        self.input = ChunkInput()               # chunks of any rate -> 16 kHz mono, in order
        self.region = np.zeros(0, np.float32)   # audio of the current region
        self.unprocessed = 0                    # samples of it not yet decoded
        self.consumed = 0                       # samples fed so far
        self.region_tokens: list[int] = []      # committed tokens of this region (with the language header)
        self.output_tokens: list[int] = []      # last output of this region (committed + partial)
        self.steps_in_region = 0
        self.carried_tokens = 0                 # of region_tokens, those carried over from the last region
        self.region_decoded = False             # a step has decoded this region (see _run_step)
        self.finished = False

    # ------------------------------------------------------------------ public

    def feed(self, pcm, sample_rate: int = SAMPLE_RATE) -> StreamUpdate:
        """Add a chunk: float samples in [-1, 1], or integer PCM scaled by its type's range
        (int16 / 32768; unlike a whole array, which is divided by its peak: audio.load_audio),
        1-D or (frames, channels), at any positive rate (it may change between chunks)."""
        if self.finished:
            raise RuntimeError("this session is finished; start a new StreamingSession")
        samples = self.input.push(pcm, sample_rate)
        self.region = np.concatenate([self.region, samples])
        self.unprocessed += len(samples)
        self.consumed += len(samples)
        before = self._committed_text()
        while (end := self._next_step_end()) <= self.consumed:
            last_end = len(self.region) - self.unprocessed   # where the last step ended
            self.unprocessed = self.consumed - end
            self._run_step(upto=len(self.region) - self.unprocessed, last_end=last_end)
            self._align_committed(len(self.region) - self.unprocessed)
        return self._update(before)

    def finish(self) -> StreamUpdate:
        """Flush what is left and return the final text (everything committed)."""
        if self.finished:
            raise RuntimeError("this session is already finished")
        before = self._committed_text()
        tail = self.input.flush()
        self.region = np.concatenate([self.region, tail])
        self.consumed += len(tail)
        self._run_step(upto=len(self.region), final=True)
        self.finished = True
        self.region_tokens = list(self.output_tokens)
        self._align_committed(len(self.region))
        update = self._update(before)
        update.final = True
        return update

    # ------------------------------------------------------------------ steps

    def _next_step_end(self) -> int:
        at_stream_start = len(self.region) == self.consumed   # no region closed yet
        return self.schedule.next_end(self.consumed - self.unprocessed, self.consumed, at_stream_start)

    def _run_step(self, upto: int, final: bool = False, last_end: int = 0) -> None:
        # A region is closed once a step has decoded it. The cut is placed as after a regular
        # step from the last one, even when a catch-up step brings more: the text, the
        # split's evidence, covers audio up to the last step only.
        if upto > self.max_region and self.region_decoded and not final:
            if len(self.region_tokens) == self.carried_tokens and self.output_tokens[:len(self.region_tokens)] == self.region_tokens:
                # Nothing committed since the region began (a catch-up step brought it past its
                # length at once): the last step's text is the evidence, or its words are lost.
                self.region_tokens = list(self.output_tokens)
            self._close_region(upto, min(upto, last_end + self.schedule.step))
        audio = self.region[:upto]
        self.steps_in_region += 1
        self.region_decoded = True
        if is_silent(audio):
            self.output_tokens = list(self.region_tokens)   # silence adds nothing
            return
        fixed = self.steps_in_region > self.unfixed_steps or bool(self.region_tokens) or final
        prefix = list(self.region_tokens) if fixed else []
        generated = self.decoder.decode(audio, prefix, self.output_tokens, self.max_step_tokens)
        # A loop at the end (typically over silence, also one the model ends with EOS) is said
        # once: its repeats are never shown or committed.
        cut = loop_end(prefix + generated)
        if cut is not None:
            generated = generated[:max(0, cut - len(prefix))]
        previous, self.output_tokens = self.output_tokens, prefix + generated
        if self.steps_in_region >= self.unfixed_steps and not final:
            candidate = self.output_tokens[:max(0, len(self.output_tokens) - self.unfixed_tokens)]
            self._commit(candidate[:common_prefix(candidate, previous)])

    def _commit(self, candidate: list[int]) -> None:
        candidate = self.text.committable(candidate)
        if len(candidate) > len(self.region_tokens) and candidate[:len(self.region_tokens)] == self.region_tokens:
            self.region_tokens = candidate

    def _close_region(self, upto: int, reference: int) -> None:
        """Archive the start of the region up to a quiet cut, carry the rest over."""
        cut = region_cut(self.region, upto, reference, self.keep)
        closing = self.region[:cut]
        header = self.text.header_length(self.region_tokens)
        archived, carried = self.region_tokens, []
        if not is_silent(closing):
            split = len(self.region_tokens)
            if split > header:
                split = self.decoder.end_of_text(self.region, closing, self.region_tokens, header)
                # What is carried over belongs to the audio after the cut: at most its budget.
                split = max(split, len(self.region_tokens) - token_budget((upto - cut) / SAMPLE_RATE))
                split = self.text.whole_characters(self.region_tokens, split)   # none cut in half
            # (Nothing committed yet, e.g. a catch-up step brought the region past its length
            # at once: the closing audio is transcribed below, never dropped.)
            if split < len(self.region_tokens):
                archived, carried = self.region_tokens[:split], self.region_tokens[split:]
            else:
                # Decoded afresh: the closing audio is not the step the KV cache was filled for.
                archived = self.region_tokens + self.decoder.decode(closing, self.region_tokens, self.output_tokens,
                                                                    self.max_step_tokens, reuse_cache=False)
        if self.words is not None:
            self.words.close_region(archived, closing, self._region_start())
        self.text.archive(archived, continues=bool(carried))
        self.region_tokens = (self.region_tokens[:header] + carried) if carried else self.region_tokens[:header]
        if not carried and header and self.language is None:
            self.region_tokens = []   # let the next region find its own language
        self.output_tokens = list(self.region_tokens)
        self.region = self.region[cut:]
        self.decoder.reset()
        self.steps_in_region = self.unfixed_steps   # carried text is already fixed
        self.carried_tokens = len(self.region_tokens)
        self.region_decoded = False

    # ------------------------------------------------------------------ text

    def _committed_text(self) -> str:
        return self.text.joined(self.region_tokens).strip()

    def _update(self, before: str) -> StreamUpdate:
        committed = self._committed_text()
        full = self.text.joined(self.output_tokens).strip()
        partial = full[len(committed):].strip() if full.startswith(committed) else ""
        new = committed[len(before):].strip() if committed.startswith(before) else committed
        words = self.words.all() if self.words is not None else None
        return StreamUpdate(committed, partial, new, self.consumed / SAMPLE_RATE,
                            self.language or self.text.language_found, words=words)

    def _align_committed(self, upto: int) -> None:
        if self.words is not None:
            self.words.align_region(self.region_tokens, self.region[:upto], self._region_start())

    @property
    def archived(self) -> str:
        """Text of the closed regions."""
        return self.text.archived

    @property
    def archived_words(self) -> list:
        """Timed words of the closed regions (word_timestamps only)."""
        return self.words.archived if self.words is not None else []

    def _region_start(self) -> float:
        """Where the current region starts, in seconds of the stream."""
        return (self.consumed - len(self.region)) / SAMPLE_RATE


def transcribe_stream(source, model, options: TranscribeOptions | None = None, *, chunk_seconds: float = 0.5,
                      sample_rate: int | None = None, realtime: bool = False, **kwargs) -> Iterator[StreamUpdate]:
    """Stream a file (or an array with `sample_rate`) through a StreamingSession, yielding an
    update per `chunk_seconds` of audio and the final one last. `realtime` paces the feed
    at the speed of the audio, as a live source would deliver it (a live-caption demo):
    when decoding falls behind, everything that has arrived meanwhile is fed at once and
    the session catches up (see StreamingSession's `catch_up`). Other keywords: option
    changes (language, context, ...) and StreamingSession's settings."""
    import time

    if not (isinstance(chunk_seconds, (int, float)) and 0 < chunk_seconds < float("inf")):
        raise OptionError(f"chunk_seconds must be a positive number of seconds, got {chunk_seconds!r}")
    if not isinstance(model, ASRModel):
        from ..transcribe import load_model
        model = load_model(model)
    kwargs.setdefault("catch_up", realtime)
    session = StreamingSession(model, options, **kwargs)
    stream = open_audio_blocks(source, sample_rate, block_seconds=chunk_seconds)
    started = time.perf_counter()
    fed = 0.0
    pending: list[np.ndarray] = []
    step = int(chunk_seconds * SAMPLE_RATE)
    for block in stream.blocks:
        for i in range(0, len(block), step):
            piece = block[i:i + step]
            fed += len(piece) / SAMPLE_RATE
            pending.append(piece)
            if realtime:
                delay = fed - (time.perf_counter() - started)
                if delay > 0:
                    time.sleep(delay)
                elif fed + chunk_seconds <= time.perf_counter() - started:
                    continue   # behind: the next piece has arrived too; take it along
            yield session.feed(np.concatenate(pending), SAMPLE_RATE)
            pending = []
    if pending:
        yield session.feed(np.concatenate(pending), SAMPLE_RATE)
    yield session.finish()
