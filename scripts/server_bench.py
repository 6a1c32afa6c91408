"""Server throughput: 1 against 8 concurrent clients (by default), as audio seconds per wall
second, with p50/p95 request latency, and the server's transcripts checked against the CLI's.

    python scripts/server_bench.py --fixture                 # the trained tiny fixture model
    python scripts/server_bench.py --random-0.6b --max-new-tokens 32 --requests 16

`--fixture` expands tests/fixtures/tiny_asr.npz; `--random-0.6b` writes a random-weight
checkpoint at Qwen3-ASR-0.6B's dimensions (its text is gibberish and never ends by itself,
so give it a token budget); `--model DIR` serves any model folder. The clips are the
held-out fixture clips (short and medium, 2-15 s), cycled. Each run starts a fresh server
(`python -m mlx_qwen_asr serve --port 0`), sends one warm-up request, then the requests.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's package, not another installed one
HELDOUT = ROOT / "tests" / "fixtures" / "heldout"


def start_server(model: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "mlx_qwen_asr", "serve", "--port", "0", "--model", model, *extra]
    proc = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stderr:
        found = re.search(r"on (http://[\d.:]+)/", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()   # drain
            return proc, found.group(1)
        print(line, end="", file=sys.stderr)
    raise SystemExit("the server did not start")


def cli_texts(model: str, clips: list[Path], extra: list[str]) -> dict[str, str]:
    """What `python -m mlx_qwen_asr FILE` prints for each file (one run per file: text of
    random weights can hold newlines, so several files' lines could not be told apart)."""
    texts = {}
    for clip in clips:
        run = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(clip), "--model", model, *extra],
                             cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if run.returncode != 0:
            raise SystemExit("CLI failed: " + run.stderr)
        texts[clip.name] = run.stdout.removesuffix("\n")
    return texts


def run_clients(url: str, clips: list[Path], clients: int, requests: int) -> dict:
    data = {p.name: p.read_bytes() for p in clips}
    durations = {p.name: sf.info(p).duration for p in clips}
    names = [clips[i % len(clips)].name for i in range(requests)]
    latencies: list[float] = []
    texts: dict[str, set] = {}
    lock = threading.Lock()
    next_index = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=3600) as http:
            while True:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                start = time.perf_counter()
                response = http.post(url + "/v1/audio/transcriptions", data={"model": "m"},
                                     files={"file": (names[i], data[names[i]])})
                response.raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - start)
                    texts.setdefault(names[i], set()).add(response.json()["text"])

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    latencies.sort()
    audio = sum(durations[n] for n in names)
    return {"clients": clients, "requests": requests, "audio_s": round(audio, 2), "wall_s": round(wall, 2),
            "throughput": round(audio / wall, 2),
            "p50_s": round(latencies[len(latencies) // 2], 3),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 3),
            "texts": texts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model folder (or hub id)")
    which.add_argument("--fixture", action="store_true", help="the trained tiny fixture model")
    which.add_argument("--random-0.6b", dest="random", action="store_true", help="random weights at 0.6B dims")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=48, help="requests per run (default: 48)")
    parser.add_argument("--clips", type=int, default=None, help="use only the first N held-out clips")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="server-bench-"))
    if args.fixture:
        from mlx_qwen_asr.testing.compact_checkpoint import expand_compact
        model = str(expand_compact(ROOT / "tests" / "fixtures" / "tiny_asr.npz", work / "model"))
    elif args.random:
        subprocess.run([sys.executable, "-m", "mlx_qwen_asr.testing.random_checkpoint", "--size", "0.6b",
                        str(work / "model")], check=True, cwd=ROOT)
        model = str(work / "model")
    else:
        model = args.model
    extra = ["--dtype", args.dtype] + (["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else [])
    clips = sorted(p for p in HELDOUT.glob("*.flac") if not p.name.startswith("long"))[:args.clips]
    reference = cli_texts(model, clips, extra)

    figures = []
    for clients in args.clients:
        proc, url = start_server(model, extra + ["--max-queue", str(max(64, clients * 2))])
        try:
            run_clients(url, clips[:1], 1, 1)   # warm-up
            result = run_clients(url, clips, clients, args.requests)
        finally:
            proc.terminate()
            proc.wait()
        texts = result.pop("texts")
        result["identical_to_cli"] = all(t == {reference[n]} for n, t in texts.items())
        figures.append(result)
        print(json.dumps(result), flush=True)
    base = figures[0]["throughput"]
    for f in figures[1:]:
        print(f"{f['clients']} clients: {f['throughput'] / base:.2f}x the throughput of {figures[0]['clients']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0 if all(f["identical_to_cli"] for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
