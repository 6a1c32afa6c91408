"""Checkpoints converted by mlx-audio and mlx-qwen3-asr load here and keep the model's output.

The trained test fixture (tests/support/heldout.py) is converted with each project's own code, in
throwaway virtual environments made (or reused) under --venv-root (they are never this
package's dependencies): float, 8-bit and 4-bit. Each result is loaded with this package's
`load_model` in float32 and compared with the original checkpoint loaded the same way:
- float conversions: greedy tokens of every held-out clip, identical or not;
- quantized ones: teacher-forced argmax agreement with float32 over every position of the
  original's greedy transcripts (clips up to 30 s, EOS included).

    python scripts/check_peer_checkpoints.py [--work-dir /tmp/peer-checkpoints] [--out report.json]

mlx-audio's converter is its `mlx_audio.convert.convert` (the `mlx_audio.convert` command);
mlx-qwen3-asr ships its conversion functions (`remap_weights`, `quantize_model`) but its
command is a repository script, so the steps of that script are run here around them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import mlx_qwen_asr  # noqa: F401  (first: it binds MLX's BLAS before mlx.core loads)
import mlx.core as mx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.heldout import HELDOUT, TRAINED_MODEL, rows  # noqa: E402
from support.teacher_forcing import teacher_forced_logits  # noqa: E402

from mlx_qwen_asr.audio.load import load_audio  # noqa: E402
from mlx_qwen_asr.decoding import greedy_decode  # noqa: E402
from mlx_qwen_asr.model.encoder import audio_token_count  # noqa: E402
from mlx_qwen_asr.audio.mel import log_mel_spectrogram  # noqa: E402
from mlx_qwen_asr.model.peer_layouts import detect  # noqa: E402
from mlx_qwen_asr.testing.compact_checkpoint import expand_compact  # noqa: E402
from mlx_qwen_asr.transcribe import ASRModel  # noqa: E402

PEERS = {
    "mlx-audio": {"venv": "ckpt-mlxaudio", "package": "mlx-audio==0.6.2", "module": "mlx_audio"},
    "mlx-qwen3-asr": {"venv": "ckpt-mlxqwen", "package": "mlx-qwen3-asr==0.4.4", "module": "mlx_qwen3_asr"},
}
# (peer, name, decoder bits, encoder bits); None = float / the peer's default.
CONVERSIONS = [
    ("mlx-audio", "float", None, None),
    ("mlx-audio", "8-bit", 8, None),
    ("mlx-audio", "4-bit", 4, None),
    ("mlx-qwen3-asr", "float16", None, None),
    ("mlx-qwen3-asr", "8-bit", 8, None),
    ("mlx-qwen3-asr", "4-bit", 4, None),
    ("mlx-qwen3-asr", "4-bit, 8-bit encoder", 4, 8),
]
GROUP_SIZE = 64   # both converters' default
TF_MAX_SECONDS = 30.0

# Run inside mlx-audio's environment: argv = source, output, bits (0 = float).
MLX_AUDIO_CONVERT = """
import sys
from mlx_audio.convert import convert
bits = int(sys.argv[3])
convert(sys.argv[1], sys.argv[2], quantize=bool(bits), q_bits=bits or None, q_group_size=%d,
        model_domain="stt")   # the domain given: its detection imports TTS models that fetch weights
""" % GROUP_SIZE

# Run inside mlx-qwen3-asr's environment: the steps of its scripts/convert.py (float16
# weights, its quantize_model, weights.safetensors without the tied head, config and
# tokenizer copied, quantization_config.json). argv = source, output, bits (0), encoder bits (0).
MLX_QWEN3_ASR_CONVERT = """
import json, shutil, sys
from pathlib import Path
import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_qwen3_asr.config import Qwen3ASRConfig
from mlx_qwen3_asr.convert import quantize_model, remap_weights
from mlx_qwen3_asr.load_models import _load_safetensors, _model_uses_tied_lm_head
from mlx_qwen3_asr.model import Qwen3ASRModel
src, out, bits, encoder_bits = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) or None
config = Qwen3ASRConfig.from_dict(json.loads((src / "config.json").read_text()))
weights = {k: v.astype(mx.float16) for k, v in remap_weights(_load_safetensors(src)).items()}
model = Qwen3ASRModel(config)
model.load_weights(list(weights.items()))
if bits:
    quantize_model(model, bits=bits, group_size=%d, encoder_bits=encoder_bits)
out.mkdir(parents=True, exist_ok=True)
flat = dict(tree_flatten(model.parameters()))
if _model_uses_tied_lm_head(config):
    flat = {k: v for k, v in flat.items() if not k.startswith("lm_head.")}
mx.save_safetensors(str(out / "weights.safetensors"), flat)
for name in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
             "special_tokens_map.json"]:
    if (src / name).exists():
        shutil.copy2(src / name, out / name)
if bits:
    quant = {"bits": bits, "group_size": %d, "audio_tower_bits": encoder_bits or bits}
    (out / "quantization_config.json").write_text(json.dumps(quant, indent=2))
""" % (GROUP_SIZE, GROUP_SIZE)


def peer_python(peer: str, venv_root: Path) -> Path:
    """The python of `peer`'s throwaway environment, made and installed on first use."""
    info = PEERS[peer]
    venv = venv_root / info["venv"]
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import {info['module']}"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"making {venv} ({info['package']})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    mlx = f"mlx[cpu]=={mx.__version__}" if sys.platform.startswith("linux") else f"mlx=={mx.__version__}"
    subprocess.run([str(python), "-m", "pip", "install", "-q", mlx, info["package"]], check=True)
    subprocess.run(check, check=True)
    return python


def convert_with_peer(peer: str, python: Path, source: Path, out: Path, bits, encoder_bits) -> None:
    code = MLX_AUDIO_CONVERT if peer == "mlx-audio" else MLX_QWEN3_ASR_CONVERT
    args = [str(source), str(out), str(bits or 0)] + ([str(encoder_bits or 0)] if peer == "mlx-qwen3-asr" else [])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, env=env, cwd=out.parent)
    if done.returncode:
        raise RuntimeError(f"{peer} conversion to {out} failed:\n{done.stderr[-2000:]}")


def heldout_tokens(model: ASRModel) -> dict[str, list[list[int]]]:
    """file -> the greedy tokens of each segment of its default transcription."""
    return {r["file"]: [s.tokens for s in model.transcribe(HELDOUT / r["file"]).segments] for r in rows()}


def forced_inputs(reference: ASRModel) -> list[tuple]:
    """(mel, prompt ids, float32 greedy continuation + EOS) per held-out clip up to 30 s."""
    inputs = []
    for r in rows():
        if float(r["duration"]) > TF_MAX_SECONDS:
            continue
        mel = log_mel_spectrogram(load_audio(HELDOUT / r["file"]), reference.config.audio.num_mel_bins)
        ids = reference.prompt_ids(audio_token_count(mel.shape[1]))
        prompt = reference.network.embed_prompt(ids, reference.network.encode_audio(mel))
        result = greedy_decode(reference.network, prompt, 256, eos_ids=reference.config.eos_token_ids)
        eos = [reference.config.eos_token_ids[0]] if result.finish_reason == "eos" else []
        inputs.append((mel, ids, result.tokens + eos))
    return inputs


def agreement(network, forced: list[tuple], expected: list[np.ndarray]) -> tuple[int, int]:
    """(positions whose argmax matches float32's, positions) over all clips."""
    same = total = 0
    for (mel, ids, continuation), want in zip(forced, expected):
        got = teacher_forced_logits(network, mel, ids, continuation).argmax(-1)
        same += int(np.sum(got == want))
        total += len(want)
    return same, total


def layer_bits(network) -> dict[str, int]:
    """"<bits>-bit" or "float" -> number of linear/embedding layers stored that way."""
    counts = Counter()
    for _, module in network.named_modules():
        if hasattr(module, "scales") and hasattr(module, "bits"):
            counts[f"{module.bits}-bit/g{module.group_size}"] += 1
        elif type(module).__name__ in ("Linear", "Embedding"):
            counts["float"] += 1
    return dict(sorted(counts.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", default="/tmp/peer-checkpoints", help="conversions are written here")
    parser.add_argument("--venv-root", default="/tmp", help="where the peers' environments are made or reused")
    parser.add_argument("--out", default=None, help="also write the JSON report here")
    args = parser.parse_args(argv)
    work, venv_root = Path(args.work_dir).expanduser(), Path(args.venv_root).expanduser()
    work.mkdir(parents=True, exist_ok=True)
    source = work / "original"
    if not (source / "config.json").is_file():
        expand_compact(TRAINED_MODEL, source)

    start = time.perf_counter()
    reference = ASRModel.load(source, dtype="float32")
    reference_tokens = heldout_tokens(reference)
    forced = forced_inputs(reference)
    expected = [teacher_forced_logits(reference.network, *f).argmax(-1) for f in forced]
    assert all(e.tolist() == f[2] for e, f in zip(expected, forced)), "teacher forcing must reproduce greedy"
    report = {"clips": len(reference_tokens), "forced_clips": len(forced),
              "forced_positions": sum(len(e) for e in expected), "conversions": []}
    failures = 0
    for peer, name, bits, encoder_bits in CONVERSIONS:
        out = work / f"{peer}-{name.replace(', ', '-').replace(' ', '-')}"
        if not (out / "config.json").is_file():
            convert_with_peer(peer, peer_python(peer, venv_root), source, out, bits, encoder_bits)
        layout = detect(out, json.loads((out / "config.json").read_text(encoding="utf-8")))
        model = ASRModel.load(out, dtype="float32")
        tokens = heldout_tokens(model)
        identical = sum(tokens[f] == reference_tokens[f] for f in reference_tokens)
        same, total = agreement(model.network, forced, expected)
        entry = {"peer": peer, "conversion": name, "folder": str(out), "detected": layout.name if layout else None,
                 "declared_quantization": layout.quantization if layout else None,
                 "layers": layer_bits(model.network), "identical_clips": identical,
                 "teacher_forced_agreement": same / total}
        quantized = bits is not None
        entry["passed"] = (entry["detected"] == peer and
                           (entry["teacher_forced_agreement"] >= 0.99 if quantized
                            else identical == len(reference_tokens)))
        failures += not entry["passed"]
        report["conversions"].append(entry)
        target = ">= 99 % agreement" if quantized else "identical tokens"
        print(f"{peer:14} {name:22} detected={entry['detected']:14} greedy identical {identical}/{len(tokens)} "
              f"clips, teacher-forced agreement {same}/{total} = {100 * same / total:.2f} % "
              f"[{target}: {'ok' if entry['passed'] else 'FAILED'}]  layers {entry['layers']}", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{len(CONVERSIONS) - failures}/{len(CONVERSIONS)} conversions passed in {report['seconds']} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
