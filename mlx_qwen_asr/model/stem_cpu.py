"""The audio encoder's conv stem for MLX's CPU backend (float32): three 3x3 stride-2 convs.

`mx.conv2d` on the CPU pads its input (a copy), gathers the patches (a general strided
copy) and runs one sgemm, all but the GEMM on one thread. Here the same GEMMs (bit-identical
output, same operands in the same order) get their patches in fewer, cheaper copies:

- conv 1 (one input channel) takes the bias as a tenth patch column of ones, and computes
  its output on the grid conv 2 needs, the padding included: padding positions get zero
  patches and a zero "ones" column, so they come out 0 and GELU keeps them 0. Conv 2 then
  reads its patches straight out of that output, with no padded copy of 17 M values;
- a patch is three runs of 3 x channels contiguous values (one per kernel row, NHWC), so
  the patch matrix is one strided view copied with a contiguous inner loop;
- the clip's chunks are split in two halves whose single-threaded work (GELU, patch copies,
  bias adds) runs on two CPU streams at once, while every GEMM stays on the default stream
  (MKL already uses every core; two GEMMs at once oversubscribe them).

The GPU and other dtypes keep `nn.Conv2d` (encoder.py chooses, by `activations`' device switch).
Measurements: docs/performance-lab-notes.md.
"""

from __future__ import annotations

import threading

import mlx.core as mx
import mlx.nn as nn

from .activations import gelu

# MLX streams belong to the thread that made them (the server runs the model on a worker
# thread), so each thread gets its own second stream.
_streams = threading.local()


def _second_stream() -> mx.Stream:
    if getattr(_streams, "second", None) is None:
        _streams.second = mx.new_stream(mx.cpu)
    return _streams.second


def _out(size: int) -> int:
    return (size - 1) // 2 + 1   # 3x3, stride 2, padding 1


def _first_conv_padded(mel: mx.array, conv: nn.Conv2d, rows: int, cols: int, gemm_stream) -> mx.array:
    """conv(mel) + bias for mel [n, H, W], on a grid of `rows` x `cols` positions that starts
    one row and one column before the output and is 0 outside it: [n, rows, cols, out]."""
    n, height, width = mel.shape
    out_h, out_w = _out(height), _out(width)
    # Grid position (e, f) is output (e - 1, f - 1), whose taps read mel rows 2e - 3 .. 2e - 1.
    pad_bottom = max(0, 2 * rows + 1 - 3 - height)
    pad_right = max(0, 2 * cols + 1 - 3 - width)
    padded = mx.pad(mel, [(0, 0), (3, pad_bottom), (3, pad_right)])
    ph, pw = padded.shape[1], padded.shape[2]
    taps = mx.as_strided(padded, (n, rows, cols, 3, 3), (ph * pw, 2 * pw, 2, pw, 1)).reshape(n, rows, cols, 9)
    e, f = mx.arange(rows)[:, None, None], mx.arange(cols)[None, :, None]
    inside = ((e >= 1) & (e <= out_h) & (f >= 1) & (f <= out_w)).astype(mel.dtype)   # [rows, cols, 1]
    patches = mx.concatenate([taps * inside, mx.broadcast_to(inside, (n, rows, cols, 1))], axis=-1)
    weight = mx.concatenate([conv.weight.reshape(conv.weight.shape[0], 9), conv.bias[:, None]], axis=1)
    patches = patches.reshape(-1, 10)
    with mx.stream(gemm_stream):
        y = patches @ weight.T
    return y.reshape(n, rows, cols, -1)


def _patches(padded: mx.array, out_h: int, out_w: int) -> mx.array:
    """3x3 stride-2 patches of an NHWC input padded by one row and column in front:
    [n * out_h * out_w, 9 * channels], in the weights' (kernel row, kernel column, channel) order."""
    n, rows, cols, ch = padded.shape
    view = mx.as_strided(padded, (n, out_h, out_w, 3, 3 * ch),
                         (rows * cols * ch, 2 * cols * ch, 2 * ch, cols * ch, 1))
    return view.reshape(n * out_h * out_w, 9 * ch)


def _gemm_conv(patches: mx.array, conv: nn.Conv2d, n: int, out_h: int, out_w: int, gemm_stream) -> mx.array:
    with mx.stream(gemm_stream):
        y = patches @ conv.weight.reshape(conv.weight.shape[0], -1).T
    return (y + conv.bias).reshape(n, out_h, out_w, -1)


def stem_convs(chunks: mx.array, conv1: nn.Conv2d, conv2: nn.Conv2d, conv3: nn.Conv2d) -> mx.array:
    """gelu(conv3(gelu(conv2(gelu(conv1(x)))))) for mel chunks [n, n_mels, width] (float32):
    [n, freq, time, channels], equal to the `nn.Conv2d` path."""
    n, height, width = chunks.shape
    h1, w1 = _out(height), _out(width)
    h2, w2 = _out(h1), _out(w1)
    h3, w3 = _out(h2), _out(w2)
    gemm_stream = mx.default_stream(mx.default_device())
    halves = [(0, n // 2, _second_stream()), (n // 2, n, gemm_stream)] if n > 1 else [(0, n, gemm_stream)]
    outputs = []
    for start, end, stream in halves:
        m = end - start
        with mx.stream(stream):
            x = gelu(_first_conv_padded(chunks[start:end], conv1, 2 * h2 + 1, 2 * w2 + 1, gemm_stream))
            x = gelu(_gemm_conv(_patches(x, h2, w2), conv2, m, h2, w2, gemm_stream))
            x = mx.pad(x, [(0, 0), (1, 2 * h3 - h2), (1, 2 * w3 - w2), (0, 0)])
            outputs.append(gelu(_gemm_conv(_patches(x, h3, w3), conv3, m, h3, w3, gemm_stream)))
    return mx.concatenate(outputs, axis=0) if len(outputs) > 1 else outputs[0]
