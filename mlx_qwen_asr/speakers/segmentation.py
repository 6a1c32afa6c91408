"""Local speakers per 10 s window: pyannote's segmentation-3.0 network (PyanNet) in MLX.

Waveform [batch, samples] at 16 kHz -> SincNet (80 learned sinc band-pass filters of 251
taps every 10 samples, |.|, then two 5-tap convolutions; each stage max-pooled by 3,
instance-normalised and leaky-ReLU'd) -> 4 bidirectional LSTM layers of 128 units -> two
128-unit linear layers (leaky ReLU) -> 7 log-probabilities per frame over the powerset
classes of up to 3 local speakers with at most 2 at once: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}.

Frame i sees samples [i*FRAME_STEP_SAMPLES, i*FRAME_STEP_SAMPLES + FRAME_SIZE_SAMPLES):
the convolution stack's receptive field, 991 samples every 270 (589 frames per 10 s window).
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

WEIGHTS = Path(__file__).with_name("weights") / "segmentation-3.0.safetensors"

SAMPLE_RATE = 16000
WINDOW_SECONDS = 10.0
WINDOW_SAMPLES = 160_000
NUM_CLASSES = 7                  # powerset classes
MAX_SPEAKERS = 3                 # local speakers per window
MAX_SPEAKERS_PER_FRAME = 2

SINC_FILTERS = 80                # half cosine, half sine filters from 40 learned bands
SINC_KERNEL = 251
SINC_STRIDE = 10
POOL = 3
CONV_KERNEL = 5
LSTM_HIDDEN = 128
LSTM_LAYERS = 4
LINEAR_HIDDEN = 128
LEAKY_SLOPE = 0.01               # torch's F.leaky_relu default
NORM_EPS = 1e-5                  # torch's InstanceNorm1d default

# (kernel, stride) of each convolution and pooling stage, input to output.
_STAGES = [(SINC_KERNEL, SINC_STRIDE), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL), (CONV_KERNEL, 1), (POOL, POOL)]


def num_frames(num_samples: int) -> int:
    """Output frames for an input of `num_samples` samples (0 if too short)."""
    frames = num_samples
    for kernel, stride in _STAGES:
        if frames < kernel:
            return 0
        frames = (frames - kernel) // stride + 1
    return frames


def _receptive_field(frames: int) -> int:
    size = frames
    for kernel, stride in reversed(_STAGES):
        size = kernel + (size - 1) * stride
    return size


FRAME_SIZE_SAMPLES = _receptive_field(1)                           # 991
FRAME_STEP_SAMPLES = _receptive_field(2) - FRAME_SIZE_SAMPLES      # 270
FRAME_DURATION = FRAME_SIZE_SAMPLES / SAMPLE_RATE                  # 0.0619375 s
FRAME_STEP = FRAME_STEP_SAMPLES / SAMPLE_RATE                      # 0.016875 s
FRAMES_PER_WINDOW = num_frames(WINDOW_SAMPLES)                     # 589


def powerset_mapping() -> np.ndarray:
    """[7, 3] 0/1 matrix: which local speakers each powerset class holds."""
    classes = [()] + [(s,) for s in range(MAX_SPEAKERS)]
    classes += [(a, b) for a in range(MAX_SPEAKERS) for b in range(a + 1, MAX_SPEAKERS)]
    mapping = np.zeros((len(classes), MAX_SPEAKERS), np.float32)
    for row, speakers in enumerate(classes):
        mapping[row, list(speakers)] = 1.0
    return mapping


def powerset_to_multilabel(log_probs: mx.array, soft: bool = False) -> mx.array:
    """[..., 7] powerset log-probabilities -> [..., 3] speaker activities.

    Hard (default): 1.0 for each speaker of the most likely class. Soft: each speaker's
    probability, the sum over the classes that hold it."""
    mapping = mx.array(powerset_mapping())
    if soft:
        return mx.exp(log_probs) @ mapping
    return mapping[mx.argmax(log_probs, axis=-1)]


class InstanceNorm(nn.Module):
    """Per-channel normalisation over time of [batch, time, channels], with an affine."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        mean = mx.mean(x, axis=1, keepdims=True)
        var = mx.var(x, axis=1, keepdims=True)
        return (x - mean) * mx.rsqrt(var + NORM_EPS) * self.weight + self.bias


def _pool(x: mx.array) -> mx.array:
    """Max over non-overlapping groups of 3 frames (a trailing remainder is dropped)."""
    batch, time, channels = x.shape
    time -= time % POOL
    return mx.max(x[:, :time].reshape(batch, time // POOL, POOL, channels), axis=2)


class SincNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.wav_norm = InstanceNorm(1)
        # The original computes these 80 filters from 40 learned (low, band) frequency pairs
        # (asteroid's ParamSincFB: windowed sinc band-passes, cosine then sine); the
        # conversion stores the bank it computes, so both convolve with the same float32 taps.
        self.filters = mx.zeros((SINC_FILTERS, SINC_KERNEL))
        self.norm0 = InstanceNorm(SINC_FILTERS)
        self.conv1 = nn.Conv1d(SINC_FILTERS, 60, CONV_KERNEL)
        self.norm1 = InstanceNorm(60)
        self.conv2 = nn.Conv1d(60, 60, CONV_KERNEL)
        self.norm2 = InstanceNorm(60)

    def __call__(self, waveforms: mx.array) -> mx.array:
        """[batch, samples] -> [batch, frames, 60]."""
        x = self.wav_norm(waveforms[:, :, None])[:, :, 0]
        # The sinc convolution as one matrix product over strided frames of 251 samples.
        count = (x.shape[1] - SINC_KERNEL) // SINC_STRIDE + 1
        frames = mx.as_strided(x, (x.shape[0], count, SINC_KERNEL),
                               (x.shape[1], SINC_STRIDE, 1))
        x = mx.abs(frames @ self.filters.T)
        x = nn.leaky_relu(self.norm0(_pool(x)), LEAKY_SLOPE)
        x = nn.leaky_relu(self.norm1(_pool(self.conv1(x))), LEAKY_SLOPE)
        return nn.leaky_relu(self.norm2(_pool(self.conv2(x))), LEAKY_SLOPE)


class BiLSTMLayer(nn.Module):
    """One bidirectional LSTM layer (torch's gate order: input, forget, cell, output).

    Both directions advance in the same step: the backward one reads the sequence reversed,
    and its input projections, weights and states are stacked with the forward ones. The
    input projections of all steps are one matrix product; only the recurrence is stepped."""

    def __init__(self, input_size: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.weight_ih = mx.zeros((2, 4 * hidden, input_size))   # [direction, gates, input]
        self.weight_hh = mx.zeros((2, 4 * hidden, hidden))
        self.bias = mx.zeros((2, 4 * hidden))                    # torch's bias_ih + bias_hh

    def __call__(self, x: mx.array, stepper: str | None = None) -> mx.array:
        """[batch, time, input] -> [batch, time, 2 * hidden] (forward, backward).

        `stepper`: "numpy" or "mlx" for the recurrence; by default numpy on the CPU."""
        inputs = mx.stack([x, x[:, ::-1]])                                        # [2, B, T, in]
        projected = inputs @ self.weight_ih.swapaxes(1, 2)[:, None] + self.bias[:, None, None]
        projected = projected.transpose(2, 0, 1, 3)                               # [T, 2, B, 4H]
        recurrent = self.weight_hh.swapaxes(1, 2)                                 # [2, H, 4H]
        if (stepper or default_stepper()) == "numpy":
            states = mx.array(_recur_numpy(np.ascontiguousarray(projected), np.ascontiguousarray(recurrent)))
        else:
            states = _recur_mlx(projected, recurrent)
        states = states.transpose(1, 2, 0, 3)                                     # [2, B, T, H]
        return mx.concatenate([states[0], states[1][:, ::-1]], axis=-1)


def default_stepper() -> str:
    """On the CPU each MLX operation costs tens of microseconds, several times a step's
    arithmetic (8 windows: ~0.4 ms a step against ~0.05 ms in numpy, 2 cores), so the CPU
    steps the recurrence in numpy; GPUs keep it in MLX."""
    return "numpy" if mx.default_device() == mx.cpu else "mlx"


def _recur_mlx(projected: mx.array, recurrent: mx.array) -> mx.array:
    """[T, 2, B, 4H] input projections -> [T, 2, B, H] hidden states."""
    _, _, batch, gates = projected.shape
    hidden = gates // 4
    h = mx.zeros((2, batch, hidden), projected.dtype)
    c = mx.zeros((2, batch, hidden), projected.dtype)
    outputs = []
    for step in range(projected.shape[0]):
        i, f, g, o = mx.split(projected[step] + h @ recurrent, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        outputs.append(h)
    return mx.stack(outputs)


# Windows stepped together in numpy: larger matrix products make OpenBLAS start threads,
# which on a busy machine cost ~10x more than they save (measured at 16 and 32).
NUMPY_GROUP = 8


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.tanh(0.5 * x) + 0.5     # one vectorised tanh; equal to 1/(1+e^-x) to float32 rounding


def _recur_numpy(projected: np.ndarray, recurrent: np.ndarray) -> np.ndarray:
    """_recur_mlx in numpy (float32), NUMPY_GROUP windows at a time."""
    steps, _, batch, gates = projected.shape
    hidden = gates // 4
    out = np.empty((steps, 2, batch, hidden), np.float32)
    for first in range(0, batch, NUMPY_GROUP):
        part = np.ascontiguousarray(projected[:, :, first:first + NUMPY_GROUP])
        h = np.zeros(part.shape[1:3] + (hidden,), np.float32)
        c = np.zeros_like(h)
        for step in range(steps):
            z = part[step] + np.matmul(h, recurrent)
            i, f, g, o = (z[..., k * hidden:(k + 1) * hidden] for k in range(4))
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
            out[step, :, first:first + NUMPY_GROUP] = h
    return out


class SegmentationNet(nn.Module):
    """pyannote segmentation-3.0: waveforms [batch, samples] -> log-probs [batch, frames, 7]."""

    def __init__(self):
        super().__init__()
        self.sincnet = SincNet()
        self.lstm = [BiLSTMLayer(60 if layer == 0 else 2 * LSTM_HIDDEN, LSTM_HIDDEN)
                     for layer in range(LSTM_LAYERS)]
        self.linear = [nn.Linear(2 * LSTM_HIDDEN, LINEAR_HIDDEN), nn.Linear(LINEAR_HIDDEN, LINEAR_HIDDEN)]
        self.classifier = nn.Linear(LINEAR_HIDDEN, NUM_CLASSES)

    def __call__(self, waveforms: mx.array, stepper: str | None = None) -> mx.array:
        """`stepper`: how the LSTMs step (BiLSTMLayer); by default numpy on the CPU."""
        x = self.sincnet(waveforms)
        for layer in self.lstm:
            x = layer(x, stepper)
        for linear in self.linear:
            x = nn.leaky_relu(linear(x), LEAKY_SLOPE)
        return nn.log_softmax(self.classifier(x), axis=-1)


SINC_FILTERS_KEY = "sincnet.conv1d.0.filterbank.filters"   # beside the state dict: the computed bank


def weights_from_torch(state: dict) -> dict:
    """The network's weights, by its parameter names, from the original checkpoint's
    state dict (numpy arrays under pyannote's PyanNet names) plus the sinc filter bank the
    original computes from it (under SINC_FILTERS_KEY). Used by the conversion script and
    the parity tests; the runtime loads the converted file."""
    def conv(name):   # torch Conv1d [out, in, kernel] -> MLX [out, kernel, in]
        return {"weight": state[f"{name}.weight"].transpose(0, 2, 1), "bias": state[f"{name}.bias"]}

    weights = {
        "sincnet.wav_norm.weight": state["sincnet.wav_norm1d.weight"],
        "sincnet.wav_norm.bias": state["sincnet.wav_norm1d.bias"],
        "sincnet.filters": state[SINC_FILTERS_KEY],
    }
    for index in range(3):
        weights[f"sincnet.norm{index}.weight"] = state[f"sincnet.norm1d.{index}.weight"]
        weights[f"sincnet.norm{index}.bias"] = state[f"sincnet.norm1d.{index}.bias"]
    for index in (1, 2):
        for key, value in conv(f"sincnet.conv1d.{index}").items():
            weights[f"sincnet.conv{index}.{key}"] = value
    for layer in range(LSTM_LAYERS):
        directions = [f"l{layer}", f"l{layer}_reverse"]
        weights[f"lstm.{layer}.weight_ih"] = np.stack([state[f"lstm.weight_ih_{d}"] for d in directions])
        weights[f"lstm.{layer}.weight_hh"] = np.stack([state[f"lstm.weight_hh_{d}"] for d in directions])
        weights[f"lstm.{layer}.bias"] = np.stack([state[f"lstm.bias_ih_{d}"] + state[f"lstm.bias_hh_{d}"]
                                                  for d in directions])
    for index in range(2):
        weights[f"linear.{index}.weight"] = state[f"linear.{index}.weight"]
        weights[f"linear.{index}.bias"] = state[f"linear.{index}.bias"]
    weights["classifier.weight"] = state["classifier.weight"]
    weights["classifier.bias"] = state["classifier.bias"]
    return weights


def load_segmentation(path: str | Path = WEIGHTS) -> SegmentationNet:
    """The network with the shipped weights (float32), ready to run."""
    net = SegmentationNet()
    net.load_weights([(name, value.astype(mx.float32)) for name, value in mx.load(str(path)).items()])
    mx.eval(net.parameters())
    return net
