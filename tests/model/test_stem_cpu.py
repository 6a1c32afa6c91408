"""The CPU conv stem (stem_cpu.py) against `nn.Conv2d`, and the encoder's windowed
attention against one padded, masked pass: the faster forms must give the same output."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from mlx_qwen_asr.model import activations
from mlx_qwen_asr.model.encoder import EncoderAttention
from mlx_qwen_asr.model.stem_cpu import stem_convs


def _convs(channels: int, seed: int):
    mx.random.seed(seed)
    convs = [nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.Conv2d(channels, channels, 3, stride=2, padding=1),
             nn.Conv2d(channels, channels, 3, stride=2, padding=1)]
    for conv in convs:   # biases large enough that a bias misplaced on the padding would show
        conv.bias = mx.random.normal(conv.bias.shape)
    return convs


def _reference(x, convs):
    x = x[..., None]
    for conv in convs:
        x = activations.gelu(conv(x))
    return x


# The model's 128 mel bins: full 1 s chunks, odd and even tail widths (a single short
# chunk), one and several chunks (split over two streams).
@pytest.mark.parametrize("chunks,mels,width", [(1, 128, 100), (5, 128, 100), (2, 128, 37), (1, 128, 38)])
def test_stem_equals_conv2d(chunks, mels, width):
    convs = _convs(24, chunks * width)
    x = mx.array(np.random.default_rng(width).standard_normal((chunks, mels, width)).astype(np.float32))
    got, want = stem_convs(x, *convs), _reference(x, convs)
    assert got.shape == want.shape
    # Same GEMMs on the same operands: equal, not merely close.
    assert mx.array_equal(got, want)


# Tiny products (odd mel heights, one-frame chunks): MKL may round a GEMM of a few rows
# differently when the rows are split in halves, by an ulp or so.
@pytest.mark.parametrize("chunks,mels,width", [(3, 128, 1), (3, 17, 9), (1, 8, 2)])
def test_stem_tiny_shapes_close(chunks, mels, width):
    convs = _convs(24, chunks * width)
    x = mx.array(np.random.default_rng(width).standard_normal((chunks, mels, width)).astype(np.float32))
    got, want = np.array(stem_convs(x, *convs)), np.array(_reference(x, convs))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tokens,window", [(143, 104), (40, 13), (39, 13), (7, 7)])
def test_windowed_attention_equals_padded_masked_pass(tokens, window):
    mx.random.seed(tokens)
    attn = EncoderAttention(32, 4)
    x = mx.random.normal((tokens, 32))
    windows = -(-tokens // window)
    pad = windows * window - tokens

    def split(y):
        return mx.pad(y, [(0, pad), (0, 0)]).reshape(windows, window, 4, 8).transpose(0, 2, 1, 3)

    mask = mx.arange(windows * window).reshape(windows, 1, 1, window) < tokens
    out = mx.fast.scaled_dot_product_attention(split(attn.q_proj(x)), split(attn.k_proj(x)), split(attn.v_proj(x)),
                                               scale=attn.scale, mask=mask)
    want = attn.out_proj(out.transpose(0, 2, 1, 3).reshape(windows * window, 32)[:tokens])
    np.testing.assert_allclose(np.array(attn(x, window)), np.array(want), rtol=1e-5, atol=1e-6)
