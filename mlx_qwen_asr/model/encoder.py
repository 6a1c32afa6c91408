"""Qwen3-ASR audio encoder: conv stem over 1 s mel chunks, windowed transformer, projector.

Module and parameter names are the checkpoint's (`thinker.audio_tower.*` minus the prefix).
Follows `Qwen3ASRAudioEncoder` of the official modeling_qwen3_asr.py (docs/model.md §4).
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from .activations import _fused_on_this_device, attention, gelu
from .config import AudioEncoderConfig
from .stem_cpu import stem_convs


def conv_output_length(frames: int) -> int:
    """Frames left after the three stride-2 convs (13 for a full 100-frame chunk)."""
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames


def audio_token_count(mel_frames: int, chunk_frames: int = 100) -> int:
    """Audio tokens for `mel_frames` frames: `_get_feat_extract_output_lengths` of the official code."""
    full, tail = divmod(mel_frames, chunk_frames)
    return full * conv_output_length(chunk_frames) + (conv_output_length(tail) if tail else 0)


def stem_chunk_width(frames: int, chunk_frames: int, several_chunks: bool) -> int:
    """Width the conv stem gives a clip's last (short) chunk. The official code pads it to the
    longest chunk in the batch: a full chunk when the clip has several, itself when it has one.
    The one statement of this rule (encoder_cache.py follows it window by window)."""
    return chunk_frames if several_chunks else frames


def sinusoid_table(length: int, channels: int, max_timescale: float = 10000.0) -> mx.array:
    """[sin | cos] position table of the official SinusoidsPositionEmbedding (float32)."""
    log_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = mx.exp(-log_increment * mx.arange(channels // 2, dtype=mx.float32))
    scaled = mx.arange(length, dtype=mx.float32)[:, None] * inv_timescales[None, :]
    return mx.concatenate([mx.sin(scaled), mx.cos(scaled)], axis=1)


class EncoderAttention(nn.Module):
    def __init__(self, dims: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dims // heads) ** -0.5
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)

    def __call__(self, x: mx.array, window: int, key_mask: mx.array | None = None) -> mx.array:
        # x: [tokens, dims], packed. Only attention needs the windows: the projections run
        # on the packed tokens. The whole windows go through attention together and a short
        # tail window on its own (no padding, no mask). With `key_mask` ([windows, 1, 1,
        # window], several clips: encode_batch) x is already laid out in whole windows and
        # the mask says which keys are real.
        total, d = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        whole = total // window * window
        parts = []
        for start, end, size in ((0, whole, window), (whole, total, total - whole)):
            if end > start:
                q_, k_, v_ = (y[start:end].reshape(-1, size, self.heads, d // self.heads).transpose(0, 2, 1, 3)
                              for y in (q, k, v))
                out = attention(q_, k_, v_, self.scale, key_mask)
                parts.append(out.transpose(0, 2, 1, 3).reshape(end - start, d))
        return self.out_proj(mx.concatenate(parts, axis=0) if len(parts) > 1 else parts[0])


class EncoderLayer(nn.Module):
    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = EncoderAttention(d, config.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=1e-5)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-5)

    def __call__(self, x: mx.array, window: int, key_mask: mx.array | None = None) -> mx.array:
        x = x + self.self_attn(self.self_attn_layer_norm(x), window, key_mask)
        x = x + self.fc2(gelu(self.fc1(self.final_layer_norm(x))))
        if x.dtype == mx.float16:
            # The official layer clamps float16 activations the same way.
            limit = float(mx.finfo(mx.float16).max) - 1000
            x = mx.clip(x, -limit, limit)
        return x


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        self.config = config
        hidden = config.downsample_hidden_size
        # 3x3, stride 2, padding 1, NHWC; weights [out, kh, kw, in] (a transpose of torch's).
        # mx.conv2d is MLX's native kernel on Metal; on the CPU in float32 the same GEMMs run
        # with cheaper patch copies (stem_cpu.py, docs/performance-lab-notes.md).
        self.conv2d1 = nn.Conv2d(1, hidden, 3, stride=2, padding=1)
        self.conv2d2 = nn.Conv2d(hidden, hidden, 3, stride=2, padding=1)
        self.conv2d3 = nn.Conv2d(hidden, hidden, 3, stride=2, padding=1)
        freq_after_convs = conv_output_length(config.num_mel_bins)
        self.conv_out = nn.Linear(hidden * freq_after_convs, config.d_model, bias=False)
        self.layers = [EncoderLayer(config) for _ in range(config.encoder_layers)]
        self.ln_post = nn.LayerNorm(config.d_model, eps=1e-5)
        self.proj1 = nn.Linear(config.d_model, config.d_model)
        self.proj2 = nn.Linear(config.d_model, config.output_dim)
        self._positions = sinusoid_table(config.max_source_positions, config.d_model)

    def conv_stem(self, mel: mx.array) -> mx.array:
        """[n_mels, T] mel -> [chunks, tokens_per_chunk, d_model] (positions added, tail padded)."""
        n_mels, frames = mel.shape
        chunk = self.config.chunk_frames
        num_chunks = -(-frames // chunk)
        width = stem_chunk_width(frames, chunk, num_chunks > 1)
        mel = mx.pad(mel, [(0, 0), (0, num_chunks * width - frames)])
        x = mel.reshape(n_mels, num_chunks, width).transpose(1, 0, 2)  # [chunks, mels, width]
        if _fused_on_this_device(x):
            # Same GEMMs with cheaper patch copies on the CPU (stem_cpu.py); same output.
            x = stem_convs(x, self.conv2d1, self.conv2d2, self.conv2d3)
        else:
            x = gelu(self.conv2d1(x[..., None]))  # NHWC
            x = gelu(self.conv2d2(x))
            x = gelu(self.conv2d3(x))
        n, freq, time, channels = x.shape
        # Flatten with feature index = channel * freq + f, as the official permute/view does.
        x = self.conv_out(x.transpose(0, 2, 3, 1).reshape(n, time, channels * freq))
        return x + self._positions[:time].astype(x.dtype)

    def window_tokens(self, tokens_per_chunk: int) -> int:
        return tokens_per_chunk * self.config.chunks_per_window

    def __call__(self, mel: mx.array) -> mx.array:
        """[n_mels, T] log-mel -> [N, output_dim] audio embeddings, N = audio_token_count(T)."""
        frames = mel.shape[1]
        if frames == 0:
            raise ValueError("the audio encoder needs at least one mel frame")
        mel = mel.astype(self.conv2d1.weight.dtype)  # the conv stem stays float when quantized
        stem = self.conv_stem(mel)
        num_chunks, tokens_per_chunk, d = stem.shape
        total = audio_token_count(frames, self.config.chunk_frames)
        x = stem.reshape(num_chunks * tokens_per_chunk, d)[:total]

        # Block-diagonal attention in windows of 8 chunks (104 tokens); see EncoderAttention.
        return self.transform(x, min(self.window_tokens(tokens_per_chunk), total))

    def encode_batch(self, mels: list[mx.array]) -> list[mx.array]:
        """Several clips at once: each output equals `self(mel)` (to float rounding).

        Clips of more than one chunk share one transformer pass, each clip's tokens laid
        out in whole windows of their own with the padding masked out. The conv stem runs
        clip by clip (its activations are ~8x the clip's tokens: batching them would
        multiply peak memory, and a clip's chunks already make a large batch). Single-chunk
        clips (1 s or less) are encoded alone: their window is their own length."""
        chunk = self.config.chunk_frames
        out: list[mx.array | None] = [None] * len(mels)
        several = [i for i, mel in enumerate(mels) if mel.shape[1] > chunk]
        for i in range(len(mels)):
            if i not in several or len(several) == 1:
                out[i] = self(mels[i])
        if len(several) < 2:
            return out
        dtype = self.conv2d1.weight.dtype
        rows, lengths, window = [], [], None
        for i in several:
            stem = self.conv_stem(mels[i].astype(dtype))
            mx.eval(stem)   # one clip's stem activations at a time
            window = self.window_tokens(stem.shape[1])
            total = audio_token_count(mels[i].shape[1], chunk)
            x = stem.reshape(-1, stem.shape[2])[:total]
            padded = -(-total // window) * window
            rows.append(mx.pad(x, [(0, padded - total), (0, 0)]) if padded > total else x)
            lengths += [window] * (total // window) + ([total % window] if total % window else [])
        key_mask = mx.arange(window)[None, :] < mx.array(lengths)[:, None]
        y = self.transform(mx.concatenate(rows, axis=0), window, key_mask.reshape(len(lengths), 1, 1, window))
        start = 0
        for i, x in zip(several, rows):
            out[i] = y[start:start + audio_token_count(mels[i].shape[1], chunk)]
            start += x.shape[0]
        return out

    def transform(self, x: mx.array, window: int, key_mask: mx.array | None = None) -> mx.array:
        """Packed stem tokens [N, d_model] -> [N, output_dim]: the transformer layers with
        attention inside consecutive `window`-token blocks (`key_mask`: see EncoderAttention),
        then the projector."""
        for layer in self.layers:
            x = layer(x, window, key_mask)
        x = self.ln_post(x)
        return self.proj2(gelu(self.proj1(x)))
