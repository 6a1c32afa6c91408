"""The work of a transcription request: read the upload (in a thread of the pool: decoding
is not MLX work), hand the audio to the worker, wait for it (or stream its progress) and
write the response. Nothing here touches the model: the worker's thread does."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...errors import ModelLoadError, QwenASRError
from ...results import join_texts
from ...speakers.attach import add_speakers
from ...speakers.pipeline import diarize as find_turns
from . import formats
from .diarized import diarized_json_body
from .protocol import STOPPING, ApiError, TranscriptionRequest
from .uploads import TooLong, read_upload
from .worker import CancelledJob, Job, QueueFull


async def transcribe(request: Request, parsed: TranscriptionRequest) -> Response:
    """The response to a checked transcription request, in its response format."""
    worker, settings = request.app.state.worker, request.app.state.settings
    upload = parsed.file
    try:
        audio = await run_in_threadpool(read_upload, upload.file, request.app.state.temp, upload.filename,
                                        settings.max_audio_seconds, parsed.options.segment_seconds)
    except TooLong as exc:
        raise ApiError(413, str(exc), param="file", code="audio_too_long") from None
    except QwenASRError as exc:
        raise ApiError(400, str(exc), param="file", code="invalid_audio") from None

    whole = np.concatenate([p.audio for p in audio.pieces]) if parsed.diarize is not None and audio.pieces else None
    loop = asyncio.get_running_loop()
    progress: asyncio.Queue = asyncio.Queue()
    job = Job(audio.pieces, audio.duration, parsed.options,
              on_progress=((lambda segs: loop.call_soon_threadsafe(progress.put_nowait, segs))
                           if parsed.stream else None))
    try:
        future = asyncio.wrap_future(worker.submit(job))
    except QueueFull:
        raise ApiError(429, f"the server is busy ({worker.outstanding} requests queued); retry shortly",
                       code="rate_limit_exceeded", type_="rate_limit_error",
                       headers={"Retry-After": str(settings.retry_after)}) from None
    if parsed.stream:
        return StreamingResponse(_events(request, job, future, progress), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
    result = await _wait(request, job, future)
    fmt = parsed.response_format
    extra = {"logprobs": formats.logprobs_body(result, worker.model.tokenizer)} if parsed.logprobs else {}
    if parsed.diarize is not None:
        return JSONResponse(await _diarized(request, result, whole, parsed.diarize))
    if fmt == "json":
        return JSONResponse({**formats.json_body(result), **extra})
    if fmt == "verbose_json":
        return JSONResponse({**formats.verbose_json_body(result, parsed.words), **extra})
    if fmt == "text":
        return PlainTextResponse(result.text + "\n")
    media = "text/vtt" if fmt == "vtt" else "application/x-subrip"
    return Response(formats.subtitles(result, fmt), media_type=media + "; charset=utf-8")


async def _diarized(request: Request, result, samples, diarize) -> dict:
    """diarized_json: the speakers found on the worker's thread (it owns the device)."""
    if samples is None:
        return diarized_json_body(add_speakers(result, []))

    def run(_model):
        return find_turns(samples, sample_rate=16000, options=diarize)

    settings = request.app.state.settings
    future = asyncio.wrap_future(request.app.state.worker.call(run))
    try:
        turns = await asyncio.wait_for(future, settings.request_timeout)
    except asyncio.TimeoutError:
        raise _timeout(settings) from None
    except QwenASRError as exc:   # a reference clip without enough speech
        raise ApiError(400, str(exc), param="known_speaker_references") from None
    except Exception as exc:  # noqa: BLE001
        raise ApiError(500, f"diarization failed: {type(exc).__name__}: {exc}", type_="server_error") from None
    return diarized_json_body(add_speakers(result, turns))


async def _wait(request: Request, job: Job, future):
    """The job's result; a client that goes away or a request past its time drops the work."""
    settings = request.app.state.settings
    deadline = time.monotonic() + settings.request_timeout
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=0.25)
            if done:
                break
            if await request.is_disconnected():
                raise ApiError(499, "client closed the request")
            if time.monotonic() > deadline:
                raise _timeout(settings)
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


def _timeout(settings) -> ApiError:
    return ApiError(504, f"the request took longer than {settings.request_timeout:g} s (--request-timeout)",
                    type_="server_error", code="timeout")


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


def _sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
