"""The Qwen3-ForcedAligner network: Qwen3ASR with a timestamp-classification head, its
config (config.json's aligner fields) and its loading. The alignment itself (prompt, times,
long audio) is the pipeline's: aligner.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from ..errors import ModelLoadError
from .config import ModelConfig
from .loading import load_network
from .network import Qwen3ASR

DEFAULT_ALIGNER = "Qwen/Qwen3-ForcedAligner-0.6B"
# Decoder positions per forward call: bounds the attention scores of a 180 s prompt
# (~2300 audio + ~2000 text tokens) without changing the result (causal attention).
PREFILL_CHUNK = 1024


@dataclass(frozen=True)
class AlignerConfig:
    network: ModelConfig            # the network's sizes (head never tied to the embeddings)
    classify_num: int               # timestamp classes of the head
    timestamp_token_id: int
    timestamp_segment_time: float   # ms per class

    @classmethod
    def from_file(cls, path: str | Path) -> "AlignerConfig":
        model = ModelConfig.from_file(path)
        raw, thinker = model.raw, model.raw.get("thinker_config", {})
        kind = str(thinker.get("model_type", ""))
        if "forced_aligner" not in kind:
            raise ModelLoadError(f"{Path(path).parent} is not a Qwen3-ForcedAligner checkpoint (thinker model_type "
                                 f"{kind!r}); word timestamps need an aligner such as {DEFAULT_ALIGNER}")
        try:
            classify_num = int(thinker["classify_num"])
            token_id = int(raw["timestamp_token_id"])
            segment_time = float(raw["timestamp_segment_time"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path}: forced-aligner field missing or bad: {exc}") from None
        # The official thinker builds a separate [classify_num, hidden] head for aligners.
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, tie_word_embeddings=False))
        return cls(model, classify_num, token_id, segment_time)


class ForcedAlignerNetwork(Qwen3ASR):
    """Qwen3ASR with the timestamp-classification head."""

    def __init__(self, config: AlignerConfig):
        super().__init__(config.network)
        self.lm_head = nn.Linear(config.network.text.hidden_size, config.classify_num, bias=False)

    def timestamp_logits(self, embeddings: mx.array, positions: list[int],
                         chunk: int = PREFILL_CHUNK) -> mx.array:
        """[len(positions), classify_num] head outputs at `positions` of a [1, P, hidden]
        prompt: one causal pass, fed `chunk` positions at a time through a KV cache."""
        length = embeddings.shape[1]
        cache = self.make_cache(length) if length > chunk else None
        picked = []
        for start in range(0, length, chunk):
            hidden = self.decoder(embeddings[:, start:start + chunk], cache)
            local = [p - start for p in positions if start <= p < start + chunk]
            if local:
                picked.append(self.lm_head(hidden[0, mx.array(local)]))
            mx.eval(picked, cache.state() if cache is not None else [])
        if not picked:
            return mx.zeros((0, self.lm_head.weight.shape[0]), dtype=embeddings.dtype)
        return mx.concatenate(picked)


def load_aligner_network(model_dir: Path, config: AlignerConfig, dtype: mx.Dtype) -> ForcedAlignerNetwork:
    return load_network(model_dir, config.network, dtype, network=ForcedAlignerNetwork(config))
