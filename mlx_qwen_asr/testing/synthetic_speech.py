"""Speech-like audio without any file: voiced syllables with pauses, for benchmarks and tests."""

from __future__ import annotations

import numpy as np

from ..audio.load import SAMPLE_RATE


def synthetic_speech(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced syllables (harmonics with moving pitch, syllable envelopes, pauses) at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 3.3 * t + rng.uniform(0, 6)), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.25 * t) > -0.7).astype(np.float64)
    return (0.3 * voice * syllables * pauses + 0.003 * rng.standard_normal(t.size)).astype(np.float32)
