"""Live output of streaming transcription: a file at real time or as fast as possible, or the microphone.

Committed text is append-only; the partial tail is redrawn in place on a terminal (and
left out when output goes to a file or pipe, where nothing can be redrawn).
"""

from __future__ import annotations

import queue
import shutil
import sys
from collections.abc import Iterator

import numpy as np

from ..audio.load import SAMPLE_RATE
from ..errors import SetupError
from ..options import TranscribeOptions
from ..stream.session import StreamingSession, StreamUpdate, transcribe_stream
from ..transcribe import ASRModel

MIC_BLOCK_SECONDS = 0.25


class LivePrinter:
    """Prints stream updates: finished lines scroll up, the current line is redrawn."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.printed = ""      # committed text already on screen (completed lines or current line)
        self.line_start = 0    # where the current (unfinished) line begins in the committed text

    def show(self, update: StreamUpdate) -> None:
        if not self.tty:
            if update.committed.startswith(self.printed) and len(update.committed) > len(self.printed):
                self.out.write(update.committed[len(self.printed):] if self.printed else update.committed)
                self.printed = update.committed
            if update.final:
                self.out.write("\n")
            self.out.flush()
            return
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        committed = update.committed
        line = committed[self.line_start:]
        # Close the current line once it is long enough, at a word boundary.
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            cut = cut if cut > 0 else width
            self.out.write("\r\033[K" + line[:cut] + "\n")
            self.line_start += cut + (1 if cut < len(line) and line[cut] == " " else 0)
            line = committed[self.line_start:]
        partial = update.partial
        room = width - len(line) - 1
        shown = line + (" \033[2m" + partial[-room:] + "\033[0m" if partial and room > 3 else "")
        self.out.write("\r\033[K" + shown + ("\n" if update.final else ""))
        self.out.flush()


def import_sounddevice(flag: str = "--mic"):
    """The sounddevice module, or a SetupError saying what `flag` is missing."""
    try:
        import sounddevice
    except ImportError:
        raise SetupError(f"{flag} needs the optional sounddevice package: pip install 'mlx-qwen-asr[mic]'") from None
    except OSError as exc:   # sounddevice's import raises OSError when PortAudio is absent
        raise SetupError(f"{flag} needs the PortAudio library, which is not installed ({exc}); "
                         "install it (Debian/Ubuntu: apt install libportaudio2; macOS: brew install portaudio)"
                         ) from None
    return sounddevice


def microphone_blocks(device=None) -> Iterator[np.ndarray]:
    """16 kHz mono float32 audio from the microphone, all that has arrived since the last
    block, until Ctrl-C (needs `sounddevice`). The microphone is opened here, at the call,
    so a missing library or device is reported before anything says "listening"."""
    sounddevice = import_sounddevice()
    blocks: queue.Queue = queue.Queue()

    def callback(indata, frames, time, status):  # noqa: ARG001 (sounddevice's signature)
        blocks.put(indata[:, 0].copy())

    try:
        stream = sounddevice.InputStream(samplerate=SAMPLE_RATE, channels=1, dtype="float32", device=device,
                                         blocksize=int(MIC_BLOCK_SECONDS * SAMPLE_RATE), callback=callback)
    except Exception as exc:  # PortAudio errors: no device, permission denied, ...
        raise SetupError(f"cannot open the microphone: {exc}") from None

    def generate():
        with stream:
            while True:
                yield drain(blocks)

    return generate()


def drain(blocks: queue.Queue) -> np.ndarray:
    """The next block and every block queued behind it (those arrived while a step ran),
    as one piece: a session with catch_up then decodes them in one step."""
    pieces = [blocks.get()]
    while True:
        try:
            pieces.append(blocks.get_nowait())
        except queue.Empty:
            return np.concatenate(pieces)


def stream_file(path: str, model: ASRModel, options: TranscribeOptions | None = None, *, realtime: bool,
                out=None) -> StreamUpdate | None:
    """Print a file's stream updates as they come; the final update (None for no audio)."""
    printer = LivePrinter(out)
    update = None
    for update in transcribe_stream(path, model, options, realtime=realtime):
        printer.show(update)
    return update


def stream_microphone(model: ASRModel, options: TranscribeOptions | None = None, *, out=None,
                      device: int | None = None) -> StreamUpdate:
    """Print the microphone's (PortAudio `device`'s, default: the default input) stream
    updates until Ctrl-C; the final update."""
    printer = LivePrinter(out)
    session = StreamingSession(model, options, catch_up=True)
    blocks = microphone_blocks(device)
    print("listening... (Ctrl-C to stop)", file=sys.stderr)
    try:
        for block in blocks:
            printer.show(session.feed(block, SAMPLE_RATE))
    except KeyboardInterrupt:
        pass
    final = session.finish()
    printer.show(final)
    return final
