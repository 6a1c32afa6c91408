"""Speakers as they come (dictation, `--mic --vad --diarize`): each utterance's voice print
is matched to the speakers heard so far, or starts a new one. Clustering online, one
utterance at a time: a speaker's print is the running mean of its utterances'."""

from __future__ import annotations

import numpy as np

from . import clustering
from .references import speech_embedding


class SpeakerTracker:
    """`label(audio)` -> the utterance's speaker: SPEAKER_1, ... by first appearance, or a
    known speaker's name (`references`: {name: unit embedding}); None without enough speech."""

    def __init__(self, models, references: dict | None = None,
                 threshold: float | None = None):
        self.models = models
        self.threshold = clustering.DISTANCE_THRESHOLD if threshold is None else threshold
        self.names: list[str] = list(references or {})
        self.sums: list[np.ndarray] = [np.asarray(v, np.float64) for v in (references or {}).values()]
        self.numbered = 0

    def label(self, audio: np.ndarray) -> str | None:
        vector = speech_embedding(audio, self.models)
        if vector is None:
            return None
        if self.sums:
            centroids = clustering.normalize(np.stack(self.sums))
            similarity = centroids @ vector
            best = int(np.argmax(similarity))
            if 1.0 - similarity[best] < self.threshold:
                self.sums[best] = self.sums[best] + vector
                return self.names[best]
        self.numbered += 1
        self.names.append(f"SPEAKER_{self.numbered}")
        self.sums.append(vector.astype(np.float64))
        return self.names[-1]
