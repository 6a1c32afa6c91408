"""The HTTP side: OpenAI's audio transcription API, models, health and the web page.

Handlers only check the request, read the upload (in a thread of the pool: decoding is not
MLX work) and hand the audio to the worker; they never touch the model.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...errors import ModelLoadError, QwenASRError
from ...limits import check_context
from ...options import TranscribeOptions
from ...results import join_texts
from . import formats
from .security import COOKIE, Guard, TooLarge, is_loopback, key_matches
from .uploads import TempFolder, TooLong, read_upload
from .worker import CancelledJob, Job, QueueFull, Worker

MAX_FORM_FIELDS = 32
STOPPING = "the server is stopping"   # the 503 of requests refused by a shutdown (main.py)


@dataclass
class Settings:
    model_id: str = "qwen3-asr"
    options: TranscribeOptions = TranscribeOptions()   # the server's defaults (aligner); requests change some
    host: str = "127.0.0.1"
    api_key: str | None = None
    max_upload_mb: float = 100.0
    max_audio_seconds: float = 3 * 3600.0
    request_timeout: float = 600.0
    max_sessions: int = 4
    session_idle_seconds: float = 120.0
    retry_after: int = 2


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type, self.headers = (
            status, message, param, code, type_, headers or {})


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def create_app(worker: Worker, settings: Settings) -> FastAPI:
    app = FastAPI(title="mlx-qwen-asr", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.state.settings = settings
    app.state.temp = TempFolder()
    app.state.sessions = 0
    app.state.stopping = False   # set on SIGTERM/SIGINT: new work is refused with 503

    @app.on_event("shutdown")
    def _cleanup() -> None:
        app.state.temp.remove()

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return error_response(exc)

    @app.exception_handler(404)
    async def _not_found(request, _exc):
        return error_response(ApiError(404, f"no such endpoint: {request.method} {request.url.path}", code="not_found"))

    @app.exception_handler(405)
    async def _not_allowed(request, _exc):
        return error_response(ApiError(405, f"method {request.method} not allowed on {request.url.path}"))

    @app.exception_handler(Exception)
    async def _internal(_request, exc: Exception):
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error"))

    def require_key(request: Request) -> None:
        if not key_matches(request.scope, settings.api_key):
            raise ApiError(401, "incorrect or missing API key: send Authorization: Bearer KEY",
                           code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})

    def refuse_if_stopping() -> None:
        if app.state.stopping:
            raise ApiError(503, STOPPING, type_="server_error", code="server_stopping")

    @app.get("/health")
    async def health(request: Request):
        require_key(request)
        if not worker.alive:
            raise ApiError(503, "the model's worker thread has stopped", type_="server_error")
        return {"status": "ok", "model": settings.model_id, "queued_requests": worker.outstanding,
                "live_sessions": app.state.sessions, "largest_batch": max(worker.batches, default=0)}

    @app.get("/v1/models")
    async def models(request: Request):
        require_key(request)
        return {"object": "list", "data": [_model_card(settings)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(request: Request, model_id: str):
        require_key(request)
        if model_id != settings.model_id:
            raise ApiError(404, f"model {model_id!r} is not served; this server serves {settings.model_id!r}",
                           param="model", code="model_not_found")
        return _model_card(settings)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        require_key(request)
        refuse_if_stopping()
        try:
            form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
        except TooLarge as exc:
            raise ApiError(413, str(exc), param="file", code="file_too_large") from None
        except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
            raise ApiError(400, f"could not read the multipart form: {exc}") from None
        try:
            return await _transcribe(request, form)
        finally:
            await form.close()

    async def _transcribe(request: Request, form):
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "the 'file' field (the audio, as a multipart file) is missing", param="file")
        if not form.get("model"):
            raise ApiError(400, "the 'model' field is missing", param="model")
        fmt = str(form.get("response_format") or "json")
        if fmt not in formats.RESPONSE_FORMATS:
            raise ApiError(400, f"response_format {fmt!r} is not supported; choose from: "
                                + ", ".join(formats.RESPONSE_FORMATS), param="response_format")
        temperature = form.get("temperature")
        if temperature not in (None, ""):
            try:
                value = float(temperature)
            except ValueError:
                value = None
            if value != 0.0:
                raise ApiError(400, f"temperature {temperature!r} is not served: decoding is greedy, only 0 is "
                                    "supported", param="temperature")
        granularities = set(form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities"))
        unknown = granularities - {"segment", "word"}
        if unknown:
            raise ApiError(400, f"timestamp_granularities {sorted(unknown)} not supported; use segment and/or word",
                           param="timestamp_granularities")
        if granularities and fmt not in formats.TIMED_FORMATS:
            raise ApiError(400, "timestamp_granularities need response_format " + ", ".join(formats.TIMED_FORMATS),
                           param="timestamp_granularities")
        stream = str(form.get("stream") or "false").lower() in ("true", "1")
        if stream and fmt not in ("json", "text"):
            raise ApiError(400, "stream=true sends text events; use response_format json or text", param="stream")
        words = formats.wants_words(fmt, granularities)
        include = set(form.getlist("include[]") + form.getlist("include"))
        if include - {"logprobs"}:
            raise ApiError(400, f"include {sorted(include - {'logprobs'})} not supported; only logprobs",
                           param="include")
        if include and (fmt not in ("json", "verbose_json") or stream):
            raise ApiError(400, "include[]=logprobs needs response_format json or verbose_json, without stream",
                           param="include")
        diarize = None
        if fmt == "diarized_json":   # speakers split segments at words: word times on
            from .diarized import DiarizeRequestError, diarize_options

            try:
                diarize = await run_in_threadpool(diarize_options, form)
            except DiarizeRequestError as exc:
                raise ApiError(400, str(exc), param=exc.param) from None
            except QwenASRError as exc:   # no SciPy: the server's setup
                raise ApiError(501, str(exc), type_="server_error", param="response_format") from None
        try:
            options = TranscribeOptions.build(settings.options, language=formats.language_name(form.get("language")),
                                              context=str(form.get("prompt") or ""),
                                              word_timestamps=words or diarize is not None)
        except QwenASRError as exc:
            raise ApiError(400, str(exc), param="language") from None
        try:
            # Before the upload is read; a long text is tokenized off the event loop.
            await run_in_threadpool(check_context, worker.model.tokenizer, options.context, "prompt")
        except QwenASRError as exc:
            raise ApiError(400, str(exc), param="prompt", code="prompt_too_long") from None

        try:
            audio = await run_in_threadpool(read_upload, upload.file, app.state.temp, upload.filename,
                                            settings.max_audio_seconds, options.segment_seconds)
        except TooLong as exc:
            raise ApiError(413, str(exc), param="file", code="audio_too_long") from None
        except QwenASRError as exc:
            raise ApiError(400, str(exc), param="file", code="invalid_audio") from None

        whole = np.concatenate([p.audio for p in audio.pieces]) if diarize is not None and audio.pieces else None
        loop = asyncio.get_running_loop()
        progress: asyncio.Queue = asyncio.Queue()
        job = Job(audio.pieces, audio.duration, options,
                  on_progress=(lambda segs: loop.call_soon_threadsafe(progress.put_nowait, segs)) if stream else None)
        try:
            future = asyncio.wrap_future(worker.submit(job))
        except QueueFull:
            raise ApiError(429, f"the server is busy ({worker.outstanding} requests queued); retry shortly",
                           code="rate_limit_exceeded", type_="rate_limit_error",
                           headers={"Retry-After": str(settings.retry_after)}) from None
        if stream:
            return StreamingResponse(_events(request, job, future, progress), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        result = await _wait(request, job, future)
        extra = {"logprobs": formats.logprobs_body(result, worker.model.tokenizer)} if include else {}
        if diarize is not None:
            return JSONResponse(await _diarized(request, result, whole, diarize))
        if fmt == "json":
            return JSONResponse({**formats.json_body(result), **extra})
        if fmt == "verbose_json":
            return JSONResponse({**formats.verbose_json_body(result, words), **extra})
        if fmt == "text":
            return PlainTextResponse(result.text + "\n")
        media = "text/vtt" if fmt == "vtt" else "application/x-subrip"
        return Response(formats.subtitles(result, fmt), media_type=media + "; charset=utf-8")

    async def _diarized(request: Request, result, samples, diarize) -> dict:
        """diarized_json: the speakers found on the worker's thread (it owns the device)."""
        from ...speakers.attach import add_speakers
        from ...speakers.pipeline import diarize as find_turns
        from .diarized import diarized_json_body

        if samples is None:
            return diarized_json_body(add_speakers(result, []))

        def run(_model):
            return find_turns(samples, sample_rate=16000, options=diarize)

        future = asyncio.wrap_future(worker.call(run))
        try:
            turns = await asyncio.wait_for(future, settings.request_timeout)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than {settings.request_timeout:g} s "
                                "(--request-timeout)", type_="server_error", code="timeout") from None
        except QwenASRError as exc:   # a reference clip without enough speech
            raise ApiError(400, str(exc), param="known_speaker_references") from None
        except Exception as exc:  # noqa: BLE001
            raise ApiError(500, f"diarization failed: {type(exc).__name__}: {exc}", type_="server_error") from None
        return diarized_json_body(add_speakers(result, turns))

    async def _wait(request: Request, job: Job, future):
        """The job's result; a client that goes away or a request past its time drops the work."""
        deadline = time.monotonic() + settings.request_timeout
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.25)
                if done:
                    break
                if await request.is_disconnected():
                    raise ApiError(499, "client closed the request")
                if time.monotonic() > deadline:
                    raise ApiError(504, f"the request took longer than {settings.request_timeout:g} s "
                                        "(--request-timeout)", type_="server_error", code="timeout")
            try:
                return future.result()
            except ModelLoadError as exc:   # the aligner of word timestamps: the server's setup, not the request
                raise ApiError(503, f"word timestamps are unavailable: {exc}", type_="server_error") from None
            except QwenASRError as exc:
                raise ApiError(400, str(exc)) from None
            except CancelledJob as exc:
                raise ApiError(503, str(exc), type_="server_error",
                               code="server_stopping" if str(exc) == STOPPING else None) from None
            except Exception as exc:  # noqa: BLE001
                raise ApiError(500, f"transcription failed: {type(exc).__name__}: {exc}", type_="server_error") from None
        finally:
            job.cancel()   # a no-op once finished

    async def _events(request: Request, job: Job, future, progress: asyncio.Queue):
        """Server-sent events: a transcript.text.delta per finished run of segments, then done."""
        sent = ""
        try:
            waiter = asyncio.ensure_future(_wait(request, job, future))
            while True:
                getter = asyncio.ensure_future(progress.get())
                done, _ = await asyncio.wait({waiter, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    text = join_texts([s.text for s in getter.result()])
                    if len(text) > len(sent):
                        yield _sse({"type": "transcript.text.delta", "delta": text[len(sent):], "logprobs": None})
                        sent = text
                else:
                    getter.cancel()
                if waiter in done:
                    break
            try:
                result = waiter.result()
            except ApiError as exc:
                yield _sse({"type": "error", "error": {"message": exc.message, "type": exc.type, "code": exc.code}})
                return
            if len(result.text) > len(sent):
                yield _sse({"type": "transcript.text.delta", "delta": result.text[len(sent):], "logprobs": None})
            yield _sse({"type": "transcript.text.done", "text": result.text, "logprobs": None,
                        "usage": formats.usage(result)})
        finally:
            job.cancel()

    @app.post("/subtitles")
    async def subtitles(request: Request):
        """The page's srt/vtt downloads: a verbose_json body it already has, written as the
        srt/vtt response formats (and the CLI) write it, without transcribing again."""
        require_key(request)
        try:
            body = await request.json()
            text = formats.subtitles_of_verbose_json(body["transcription"], body["format"])
        except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
            raise ApiError(400, f"expected JSON {{\"format\": \"srt\" or \"vtt\", \"transcription\": a verbose_json "
                                f"body}}: {type(exc).__name__}: {exc}") from None
        media = "text/vtt" if body["format"] == "vtt" else "application/x-subrip"
        return Response(text, media_type=media + "; charset=utf-8")

    @app.get("/")
    async def page(request: Request):
        if not key_matches(request.scope, settings.api_key):
            return HTMLResponse(_static("login.html"), status_code=401)
        return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})

    @app.post("/login")
    async def login(request: Request):
        """The page's key form: a valid key becomes an HttpOnly, same-site-only cookie."""
        form = await request.form(max_files=0, max_fields=2)
        key = str(form.get("key") or "")
        if not settings.api_key or not key_matches({"headers": [(b"authorization", f"Bearer {key}".encode())]},
                                                   settings.api_key):
            return HTMLResponse(_static("login.html").replace("<!--error-->", "<p class=error>Wrong key.</p>"),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict")
        return response

    from .realtime import realtime_endpoint

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket):
        await realtime_endpoint(websocket, app)

    return app


def _model_card(settings: Settings) -> dict:
    return {"id": settings.model_id, "object": "model", "created": 0, "owned_by": "mlx-qwen-asr"}


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def _static(name: str) -> str:
    return resources.files("mlx_qwen_asr.frontends.server").joinpath("static", name).read_text(encoding="utf-8")


def wrap(app: FastAPI, settings: Settings, loopback_only: bool | None = None):
    """The ASGI app to serve: the FastAPI app behind the Host/Origin guard and size limit."""
    if loopback_only is None:
        loopback_only = is_loopback(settings.host)
    return Guard(app, loopback_only, int(settings.max_upload_mb * 1e6))
