"""Folders laid out as mlx-audio and mlx-qwen3-asr write them load through `load_model`.

The layouts are built here from the trained fixture the way those converters do it (no
`thinker.` prefix, conv kernels [out, kh, kw, in], tied head dropped, layers quantized with
mx.quantize, their config entries and file names), without their packages;
scripts/check_peer_checkpoints.py runs their own converters. Float layouts must give the
original's greedy tokens; quantized ones >= 99 % teacher-forced argmax agreement with float32.
"""

import json
import shutil
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.model.config import ModelConfig
from mlx_qwen_asr.decoding import greedy_decode
from mlx_qwen_asr.model.encoder import audio_token_count
from mlx_qwen_asr.errors import ModelLoadError
from mlx_qwen_asr.audio.mel import log_mel_spectrogram
from mlx_qwen_asr.model.config import nest_flat_config
from mlx_qwen_asr.model.peer_layouts import MLX_AUDIO, MLX_QWEN3_ASR, detect
from mlx_qwen_asr.transcribe import ASRModel

from support.heldout import HELDOUT, rows
from support.teacher_forcing import teacher_forced_logits

TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json",
                   "preprocessor_config.json", "chat_template.json")
CLIPS = [r["file"] for r in rows() if r["kind"] == "short"][:6] + [r["file"] for r in rows() if r["kind"] == "medium"][:2]


def mlx_names(source) -> dict[str, mx.array]:
    """The HF checkpoint's tensors as both converters rename them (float32)."""
    out = {}
    for name, value in mx.load(str(source / "model.safetensors")).items():
        name = name.removeprefix("thinker.")
        if name.startswith("lm_head."):
            continue   # tied to the embedding: both converters drop it
        if name.startswith("audio_tower.conv2d") and name.endswith(".weight"):
            value = value.transpose(0, 2, 3, 1)   # PyTorch [out, in, kh, kw] -> [out, kh, kw, in]
        out[name] = value.astype(mx.float32)
    return out


def quantized(weights: dict, bits_for) -> dict:
    """Layers `bits_for(path)` picks (bits, or None) quantized with mx.quantize, group 64."""
    out = {}
    for name, value in weights.items():
        path = name.removesuffix(".weight")
        bits = bits_for(path) if name.endswith(".weight") and value.ndim == 2 and value.shape[-1] % 64 == 0 else None
        if bits is None:
            out[name] = value
            continue
        out[name], out[f"{path}.scales"], out[f"{path}.biases"] = mx.quantize(value, group_size=64, bits=bits)
    return out


def write_folder(folder, source, weights: dict, config: dict, weight_file: str, extra: dict | None = None):
    folder.mkdir(parents=True)
    mx.save_safetensors(str(folder / weight_file), weights, metadata={"format": "mlx"})
    if weight_file == "model.safetensors":   # mlx-audio always writes the index too
        index = {"metadata": {"total_size": 0}, "weight_map": {k: weight_file for k in sorted(weights)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(config, indent=4, sort_keys=True))
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    for name, content in (extra or {}).items():
        (folder / name).write_text(json.dumps(content))
    return folder


def mlx_audio_folder(folder, source, bits: int | None = None):
    """mlx-audio: audio encoder float, decoder linears + embedding at `bits`, model.safetensors."""
    config = json.loads((source / "config.json").read_text())
    config["model_type"] = "qwen3_asr"
    weights = mlx_names(source)
    if bits:
        weights = quantized(weights, lambda path: None if path.startswith("audio_tower") else bits)
        config["quantization"] = config["quantization_config"] = {"group_size": 64, "bits": bits, "mode": "affine"}
    weights = {k: v.astype(mx.bfloat16) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
    return write_folder(folder, source, weights, config, "model.safetensors")


def mlx_qwen3_asr_folder(folder, source, bits: int | None = None, encoder_bits: int | None = None):
    """mlx-qwen3-asr: float16, every Linear/Embedding quantized (encoder at its own bits),
    weights.safetensors, config.json unchanged, quantization_config.json."""
    config = json.loads((source / "config.json").read_text())
    weights = {k: v.astype(mx.float16) for k, v in mlx_names(source).items()}
    extra = None
    if bits:
        encoder_bits = encoder_bits or bits
        weights = quantized(weights, lambda path: encoder_bits if path.startswith("audio_tower") else bits)
        extra = {"quantization_config.json": {"bits": bits, "group_size": 64, "audio_tower_bits": encoder_bits}}
    return write_folder(folder, source, weights, config, "weights.safetensors", extra)


@pytest.fixture(scope="module")
def reference_tokens(trained_model):
    return {f: [s.tokens for s in trained_model.transcribe(HELDOUT / f).segments] for f in CLIPS}


@pytest.fixture(scope="module")
def forced(trained_model):
    """(mel, ids, float32 greedy continuation + EOS, float32 argmax) per clip up to 30 s."""
    model, out = trained_model, []
    for f in [r["file"] for r in rows() if float(r["duration"]) <= 30.0]:
        mel = log_mel_spectrogram(load_audio(HELDOUT / f), model.config.audio.num_mel_bins)
        ids = model.prompt_ids(audio_token_count(mel.shape[1]))
        result = greedy_decode(model.network, model.network.embed_prompt(ids, model.network.encode_audio(mel)),
                               256, eos_ids=model.config.eos_token_ids)
        continuation = result.tokens + [model.config.eos_token_ids[0]]
        expected = teacher_forced_logits(model.network, mel, ids, continuation).argmax(-1)
        assert expected.tolist() == continuation
        out.append((mel, ids, continuation, expected))
    return out


def agreement(network, forced) -> float:
    same = [np.mean(teacher_forced_logits(network, mel, ids, c).argmax(-1) == want) * len(want)
            for mel, ids, c, want in forced]
    return float(sum(same) / sum(len(f[3]) for f in forced))


def detected(folder):
    return detect(folder, json.loads((folder / "config.json").read_text())).name


@pytest.mark.parametrize("maker, name", [(mlx_audio_folder, MLX_AUDIO), (mlx_qwen3_asr_folder, MLX_QWEN3_ASR)])
def test_float_layouts_give_identical_tokens(trained_checkpoint, reference_tokens, tmp_path, maker, name):
    folder = maker(tmp_path / "model", trained_checkpoint)
    assert detected(folder) == name
    model = ASRModel.load(folder, dtype="float32")
    assert {f: [s.tokens for s in model.transcribe(HELDOUT / f).segments] for f in CLIPS} == reference_tokens


@pytest.mark.parametrize("maker, bits, encoder_bits, name", [
    (mlx_audio_folder, 8, None, MLX_AUDIO),
    (mlx_audio_folder, 4, None, MLX_AUDIO),
    (mlx_qwen3_asr_folder, 8, None, MLX_QWEN3_ASR),
    (mlx_qwen3_asr_folder, 4, 8, MLX_QWEN3_ASR),
])
def test_quantized_layouts_agree_with_float32(trained_checkpoint, forced, tmp_path, maker, bits, encoder_bits, name):
    kwargs = {"encoder_bits": encoder_bits} if encoder_bits else {}
    folder = maker(tmp_path / "model", trained_checkpoint, bits, **kwargs)
    assert detected(folder) == name
    model = ASRModel.load(folder, dtype="float32")
    layers = dict(model.network.named_modules())
    assert layers["decoder.layers.0.mlp.down_proj"].bits == bits   # each layer as stored
    encoder = layers["audio_tower.layers.0.fc1"]
    assert getattr(encoder, "bits", None) == ((encoder_bits or bits) if maker is mlx_qwen3_asr_folder else None)
    assert agreement(model.network, forced) >= 0.99


def test_already_quantized_peer_folder_refuses_more_quantization(trained_checkpoint, tmp_path):
    folder = mlx_qwen3_asr_folder(tmp_path / "model", trained_checkpoint, 8)
    with pytest.raises(ModelLoadError, match="already quantized"):
        ASRModel.load(folder, dtype="float32", quantize=4)
    assert ASRModel.load(folder, low_memory=True).quantize is None   # the low-memory recipe keeps it as stored


def test_flat_config_is_nested_like_hugging_face(trained_checkpoint):
    raw = json.loads((trained_checkpoint / "config.json").read_text())
    thinker = raw.pop("thinker_config")
    flat = {**raw, "audio_config": thinker["audio_config"], "text_config": thinker["text_config"],
            "audio_token_id": thinker["audio_token_id"]}
    assert ModelConfig.from_dict(flat) == ModelConfig.from_dict({**raw, "thinker_config": thinker})
    assert nest_flat_config(raw | {"thinker_config": thinker}) == raw | {"thinker_config": thinker}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("change, found", [
    ({"quantization": {"group_size": 32, "bits": 4, "mode": "mxfp4"}}, "mode 'mxfp4'"),
    ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "quant_method 'gptq'"),
])
def test_unreadable_quantization_is_one_line(trained_checkpoint, tmp_path, change, found):
    folder = mlx_audio_folder(tmp_path / "model", trained_checkpoint, 8)
    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization"), config.pop("quantization_config")
    (folder / "config.json").write_text(json.dumps(config | change))
    done = run_cli(HELDOUT / CLIPS[0], "--model", folder)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert found in line and "mlx-audio" in line and str(folder) in line and "Traceback" not in done.stderr


def test_layer_with_unreadable_packing_is_named(trained_checkpoint, tmp_path):
    folder = mlx_audio_folder(tmp_path / "model", trained_checkpoint, 8)
    weights = mx.load(str(folder / "model.safetensors"))
    weights["model.layers.0.mlp.up_proj.weight"] = weights["model.layers.0.mlp.up_proj.weight"][:, :7]  # 1.75 bits
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    with pytest.raises(ModelLoadError, match=r"layer model\.layers\.0\.mlp\.up_proj is quantized in a way"):
        ASRModel.load(folder, dtype="float32")
