"""The trained fixture models and their held-out speech (fixture_training/: docs/fixtures.md).

tests/fixtures/tiny_asr.npz is the compact form of a tiny Qwen3-ASR checkpoint trained on
espeak-ng speech (conftest's `trained_checkpoint` writes its Hugging Face folder);
tests/fixtures/heldout holds clips of sentences it never saw, in voices it never heard:
20 short, 5 of 7-15 s (two encoder windows), 3 of 20-40 s with pauses, with every word's
start and end time (words.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from mlx_qwen_asr.testing.wer import wer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TRAINED_MODEL = FIXTURES / "tiny_asr.npz"
TRAINED_ALIGNER = FIXTURES / "tiny_aligner.npz"   # python -m fixture_training.aligner
HELDOUT = FIXTURES / "heldout"
GROUPS = ("short", "medium", "long")


def rows() -> list[dict]:
    """manifest.tsv as dicts: file, duration, text, kind, voice."""
    lines = (HELDOUT / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def word_times() -> dict[str, list[tuple[str, float, float]]]:
    """file -> [(word, start, end), ...] in seconds."""
    data = json.loads((HELDOUT / "words.json").read_text(encoding="utf-8"))
    return {f: [(w, float(a), float(b)) for w, a, b in words] for f, words in data.items()}


def group_wers(texts: dict[str, str]) -> dict[str, float]:
    """WER per kind of clip and over all, for file -> transcript."""
    all_rows = rows()
    result = {}
    for kind in GROUPS:
        picked = [r for r in all_rows if r["kind"] == kind]
        result[kind] = wer([r["text"] for r in picked], [texts[r["file"]] for r in picked])
    result["all"] = wer([r["text"] for r in all_rows], [texts[r["file"]] for r in all_rows])
    return result
