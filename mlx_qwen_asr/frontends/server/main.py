"""`python -m mlx_qwen_asr serve`: options, setup checks (exit 2 before serving), uvicorn."""

from __future__ import annotations

import argparse
import sys

from ...aligner import DEFAULT_ALIGNER
from ..args import OneLineParser, positive_float, positive_int, program_name
from ...batch import DEFAULT_BATCH_SIZE
from ...errors import QwenASRError
from ...options import DEFAULT_MODEL, LoadOptions, TranscribeOptions

DEFAULT_PORT = 8000


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=f"{program_name()} serve",
                                description="Serve OpenAI's audio transcription API, live transcription over a "
                                            "WebSocket and a web page.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id or local model directory (default: {DEFAULT_MODEL})")
    p.add_argument("--model-name", default=None,
                   help="the model id /v1/models lists (default: the --model value)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--quantize", type=int, default=None, choices=[4, 8])
    p.add_argument("--aligner", default=DEFAULT_ALIGNER,
                   help=f"forced aligner for word timestamps (default: {DEFAULT_ALIGNER}; loaded on first use)")
    p.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="token budget per segment (default: scales with each segment's duration)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1; any other needs --api-key or --insecure)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0: any free one)")
    p.add_argument("--api-key", default=None,
                   help="require this key on every endpoint: Authorization: Bearer KEY (the page asks for it)")
    p.add_argument("--insecure", action="store_true", help="allow a non-loopback --host without --api-key")
    p.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                   help=f"segments decoded together (default: {DEFAULT_BATCH_SIZE})")
    p.add_argument("--max-queue", type=positive_int, default=64,
                   help="requests held at once; more get 429 with Retry-After (default: 64)")
    p.add_argument("--max-upload-mb", type=positive_float, default=100.0, help="upload size limit (default: 100)")
    p.add_argument("--max-audio-seconds", type=positive_float, default=3 * 3600.0,
                   help="audio duration limit per request or live item (default: 10800)")
    p.add_argument("--request-timeout", type=positive_float, default=600.0,
                   help="seconds a request may take before its work is dropped (default: 600)")
    p.add_argument("--max-sessions", type=positive_int, default=4, help="live WebSocket sessions at once (default: 4)")
    p.add_argument("--session-idle-seconds", type=positive_float, default=120.0,
                   help="a live session silent this long is closed (default: 120)")
    p.add_argument("--shutdown-timeout", type=positive_float, default=30.0,
                   help="on SIGTERM or Ctrl-C, seconds requests in flight may take to finish; then they get "
                        "503 (default: 30)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import uvicorn  # noqa: F401
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
    except ImportError as exc:
        print(f"error: serve needs the server extra ({exc.name} is missing): pip install 'mlx-qwen-asr[server]'",
              file=sys.stderr)
        return 2
    from .app import Settings, create_app, wrap
    from .security import is_loopback
    from .worker import Worker

    if not is_loopback(args.host) and not args.api_key and not args.insecure:
        print(f"error: --host {args.host} is reachable from other machines: give --api-key KEY "
              "(or --insecure to serve without one)", file=sys.stderr)
        return 2

    from ...transcribe import load_model

    try:
        load = LoadOptions(args.model, args.dtype, args.quantize)
        options = TranscribeOptions(aligner=args.aligner, max_new_tokens=args.max_new_tokens)
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sock = _listen(args.host, args.port)   # a taken port is found before the model loads
    if sock is None:
        return 2
    worker = Worker(lambda: load_model(load.model, load.dtype, load.quantize, load.low_memory),
                    batch_size=args.batch_size, max_jobs=args.max_queue)
    settings = Settings(model_id=args.model_name or str(args.model), options=options, host=args.host,
                        api_key=args.api_key,
                        max_upload_mb=args.max_upload_mb, max_audio_seconds=args.max_audio_seconds,
                        request_timeout=args.request_timeout, max_sessions=args.max_sessions,
                        session_idle_seconds=args.session_idle_seconds)
    app = create_app(worker, settings)
    try:
        return _serve(app, wrap(app, settings), sock, args, worker)
    finally:
        sock.close()
        app.state.temp.remove()


def _listen(host: str, port: int):
    """The bound socket (so that --port 0 can report the port it got), or None after one line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)   # connections wait in the backlog until the model is loaded and HTTP runs
    except OSError as exc:
        sock.close()
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return None
    return sock


def _serve(app, asgi, sock, args, worker) -> int:
    """HTTP on a thread of its own; the model on this, the main thread (see worker.py), until
    a signal's graceful shutdown (Shutdown) ends both."""
    import threading

    import uvicorn

    # uvicorn's own grace outlasts ours: by then every request has its answer (or its 503).
    config = uvicorn.Config(asgi, log_level=args.log_level, access_log=False,
                            timeout_graceful_shutdown=args.shutdown_timeout + 5)
    server = uvicorn.Server(config)
    shutdown = Shutdown(server, app, worker, args.shutdown_timeout)

    def http() -> None:
        try:
            server.run(sockets=[sock])
        finally:
            worker.stop_soon()   # ends the model's loop on the main thread

    def started() -> None:
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        print(f"serving {args.model_name or args.model} on http://{shown}:{port}/ "
              f"(OpenAI API at http://{shown}:{port}/v1)", file=sys.stderr, flush=True)
        thread.start()

    thread = threading.Thread(target=http, name="http")
    with shutdown.signals():
        worker.run(on_ready=started)
        if isinstance(worker.load_error, KeyboardInterrupt):
            print("interrupted", file=sys.stderr)
            return 130
        if worker.load_error is not None:
            print(f"error: {worker.load_error}", file=sys.stderr)
            return 2
        thread.join()
    shutdown.done()
    return 0


class Shutdown:
    """SIGTERM or SIGINT: stop accepting (uvicorn closes the socket and idle connections),
    refuse new requests with 503, give those in flight `timeout` seconds, then answer what
    is left with 503 "the server is stopping". A second SIGINT refuses at once."""

    def __init__(self, server, app, worker, timeout: float):
        self.server, self.app, self.worker, self.timeout = server, app, worker, timeout
        self.timer = None

    def signals(self):
        import contextlib
        import signal

        @contextlib.contextmanager
        def installed():
            previous = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        return installed()

    def on_signal(self, _sig, _frame) -> None:
        from .app import STOPPING

        if self.app.state.stopping:   # a second signal: stop waiting
            self.server.force_exit = True
            self.worker.refuse_all(STOPPING)
            return
        if not self.worker.ready.is_set():
            raise KeyboardInterrupt   # still loading the model: stop loading
        self.app.state.stopping = True
        self.server.should_exit = True
        print(f"stopping: {self.worker.outstanding} request(s) in flight get up to {self.timeout:g} s "
              "(--shutdown-timeout)", file=sys.stderr, flush=True)
        import threading

        self.timer = threading.Timer(self.timeout, self.worker.refuse_all, args=(STOPPING,))
        self.timer.daemon = True
        self.timer.start()

    def done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
