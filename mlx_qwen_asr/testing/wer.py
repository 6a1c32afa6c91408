"""Word error rate: Levenshtein distance on normalised text.

Normalisation: Unicode NFKC, lower case, punctuation -> space, apostrophes kept inside
words ("don't" stays one word). Corpus rates sum the edits over all pairs and divide by
the total reference length, as the usual ASR scoring tools do.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

_NOT_WORD = re.compile(r"[^\w\s']|_")


def normalize(text: str) -> list[str]:
    """Lower-cased words without punctuation."""
    text = _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower())
    return [w for w in (w.strip("'") for w in text.split()) if w]


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Substitutions + deletions + insertions turning `ref` into `hyp`."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    return edit_distance(ref, hyp), len(ref)


def wer(references: str | Iterable[str], hypotheses: str | Iterable[str]) -> float:
    """Word error rate of one pair, or corpus WER of parallel lists."""
    return _rate(references, hypotheses, word_errors)


def _rate(references, hypotheses, count) -> float:
    if isinstance(references, str) != isinstance(hypotheses, str):
        raise TypeError("pass two strings or two lists of strings")
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    references, hypotheses = list(references), list(hypotheses)
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = total = 0
    for ref, hyp in zip(references, hypotheses):
        e, n = count(ref, hyp)
        edits += e
        total += n
    if total == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / total
