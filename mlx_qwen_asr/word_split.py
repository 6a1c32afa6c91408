"""Transcript -> the units Qwen3-ForcedAligner times, as the official aligner splits them.

Follows `Qwen3ForceAlignProcessor.encode_timestamp` of the official package
(`inference/qwen3_forced_aligner.py`):

* every unit keeps only letters, digits (Unicode categories L*, N*) and the apostrophe:
  punctuation is dropped, and a unit left empty disappears;
* Japanese: the words of the `nagisa` tagger;
* Korean: whitespace tokens split by `soynlp`'s LTokenizer into a leading dictionary word
  and the rest, with the official word list (every entry scored 1.0);
* any other language (or none): whitespace tokens, with each CJK ideograph a unit of its
  own and the runs between ideographs (Latin, digits, kana, Hangul) kept whole.

`nagisa` and `soynlp` are optional (`pip install "mlx-qwen-asr[timestamps-ja-ko]"`) and
imported only when Japanese or Korean text is split.
"""

from __future__ import annotations

import importlib.util
import os
import unicodedata
from functools import lru_cache
from pathlib import Path

from .errors import QwenASRError

KOREAN_DICT_ENV = "MLX_QWEN_ASR_KOREAN_DICT"
KOREAN_DICT_NAME = "korean_dict_jieba.dict"

# The ideograph blocks the official `is_cjk_char` lists: the Unified Ideographs, extensions
# A-E and the compatibility ideographs. Kana and Hangul are not among them.
_CJK_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF),
)


class WordSplitError(QwenASRError):
    """A language's word splitter is not installed (Japanese, Korean)."""


def is_kept_char(ch: str) -> bool:
    return ch == "'" or unicodedata.category(ch)[0] in "LN"


def clean(token: str) -> str:
    """`token` without the characters the aligner never sees (punctuation, symbols, marks)."""
    return "".join(ch for ch in token if is_kept_char(ch))


def is_cjk_ideograph(ch: str) -> bool:
    """An ideograph of the official aligner's blocks: a unit of its own when words are split."""
    code = ord(ch)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def is_cjk_script(ch: str) -> bool:
    """Any CJK character by its Unicode name (ideographs, kana, Hangul, fullwidth forms,
    ideographic punctuation): texts are joined without a space next to one
    (`results.join_texts`), and subtitle lines may break at one (`writers.wrap`)."""
    name = unicodedata.name(ch, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "FULLWIDTH", "IDEOGRAPHIC"))


def _split_ideographs(token: str) -> list[str]:
    """'abc中文de' -> ['abc', '中', '文', 'de']."""
    units: list[str] = []
    run = ""
    for ch in token:
        if is_cjk_ideograph(ch):
            if run:
                units.append(run)
                run = ""
            units.append(ch)
        else:
            run += ch
    if run:
        units.append(run)
    return units


def split_space_delimited(text: str) -> list[str]:
    units: list[str] = []
    for token in text.split():
        token = clean(token)
        if token:
            units.extend(_split_ideographs(token))
    return units


def split_japanese(text: str) -> list[str]:
    try:
        import nagisa
    except ImportError:
        raise WordSplitError(
            "Japanese word timestamps need the nagisa tokenizer: "
            'pip install "mlx-qwen-asr[timestamps-ja-ko]" (or pip install nagisa)') from None
    return [w for w in (clean(word) for word in nagisa.tagging(text).words) if w]


def split_korean(text: str) -> list[str]:
    return [w for w in (clean(word) for word in _korean_tokenizer().tokenize(text)) if w]


def split_words(text: str, language: str | None = None) -> list[str]:
    """The aligner's units of `text` for `language` (a name such as "English"; case ignored)."""
    name = (language or "").strip().lower()
    if name == "japanese":
        return split_japanese(text)
    if name == "korean":
        return split_korean(text)
    return split_space_delimited(text)


def korean_dictionary_path() -> Path:
    """The official Korean word list: $MLX_QWEN_ASR_KOREAN_DICT, else the copy inside an
    installed `qwen-asr` package (found without importing it)."""
    configured = os.environ.get(KOREAN_DICT_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise WordSplitError(f"{KOREAN_DICT_ENV}={configured}: no such file")
        return path
    spec = importlib.util.find_spec("qwen_asr")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "inference" / "assets" / KOREAN_DICT_NAME
        if path.is_file():
            return path
    raise WordSplitError(
        "Korean word timestamps split words with the official aligner's Korean word list "
        f"({KOREAN_DICT_NAME}), which ships in the qwen-asr package: pip install --no-deps qwen-asr "
        f"(a small wheel), or point {KOREAN_DICT_ENV} at a copy of the file")


@lru_cache(maxsize=1)
def _korean_tokenizer():
    try:
        from soynlp.tokenizer import LTokenizer
    except ImportError:
        raise WordSplitError(
            "Korean word timestamps need the soynlp tokenizer: "
            'pip install "mlx-qwen-asr[timestamps-ja-ko]" (or pip install soynlp)') from None
    scores = {}
    with open(korean_dictionary_path(), encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields:
                scores[fields[0]] = 1.0
    return LTokenizer(scores=scores)


def locate_units(text: str, units: list[str]) -> list[tuple[int, int] | None]:
    """[begin, end) character span of each unit in `text`, units taken in order.

    Units are `text` with characters deleted and cut into pieces, so each one is matched
    as the earliest in-order occurrence of its characters after the previous unit; a unit
    a tokenizer altered (not found) gets None.
    """
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for unit in units:
        pos, begin = cursor, None
        for ch in unit:
            pos = text.find(ch, pos)
            if pos < 0:
                break
            begin = pos if begin is None else begin
            pos += 1
        if pos < 0 or begin is None:
            spans.append(None)
            continue
        spans.append((begin, pos))
        cursor = pos
    return spans
