"""A local server other apps can use: OpenAI's audio API, live transcription over a WebSocket, a web page.

    python -m mlx_qwen_asr serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key KEY]

Needs the `server` extra (pip install 'mlx-qwen-asr[server]'). worker.py runs all MLX work
on one thread and batches concurrent requests; app.py is the HTTP API and page, realtime.py
the WebSocket sessions, security.py the key, Host/Origin and size checks.
"""

from .main import main

__all__ = ["main"]
