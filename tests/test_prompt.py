"""Prompt text, language names and output parsing, checked against the official functions."""

import random

import pytest

from mlx_qwen_asr.model.config import SUPPORTED_LANGUAGES
from mlx_qwen_asr.errors import LanguageError
from mlx_qwen_asr.prompt import fix_repetitions, normalize_language, parse_output, prompt_text, transcript_text

from mlx_qwen_asr.testing import official  # qwen_asr.inference.utils, out of process


def test_supported_languages_match_official(official_engine):
    assert list(SUPPORTED_LANGUAGES) == official.supported_languages()


def test_language_names_normalise_and_unknown_lists_options():
    assert normalize_language("eNGLISH") == "English"
    assert normalize_language(None) is None
    assert normalize_language("  ") is None
    with pytest.raises(LanguageError) as info:
        normalize_language("Klingon")
    message = str(info.value)
    assert "Klingon" in message and "English" in message and "Macedonian" in message


def _random_repetitive_text(rng: random.Random) -> str:
    alphabet = "ab c,的了"
    parts = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        if kind < 0.4:
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))))
        elif kind < 0.7:
            parts.append(rng.choice(alphabet) * rng.randint(15, 45))
        else:
            pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 22)))
            parts.append(pattern * rng.randint(15, 30))
    return "".join(parts)


def test_fix_repetitions_equals_official_on_random_text(official_engine):
    rng = random.Random(0)
    texts = [_random_repetitive_text(rng) for _ in range(400)]
    for text, expected in zip(texts, official.fix_repetitions(texts)):
        assert fix_repetitions(text) == expected, text


@pytest.mark.parametrize("raw", [
    "language English<asr_text>Hello world.",
    "language None<asr_text>",
    "language none<asr_text>  stray text ",
    "language chinese\nextra<asr_text>你好",
    "no tag at all",
    "  ",
    "language English<asr_text>" + "ha" * 40,
    "<asr_text>text without language",
])
def test_parse_output_equals_official(official_engine, raw):
    assert parse_output(raw) == official.parse_output(raw)
    assert parse_output(raw, "German") == official.parse_output(raw, user_language="German")
    # Without markup past the header, the users' text is the official parser's too.
    assert transcript_text(raw) == official.parse_output(raw)


@pytest.mark.parametrize("raw, expected", [
    # A second header mid-text, the model starting over: the official parser splits at the
    # first tag only and keeps the rest.
    ("language English<asr_text>one two thirdlanguage English<asr_text>third<asr_text>four",
     "one two third third four"),
    ("language Chinese<asr_text>你好language Chinese<asr_text>世界", "你好世界"),
    ("language English<asr_text>before <non_speech> after", "before after"),
])
def test_transcript_text_removes_markup_the_official_parser_keeps(official_engine, raw, expected):
    language, text = official.parse_output(raw)
    assert "<" in text   # the official text still has markup: the difference is deliberate
    assert transcript_text(raw) == (language, expected)
    forced_language, forced_text = official.parse_output(raw, user_language="German")
    assert "language English<asr_text>" in forced_text or "<" in forced_text
    assert transcript_text(raw, "German") == (forced_language, transcript_text(forced_text)[1])


def test_prompt_text_layout():
    text = prompt_text(3, context="Names: Qwen", language="English")
    assert text == (
        "<|im_start|>system\nNames: Qwen<|im_end|>\n<|im_start|>user\n<|audio_start|>"
        "<|audio_pad|><|audio_pad|><|audio_pad|><|audio_end|><|im_end|>\n<|im_start|>assistant\n"
        "language English<asr_text>"
    )
