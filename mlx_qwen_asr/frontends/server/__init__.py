"""A local server other apps can use: OpenAI's audio API, live transcription over a WebSocket, a web page.

    python -m mlx_qwen_asr serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key KEY]

Needs the `server` extra (pip install 'mlx-qwen-asr[server]'). main.py is the command line
and the process (uvicorn, signals); worker.py runs all MLX work on one thread and batches
concurrent requests; app.py holds the routes, protocol.py the transcription request and the
API's errors, serving.py a request's work; realtime.py the WebSocket sessions; security.py
the key, Host/Origin and size checks.
"""
