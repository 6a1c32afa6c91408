"""Stand-ins for the speaker networks, for testing the diarization pipeline's own logic.

Synthetic voices are tones with a syllable-like loudness envelope, one frequency per
speaker. The stand-in segmentation hears which tones sound in each frame and gives them
local slots in order of first appearance in the window (as a real one numbers speakers
per window), as powerset log-probabilities; the stand-in embedding is each filterbank
band's spread over the frames, which peaks at the speaker's tone.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from mlx_qwen_asr.speakers.pipeline import SpeakerModels

RATE = 16000
FRAME_STEP = 270 / RATE
FRAME_SPAN = 991
POWERSET = [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
TONES = {"A": 250.0, "B": 1000.0, "C": 2500.0, "D": 5000.0}


def voice(name: str, seconds: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * (3.0 + rng.random()) * t + rng.random() * 6)
    return (0.3 * envelope * np.sin(2 * np.pi * TONES[name] * t)).astype(np.float32)


def conversation(parts: list[tuple[str | None, float]]) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """Audio of (speaker or None for silence, seconds) parts in turn, and the true turns."""
    pieces, truth, at = [], [], 0.0
    for index, (name, seconds) in enumerate(parts):
        pieces.append(voice(name, seconds, index) if name else np.zeros(int(seconds * RATE), np.float32))
        if name:
            truth.append((at, at + seconds, name))
        at += seconds
    return np.concatenate(pieces), truth


def _tone_levels(frame: np.ndarray) -> np.ndarray:
    t = np.arange(len(frame)) / RATE
    return np.array([abs(np.dot(frame, np.exp(-2j * np.pi * f * t))) * 2 / len(frame) for f in TONES.values()])


def segmentation(waveforms: mx.array) -> mx.array:
    audio = np.asarray(waveforms)
    frames = (audio.shape[1] - FRAME_SPAN) // 270 + 1
    out = np.full((audio.shape[0], frames, len(POWERSET)), -20.0, np.float32)
    for b, wave in enumerate(audio):
        slots: list[int] = []
        for i in range(frames):
            levels = _tone_levels(wave[i * 270:i * 270 + FRAME_SPAN])
            heard = [k for k in np.argsort(-levels) if levels[k] > 0.03][:2]
            for k in heard:
                if k not in slots and len(slots) < 3:
                    slots.append(k)
            local = tuple(sorted(slots.index(k) for k in heard if k in slots))
            out[b, i, POWERSET.index(local)] = 0.0
    return mx.array(out)


def to_multilabel(log_probs: mx.array) -> mx.array:
    best = np.argmax(np.asarray(log_probs), axis=-1)
    mapping = np.zeros((len(POWERSET), 3), np.float32)
    for index, members in enumerate(POWERSET):
        mapping[index, list(members)] = 1.0
    return mx.array(mapping[best])


def fbank(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    count = 1 + (len(audio) - 400) // 160
    frames = np.stack([audio[i * 160:i * 160 + 400] for i in range(count)]) * np.hanning(400)
    power = np.abs(np.fft.rfft(frames, 512, axis=1))[:, :240] ** 2
    return np.log(power.reshape(count, 80, 3).sum(-1) + 1e-6).astype(np.float32)


def embedding(features: mx.array) -> mx.array:
    return mx.array(np.asarray(features).std(axis=1) ** 4)


def standin_models() -> SpeakerModels:
    return SpeakerModels(segmentation, to_multilabel, embedding, fbank, FRAME_STEP, FRAME_SPAN / 2 / RATE)
