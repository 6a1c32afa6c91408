"""The CPU float32 forms of GELU, SiLU and attention (activations.py) against MLX's own
and float64: the fast paths must not cost accuracy."""

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_qwen_asr.model import activations


def test_fast_paths_are_taken_here():
    # The suite runs on the CPU backend, so the checks below exercise the fused forms.
    assert activations._fused_on_this_device(mx.zeros((1,), mx.float32)) == (mx.default_device() == mx.cpu)


def test_gelu_and_silu_close_to_float64():
    x = mx.concatenate([mx.linspace(-40, 40, 200001), mx.array([0.0, 1e-8, -1e-8, 1e4, -1e4])])
    x64 = np.array(x, np.float64)
    erf = np.vectorize(math.erf)
    gelu64 = 0.5 * x64 * (1 + erf(x64 / math.sqrt(2)))
    # Far in the negative tail 0.5 x + 0.5 x erf(u) cancels: the error is an ulp of x / 2.
    assert np.max(np.abs(np.array(activations.gelu(x)) - gelu64) / np.maximum(1.0, np.abs(x64))) < 2e-6
    up = mx.array(np.random.default_rng(0).standard_normal(x.size).astype(np.float32))
    with np.errstate(over="ignore"):   # e^1e4 is inf in float64 too: silu is then 0
        silu64 = x64 / (1 + np.exp(-x64)) * np.array(up, np.float64)
    got = np.array(activations.silu_mul(x, up))
    assert np.all(np.isfinite(got))
    mlx_own = np.array(nn.silu(x) * up)
    scale = np.maximum(1.0, np.abs(silu64))
    assert np.max(np.abs(got - silu64) / scale) < 2 * np.max(np.abs(mlx_own - silu64) / scale) + 1e-7


@pytest.mark.parametrize("batch,heads,kv_heads,queries,keys", [(1, 8, 4, 33, 33), (3, 4, 4, 9, 20), (2, 6, 2, 17, 17)])
def test_attention_matches_sdpa(batch, heads, kv_heads, queries, keys):
    rng = np.random.default_rng(queries)
    q, k, v = (mx.array(rng.standard_normal(shape).astype(np.float32) * 2)
               for shape in ((batch, heads, queries, 16), (batch, kv_heads, keys, 16), (batch, kv_heads, keys, 16)))
    lengths = mx.array([keys - 2 * i for i in range(batch)])[:, None, None, None]
    key = mx.arange(keys)[None, None, None, :]
    query = mx.arange(queries)[None, None, :, None] + (keys - queries)
    for mask in (None, "causal", (key <= query) & (key < lengths), mx.arange(keys) < keys - 1):
        ours = activations.attention(q, k, v, 0.25, mask)
        sdpa = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
        assert ours.shape == sdpa.shape
        assert float(mx.abs(ours - sdpa).max()) < 2e-6, type(mask)


def test_silu_mul_equals_nn_silu_in_other_dtypes():
    gate = mx.array(np.linspace(-8, 8, 64, dtype=np.float32)).astype(mx.bfloat16)
    up = mx.ones_like(gate)
    assert mx.array_equal(activations.silu_mul(gate, up), nn.silu(gate) * up)
