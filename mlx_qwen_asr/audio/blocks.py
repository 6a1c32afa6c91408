"""Reading a long audio file block by block as 16 kHz mono, in bounded memory.

The result equals `load_audio(path)` (to float32 rounding of the resampler's blocks): the
channels are averaged, the rate converted with the same filter, and the official "divide
by the peak if it exceeds 1" rule applied with the whole file's peak (found in a first,
cheap pass that only float files need: integer PCM never exceeds 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from .load import SAMPLE_RATE, check_header, check_sample_rate, chunk_samples, load_audio
from ..errors import AudioError
from .resample import _filter, resample

BLOCK_SECONDS = 30.0
# Samples (frames x channels) read at once: a block of a many-channel or very high-rate
# file is shorter than BLOCK_SECONDS, so a read stays ~64 MB (the resampler's output does
# not depend on how its input is cut).
MAX_BLOCK_VALUES = 1 << 24
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III", "MPEG_LAYER_II", "MPEG_LAYER_I"}


@dataclass
class AudioBlocks:
    blocks: Iterator[np.ndarray]   # 16 kHz mono float32 blocks, in order
    duration: float                # seconds


class BlockResampler:
    """Stateful rate conversion: `push` blocks as they come, `flush` at the end; the
    concatenated output equals `resample` of the whole signal.

    Every piece is resampled with `pad` input samples of real context on both sides (pad
    covers the filter's span and is a whole number of periods, so pieces land on the
    output grid), and only its own outputs are kept.
    """

    def __init__(self, orig_sr: int, target_sr: int = SAMPLE_RATE, piece_seconds: float = BLOCK_SECONDS):
        self.orig_sr, self.target_sr = check_sample_rate(orig_sr), check_sample_rate(target_sr)
        g = math.gcd(self.orig_sr, self.target_sr)
        self.up, self.down = self.target_sr // g, self.orig_sr // g
        self.pad = _filter(self.up, self.down)[1] if self.up != self.down else 0
        self.piece = max(self.pad, -(-int(piece_seconds * self.orig_sr) // self.down) * self.down)
        self.history = np.zeros(self.pad, np.float32)   # the signal is zero before the start
        self.pending: list[np.ndarray] = []
        self.held = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32)
        if self.up == self.down:
            return block
        self.pending.append(block)
        self.held += len(block)
        if self.held < self.piece + self.pad:
            return np.zeros(0, np.float32)
        pending = np.concatenate(self.pending)
        skip, outputs = self.pad * self.up // self.down, []
        while len(pending) >= self.piece + self.pad:
            chunk = np.concatenate([self.history, pending[:self.piece + self.pad]])
            outputs.append(resample(chunk, self.orig_sr, self.target_sr)[skip:skip + self.piece * self.up // self.down])
            self.history, pending = pending[self.piece - self.pad:self.piece], pending[self.piece:]
        self.pending, self.held = [pending], len(pending)
        return np.concatenate(outputs)

    def flush(self) -> np.ndarray:
        if self.up == self.down or not self.held:
            return np.zeros(0, np.float32)
        tail = np.concatenate([self.history] + self.pending)
        self.pending, self.held = [], 0
        return resample(tail, self.orig_sr, self.target_sr)[self.pad * self.up // self.down:]


class ChunkInput:
    """Chunks fed one by one, each with its own sample rate, as 16 kHz mono float32 in [-1, 1],
    in the order fed. A chunk at a new rate first flushes what the previous rate's resampler
    still holds, so a source may change rate between chunks and nothing is lost or reordered
    (the two stretches are resampled apart, each as if it ended or began there)."""

    # Pieces of 0.5 s: a resampler holds back at most that much of a live stream.
    PIECE_SECONDS = 0.5

    def __init__(self):
        self.rate: int | None = None
        self.resampler: BlockResampler | None = None

    def push(self, pcm, sample_rate) -> np.ndarray:
        rate = check_sample_rate(sample_rate)
        samples = chunk_samples(pcm)
        held = self.flush() if rate != self.rate else np.zeros(0, np.float32)
        if rate != self.rate:
            self.rate = rate
            self.resampler = BlockResampler(rate, SAMPLE_RATE, self.PIECE_SECONDS) if rate != SAMPLE_RATE else None
        if self.resampler is not None:
            samples = self.resampler.push(samples)
        return np.clip(np.concatenate([held, samples]) if len(held) else samples, -1.0, 1.0)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (the end of the stream, or of its rate)."""
        if self.resampler is None:
            return np.zeros(0, np.float32)
        return np.clip(self.resampler.flush(), -1.0, 1.0)


def resampled_blocks(blocks: Iterator[np.ndarray], orig_sr: int, target_sr: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Resample a stream of blocks (see BlockResampler)."""
    resampler = BlockResampler(orig_sr, target_sr)
    for block in blocks:
        out = resampler.push(block)
        if len(out):
            yield out
    tail = resampler.flush()
    if len(tail):
        yield tail


def open_audio_blocks(source, sample_rate: int | None = None, block_seconds: float = BLOCK_SECONDS) -> AudioBlocks:
    """A block stream of `source`: files libsndfile reads are streamed; anything else
    (arrays, ffmpeg-decoded formats) is loaded whole by `load_audio` and then cut up."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            info = sf.info(name)
        except Exception:  # not readable by libsndfile: load_audio decides (ffmpeg or a clear error)
            info = None
        if info is not None and info.frames > 0 and info.samplerate > 0:
            check_header(name, info.samplerate, info.channels, info.frames, os.path.getsize(name))
            return AudioBlocks(_file_blocks(name, info, block_seconds), info.frames / info.samplerate)
    audio = load_audio(source, sample_rate)
    step = int(block_seconds * SAMPLE_RATE)
    return AudioBlocks((audio[i:i + step] for i in range(0, len(audio), step)), len(audio) / SAMPLE_RATE)


def _native_blocks(name: str, block_frames: int) -> Iterator[np.ndarray]:
    try:
        file = sf.SoundFile(name)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(f"cannot decode {name}: {_reason(exc)}") from None
    with file as f:
        while True:
            try:
                data = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
                # A file whose header reads but whose body does not (truncated, corrupt).
                at = f.tell() / f.samplerate if f.samplerate else 0.0
                raise AudioError(f"cannot decode {name}: corrupt or truncated near {at:.1f} s "
                                 f"({_reason(exc)})") from None
            if not len(data):
                return
            if not np.all(np.isfinite(data)):
                raise AudioError(f"{name}: contains NaN or infinite samples")
            yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).removeprefix("Error : ").rstrip(".")


def _file_blocks(name: str, info, block_seconds: float) -> Iterator[np.ndarray]:
    block_frames = max(1, min(int(block_seconds * info.samplerate), MAX_BLOCK_VALUES // info.channels))

    def resampled():
        return resampled_blocks(_native_blocks(name, block_frames), info.samplerate)

    # The official rule divides by the peak of the *resampled* audio when it exceeds 1, so
    # anything but 16 kHz integer PCM (which cannot exceed 1) needs the peak first.
    peak = 0.0
    if info.samplerate != SAMPLE_RATE or info.subtype in _FLOAT_SUBTYPES:
        peak = max((float(np.max(np.abs(b))) for b in resampled() if len(b)), default=0.0)
    for block in resampled():
        if peak > 1.0:
            block = block / np.float32(peak)
        yield np.clip(block, -1.0, 1.0)
