"""A checkpoint stored compactly: one compressed .npz instead of a Hugging Face folder.

The trained test fixture uses a few hundred of the 151,936 vocabulary rows; the rest are
exactly zero. Stored as a Hugging Face folder that is two 151936-row matrices; stored
here it is the used rows, their indices and the other tensors (as bfloat16 bits), the
config and the tokenizer's vocab.json/merges.txt, compressed. `expand_compact` writes the
exact Hugging Face layout back (config.json, model.safetensors, tokenizer files), which
is what the tests load with both engines.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from .random_checkpoint import write_checkpoint

# Tensors stored as (row indices, nonzero rows) rather than whole.
_SPARSE_ROW_TENSORS = ("thinker.model.embed_tokens.weight", "thinker.lm_head.weight")


def _to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (round to nearest even), as uint16."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def _from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def save_compact(path, config: dict, weights: dict[str, np.ndarray], tokenizer_dir) -> Path:
    """Write `weights` (PyTorch names, float arrays) rounded to bfloat16, with `config`
    and tokenizer_dir's vocab.json + merges.txt, to one compressed .npz."""
    tok = Path(tokenizer_dir)
    arrays = {
        "config.json": np.frombuffer(json.dumps(config).encode(), dtype=np.uint8),
        "vocab.json": np.frombuffer((tok / "vocab.json").read_bytes(), dtype=np.uint8),
        "merges.txt": np.frombuffer((tok / "merges.txt").read_bytes(), dtype=np.uint8),
    }
    for name, value in weights.items():
        value = np.asarray(value, dtype=np.float32)
        if name in _SPARSE_ROW_TENSORS:
            rows = np.flatnonzero(np.any(value != 0, axis=1))
            arrays[f"rows:{name}"] = rows.astype(np.int32)
            arrays[f"shape:{name}"] = np.array(value.shape, dtype=np.int64)
            arrays[f"bf16:{name}"] = _to_bf16_bits(value[rows])
        else:
            arrays[f"bf16:{name}"] = _to_bf16_bits(value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_compact(path) -> tuple[dict, dict[str, np.ndarray], dict[str, bytes]]:
    """(config, float32 weights, {"vocab.json": ..., "merges.txt": ...}) from save_compact's file."""
    with np.load(path, allow_pickle=False) as data:
        config = json.loads(data["config.json"].tobytes())
        files = {name: data[name].tobytes() for name in ("vocab.json", "merges.txt")}
        weights = {}
        for key in data.files:
            if not key.startswith("bf16:"):
                continue
            name = key[len("bf16:"):]
            value = _from_bf16_bits(data[key])
            if f"rows:{name}" in data.files:
                full = np.zeros(tuple(data[f"shape:{name}"]), dtype=np.float32)
                full[data[f"rows:{name}"]] = value
                value = full
            weights[name] = value
    return config, weights, files


def expand_compact(path, out_dir, dtype: str = "bfloat16") -> Path:
    """Write the Hugging Face checkpoint folder that `path` (from save_compact) holds."""
    config, weights, files = load_compact(path)
    with tempfile.TemporaryDirectory() as tok_dir:
        for name, content in files.items():
            (Path(tok_dir) / name).write_bytes(content)
        return write_checkpoint(out_dir, config, weights, dtype=dtype, tokenizer_source=tok_dir)


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Write the Hugging Face checkpoint folder of a compact .npz "
                                "(e.g. the trained test fixture tests/fixtures/tiny_asr.npz).")
    p.add_argument("compact", help="a .npz written by save_compact")
    p.add_argument("out", help="directory to write (config.json, model.safetensors, tokenizer files)")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    args = p.parse_args(argv)
    print(expand_compact(args.compact, args.out, dtype=args.dtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
