"""The HTTP side: the routes of OpenAI's audio transcription API, models, health, the web
page and the live WebSocket, and the app that serves them.

Routes read what they need from `request.app.state` (settings, worker, temp, sessions,
stopping); they check the request (protocol.py) and hand the work to serving.py or
realtime.py, never touching the model themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...options import TranscribeOptions
from . import formats
from .protocol import STOPPING, ApiError, parse_transcription
from .realtime import realtime_endpoint
from .security import COOKIE, Guard, TooLarge, is_loopback, key_matches
from .serving import transcribe
from .uploads import TempFolder
from .worker import Worker

MAX_FORM_FIELDS = 32


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


def create_app(worker: Worker, settings: Settings) -> FastAPI:
    """The app: the routes below, the state they read and the handlers that write every
    error in OpenAI's shape."""
    app = FastAPI(title="mlx-qwen-asr", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.worker = worker
    app.state.settings = settings
    app.state.temp = TempFolder()
    app.state.sessions = 0
    app.state.stopping = False   # set on SIGTERM/SIGINT: new work is refused with 503
    app.router.add_event_handler("shutdown", app.state.temp.remove)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(404, _not_found)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(Exception, _internal)
    app.include_router(router)
    return app


def error_response(exc: ApiError) -> JSONResponse:
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


async def _api_error(_request, exc: ApiError):
    return error_response(exc)


async def _not_found(request, _exc):
    return error_response(ApiError(404, f"no such endpoint: {request.method} {request.url.path}", code="not_found"))


async def _not_allowed(request, _exc):
    return error_response(ApiError(405, f"method {request.method} not allowed on {request.url.path}"))


async def _internal(_request, exc: Exception):
    return error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type_="server_error"))


def require_key(request: Request) -> None:
    if not key_matches(request.scope, request.app.state.settings.api_key):
        raise ApiError(401, "incorrect or missing API key: send Authorization: Bearer KEY",
                       code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def refuse_if_stopping(request: Request) -> None:
    if request.app.state.stopping:
        raise ApiError(503, STOPPING, type_="server_error", code="server_stopping")


router = APIRouter()


@router.get("/health")
async def health(request: Request):
    require_key(request)
    state = request.app.state
    worker = state.worker
    if not worker.alive:
        raise ApiError(503, "the model's worker thread has stopped", type_="server_error")
    return {"status": "ok", "model": state.settings.model_id, "queued_requests": worker.outstanding,
            "live_sessions": state.sessions, "largest_batch": max(worker.batches, default=0)}


@router.get("/v1/models")
async def models(request: Request):
    require_key(request)
    return {"object": "list", "data": [_model_card(request.app.state.settings)]}


@router.get("/v1/models/{model_id:path}")
async def model(request: Request, model_id: str):
    require_key(request)
    settings = request.app.state.settings
    if model_id != settings.model_id:
        raise ApiError(404, f"model {model_id!r} is not served; this server serves {settings.model_id!r}",
                       param="model", code="model_not_found")
    return _model_card(settings)


@router.post("/v1/audio/transcriptions")
async def transcriptions(request: Request):
    require_key(request)
    refuse_if_stopping(request)
    try:
        form = await request.form(max_files=1, max_fields=MAX_FORM_FIELDS)
    except TooLarge as exc:
        raise ApiError(413, str(exc), param="file", code="file_too_large") from None
    except Exception as exc:  # noqa: BLE001 - a malformed body is the client's error
        raise ApiError(400, f"could not read the multipart form: {exc}") from None
    try:
        state = request.app.state
        parsed = await run_in_threadpool(parse_transcription, form, state.settings.options,
                                         state.worker.model.tokenizer)
        return await transcribe(request, parsed)
    finally:
        await form.close()


@router.post("/subtitles")
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


@router.get("/")
async def page(request: Request):
    if not key_matches(request.scope, request.app.state.settings.api_key):
        return HTMLResponse(_static("login.html"), status_code=401)
    return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})


@router.post("/login")
async def login(request: Request):
    """The page's key form: a valid key becomes an HttpOnly, same-site-only cookie."""
    api_key = request.app.state.settings.api_key
    form = await request.form(max_files=0, max_fields=2)
    key = str(form.get("key") or "")
    if not api_key or not key_matches({"headers": [(b"authorization", f"Bearer {key}".encode())]}, api_key):
        return HTMLResponse(_static("login.html").replace("<!--error-->", "<p class=error>Wrong key.</p>"),
                            status_code=401)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict")
    return response


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket):
    await realtime_endpoint(websocket, websocket.app)


def _model_card(settings: Settings) -> dict:
    return {"id": settings.model_id, "object": "model", "created": 0, "owned_by": "mlx-qwen-asr"}


def _static(name: str) -> str:
    return resources.files("mlx_qwen_asr.frontends.server").joinpath("static", name).read_text(encoding="utf-8")


def wrap(app: FastAPI, settings: Settings, loopback_only: bool | None = None):
    """The ASGI app to serve: the FastAPI app behind the Host/Origin guard and size limit."""
    if loopback_only is None:
        loopback_only = is_loopback(settings.host)
    return Guard(app, loopback_only, int(settings.max_upload_mb * 1e6))
