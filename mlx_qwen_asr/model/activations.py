"""GELU, SiLU and attention softmax that are fast on MLX's CPU backend as well as on Metal.

On the CPU in float32 they are plain multiplies and adds that `mx.compile` fuses into one
vectorized loop each; elsewhere MLX's own. The device is chosen in `_fused_on_this_device`
and nowhere else. The approximations and why: docs/architecture.md, "CPU speed".
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

# erf(u) = u * P(u^2) / Q(u^2) on u in [-4, 4]; erf(+-4) is +-1 in float32.
_ERF_P = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
          -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
          -2.72614225801306e-10)
_ERF_Q = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
          -2.13374055278905e-04, -1.45660718464996e-05)
_X_LIMIT = 4.0 * math.sqrt(2.0)  # x where u = x / sqrt(2) reaches 4
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _clamp(x: mx.array, limit: float) -> mx.array:
    """x limited to [-limit, limit] in plain arithmetic (mx.clip's NaN-aware min/max would
    keep the fused loop scalar); exact to about an ulp of `limit`."""
    return 0.5 * (mx.abs(x + limit) - mx.abs(x - limit))


def _gelu_rational(x: mx.array) -> mx.array:
    half_x = 0.5 * x
    u = _clamp(x, _X_LIMIT) * _INV_SQRT2
    u2 = u * u
    u4 = u2 * u2
    u8 = u4 * u4
    p, q = _ERF_P, _ERF_Q
    # 0.5 x erf(u) = (0.5 x u) P(u2) / Q(u2), with P and Q split in halves (Estrin).
    h = half_x * u
    p_low = (p[0] + p[1] * u2) + (p[2] + p[3] * u2) * u4
    p_high = (p[4] + p[5] * u2) + p[6] * u4
    numerator = h * p_low + p_high * (h * u8)
    denominator = ((q[0] + q[1] * u2) + (q[2] + q[3] * u2) * u4) + q[4] * u8
    return half_x + numerator / denominator


# exp(y) = 2^r e^f with r = round(y / ln 2) and f = y - r ln 2 (ln 2 in two parts, so f is
# exact); e^f by its Taylor series to f^7 (|f| <= 0.347: error ~5e-9); 2^r built from its
# exponent bits. Adding then subtracting 1.5 * 2^23 rounds a float to an integer.
_ROUND = 12582912.0
_LOG2E = 1.4426950408889634
_LN2_HIGH, _LN2_LOW = 0.693359375, -2.12194440e-4
_EXP_LIMIT = 87.0  # |y| up to here: 2^r stays a normal float32


def _exp(y: mx.array) -> mx.array:
    """e^y for y in [-87, 87] (callers clamp)."""
    r = (y * _LOG2E + _ROUND) - _ROUND
    f = (y - r * _LN2_HIGH) - r * _LN2_LOW
    f2 = f * f
    f4 = f2 * f2
    poly = ((1.0 + f) + f2 * (0.5 + f * (1 / 6))) + f4 * ((1 / 24 + f * (1 / 120)) + f2 * (1 / 720 + f * (1 / 5040)))
    return poly * ((r.astype(mx.int32) + 127) * (1 << 23)).view(mx.float32)


def _silu_mul(gate: mx.array, up: mx.array) -> mx.array:
    # silu(g) = g / (1 + e^-g); e^-g clamped at e^+-87, where g / (1 + e^-g) is g or ~0 anyway.
    # Selects, not _clamp: an ulp of 87 (7.6e-6) would show in e^-g for small g.
    y = -gate
    y = mx.where(y > _EXP_LIMIT, _EXP_LIMIT, mx.where(y < -_EXP_LIMIT, -_EXP_LIMIT, y))
    return gate / (1.0 + _exp(y)) * up


def _shifted_exp(scores: mx.array, row_max: mx.array) -> mx.array:
    # scores - max <= 0; below -87 (and masked -inf) the weight is 0, as e^y underflows.
    y = scores - row_max
    far = y < -_EXP_LIMIT
    return mx.where(far, 0.0, _exp(mx.where(far, -_EXP_LIMIT, y)))


# Shape-specialized on purpose: a shapeless trace broadcasts every scalar, which doubles
# the graph depth and splits the loop into ~8 kernels. A retrace per new shape costs ~2 ms.
_gelu_rational_compiled = mx.compile(_gelu_rational)
_silu_mul_compiled = mx.compile(_silu_mul)
_shifted_exp_compiled = mx.compile(_shifted_exp)


def _fused_on_this_device(x: mx.array) -> bool:
    return x.dtype == mx.float32 and mx.default_device() == mx.cpu


def gelu(x: mx.array) -> mx.array:
    """0.5 x (1 + erf(x / sqrt(2))), the official model's `gelu`."""
    if _fused_on_this_device(x):
        return _gelu_rational_compiled(x)
    return nn.gelu(x)


def silu_mul(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up, the Qwen3 MLP's activation."""
    if _fused_on_this_device(gate):
        return _silu_mul_compiled(gate, up)
    return nn.silu(gate) * up


def attention(q: mx.array, k: mx.array, v: mx.array, scale: float, mask=None) -> mx.array:
    """softmax(q k^T * scale + mask) v, as `mx.fast.scaled_dot_product_attention`.

    q [B, H, T, D]; k, v [B, KV, S, D] with H a multiple of KV (grouped-query attention);
    `mask`: None, "causal" (query i sees keys up to S - T + i) or boolean, broadcastable
    to [B, H, T, S]. Single-query steps (few scores) and additive masks stay with SDPA.
    """
    b, heads, t, d = q.shape
    additive = isinstance(mask, mx.array) and mask.dtype != mx.bool_
    if t == 1 or additive or not _fused_on_this_device(q):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    kv_heads, s = k.shape[1], k.shape[2]
    group = heads // kv_heads
    # Query heads h = kv * group + g share K/V head kv: one GEMM per K/V head.
    scores = ((q * scale).reshape(b, kv_heads, group * t, d) @ k.swapaxes(-1, -2)).reshape(b, kv_heads, group, t, s)
    if isinstance(mask, str):
        mask = mx.arange(s)[None, :] <= mx.arange(t)[:, None] + (s - t)
    if mask is not None:
        if mask.ndim == 4:  # [B or 1, H or 1, T, S] -> [B or 1, KV or 1, G or 1, T, S]
            mask = mask.reshape(mask.shape[0], kv_heads if mask.shape[1] != 1 else 1,
                                group if mask.shape[1] != 1 else 1, *mask.shape[2:])
        scores = mx.where(mask, scores, -mx.inf)
    weights = _shifted_exp_compiled(scores, scores.max(axis=-1, keepdims=True))
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return (weights.reshape(b, kv_heads, group * t, s) @ v).reshape(b, heads, t, d)
