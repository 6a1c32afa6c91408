"""Local speakers' embeddings -> global speakers, with SciPy (the optional `diarize` extra).

Agglomerative clustering (SciPy's `linkage`, average linkage on cosine distance) cut at a
distance threshold when the number of speakers is free, or at the number asked for; a
bounded count (`min_speakers`/`max_speakers`) takes the threshold's count and clips it into
the bounds. Clusters with too little speech to be a speaker of their own are folded into
the nearest real one. Then every local speaker of a window is given a global speaker by
its similarity to the clusters' centroids, two local speakers of one window never the same
one (SciPy's `linear_sum_assignment`): the segmentation already told them apart.
"""

from __future__ import annotations

import numpy as np

from ..errors import SetupError

# Cosine distance at which two groups of embeddings stop being one speaker. Chosen on the
# conversations of scripts/diarization_bench.py (docs/performance.md).
DISTANCE_THRESHOLD = 0.5
# A cluster with less clean speech than this is no speaker of its own (auto count only):
# it joins the nearest larger cluster within FOLD_DISTANCE (the tree cut there). Small
# clusters far from every large one are joined together, and are a speaker who said little
# if they hold MIN_SPEAKER_SHARE of the speech (short files hold a few voice prints only);
# otherwise they join the nearest large cluster (on long audio: stray prints, not voices).
# On long audio a cluster also needs MIN_CLUSTER_SHARE of all the clustered speech: stray
# prints (overlap, noise) form small tight clusters of their own there (an hour of 11 voices
# gave 18 speakers, with 10-20 s of clean speech in each stray one; the real ones held 37 s
# or more of 2254 s).
MIN_SPEAKER_SECONDS = 2.0
MIN_CLUSTER_SHARE = 0.01
FOLD_DISTANCE = 0.8
MIN_SPEAKER_SHARE = 0.1
# Only embeddings of at least this much clean (non-overlapped) speech are clustered: an
# overlapped one sits between two voices and would join their clusters. The rest are assigned.
MIN_CLEAN_SECONDS = 0.5
# At most this many embeddings are clustered (the longest); the rest are only assigned.
# SciPy's linkage keeps n*(n-1)/2 distances: 2000 is 16 MB.
MAX_CLUSTERED = 2000

INSTALL_HINT = "pip install 'mlx-qwen-asr[diarize]'"


def _scipy():
    try:
        from scipy.cluster.hierarchy import fcluster, linkage
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        raise SetupError(f"speaker diarization needs the optional scipy package: {INSTALL_HINT}") from None
    return linkage, fcluster, linear_sum_assignment


def check_available() -> None:
    """Raises SetupError (one line, with the install command) if SciPy is missing."""
    _scipy()


def normalize(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float64)
    norms = np.linalg.norm(embeddings, axis=-1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def cluster_centroids(embeddings: np.ndarray, seconds: np.ndarray, num_speakers: int | None = None,
                      min_speakers: int | None = None, max_speakers: int | None = None,
                      threshold: float | None = None) -> np.ndarray:
    """Unit centroids [speakers, dim] of the embeddings' clusters (`seconds`: the clean speech
    behind each embedding, its weight). No embeddings: no speakers."""
    linkage, fcluster, _ = _scipy()
    threshold = DISTANCE_THRESHOLD if threshold is None else threshold
    units = normalize(embeddings)
    seconds = np.asarray(seconds, np.float64)
    if len(units) == 0:
        return np.zeros((0, units.shape[-1] if units.ndim == 2 else 0))
    clean = seconds >= MIN_CLEAN_SECONDS
    if clean.any():
        units, seconds = units[clean], seconds[clean]
    if len(units) > MAX_CLUSTERED:
        keep = np.sort(np.argsort(-seconds, kind="stable")[:MAX_CLUSTERED])
        units, seconds = units[keep], seconds[keep]
    if len(units) == 1:
        labels = np.ones(1, int)
    else:
        tree = linkage(units, method="average", metric="cosine")
        if num_speakers is not None:
            labels = fcluster(tree, t=min(num_speakers, len(units)), criterion="maxclust")
        else:
            labels = fcluster(tree, t=threshold, criterion="distance")
            loose = fcluster(tree, t=max(threshold, FOLD_DISTANCE), criterion="distance")
            labels = _fold_small(units, seconds, labels, loose)
            count = len(np.unique(labels))
            low = min_speakers or 1
            high = max_speakers or count
            if not low <= count <= high:
                labels = fcluster(tree, t=min(max(count, low), high, len(units)), criterion="maxclust")
    return normalize(np.stack([(units[labels == k] * seconds[labels == k, None]).sum(0)
                               for k in np.unique(labels)]))


def _fold_small(units: np.ndarray, seconds: np.ndarray, labels: np.ndarray, loose: np.ndarray) -> np.ndarray:
    """Clusters with under MIN_SPEAKER_SECONDS (or MIN_CLUSTER_SHARE) of speech joined to
    the nearest larger one within the same `loose` cluster (the tree cut at FOLD_DISTANCE, which nests `labels`);
    where there is none, the small clusters of that loose cluster become one, kept if it
    holds MIN_SPEAKER_SHARE of all the speech, else joined to the nearest larger one."""
    ids = np.unique(labels)
    totals = np.array([seconds[labels == k].sum() for k in ids])
    large = ids[totals >= max(MIN_SPEAKER_SECONDS, MIN_CLUSTER_SHARE * seconds.sum())]
    if len(large) == 0 or len(large) == len(ids):
        return labels
    centroids = normalize(np.stack([units[labels == k].mean(0) for k in large]))
    folded = labels.copy()
    for group in np.unique(loose[~np.isin(labels, large)]):
        small = (loose == group) & ~np.isin(labels, large)
        near = np.isin(large, labels[loose == group])
        if not near.any() and seconds[small].sum() >= MIN_SPEAKER_SHARE * seconds.sum():
            folded[small] = labels[small].min()     # one speaker who said little
            continue
        choices = large[near] if near.any() else large
        similarity = units[small] @ centroids[near if near.any() else slice(None)].T
        folded[small] = choices[np.argmax(similarity, axis=1)]
    return folded


def assign_window(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Global speaker of each local speaker of one window: the most similar centroids, no
    two local speakers on the same one while there are centroids to go round."""
    _, _, linear_sum_assignment = _scipy()
    similarity = normalize(embeddings) @ centroids.T
    speakers = np.argmax(similarity, axis=1)
    rows, cols = linear_sum_assignment(-similarity)
    speakers[rows] = cols
    return speakers
