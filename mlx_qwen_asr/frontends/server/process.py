"""The server process: setup checks, the model's worker on the main thread, uvicorn's HTTP
on a thread of its own, and the graceful shutdown on SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import sys
import threading

import uvicorn

from ...errors import QwenASRError
from ...options import LoadOptions, TranscribeOptions
from ...transcribe import load_model
from .app import Settings, create_app, wrap
from .protocol import STOPPING
from .security import is_loopback
from .worker import Worker

# websockets' sans-I/O protocol, where the installed uvicorn has it: older uvicorns take its
# deprecated legacy one (which warns) for "auto".
WEBSOCKETS = "websockets-sansio" if "websockets-sansio" in uvicorn.config.WS_PROTOCOLS else "auto"

def serve(args: argparse.Namespace) -> int:
    """Check the setup (exit 2 before serving), load the model and serve until a signal."""
    if not is_loopback(args.host) and not args.api_key and not args.insecure:
        print(f"error: --host {args.host} is reachable from other machines: give --api-key KEY "
              "(or --insecure to serve without one)", file=sys.stderr)
        return 2
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
    # uvicorn's own grace outlasts ours: by then every request has its answer (or its 503).
    config = uvicorn.Config(asgi, log_level=args.log_level, access_log=False, ws=WEBSOCKETS,
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
        self.timer = threading.Timer(self.timeout, self.worker.refuse_all, args=(STOPPING,))
        self.timer.daemon = True
        self.timer.start()

    def done(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer.join()
