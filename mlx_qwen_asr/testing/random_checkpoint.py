"""Qwen3-ASR checkpoints with random weights, in the exact Hugging Face layout.

The test suite builds a tiny one (real vocabulary and token ids, small widths) and
benchmarks build the real 0.6B / 1.7B shapes. The directory holds what a Hugging Face
download holds: config.json, model.safetensors (or shards + model.safetensors.index.json),
vocab.json, merges.txt, tokenizer_config.json, chat_template.json,
preprocessor_config.json and generation_config.json; the official `qwen_asr` loader reads
it with no missing or unexpected keys.

Weights are not the PyTorch default init: plain std-0.02 weights with unit norms make a
random model's greedy decoding repeat one token forever, and unit norms / zero biases
would let a port that drops a norm weight or a bias pass a parity test. So linear weights
are N(0, 1/fan_in) with per-layer gains on the residual output projections, embedding
rows have unit norm, biases are small and non-zero, and norm weights are 1 +- 0.05.

Runtime dependencies only: numpy, mlx (safetensors writer) and tokenizers (to synthesize a
byte-level BPE when the real Qwen vocabulary is not at hand).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..model.config import SUPPORTED_LANGUAGES

# Where the real Qwen2/Qwen3 vocab.json + merges.txt live on development machines
# (../shared beside the checkout). A user's clone has no such folder: the tokenizer is
# then synthesized.
SHARED_TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "tokenizer"

SIZES = ("tiny", "0.6b", "1.7b")

# Regular (BPE) vocabulary entries of the Qwen tokenizer; added tokens start here.
REGULAR_VOCAB_SIZE = 151643
VOCAB_SIZE = 151936  # embedding rows (padded beyond the tokenizer)

# Added tokens of the Qwen3-ASR tokenizer: (id, content, special). 151643-151670 are the
# Qwen3 base tokenizer's; the audio ids and <non_speech>/<asr_text> are verified for
# Qwen3-ASR (docs/model.md §6). The strings of 151671-151674 are unknown: Qwen3-Omni's
# tts tokens stand in for them.
ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = (
    (151643, "<|endoftext|>", True),
    (151644, "<|im_start|>", True),
    (151645, "<|im_end|>", True),
    (151646, "<|object_ref_start|>", True),
    (151647, "<|object_ref_end|>", True),
    (151648, "<|box_start|>", True),
    (151649, "<|box_end|>", True),
    (151650, "<|quad_start|>", True),
    (151651, "<|quad_end|>", True),
    (151652, "<|vision_start|>", True),
    (151653, "<|vision_end|>", True),
    (151654, "<|vision_pad|>", True),
    (151655, "<|image_pad|>", True),
    (151656, "<|video_pad|>", True),
    (151657, "<tool_call>", False),
    (151658, "</tool_call>", False),
    (151659, "<|fim_prefix|>", False),
    (151660, "<|fim_middle|>", False),
    (151661, "<|fim_suffix|>", False),
    (151662, "<|fim_pad|>", False),
    (151663, "<|repo_name|>", False),
    (151664, "<|file_sep|>", False),
    (151665, "<tool_response>", False),
    (151666, "</tool_response>", False),
    (151667, "<think>", False),
    (151668, "</think>", False),
    (151669, "<|audio_start|>", True),
    (151670, "<|audio_end|>", True),
    (151671, "<tts_pad>", True),
    (151672, "<tts_text_bos>", True),
    (151673, "<tts_text_eod>", True),
    (151674, "<tts_text_bos_single>", True),
    (151675, "<non_speech>", False),
    (151676, "<|audio_pad|>", True),
    *((151676 + i, f"<blank{i}>", True) for i in range(1, 28)),
    # Not special: batch_decode(skip_special_tokens=True) keeps it and
    # parse_asr_output splits the language tag from the text on it.
    (151704, "<asr_text>", False),
)

# Renders the prompt the official code builds (docs/model.md §6):
# <|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|>
# <|audio_end|><|im_end|>\n<|im_start|>assistant\n
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'audio' or 'audio' in part or 'audio_url' in part -%}"
    "{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}"
    "{{- part['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# preprocessor_config.json of Qwen/Qwen3-ASR-0.6B as published, plus the
# sampling_rate that WhisperFeatureExtractor also writes.
PREPROCESSOR_CONFIG = {
    "chunk_length": 30,
    "dither": 0.0,
    "feature_extractor_type": "WhisperFeatureExtractor",
    "feature_size": 128,
    "hop_length": 160,
    "n_fft": 400,
    "n_samples": 480000,
    "nb_max_frames": 3000,
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "Qwen3ASRProcessor",
    "return_attention_mask": True,
    "sampling_rate": 16000,
}

# transformers version recorded in config.json, as save_pretrained would write it with the
# version qwen-asr 0.0.6 pins. It matters: with fix_mistral_regex=True (which the official
# loader passes) transformers 4.57.6 swaps the tokenizer's split regex for the Mistral one
# unless config.json names a version <= 4.57.2.
TRANSFORMERS_VERSION = "4.57.6"

GENERATION_CONFIG = {
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "transformers_version": TRANSFORMERS_VERSION,
}


_AUDIO_SIZES = {
    "tiny": dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128,
                 output_dim=64, downsample_hidden_size=32),
    "0.6b": dict(d_model=896, encoder_layers=18, encoder_attention_heads=14, encoder_ffn_dim=3584,
                 output_dim=1024, downsample_hidden_size=480),
    "1.7b": dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16, encoder_ffn_dim=4096,
                 output_dim=2048, downsample_hidden_size=480),
}
_TEXT_SIZES = {
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=32),
    "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128),
    "1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128),
}
_THINKER_KEYS = ("audio_token_id", "audio_start_token_id", "audio_end_token_id",
                 "user_token_id", "initializer_range")


def mrope_section(head_dim: int) -> list[int]:
    """[T, H, W] rotary sections, summing to head_dim/2 as the official rotary needs.

    The real model's proportions: [24, 20, 20] for head_dim 128, [6, 5, 5] for 32. (All
    three position rows are equal for ASR, so the sections never change the result.)
    """
    half = head_dim // 2
    hw = half * 5 // 16
    return [half - 2 * hw, hw, hw]


def _audio_config(size: str) -> dict:
    return {
        "model_type": "qwen3_asr_audio_encoder",
        "num_mel_bins": 128,
        **_AUDIO_SIZES[size],
        "n_window": 50,
        "n_window_infer": 800,
        "conv_chunksize": 500,
        "max_source_positions": 1500,
        "activation_function": "gelu",
        "scale_embedding": False,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "initializer_range": 0.02,
    }


def _text_config(size: str) -> dict:
    dims = _TEXT_SIZES[size]
    return {
        "model_type": "qwen3_asr_text",
        "vocab_size": VOCAB_SIZE,
        **dims,
        "hidden_act": "silu",
        "max_position_embeddings": 65536,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "rope_scaling": _rope_scaling(dims["head_dim"]),
        "tie_word_embeddings": True,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_cache": True,
        "initializer_range": 0.02,
    }


def _rope_scaling(head_dim: int) -> dict:
    # A dict, never null: the official rotary embedding calls rope_scaling.get(...).
    return {"mrope_section": mrope_section(head_dim), "interleaved": True,
            "mrope_interleaved": True, "rope_type": "default", "type": "default"}


def model_config_dict(size: str = "tiny", **overrides) -> dict:
    """The full config.json content for `size` ("tiny", "0.6b" or "1.7b").

    Overrides: `audio_config={...}` / `text_config={...}` / `thinker_config={...}` are
    merged into those sub-configs; a bare field name goes where it exists (e.g.
    `encoder_layers=4` to the audio config, `num_hidden_layers=3` to the text config,
    `audio_token_id=...` to the thinker, `support_languages=[...]` or
    `transformers_version="4.57.1"` (keeps the Qwen2 split regex under the official
    loader) to the top level).
    Changing the decoder width also changes the encoder's output_dim, and changing
    head_dim recomputes mrope_section, unless those are given too.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    audio, text = _audio_config(size), _text_config(size)
    thinker = {
        "model_type": "qwen3_asr_thinker",
        "audio_config": audio,
        "text_config": text,
        "audio_token_id": 151676,
        "audio_start_token_id": 151669,
        "audio_end_token_id": 151670,
        "user_token_id": 872,
        "initializer_range": 0.02,
    }
    # dtype only at the top level: a sub-config dtype overrides from_pretrained(dtype=...)
    # for that sub-model in transformers 4.57 (docs/model.md §1).
    config = {
        "architectures": ["Qwen3ASRForConditionalGeneration"],
        "model_type": "qwen3_asr",
        "support_languages": list(SUPPORTED_LANGUAGES),
        "thinker_config": thinker,
        "dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION,
    }

    audio_over, text_over = {}, {}
    for key, value in overrides.items():
        if key == "audio_config":
            audio_over.update(value)
        elif key == "text_config":
            text_over.update(value)
        elif key == "thinker_config":
            value = dict(value)
            audio_over.update(value.pop("audio_config", {}))
            text_over.update(value.pop("text_config", {}))
            thinker.update(value)
        elif key in _THINKER_KEYS:
            thinker[key] = value
        elif key in audio and key in text:
            raise ValueError(f"{key!r} is in both audio and text configs: pass "
                             f"audio_config={{...}} or text_config={{...}}")
        elif key in audio:
            audio_over[key] = value
        elif key in text:
            text_over[key] = value
        elif key in config:
            config[key] = value
        else:
            raise ValueError(f"unknown config field {key!r}")
    text.update(text_over)
    audio.update(audio_over)
    if "hidden_size" in text_over and "output_dim" not in audio_over:
        audio["output_dim"] = text["hidden_size"]
    if "head_dim" in text_over and "rope_scaling" not in text_over:
        text["rope_scaling"] = _rope_scaling(text["head_dim"])
    _validate(config)
    return config


def _validate(config: dict) -> None:
    audio = config["thinker_config"]["audio_config"]
    text = config["thinker_config"]["text_config"]
    problems = []
    if audio["d_model"] % audio["encoder_attention_heads"]:
        problems.append("audio d_model must be divisible by encoder_attention_heads")
    if (audio["d_model"] // audio["encoder_attention_heads"]) % 2 or audio["d_model"] % 2:
        problems.append("audio d_model must be even (sinusoid table)")
    if audio["output_dim"] != text["hidden_size"]:
        problems.append("audio output_dim must equal text hidden_size")
    if text["num_attention_heads"] % text["num_key_value_heads"]:
        problems.append("num_attention_heads must be a multiple of num_key_value_heads")
    if sum(text["rope_scaling"]["mrope_section"]) != text["head_dim"] // 2:
        problems.append("mrope_section must sum to head_dim/2")
    if problems:
        raise ValueError("; ".join(problems))


# ---------------------------------------------------------------------------------------
# Weights

def _conv_out_in_features(audio: dict) -> int:
    freq = audio["num_mel_bins"]
    for _ in range(3):  # three stride-2, pad-1, kernel-3 convs
        freq = (freq + 1) // 2
    return audio["downsample_hidden_size"] * freq


def weight_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the checkpoint, name -> PyTorch shape, in file order.

    Nothing is allocated: tests compare this against docs/model.md §2 for the real sizes.
    """
    thinker = config["thinker_config"]
    audio, text = thinker["audio_config"], thinker["text_config"]
    shapes: dict[str, tuple[int, ...]] = {}
    a = "thinker.audio_tower."
    d, ffn, ch = audio["d_model"], audio["encoder_ffn_dim"], audio["downsample_hidden_size"]
    shapes[a + "conv2d1.weight"] = (ch, 1, 3, 3)
    shapes[a + "conv2d1.bias"] = (ch,)
    for conv in ("conv2d2", "conv2d3"):
        shapes[a + conv + ".weight"] = (ch, ch, 3, 3)
        shapes[a + conv + ".bias"] = (ch,)
    shapes[a + "conv_out.weight"] = (d, _conv_out_in_features(audio))
    for i in range(audio["encoder_layers"]):
        p = f"{a}layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = (d, d)
            shapes[p + f"self_attn.{proj}.bias"] = (d,)
        shapes[p + "self_attn_layer_norm.weight"] = (d,)
        shapes[p + "self_attn_layer_norm.bias"] = (d,)
        shapes[p + "fc1.weight"] = (ffn, d)
        shapes[p + "fc1.bias"] = (ffn,)
        shapes[p + "fc2.weight"] = (d, ffn)
        shapes[p + "fc2.bias"] = (d,)
        shapes[p + "final_layer_norm.weight"] = (d,)
        shapes[p + "final_layer_norm.bias"] = (d,)
    shapes[a + "ln_post.weight"] = (d,)
    shapes[a + "ln_post.bias"] = (d,)
    shapes[a + "proj1.weight"] = (d, d)
    shapes[a + "proj1.bias"] = (d,)
    shapes[a + "proj2.weight"] = (audio["output_dim"], d)
    shapes[a + "proj2.bias"] = (audio["output_dim"],)

    m = "thinker.model."
    h, inter = text["hidden_size"], text["intermediate_size"]
    hd = text.get("head_dim") or h // text["num_attention_heads"]
    q_dim, kv_dim = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd
    bias = bool(text.get("attention_bias", False))
    shapes[m + "embed_tokens.weight"] = (text["vocab_size"], h)
    for i in range(text["num_hidden_layers"]):
        p = f"{m}layers.{i}."
        for proj, out_f, in_f in (("q_proj", q_dim, h), ("k_proj", kv_dim, h),
                                  ("v_proj", kv_dim, h), ("o_proj", h, q_dim)):
            shapes[p + f"self_attn.{proj}.weight"] = (out_f, in_f)
            if bias:
                shapes[p + f"self_attn.{proj}.bias"] = (out_f,)
        shapes[p + "self_attn.q_norm.weight"] = (hd,)
        shapes[p + "self_attn.k_norm.weight"] = (hd,)
        shapes[p + "mlp.gate_proj.weight"] = (inter, h)
        shapes[p + "mlp.up_proj.weight"] = (inter, h)
        shapes[p + "mlp.down_proj.weight"] = (h, inter)
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
    shapes[m + "norm.weight"] = (h,)
    # A forced aligner's head classifies timestamps (classify_num classes), not tokens.
    head_rows = thinker["classify_num"] if is_forced_aligner(config) else text["vocab_size"]
    shapes["thinker.lm_head.weight"] = (head_rows, h)
    return shapes


# Gains of the projections that write into a residual stream, on top of GPT-2's
# 1/sqrt(2*layers). In the decoder the MLP must dominate both the token embedding and the
# attention: with the lm_head tied, an embedding that survives to the last layer makes
# every token predict itself, and an attention-dominated state (an average over the
# audio) predicts one constant token. Tuned so greedy decoding of the tiny and the 0.6B
# shapes gives ~20 distinct tokens in 20 steps, audio-dependent from the first one.
_RESIDUAL_GAIN = {
    "self_attn.out_proj.weight": 1.0,   # audio encoder
    "fc2.weight": 1.0,                  # audio encoder
    "self_attn.o_proj.weight": 0.5,
    "mlp.down_proj.weight": 4.0,
}

BIAS_STD = 0.02
NORM_SPREAD = 0.05


def _init_spec(name: str, shape: tuple[int, ...], config: dict) -> tuple[str, float]:
    """How to draw one tensor: ("normal", std), ("norm", spread) or ("unit_rows", 1)."""
    thinker = config["thinker_config"]
    if len(shape) == 1 and name.endswith(".weight"):  # every 1-D weight is a norm's
        return "norm", NORM_SPREAD
    if name.endswith(".bias"):
        return "normal", BIAS_STD
    if name.endswith("embed_tokens.weight"):
        # Unit-norm rows (elements ~ 1/sqrt(hidden)): small next to the layers' outputs,
        # and equal norms leave no "hub" token that wins every argmax of the tied lm_head.
        return "unit_rows", 1.0
    std = 1.0 / math.sqrt(int(np.prod(shape[1:])))  # 1/sqrt(fan_in)
    for suffix, gain in _RESIDUAL_GAIN.items():
        if name.endswith(suffix):
            layers = (thinker["audio_config"]["encoder_layers"] if "audio_tower" in name
                      else thinker["text_config"]["num_hidden_layers"])
            std *= gain / math.sqrt(2 * layers)
            break
    return "normal", std


def _draw(name: str, shape: tuple[int, ...], spec: tuple[str, float], seed: int) -> np.ndarray:
    # One generator per tensor, keyed by name: a tensor's values depend only on the seed,
    # its name and shape, not on which other tensors the config has.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    kind, scale = spec
    if kind == "norm":
        return rng.uniform(1.0 - scale, 1.0 + scale, size=shape).astype(np.float32)
    out = rng.standard_normal(size=shape, dtype=np.float32)
    if kind == "unit_rows":
        out /= np.linalg.norm(out, axis=-1, keepdims=True)
    out *= np.float32(scale)
    return out


def random_weights(config: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 weights for `config`, PyTorch layout and names, deterministic in `seed`.

    thinker.lm_head.weight is embed_tokens (tied, as in the real model, which still stores
    both): the same array object, so a 0.6B model costs one vocabulary matrix, not two.
    A forced aligner's head is its own [classify_num, hidden] matrix.
    """
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(config).items():
        if name == "thinker.lm_head.weight" and not is_forced_aligner(config):
            weights[name] = weights["thinker.model.embed_tokens.weight"]
            continue
        weights[name] = _draw(name, shape, _init_spec(name, shape, config), seed)
    return weights


# ---------------------------------------------------------------------------------------
# Tokenizer files

# Built-in text for the synthesized BPE's merges: the words of the ASR prompt and output,
# the language names, and everyday sentences in several languages, so that common English
# words are single tokens as they are in the real vocabulary.
_BPE_TRAINING_TEXT = """\
system
user
assistant
language English
language Chinese
language English<asr_text>The quick brown fox jumps over the lazy dog.
And so, my fellow Americans: ask not what your country can do for you, ask what you can do for your country.
This is a test of the speech recognition system. Please transcribe what you hear, and nothing more.
Hello, how are you today? I am fine, thank you. The weather is nice and the sun is shining.
We will meet at the station at seven o'clock in the morning, and then we will take the train to the city.
She said that she would come back later, but she never did. They were waiting for a long time.
There is no time like the present. It was the best of times, it was the worst of times.
One, two, three, four, five, six, seven, eight, nine, ten. Zero 0 1 2 3 4 5 6 7 8 9 100 2024.
What do you think about this? I don't know. We can't say. It's been a long day, hasn't it?
Guten Morgen, wie geht es dir? Ich spreche ein bisschen Deutsch. Das Wetter ist heute schön.
Bonjour, comment allez-vous ? Je parle un peu français. Il fait beau aujourd'hui.
Hola, ¿cómo estás? Hablo un poco de español. Hoy hace buen tiempo.
Olá, como vai você? Eu falo um pouco de português. Buongiorno, come stai? Parlo un po' di italiano.
你好，今天天气很好。我们一起去公园吧。语音识别系统正在工作。
こんにちは、今日はいい天気ですね。音声認識のテストです。
안녕하세요, 오늘 날씨가 좋네요. Привет, как дела? Сегодня хорошая погода.
"""


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map; its order gives ids 0..255."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


# The Qwen2 pre-tokenizer split (transformers' Qwen2Tokenizer PRETOKENIZE_REGEX).
_QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
                r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


@lru_cache(maxsize=2)
def synthesize_bpe(extra_text: str = "", vocab_size: int = 4096) -> tuple[str, str]:
    """(vocab.json text, merges.txt text) of a byte-level BPE with exactly 151643 entries.

    Ids 0..255 are the GPT-2 byte symbols, then merges learned from a small built-in
    multilingual text (plus `extra_text`), then unreachable filler entries up to id
    151642, so that the added tokens land on their real ids. Deterministic.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    lines = (_BPE_TRAINING_TEXT + extra_text).splitlines(keepends=True)
    lines += [f"language {name}<asr_text>\n" for name in SUPPORTED_LANGUAGES]
    tok.train_from_iterator(lines * 3, trainer=trainer)
    trained = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in trained["merges"]]

    vocab: dict[str, int] = {}
    for ch in _bytes_to_unicode().values():
        vocab[ch] = len(vocab)
    for merge in merges:
        left, right = merge.split(" ")
        vocab.setdefault(left + right, len(vocab))
    # Fillers: no merge produces them, so encoding never yields them; decoding one (a
    # random model emits any id) gives a visible placeholder.
    n = len(vocab)
    while len(vocab) < REGULAR_VOCAB_SIZE:
        vocab[f"<unused{n}>"] = len(vocab)
        n += 1
    merges_text = "#version: 0.2\n" + "\n".join(merges) + "\n"
    return json.dumps(vocab, ensure_ascii=False), merges_text


def tokenizer_config_dict(added_tokens=ADDED_TOKENS) -> dict:
    added = {
        str(i): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                 "single_word": False, "special": special}
        for i, content, special in added_tokens
    }
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": [c for _, c, s in added_tokens if s and
                                      c not in ("<|endoftext|>", "<|im_end|>")],
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "extra_special_tokens": {
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
            "audio_token": "<|audio_pad|>",
        },
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "processor_class": "Qwen3ASRProcessor",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tokenizer_files(out_dir, source_dir=None, added_tokens=ADDED_TOKENS) -> None:
    """Write vocab.json, merges.txt, tokenizer_config.json, chat_template.json,
    preprocessor_config.json and generation_config.json into `out_dir`.

    source_dir: a folder with the real vocab.json + merges.txt to copy; None = the shared
    Qwen tokenizer if present, else synthesize; False = always synthesize.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source_dir is None and (SHARED_TOKENIZER_DIR / "vocab.json").is_file():
        source_dir = SHARED_TOKENIZER_DIR
    if source_dir:
        src = Path(source_dir)
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(src / name, out / name)
    else:
        vocab_text, merges_text = synthesize_bpe()
        (out / "vocab.json").write_text(vocab_text, encoding="utf-8")
        (out / "merges.txt").write_text(merges_text, encoding="utf-8")
    _write_json(out / "tokenizer_config.json", tokenizer_config_dict(added_tokens))
    _write_json(out / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _write_json(out / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    _write_json(out / "generation_config.json", GENERATION_CONFIG)


# ---------------------------------------------------------------------------------------
# Checkpoint

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def write_checkpoint(out_dir, config: dict, weights: dict[str, np.ndarray],
                     dtype: str = "bfloat16", max_shard_bytes: int | None = None,
                     tokenizer_source=None) -> Path:
    """Write a Hugging Face checkpoint directory and return its path.

    Tensors are stored in `dtype` ("bfloat16", "float16" or "float32"), config.json says
    so at the top level. With max_shard_bytes, tensors are packed in order into
    model-0000k-of-0000n.safetensors files of at most that size (a larger tensor gets a
    file of its own) plus model.safetensors.index.json. tokenizer_source: see
    write_tokenizer_files.
    """
    import mlx.core as mx

    if dtype not in _DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPE_BYTES)}, got {dtype!r}")
    expected = weight_shapes(config)
    missing = expected.keys() - weights.keys()
    unexpected = weights.keys() - expected.keys()
    if missing or unexpected:
        raise ValueError(f"weights do not match config: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != shape:
            raise ValueError(f"{name}: shape {tuple(weights[name].shape)}, config says {shape}")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # A rebuild in place must not leave an older layout's files (or a stale config) behind.
    for stale in ["config.json", "model.safetensors.index.json", *out.glob("model*.safetensors")]:
        (out / stale).unlink(missing_ok=True)
    write_tokenizer_files(out, tokenizer_source,
                          ADDED_TOKENS + ALIGNER_ADDED_TOKENS if is_forced_aligner(config) else ADDED_TOKENS)

    itemsize = _DTYPE_BYTES[dtype]
    names = list(expected)
    sizes = {n: int(np.prod(expected[n])) * itemsize for n in names}
    shards: list[list[str]] = [[]]
    used = 0
    for name in names:
        if max_shard_bytes and shards[-1] and used + sizes[name] > max_shard_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += sizes[name]

    mx_dtype = getattr(mx, dtype)
    metadata = {"format": "pt"}  # transformers refuses safetensors without it
    if max_shard_bytes is None:
        files = ["model.safetensors"]
    else:
        files = [f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors" for k in range(len(shards))]
    for file, shard in zip(files, shards):
        arrays = {}
        for name in shard:
            arr = mx.array(np.asarray(weights[name], dtype=np.float32)).astype(mx_dtype)
            mx.eval(arr)
            arrays[name] = arr
        mx.save_safetensors(str(out / file), arrays, metadata=metadata)
        del arrays
    if max_shard_bytes is not None:
        index = {
            "metadata": {"total_size": sum(sizes.values())},
            "weight_map": dict(sorted((name, file) for file, shard in zip(files, shards)
                                      for name in shard)),
        }
        _write_json(out / "model.safetensors.index.json", index)
    # config.json last: a directory with one is complete (bench reuses it by that test).
    config = copy.deepcopy(config)
    config["dtype"] = dtype
    config.pop("torch_dtype", None)
    _write_json(out / "config.json", config)
    return out


def build_random_checkpoint(out_dir, size: str = "tiny", seed: int = 0, dtype: str = "bfloat16",
                            max_shard_bytes=None, tokenizer_source=None, **overrides) -> Path:
    """model_config_dict + random_weights + write_checkpoint in one call."""
    config = model_config_dict(size, **overrides)
    weights = random_weights(config, seed)
    return write_checkpoint(out_dir, config, weights, dtype=dtype,
                            max_shard_bytes=max_shard_bytes, tokenizer_source=tokenizer_source)


# ---------------------------------------------------------------------------------------
# Qwen3-ForcedAligner

# The aligner is the ASR architecture with another head: `thinker.lm_head` maps the hidden
# state at each <timestamp> token to classify_num classes of timestamp_segment_time ms
# (modeling_qwen3_asr.py, "forced_aligner" in the thinker's model_type). Values from the
# published Qwen/Qwen3-ForcedAligner-0.6B config.json.
ALIGNER_VOCAB_SIZE = 152064
TIMESTAMP_TOKEN_ID = 151705
ALIGNER_ADDED_TOKENS: tuple[tuple[int, str, bool], ...] = ((TIMESTAMP_TOKEN_ID, "<timestamp>", True),)
ALIGNER_SIZES = ("tiny", "0.6b")
# The aligner's encoder is the 1.7B ASR's width (1024, 24 layers) projecting to 1024.
_ALIGNER_AUDIO_0_6B = dict(d_model=1024, encoder_layers=24, encoder_attention_heads=16,
                           encoder_ffn_dim=4096, output_dim=1024, downsample_hidden_size=480)


def is_forced_aligner(config: dict) -> bool:
    return "forced_aligner" in str(config.get("thinker_config", {}).get("model_type", ""))


def aligner_config_dict(size: str = "tiny", classify_num: int = 5000,
                        timestamp_segment_time: int = 80, **overrides) -> dict:
    """config.json of a Qwen3-ForcedAligner of `size` ("tiny" or "0.6b"); other keyword
    overrides as for `model_config_dict`."""
    if size not in ALIGNER_SIZES:
        raise ValueError(f"size must be one of {ALIGNER_SIZES}, got {size!r}")
    if size == "0.6b":
        overrides["audio_config"] = {**_ALIGNER_AUDIO_0_6B, **overrides.get("audio_config", {})}
    overrides["text_config"] = {"vocab_size": ALIGNER_VOCAB_SIZE, "tie_word_embeddings": False,
                                **overrides.get("text_config", {})}
    config = model_config_dict(size, **overrides)
    config["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    config["thinker_config"]["classify_num"] = classify_num
    config["timestamp_token_id"] = TIMESTAMP_TOKEN_ID
    config["timestamp_segment_time"] = timestamp_segment_time
    return config


def build_random_aligner(out_dir, size: str = "tiny", seed: int = 0, dtype: str = "bfloat16",
                         tokenizer_source=None, **overrides) -> Path:
    """aligner_config_dict + random_weights + write_checkpoint in one call."""
    config = aligner_config_dict(size, **overrides)
    return write_checkpoint(out_dir, config, random_weights(config, seed), dtype=dtype,
                            tokenizer_source=tokenizer_source)


def main(argv=None) -> int:
    """`python -m mlx_qwen_asr.testing.random_checkpoint OUT`: a random-weight model to try the
    pipeline (or benchmark it) with no download; its transcripts are gibberish by design."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mlx_qwen_asr.testing.random_checkpoint", description=main.__doc__)
    parser.add_argument("out", help="directory to write the checkpoint to")
    parser.add_argument("--size", default="tiny", choices=["tiny", "0.6b", "1.7b"])
    parser.add_argument("--aligner", action="store_true", help="a Qwen3-ForcedAligner checkpoint instead")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_random_aligner if args.aligner else build_random_checkpoint
    if args.aligner and args.size == "1.7b":
        parser.error("the forced aligner exists in tiny and 0.6b sizes")
    print(build(args.out, size=args.size, seed=args.seed, dtype=args.dtype))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
