"""Stage-by-stage comparison of this engine with the official implementation.

Each function runs one stage on both sides and returns its error figures; the parity tests
assert bounds on them (tiny checkpoints) and scripts/parity_report.py prints them (real
0.6B / 1.7B dimensions). `reference` is an official.OfficialASR (the official engine, out of
process).
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..decoding import greedy_decode
from ..model_input import asr_prompt, clip_mel
from ..transcribe import ASRModel

EOS_FILL = 151645


def relative_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| in float64."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def prefill_embeddings(model: ASRModel, audio: np.ndarray, context: str = "", language: str | None = None):
    """(prompt ids, [1, P, hidden] embeddings): the pipeline's own (model_input.asr_prompt)."""
    ids, embeddings = asr_prompt(model, audio, context, language)
    return ids, embeddings[None]


def compare_mel(model: ASRModel, reference, audio: np.ndarray) -> dict:
    expected = reference.features(audio)
    actual = np.array(clip_mel(audio, model.config.audio))
    return {"shape": list(actual.shape), "max_abs_diff": float(np.max(np.abs(actual - expected)))}


def compare_encoder(model: ASRModel, reference, audio: np.ndarray) -> dict:
    """Encoder on the official mel, so only the encoder's own error is measured."""
    mel = reference.features(audio)
    expected = reference.encoder_output(mel)
    actual = np.array(model.network.encode_audio(mx.array(mel)))
    return {
        "shape": list(actual.shape),
        "expected_shape": list(expected.shape),
        "max_abs_diff": float(np.max(np.abs(actual - expected))),
        "max_abs_reference": float(np.max(np.abs(expected))),
        "relative_error": relative_error(actual, expected),
    }


def compare_prompt_ids(model: ASRModel, reference, audio: np.ndarray, context: str = "", language=None) -> dict:
    expected = reference.prompt_ids(audio, context, language)
    actual, _ = prefill_embeddings(model, audio, context, language)
    return {"equal": actual == expected, "length": len(actual)}


def compare_prefill(model: ASRModel, reference, audio: np.ndarray) -> dict:
    expected = reference.logits(audio)
    _, embeddings = prefill_embeddings(model, audio)
    actual = np.array(model.network(embeddings, model.network.make_cache(), last_only=False)[0])
    return {
        "shape": list(actual.shape),
        "relative_error": relative_error(actual, expected),
        "max_abs_diff": float(np.max(np.abs(actual - expected))),
        "argmax_agreement": float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
    }


def compare_teacher_forced(model: ASRModel, reference, audio: np.ndarray, steps: int = 32) -> dict:
    """`steps` decode steps through our KV cache, each fed the official greedy token."""
    forced = reference.generate(audio, max_new_tokens=steps)
    forced = (forced + [EOS_FILL] * steps)[:steps]  # keep `steps` steps even if it stopped early
    expected = reference.logits(audio, continuation=forced)
    first = len(reference.prompt_ids(audio)) - 1
    expected = expected[first: first + steps]

    _, embeddings = prefill_embeddings(model, audio)
    cache = model.network.make_cache()
    logits = [model.network(embeddings, cache)[0, -1]]
    for token in forced[:-1]:
        logits.append(model.network(model.network.embed_tokens(mx.array([[token]])), cache)[0, -1])
    actual = np.array(mx.stack(logits))
    errors = [relative_error(actual[i], expected[i]) for i in range(steps)]
    return {
        "steps": steps,
        "max_relative_error": max(errors),
        "relative_errors": errors,
        "argmax_agreement": float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
    }


def compare_greedy(model: ASRModel, reference, audio: np.ndarray, tokens: int = 32, language=None) -> dict:
    expected = reference.generate(audio, max_new_tokens=tokens, language=language)
    _, embeddings = prefill_embeddings(model, audio, language=language)
    actual = greedy_decode(model.network, embeddings, tokens, model.config.eos_token_ids, guard=None).tokens
    return {"equal": actual == expected, "ours": actual, "official": expected, "distinct": len(set(expected))}
