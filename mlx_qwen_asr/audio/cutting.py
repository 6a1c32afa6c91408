"""Cutting long audio into pieces at quiet moments, without losing or repeating a sample.

A cut goes near every `target` seconds, moved to the quietest 100 ms window within
`search` seconds of that point (the lowest sum of |x|, as the official
`split_audio_into_chunks` measures energy), at that window's quietest sample. Pieces
are contiguous: their concatenation is the input, sample for sample.

`iter_pieces` works on a stream of sample blocks, holding at most `target + search`
seconds plus one block, so a 3-hour file never sits in memory whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .load import SAMPLE_RATE

DEFAULT_SEGMENT_SECONDS = 30.0
DEFAULT_SEARCH_SECONDS = 5.0
ENERGY_WINDOW_SECONDS = 0.1


@dataclass
class AudioPiece:
    start: int          # first sample, in the whole input
    audio: np.ndarray   # the samples

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


def quietest_cut(audio: np.ndarray, low: int, high: int, window: int) -> int:
    """Index in [low, high] at the quietest sample of the quietest `window`-sample window."""
    low, high = max(0, low), min(len(audio), high)
    if high - low <= window:
        return (low + high) // 2
    magnitude = np.abs(audio[low:high]).astype(np.float64)
    sums = np.convolve(magnitude, np.ones(window), mode="valid")
    best = int(np.argmin(sums))
    return low + best + int(np.argmin(magnitude[best:best + window]))


def iter_pieces(blocks: Iterable[np.ndarray], target_s: float = DEFAULT_SEGMENT_SECONDS,
                  search_s: float = DEFAULT_SEARCH_SECONDS, sample_rate: int = SAMPLE_RATE) -> Iterator[AudioPiece]:
    """Pieces of about `target_s` seconds from a stream of sample blocks."""
    target = int(target_s * sample_rate)
    search = min(int(search_s * sample_rate), target // 2)
    window = max(4, int(ENERGY_WINDOW_SECONDS * sample_rate))
    parts: list[np.ndarray] = []   # blocks not yet cut; joined only when a cut is due
    held = 0
    start = 0
    for block in blocks:
        block = np.asarray(block, np.float32)
        parts.append(block)
        held += len(block)
        if held <= target + search:
            continue
        pending = np.concatenate(parts)
        while len(pending) > target + search:
            cut = quietest_cut(pending, target - search, target + search, window)
            yield AudioPiece(start, pending[:cut])
            pending, start = pending[cut:], start + cut
        parts, held = [pending], len(pending)
    if held:
        yield AudioPiece(start, np.concatenate(parts))
