"""A voice print per speech segment: 3D-Speaker's CAM++ speaker-embedding network in MLX.

Kaldi fbank [batch, frames, 80] (fbank.py) -> FCM head (2D convolutions with residual
blocks over frequency x time, frequency strided down by 8) -> a TDNN layer (time stride 2)
-> three densely connected blocks of CAM layers (12, 24 and 16 layers; each one's output is
masked by context-aware attention pooled over the segment and over 100-frame chunks), each
followed by a transition halving the channels -> mean and standard deviation over time ->
a dense layer with a non-affine batch norm -> [batch, 192].

Every batch norm runs in inference mode: the conversion folds each one into a per-channel
scale and shift.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

WEIGHTS = Path(__file__).with_name("weights") / "campplus-cn-en-common.safetensors"

FEATURE_DIM = 80
EMBEDDING_DIM = 192
HEAD_CHANNELS = 32
GROWTH = 32                            # channels each CAM layer adds
BOTTLENECK = 128                       # CAM layers' inner channels
INIT_CHANNELS = 128
BLOCKS = [(12, 1), (24, 2), (16, 2)]   # (layers, dilation), kernel 3
CHUNK_FRAMES = 100                     # CAM's segment pooling
BN_EPS = 1e-5


class Affine(nn.Module):
    """An inference-mode batch norm: x * scale + shift per channel (channels last)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = mx.ones((channels,))
        self.shift = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        return x * self.scale + self.shift


class Conv3x3(nn.Module):
    """A 3x3 convolution on [batch, freq, time, channels], padding 1, no bias; `stride` on
    frequency.

    Unstrided, it runs as one matrix product of the three time-shifted copies side by side
    (K = 3 x channels) against all nine taps, then adds the three frequency-shifted partial
    sums: about twice as fast on the CPU as MLX's conv2d for these 32-channel maps."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.stride = stride
        self.weight = mx.zeros((out_channels, 3, 3, in_channels))   # nn.Conv2d's layout

    def __call__(self, x: mx.array) -> mx.array:
        if self.stride != 1:
            return mx.conv2d(x, self.weight, stride=(self.stride, 1), padding=1)
        freq, time, channels = x.shape[1:]
        out = self.weight.shape[0]
        padded = mx.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
        shifted = mx.concatenate([padded[:, :, k: k + time] for k in range(3)], axis=-1)
        # [(time tap, in), (freq tap, out)]
        taps = self.weight.transpose(2, 3, 1, 0).reshape(3 * channels, 3 * out)
        partial = shifted @ taps                                  # [B, freq + 2, time, 3 * out]
        return sum(partial[:, k: k + freq, :, k * out: (k + 1) * out] for k in range(3))


class ResBlock(nn.Module):
    """The head's residual block on [batch, freq, time, channels]; `stride` on frequency."""

    def __init__(self, channels: int, stride: int):
        super().__init__()
        self.conv1 = Conv3x3(channels, channels, stride)
        self.bn1 = Affine(channels)
        self.conv2 = Conv3x3(channels, channels)
        self.bn2 = Affine(channels)
        if stride != 1:
            self.shortcut_conv = nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False)
            self.shortcut_bn = Affine(channels)

    def __call__(self, x: mx.array) -> mx.array:
        out = nn.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = self.shortcut_bn(self.shortcut_conv(x)) if "shortcut_conv" in self else x
        return nn.relu(out + shortcut)


class Head(nn.Module):
    """FCM: [batch, time, 80] -> [batch, time, 32 * 10]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, HEAD_CHANNELS, 3, padding=1, bias=False)
        self.bn1 = Affine(HEAD_CHANNELS)
        self.blocks = [ResBlock(HEAD_CHANNELS, 2), ResBlock(HEAD_CHANNELS, 1),
                       ResBlock(HEAD_CHANNELS, 2), ResBlock(HEAD_CHANNELS, 1)]
        self.conv2 = Conv3x3(HEAD_CHANNELS, HEAD_CHANNELS, stride=2)
        self.bn2 = Affine(HEAD_CHANNELS)

    def __call__(self, fbank: mx.array) -> mx.array:
        x = fbank.swapaxes(1, 2)[..., None]                     # [B, freq, time, 1]
        x = nn.relu(self.bn1(self.conv1(x)))
        for block in self.blocks:
            x = block(x)
        x = nn.relu(self.bn2(self.conv2(x)))                     # [B, 10, time, 32]
        batch, freq, time, channels = x.shape
        # The original flattens (channel, frequency) channel-major.
        return x.transpose(0, 2, 3, 1).reshape(batch, time, channels * freq)


def _chunk_means(x: mx.array) -> mx.array:
    """Each frame's mean over its 100-frame chunk (the last chunk may be shorter)."""
    batch, time, channels = x.shape
    chunks = -(-time // CHUNK_FRAMES)
    padded = mx.pad(x, [(0, 0), (0, chunks * CHUNK_FRAMES - time), (0, 0)])
    sums = mx.sum(padded.reshape(batch, chunks, CHUNK_FRAMES, channels), axis=2)
    counts = mx.minimum(CHUNK_FRAMES, time - CHUNK_FRAMES * mx.arange(chunks)).astype(x.dtype)
    means = sums / counts[None, :, None]
    return mx.repeat(means, CHUNK_FRAMES, axis=1)[:, :time]


class DilatedConv(nn.Module):
    """A 3-tap convolution over time, dilated, same-length output, no bias.

    As one matrix product over the three shifted copies: MLX's CPU convolution has no fast
    path for dilation (about 30x slower here)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.weight = mx.zeros((out_channels, 3, in_channels))   # nn.Conv1d's layout

    def __call__(self, x: mx.array) -> mx.array:
        d, time = self.dilation, x.shape[1]
        padded = mx.pad(x, [(0, 0), (d, d), (0, 0)])
        taps = mx.concatenate([padded[:, k * d: k * d + time] for k in range(3)], axis=-1)
        return taps @ self.weight.reshape(self.weight.shape[0], -1).T


class CAMLayer(nn.Module):
    """BN-ReLU, 1x1 to the bottleneck, BN-ReLU, then a dilated 3-tap convolution masked by
    a context gate computed from the segment mean plus the chunk mean."""

    def __init__(self, in_channels: int, dilation: int):
        super().__init__()
        self.bn1 = Affine(in_channels)
        self.linear1 = nn.Conv1d(in_channels, BOTTLENECK, 1, bias=False)
        self.bn2 = Affine(BOTTLENECK)
        self.local = DilatedConv(BOTTLENECK, GROWTH, dilation)
        self.context1 = nn.Conv1d(BOTTLENECK, BOTTLENECK // 2, 1)
        self.context2 = nn.Conv1d(BOTTLENECK // 2, GROWTH, 1)

    def __call__(self, x: mx.array) -> mx.array:
        x = nn.relu(self.bn2(self.linear1(nn.relu(self.bn1(x)))))
        context = mx.mean(x, axis=1, keepdims=True) + _chunk_means(x)
        mask = mx.sigmoid(self.context2(nn.relu(self.context1(context))))
        return self.local(x) * mask


class Transit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = Affine(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear(nn.relu(self.bn(x)))


class EmbeddingNet(nn.Module):
    """CAM++: fbank [batch, frames, 80] (mean-subtracted) -> embeddings [batch, 192]."""

    def __init__(self):
        super().__init__()
        self.head = Head()
        self.tdnn = nn.Conv1d(HEAD_CHANNELS * FEATURE_DIM // 8, INIT_CHANNELS, 5, stride=2, padding=2, bias=False)
        self.tdnn_bn = Affine(INIT_CHANNELS)
        channels = INIT_CHANNELS
        self.blocks, self.transits = [], []
        for layers, dilation in BLOCKS:
            self.blocks.append([CAMLayer(channels + index * GROWTH, dilation) for index in range(layers)])
            channels += layers * GROWTH
            self.transits.append(Transit(channels, channels // 2))
            channels //= 2
        self.out_bn = Affine(channels)
        self.dense = nn.Linear(2 * channels, EMBEDDING_DIM, bias=False)
        self.dense_bn = Affine(EMBEDDING_DIM)

    def __call__(self, fbank: mx.array) -> mx.array:
        x = nn.relu(self.tdnn_bn(self.tdnn(self.head(fbank))))
        for block, transit in zip(self.blocks, self.transits):
            for layer in block:
                x = mx.concatenate([x, layer(x)], axis=-1)
            x = transit(x)
        x = nn.relu(self.out_bn(x))
        stats = mx.concatenate([mx.mean(x, axis=1), mx.std(x, axis=1, ddof=1)], axis=-1)
        return self.dense_bn(self.dense(stats))


def _fold(state: dict, name: str, affine: bool = True) -> dict:
    """An inference-mode batch norm `name` as a scale and shift."""
    mean = state[f"{name}.running_mean"].astype(np.float64)
    scale = 1.0 / np.sqrt(state[f"{name}.running_var"].astype(np.float64) + BN_EPS)
    shift = -mean * scale
    if affine:
        weight = state[f"{name}.weight"].astype(np.float64)
        scale, shift = scale * weight, shift * weight + state[f"{name}.bias"]
    return {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)}


def weights_from_torch(state: dict) -> dict:
    """The network's weights, by its parameter names, from 3D-Speaker's CAMPPlus state
    dict (numpy arrays). Used by the conversion script and the parity tests."""
    weights = {}

    def put(prefix: str, values: dict):
        weights.update({f"{prefix}.{key}": value for key, value in values.items()})

    def conv2d(name):   # torch [out, in, kh, kw] -> MLX [out, kh, kw, in]
        return state[f"{name}.weight"].transpose(0, 2, 3, 1)

    def conv1d(name):   # torch [out, in, k] -> MLX [out, k, in]
        return state[f"{name}.weight"].transpose(0, 2, 1)

    weights["head.conv1.weight"] = conv2d("head.conv1")
    put("head.bn1", _fold(state, "head.bn1"))
    for index, source in enumerate(["layer1.0", "layer1.1", "layer2.0", "layer2.1"]):
        source, target = f"head.{source}", f"head.blocks.{index}"
        weights[f"{target}.conv1.weight"] = conv2d(f"{source}.conv1")
        put(f"{target}.bn1", _fold(state, f"{source}.bn1"))
        weights[f"{target}.conv2.weight"] = conv2d(f"{source}.conv2")
        put(f"{target}.bn2", _fold(state, f"{source}.bn2"))
        if f"{source}.shortcut.0.weight" in state:
            weights[f"{target}.shortcut_conv.weight"] = conv2d(f"{source}.shortcut.0")
            put(f"{target}.shortcut_bn", _fold(state, f"{source}.shortcut.1"))
    weights["head.conv2.weight"] = conv2d("head.conv2")
    put("head.bn2", _fold(state, "head.bn2"))

    weights["tdnn.weight"] = conv1d("xvector.tdnn.linear")
    put("tdnn_bn", _fold(state, "xvector.tdnn.nonlinear.batchnorm"))
    for block, (layers, _) in enumerate(BLOCKS):
        for index in range(layers):
            source, target = f"xvector.block{block + 1}.tdnnd{index + 1}", f"blocks.{block}.{index}"
            put(f"{target}.bn1", _fold(state, f"{source}.nonlinear1.batchnorm"))
            weights[f"{target}.linear1.weight"] = conv1d(f"{source}.linear1")
            put(f"{target}.bn2", _fold(state, f"{source}.nonlinear2.batchnorm"))
            weights[f"{target}.local.weight"] = conv1d(f"{source}.cam_layer.linear_local")
            for ours, theirs in (("context1", "linear1"), ("context2", "linear2")):
                weights[f"{target}.{ours}.weight"] = conv1d(f"{source}.cam_layer.{theirs}")
                weights[f"{target}.{ours}.bias"] = state[f"{source}.cam_layer.{theirs}.bias"]
        source = f"xvector.transit{block + 1}"
        put(f"transits.{block}.bn", _fold(state, f"{source}.nonlinear.batchnorm"))
        weights[f"transits.{block}.linear.weight"] = conv1d(f"{source}.linear")
    put("out_bn", _fold(state, "xvector.out_nonlinear.batchnorm"))
    weights["dense.weight"] = state["xvector.dense.linear.weight"][:, :, 0]
    put("dense_bn", _fold(state, "xvector.dense.nonlinear.batchnorm", affine=False))
    return weights


def load_embedding(path: str | Path = WEIGHTS) -> EmbeddingNet:
    """The network with the shipped weights (stored in float16, run in float32)."""
    net = EmbeddingNet()
    net.load_weights([(name, value.astype(mx.float32)) for name, value in mx.load(str(path)).items()])
    mx.eval(net.parameters())
    return net
