"""The one thread that runs MLX: it loads the model and does all inference.

MLX streams belong to the thread that created them (another MLX server crashed when
inference ran on a thread other than the one that made its stream, mlx-qwen3-asr#16), so
the model is created on this thread and nothing else ever touches it. The server runs it
on the main thread (`run`): MLX work done on a thread that ends before the process does
can abort the process at exit ("terminate called without an active exception"). Tests
may run it on a thread of its own (`start`). Requests reach it through a queue; each turn
of its loop first runs the queued calls (the live sessions' steps), then decodes one
batch of pieces.

Scheduling is by piece: each slot of a batch goes to the waiting request that has had the
fewest pieces decoded so far (the oldest of those), so a request that arrives while a
batch runs joins the next one ahead of any long file's later pieces, long files share the
slots in turn, and none holds every slot until it is done (even with --batch-size 1).
Each piece is decoded and finished by segments.py exactly as `ASRModel.transcribe` does it
(batched rows give the tokens of single decoding; loops and missing EOS get the same
remedies), and a request's segments are kept in the same `InputSegments`, so its transcript
is the CLI's. This module holds only the server's policy: scheduling, gathering, cancelling.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

from ...aligner import get_aligner
from ...audio.load import SAMPLE_RATE
from ...options import TranscribeOptions
from ...results import Segment, Transcription
from ...audio.cutting import AudioPiece
from ...segments import InputSegments, PieceJob, decode_jobs, finish_piece
from ...transcribe import ASRModel


logger = logging.getLogger(__name__)

# A batch about to start with fewer segments than the last one waits up to this long for
# more: clients whose requests that batch answered usually send their next one within a
# few milliseconds, and a batched decoding step costs far less than one step per row.
GATHER_SECONDS = 0.05


class QueueFull(Exception):
    """The worker already holds as many requests as it may."""


# eq=False: jobs are told apart by identity. The generated __eq__ would compare the pieces'
# numpy audio, which raises instead of answering (a cancelled job's removal once killed the thread).
@dataclass(eq=False)
class Job:
    """One offline transcription: its audio cut into segments, its options, its outcome."""

    pieces: list[AudioPiece]
    duration: float
    options: TranscribeOptions = field(default_factory=TranscribeOptions)   # the pieces are cut already
    # Called on the worker thread with (segments so far, in order) each time that run grows.
    on_progress: Callable[[list[Segment]], None] | None = None
    result: Future = field(default_factory=Future)   # -> Transcription, or the exception
    cancelled: bool = False                          # set by the client side: drop the work
    next_piece: int = 0                              # pieces handed to a batch so far
    # Per piece its Segments as they are finished; on_progress gets them in order.
    segments: InputSegments = field(init=False)

    def __post_init__(self):
        self.segments = InputSegments(self.duration, parts=[None] * len(self.pieces), read=True)

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _Call:
    fn: Callable[[ASRModel], object]
    future: Future


class Worker:
    """Owns the model. `submit` queues an offline job; `call` runs fn(model) on the thread."""

    def __init__(self, load: Callable[[], ASRModel], batch_size: int = 8, max_jobs: int = 64,
                 gather_seconds: float = GATHER_SECONDS):
        self._load = load
        self.batch_size = batch_size
        self.max_jobs = max_jobs
        self.gather_seconds = gather_seconds
        self.model: ASRModel | None = None
        self.load_error: BaseException | None = None
        self.ready = threading.Event()
        self.streams: dict[str, object] = {}   # live sessions by id; touched only on this thread
        self._inbox: queue.Queue = queue.Queue()
        self._jobs: list[Job] = []
        self._outstanding = 0                  # accepted jobs not finished yet
        self._accepted: set[Job] = set()       # the same jobs (under _lock), for refuse_all
        self._refusal: str | None = None       # set by refuse_all: every job gets CancelledJob(this)
        self._lock = threading.Lock()
        self._stopping = False
        self._loop_ended = False
        self.batches: list[int] = []           # size of each decoded batch (recent ones), for tests and stats
        self._thread = threading.Thread(target=self.run, name="mlx-worker", daemon=True)

    # ------------------------------------------------------------------ client side

    def start(self) -> None:
        """Run the worker on a thread of its own (see `run` for the server's way)."""
        self._thread.start()

    def stop(self) -> None:
        self.stop_soon()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def stop_soon(self) -> None:
        """Ask the loop to end after its current turn (callable from any thread)."""
        self._stopping = True
        self._inbox.put(None)

    def refuse_all(self, message: str) -> None:
        """Every accepted job, and every job submitted from now on, fails at once with
        CancelledJob(message), even while a batch is being decoded (callable from any thread)."""
        with self._lock:
            self._refusal = message
            jobs = list(self._accepted)
        for job in jobs:
            job.cancel()
            _fail(job.result, CancelledJob(message))
        self._inbox.put(None)   # wakes the loop, which drops their pieces

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def submit(self, job: Job) -> Future:
        with self._lock:
            if self._refusal is not None:
                job.result.set_exception(CancelledJob(self._refusal))
                return job.result
            if self._outstanding >= self.max_jobs:
                raise QueueFull(f"{self._outstanding} requests are waiting")
            self._outstanding += 1
            self._accepted.add(job)
        job.result.add_done_callback(lambda _f: self._job_done(job))
        self._inbox.put(job)
        return job.result

    def call(self, fn: Callable[[ASRModel], object]) -> Future:
        future: Future = Future()
        self._inbox.put(_Call(fn, future))
        return future

    def _job_done(self, job: Job) -> None:
        with self._lock:
            self._outstanding -= 1
            self._accepted.discard(job)

    # ------------------------------------------------------------------ worker thread

    def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Load the model and serve until `stop_soon`, on the calling thread. `on_ready` is
        called once the model is loaded; a load failure is left in `load_error`."""
        try:
            self.model = self._load()
        except BaseException as exc:  # reported by whoever waits on `ready`
            self.load_error = exc
            self.ready.set()
            return
        self.ready.set()
        if on_ready is not None:
            on_ready()
        try:
            self._loop()
        finally:
            self._loop_ended = True

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self._turn()
            except Exception as exc:  # noqa: BLE001 - a fault in one turn must not end the thread
                # The jobs of that turn cannot be trusted to finish: answer them with the error.
                logger.exception("server worker: a turn failed")
                for job in list(self._jobs):
                    self._finish(job, error=exc)
        for job in list(self._jobs):
            self._finish(job, error=CancelledJob("the server is stopping"))
        self.streams.clear()   # the live sessions' MLX state goes with the thread that made it

    def _turn(self) -> None:
        calls = self._take(block=not self._jobs)
        for call in calls:
            self._run_call(call)
        for job in [j for j in self._jobs if j.cancelled]:
            self._finish(job, error=CancelledJob("the request was cancelled"))
        if self._jobs:
            self._gather()
            self._run_batch()

    @property
    def alive(self) -> bool:
        """The loop is running (it ends only when stopped or when the model failed to load)."""
        return self.ready.is_set() and self.load_error is None and not self._loop_ended

    def _take(self, block: bool) -> list[_Call]:
        """New jobs join the list; queued calls are returned. Blocks while there is no work."""
        calls: list[_Call] = []
        while True:
            try:
                item = self._inbox.get(block=block and not calls)
            except queue.Empty:
                return calls
            if item is None:
                return calls
            if isinstance(item, Job):
                self._jobs.append(item)   # a cancelled one is finished on this turn
            else:
                calls.append(item)
            block = False

    def _gather(self) -> None:
        """Wait (at most gather_seconds) for as many segments as the last batch had, taking
        in new jobs and running queued calls meanwhile (see GATHER_SECONDS)."""
        wanted = min(self.batch_size, self.batches[-1] if self.batches else 1)
        deadline = time.monotonic() + self.gather_seconds
        while not self._stopping and self._waiting_segments() < wanted:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                return
            if item is None:
                return
            if isinstance(item, Job):
                self._jobs.append(item)
            else:
                self._run_call(item)

    def _waiting_segments(self) -> int:
        return sum(len(j.pieces) - j.next_piece for j in self._jobs if not j.cancelled)

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn(self.model))
        except BaseException as exc:  # the caller gets it; the worker goes on
            call.future.set_exception(exc)

    def _pick(self) -> list[tuple[Job, int]]:
        """Up to batch_size segments, each from the job that has had the fewest so far (the
        oldest of those): a request that arrives behind a long file gets the next free slot,
        and long files take the slots in turn."""
        picked: list[tuple[Job, int]] = []
        waiting = [j for j in self._jobs if j.next_piece < len(j.pieces) and not j.cancelled]
        while waiting and len(picked) < self.batch_size:
            job = min(waiting, key=lambda j: j.next_piece)   # min keeps the first, the oldest, of equals
            picked.append((job, job.next_piece))
            job.next_piece += 1
            if job.next_piece == len(job.pieces):
                waiting.remove(job)
        return picked

    def _run_batch(self) -> None:
        picked = self._pick()
        if not picked:
            return
        self.batches = (self.batches + [len(picked)])[-1000:]
        try:
            # The picked pieces decoded together, each with its own request's options.
            pieces = [PieceJob(0, index, job.pieces[index].audio, job.pieces[index].start / SAMPLE_RATE,
                               job.segments.timings) for job, index in picked]
            segments = decode_jobs(self.model, pieces, [job.options for job, _ in picked])
        except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the server
            for job in {id(j): j for j, _ in picked}.values():
                self._finish(job, error=exc)
            return
        for (job, index), piece, segment in zip(picked, pieces, segments):
            if job.result.done():
                continue
            try:
                options = job.options
                aligner = get_aligner(options.aligner, self.model.dtype) if options.word_timestamps else None
                job.segments.put(index, finish_piece(self.model, segment, piece, options, aligner))
            except Exception as exc:  # noqa: BLE001
                self._finish(job, error=exc)
                continue
            job.pieces[index] = None   # its audio is no longer needed
            self._report(job)

    def _report(self, job: Job) -> None:
        if job.segments.newly_in_order() and job.on_progress is not None:
            try:
                job.on_progress(job.segments.in_order())
            except Exception:  # noqa: BLE001 - a client's callback cannot stop the worker
                pass
        if job.segments.complete:
            self._finish(job, job.segments.transcription())

    def _finish(self, job: Job, result: Transcription | None = None, error: BaseException | None = None) -> None:
        self._jobs = [j for j in self._jobs if j is not job]
        job.pieces = []
        if error is not None:
            _fail(job.result, error)
        elif not job.result.done():
            try:
                job.result.set_result(result)
            except InvalidStateError:   # refused meanwhile by refuse_all
                pass


def _fail(future: Future, error: BaseException) -> None:
    """Set `error` unless the future is done already (two threads may race to finish it)."""
    try:
        if not future.done():
            future.set_exception(error)
    except InvalidStateError:
        pass


class CancelledJob(Exception):
    """The client went away (or the server is stopping) before the job was done."""
