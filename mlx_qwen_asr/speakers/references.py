"""Known speakers: short reference clips -> embeddings, and the clusters they name."""

from __future__ import annotations

import os

import numpy as np

from ..audio.load import SAMPLE_RATE, load_audio
from ..errors import AudioError, OptionError
from . import clustering
from .options import WINDOW_SECONDS

# A reference needs this much speech (as the segmentation hears it) to be a voice print.
MIN_REFERENCE_SPEECH_SECONDS = 1.0
# Only this much of a long reference is used.
MAX_REFERENCE_SECONDS = 30.0
# A cluster takes a known speaker's name only when this similar (cosine) to the reference.
MIN_SIMILARITY = 1.0 - clustering.DISTANCE_THRESHOLD


def embed_references(speakers: dict, models) -> dict[str, np.ndarray]:
    """{name: unit embedding} of each clip's speech; a clip without enough speech is an OptionError."""
    references = {}
    for name, clip in speakers.items():
        try:
            audio = load_audio(clip, None if isinstance(clip, (str, os.PathLike, tuple)) else SAMPLE_RATE)
        except AudioError as exc:
            raise OptionError(f"reference clip for {name}: {exc}") from None
        rows = speech_features(audio[:int(MAX_REFERENCE_SECONDS * SAMPLE_RATE)], models)
        seconds = len(rows) * 0.01
        if seconds < MIN_REFERENCE_SPEECH_SECONDS:
            raise OptionError(f"reference clip for {name} has {seconds:.1f} s of speech; "
                              f"it needs at least {MIN_REFERENCE_SPEECH_SECONDS:g} s of that voice alone")
        references[name] = _embed(rows, models)
    return references


def speech_embedding(audio: np.ndarray, models, min_seconds: float = 0.5) -> np.ndarray | None:
    """The unit voice print of the speech in `audio` (None with under `min_seconds` of it)."""
    rows = speech_features(audio[:int(MAX_REFERENCE_SECONDS * SAMPLE_RATE)], models)
    return _embed(rows, models) if len(rows) * 0.01 >= min_seconds else None


def speech_features(audio: np.ndarray, models) -> np.ndarray:
    """Filterbank frames of `audio` (any length) where the segmentation hears one voice alone."""
    window = int(WINDOW_SECONDS * SAMPLE_RATE)
    rows = []
    for start in range(0, max(len(audio), 1), window):
        piece = audio[start:start + window]
        rows.append(_speech_features(np.pad(piece, (0, window - len(piece))), len(piece), models))
    return np.concatenate(rows)


def _embed(rows: np.ndarray, models) -> np.ndarray:
    import mlx.core as mx

    vector = np.asarray(models.embedding(mx.array((rows - rows.mean(0))[None])), np.float32)[0]
    return clustering.normalize(vector)


def _speech_features(window: np.ndarray, real_samples: int, models) -> np.ndarray:
    """Filterbank frames of one window where the segmentation hears a single voice."""
    import mlx.core as mx

    activity = np.asarray(models.to_multilabel(models.segmentation(mx.array(window[None], dtype=mx.float32))))[0] > 0.5
    alone = activity.sum(1) == 1
    features = np.asarray(models.fbank(window), np.float32)
    centres = 0.0125 + 0.01 * np.arange(len(features))
    index = np.clip(np.round((centres - models.frame_offset) / models.frame_step).astype(int), 0, len(alone) - 1)
    keep = alone[index] & (centres < real_samples / SAMPLE_RATE)
    return features[keep]


def match_references(centroids: np.ndarray, references: dict[str, np.ndarray]) -> dict[int, str]:
    """{cluster: name}: each known speaker names at most one cluster, the most similar one,
    if similar enough."""
    from scipy.optimize import linear_sum_assignment

    names = list(references)
    similarity = np.stack([references[n] for n in names]) @ clustering.normalize(centroids).T
    rows, cols = linear_sum_assignment(-similarity)
    return {int(c): names[r] for r, c in zip(rows, cols) if similarity[r, c] >= MIN_SIMILARITY}
