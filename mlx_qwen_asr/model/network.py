"""Qwen3-ASR network: audio encoder + Qwen3 decoder + output head.

Parameter paths are the checkpoint's with the leading `thinker.` removed, except that the
checkpoint's `model.*` (the text decoder) is `decoder.*` here; loading is
`load_weights(sanitize(weights))`.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from .config import ModelConfig
from .decoder import KVCache, Linear, TextDecoder, few_rows_matmul
from .encoder import AudioEncoder


# Stored name prefix (checkpoint minus `thinker.`, and converted directories) -> module path.
STORED_PREFIXES = {"model.": "decoder."}


def from_stored_name(name: str) -> str:
    for stored, module in STORED_PREFIXES.items():
        if name.startswith(stored):
            return module + name[len(stored):]
    return name


def to_stored_name(name: str) -> str:
    for stored, module in STORED_PREFIXES.items():
        if name.startswith(module):
            return stored + name[len(module):]
    return name


class Qwen3ASR(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio_tower = AudioEncoder(config.audio)
        self.decoder = TextDecoder(config.text)
        if not config.text.tie_word_embeddings:
            self.lm_head = Linear(config.text.hidden_size, config.text.vocab_size)

    def encode_audio(self, mel: mx.array) -> mx.array:
        """[n_mels, T] log-mel -> [N, hidden] audio embeddings."""
        return self.audio_tower(mel)

    def embed_prompt(self, prompt_ids: list[int], audio_embeddings: mx.array) -> mx.array:
        """[1, P, hidden] prompt embeddings with the audio pads replaced by the audio embeddings.

        The official model scatters audio features into the pad positions in order; the pads
        form one contiguous run, so a concatenation is the same thing.
        """
        pad = self.config.audio_token_id
        first = prompt_ids.index(pad)
        count = prompt_ids.count(pad)
        if prompt_ids[first:first + count] != [pad] * count or count != audio_embeddings.shape[0]:
            raise ValueError(f"prompt has {count} audio pads, audio has {audio_embeddings.shape[0]} embeddings")
        embed = self.decoder.embed_tokens
        before = embed(mx.array(prompt_ids[:first]))
        after = embed(mx.array(prompt_ids[first + count:]))
        audio = audio_embeddings.astype(before.dtype)
        return mx.concatenate([before, audio, after], axis=0)[None]

    def embed_tokens(self, token_ids: mx.array) -> mx.array:
        return self.decoder.embed_tokens(token_ids)

    def logits(self, hidden: mx.array) -> mx.array:
        if self.config.text.tie_word_embeddings:
            embed = self.decoder.embed_tokens
            if isinstance(embed, nn.QuantizedEmbedding):
                return embed.as_linear(hidden)
            return few_rows_matmul(hidden, embed.weight)
        return self.lm_head(hidden)

    def __call__(self, embeddings: mx.array, cache: KVCache | None = None, last_only: bool = True,
                 mask: mx.array | None = None, positions: mx.array | None = None) -> mx.array:
        """Decoder forward over [B, L, hidden] embeddings -> logits ([B, 1, V] if last_only).

        `mask`/`positions` are passed to attention (see decoder.Attention).
        """
        hidden = self.decoder(embeddings, cache, mask, positions)
        if last_only:
            hidden = hidden[:, -1:, :]
        return self.logits(hidden)

    def make_cache(self, capacity: int = 0) -> KVCache:
        return KVCache(self.config.text.num_hidden_layers, capacity)

    @staticmethod
    def sanitize(weights: dict[str, mx.array], config: ModelConfig) -> dict[str, mx.array]:
        """Checkpoint tensors (PyTorch layout) -> this module's parameter names and layouts."""
        out = {}
        for name, value in weights.items():
            if name.startswith("thinker."):
                name = name[len("thinker."):]
            if name == "lm_head.weight" and config.text.tie_word_embeddings:
                continue  # tied: the head is the embedding matrix (the file stores a copy)
            if name.startswith("audio_tower.conv2d") and name.endswith(".weight") and value.ndim == 4:
                # PyTorch conv [out, in, kh, kw] -> [out, kh, kw, in]
                if value.shape[-1] == 3 and value.shape[1] != 3:
                    value = value.transpose(0, 2, 3, 1)
            out[from_stored_name(name)] = value
        return out
