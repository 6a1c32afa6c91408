"""The transcription request: its form fields parsed into a TranscriptionRequest, and the
API's errors. A bad field is one ApiError naming it (400 unless said otherwise), found
before any audio is read; the fields are checked in a fixed order, so a request with two
bad fields always hears of the same one."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile

from ...errors import QwenASRError
from ...limits import check_context
from ...options import TranscribeOptions
from ...speakers.options import DiarizeOptions
from . import formats
from .diarized import DiarizeRequestError, diarize_options

STOPPING = "the server is stopping"   # the 503 of requests refused by a shutdown (main.py)


class ApiError(Exception):
    """An error the client gets in OpenAI's shape (app.error_response writes it)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type, self.headers = (
            status, message, param, code, type_, headers or {})


@dataclass(frozen=True)
class TranscriptionRequest:
    """A checked POST /v1/audio/transcriptions. temperature (only 0 is served) and the
    timestamp granularities (folded into `words`) need no field of their own."""

    file: UploadFile
    response_format: str
    stream: bool
    words: bool                     # word times in the response
    logprobs: bool                  # include[]=logprobs
    diarize: DiarizeOptions | None  # response_format=diarized_json
    options: TranscribeOptions      # the server's defaults with the request's language and prompt


def parse_transcription(form: FormData, defaults: TranscribeOptions, tokenizer) -> TranscriptionRequest:
    """The request of a transcription form, or ApiError for its first bad field. Blocking (it
    reads the known speakers' clips and may tokenize the prompt): run it in a thread."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "the 'file' field (the audio, as a multipart file) is missing", param="file")
    if not form.get("model"):
        raise ApiError(400, "the 'model' field is missing", param="model")
    fmt = _response_format(form)
    _check_temperature(form)
    granularities = _granularities(form, fmt)
    stream = str(form.get("stream") or "false").lower() in ("true", "1")
    if stream and fmt not in ("json", "text"):
        raise ApiError(400, "stream=true sends text events; use response_format json or text", param="stream")
    words = formats.wants_words(fmt, granularities)
    logprobs = _wants_logprobs(form, fmt, stream)
    diarize = _diarize(form) if fmt == "diarized_json" else None
    try:
        options = TranscribeOptions.build(defaults, language=formats.language_name(form.get("language")),
                                          context=str(form.get("prompt") or ""),
                                          # speakers split segments at words: word times on
                                          word_timestamps=words or diarize is not None)
    except QwenASRError as exc:
        raise ApiError(400, str(exc), param="language") from None
    try:
        check_context(tokenizer, options.context, "prompt")
    except QwenASRError as exc:
        raise ApiError(400, str(exc), param="prompt", code="prompt_too_long") from None
    return TranscriptionRequest(upload, fmt, stream, words, logprobs, diarize, options)


def _response_format(form: FormData) -> str:
    fmt = str(form.get("response_format") or "json")
    if fmt not in formats.RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {fmt!r} is not supported; choose from: "
                            + ", ".join(formats.RESPONSE_FORMATS), param="response_format")
    return fmt


def _check_temperature(form: FormData) -> None:
    temperature = form.get("temperature")
    if temperature in (None, ""):
        return
    try:
        value = float(temperature)
    except ValueError:
        value = None
    if value != 0.0:
        raise ApiError(400, f"temperature {temperature!r} is not served: decoding is greedy, only 0 is supported",
                       param="temperature")


def _granularities(form: FormData, fmt: str) -> set[str]:
    granularities = set(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
    unknown = granularities - {"segment", "word"}
    if unknown:
        raise ApiError(400, f"timestamp_granularities {sorted(unknown)} not supported; use segment and/or word",
                       param="timestamp_granularities")
    if granularities and fmt not in formats.TIMED_FORMATS:
        raise ApiError(400, "timestamp_granularities need response_format " + ", ".join(formats.TIMED_FORMATS),
                       param="timestamp_granularities")
    return granularities


def _wants_logprobs(form: FormData, fmt: str, stream: bool) -> bool:
    include = set(form.getlist("include[]") + form.getlist("include"))
    if include - {"logprobs"}:
        raise ApiError(400, f"include {sorted(include - {'logprobs'})} not supported; only logprobs", param="include")
    if include and (fmt not in ("json", "verbose_json") or stream):
        raise ApiError(400, "include[]=logprobs needs response_format json or verbose_json, without stream",
                       param="include")
    return bool(include)


def _diarize(form: FormData) -> DiarizeOptions:
    try:
        return diarize_options(form)
    except DiarizeRequestError as exc:
        raise ApiError(400, str(exc), param=exc.param) from None
    except QwenASRError as exc:   # no SciPy: the server's setup
        raise ApiError(501, str(exc), type_="server_error", param="response_format") from None
