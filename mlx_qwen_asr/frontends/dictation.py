"""Live dictation (`--mic --vad`): audio blocks cut into utterances by the voice-activity
detector (vad.py); each utterance is transcribed offline, whole, once it has ended.

Capture (reading blocks, detecting utterances) runs on its own thread and only queues
finished utterances; the transcriber takes them in order. A model slower than speech
therefore builds a backlog (scripts/dictation_bench.py measures it), never lost audio or a
stalled microphone. The source is any iterable of 16 kHz blocks: the microphone, or an
array played on a clock (`paced_blocks`), which is how the benchmark and tests drive the
same pipeline.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..audio.load import SAMPLE_RATE
from .live import MIC_BLOCK_SECONDS
from ..options import TranscribeOptions
from ..audio.vad import FrameJudge, VadOptions, frames_to_spans
from ..clock import clock_centis

# An utterance this long with no pause long enough to end it is cut anyway (at its last
# non-speech frame, if any), so its text never waits for the speaker to stop.
MAX_UTTERANCE_SECONDS = 20.0


@dataclass
class Utterance:
    index: int
    start: float          # seconds on the session clock (its first sample)
    end: float
    audio: np.ndarray     # 16 kHz mono float32, padded like vad.speech_spans' spans

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass
class Heard:
    """One utterance's transcription and when it happened (session-clock seconds)."""
    utterance: Utterance
    result: object        # the Transcription
    queued: float         # the utterance was closed and queued
    started: float        # its transcription began
    printed: float        # its text was printed
    waiting: float        # seconds of audio still queued behind it when printed

    @property
    def latency(self) -> float:
        """From the end of the utterance's audio to its text on screen."""
        return self.printed - self.utterance.end


class UtteranceDetector:
    """Blocks in, finished utterances out. An utterance ends after `min_silence_seconds`
    without speech (then its spans are exactly vad.frames_to_spans' over that stretch), or
    when it has run `max_seconds` from its first speech (cut at its last quiet frame)."""

    def __init__(self, options: VadOptions = VadOptions(), max_seconds: float = MAX_UTTERANCE_SECONDS):
        self.options = options
        self.judge = FrameJudge(options)
        self.frame = self.judge.frame
        self.gap = options.min_silence_seconds / options.frame_seconds   # a pause this many frames ends one
        self.gap_frames = int(np.ceil(self.gap))
        self.pad_frames = int(np.ceil(options.pad_seconds / options.frame_seconds))
        self.max_frames = int(max_seconds / options.frame_seconds)
        self.audio = np.zeros(0, np.float32)   # audio not yet handed out, from sample `origin`
        self.speech = np.zeros(0, bool)         # a decision per whole frame of it
        self.origin = 0
        self.count = 0

    def feed(self, block: np.ndarray) -> list[Utterance]:
        self.audio = np.concatenate([self.audio, np.asarray(block, np.float32)])
        judged = len(self.speech) * self.frame
        whole = (len(self.audio) - judged) // self.frame * self.frame
        self.speech = np.append(self.speech, self.judge(self.audio[judged:judged + whole]))
        return self._close(final=False)

    def finish(self) -> list[Utterance]:
        """What is left when the source ends (an utterance still being spoken, if any)."""
        return self._close(final=True)

    def _close(self, final: bool) -> list[Utterance]:
        found = []
        while True:
            said = np.flatnonzero(self.speech)
            if len(said) == 0:
                self._drop(None if final else len(self.speech) - self.pad_frames)   # keep a lead-in
                return found
            # The first pause long enough to end an utterance (vad.frames_to_spans' rule).
            pauses = np.flatnonzero(np.diff(said) - 1 >= self.gap)
            if len(pauses):
                end = said[pauses[0]] + 1
            elif len(self.speech) - (said[-1] + 1) >= self.gap:
                end = said[-1] + 1
            else:
                break
            split = end + self.gap_frames   # nothing after `split` can join what is before it
            found += [self._utterance(a, b) for a, b in frames_to_spans(self.speech[:split], split * self.frame,
                                                                         self.options)]
            self._drop(split - self.pad_frames)
        if final:
            found += [self._utterance(a, b) for a, b in frames_to_spans(self.speech, len(self.audio), self.options)]
            self._drop(None)
        elif len(self.speech) - said[0] >= self.max_frames:
            # Too long without a pause that ends it: cut at its last quiet frame in the second half.
            half = said[0] + self.max_frames // 2
            quiet = np.flatnonzero(~self.speech[half:])
            cut = half + quiet[-1] + 1 if len(quiet) else len(self.speech)
            spans = frames_to_spans(self.speech[:cut], cut * self.frame, self.options)
            found.append(self._utterance(spans[0][0] if spans else 0, cut * self.frame))
            self._drop(cut)
        return found

    def _utterance(self, begin: int, end: int) -> Utterance:
        self.count += 1
        return Utterance(self.count, (self.origin + begin) / SAMPLE_RATE, (self.origin + end) / SAMPLE_RATE,
                         self.audio[begin:end].copy())

    def _drop(self, frames: int | None) -> None:
        """Forget the first `frames` whole frames (None: everything), handed out or not speech."""
        if frames is None:
            self.origin += len(self.audio)
            self.audio, self.speech = self.audio[:0], self.speech[:0]
        elif frames > 0:
            self.origin += frames * self.frame
            self.audio, self.speech = self.audio[frames * self.frame:], self.speech[frames:]


# ----------------------------------------------------------------------------- clocks

class RealClock:
    """Wall-clock seconds since the session started."""

    def __init__(self):
        self.origin = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.origin

    def sleep_until(self, t: float) -> None:
        time.sleep(max(0.0, t - self.now()))

    def put(self, pending: queue.Queue, item) -> None:
        pending.put(item)

    def take(self, pending: queue.Queue, most: int) -> list:
        """The next item (waiting for it) and up to `most` - 1 more already queued."""
        items = [pending.get()]
        return items + _more(pending, most - 1)


class SimulatedClock(RealClock):
    """Real time while anything computes; while the transcriber waits with nothing queued,
    the clock jumps to the source's next block instead of sleeping. The backlog is the one
    real time would give, without waiting out the pauses (a 10-minute session takes its
    compute time). Only for sources paced by `sleep_until` (not a microphone)."""

    def __init__(self):
        super().__init__()
        self.skipped = 0.0
        self.idle = False          # the transcriber waits and the queue is empty
        self.lock = threading.Condition()

    def now(self) -> float:
        return time.perf_counter() - self.origin + self.skipped

    def sleep_until(self, t: float) -> None:
        with self.lock:
            while (now := self.now()) < t:
                if self.idle:
                    self.skipped += t - now
                    return
                self.lock.wait(t - now)

    def put(self, pending: queue.Queue, item) -> None:
        with self.lock:
            pending.put(item)
            self.idle = False
            self.lock.notify_all()

    def take(self, pending: queue.Queue, most: int) -> list:
        with self.lock:
            while pending.empty():
                self.idle = True
                self.lock.notify_all()
                self.lock.wait()
            self.idle = False
            return _more(pending, most)


def _more(pending: queue.Queue, most: int) -> list:
    """Up to `most` items already queued, without waiting."""
    items = []
    while len(items) < most:
        try:
            items.append(pending.get_nowait())
        except queue.Empty:
            break
    return items


def paced_blocks(audio: np.ndarray, clock, block_seconds: float = MIC_BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """16 kHz `audio` as a microphone would deliver it: each block once `clock` has reached
    its last sample."""
    step = int(round(block_seconds * SAMPLE_RATE))
    for start in range(0, len(audio), step):
        block = np.asarray(audio[start:start + step], np.float32)
        clock.sleep_until((start + len(block)) / SAMPLE_RATE)
        yield block


# ----------------------------------------------------------------------------- the session

# Utterances queued while the transcriber was busy are decoded together, up to this many
# (batch.py: each text equals its transcription alone): one decoding step reads the
# weights once for all rows, so a backlog is worked off faster than it built up.
MAX_BATCH = 8

OptionsFor = Callable[[list[Utterance], str], TranscribeOptions]


def dictate(model, options: TranscribeOptions, blocks: Iterable[np.ndarray], *, clock=None,
            on_heard: Callable[[Heard], None] | None = None, options_for: OptionsFor | None = None,
            batch_size: int = MAX_BATCH, vad: VadOptions = VadOptions(),
            max_seconds: float = MAX_UTTERANCE_SECONDS) -> list[Heard]:
    """Transcribe each utterance of `blocks` when it ends (those queued meanwhile together,
    up to `batch_size`); `on_heard` gets each as it is done, in order.
    `options_for(utterances, previous_text)` may give the options of each batch (default:
    `options`). A first Ctrl-C stops reading `blocks` (the utterance being spoken and
    those queued are still transcribed); a second one interrupts."""
    clock = clock or RealClock()
    pending: queue.Queue = queue.Queue()
    stop = threading.Event()
    backlog = _Backlog()

    def capture():
        source = iter(blocks)
        try:
            detector = UtteranceDetector(vad, max_seconds)
            for block in source:
                for utterance in detector.feed(block):
                    backlog.add(utterance.seconds)
                    clock.put(pending, (utterance, clock.now()))
                if stop.is_set():
                    break
            for utterance in detector.finish():
                backlog.add(utterance.seconds)
                clock.put(pending, (utterance, clock.now()))
        except BaseException as exc:   # handed to the transcriber, which reports it
            clock.put(pending, exc)
        finally:
            getattr(source, "close", lambda: None)()   # a microphone generator closes its stream
            clock.put(pending, None)

    thread = threading.Thread(target=capture, name="dictation-capture", daemon=True)
    heard: list[Heard] = []
    ended, failure = False, None
    with _first_interrupt_stops(stop):
        thread.start()
        while not ended:
            batch = []
            for item in clock.take(pending, batch_size):
                if item is None:
                    ended = True
                elif isinstance(item, BaseException):
                    failure = item
                else:
                    batch.append(item)
                    backlog.take(item[0].seconds)
            if batch:
                heard += _transcribe(model, options, options_for, batch, heard, clock, backlog, on_heard)
            if failure is not None:
                raise failure
    thread.join()
    return heard


def _transcribe(model, options, options_for, batch, heard, clock, backlog, on_heard) -> list[Heard]:
    """One batch of (utterance, queued at) transcribed; each handed to `on_heard` in order."""
    utterances = [utterance for utterance, _ in batch]
    started = clock.now()
    previous = heard[-1].result.text if heard else ""
    results = model.transcribe_many([u.audio for u in utterances],
                                    options_for(utterances, previous) if options_for else options,
                                    sample_rate=SAMPLE_RATE)
    printed = clock.now()
    done = [Heard(u, result, queued, started, printed, backlog.seconds) for (u, queued), result in zip(batch, results)]
    for one in done:
        if on_heard:
            on_heard(one)
    return done


@contextmanager
def _first_interrupt_stops(stop: threading.Event):
    """A first Ctrl-C stops the capture (what was said is still transcribed); a second one
    interrupts. Signal handlers can only be set from the main thread; elsewhere Ctrl-C
    interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping: transcribing what was said (Ctrl-C again to quit)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Backlog:
    """Seconds of audio queued and not yet taken by the transcriber."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self.lock:
            self.seconds += seconds

    def take(self, seconds: float) -> None:
        with self.lock:
            self.seconds = max(0.0, self.seconds - seconds)


# ----------------------------------------------------------------------------- printing

def heard_line(heard: Heard, timestamps: bool) -> str | None:
    """The stdout line of an utterance (None when it held no words)."""
    text = " ".join(heard.result.text.split())
    if not text:
        return None
    if timestamps:
        return f"[{clock_centis(heard.utterance.start)} --> {clock_centis(heard.utterance.end)}] {text}"
    return text


def heard_report(heard: Heard) -> str:
    """The --verbose line of an utterance (stderr)."""
    u, r = heard.utterance, heard.result
    return (f"utterance {u.index}: {clock_centis(u.start)}-{clock_centis(u.end)} ({u.seconds:.2f} s), "
            f"language {r.language or '-'}, {len(r.tokens)} tokens, finish {r.finish_reason}; "
            f"transcribed in {heard.printed - heard.started:.2f} s, printed {heard.latency:.2f} s after it ended, "
            f"{heard.waiting:.1f} s of audio waiting")


def printer(timestamps: bool, verbose: bool, out=None, err=None, speakers=None) -> Callable[[Heard], None]:
    """`speakers` (a speakers.incremental.SpeakerTracker) labels each line with its speaker."""
    def show(heard: Heard) -> None:
        line = heard_line(heard, timestamps)
        if line is not None and speakers is not None:
            line = f"{speakers.label(heard.utterance.audio) or '-'}: {line}"
        if line is not None:
            print(line, file=out or sys.stdout, flush=True)
        if verbose:
            print(heard_report(heard), file=err or sys.stderr, flush=True)
    return show


def session_report(source: str, heard: list[Heard], wall: float) -> str:
    """The --verbose summary of a session (stderr)."""
    latencies = sorted(h.latency for h in heard)
    speech = sum(h.utterance.seconds for h in heard)
    spread = (f"; printed {latencies[len(latencies) // 2]:.2f} s (median), {latencies[-1]:.2f} s (at most) "
              "after each ended" if latencies else "")
    return f"{source}: {len(heard)} utterances, {speech:.1f} s of speech in {wall:.1f} s{spread}"


def dictate_microphone(model, options: TranscribeOptions, device: int | None = None, *, timestamps: bool = False,
                       verbose: bool = False, speakers=None) -> list[Heard]:
    """`--mic --vad`: dictation from the microphone (PortAudio `device`, default: the
    default input) until Ctrl-C, each utterance printed as a line when it is transcribed."""
    from .live import microphone_blocks

    blocks = microphone_blocks(device)   # opened here: a device that fails is reported before "listening"
    print("listening... (Ctrl-C to stop)", file=sys.stderr)
    started = time.perf_counter()
    heard = dictate(model, options, blocks, clock=RealClock(), on_heard=printer(timestamps, verbose, speakers=speakers))
    if verbose:
        print(session_report("microphone", heard, time.perf_counter() - started), file=sys.stderr)
    return heard
