"""Batched transcription: the pieces of several inputs decoded together, up to
`batch_size` rows at a time, each input's result equal to its transcription alone.

Inputs are read and cut in order; their pieces queue up as jobs; whenever `batch_size`
are queued (and at the end) they are decoded as one batch, and every input whose pieces
are all done is finished, in input order of completion.
"""

from __future__ import annotations

import time

from .aligner import get_aligner, named_aligner
from .audio.cutting import iter_pieces
from .audio.load import SAMPLE_RATE
from .errors import QwenASRError
from .languages import normalize_languages
from .limits import check_context
from .options import TranscribeOptions
from .segments import InputSegments, PieceJob, decode_jobs, finish_piece, open_speech_blocks

DEFAULT_BATCH_SIZE = 8


def transcribe_batch(model, audios: list, options: TranscribeOptions | None = None, *,
                     batch_size: int | None = None, on_error: str = "raise", sample_rate: int | None = None,
                     progress=None, on_segment=None, on_text=None, **changes) -> list:
    """Transcribe several inputs (paths or arrays with `sample_rate`), decoding up to
    `batch_size` pieces (of any of them) together (default 8; 1 for a model loaded with
    `low_memory`, as each row holds its own key/value cache). `model` is an ASRModel; each
    result equals `model.transcribe` of that input alone.

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
    options = TranscribeOptions.build(options, **named_aligner(changes))
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


class _BatchRun:
    """The queue of piece jobs and the inputs still in progress of one transcribe_batch call."""

    def __init__(self, model, audios: list, options: TranscribeOptions, sample_rate, progress,
                 on_segment=None, on_text=None):
        self.model, self.audios, self.options = model, audios, options
        self.sample_rate, self.progress, self.on_segment = sample_rate, progress, on_segment
        self.on_text = on_text
        self.aligner = get_aligner(options.aligner, model.dtype) if options.word_timestamps else None
        self.results: list = [None] * len(audios)
        self.jobs: list[PieceJob] = []
        self.inputs: dict[int, InputSegments] = {}

    def read(self, index: int, audio, batch_size: int) -> None:
        """Cut input `index` into piece jobs, decoding a batch whenever `batch_size` are queued."""
        start = time.perf_counter()
        stream, speech = open_speech_blocks(audio, self.sample_rate, self.options)
        state = self.inputs[index] = InputSegments(stream.duration, {"open": time.perf_counter() - start},
                                                   speech=speech)
        for piece in iter_pieces(stream.blocks, self.options.segment_seconds):
            order = state.add_piece()
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
            state.put(job.order, finish_piece(model, segment, job, options, self.aligner))
            if self.on_segment is not None:   # on the input's clock, also with skip_silence
                end = job.end if state.speech is None else state.speech.to_input(job.end, end=True)
                self.on_segment(job.index, end, state.duration)
            self.pass_on_text(job.index, state)
        self.jobs.clear()
        self.finish_ready()

    def pass_on_text(self, index: int, state: InputSegments) -> None:
        """The texts of input `index`'s pieces that are decoded with all before them, in order."""
        if self.on_text is None:
            return
        for part in state.newly_in_order():
            for segment in part:
                self.on_text(index, segment.text)

    def finish_ready(self) -> None:
        for index in [i for i, state in self.inputs.items() if state.complete]:
            result = self.inputs.pop(index).transcription()
            result.source = self.audios[index] if self.sample_rate is None else (self.audios[index], self.sample_rate)
            if self.options.diarize is not None:
                from .speakers.attach import diarize_result

                diarize_result(result, self.audios[index], self.sample_rate, self.options.diarize)
            self.results[index] = result
            if self.progress is not None:
                self.progress(index, result)


# --- Many files, robustly: what folder runs and their Ray workers transcribe -------------
# (imports here keep this section whole for readers of the scheduler above)

from collections.abc import Iterator  # noqa: E402

import soundfile as sf  # noqa: E402

from .errors import SetupError  # noqa: E402

# Files up to this long are transcribed together (so batched decoding can fill a batch
# across files); longer ones, or ones whose length libsndfile cannot tell, go alone (a
# caller can show their progress per segment).
GROUP_MAX_SECONDS = 300.0
GROUP_FILES = 8


def file_groups(paths: list) -> Iterator[list[int]]:
    """Indices of `paths` in the groups `transcribe_files` takes, in order: up to GROUP_FILES
    short files together, each long or unmeasurable one alone. Each file's header is read
    as its group is drawn."""
    group = []
    for index, path in enumerate(paths):
        seconds = _probe_seconds(path)
        if seconds is not None and seconds <= GROUP_MAX_SECONDS:
            group.append(index)
            if len(group) == GROUP_FILES:
                yield group
                group = []
            continue
        if group:
            yield group
            group = []
        yield [index]
    if group:
        yield group


def _probe_seconds(path) -> float | None:
    try:
        info = sf.info(str(path))
    except Exception:
        return None
    return info.frames / info.samplerate if info.samplerate > 0 else None


def transcribe_files(model, paths: list, options: TranscribeOptions, progress=None) -> list:
    """A `Transcription` or the exception for each of `paths` (audio files) with a loaded
    `model`: together when there are several (batched decoding), one by one when some file
    among them is bad, so that one bad file fails alone. A SetupError, wrong for every
    file, is raised. `progress(path, done_seconds, total_seconds)` is called as the
    segments of a file transcribed alone are done."""
    if len(paths) > 1:
        try:
            results = model.transcribe_many([str(path) for path in paths], options=options)
            if len(results) == len(paths):
                return results
        except SetupError:
            raise
        except Exception:
            pass   # some file in the group is bad: find out which, one by one
    return [_transcribe_file(model, path, options, progress) for path in paths]


def _transcribe_file(model, path, options: TranscribeOptions, progress):
    def report(done, total):
        progress(path, done, total)

    try:
        return model.transcribe(str(path), options=options, progress=report if progress else None)
    except SetupError:
        raise
    except Exception as exc:
        return exc
