"""Audio input: a file or an array -> mono float32 at 16 kHz in [-1, 1].

The result equals what the official ``qwen_asr.inference.utils.normalize_audio_input``
produces, step for step: decode to float32 at the native rate, average the channels,
resample to 16 kHz (our numpy resampler in place of librosa's soxr_hq; see resample.py),
then divide by the peak if it exceeds 1 and clip to [-1, 1].

Decoding: libsndfile (via soundfile) first - wav, flac, ogg/opus, mp3, aiff, ... - exactly
as librosa does. For anything else (m4a, mp4, aac, wma, webm, ...) the ``ffmpeg`` program
is used when it is on PATH. We ask it for 16-bit PCM at the file's own rate and channel
count, which is exactly what the official path gets there (librosa falls back to
audioread, which runs ``ffmpeg -i FILE -f s16le -``): the samples are then bit-identical,
and the channel mix and resampling stay ours rather than ffmpeg's (its resampler is not
soxr_hq). The PCM comes in an AU container so that its header carries rate and channels.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError
from .resample import resample

SAMPLE_RATE = 16000

# What a file's header may claim. Beyond these no real recording exists, and believing the
# header would size buffers and resampling filters from it (a 108-byte WAV claiming
# 2,147,483,647 Hz once asked for 8 GiB): such a file is refused before it is decoded.
MIN_FILE_RATE = 1000          # Hz
MAX_FILE_RATE = 768000        # Hz, the highest rate audio interfaces record at
MAX_FILE_CHANNELS = 64
# Frames a byte of file may hold: digital silence in FLAC's largest blocks stays under ~3300.
MAX_FRAMES_PER_BYTE = 16384

__all__ = ["SAMPLE_RATE", "check_header", "check_sample_rate", "chunk_samples", "integer_pcm", "load_audio",
           "read_stdin", "resample", "to_mono"]


def load_audio(source, sample_rate: int | None = None) -> np.ndarray:
    """Mono float32 waveform at 16 kHz in [-1, 1], normalised as the official code does.

    ``source`` is one of:

    * a path (``str`` or ``os.PathLike``) to any file libsndfile reads, or that ffmpeg
      decodes if it is installed;
    * a numpy array (or array-like) with ``sample_rate`` given: 1-D, or 2-D as
      ``(samples, channels)`` or ``(channels, samples)`` (the shorter axis is taken as
      channels, as the official ``to_mono`` does for up to 8 channels);
    * a tuple ``(array, sample_rate)``.

    Integer arrays follow the official engine's `transcribe` rule: the samples are taken as
    numbers, so the "peak above 1" rule brings them to a peak of exactly 1 (an int16 array
    at a tenth of full scale comes out at full scale). The same samples streamed chunk by
    chunk are scaled by their type's range instead (`integer_pcm`: a stream has no known
    peak), and a file's PCM is read by its range too. For the absolute level of a file,
    pass `samples / 32768` (int16) as float.

    Audio shorter than the model's minimum is returned as is (the pipeline pads it);
    all-zero audio is valid. Raises ``AudioError`` with a one-line message for anything
    unusable: missing file, directory, empty or undecodable file, no samples, NaN or
    infinite samples, arrays of the wrong shape or type.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if sample_rate is not None:
            raise AudioError(f"{name}: sample_rate is only for arrays; a file has its own rate")
        audio, sr = _read_file(name)
        if audio.shape[1] > 1:
            audio = np.mean(audio, axis=-1).astype(np.float32)
        else:
            audio = audio[:, 0]
    else:
        name = "audio array"
        if isinstance(source, tuple):
            if len(source) != 2:
                raise AudioError(f"an audio tuple must be (array, sample_rate), got {len(source)} items")
            source, tuple_sr = source
            if sample_rate is not None and sample_rate != tuple_sr:
                raise AudioError(f"sample_rate={sample_rate} contradicts the tuple's rate {tuple_sr}")
            sample_rate = tuple_sr
        if sample_rate is None:
            raise AudioError("an audio array needs its sample rate: pass sample_rate=... with it, or an "
                             "(array, sample_rate) tuple")
        sr = check_sample_rate(sample_rate)
        audio = to_mono(_as_array(source))

    if audio.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(audio).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    if sr != SAMPLE_RATE:
        audio = resample(audio, sr, SAMPLE_RATE)
    return _float_range_normalize(audio)


def _float_range_normalize(audio: np.ndarray) -> np.ndarray:
    # utils.float_range_normalize, operation for operation (float32 throughout).
    audio = audio.astype(np.float32)
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return audio
    if peak > 1.0:
        audio = audio / peak
    return np.clip(audio, -1.0, 1.0)


def chunk_samples(pcm) -> np.ndarray:
    """One streamed chunk as mono float32 samples at its own rate, by the rules of whole
    inputs (`to_mono`: the shorter axis holds the channels), except integer PCM: a stream
    has no known peak to divide by, so it is scaled by its type's range (`integer_pcm`),
    which is what the peak rule gives full-scale audio."""
    samples = np.asarray(pcm)
    if samples.ndim not in (1, 2) or samples.dtype.kind not in "fiu":
        raise AudioError(f"streamed audio must be 1-D or (frames, channels) float or integer samples, "
                         f"got shape {samples.shape}, dtype {samples.dtype}")
    if samples.dtype.kind in "iu":
        samples = integer_pcm(samples)
    samples = to_mono(samples.astype(np.float32))
    if not np.all(np.isfinite(samples)):
        raise AudioError("streamed audio contains NaN or infinite samples")
    return samples


def integer_pcm(samples: np.ndarray) -> np.ndarray:
    """Integer PCM as float32 by its type's full scale, as audio files store it: signed
    types divided by 2^(bits-1) (int16: 32768, the official streaming rule), unsigned ones
    centred first (uint8: (x - 128) / 128, 8-bit WAV's offset binary)."""
    info = np.iinfo(samples.dtype)
    if info.min < 0:
        return samples.astype(np.float32) / float(info.max + 1)
    half = float(info.max + 1) / 2
    return (samples.astype(np.float32) - half) / half


def check_sample_rate(sample_rate) -> int:
    """`sample_rate` as an int, or an AudioError: it must be a whole, positive number of Hz."""
    try:
        sr = int(sample_rate)
        ok = sr == sample_rate and sr > 0 and not isinstance(sample_rate, (bool, str, bytes))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioError(f"sample_rate must be a positive integer number of Hz, got {sample_rate!r}")
    return sr


def check_header(name: str, samplerate: int, channels: int, frames: int, size: int) -> None:
    """AudioError if a file's header (`sf.info`) claims a rate, channel count or length no
    real file of `size` bytes has: checked before any of it is decoded."""
    if not MIN_FILE_RATE <= samplerate <= MAX_FILE_RATE:
        raise AudioError(f"{name}: the header claims {samplerate} Hz; files from {MIN_FILE_RATE} to "
                         f"{MAX_FILE_RATE} Hz are read (corrupt or not audio?)")
    if not 1 <= channels <= MAX_FILE_CHANNELS:
        raise AudioError(f"{name}: the header claims {channels} channels; at most {MAX_FILE_CHANNELS} are read "
                         "(corrupt or not audio?)")
    if frames > MAX_FRAMES_PER_BYTE * max(size, 1):
        raise AudioError(f"{name}: the header claims {frames} frames ({frames / samplerate:.0f} s) in "
                         f"{size} bytes (corrupt or not audio?)")


def _as_array(source) -> np.ndarray:
    try:
        array = np.asarray(source)
    except (TypeError, ValueError) as exc:
        raise AudioError(f"audio array: cannot be converted to a numpy array ({exc})") from None
    if array.dtype.kind not in "fiu":
        raise AudioError(f"audio array: dtype {array.dtype} is not supported; expected float or integer samples")
    if array.ndim not in (1, 2):
        raise AudioError(
            f"audio array: expected 1-D (samples) or 2-D (samples, channels) audio, got shape {array.shape}"
        )
    if array.size == 0:
        raise AudioError(f"audio array: contains no audio samples (shape {array.shape})")
    return array


def to_mono(array: np.ndarray) -> np.ndarray:
    """1-D as it is; 2-D averaged over its channel axis (the shorter one)."""
    if array.ndim == 1:
        return array
    # The official to_mono transposes (channels, samples) when channels <= 8; beyond 8 it
    # would average over time instead of channels, so we take the shorter axis as channels.
    if array.shape[1] > array.shape[0]:
        array = array.T
    return np.mean(array, axis=-1).astype(np.float32)


def _read_file(name: str) -> tuple[np.ndarray, int]:
    """Decoded samples as float32 [frames, channels] and the file's sample rate."""
    path = Path(name)
    if not path.exists():
        raise AudioError(f"{name}: no such file")
    if path.is_dir():
        raise AudioError(f"{name}: is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{name}: permission denied")
    if path.stat().st_size == 0:
        raise AudioError(f"{name}: file is empty (0 bytes)")
    try:
        # As librosa reads: open and read everything, no seek (sf.read seeks to 0 first,
        # which restarts the MP3 decoder and changes its output in the last bit).
        f = sf.SoundFile(name)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return _read_with_ffmpeg(name)  # not a format libsndfile reads (or corrupt): ffmpeg, as librosa does
    with f:
        check_header(name, f.samplerate, f.channels, f.frames, path.stat().st_size)
        try:
            return f.read(frames=-1, dtype="float32", always_2d=True), int(f.samplerate)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            pass  # a header libsndfile reads and a body it does not: ffmpeg may, as librosa would try
    return _read_with_ffmpeg(name)


def _read_with_ffmpeg(name: str, data: bytes | None = None) -> tuple[np.ndarray, int]:
    """ffmpeg decodes the file `name`, or `data` (then `name` only labels messages). `data`
    goes through a temporary file, not a pipe: m4a/mp4 often keep their index after the
    samples, which ffmpeg can only reach by seeking."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(
            f"cannot decode {name}: libsndfile does not read this format and ffmpeg is not installed"
        )
    if data is not None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="mlx-qwen-asr-") as folder:
            copy = os.path.join(folder, "input")
            with open(copy, "wb") as f:
                f.write(data)
            return _run_ffmpeg(ffmpeg, copy, name)
    return _run_ffmpeg(ffmpeg, name, name)


def _run_ffmpeg(ffmpeg: str, path: str, name: str) -> tuple[np.ndarray, int]:
    # "file:" so names like "a:b.m4a" stay local.
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
        "-i", "file:" + os.path.abspath(path), "-vn", "-sn", "-dn", "-f", "au", "-c:a", "pcm_s16be", "-",
    ]
    result = subprocess.run(command, capture_output=True)
    lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
    reason = lines[-1].strip() if lines else f"exit status {result.returncode}"
    if result.returncode != 0 or not result.stdout:
        raise AudioError(f"cannot decode {name}: not audio, or corrupt (ffmpeg: {reason})")
    try:
        audio, sr = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(f"cannot decode {name}: ffmpeg output unreadable ({exc})") from None
    if audio.size == 0 and lines:   # a header and no samples: ffmpeg gave up (its reason is on stderr)
        raise AudioError(f"cannot decode {name}: not audio, or corrupt (ffmpeg: {reason})")
    return audio, int(sr)


STDIN_NAME = "standard input"

# How audio files begin (at offset 0 unless given): no raw PCM stream is mistaken for one of these.
_CONTAINERS = ((b"RIFF", "WAV"), (b"RF64", "WAV"), (b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"FORM", "AIFF"),
               (b".snd", "AU"), (b"caff", "CAF"), (b"ID3", "MP3"), (b"\x1a\x45\xdf\xa3", "WebM/Matroska"),
               ((4, b"ftyp"), "MP4/M4A"))


def _container_name(data: bytes) -> str | None:
    """The audio file format whose signature `data` starts with, or None."""
    for magic, name in _CONTAINERS:
        offset, magic = magic if isinstance(magic, tuple) else (0, magic)
        if data[offset:offset + len(magic)] == magic:
            return name
    return None


def read_stdin(raw_rate: int | None = None, stream=None) -> tuple[np.ndarray, int]:
    """All of standard input (or the binary file `stream`) as (samples, rate), ready for
    `load_audio((samples, rate))`: float32 [frames, channels] exactly as the same bytes
    read from a file would give. `raw_rate`: the bytes are headerless 16-bit little-endian
    mono PCM at that rate (what `ffmpeg -f s16le -ac 1 -ar RATE -` writes)."""
    import sys

    data = (stream or sys.stdin.buffer).read()
    if not data:
        raise AudioError(f"{STDIN_NAME}: no data (pipe audio in, or give a file)")
    if raw_rate is not None:
        rate = check_sample_rate(raw_rate)
        container = _container_name(data)
        if container:
            raise AudioError(f"{STDIN_NAME}: holds a {container} file, not raw PCM: leave out --raw-rate "
                             "(the file's header gives its rate)")
        if len(data) % 2:
            raise AudioError(f"{STDIN_NAME}: odd number of bytes ({len(data)}); raw PCM for --raw-rate is "
                             "16-bit (2 bytes a sample), mono")
        # As libsndfile reads PCM_16 as float: divided by 32768.
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)
        return samples[:, None], rate
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
        return _read_with_ffmpeg(STDIN_NAME, data)  # not a format libsndfile reads: ffmpeg, as for files
    with f:
        check_header(STDIN_NAME, f.samplerate, f.channels, f.frames, len(data))
        try:
            return f.read(frames=-1, dtype="float32", always_2d=True), int(f.samplerate)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError):
            pass
    return _read_with_ffmpeg(STDIN_NAME, data)
