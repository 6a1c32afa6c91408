"""Random-weight checkpoints: the official loader accepts them, shapes match the real model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlx_qwen_asr.testing import official, random_checkpoint as rc
from mlx_qwen_asr.model.config import SUPPORTED_LANGUAGES, ModelConfig

PROMPT = ("<|im_start|>system\n{ctx}<|im_end|>\n<|im_start|>user\n"
          "<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\n")
SPECIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
               "<|audio_start|>": 151669, "<|audio_end|>": 151670, "<non_speech>": 151675,
               "<|audio_pad|>": 151676, "<blank1>": 151677, "<blank27>": 151703,
               "<asr_text>": 151704}


def reference_0_6b_shapes() -> dict[str, tuple[int, ...]]:
    """docs/model.md §2, written out independently of random_checkpoint.weight_shapes."""
    s = {}
    a = "thinker.audio_tower."
    s[a + "conv2d1.weight"], s[a + "conv2d1.bias"] = (480, 1, 3, 3), (480,)
    for c in ("conv2d2", "conv2d3"):
        s[a + c + ".weight"], s[a + c + ".bias"] = (480, 480, 3, 3), (480,)
    s[a + "conv_out.weight"] = (896, 7680)
    for i in range(18):
        p = f"{a}layers.{i}."
        for proj in ("q", "k", "v", "out"):
            s[f"{p}self_attn.{proj}_proj.weight"], s[f"{p}self_attn.{proj}_proj.bias"] = (896, 896), (896,)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            s[f"{p}{ln}.weight"] = s[f"{p}{ln}.bias"] = (896,)
        s[p + "fc1.weight"], s[p + "fc1.bias"] = (3584, 896), (3584,)
        s[p + "fc2.weight"], s[p + "fc2.bias"] = (896, 3584), (896,)
    s[a + "ln_post.weight"] = s[a + "ln_post.bias"] = (896,)
    s[a + "proj1.weight"], s[a + "proj1.bias"] = (896, 896), (896,)
    s[a + "proj2.weight"], s[a + "proj2.bias"] = (1024, 896), (1024,)
    m = "thinker.model."
    s[m + "embed_tokens.weight"] = (151936, 1024)
    for i in range(28):
        p = f"{m}layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (2048, 1024)
        s[p + "self_attn.k_proj.weight"] = s[p + "self_attn.v_proj.weight"] = (1024, 1024)
        s[p + "self_attn.o_proj.weight"] = (1024, 2048)
        s[p + "self_attn.q_norm.weight"] = s[p + "self_attn.k_norm.weight"] = (128,)
        s[p + "mlp.gate_proj.weight"] = s[p + "mlp.up_proj.weight"] = (3072, 1024)
        s[p + "mlp.down_proj.weight"] = (1024, 3072)
        s[p + "input_layernorm.weight"] = s[p + "post_attention_layernorm.weight"] = (1024,)
    s[m + "norm.weight"] = (1024,)
    s["thinker.lm_head.weight"] = (151936, 1024)
    return s


# ------------------------------------------------------------------------ config + shapes

def test_0_6b_shapes_match_reference_without_allocating():
    shapes = rc.weight_shapes(rc.model_config_dict("0.6b"))
    assert shapes == reference_0_6b_shapes()
    assert len(shapes) == 612
    params = {k: int(np.prod(v)) for k, v in shapes.items()}
    assert round(sum(params.values()) / 1e6, 1) == 938.0
    assert round((sum(params.values()) - params["thinker.lm_head.weight"]) / 1e6, 1) == 782.4


def test_1_7b_shapes():
    shapes = rc.weight_shapes(rc.model_config_dict("1.7b"))
    assert len(shapes) == 708
    audio = sum(k.startswith("thinker.audio_tower.") for k in shapes)
    decoder = sum(k.startswith("thinker.model.") for k in shapes)
    assert (audio, decoder) == (397, 310)
    assert shapes["thinker.audio_tower.proj2.weight"] == (2048, 1024)
    assert shapes["thinker.model.layers.0.self_attn.q_proj.weight"] == (2048, 2048)
    assert shapes["thinker.model.layers.27.mlp.down_proj.weight"] == (2048, 6144)


@pytest.mark.parametrize("size", rc.SIZES)
def test_config_schema(size):
    config = rc.model_config_dict(size)
    assert config["architectures"] == ["Qwen3ASRForConditionalGeneration"]
    assert config["model_type"] == "qwen3_asr"
    assert config["support_languages"] == list(SUPPORTED_LANGUAGES)
    thinker = config["thinker_config"]
    assert (thinker["audio_token_id"], thinker["audio_start_token_id"],
            thinker["audio_end_token_id"]) == (151676, 151669, 151670)
    text = thinker["text_config"]
    assert text["vocab_size"] == 151936
    rope = text["rope_scaling"]
    assert sum(rope["mrope_section"]) == text["head_dim"] // 2
    assert rope["interleaved"] and rope["mrope_interleaved"]
    # dtype only at the top level (a sub-config dtype overrides from_pretrained(dtype=)).
    assert "dtype" in config
    for sub in (thinker, text, thinker["audio_config"]):
        assert "dtype" not in sub and "torch_dtype" not in sub
    parsed = ModelConfig.from_dict(config)
    assert parsed.text.hidden_size == parsed.audio.output_dim
    assert parsed.audio.chunk_frames == 100 and parsed.audio.chunks_per_window == 8


def test_real_size_values():
    a6 = rc.model_config_dict("0.6b")["thinker_config"]
    a17 = rc.model_config_dict("1.7b")["thinker_config"]
    assert {k: a6["audio_config"][k] for k in ("d_model", "encoder_layers", "encoder_attention_heads",
                                               "encoder_ffn_dim", "output_dim")} == \
        dict(d_model=896, encoder_layers=18, encoder_attention_heads=14, encoder_ffn_dim=3584,
             output_dim=1024)
    assert a17["text_config"]["hidden_size"] == 2048 and a17["text_config"]["intermediate_size"] == 6144
    assert a6["text_config"]["rope_scaling"]["mrope_section"] == [24, 20, 20]
    assert a6["text_config"]["rope_theta"] == 1e6 and a6["text_config"]["tie_word_embeddings"]


def test_overrides_go_to_the_right_sub_config():
    config = rc.model_config_dict("tiny", encoder_layers=3, num_hidden_layers=5, audio_token_id=7,
                                  text_config={"hidden_size": 96, "head_dim": 16})
    thinker = config["thinker_config"]
    assert thinker["audio_config"]["encoder_layers"] == 3
    assert thinker["text_config"]["num_hidden_layers"] == 5
    assert thinker["audio_token_id"] == 7
    assert thinker["audio_config"]["output_dim"] == 96  # follows the decoder width
    assert sum(thinker["text_config"]["rope_scaling"]["mrope_section"]) == 8
    with pytest.raises(ValueError, match="unknown"):
        rc.model_config_dict("tiny", no_such_field=1)
    with pytest.raises(ValueError, match="both"):
        rc.model_config_dict("tiny", attention_dropout=0.1)
    with pytest.raises(ValueError, match="output_dim"):
        rc.model_config_dict("tiny", output_dim=32)


# ------------------------------------------------------------------------------- weights

def test_random_weights_are_deterministic_and_non_trivial(tiny_config_and_weights):
    config, weights = tiny_config_and_weights
    again = rc.random_weights(config, seed=0)
    other = rc.random_weights(config, seed=1)
    name = "thinker.model.layers.1.mlp.up_proj.weight"
    assert np.array_equal(weights[name], again[name])
    assert not np.array_equal(weights[name], other[name])
    assert all(w.dtype == np.float32 for w in weights.values())
    assert weights["thinker.lm_head.weight"] is weights["thinker.model.embed_tokens.weight"]
    for key, w in weights.items():
        if key.endswith(".bias"):
            assert 0 < np.abs(w).mean() < 0.1, key
        elif w.ndim == 1:  # norm weights: 1 +- 0.05, never all ones
            assert 0.949 < w.min() and w.max() < 1.051 and w.std() > 0.01, key
    rows = np.linalg.norm(weights["thinker.model.embed_tokens.weight"][:1000], axis=1)
    np.testing.assert_allclose(rows, 1.0, rtol=1e-5)


def test_sharded_checkpoint_has_a_valid_index(tmp_path, tiny_config_and_weights):
    import mlx.core as mx

    config, weights = tiny_config_and_weights
    out = rc.write_checkpoint(tmp_path / "sharded", config, weights, dtype="bfloat16",
                              max_shard_bytes=8_000_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) >= 3 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert not (out / "model.safetensors").exists()
    assert set(index["weight_map"]) == set(rc.weight_shapes(config))
    total = 0
    for file in files:
        arrays, metadata = mx.load(str(out / file), return_metadata=True)
        assert metadata == {"format": "pt"}
        assert {k for k, f in index["weight_map"].items() if f == file} == set(arrays)
        total += sum(a.nbytes for a in arrays.values())
        assert all(a.dtype == mx.bfloat16 for a in arrays.values())
    assert index["metadata"]["total_size"] == total


def test_stored_values_round_trip(tiny_checkpoint, tiny_checkpoint_fp32, tiny_config_and_weights):
    import mlx.core as mx

    _, weights = tiny_config_and_weights
    name = "thinker.audio_tower.layers.0.fc1.weight"
    fp32 = mx.load(str(tiny_checkpoint_fp32 / "model.safetensors"))
    bf16 = mx.load(str(tiny_checkpoint / "model.safetensors"))
    assert np.array_equal(np.array(fp32[name]), weights[name])
    assert bf16[name].dtype == mx.bfloat16
    np.testing.assert_allclose(np.array(bf16[name].astype(mx.float32)), weights[name], rtol=1e-2)
    assert json.loads((tiny_checkpoint_fp32 / "config.json").read_text())["dtype"] == "float32"


# ----------------------------------------------------------------------------- tokenizer

def test_synthesized_vocabulary_layout():
    vocab_text, merges_text = rc.synthesize_bpe()
    vocab = json.loads(vocab_text)
    assert len(vocab) == rc.REGULAR_VOCAB_SIZE
    assert sorted(vocab.values()) == list(range(rc.REGULAR_VOCAB_SIZE))
    assert vocab["!"] == 0 and vocab["Ġ"] == 220 and vocab["Ċ"] == 198  # GPT-2 byte order
    merges = merges_text.splitlines()[1:]
    assert len(merges) > 500
    assert all("".join(m.split(" ")) in vocab for m in merges)


def test_fallback_tokenizer_is_synthesized_without_shared(tmp_path, monkeypatch):
    monkeypatch.setattr(rc, "SHARED_TOKENIZER_DIR", tmp_path / "absent")
    rc.write_tokenizer_files(tmp_path / "tok")
    vocab = json.loads((tmp_path / "tok" / "vocab.json").read_text(encoding="utf-8"))
    assert "<unused151642>" in vocab or any(k.startswith("<unused") for k in vocab)
    assert len(vocab) == rc.REGULAR_VOCAB_SIZE
    for name in ("merges.txt", "tokenizer_config.json", "chat_template.json",
                 "preprocessor_config.json", "generation_config.json"):
        assert (tmp_path / "tok" / name).is_file()


def test_synthesized_tokenizer_ids_and_round_trip(official_engine, synthetic_tokenizer_checkpoint):
    tok = official.OfficialTokenizer(synthetic_tokenizer_checkpoint, via="auto")  # transformers' AutoTokenizer
    for token, token_id in SPECIAL_IDS.items():
        assert tok.convert_tokens_to_ids(token) == token_id
        assert tok.encode(token) == [token_id]
    attributes = tok.attributes(["audio_token", "audio_bos_token", "audio_eos_token"])
    assert (attributes["audio_token"], attributes["audio_bos_token"], attributes["audio_eos_token"]) == \
        ("<|audio_pad|>", "<|audio_start|>", "<|audio_end|>")
    for text in ["language English<asr_text>The quick brown fox jumps over the lazy dog.",
                 "Guten Morgen! ¿Cómo estás? 你好，世界。 Привет 12345 \t\n  x"]:
        assert tok.decode(tok.encode(text)) == text
    words = tok.encode("system\nuser\nassistant\nlanguage English the")
    assert len(words) == 9  # each word is one token, like the real vocabulary
    # <asr_text> is not special: decoding with skip_special_tokens keeps it.
    ids = tok.encode("language English<asr_text>hi") + [151645]
    assert tok.decode(ids, skip_special_tokens=True) == "language English<asr_text>hi"


# ------------------------------------------------------------------------ official loader

def test_official_loader_accepts_tiny_checkpoint(official_engine, tiny_checkpoint):
    report = official.loader_report(tiny_checkpoint)  # transformers' AutoModel, float32
    info = report["info"]
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert info["mismatched_keys"] == [] and info["error_msgs"] == []
    assert report["param_dtypes"] == ["float32"]
    assert report["lm_head_tied"]


def test_official_pipeline_holds_our_values_and_decodes_sanely(official_engine, tiny_checkpoint_fp32,
                                                               tiny_config_and_weights):
    _, weights = tiny_config_and_weights
    # As shipped (no window mask); its processor is AutoProcessor(fix_mistral_regex=True).
    asr = official.load_official(tiny_checkpoint_fp32, dtype="float32", window_mask=False, max_new_tokens=8)
    names = ("thinker.audio_tower.conv2d1.weight", "thinker.audio_tower.layers.1.fc2.bias",
             "thinker.model.layers.0.self_attn.k_norm.weight", "thinker.lm_head.weight")
    state = asr.parameters(names)
    for name in names:
        assert np.array_equal(state[name], weights[name]), name

    for ctx in ("", "Names: Qwen"):
        prompt = asr.chat_prompt(ctx)
        assert prompt == PROMPT.format(ctx=ctx)

    wav = (np.random.default_rng(0).standard_normal(32000) * 0.1).astype(np.float32)
    assert asr.prompt_ids(wav, prompt=prompt).count(151676) == 26  # 2 s -> 26 audio tokens
    new = asr.generate(wav, max_new_tokens=20, prompt=prompt, stop_at_eos=False, eos_token_id=[151645, 151643])
    assert len(set(new)) >= 5, new  # a random model that repeats one token hides bugs

    (result,) = asr.transcribe(wav)  # the whole official pipeline runs
    assert isinstance(result.text, str)
