"""The Qwen2 byte-level BPE tokenizer, built with `tokenizers` from a checkpoint's files.

Reads vocab.json, merges.txt and tokenizer_config.json's added tokens, and assembles the
same pipeline transformers' Qwen2Converter builds (NFC, Qwen2 split regex, byte-level BPE),
so ids and text match the official processor's tokenizer exactly. A tokenizer.json, when a
checkpoint has one, is used as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import ModelLoadError

QWEN2_SPLIT_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# The regex transformers 4.57.3+ substitutes when a processor is loaded with
# fix_mistral_regex=True, as the official Qwen3-ASR loader does (see `_official_uses_fixed_regex`).
MISTRAL_FIXED_SPLIT_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _official_uses_fixed_regex(config: dict) -> bool:
    """Whether the official loader swaps in the "fixed Mistral" split regex for this checkpoint.

    transformers 4.57.6 (`_patch_mistral_regex`) keeps the Qwen2 regex only when config.json
    records transformers_version <= 4.57.2 (for a non-Mistral model_type) or >= 5.0; any other
    version, or none, gets the substitute because the official loader passes
    fix_mistral_regex=True. We reproduce that so prompts with context text tokenize identically.
    """
    version = config.get("transformers_version")
    if not version:
        return True
    parsed = _version_tuple(str(version))
    if parsed <= (4, 57, 2):
        return config.get("model_type") in ("mistral", "mistral3", "voxtral", "ministral", "pixtral")
    return parsed < (5, 0, 0)


def _split_regex_for(config: dict) -> str:
    return MISTRAL_FIXED_SPLIT_REGEX if _official_uses_fixed_regex(config) else QWEN2_SPLIT_REGEX


def _added_tokens(tokenizer_config: dict) -> list[tuple[int, AddedToken]]:
    decoder = tokenizer_config.get("added_tokens_decoder") or {}
    tokens = []
    for token_id, spec in decoder.items():
        tokens.append((int(token_id), AddedToken(
            spec["content"],
            single_word=spec.get("single_word", False),
            lstrip=spec.get("lstrip", False),
            rstrip=spec.get("rstrip", False),
            normalized=spec.get("normalized", False),
            special=spec.get("special", True),
        )))
    return sorted(tokens, key=lambda item: item[0])


def _build_from_vocab(model_dir: Path, config: dict) -> Tokenizer:
    vocab_path, merges_path = model_dir / "vocab.json", model_dir / "merges.txt"
    for path in (vocab_path, merges_path):
        if not path.is_file():
            raise ModelLoadError(f"{model_dir} has no {path.name}: the tokenizer needs vocab.json and merges.txt")
    try:
        bpe = models.BPE.from_file(str(vocab_path), str(merges_path), unk_token=None,
                                   continuing_subword_prefix="", end_of_word_suffix="",
                                   fuse_unk=False, byte_fallback=False)
    except Exception as exc:  # tokenizers raises plain Exception on unreadable files
        raise ModelLoadError(f"cannot read the tokenizer files in {model_dir}: {exc}") from None
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_split_regex_for(config)), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)

    tokenizer_config_path = model_dir / "tokenizer_config.json"
    if not tokenizer_config_path.is_file():
        raise ModelLoadError(f"{model_dir} has no tokenizer_config.json (it lists the special tokens)")
    try:
        tokenizer_config = json.loads(tokenizer_config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{tokenizer_config_path} is not valid JSON: {exc}") from None
    # Added tokens take the next free ids in order, so adding them sorted by id reproduces
    # the checkpoint's numbering; a gap would shift every later id, which we refuse. One
    # add_tokens call for all of them: each call rebuilds the added-token matcher.
    added = [(token_id, token) for token_id, token in _added_tokens(tokenizer_config)
             if tokenizer.token_to_id(token.content) is None]
    first = tokenizer.get_vocab_size(with_added_tokens=True)
    for position, (token_id, token) in enumerate(added):
        if token_id != first + position:
            raise ModelLoadError(f"tokenizer_config.json: added token {token.content!r} has id {token_id}, "
                                 f"but it would get id {first + position} (ids must follow the vocabulary without gaps)")
    tokenizer.add_tokens([token for _, token in added])
    return tokenizer


class QwenTokenizer:
    """Text <-> ids for Qwen3-ASR prompts and outputs."""

    def __init__(self, tokenizer: Tokenizer):
        self._tokenizer = tokenizer

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, config: dict | None = None) -> "QwenTokenizer":
        model_dir = Path(model_dir)
        if (model_dir / "tokenizer.json").is_file():
            return cls(Tokenizer.from_file(str(model_dir / "tokenizer.json")))
        return cls(_build_from_vocab(model_dir, config or {}))

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(token_id)
