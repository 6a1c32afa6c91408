"""Speech for tests: real clips from ../shared when present, else speech we synthesize.

The project's tests must pass on a user's clone without ../shared, so every clip has a
self-made fallback: espeak-ng when installed, otherwise a voiced, syllable-like signal.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SHARED_AUDIO = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio"
JFK = SHARED_AUDIO / "antirez" / "jfk.wav"

SENTENCE = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country. We choose to go to the moon in this decade.")


def _espeak(text: str) -> np.ndarray | None:
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text],
                       check=True, capture_output=True)
        audio, sr = sf.read(path, dtype="float32")
    from mlx_qwen_asr.audio import load_audio
    return load_audio(audio, sr)


def _synthetic(seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced syllables: harmonic tones with moving pitch and formant-like envelopes, plus pauses."""
    rng = np.random.default_rng(seed)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 3.3 * t + rng.uniform(0, 6)), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.25 * t) > -0.7).astype(np.float64)
    audio = 0.3 * voice * syllables * pauses + 0.003 * rng.standard_normal(t.size)
    return audio.astype(np.float32)


def speech(seconds: float) -> np.ndarray:
    """About `seconds` of 16 kHz mono speech (exactly that many samples)."""
    n = int(round(seconds * 16000))
    audio = None
    if JFK.is_file():
        from mlx_qwen_asr.audio import load_audio
        audio = load_audio(JFK)
    if audio is None:
        audio = _espeak(SENTENCE)
    if audio is None:
        audio = _synthetic(seconds)
    reps = -(-n // len(audio))
    return np.tile(audio, reps)[:n].astype(np.float32)
