"""Reading a checkpoint's weight files: which safetensors files a folder holds, their
tensors, and their names and shapes from the headers alone. Both loaders (loading.py for
this package's and Hugging Face layouts, peer_layouts.py for other MLX projects') read
files through here.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import mlx.core as mx

from ..errors import ModelLoadError


def weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise ModelLoadError(f"{index} is not a valid safetensors index: {exc}") from None
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
    else:
        files = sorted(model_dir.glob("model*.safetensors"))
    if not files:
        raise ModelLoadError(f"{model_dir} has no model.safetensors (or sharded model-*.safetensors)")
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ModelLoadError(f"{model_dir} is missing weight files: {', '.join(missing)}")
    return files


def load_weights(files: list[Path]) -> dict[str, mx.array]:
    weights = {}
    for file in files:
        try:
            weights.update(mx.load(str(file)))
        except Exception as exc:  # mlx raises RuntimeError/ValueError on bad files
            raise ModelLoadError(f"cannot read weights from {file}: {exc}") from None
    return weights


def tensor_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape from a safetensors header (nothing else of the file is read)."""
    try:
        with open(file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > os.fstat(handle.fileno()).st_size - 8:   # not a header length: do not read that much
                raise ValueError(f"header of {size} bytes in a smaller file")
            header = json.loads(handle.read(size))
    except (OSError, struct.error, ValueError) as exc:
        raise ModelLoadError(f"cannot read weights from {file}: not a safetensors file ({exc})") from None
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
