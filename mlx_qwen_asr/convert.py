"""Convert a Qwen3-ASR checkpoint into an MLX model directory, optionally quantized.

    python -m mlx_qwen_asr.convert --model Qwen/Qwen3-ASR-0.6B --out qwen3-asr-0.6b-8bit --bits 8
    python -m mlx_qwen_asr.convert --model Qwen/Qwen3-ASR-1.7B --out qwen3-asr-1.7b-4bit --bits 4

The output holds the weights with MLX names and layouts (no `thinker.` prefix, conv kernels
transposed, the tied head's duplicate dropped), so loading is a plain read with no re-layout;
config.json is the source's plus `"mlx_qwen_asr": {"format": 1, "layout": "mlx", "dtype"}`
and, when quantized, `"quantization": {bits, group_size, encoder_bits, head_bits, mode}`
(policy in quantization.py). The tokenizer is also saved as a single tokenizer.json, which
loads much faster than vocab.json + merges.txt. `transcribe(model=OUT)` uses it as is.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from .model.config import ModelConfig
from .errors import ModelLoadError, QwenASRError
from .model.loading import MLX_FORMAT_KEY, is_mlx_layout, load_network, parse_dtype, resolve_model_dir
from .model.network import to_stored_name
from .model.quantization import QuantizationSpec, quantize_network
from .model.tokenizer import QwenTokenizer

FORMAT_VERSION = 1
# Files copied from the source besides the weights (whatever of them exist).
AUX_FILES = ("generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
             "chat_template.json", "vocab.json", "merges.txt", "tokenizer.json")
SHARD_BYTES = 4 << 30


def _shards(weights: dict[str, mx.array], limit: int) -> list[dict[str, mx.array]]:
    shards, current, size = [], {}, 0
    for name, value in weights.items():
        if current and size + value.nbytes > limit:
            shards.append(current)
            current, size = {}, 0
        current[name] = value
        size += value.nbytes
    return shards + [current]


def _save(path: Path, shard: dict[str, mx.array], metadata: dict) -> None:
    try:
        mx.save_safetensors(str(path), shard, metadata=metadata)
    except RuntimeError as exc:   # mlx says only "Unable to write N bytes"; tell a full disk apart
        needed = sum(v.nbytes for v in shard.values())
        if shutil.disk_usage(path.parent).free < needed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise OSError(errno.EIO, str(exc), str(path)) from None


def save_weights(out: Path, weights: dict[str, mx.array], shard_bytes: int = SHARD_BYTES) -> list[Path]:
    shards = _shards(weights, shard_bytes)
    metadata = {"format": "mlx"}
    if len(shards) == 1:
        path = out / "model.safetensors"
        _save(path, shards[0], metadata)
        return [path]
    paths, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        path = out / f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        _save(path, shard, metadata)
        weight_map.update({name: path.name for name in shard})
        paths.append(path)
    index = {"metadata": {"total_size": sum(v.nbytes for v in weights.values())}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return paths


def convert(model, out, bits: int | None = None, group_size: int = 64, encoder_bits: int = 8,
            head_bits: int = 8, dtype: str = "bfloat16", shard_bytes: int = SHARD_BYTES) -> Path:
    """Write `model` (hub id or directory) to `out` as an MLX model directory; returns `out`."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():   # checked before a source download
        raise ModelLoadError(f"--out {out} is an existing file; give a folder")
    src = resolve_model_dir(model)
    if out.resolve() == src.resolve():
        raise ValueError("--out must differ from the source directory")
    config = ModelConfig.from_file(src / "config.json")
    if is_mlx_layout(config) and config.raw.get("quantization"):
        raise ValueError(f"{src} is already quantized; convert from the original checkpoint")
    mx_dtype = parse_dtype(dtype)
    spec = QuantizationSpec(bits=bits, group_size=group_size, encoder_bits=encoder_bits,
                            head_bits=head_bits) if bits else None

    network = load_network(src, config, mx_dtype)
    if spec:
        quantize_network(network, spec)
    # Stored under the checkpoint's names (network.to_stored_name), so the format is unchanged.
    weights = {to_stored_name(k): v for k, v in tree_flatten(network.parameters())}
    mx.eval(weights)

    # Everything is written to a hidden folder beside `out` first and moved in only when
    # complete: a failure (a full disk) leaves `out` as it was and nothing half-written.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        _write_converted(staging, src, model, config, weights, mx_dtype, spec, shard_bytes)
        out.mkdir(exist_ok=True)
        for stale in list(out.glob("model*.safetensors")) + list(out.glob("model.safetensors.index.json")):
            stale.unlink()
        names = sorted(p.name for p in staging.iterdir())
        for name in [n for n in names if n != "config.json"] + ["config.json"]:   # config last
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _write_converted(out: Path, src: Path, model, config: ModelConfig, weights, mx_dtype, spec,
                     shard_bytes: int) -> None:
    save_weights(out, weights, shard_bytes)
    for name in AUX_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    if not (out / "tokenizer.json").is_file():
        QwenTokenizer.from_model_dir(src, config.raw)._tokenizer.save(str(out / "tokenizer.json"))
    raw = dict(config.raw)
    raw[MLX_FORMAT_KEY] = {"format": FORMAT_VERSION, "layout": "mlx", "dtype": str(mx_dtype).split(".")[-1],
                           "converted_from": str(model)}
    raw.pop("quantization", None)
    if spec:
        raw["quantization"] = spec.to_config()
    (out / "config.json").write_text(json.dumps(raw, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlx_qwen_asr.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="source: hub id or checkpoint directory")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--bits", type=int, choices=[4, 8], help="quantize decoder linear layers (default: no)")
    parser.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128])
    parser.add_argument("--encoder-bits", type=int, default=8, choices=[8, 16], help="16 = keep the encoder float")
    parser.add_argument("--head-bits", type=int, default=8, choices=[4, 8, 16], help="tied embedding/head; 16 = float")
    parser.add_argument("--dtype", default="bfloat16", help="float tensors' dtype (bfloat16, float16, float32)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = convert(args.model, args.out, args.bits, args.group_size, args.encoder_bits, args.head_bits, args.dtype)
    except (QwenASRError, ValueError) as exc:   # the source or an option: nothing was written
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # writing the output failed (disk full, permissions)
        print(f"error: writing {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in out.glob("model*.safetensors"))
    print(f"wrote {out} ({size / 1e9:.2f} GB) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
