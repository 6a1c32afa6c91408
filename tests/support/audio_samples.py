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

SHARED_AUDIO = Path(__file__).resolve().parents[3] / "shared" / "data" / "audio"
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
    from mlx_qwen_asr.audio.load import load_audio
    return load_audio(audio, sr)


def speech(seconds: float) -> np.ndarray:
    """About `seconds` of 16 kHz mono speech (exactly that many samples)."""
    n = int(round(seconds * 16000))
    audio = None
    if JFK.is_file():
        from mlx_qwen_asr.audio.load import load_audio
        audio = load_audio(JFK)
    if audio is None:
        audio = _espeak(SENTENCE)
    if audio is None:
        from mlx_qwen_asr.testing.synthetic_speech import synthetic_speech
        audio = synthetic_speech(seconds)
    reps = -(-n // len(audio))
    return np.tile(audio, reps)[:n].astype(np.float32)
