"""Band-limited sample-rate conversion in numpy (no scipy, no soxr at runtime).

A linear-phase Kaiser-windowed-sinc low-pass at the rational ratio up/down with soxr HQ's
specification (the official loader's `librosa.resample(res_type="soxr_hq")`), computed by
FFT overlap-save; the specification and method: docs/architecture.md, "Resampling".
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

# Filter specification as fractions of the lower Nyquist frequency, and the stop-band
# rejection in dB (see the module docstring for where they come from).
PASSBAND_END = 0.9137
STOPBAND_BEGIN = 1.0
ATTENUATION_DB = 131.0

# Target FFT block (input samples) and how much input one batch of blocks may hold.
_BLOCK = 1 << 15
_BATCH_SAMPLES = 1 << 20
# Threads for long inputs (numpy's FFT is single-threaded).
_MAX_THREADS = 4


@lru_cache(maxsize=32)
def _filter(up: int, down: int) -> tuple[np.ndarray, int]:
    """The low-pass FIR at the input rate (taps -span..span) and the block padding it needs."""
    lower = min(1.0, up / down)  # the lower Nyquist, in units of the input Nyquist
    f_pass, f_stop = PASSBAND_END * lower, STOPBAND_BEGIN * lower
    cutoff = 0.5 * (f_pass + f_stop)
    # Kaiser's estimates of length and beta for this rejection and transition width
    # (Oppenheim & Schafer, Discrete-Time Signal Processing, 7.6).
    half = (ATTENUATION_DB - 7.95) / (2.285 * math.pi * (f_stop - f_pass)) / 2.0
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    span = int(half)
    m = np.arange(-span, span + 1, dtype=np.float64)
    r = m / half
    taps = cutoff * np.sinc(cutoff * m) * np.i0(beta * np.sqrt(1.0 - r * r)) / np.i0(beta)
    # Input samples kept before/after each block's useful part: the filter's half-span plus
    # a few samples for the tails of the band-limited interpolation between input samples,
    # rounded to whole periods so that block starts land on the output grid.
    pad = -(-(span + 8) // down) * down
    return taps, pad


class _Plan:
    """Block geometry and filter spectrum for one reduced ratio and block size ``down * 2**k``."""

    def __init__(self, up: int, down: int, k: int):
        taps, self.pad = _filter(up, down)
        self.n_in, self.n_out = down << k, up << k
        self.hop = self.n_in - 2 * self.pad
        self.hop_out = self.hop * up // down
        self.first = self.pad * up // down

        span = len(taps) // 2
        circular = np.zeros(self.n_in)
        circular[np.arange(-span, span + 1) % self.n_in] = taps
        self.bins = min(self.n_in, self.n_out) // 2 + 1
        # Zero-phase filter: its spectrum is real. n_out/n_in undoes irfft's 1/n scaling.
        response = np.fft.rfft(circular)[: self.bins].real
        self.response = (response * (self.n_out / self.n_in)).astype(np.float32)


@lru_cache(maxsize=32)
def _plan(up: int, down: int, k: int) -> _Plan:
    return _Plan(up, down, k)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample 1-D ``audio`` from ``orig_sr`` to ``target_sr`` Hz; returns float32.

    Anti-aliased (nothing above the lower Nyquist frequency survives: > 130 dB down),
    linear phase, length ``ceil(len(audio) * target_sr / orig_sr)``; the signal is taken
    as zero outside the input. Matches ``librosa.resample(res_type="soxr_hq")`` closely.
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects 1-D audio, got shape {x.shape}")
    if int(orig_sr) != orig_sr or int(target_sr) != target_sr or orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} -> {target_sr}")
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return x.copy()
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    n_out = -(-len(x) * up // down)
    if n_out == 0:
        return np.zeros(0, dtype=np.float32)

    # Block size: large enough that the overlap is a small fraction, no larger than needed.
    pad = _filter(up, down)[1]
    k = 0
    while (down << k) < 16 * pad or (down << k) < min(_BLOCK, len(x) + 2 * pad):
        k += 1
    plan = _plan(up, down, k)

    rows = -(-n_out // plan.hop_out)
    xp = np.zeros((rows - 1) * plan.hop + plan.n_in, dtype=np.float32)
    xp[plan.pad:plan.pad + len(x)] = x
    blocks = np.lib.stride_tricks.sliding_window_view(xp, plan.n_in)[:: plan.hop]
    out = np.empty((rows, plan.hop_out), dtype=np.float32)
    batch = max(1, _BATCH_SAMPLES // plan.n_in)

    def run(r0: int) -> None:
        spectrum = np.fft.rfft(blocks[r0:r0 + batch], axis=-1)[:, : plan.bins]
        spectrum *= plan.response
        filtered = np.fft.irfft(spectrum, n=plan.n_out, axis=-1)
        out[r0:r0 + batch] = filtered[:, plan.first:plan.first + plan.hop_out]

    starts = range(0, rows, batch)
    workers = min(_MAX_THREADS, os.cpu_count() or 1, len(starts))
    if workers > 1:  # numpy's FFTs release the GIL; batches write disjoint rows
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(run, starts))
    else:
        for r0 in starts:
            run(r0)

    y = out.reshape(-1)[:n_out]
    # soxr emits round(len * ratio) samples (halves up); librosa zero-pads to the ceiling.
    y[(2 * len(x) * up + down) // (2 * down):] = 0.0
    return y
