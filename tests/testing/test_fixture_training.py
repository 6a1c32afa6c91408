"""The fixture trainers' data pieces (fixture_training/): known word times stay exact.

The trained fixtures' word-time aids rest on two facts checked here: `compose` puts each
word's audio exactly at its reported span, and `token_labels` maps a span to the audio
tokens whose 80 ms frames it covers (13 per 1 s conv chunk).
"""

from __future__ import annotations

import numpy as np

from fixture_training.clips import token_labels
from fixture_training.speech import SR, compose


def test_compose_places_each_word_at_its_span():
    rng = np.random.default_rng(0)
    snippets = {k: np.full(int(SR * (0.2 + 0.1 * k)), 0.1 * (k + 1), np.float32) for k in range(4)}
    audio, spans = compose([[0, 1], [2, 3, 1]], snippets, rng)
    assert len(spans) == 5
    for word, (start, end) in zip([0, 1, 2, 3, 1], spans):
        first = int(round(start * SR))
        np.testing.assert_array_equal(audio[first:first + len(snippets[word])], snippets[word])
        assert abs((end - start) * SR - len(snippets[word])) < 1e-6
    starts, ends = np.array(spans).T
    assert np.all(starts[1:] > ends[:-1])              # a silence between every two words
    assert np.count_nonzero(audio) == sum(len(snippets[w]) for w in [0, 1, 2, 3, 1])


def test_token_labels_follow_the_conv_chunks():
    # 2 s of audio: 26 tokens; token i of chunk c covers [c + 0.08 (i mod 13), +0.08) s.
    label, frames = token_labels(26, [(0.0, 0.16), (1.0, 1.24), (1.9, 1.905)])
    assert label[:2].tolist() == [0, 0] and label[2] == -1
    # Token 12 of chunk 0 covers [0.96, 1.04): 40 ms of the word starting at 1.0 s.
    assert np.flatnonzero(label == 1).tolist() == [12, 13, 14, 15]
    assert frames[0].tolist() == [0, 1] and frames[1].tolist() == [12, 13, 14, 15]
    # A word too short to own a token (< 20 ms of overlap) still points at its best one,
    # token 11 of chunk 1: [1.88, 1.96).
    assert 2 not in label and frames[2].tolist() == [24]
