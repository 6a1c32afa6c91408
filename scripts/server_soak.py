"""Soak test of the server: N minutes (default 10) of mixed good, bad and abandoned
requests and live sessions, with a line of figures each minute.

    python scripts/server_soak.py                      # the trained fixture, 10 minutes, 6 clients
    python scripts/server_soak.py --minutes 3 --clients 4 --json soak.json

Each client loops over a seeded random mix: good uploads (held-out clips, each transcript
checked against the in-process model's), bad ones (corrupt bytes, a lying WAV header, a
huge prompt, a missing field: each must be its 4xx in OpenAI's error shape), abandoned ones
(the client gives up after 0.2-1.5 s), streamed ones (a third dropped after the first
event) and realtime sessions (appends of 100 ms, commit; a third dropped mid-item). Each
minute: requests served, answers by status, failures (a 5xx, a wrong transcript, a status
other than the expected one), p50/p95 latency of good uploads, the server's RSS and the
load average. At the end the server gets SIGTERM and must exit 0 leaving no upload behind.
Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's package, not another installed one
HELDOUT = ROOT / "tests" / "fixtures" / "heldout"

from mlx_qwen_asr.audio.load import load_audio  # noqa: E402
from mlx_qwen_asr.audio.resample import resample  # noqa: E402
from mlx_qwen_asr.frontends.server.uploads import FOLDER_PREFIX  # noqa: E402

KINDS = {"good": 45, "bad": 15, "abandoned": 15, "stream": 10, "realtime": 15}


def lying_wav() -> bytes:
    """A 16-bit WAV whose header claims 2,147,483,647 Hz (once a 500 after an 8 GiB allocation)."""
    rate = 2_147_483_647
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 64) + b"\0" * 64
    return b"RIFF" + struct.pack("<I", len(body)) + body


def start_server(model: str, dtype: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "mlx_qwen_asr", "serve", "--port", "0", "--model", model, "--dtype", dtype,
               "--max-audio-seconds", "120", "--max-upload-mb", "8"]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stderr:
        found = re.search(r"on (http://[\d.:]+)/", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()   # drain
            return proc, found.group(1)
        print(line, end="", file=sys.stderr)
    raise SystemExit("the server did not start")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


class Soak:
    def __init__(self, url: str, clips: list[Path], expected: dict[str, str], seed: int):
        self.url, self.clips, self.expected = url, clips, expected
        self.audio = {clip.name: clip.read_bytes() for clip in clips}
        self.pcm = {clip.name: (np.clip(resample(load_audio(clip), 16000, 24000), -1, 1) * 32767)
                    .astype("<i2").tobytes() for clip in clips}
        self.events: list[tuple[float, str, str, float, bool]] = []   # (time, kind, status, seconds, ok)
        self.lock = threading.Lock()
        self.seed = seed

    def record(self, kind: str, status, seconds: float, ok: bool, note: str = "") -> None:
        with self.lock:
            self.events.append((time.monotonic(), kind, str(status), seconds, ok))
        if not ok:
            print(f"FAILED {kind}: {status} {note[:200]}", file=sys.stderr, flush=True)

    def client(self, index: int, until: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        while time.monotonic() < until:
            kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
            clip = rng.choice(self.clips).name
            started = time.monotonic()
            try:
                getattr(self, kind)(rng, clip, started)
            except Exception as exc:  # noqa: BLE001 - a soak counts every surprise, then goes on
                self.record(kind, type(exc).__name__, time.monotonic() - started, False, str(exc))

    def post(self, files, data=None, timeout: float = 300.0) -> httpx.Response:
        return httpx.post(self.url + "/v1/audio/transcriptions", data={"model": "m", **(data or {})}, files=files,
                          timeout=timeout)

    def good(self, rng, clip, started) -> None:
        response = self.post({"file": (clip, self.audio[clip])})
        ok = response.status_code == 200 and response.json()["text"] == self.expected[clip]
        self.record("good", response.status_code, time.monotonic() - started, ok, response.text)

    def bad(self, rng, clip, started) -> None:
        case = rng.choice(["corrupt", "header", "prompt", "missing"])
        files = {"file": ("x.wav", {"corrupt": bytes(rng.getrandbits(8) for _ in range(4000)),
                                    "header": lying_wav()}.get(case, self.audio[clip]))}
        data = {"prompt": "names and terms " * 6000} if case == "prompt" else None
        if case == "missing":
            response = httpx.post(self.url + "/v1/audio/transcriptions", files=files, timeout=60)
        else:
            response = self.post(files, data)
        ok = response.status_code == 400 and set(response.json()["error"]) == {"message", "type", "param", "code"}
        self.record("bad", response.status_code, time.monotonic() - started, ok, response.text)

    def abandoned(self, rng, clip, started) -> None:
        try:
            response = self.post({"file": (clip, self.audio[clip])}, timeout=rng.uniform(0.2, 1.5))
        except httpx.TimeoutException:
            self.record("abandoned", "gave up", time.monotonic() - started, True)
            return
        ok = response.status_code == 200 and response.json()["text"] == self.expected[clip]
        self.record("abandoned", response.status_code, time.monotonic() - started, ok, response.text)

    def stream(self, rng, clip, started) -> None:
        drop = rng.random() < 1 / 3
        with httpx.stream("POST", self.url + "/v1/audio/transcriptions", data={"model": "m", "stream": "true"},
                          files={"file": (clip, self.audio[clip])}, timeout=300) as response:
            events = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if drop:
                        break
        if drop:
            self.record("stream", "dropped", time.monotonic() - started, response.status_code == 200)
            return
        ok = events and events[-1].get("type") == "transcript.text.done" and events[-1]["text"] == self.expected[clip]
        self.record("stream", response.status_code, time.monotonic() - started, bool(ok), str(events[-1:]))

    def realtime(self, rng, clip, started) -> None:
        from websockets.sync.client import connect

        drop = rng.random() < 1 / 3
        pcm, step = self.pcm[clip], 4800   # 100 ms of 24 kHz PCM16
        with connect(self.url.replace("http://", "ws://") + "/v1/realtime", max_size=None) as ws:
            assert json.loads(ws.recv())["type"] == "session.created"
            chunks = range(0, len(pcm) // 2 if drop else len(pcm), step)
            for i in chunks:
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(pcm[i:i + step]).decode()}))
            if drop:
                self.record("realtime", "dropped", time.monotonic() - started, True)
                return
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while True:
                event = json.loads(ws.recv())
                if event["type"] in ("conversation.item.input_audio_transcription.completed", "error"):
                    break
        ok = event["type"] != "error" and bool(event.get("transcript"))
        self.record("realtime", "completed" if ok else "error", time.monotonic() - started, ok, str(event))

    def minute(self, since: float, until: float) -> dict:
        with self.lock:
            window = [e for e in self.events if since <= e[0] < until]
        good = sorted(e[3] for e in window if e[1] == "good" and e[2] == "200")
        return {"requests": len(window), "served": sum(e[2] in ("200", "completed") for e in window),
                "by_status": dict(sorted(Counter(f"{e[1]} {e[2]}" for e in window).items())),
                "failures": sum(not e[4] for e in window),
                "p50_s": round(statistics.median(good), 3) if good else None,
                "p95_s": round(good[max(0, int(len(good) * 0.95) - 1)], 3) if good else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model folder (default: the trained fixture, expanded here)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from mlx_qwen_asr.transcribe import ASRModel

    model = args.model
    if model is None:
        from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

        model = str(expand_compact(ROOT / "tests" / "fixtures" / "tiny_asr.npz",
                                   Path(tempfile.mkdtemp(prefix="soak-model-"))))
    clips = sorted(HELDOUT.glob("short_*.flac"))[:8] + sorted(HELDOUT.glob("medium_*.flac"))[:2] + \
        sorted(HELDOUT.glob("long_*.flac"))[:1]
    reference = ASRModel.load(model, dtype=args.dtype)
    expected = {clip.name: reference.transcribe(clip).text for clip in clips}
    del reference

    proc, url = start_server(model, args.dtype)
    soak = Soak(url, clips, expected, args.seed)
    start = time.monotonic()
    until = start + args.minutes * 60
    threads = [threading.Thread(target=soak.client, args=(i, until), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    minutes = []
    print(f"soak: {args.clients} clients for {args.minutes:g} min against {url} (pid {proc.pid})", flush=True)
    edge = start
    while edge < until:
        time.sleep(max(0.0, min(edge + 60, until) - time.monotonic()))
        figures = {"minute": len(minutes) + 1, **soak.minute(edge, min(edge + 60, until)),
                   "rss_mb": round(rss_mb(proc.pid), 1), "loadavg": os.getloadavg()[0]}
        minutes.append(figures)
        print(json.dumps(figures), flush=True)
        edge += 60
    for thread in threads:
        thread.join(300)
    total = soak.minute(start, time.monotonic() + 1)
    alive = httpx.get(url + "/health", timeout=30).status_code == 200
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(120)
    leftovers = list(Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}{proc.pid}-*"))
    summary = {"total": total, "alive_at_end": alive, "exit_code_after_sigterm": code,
               "upload_folders_left": len(leftovers), "minutes": minutes}
    print(json.dumps({k: v for k, v in summary.items() if k != "minutes"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 0 if total["failures"] == 0 and alive and code == 0 and not leftovers else 1


if __name__ == "__main__":
    raise SystemExit(main())
