"""Response bodies of the OpenAI audio API, and its `language` field read as our languages."""

from __future__ import annotations

from ...aligner import WordTiming
from ...confidence import text_token_logprobs
from ...errors import LanguageError
from ...languages import normalize_language
from ...results import FINISH_EOS, Segment, Transcription
from ...writers import to_string

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
# Formats with times, which take timestamp_granularities.
TIMED_FORMATS = ("verbose_json", "srt", "vtt")


def language_name(code):
    """The API's `language` as TranscribeOptions takes it: a code or name ('en', 'yue', 'English')
    -> the official name; a language set ("en,zh", or a list) -> a list of them, which the
    model chooses from. What no table knows passes through: TranscribeOptions refuses it,
    naming it as it was given."""
    if isinstance(code, (list, tuple)):
        return [language_name(item) for item in code]
    if code is None or not str(code).strip():
        return None
    code = str(code)
    if "," in code:
        return [language_name(item) for item in code.split(",") if item.strip()]
    try:
        return normalize_language(code)
    except LanguageError:
        return code.strip()


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


def wants_words(fmt: str, granularities: set) -> bool:
    """Whether a request's words are timed. srt and vtt are word-timed, as the CLI's are,
    unless the granularities ask for segments only (the CLI's --no-timestamps);
    verbose_json has words when "word" is asked for."""
    if fmt in ("srt", "vtt"):
        return granularities != {"segment"}
    return "word" in granularities


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


def subtitles_of_verbose_json(body: dict, fmt: str) -> str:
    """srt or vtt of a verbose_json body (the page's downloads): the same cues as the
    transcription it was made from gives, to the millisecond its times are rounded to."""
    if fmt not in ("srt", "vtt"):
        raise ValueError(f"format must be srt or vtt, got {fmt!r}")
    segments = [Segment(float(s["start"]), float(s["end"]), str(s["text"]), "", str(s.get("finish_reason", FINISH_EOS)))
                for s in body["segments"]]
    words = body.get("words")
    if words is not None:
        timed = [WordTiming(str(w["word"]), float(w["start"]), float(w["end"])) for w in words]
        if segments:
            segments[0].words = timed   # cues are built from the words in order, across segments
            for segment in segments[1:]:
                segment.words = []
        else:
            segments = [Segment(0.0, 0.0, "", "", FINISH_EOS, words=timed)]
    duration = float(body.get("duration", 0.0))
    return to_string(Transcription.from_segments(segments, duration, {}), fmt)
