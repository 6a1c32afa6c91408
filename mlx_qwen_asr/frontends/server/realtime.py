"""Live transcription over a WebSocket, speaking the OpenAI Realtime API's transcription session.

Client events: `session.update` / `transcription_session.update` (language and prompt under
`audio.input.transcription` or `input_audio_transcription`; input rate under
`audio.input.format.rate`, default 24 kHz as the API's pcm16), `input_audio_buffer.append`
(base64 little-endian PCM16 mono), `input_audio_buffer.commit`, `input_audio_buffer.clear`.

Server events: `session.created`, `session.updated`, then per item (the audio between two
commits) `conversation.item.input_audio_transcription.delta` while it is spoken (each delta
extends the item's committed text, never rewrites it; our extension `partial` carries the
tail that may still change), `input_audio_buffer.committed` and
`conversation.item.input_audio_transcription.completed` with the whole transcript. There
is no server-side turn detection: the client commits.

Each item is a StreamingSession living on the worker thread (worker.streams); the
connection keeps one step in flight at a time and feeds the audio that arrived meanwhile
as one piece (the session's catch_up), so a slow machine falls behind by a bounded delay.
A piece is at most FEED_SECONDS, so a burst of audio (a large append) is decoded in
bounded calls that take turns with other sessions and HTTP requests on the worker, and one
append event carries at most MAX_APPEND_BYTES of audio (more is an error event).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections import deque

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import QwenASRError
from ...limits import check_context
from ...options import TranscribeOptions
from ...stream.session import StreamingSession
from . import formats
from .protocol import STOPPING
from .security import key_matches

API_RATE = 24000   # the Realtime API's pcm16: 24 kHz mono
MAX_APPEND_BYTES = 2 << 20   # PCM16 bytes in one append event: 2 MiB, 43.7 s at 24 kHz
# Audio fed to a session in one worker call: the session's longest merged step (its
# keep_seconds), so a call decodes about one step and the worker takes turns in between.
FEED_SECONDS = 4.0


def _event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


class Connection:
    def __init__(self, websocket: WebSocket, app):
        self.ws = websocket
        self.worker = app.state.worker
        self.settings = app.state.settings
        self.language: str | None = None
        self.prompt = ""
        self.rate = API_RATE
        self.item_id = "item_" + uuid.uuid4().hex[:20]
        self.previous_item: str | None = None
        self.stream_id: str | None = None      # the item's StreamingSession on the worker
        self.item_samples = 0
        self.sent = ""                          # the item's committed text already sent as deltas
        self.sent_partial = ""                  # the partial tail the last delta carried
        self.actions: deque = deque()           # ("audio", int16 array) | ("commit",) | ("clear",)
        self.wake = asyncio.Event()
        self.closed = False

    async def send(self, event: dict) -> None:
        event.setdefault("event_id", _event_id())
        await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    async def error(self, message: str, code: str = "invalid_request_error", event_id: str | None = None) -> None:
        await self.send({"type": "error", "error": {"type": "invalid_request_error", "code": code,
                                                     "message": message, "param": None, "event_id": event_id}})

    def session_info(self) -> dict:
        return {"type": "transcription", "id": "sess_" + self.item_id[5:],
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": self.rate},
                                    "transcription": {"model": self.settings.model_id, "language": _as_text(self.language),
                                                      "prompt": self.prompt},
                                    "turn_detection": None}}}

    # ------------------------------------------------------------------ client events

    async def receive_loop(self) -> None:
        while True:
            text = await asyncio.wait_for(self.ws.receive_text(), self.settings.session_idle_seconds)
            try:
                event = json.loads(text)
                kind = event.get("type")
            except (ValueError, AttributeError):
                await self.error("events must be JSON objects with a 'type'")
                continue
            if kind in ("session.update", "transcription_session.update"):
                await self.update(event)
            elif kind == "input_audio_buffer.append":
                await self.append(event)
            elif kind in ("input_audio_buffer.commit", "input_audio_buffer.clear"):
                self.actions.append((kind.rsplit(".", 1)[1],))
                self.wake.set()
            else:
                await self.error(f"unsupported event type {kind!r}", "unknown_event", event.get("event_id"))

    async def update(self, event: dict) -> None:
        session = event.get("session") or {}
        audio_in = (session.get("audio") or {}).get("input") or {}
        transcription = audio_in.get("transcription") or session.get("input_audio_transcription") or {}
        rate = (audio_in.get("format") or {}).get("rate", self.rate)
        old_format = session.get("input_audio_format")
        if old_format not in (None, "pcm16") or not isinstance(rate, int) or not 8000 <= rate <= 96000:
            await self.error("only PCM16 input is served (rate 8000-96000 Hz, default 24000)",
                             "unsupported_format", event.get("event_id"))
            return
        try:
            language = TranscribeOptions(language=formats.language_name(transcription.get("language",
                                                                                            self.language))).language
        except QwenASRError as exc:
            await self.error(str(exc), "invalid_language", event.get("event_id"))
            return
        if self.stream_id is not None or self.actions:
            await self.error("session settings change only between items: commit or clear first",
                             "session_busy", event.get("event_id"))
            return
        prompt = str(transcription.get("prompt", self.prompt) or "")
        try:
            await asyncio.to_thread(check_context, self.worker.model.tokenizer, prompt, "prompt")
        except QwenASRError as exc:
            await self.error(str(exc), "prompt_too_long", event.get("event_id"))
            return
        self.language, self.rate, self.prompt = language, rate, prompt
        await self.send({"type": "session.updated", "session": self.session_info()})

    async def append(self, event: dict) -> None:
        text = event.get("audio") or ""
        if isinstance(text, str) and len(text) > 4 * (-(-MAX_APPEND_BYTES // 3)):
            await self.error(f"input_audio_buffer.append: an event may carry at most {MAX_APPEND_BYTES} bytes "
                             f"of audio ({MAX_APPEND_BYTES // 2 / self.rate:.1f} s at {self.rate} Hz); send "
                             "smaller events", "audio_too_large", event.get("event_id"))
            return
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError, TypeError):
            await self.error("input_audio_buffer.append: 'audio' is not base64", "invalid_audio", event.get("event_id"))
            return
        if len(raw) % 2:
            raw = raw[:-1]
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        if (self.item_samples + len(pcm)) / self.rate > self.settings.max_audio_seconds:
            await self.error(f"an item may hold at most {self.settings.max_audio_seconds:g} s of audio: commit",
                             "audio_too_long", event.get("event_id"))
            return
        self.item_samples += len(pcm)
        self.actions.append(("audio", pcm))
        self.wake.set()

    # ------------------------------------------------------------------ work on the worker

    async def process_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.actions:
                action = self.actions.popleft()
                if action[0] == "audio":
                    await self.feed(self.take_audio(action[1]))
                elif action[0] == "commit":
                    await self.commit()
                else:
                    await self.drop_stream()
                    self.item_samples, self.sent, self.sent_partial = 0, "", ""
                    await self.send({"type": "input_audio_buffer.cleared"})

    def take_audio(self, first: np.ndarray) -> np.ndarray:
        """`first` and the audio queued right after it, up to FEED_SECONDS; the rest goes
        back to the front of the queue for the next call."""
        limit = int(FEED_SECONDS * self.rate)
        pieces, size = [first], len(first)
        while size < limit and self.actions and self.actions[0][0] == "audio":
            piece = self.actions.popleft()[1]
            pieces.append(piece)
            size += len(piece)
        pcm = np.concatenate(pieces) if len(pieces) > 1 else first
        if len(pcm) > limit:
            self.actions.appendleft(("audio", pcm[limit:]))
            pcm = pcm[:limit]
        return pcm

    async def on_worker(self, fn):
        return await asyncio.wrap_future(self.worker.call(fn))

    async def open_stream(self) -> None:
        stream_id = uuid.uuid4().hex
        options = TranscribeOptions(language=self.language, context=self.prompt)

        def start(model):
            self.worker.streams[stream_id] = StreamingSession(model, options, catch_up=True)

        await self.on_worker(start)
        self.stream_id = stream_id

    async def drop_stream(self) -> None:
        if self.stream_id is not None:
            stream_id, self.stream_id = self.stream_id, None
            await self.on_worker(lambda _m: self.worker.streams.pop(stream_id, None))

    async def feed(self, pcm: np.ndarray) -> None:
        if self.stream_id is None:
            await self.open_stream()
        stream_id, rate = self.stream_id, self.rate
        try:
            update = await self.on_worker(lambda _m: self.worker.streams[stream_id].feed(pcm, rate))
        except QwenASRError as exc:
            await self.error(str(exc), "invalid_audio")
            return
        await self.send_delta(update.committed, update.partial)

    async def send_delta(self, committed: str, partial: str) -> None:
        """A delta event when the text changed: new committed text, or a new partial tail."""
        # Committed text only grows, so the deltas add up to the transcript.
        delta = committed[len(self.sent):] if committed.startswith(self.sent) else ""
        if not delta and partial == self.sent_partial:
            return
        await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": self.item_id,
                         "content_index": 0, "delta": delta, "partial": partial})
        self.sent = committed if committed.startswith(self.sent) else self.sent
        self.sent_partial = partial

    async def commit(self) -> None:
        if self.stream_id is None:
            await self.error("input_audio_buffer.commit: the buffer is empty", "input_audio_buffer_commit_empty")
            return
        stream_id = self.stream_id
        final = await self.on_worker(lambda _m: self.worker.streams.pop(stream_id).finish())
        self.stream_id = None
        await self.send_delta(final.committed, "")
        item, previous, self.previous_item = self.item_id, self.previous_item, self.item_id
        await self.send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": previous})
        await self.send({"type": "conversation.item.input_audio_transcription.completed", "item_id": item,
                         "content_index": 0, "transcript": final.committed,
                         "usage": {"type": "duration", "seconds": round(final.audio_seconds, 3)}})
        self.item_id = "item_" + uuid.uuid4().hex[:20]
        self.item_samples, self.sent, self.sent_partial = 0, "", ""


async def realtime_endpoint(websocket: WebSocket, app) -> None:
    settings = app.state.settings
    if not key_matches(websocket.scope, settings.api_key):
        await websocket.close(code=1008, reason="incorrect or missing API key")
        return
    await websocket.accept()
    if app.state.stopping:
        await Connection(websocket, app).error(STOPPING, "server_stopping")
        await websocket.close(code=1012)
        return
    if app.state.sessions >= settings.max_sessions:
        connection = Connection(websocket, app)
        await connection.error(f"the server holds its limit of {settings.max_sessions} live sessions (--max-sessions)",
                               "too_many_sessions")
        await websocket.close(code=1013)
        return
    app.state.sessions += 1
    connection = Connection(websocket, app)
    processor = None
    try:
        await connection.send({"type": "session.created", "session": connection.session_info()})
        processor = asyncio.ensure_future(connection.process_loop())
        receiver = asyncio.ensure_future(connection.receive_loop())
        done, _ = await asyncio.wait({processor, receiver}, return_when=asyncio.FIRST_COMPLETED)
        receiver.cancel()
        for task in done:
            task.exception()   # retrieved so asyncio does not log it; a closed socket ends here
    except (WebSocketDisconnect, asyncio.TimeoutError, RuntimeError):
        pass
    finally:
        if processor is not None:
            processor.cancel()
        app.state.sessions -= 1
        if connection.stream_id is not None:
            stream_id = connection.stream_id
            app.state.worker.call(lambda _m: app.state.worker.streams.pop(stream_id, None))
        try:
            await websocket.close()
        except Exception:  # noqa: BLE001 - already closed
            pass


def _as_text(language) -> str | None:
    """A session's language as the API writes it: a name, or a language set comma-joined."""
    return ",".join(language) if isinstance(language, tuple) else language
