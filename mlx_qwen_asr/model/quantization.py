"""Which layers are quantized, at how many bits, and how that is written in config.json.

Policy (docs/performance-lab-notes.md has the measured agreement, sizes and speeds):
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

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_unflatten

from ..errors import OptionError

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
            raise OptionError(f"decoder bits must be one of {DECODER_BITS}, got {self.bits}")
        if self.encoder_bits not in ENCODER_BITS:
            raise OptionError(f"encoder bits must be one of {ENCODER_BITS} (never below 8), got {self.encoder_bits}")
        if self.head_bits not in HEAD_BITS:
            raise OptionError(f"head bits must be one of {HEAD_BITS}, got {self.head_bits}")
        if self.group_size not in (32, 64, 128):
            raise OptionError(f"group size must be 32, 64 or 128, got {self.group_size}")

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
        if path in ("decoder.embed_tokens", "lm_head"):
            return self.head_bits
        if path.startswith("decoder.layers.") and isinstance(module, nn.Linear):
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


# On MLX's CPU backend a quantized matmul over many rows (prefill, encoder) runs ~10x slower
# than dequantizing the weight and calling float32 BLAS (docs/performance-lab-notes.md);
# one-row decoding steps are memory-bound and keep the quantized kernel. Metal's quantized
# kernels are fast for every shape, so only the CPU takes this path.
DEQUANTIZE_ROWS = 16


class QuantizedLinear(nn.QuantizedLinear):
    """`nn.QuantizedLinear` whose many-row products on the CPU (float32) go through a
    transient float weight and BLAS; the stored weight stays quantized."""

    def __call__(self, x: mx.array) -> mx.array:
        rows = x.size // x.shape[-1]
        if rows < DEQUANTIZE_ROWS or x.dtype != mx.float32 or mx.default_device() != mx.cpu:
            return super().__call__(x)
        weight = mx.dequantize(self["weight"], self["scales"], self.get("biases"), group_size=self.group_size,
                               bits=self.bits, mode=self.mode).astype(x.dtype)
        if "bias" in self:
            return mx.addmm(self["bias"], x, weight.T)
        return x @ weight.T


def quantize_network(network: nn.Module, spec: QuantizationSpec) -> nn.Module:
    """Swap the layers `spec` selects for quantized ones, in place (lazy: nothing is computed
    until the parameters are evaluated or replaced by loaded ones)."""
    return quantize_layers(network, spec.predicate)


def quantize_layers(network: nn.Module, predicate) -> nn.Module:
    """Swap the layers `predicate(path, module)` selects (False or {group_size, bits, mode})
    for quantized ones, in place; quantized linear layers are this module's QuantizedLinear."""
    nn.quantize(network, class_predicate=predicate)
    swaps = []
    for path, module in network.named_modules():
        if type(module) is nn.QuantizedLinear:
            output_dims, input_dims = module.weight.shape[0], module.weight.shape[1] * 32 // module.bits
            layer = QuantizedLinear(input_dims, output_dims, "bias" in module, module.group_size, module.bits,
                                    module.mode)
            layer.update(module.parameters())
            swaps.append((path, layer))
    if swaps:
        network.update_modules(tree_unflatten(swaps))
    return network
