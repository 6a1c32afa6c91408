"""Qwen3 text decoder of Qwen3-ASR, with its KV cache.

Names follow the checkpoint (`thinker.model.*`, the network's `decoder`). The official "interleaved
MRoPE" reduces to plain 1-D RoPE for ASR because its three position rows are identical
(docs/model.md §5), so `mx.fast.rope` (rotate-half, base 1e6) is exact.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .activations import attention, silu_mul
from .config import TextConfig


# A batched decoding step multiplies a few rows (one per sequence) by every weight. With
# MKL on the CPU, x @ W.T for 2-32 rows runs far below memory speed, while the same product
# as (W @ x.T).T is 20-45 % faster (measured, docs/performance-lab-notes.md); Metal's kernels need no
# such help. So only the CPU, and only few rows, take the swapped orientation. One row
# (plain decoding) and many rows (prefill) are left to MLX's own choice.
FEW_ROWS = 32


def few_rows_matmul(x: mx.array, weight: mx.array) -> mx.array:
    """x @ weight.T for x [..., in] and weight [out, in]."""
    rows = x.size // x.shape[-1]
    if 1 < rows <= FEW_ROWS and mx.default_device() == mx.cpu:
        return (weight @ x.reshape(rows, x.shape[-1]).T).T.reshape(*x.shape[:-1], weight.shape[0])
    return x @ weight.T


class Linear(nn.Linear):
    """Bias-free `nn.Linear` whose few-row products go through `few_rows_matmul`
    (quantizes like nn.Linear: `nn.quantize` swaps it for a QuantizedLinear)."""

    def __init__(self, input_dims: int, output_dims: int):
        super().__init__(input_dims, output_dims, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return few_rows_matmul(x, self.weight)


class KVCache:
    """Preallocated key/value buffers for every layer, grown in whole blocks when needed.

    Buffers are [batch, kv_heads, capacity, head_dim]; `offset` is the number of filled
    positions, shared by all rows.
    """

    block = 256

    def __init__(self, num_layers: int, capacity: int = 0):
        self.num_layers = num_layers
        self.capacity = capacity
        self.keys: list[mx.array | None] = [None] * num_layers
        self.values: list[mx.array | None] = [None] * num_layers
        self.offset = 0

    def update_and_fetch(self, layer: int, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        start, new = self.offset, keys.shape[2]
        end = start + new
        buf_k, buf_v = self.keys[layer], self.values[layer]
        if buf_k is None or end > buf_k.shape[2]:
            capacity = max(self.capacity, -(-end // self.block) * self.block)
            shape = (keys.shape[0], keys.shape[1], capacity, keys.shape[3])
            grown_k = mx.zeros(shape, dtype=keys.dtype)
            grown_v = mx.zeros(shape, dtype=values.dtype)
            if buf_k is not None:
                grown_k[:, :, :start, :] = buf_k[:, :, :start, :]
                grown_v[:, :, :start, :] = buf_v[:, :, :start, :]
            buf_k, buf_v = grown_k, grown_v
            self.capacity = capacity
        buf_k[:, :, start:end, :] = keys
        buf_v[:, :, start:end, :] = values
        self.keys[layer], self.values[layer] = buf_k, buf_v
        return buf_k[:, :, :end, :], buf_v[:, :, :end, :]

    @classmethod
    def stacked(cls, rows: list["KVCache"], capacity: int) -> "KVCache":
        """One cache holding single-row caches as its rows: row i's positions at 0..offset_i - 1,
        zeros after them up to `capacity`; its offset is the longest row's."""
        cache = cls(rows[0].num_layers, capacity)
        cache.offset = max(row.offset for row in rows)
        for layer in range(cache.num_layers):
            for name in ("keys", "values"):
                parts = [getattr(row, name)[layer][0, :, :row.offset, :] for row in rows]
                getattr(cache, name)[layer] = mx.stack([mx.pad(p, [(0, 0), (0, capacity - p.shape[1]), (0, 0)])
                                                        for p in parts])
        return cache

    def rollback(self, offset: int) -> None:
        """Forget every position from `offset` on (streaming re-feeds a changed tail)."""
        self.offset = min(self.offset, offset)

    def advance(self, steps: int) -> None:
        """Called once per forward pass, after every layer has stored its keys."""
        self.offset += steps

    def state(self) -> list[mx.array]:
        return [a for a in self.keys + self.values if a is not None]


class Attention(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scale = self.head_dim ** -0.5
        self.rope_theta = config.rope_theta
        hidden = config.hidden_size
        self.q_proj = Linear(hidden, self.heads * self.head_dim)
        self.k_proj = Linear(hidden, self.kv_heads * self.head_dim)
        self.v_proj = Linear(hidden, self.kv_heads * self.head_dim)
        self.o_proj = Linear(self.heads * self.head_dim, hidden)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self._project_step = None

    def rope(self, x: mx.array, offset: int) -> mx.array:
        return mx.fast.rope(x, self.head_dim, traditional=False, base=self.rope_theta, scale=1.0, offset=offset)

    def project(self, x: mx.array, offset) -> tuple[mx.array, mx.array, mx.array]:
        """Queries, keys and values [B, heads, T, head_dim], normed and rotated."""
        b, t, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(b, t, self.heads, self.head_dim)).transpose(0, 2, 1, 3)
        k = self.k_norm(self.k_proj(x).reshape(b, t, self.kv_heads, self.head_dim)).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(b, t, self.kv_heads, self.head_dim).transpose(0, 2, 1, 3)
        return self.rope(q, offset), self.rope(k, offset), v

    def __call__(self, x: mx.array, cache: KVCache | None, layer: int,
                 mask: mx.array | None = None, positions: mx.array | None = None) -> mx.array:
        """`positions` ([B] first position of each row) and `mask` ([B, 1, T, S] boolean)
        serve batches of prompts of different lengths; by default every row starts at the
        cache offset and attention is causal."""
        b, t, _ = x.shape
        offset = positions if positions is not None else (cache.offset if cache is not None else 0)
        if t == 1:
            # One decoding step: compiled, the norms and RoPE around the projections run
            # as a few fused kernels (3-7 % per token on the CPU, docs/performance-lab-notes.md).
            # `inputs=self` re-reads the weights at every call, so loading or quantizing
            # after the first step is seen; the offset is an array so no step retraces.
            if self._project_step is None:
                self._project_step = mx.compile(self.project, inputs=self)
            q, k, v = self._project_step(x, mx.array(offset) if isinstance(offset, int) else offset)
        else:
            q, k, v = self.project(x, offset)
        if cache is not None:
            k, v = cache.update_and_fetch(layer, k, v)
        if mask is None and t > 1:
            mask = "causal"
        # GQA: fewer K/V heads than query heads, never repeated (activations.attention).
        out = attention(q, k, v, self.scale, mask)
        return self.o_proj(out.transpose(0, 2, 1, 3).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.gate_proj = Linear(config.hidden_size, config.intermediate_size)
        self.up_proj = Linear(config.hidden_size, config.intermediate_size)
        self.down_proj = Linear(config.intermediate_size, config.hidden_size)

    def __call__(self, x: mx.array) -> mx.array:
        return self.down_proj(silu_mul(self.gate_proj(x), self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.self_attn = Attention(config)
        self.mlp = MLP(config)
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def __call__(self, x: mx.array, cache: KVCache | None, layer: int,
                 mask: mx.array | None = None, positions: mx.array | None = None) -> mx.array:
        x = x + self.self_attn(self.input_layernorm(x), cache, layer, mask, positions)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextDecoder(nn.Module):
    """`thinker.model` (the network's `decoder`): embeddings, decoder layers, final norm."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = [DecoderLayer(config) for _ in range(config.num_hidden_layers)]
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def __call__(self, embeddings: mx.array, cache: KVCache | None,
                 mask: mx.array | None = None, positions: mx.array | None = None) -> mx.array:
        x = embeddings
        for i, layer in enumerate(self.layers):
            x = layer(x, cache, i, mask, positions)
        if cache is not None:
            cache.advance(embeddings.shape[1])
        return self.norm(x)
