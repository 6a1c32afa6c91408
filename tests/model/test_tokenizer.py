"""Our tokenizer (built with `tokenizers` from vocab/merges/added tokens) against the official
processor's (run out of process in the official engine's environment)."""

import json
import random
import shutil

import pytest
from mlx_qwen_asr.testing.official import OfficialTokenizer
from mlx_qwen_asr.model.tokenizer import QwenTokenizer

TEXTS = [
    "And so, my fellow Americans: ask not what your country can do for you.",
    "HelloWorld CamelCaseText iPhone XMLHttpRequest don't we'll I'M",
    "Numbers 1234567 and 3.14159, dates 2026-11-22, /usr/local/bin path",
    "甚至出现交易几乎停滞的情况。他说：“你好，世界！”",
    "Guten Tag! Über große Straßen fährt man schnell. ¿Qué tal? Ça va très bien.",
    "こんにちは、世界。カタカナとひらがな。 안녕하세요 여러분",
    "Привет, мир! Ελληνικά κείμενα. مرحبا بالعالم. नमस्ते दुनिया",
    "tabs\tand\nnew lines\r\n  double  spaces   end ",
    "emoji 🎉🚀 and combining e\u0301 vs \u00e9 (NFC)",
    "<|im_start|>system\nContext here<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\nlanguage English<asr_text>Text.<|im_end|>",
    "<non_speech> before <asr_text>after<|endoftext|>",
    "",
]


def _checkpoint_with_version(src, dst, version):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    config = json.loads((dst / "config.json").read_text())
    if version is None:
        config.pop("transformers_version", None)
    else:
        config["transformers_version"] = version
    (dst / "config.json").write_text(json.dumps(config))
    return dst, config


@pytest.fixture(scope="module", params=["4.57.6", "4.57.1", None], ids=["tf-4.57.6", "tf-4.57.1", "no-version"])
def tokenizer_pair(request, official_engine, tiny_checkpoint, tmp_path_factory):
    """(ours, official) for checkpoints whose config.json makes the official loader pick
    either split regex (see tokenizer._official_uses_fixed_regex)."""
    model_dir, config = _checkpoint_with_version(
        tiny_checkpoint, tmp_path_factory.mktemp("tok") / "model", request.param)
    official = OfficialTokenizer(model_dir)  # AutoProcessor(fix_mistral_regex=True).tokenizer
    return QwenTokenizer.from_model_dir(model_dir, config), official


@pytest.mark.parametrize("text", TEXTS)
def test_encode_matches_official(tokenizer_pair, text):
    ours, official = tokenizer_pair
    assert ours.encode(text) == official.encode(text, add_special_tokens=False)


def test_decode_matches_official_with_and_without_specials(tokenizer_pair):
    ours, official = tokenizer_pair
    rng = random.Random(0)
    special_ids = [151643, 151644, 151645, 151669, 151670, 151675, 151676, 151704]
    cases = [[rng.choice(special_ids) if rng.random() < 0.2 else rng.randrange(151643) for _ in range(rng.randint(1, 40))]
             for _ in range(50)]
    for skip in (True, False):
        expected = official.decode_many(cases, skip_special_tokens=skip, clean_up_tokenization_spaces=False)
        for ids, text in zip(cases, expected):
            assert ours.decode(ids, skip_special_tokens=skip) == text


def test_special_token_ids(tiny_checkpoint):
    tokenizer = QwenTokenizer.from_model_dir(tiny_checkpoint, json.loads((tiny_checkpoint / "config.json").read_text()))
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|audio_start|>": 151669,
                "<|audio_end|>": 151670, "<|audio_pad|>": 151676, "<asr_text>": 151704}
    assert {token: tokenizer.token_to_id(token) for token in expected} == expected
    # <asr_text> is not special: decoding keeps it, as the official output parser relies on.
    assert tokenizer.decode([151704], skip_special_tokens=True) == "<asr_text>"


def test_synthesized_tokenizer_matches_official(official_engine, synthetic_tokenizer_checkpoint):
    """The fallback vocabulary built when ../shared is absent behaves identically too."""
    config = json.loads((synthetic_tokenizer_checkpoint / "config.json").read_text())
    ours = QwenTokenizer.from_model_dir(synthetic_tokenizer_checkpoint, config)
    official = OfficialTokenizer(synthetic_tokenizer_checkpoint)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == official.encode(text, add_special_tokens=False)
        assert ours.decode(ids, skip_special_tokens=False) == official.decode(ids, skip_special_tokens=False)
