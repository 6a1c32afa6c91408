"""`python -m mlx_qwen_asr serve`: the options, and the server extra checked (exit 2 without
it) before process.py, which needs it, is imported."""

from __future__ import annotations

import argparse
import sys

from ...aligner import DEFAULT_ALIGNER
from ..args import OneLineParser, positive_float, positive_int, program_name
from ...batch import DEFAULT_BATCH_SIZE
from ...options import DEFAULT_MODEL

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
    from .process import serve   # here, not at the top: it needs the extra checked above

    return serve(args)
