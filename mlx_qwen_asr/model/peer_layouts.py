"""Checkpoints converted by other MLX projects, recognised from config.json and key names.

Two layouts are read, float or quantized (MLX affine quantization, any bits per layer):
- "mlx-audio": what mlx-audio's converter writes (the mlx-community/Qwen3-ASR-* repos):
  model.safetensors (+ index), the source's config.json plus `"quantization": {group_size,
  bits, mode}` (and a copy as "quantization_config"); audio encoder left float.
- "mlx-qwen3-asr": what mlx-qwen3-asr 0.4.x writes: weights.safetensors, the source's
  config.json unchanged, and quantization_config.json `{bits, group_size, audio_tower_bits}`.
Both store MLX names and layouts: no `thinker.` prefix, conv kernels [out, kh, kw, in], the
tied head dropped (or kept: it is dropped here), quantized layers as `.weight` (packed
uint32), `.scales`, `.biases`. Each layer's bits and group size are read from its tensors'
shapes, so mixed recipes (4-bit decoder, 8-bit encoder) load as stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from ..errors import ModelLoadError
from .checkpoint import load_weights, tensor_shapes, weight_files
from .network import from_stored_name, to_stored_name
from .quantization import quantize_layers

MLX_AUDIO = "mlx-audio"
MLX_QWEN3_ASR = "mlx-qwen3-asr"
QUANT_FILE = "quantization_config.json"   # mlx-qwen3-asr's
READABLE_BITS = (2, 3, 4, 5, 6, 8)
READABLE_GROUPS = (32, 64, 128)
# Tensor name endings of quantization schemes other than MLX's (GPTQ/AWQ, bitsandbytes).
FOREIGN_SUFFIXES = (".qweight", ".qzeros", ".g_idx", ".SCB", ".absmax", ".quant_map", ".weight_format")


@dataclass
class PeerLayout:
    name: str                      # MLX_AUDIO or MLX_QWEN3_ASR
    files: list[Path]
    quantization: dict = field(default_factory=dict)   # as declared ({} if none)
    mode: str = "affine"
    quantized: bool = False        # any layer stored quantized (declared or not)


def _weight_files(model_dir: Path) -> list[Path]:
    if any(model_dir.glob("model*.safetensors")) or (model_dir / "model.safetensors.index.json").is_file():
        return weight_files(model_dir)
    return sorted(model_dir.glob("*.safetensors"))


def _declared_quantization(model_dir: Path, raw: dict) -> dict:
    """The quantization a folder declares: its quantization_config.json or config.json's
    "quantization" / "quantization_config"; {} for none."""
    if (model_dir / QUANT_FILE).is_file():
        try:
            declared = json.loads((model_dir / QUANT_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{model_dir / QUANT_FILE} is not valid JSON: {exc}") from None
    else:
        declared = raw.get("quantization") or raw.get("quantization_config") or {}
    if not isinstance(declared, dict):
        raise ModelLoadError(f"{model_dir}: quantization entry {declared!r} is not an object")
    return declared


def detect(model_dir: Path, raw: dict) -> PeerLayout | None:
    """The peer layout of `model_dir`, or None for a Hugging Face checkpoint (keys under
    `thinker.`) or this package's own converted directory. A folder that looks converted
    but cannot be read (another quantization scheme) raises one ModelLoadError line."""
    files = _weight_files(model_dir)
    if not files:
        return None   # the caller reports the missing weights
    names = set()
    for file in files:
        if file.is_file():
            names.update(tensor_shapes(file))
    if not names:
        return None
    hugging_face = any(n.startswith("thinker.") for n in names)
    if hugging_face:
        name = "Hugging Face"
    elif all(f.name == "weights.safetensors" for f in files) or (model_dir / QUANT_FILE).is_file():
        name = MLX_QWEN3_ASR
    else:
        name = MLX_AUDIO
    declared = _declared_quantization(model_dir, raw)
    foreign = sorted(n for n in names if n.endswith(FOREIGN_SUFFIXES))
    method = declared.get("quant_method")
    mode = str(declared.get("mode", "affine"))
    if foreign or method or mode != "affine":
        found = f"quant_method {method!r}" if method else f"mode {mode!r}" if mode != "affine" else \
            f"tensors such as {foreign[0]}"
        raise ModelLoadError(f"{model_dir} looks like a {name} checkpoint quantized in a way this loader cannot "
                             f"read ({found}): it reads float weights and MLX affine quantization "
                             "(.weight/.scales/.biases)")
    quantized = bool(declared) or any(n.endswith(".scales") for n in names)
    return None if hugging_face else PeerLayout(name, files, declared, mode, quantized)


def _layer_recipes(layout: PeerLayout, shapes: dict, float_shapes: dict) -> dict[str, dict]:
    """Module path -> {group_size, bits, mode} of each quantized layer, from its shapes."""
    recipes = {}
    for key in shapes:
        if not key.endswith(".scales"):
            continue
        path = key[: -len(".scales")]
        packed, scales, original = shapes.get(f"{path}.weight"), shapes[key], float_shapes.get(f"{path}.weight")
        if packed is None or original is None or len(packed) != 2 or len(scales) != 2:
            raise ModelLoadError(f"{layout.files[0].parent}: {layout.name} layer {to_stored_name(path)} has "
                                 "quantization scales "
                                 "but no matching weight in this model")
        in_dim = original[-1]
        bits, group = packed[-1] * 32 // in_dim, in_dim // scales[-1] if scales[-1] else 0
        if packed[-1] * 32 != bits * in_dim or bits not in READABLE_BITS or group not in READABLE_GROUPS \
                or group * scales[-1] != in_dim:
            raise ModelLoadError(f"{layout.files[0].parent}: {layout.name} layer {to_stored_name(path)} is quantized in a way that "
                                 f"cannot be read (weight {packed}, scales {scales} for {in_dim} inputs; "
                                 f"declared {layout.quantization or 'nothing'})")
        recipes[path] = {"group_size": group, "bits": bits, "mode": layout.mode}
    return recipes


def read_weights(layout: PeerLayout, network, config) -> dict[str, mx.array]:
    """The folder's tensors under `network`'s names; its quantized layers are swapped into
    `network` first, each at the bits and group size it was stored with."""
    # Peers store the checkpoint's names (model.* for the decoder); the network's differ.
    shapes = {}
    for file in layout.files:
        shapes.update({from_stored_name(k): v for k, v in tensor_shapes(file).items()})
    recipes = _layer_recipes(layout, shapes, {k: v.shape for k, v in tree_flatten(network.parameters())})
    if recipes:
        quantize_layers(network, lambda path, module: recipes.get(path, False))
    weights = {from_stored_name(k): v for k, v in load_weights(layout.files).items()}
    if config.text.tie_word_embeddings:   # the head is the embedding; a kept copy is dropped
        weights = {k: v for k, v in weights.items() if not k.startswith("lm_head.")}
    return weights


def stored_quantization(model_dir: Path, raw: dict) -> dict:
    """What quantization a model directory already has ({} for none), in any layout."""
    if raw.get("quantization"):
        return raw["quantization"]
    if (model_dir / QUANT_FILE).is_file():
        return _declared_quantization(model_dir, raw)
    return {}
