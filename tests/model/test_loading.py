"""Loading checkpoints: sharded like the published 1.7B, bf16 as published, sizes from config.json."""

import json

import mlx.core as mx
import numpy as np

from mlx_qwen_asr.testing.random_checkpoint import write_checkpoint
from mlx_qwen_asr.transcribe import ASRModel

from support.audio_samples import speech


def test_sharded_checkpoint_with_index_loads_like_a_single_file(tiny_config_and_weights, tiny_checkpoint_fp32, tmp_path):
    config, weights = tiny_config_and_weights
    sharded = write_checkpoint(tmp_path / "sharded", config, weights, dtype="float32", max_shard_bytes=20_000_000)
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    audio = speech(2.0)
    one = ASRModel.load(tiny_checkpoint_fp32, dtype="float32").transcribe(audio, sample_rate=16000, max_new_tokens=8)
    many = ASRModel.load(sharded, dtype="float32").transcribe(audio, sample_rate=16000, max_new_tokens=8)
    assert many.tokens == one.tokens


def test_sizes_come_from_config(tiny_checkpoint):
    model = ASRModel.load(tiny_checkpoint, dtype="float32")
    config = json.loads((tiny_checkpoint / "config.json").read_text())["thinker_config"]
    assert len(model.network.decoder.layers) == config["text_config"]["num_hidden_layers"]
    assert len(model.network.audio_tower.layers) == config["audio_config"]["encoder_layers"]
    assert model.network.decoder.embed_tokens.weight.shape == (151936, config["text_config"]["hidden_size"])


def test_dtype_is_applied_to_every_float_parameter(tiny_checkpoint):
    from mlx.utils import tree_flatten

    for name, dtype in (("float32", mx.float32), ("bfloat16", mx.bfloat16), ("float16", mx.float16)):
        model = ASRModel.load(tiny_checkpoint, dtype=name)
        dtypes = {v.dtype for _, v in tree_flatten(model.network.parameters())}
        assert dtypes == {dtype}, name


def test_bf16_checkpoint_loaded_as_float32_is_exactly_upcast(tiny_checkpoint):
    from mlx_qwen_asr.model.checkpoint import load_weights, weight_files

    raw = load_weights(weight_files(tiny_checkpoint))
    model = ASRModel.load(tiny_checkpoint, dtype="float32")
    stored = raw["thinker.model.layers.0.mlp.up_proj.weight"]
    assert stored.dtype == mx.bfloat16
    loaded = model.network.decoder.layers[0].mlp.up_proj.weight
    assert np.array_equal(np.array(stored.astype(mx.float32)), np.array(loaded))


def test_setup_failures_of_the_model_layer_are_setup_errors(tmp_path):
    """A bad quantization recipe or a folder without weights is one setup error (CLI exit 2),
    not a bare ValueError or the base class."""
    import pytest

    from mlx_qwen_asr.errors import ModelLoadError, OptionError
    from mlx_qwen_asr.model.checkpoint import tensor_shapes, weight_files
    from mlx_qwen_asr.model.quantization import QuantizationSpec

    for bad in ({"bits": 3}, {"bits": 4, "encoder_bits": 4}, {"head_bits": 2}, {"group_size": 48}):
        with pytest.raises(OptionError):
            QuantizationSpec(**bad)
    with pytest.raises(ModelLoadError, match="has no model.safetensors"):
        weight_files(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="not a safetensors file"):
        tensor_shapes(tmp_path / "model.safetensors")
