"""Which layers are quantized, at how many bits, and how that is written in config.json.

Policy (docs/performance.md has the measured agreement, sizes and speeds):
- decoder linear layers (q/k/v/o, gate/up/down): `bits` (4 or 8), groups of `group_size`;
- audio encoder linear layers: `encoder_bits`, never below 8 (16 = left in float); the
  3x3 conv stem stays float (small, and its GEMM has no quantized path);
- tied embedding + output head: `head_bits` (8 by default even in the 4-bit recipe: the
  head decides every argmax, and 8 bits already shrinks it 4x from float32);
- norms, biases, convs: float.
A layer whose input width is not a multiple of `group_size` stays float.

On Apple GPUs fewer bytes per token make decoding faster; on the CPU backend MLX's quantized
matmul is slower than float32 on a fast BLAS, so there quantization buys size and memory only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import mlx.nn as nn

DECODER_BITS = (4, 8)
ENCODER_BITS = (8, 16)
HEAD_BITS = (4, 8, 16)
FLOAT_BITS = 16  # "not quantized"


@dataclass(frozen=True)
class QuantizationSpec:
    bits: int = 8
    group_size: int = 64
    encoder_bits: int = 8
    head_bits: int = 8
    mode: str = "affine"

    def __post_init__(self):
        if self.bits not in DECODER_BITS:
            raise ValueError(f"decoder bits must be one of {DECODER_BITS}, got {self.bits}")
        if self.encoder_bits not in ENCODER_BITS:
            raise ValueError(f"encoder bits must be one of {ENCODER_BITS} (never below 8), got {self.encoder_bits}")
        if self.head_bits not in HEAD_BITS:
            raise ValueError(f"head bits must be one of {HEAD_BITS}, got {self.head_bits}")
        if self.group_size not in (32, 64, 128):
            raise ValueError(f"group size must be 32, 64 or 128, got {self.group_size}")

    def to_config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, raw: dict) -> "QuantizationSpec":
        known = {k: raw[k] for k in ("bits", "group_size", "encoder_bits", "head_bits", "mode") if k in raw}
        return cls(**known)

    def bits_for(self, path: str, module: nn.Module) -> int:
        """Bits for the layer at `path` (module path without `thinker.`); 16 = keep float."""
        if path.startswith("audio_tower."):
            return self.encoder_bits if isinstance(module, nn.Linear) else FLOAT_BITS
        if path in ("model.embed_tokens", "lm_head"):
            return self.head_bits
        if path.startswith("model.layers.") and isinstance(module, nn.Linear):
            return self.bits
        return FLOAT_BITS

    def predicate(self, path: str, module: nn.Module):
        """`class_predicate` for `nn.quantize`: False or this layer's parameters."""
        if not hasattr(module, "to_quantized") or not hasattr(module, "weight"):
            return False
        bits = self.bits_for(path, module)
        if bits >= FLOAT_BITS or module.weight.shape[-1] % self.group_size:
            return False
        return {"group_size": self.group_size, "bits": bits, "mode": self.mode}


def quantize_network(network: nn.Module, spec: QuantizationSpec) -> nn.Module:
    """Swap the layers `spec` selects for quantized ones, in place (lazy: nothing is computed
    until the parameters are evaluated or replaced by loaded ones)."""
    nn.quantize(network, class_predicate=spec.predicate)
    return network
