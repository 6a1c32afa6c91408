"""Does a piece of audio hold speech? The seconds of it in which a trained speech-activity
network hears somebody speak: pyannote's segmentation-3.0 network (speakers/segmentation.py,
weights shipped, no SciPy), whose powerset output has a "nobody speaks" class; a frame
where that class has a probability under one half is speech, unless it is a pure tone.

The network hears a short beep (a 1 s sine) as speech, as it hears no noise, hum or
longer tone as speech. A frame whose spectrum has nearly all its energy in one peak (a
sine) is not counted: voiced speech spreads its energy over many harmonics.

The no-speech gate (confidence.py) asks this only of segments whose text is unsure, so
confident speech never pays for it.
"""

from __future__ import annotations

import numpy as np

# A frame is a pure tone when this share of its energy lies within 2 FFT bins of its
# strongest one (a Hann-windowed sine: all of it; speech frames: 0.27 median, 0.99 rarely,
# on the trained fixture's held-out speech and ../shared's recordings).
PURE_TONE_SHARE = 0.9
TONE_FFT = 1024
# Windows run together (the sinc layer's input for 4 windows is ~64 MB in float32).
WINDOW_BATCH = 4

_network = None


def _segmentation():
    """The network, loaded once (about 6 MB of weights)."""
    global _network
    if _network is None:
        from .speakers.segmentation import load_segmentation

        _network = load_segmentation()
    return _network


def speech_seconds(samples: np.ndarray) -> float:
    """Seconds of 16 kHz mono `samples` in which the network hears speech (pure tones left
    out). The audio is cut into the network's 10 s windows, the last one padded with zeros
    (as pyannote does)."""
    import mlx.core as mx

    from .speakers.segmentation import FRAME_STEP, WINDOW_SAMPLES

    samples = np.asarray(samples, np.float32)
    if not len(samples):
        return 0.0
    windows = [np.pad(samples[i:i + WINDOW_SAMPLES], (0, max(0, i + WINDOW_SAMPLES - len(samples))))
               for i in range(0, len(samples), WINDOW_SAMPLES)]
    frames = 0
    for first in range(0, len(windows), WINDOW_BATCH):
        batch = np.stack(windows[first:first + WINDOW_BATCH])
        nobody = np.asarray(_segmentation()(mx.array(batch))[..., 0])    # log P(nobody speaks) [window, frame]
        for window, log_nobody in zip(batch, nobody):
            speech = log_nobody < np.log(0.5)
            frames += int((speech & ~pure_tone_frames(window, len(log_nobody))).sum())
    return frames * FRAME_STEP


def pure_tone_frames(window: np.ndarray, count: int) -> np.ndarray:
    """[count] bool: is the network's frame i (samples from i * FRAME_STEP_SAMPLES, its
    receptive field long) a pure tone (PURE_TONE_SHARE)?"""
    from .speakers.segmentation import FRAME_SIZE_SAMPLES, FRAME_STEP_SAMPLES

    index = np.arange(count)[:, None] * FRAME_STEP_SAMPLES + np.arange(FRAME_SIZE_SAMPLES)[None]
    power = np.abs(np.fft.rfft(window[index] * np.hanning(FRAME_SIZE_SAMPLES), TONE_FFT, axis=1)) ** 2
    peak = power.argmax(axis=1)
    total = np.cumsum(np.pad(power, ((0, 0), (1, 0))), axis=1)
    rows = np.arange(count)
    near_peak = total[rows, np.minimum(peak + 3, power.shape[1])] - total[rows, np.maximum(peak - 2, 0)]
    return near_peak > PURE_TONE_SHARE * np.maximum(total[:, -1], 1e-20)
