"""A real server for the tests: `python -m mlx_qwen_asr serve` in a subprocess on a free loopback port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mlx_qwen_asr.frontends.server.uploads import FOLDER_PREFIX

ROOT = Path(__file__).resolve().parents[1].parent


class ServerProcess:
    def __init__(self, args: list[str], tmp: Path, api_key: str | None = None):
        self.tmp = tmp
        self.api_key = api_key
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.log = open(tmp / "server.log", "w+")
        command = [sys.executable, "-m", "mlx_qwen_asr", "serve", "--port", "0", *args]
        if api_key:
            command += ["--api-key", api_key]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = self._wait_for_url()

    def _wait_for_url(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.seek(0)
            found = re.search(r"on (http://[\d.:]+)/", self.log.read())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError("server exited: " + self.output())
            time.sleep(0.1)
        raise RuntimeError("server did not start: " + self.output())

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def alive(self) -> bool:
        return self.proc.poll() is None and httpx.get(self.url + "/health", headers=self.headers).status_code == 200

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))

    def upload_files(self) -> list[Path]:
        """Files left in the server's temporary folders (there should be none between requests)."""
        folders = list(Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}{self.proc.pid}-*"))
        assert len(folders) == 1, folders   # the server's own, made at start
        return [p for p in folders[0].rglob("*") if p.is_file()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
