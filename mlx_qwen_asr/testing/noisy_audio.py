"""Speech clips with silence and noise put between them (and optionally under them): the
input a voice-activity detector must cut without losing a word.

`with_gaps(clips, seconds, seed)` lays 16 kHz clips end to end with a gap before each: part
digital silence, part noise (white, pink, or a 50 Hz hum with harmonics, in turn), and
returns the audio with each clip's start on the new clock.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
NOISE_KINDS = ("white", "pink", "hum")


def noise(kind: str, samples: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """`samples` of noise at an RMS of `level_db` dBFS."""
    if kind == "white":
        x = rng.standard_normal(samples)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(samples))
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        x = np.fft.irfft(spectrum, samples)
    elif kind == "hum":
        t = np.arange(samples) / SAMPLE_RATE
        x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
        x = x + 0.1 * rng.standard_normal(samples)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; one of {NOISE_KINDS}")
    x = np.asarray(x, np.float64)
    rms = np.sqrt(np.mean(x ** 2)) or 1.0
    return (x / rms * 10 ** (level_db / 20)).astype(np.float32)


def with_gaps(clips: list[np.ndarray], gap_seconds: list[float], *, noise_db: float = -40.0,
              background_db: float | None = None, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Clips joined with a gap before each (`gap_seconds[i]`, half silence and half noise of
    kind NOISE_KINDS[i % 3] at `noise_db`); `background_db` adds white noise under everything.
    Returns (audio, start of each clip in seconds)."""
    rng = np.random.default_rng(seed)
    pieces, starts, at = [], [], 0
    for i, (clip, gap) in enumerate(zip(clips, gap_seconds)):
        quiet = int(gap * SAMPLE_RATE) // 2
        noisy = int(gap * SAMPLE_RATE) - quiet
        pieces += [np.zeros(quiet, np.float32), noise(NOISE_KINDS[i % 3], noisy, noise_db, rng)]
        at += quiet + noisy
        starts.append(at / SAMPLE_RATE)
        pieces.append(np.asarray(clip, np.float32))
        at += len(clip)
    audio = np.concatenate(pieces)
    if background_db is not None:
        audio = audio + noise("white", len(audio), background_db, rng)
    return np.clip(audio, -1.0, 1.0).astype(np.float32), starts
