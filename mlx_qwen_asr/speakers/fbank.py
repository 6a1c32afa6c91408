"""CAM++'s input features: Kaldi's log mel filterbank, 80 bins, in MLX.

The options 3D-Speaker trained CAM++ with (Kaldi's defaults, no dither): 25 ms frames every
10 ms, only whole frames (snip_edges), each frame's DC offset removed, pre-emphasis 0.97,
the Povey window, a 512-point FFT, power spectrum, 80 triangular bins evenly spaced on
Kaldi's mel scale from 20 Hz to 8 kHz, natural log floored at float32's epsilon. Each
segment's mean over its frames is then subtracted, as CAM++ expects.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

SAMPLE_RATE = 16000
FRAME_LENGTH = 400          # 25 ms
FRAME_SHIFT = 160           # 10 ms
FFT_SIZE = 512
NUM_BINS = 80
LOW_HZ = 20.0
PREEMPHASIS = 0.97
LOG_FLOOR = float(np.finfo(np.float32).eps)


def num_frames(num_samples: int) -> int:
    """Whole 25 ms frames in `num_samples` samples."""
    return 0 if num_samples < FRAME_LENGTH else 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT


def _mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, np.float64) / 700.0)


def _povey_window() -> np.ndarray:
    a = 2 * math.pi / (FRAME_LENGTH - 1)
    return (0.5 - 0.5 * np.cos(a * np.arange(FRAME_LENGTH))) ** 0.85


def _mel_banks() -> np.ndarray:
    """[FFT_SIZE // 2, 80] triangle weights; like Kaldi, the Nyquist bin gets none."""
    low, high = _mel(LOW_HZ), _mel(SAMPLE_RATE / 2)
    delta = (high - low) / (NUM_BINS + 1)
    left = low + delta * np.arange(NUM_BINS)
    center, right = left + delta, left + 2 * delta
    mel = _mel(np.arange(FFT_SIZE // 2) * SAMPLE_RATE / FFT_SIZE)[:, None]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = np.where(mel <= center, rising, falling)
    return np.where((mel > left) & (mel < right), weights, 0.0)


_WINDOW = mx.array(_povey_window().astype(np.float32))
_BANKS = mx.array(_mel_banks().astype(np.float32))


def compute_fbank(audio, subtract_mean: bool = True) -> mx.array:
    """Log mel filterbank of 16 kHz audio in [-1, 1].

    audio: [samples] or [batch, samples] (numpy or MLX). Returns [frames, 80] or
    [batch, frames, 80] float32; each segment's mean over frames is subtracted unless
    `subtract_mean` is False. Fewer than 400 samples give 0 frames."""
    x = mx.array(audio, dtype=mx.float32)
    single = x.ndim == 1
    if single:
        x = x[None]
    batch, samples = x.shape
    count = num_frames(samples)
    if count == 0:
        features = mx.zeros((batch, 0, NUM_BINS), mx.float32)
        return features[0] if single else features
    frames = mx.as_strided(x, (batch, count, FRAME_LENGTH), (samples, FRAME_SHIFT, 1))
    frames = frames - mx.mean(frames, axis=-1, keepdims=True)
    # Kaldi's pre-emphasis treats the sample before the first as the first itself.
    previous = mx.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = (frames - PREEMPHASIS * previous) * _WINDOW
    spectrum = mx.fft.rfft(frames, n=FFT_SIZE, axis=-1)[..., : FFT_SIZE // 2]
    power = mx.real(spectrum) ** 2 + mx.imag(spectrum) ** 2
    features = mx.log(mx.maximum(power @ _BANKS, LOG_FLOOR))
    if subtract_mean:
        features = features - mx.mean(features, axis=1, keepdims=True)
    return features[0] if single else features
