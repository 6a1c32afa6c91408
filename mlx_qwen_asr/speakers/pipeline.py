"""Who spoke when: audio of any length -> speaker turns, in bounded memory.

The audio is read block by block (audio_blocks.py, as transcription reads it) and seen
through sliding windows of WINDOW_SECONDS every STEP_SECONDS. In each window:

1. the segmentation network (segmentation.py) says, frame by frame, which of up to 3 local
   speakers talk (its powerset output decoded to one activity per local speaker; two at
   once where it hears overlap);
2. each local speaker gets an embedding (embedding.py) from the filterbank frames where it
   talks alone (all its frames when that is too little).

Only those small results are kept per window (about 2 KB), never the audio. At the end the
embeddings are clustered into global speakers (clustering.py) and every window's local
activity is added onto one timeline under its global speaker. Per frame, the number of
speakers is the windows' average count of local speakers, and the most active global
speakers fill it, so overlapped speech stays where the segmentation found it. Runs of
frames make the turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..audio.load import SAMPLE_RATE
from ..audio.blocks import open_audio_blocks
from . import clustering
from .options import WINDOW_SECONDS, DiarizeOptions
from .references import embed_references, match_references

# Windows follow each other without overlap: a second look at each moment (windows every
# 5 s) costs twice the time, and on the bench's conversations moved the DER within what the
# choice of conversations moves (18.9 % against 16.7 % on one set, 13.3 % against 14.1 % on
# another; docs/performance.md). The clustering joins the windows' local speakers.
STEP_SECONDS = 10.0
# Windows run through the networks together.
WINDOW_BATCH = 8
# A local speaker with less speech than this in a window gets no embedding (its frames are
# left out of the timeline); with less clean (non-overlapped) speech than EMBED_MIN_CLEAN
# its overlapped frames are used too.
MIN_ACTIVE_SECONDS = 0.2
EMBED_MIN_CLEAN_SECONDS = 0.5
# Embeddings are computed in length buckets of this many filterbank frames (10 ms each),
# from at most EMBED_MAX_SECONDS of a local speaker's frames (the middle ones). CAM++ is
# most of the pipeline's cost, in proportion to the seconds embedded; 2 s scored as 3 s
# did on the bench (docs/performance.md).
EMBED_BUCKET_FRAMES = 25
EMBED_MAX_SECONDS = 2.0
FBANK_SHIFT, FBANK_LENGTH = 0.010, 0.025
# Turns: gaps of one speaker shorter than this are closed, turns shorter than this dropped.
MIN_GAP_SECONDS = 0.1
MIN_TURN_SECONDS = 0.1


@dataclass(frozen=True)
class SpeakerTurn:
    start: float     # seconds from the start of the input
    end: float
    speaker: str     # "SPEAKER_1", "SPEAKER_2", ... by first appearance, or a known speaker's name

    @property
    def duration(self) -> float:
        return self.end - self.start


class SpeakerModels:
    """The two networks and the features they take; `load()` gives the shipped ones.

    segmentation(waveforms [batch, samples]) -> [batch, frames, 7] powerset log-probs;
    to_multilabel(log-probs) -> [batch, frames, 3] activity per local speaker;
    embedding(fbank [batch, frames, 80]) -> [batch, dim]; fbank(audio) -> [frames, 80].
    Frame i of the segmentation covers the window's time frame_offset + i * frame_step.
    """

    def __init__(self, segmentation, to_multilabel, embedding, fbank, frame_step: float, frame_offset: float):
        self.segmentation = segmentation
        self.to_multilabel = to_multilabel
        self.embedding = embedding
        self.fbank = fbank
        self.frame_step = frame_step
        self.frame_offset = frame_offset

    @classmethod
    def load(cls) -> "SpeakerModels":
        from . import embedding, fbank, segmentation

        return cls(segmentation.load_segmentation(), segmentation.powerset_to_multilabel,
                   embedding.load_embedding(), fbank.compute_fbank,
                   segmentation.FRAME_STEP, segmentation.FRAME_DURATION / 2)


_models: SpeakerModels | None = None


def shipped_models() -> SpeakerModels:
    global _models
    if _models is None:
        _models = SpeakerModels.load()
    return _models


@dataclass
class WindowResult:
    start: float               # seconds
    activity: np.ndarray       # [frames, 3] bool
    embedded: list[int]        # local speakers with an embedding, in order
    first_embedding: int       # index of the first of them in the run's embedding list


class Diarizer:
    """One diarization run: windows are fed in order (`add_windows`), then `turns()`."""

    def __init__(self, models: SpeakerModels, options: DiarizeOptions):
        self.models = models
        self.options = options
        self.windows: list[WindowResult] = []
        self.embeddings: list[np.ndarray] = []
        self.seconds: list[float] = []

    def add_windows(self, starts: list[float], audio: np.ndarray) -> None:
        """`audio` [batch, WINDOW samples]: windows starting at `starts` (seconds)."""
        import mlx.core as mx

        log_probs = self.models.segmentation(mx.array(audio, dtype=mx.float32))
        activity = np.asarray(self.models.to_multilabel(log_probs)) > 0.5
        pending: list[tuple[WindowResult, int, np.ndarray]] = []
        for start, window, active in zip(starts, audio, activity):
            result = WindowResult(start, active, [], len(self.embeddings))
            features = None
            for speaker in range(active.shape[1]):
                frames, clean_seconds = self._embedding_frames(active, speaker)
                if frames is None:
                    continue
                if features is None:
                    features = np.asarray(self.models.fbank(window), np.float32)
                rows = features[frames[self._fbank_to_frame(len(features), len(active))]]
                if len(rows) < 2:
                    continue
                result.embedded.append(speaker)
                pending.append((result, len(self.seconds), rows))
                self.seconds.append(clean_seconds)
                self.embeddings.append(None)
            self.windows.append(result)
        for index, vector in self._embed([rows for _, _, rows in pending], [i for _, i, _ in pending]):
            self.embeddings[index] = vector

    def _embedding_frames(self, active: np.ndarray, speaker: int):
        step = self.models.frame_step
        mine = active[:, speaker]
        if mine.sum() * step < MIN_ACTIVE_SECONDS:
            return None, 0.0
        clean = mine & (active.sum(1) == 1)
        if clean.sum() * step >= EMBED_MIN_CLEAN_SECONDS:
            return clean, clean.sum() * step
        return mine, clean.sum() * step

    def _fbank_to_frame(self, fbank_frames: int, seg_frames: int) -> np.ndarray:
        """The segmentation frame under each filterbank frame's centre."""
        centres = FBANK_LENGTH / 2 + FBANK_SHIFT * np.arange(fbank_frames)
        index = np.round((centres - self.models.frame_offset) / self.models.frame_step).astype(int)
        return np.clip(index, 0, seg_frames - 1)

    def _embed(self, rows: list[np.ndarray], indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """Embeddings of variable-length feature runs, batched by length (each cut to a
        bucket's length around its middle)."""
        import mlx.core as mx

        buckets: dict[int, list[tuple[int, np.ndarray]]] = {}
        for index, run in zip(indices, rows):
            length = min(len(run) // EMBED_BUCKET_FRAMES * EMBED_BUCKET_FRAMES or len(run),
                         int(EMBED_MAX_SECONDS / FBANK_SHIFT))
            cut = (len(run) - length) // 2
            run = run[cut:cut + length]
            buckets.setdefault(length, []).append((index, run - run.mean(0)))   # CAM++ takes mean-free features
        for items in buckets.values():
            batch = mx.array(np.stack([run for _, run in items]))
            vectors = np.asarray(self.models.embedding(batch), np.float32)
            for (index, _), vector in zip(items, vectors):
                yield index, vector

    def turns(self, duration: float) -> list[SpeakerTurn]:
        """Cluster, assign, aggregate, cut into turns."""
        if not self.embeddings:
            return []
        opts = self.options
        embeddings = np.stack(self.embeddings)
        centroids = clustering.cluster_centroids(embeddings, np.array(self.seconds), opts.num_speakers,
                                                 opts.min_speakers, opts.max_speakers)
        names = _speaker_names(centroids, opts.references)
        step, offset = self.models.frame_step, self.models.frame_offset
        total = max(1, int(math.ceil(duration / step)))
        score = np.zeros((total, len(centroids)), np.float32)
        count = np.zeros(total, np.float32)
        cover = np.zeros(total, np.float32)
        for window in self.windows:
            first = int(round(window.start / step))
            frames = min(len(window.activity), total - first)
            if frames <= 0:
                continue
            active = window.activity[:frames]
            cover[first:first + frames] += 1
            count[first:first + frames] += active.sum(1)
            if window.embedded:
                vectors = embeddings[window.first_embedding:window.first_embedding + len(window.embedded)]
                for local, speaker in zip(window.embedded, clustering.assign_window(vectors, centroids)):
                    score[first:first + frames, speaker] += active[:, local]
        covered = np.maximum(cover, 1)
        # Half the windows hearing a speaker is enough (np.round would send 0.5 to 0).
        average, speakers_per_frame = score / covered[:, None], np.floor(count / covered + 0.5).astype(int)
        order = np.argsort(-average, axis=1, kind="stable")
        on = np.zeros_like(score, bool)
        for rank in range(len(centroids)):
            chosen = order[:, rank]
            rows = np.nonzero((speakers_per_frame > rank) & (average[np.arange(total), chosen] > 0))[0]
            on[rows, chosen[rows]] = True
        turns = []
        for speaker in range(len(centroids)):
            for first, last in _runs(on[:, speaker], step):
                start = max(0.0, offset + first * step - step / 2)
                end = min(duration, offset + last * step + step / 2)
                if end - start >= MIN_TURN_SECONDS:
                    turns.append((start, end, speaker))
        return _labelled(turns, names)


def _runs(active: np.ndarray, step: float) -> list[tuple[int, int]]:
    """[first, last] frame of each run of True, runs apart by under MIN_GAP_SECONDS joined."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    runs: list[list[int]] = []
    for first, last in zip(starts, ends):
        if runs and (first - runs[-1][1] - 1) * step < MIN_GAP_SECONDS:
            runs[-1][1] = last
        else:
            runs.append([first, last])
    return [(a, b) for a, b in runs]


def _speaker_names(centroids: np.ndarray, references: dict | None) -> dict[int, str]:
    """Known speakers' names for the clusters their reference embeddings match best."""
    if not references or len(centroids) == 0:
        return {}
    return match_references(centroids, references)


def _labelled(turns: list[tuple[float, float, int]], names: dict[int, str]) -> list[SpeakerTurn]:
    """Turns in time order; unnamed speakers numbered SPEAKER_1, ... by first appearance."""
    turns.sort(key=lambda t: (t[0], t[1], t[2]))
    labels = dict(names)
    number = 0
    for _, _, speaker in turns:
        if speaker not in labels:
            number += 1
            labels[speaker] = f"SPEAKER_{number}"
    return [SpeakerTurn(round(float(start), 3), round(float(end), 3), labels[speaker]) for start, end, speaker in turns]


def iter_windows(blocks, window: int, step: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, `window` samples) every `step` samples over a block stream; the last
    window (or the only one, for short audio) is padded with zeros to cover the end."""
    held = np.zeros(0, np.float32)
    held_start = next_start = total = 0
    for block in blocks:
        held = np.concatenate([held, np.asarray(block, np.float32)])
        total += len(block)
        while held_start + len(held) >= next_start + window:
            yield next_start, held[next_start - held_start:next_start - held_start + window]
            next_start += step
            held, held_start = held[next_start - held_start:], next_start
    reached = next_start - step + window if next_start else 0
    while total and reached < total:
        part = held[next_start - held_start:]
        yield next_start, np.pad(part, (0, window - len(part)))
        reached = next_start + window
        next_start += step


def diarize_blocks(blocks, duration: float, options: DiarizeOptions, models: SpeakerModels | None = None,
                   progress=None) -> list[SpeakerTurn]:
    """Turns of a stream of 16 kHz mono blocks lasting `duration` seconds."""
    models = models or shipped_models()
    run = Diarizer(models, options)
    window, step = int(WINDOW_SECONDS * SAMPLE_RATE), int(STEP_SECONDS * SAMPLE_RATE)
    starts: list[float] = []
    batch: list[np.ndarray] = []
    for start, audio in iter_windows(blocks, window, step):
        starts.append(start / SAMPLE_RATE)
        batch.append(audio)
        if len(batch) == WINDOW_BATCH:
            run.add_windows(starts, np.stack(batch))
            if progress is not None:
                progress(min(duration, starts[-1] + WINDOW_SECONDS), duration)
            starts, batch = [], []
    if batch:
        run.add_windows(starts, np.stack(batch))
    if progress is not None:
        progress(duration, duration)
    return run.turns(duration)


def diarize(audio, *, sample_rate: int | None = None, options: DiarizeOptions | None = None,
            progress=None, models: SpeakerModels | None = None, **changes) -> list[SpeakerTurn]:
    """Speaker turns of a file path or array (with `sample_rate`), any length.

    `options` (DiarizeOptions) or keywords: num_speakers, or min_speakers/max_speakers, and
    known speakers (`speakers={"Ann": "ann.wav", ...}`: short clips of each, naming them).
    Silence gives no turns. `progress(done_seconds, total_seconds)` is called as it goes.
    """
    options = DiarizeOptions.build(options, **changes)
    clustering.check_available()
    models = models or shipped_models()
    if options.speakers and options.references is None:

        options = options.with_references(embed_references(options.speakers, models))
    stream = open_audio_blocks(audio, sample_rate)
    return diarize_blocks(stream.blocks, stream.duration, options, models, progress)
