"""compact_checkpoint: a checkpoint with mostly-zero vocabulary rows stored as one small .npz."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np

from mlx_qwen_asr.testing.compact_checkpoint import expand_compact, load_compact, save_compact
from mlx_qwen_asr.model.checkpoint import load_weights, weight_files
from mlx_qwen_asr.testing.random_checkpoint import model_config_dict, random_weights, write_tokenizer_files


def test_round_trip_keeps_every_tensor_and_the_tokenizer(tmp_path):
    config = model_config_dict("tiny")
    weights = random_weights(config, seed=3)
    embed = np.zeros_like(weights["thinker.model.embed_tokens.weight"])
    used = [5, 17, 151643, 151935]
    embed[used] = weights["thinker.model.embed_tokens.weight"][used]
    weights["thinker.model.embed_tokens.weight"] = weights["thinker.lm_head.weight"] = embed
    write_tokenizer_files(tmp_path / "tok", source_dir=False)

    compact = save_compact(tmp_path / "model.npz", config, weights, tmp_path / "tok")
    assert compact.stat().st_size < 0.2 * embed.nbytes           # zero rows cost nothing
    loaded_config, loaded, files = load_compact(compact)
    assert loaded_config == config
    assert files["vocab.json"] == (tmp_path / "tok" / "vocab.json").read_bytes()
    assert loaded.keys() == weights.keys()

    out = expand_compact(compact, tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert (out / "merges.txt").read_bytes() == (tmp_path / "tok" / "merges.txt").read_bytes()
    stored = {k: np.array(v.astype(mx.float32)) for k, v in load_weights(weight_files(out)).items()}
    for name, value in weights.items():
        # bfloat16 keeps 8 significant bits: relative rounding error <= 2^-8
        np.testing.assert_allclose(stored[name], value, rtol=2 ** -8, atol=0, err_msg=name)
        np.testing.assert_array_equal(stored[name], loaded[name], err_msg=name)
    assert np.count_nonzero(np.any(stored["thinker.model.embed_tokens.weight"] != 0, axis=1)) == len(used)
