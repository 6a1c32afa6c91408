"""Response bodies of the OpenAI audio API and the language codes it takes."""

from __future__ import annotations

from ..results import Transcription
from ..writers import to_string

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")

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


def language_name(code: str | None) -> str | None:
    """'en' -> 'English'; a full name passes through (prompt.normalize_language checks it)."""
    if code is None or not code.strip():
        return None
    return ISO_LANGUAGES.get(code.strip().lower(), code.strip())


def usage(result: Transcription) -> dict:
    return {"type": "duration", "seconds": round(result.duration, 3)}


def json_body(result: Transcription) -> dict:
    return {"text": result.text, "usage": usage(result)}


def verbose_json_body(result: Transcription, words: bool) -> dict:
    """OpenAI's verbose_json. Fields the model does not compute (avg_logprob,
    compression_ratio, no_speech_prob) are left out rather than made up; finish_reason is ours."""
    body = {
        "task": "transcribe",
        "language": (result.language or "").lower(),
        "duration": round(result.duration, 3),
        "text": result.text,
        "segments": [
            {"id": i, "seek": int(round(s.start * 100)), "start": round(s.start, 3), "end": round(s.end, 3),
             "text": s.text, "tokens": list(s.tokens), "temperature": 0.0, "finish_reason": s.finish_reason}
            for i, s in enumerate(result.segments) if s.text
        ],
        "usage": usage(result),
    }
    if words:
        body["words"] = [{"word": text, "start": round(start, 3), "end": round(end, 3)}
                         for s in result.segments for start, end, text in s.word_items()]
    return body


def subtitles(result: Transcription, fmt: str) -> str:
    """srt or vtt, exactly as the CLI writes them."""
    return to_string(result, fmt)
