"""Response bodies of the OpenAI audio API and the language codes it takes."""

from __future__ import annotations

from ..confidence import text_token_logprobs
from ..results import Transcription
from ..writers import to_string

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")

# ISO-639-1 codes (the API's `language`) of the languages Qwen3-ASR names; Cantonese and
# Filipino have none, so their ISO-639-3 codes are taken too. Full names work as well.
ISO_LANGUAGES = {
    "zh": "Chinese", "en": "English", "yue": "Cantonese", "ar": "Arabic", "de": "German", "fr": "French",
    "es": "Spanish", "pt": "Portuguese", "id": "Indonesian", "it": "Italian", "ko": "Korean", "ru": "Russian",
    "th": "Thai", "vi": "Vietnamese", "ja": "Japanese", "tr": "Turkish", "hi": "Hindi", "ms": "Malay",
    "nl": "Dutch", "sv": "Swedish", "da": "Danish", "fi": "Finnish", "pl": "Polish", "cs": "Czech",
    "tl": "Filipino", "fil": "Filipino", "fa": "Persian", "el": "Greek", "ro": "Romanian", "hu": "Hungarian",
    "mk": "Macedonian",
}


def language_name(code):
    """'en' -> 'English'; a full name passes through (prompt.normalize_language checks it); a
    language set ("en,zh", or a list) -> a list of them, which the model chooses from."""
    if isinstance(code, (list, tuple)):
        return [language_name(item) for item in code]
    if code is None or not str(code).strip():
        return None
    code = str(code)
    if "," in code:
        return [language_name(item) for item in code.split(",") if item.strip()]
    return ISO_LANGUAGES.get(code.strip().lower(), code.strip())


def usage(result: Transcription) -> dict:
    return {"type": "duration", "seconds": round(result.duration, 3)}


def json_body(result: Transcription) -> dict:
    return {"text": result.text, "usage": usage(result)}


def verbose_json_body(result: Transcription, words: bool) -> dict:
    """OpenAI's verbose_json, with Whisper's avg_logprob and no_speech_prob per segment (and
    a timed word's probability). compression_ratio, which the model does not compute, is left
    out rather than made up; finish_reason is ours."""
    body = {
        "task": "transcribe",
        "language": (result.language or "").lower(),
        "duration": round(result.duration, 3),
        "text": result.text,
        "segments": [
            {"id": i, "seek": int(round(s.start * 100)), "start": round(s.start, 3), "end": round(s.end, 3),
             "text": s.text, "tokens": list(s.tokens), "temperature": 0.0,
             "avg_logprob": _rounded(s.avg_logprob), "no_speech_prob": _rounded(s.no_speech_prob),
             "finish_reason": s.finish_reason}
            for i, s in enumerate(result.segments) if s.text
        ],
        "usage": usage(result),
    }
    if words:
        body["words"] = [{"word": text, "start": round(start, 3), "end": round(end, 3),
                          **({"probability": _rounded(w.probability)} if w.probability is not None else {})}
                         for s in result.segments for (start, end, text), w in zip(s.word_items(), s.words or [])]
    return body


def logprobs_body(result: Transcription, tokenizer) -> list[dict]:
    """OpenAI's `logprobs` (asked for with include[]=logprobs): each text token's text, its
    log-probability and its UTF-8 bytes."""
    return [{"token": text, "logprob": _rounded(logprob), "bytes": list(text.encode("utf-8"))}
            for s in result.segments for text, logprob in text_token_logprobs(tokenizer, s)]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def subtitles(result: Transcription, fmt: str) -> str:
    """srt or vtt, exactly as the CLI writes them."""
    return to_string(result, fmt)
