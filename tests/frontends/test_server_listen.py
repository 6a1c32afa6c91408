"""`serve` announces its URL only once the socket accepts connections.

scripts/server_bench.py (and any client that reads the announced URL) connects at once:
a socket bound but not yet listening refuses it (ECONNREFUSED), which failed the
benchmark's second server now and then under load."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

ROOT = Path(__file__).resolve().parents[1].parent


def test_announced_url_accepts_a_connection_at_once(tmp_path):
    model = expand_compact(ROOT / "tests" / "fixtures" / "tiny_asr.npz", tmp_path / "model")
    proc = subprocess.Popen([sys.executable, "-m", "mlx_qwen_asr", "serve", "--port", "0", "--model", str(model)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            found = re.search(r"on http://([\d.]+):(\d+)/", line)
            if found:
                break
        else:
            raise AssertionError("the server exited without announcing its URL")
        # No wait, no retry: the announcement itself must mean "ready to connect".
        with socket.create_connection((found.group(1), int(found.group(2))), timeout=10):
            pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)
