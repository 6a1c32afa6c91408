"""Closing a streaming region: where its audio is cut and where its text splits between the
audio before the cut and after it. Plain functions over samples and log-probabilities."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..audio.load import SAMPLE_RATE
from ..audio.cutting import ENERGY_WINDOW_SECONDS, quietest_cut


def region_cut(region: np.ndarray, upto: int, reference: int, keep: int) -> int:
    """The sample where a region of `upto` samples is cut. Late (the next region starts short)
    but leaving `keep` samples for the words still being decoded: the quietest moment from
    3 keep-lengths before the end (the next region is never longer) to one before `reference`
    (the end of the step, had it been a regular one; the end itself for regular steps)."""
    latest = max(upto - 3 * keep, reference - keep)
    return quietest_cut(region, upto - 3 * keep, latest, int(ENERGY_WINDOW_SECONDS * SAMPLE_RATE))


def log_softmax(scores: mx.array) -> mx.array:
    return scores - mx.logsumexp(scores, axis=-1, keepdims=True)


def end_of_text(whole: mx.array, closing: mx.array, tokens: list[int], header: int, eos_ids) -> int:
    """Where in `tokens` (a region's text, `header` tokens of language header first) the
    transcript of the audio before the cut ends.

    `whole` and `closing` are teacher-forced log-probabilities [len(tokens) - header + 1,
    vocab] given the whole region and given only the audio before the cut (row j predicts
    the token after tokens[:header + j]). For each token: how much less likely it is without
    the audio after the cut (near 0 for words spoken before it, very negative for words
    after it); the split j maximizes the sum of those over tokens[header:j] plus
    log P(end of text after tokens[:j] | audio before the cut). The ratio, not the plain
    likelihood, so a model unsure of its words everywhere does not push every word into
    the carry-over."""
    eos = mx.array(list(eos_ids))
    end_scores = mx.max(closing[:, eos], axis=-1)
    text = mx.array(tokens[header:], dtype=mx.int32)[:, None]
    ratio = (mx.take_along_axis(closing[:-1], text, axis=-1) - mx.take_along_axis(whole[:-1], text, axis=-1))[:, 0]
    before = mx.concatenate([mx.zeros((1,)), mx.cumsum(ratio)])
    return header + int(mx.argmax(before + end_scores).item())
