"""The text of a stream and its word times: closed regions' archived text, the current
region's text from its tokens (language header removed), and committed words timed by the
forced aligner."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..prompt import ASR_TEXT_TAG, parse_output, strip_markup
from ..results import join_texts


class StreamText:
    """Archived text plus the current region's text, read from tokens."""

    def __init__(self, tokenizer, language: str | None):
        self.tokenizer = tokenizer
        self.language = language        # forced language, or None (then read from the header)
        self.archived = ""              # text of closed regions
        self.continues = False          # the region's text continues the archived text mid-sentence
        self.language_found = ""

    def body(self, tokens: list[int]) -> str:
        """Raw text after the language header, as decoded (leading spaces kept, so pieces of one
        region concatenate exactly), markup in it removed as offline (prompt.strip_markup).
        Unlike offline parsing, long repetitions are not collapsed: that would rewrite text
        already committed."""
        raw = self.tokenizer.decode(tokens)
        if self.language is not None:
            return strip_markup(raw)
        if ASR_TEXT_TAG not in raw:
            return ""
        meta, text = raw.split(ASR_TEXT_TAG, 1)
        language, _ = parse_output(meta + ASR_TEXT_TAG)
        if language:
            self.language_found = language
        return strip_markup(text)

    def joined(self, tokens: list[int]) -> str:
        """The archived text followed by the region's text of `tokens`."""
        body = self.body(tokens)
        if self.continues:
            return self.archived + body
        return join_texts([self.archived, body])

    def header_length(self, tokens: list[int]) -> int:
        """Tokens of the "language X<asr_text>" header at the start (0 when the language is forced)."""
        if self.language is not None:
            return 0
        tag = self.tokenizer.token_to_id(ASR_TEXT_TAG)
        return tokens.index(tag) + 1 if tag in tokens else 0

    def committable(self, tokens: list[int]) -> list[int]:
        """`tokens` less a UTF-8 character cut in half at their end; none while the language
        header is not complete."""
        while tokens and self.tokenizer.decode(tokens).endswith("\ufffd"):
            tokens = tokens[:-1]
        if self.language is None and ASR_TEXT_TAG not in self.tokenizer.decode(tokens):
            return []
        return tokens

    def whole_characters(self, tokens: list[int], split: int) -> int:
        """`split`, moved on past a UTF-8 character that tokens[:split] would cut in half."""
        while split < len(tokens) and self.tokenizer.decode(tokens[:split]).endswith("\ufffd"):
            split += 1
        return split

    def archive(self, tokens: list[int], continues: bool) -> None:
        """A region closes with `tokens` as its text; the next one `continues` it mid-sentence or not."""
        self.archived = self.joined(tokens)
        self.continues = continues

    @property
    def language_name(self) -> str | None:
        return self.language or self.language_found or None


class StreamWords:
    """Word times of committed text: re-aligned within the region whenever it grows (the
    region is bounded, so this cost is flat too); closed regions keep theirs."""

    def __init__(self, aligner, text: StreamText):
        self.aligner, self.text = aligner, text
        self.archived: list = []
        self.region: list = []
        self.aligned_tokens: list[int] = []

    def all(self) -> list:
        return self.archived + self.region

    def align_region(self, tokens: list[int], audio: np.ndarray, offset: float) -> None:
        if tokens == self.aligned_tokens:
            return
        self.region = self.timed(tokens, audio, offset)
        self.aligned_tokens = list(tokens)

    def close_region(self, tokens: list[int], audio: np.ndarray, offset: float) -> None:
        self.archived += self.timed(tokens, audio, offset)
        self.region, self.aligned_tokens = [], []

    def timed(self, tokens: list[int], audio: np.ndarray, offset: float) -> list:
        """Words of `tokens`' text timed in `audio` (which starts `offset` s into the stream)."""
        text = self.text.body(tokens).strip()
        if not text or not len(audio):
            return []
        words = self.aligner.align_samples(audio, text, self.text.language_name)
        return [replace(w, start=w.start + offset, end=w.end + offset) for w in words]
