"""The official Qwen3-ASR prompt, language names, and parsing of the model's raw output.

Mirrors `Qwen3ASRModel._build_text_prompt` and `utils.parse_asr_output` of the official
package (docs/model.md §6). `transcript_text` goes one step further than the official
parser on purpose: it removes model markup left anywhere in the text.
"""

from __future__ import annotations

import re

from .languages import normalize_language  # noqa: F401 (re-exported: the name prompt users import)
from .results import join_texts

ASR_TEXT_TAG = "<asr_text>"
AUDIO_PAD = "<|audio_pad|>"
LANGUAGE_WORD = "language"
NO_SPEECH_NAME = " None"     # the model writes "language None<asr_text>" for no speech
_LANGUAGE_PREFIX = "language "
REPETITION_THRESHOLD = 20
# Markup the model writes that is not speech: a language header (also mid-text, where the
# model starts a transcript over), the tag alone, the non-speech marker, chat tokens.
_MARKUP = re.compile(r"language [A-Za-z]+\s*<asr_text>|<asr_text>|<non_speech>|<\|[a-z_]+\|>")


def prompt_text(num_audio_tokens: int, context: str = "", language: str | None = None) -> str:
    """The chat-templated prompt with the audio placeholder expanded to `num_audio_tokens` pads."""
    text = (
        f"<|im_start|>system\n{context or ''}<|im_end|>\n"
        f"<|im_start|>user\n<|audio_start|>{AUDIO_PAD * num_audio_tokens}<|audio_end|><|im_end|>\n"
        f"<|im_start|>assistant\n"
    )
    if language:
        text += f"language {language}{ASR_TEXT_TAG}"
    return text


def _collapse_char_runs(text: str, threshold: int) -> str:
    out, i = [], 0
    while i < len(text):
        run = 1
        while i + run < len(text) and text[i + run] == text[i]:
            run += 1
        out.append(text[i] if run > threshold else text[i:i + run])
        i += run
    return "".join(out)


def _collapse_pattern_repeats(text: str, threshold: int, max_len: int = 20) -> str:
    # Iterative form of the official recursive `fix_pattern_repeats`: scan for the first
    # position where a pattern of length <= max_len repeats `threshold` times, keep one
    # copy, drop the whole run, and continue after it.
    out = []
    while len(text) >= threshold * 2:
        found = False
        for i in range(len(text) - threshold * 2 + 1):
            for k in range(1, max_len + 1):
                if i + k * threshold > len(text):
                    break
                pattern = text[i:i + k]
                if all(text[i + r * k: i + r * k + k] == pattern for r in range(1, threshold)):
                    end = i + threshold * k
                    while end + k <= len(text) and text[end:end + k] == pattern:
                        end += k
                    out.append(text[:i])
                    out.append(pattern)
                    text = text[end:]
                    found = True
                    break
            if found:
                break
        if not found:
            break
    out.append(text)
    return "".join(out)


def fix_repetitions(text: str, threshold: int = REPETITION_THRESHOLD) -> str:
    """`detect_and_fix_repetitions` of the official code."""
    return _collapse_pattern_repeats(_collapse_char_runs(text, threshold), threshold)


def parse_output(raw: str, forced_language: str | None = None) -> tuple[str, str]:
    """Raw decoded output -> (language, text), as `utils.parse_asr_output`."""
    if raw is None:
        return "", ""
    text = str(raw).strip()
    if not text:
        return "", ""
    text = fix_repetitions(text)
    if forced_language:
        return forced_language, text
    if ASR_TEXT_TAG not in text:
        return "", text.strip()
    meta, body = text.split(ASR_TEXT_TAG, 1)
    if "language none" in meta.lower():
        return "", body.strip()
    language = ""
    for line in meta.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.lower().startswith(_LANGUAGE_PREFIX):
            value = line[len(_LANGUAGE_PREFIX):].strip()
            if value:
                language = value[:1].upper() + value[1:].lower()
            break
    return language, body.strip()


def strip_markup(text: str) -> str:
    """`text` without model markup; the pieces around it joined as segments are (a space,
    none next to CJK). Text without markup is returned unchanged."""
    if not _MARKUP.search(text):
        return text
    return join_texts(_MARKUP.split(text))


def transcript_text(raw: str, forced_language: str | None = None) -> tuple[str, str]:
    """(language, text) for users: `parse_output`, then markup left in the text removed. The
    official parser splits at the first `<asr_text>` only and keeps a second header
    ("...thirdlanguage English<asr_text>third") in the text; this is a deliberate difference."""
    language, text = parse_output(raw, forced_language)
    return language, strip_markup(text)
