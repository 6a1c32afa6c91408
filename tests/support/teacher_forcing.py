"""Teacher forcing: every position of a known continuation scored in one forward pass."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def teacher_forced_logits(network, mel, ids, continuation) -> np.ndarray:
    """float32 logits [len(continuation), V]: row i is the prediction of continuation[i],
    given the prompt `ids` (audio from `mel`) and continuation[:i]."""
    prompt = network.embed_prompt(ids, network.encode_audio(mel))
    steps = network.embed_tokens(mx.array(continuation[:-1]))[None].astype(prompt.dtype)
    logits = network(mx.concatenate([prompt, steps], axis=1), network.make_cache(), last_only=False)
    return np.array(logits[0, len(ids) - 1:].astype(mx.float32))
