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

from .audio import SAMPLE_RATE, load_audio
from .errors import AudioError
from .resample import _filter, resample

BLOCK_SECONDS = 30.0
_FLOAT_SUBTYPES = {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III", "MPEG_LAYER_II", "MPEG_LAYER_I"}


@dataclass
class AudioStream:
    blocks: Iterator[np.ndarray]   # 16 kHz mono float32 blocks, in order
    duration: float                # seconds


def stream_resampled(blocks: Iterator[np.ndarray], orig_sr: int, target_sr: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Resample a stream of blocks; the concatenated output equals `resample` of the whole.

    Every piece is resampled with `pad` input samples of real context on both sides (pad
    covers the filter's span and is a whole number of periods, so pieces land on the
    output grid), and only its own outputs are kept.
    """
    if orig_sr == target_sr:
        yield from blocks
        return
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    pad = _filter(up, down)[1]
    piece = max(pad, -(-int(BLOCK_SECONDS * orig_sr) // down) * down)
    skip = pad * up // down
    history = np.zeros(pad, np.float32)   # the signal is zero before the start
    pending = np.zeros(0, np.float32)
    for block in blocks:
        pending = np.concatenate([pending, np.asarray(block, np.float32)])
        while len(pending) >= piece + pad:
            chunk = np.concatenate([history, pending[:piece + pad]])
            yield resample(chunk, orig_sr, target_sr)[skip:skip + piece * up // down]
            history, pending = pending[piece - pad:piece], pending[piece:]
    if len(pending):
        yield resample(np.concatenate([history, pending]), orig_sr, target_sr)[skip:]


def open_audio_stream(source, sample_rate: int | None = None, block_seconds: float = BLOCK_SECONDS) -> AudioStream:
    """A block stream of `source`: files libsndfile reads are streamed; anything else
    (arrays, ffmpeg-decoded formats) is loaded whole by `load_audio` and then cut up."""
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            info = sf.info(name)
        except Exception:  # not readable by libsndfile: load_audio decides (ffmpeg or a clear error)
            info = None
        if info is not None and info.frames > 0 and info.samplerate > 0:
            return AudioStream(_file_blocks(name, info, block_seconds), info.frames / info.samplerate)
    audio = load_audio(source, sample_rate)
    step = int(block_seconds * SAMPLE_RATE)
    return AudioStream((audio[i:i + step] for i in range(0, len(audio), step)), len(audio) / SAMPLE_RATE)


def _native_blocks(name: str, block_frames: int) -> Iterator[np.ndarray]:
    with sf.SoundFile(name) as f:
        while True:
            data = f.read(block_frames, dtype="float32", always_2d=True)
            if not len(data):
                return
            if not np.all(np.isfinite(data)):
                raise AudioError(f"{name}: contains NaN or infinite samples")
            yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]


def _file_blocks(name: str, info, block_seconds: float) -> Iterator[np.ndarray]:
    block_frames = max(1, int(block_seconds * info.samplerate))

    def resampled():
        return stream_resampled(_native_blocks(name, block_frames), info.samplerate)

    # The official rule divides by the peak of the *resampled* audio when it exceeds 1, so
    # anything but 16 kHz integer PCM (which cannot exceed 1) needs the peak first.
    peak = 0.0
    if info.samplerate != SAMPLE_RATE or info.subtype in _FLOAT_SUBTYPES:
        peak = max((float(np.max(np.abs(b))) for b in resampled() if len(b)), default=0.0)
    for block in resampled():
        if peak > 1.0:
            block = block / np.float32(peak)
        yield np.clip(block, -1.0, 1.0)
