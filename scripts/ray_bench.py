"""What a folder run on Ray costs and what more machines would give (docs/performance.md).

Runs one folder of held-out clips (copies of tests/fixtures/heldout/short_*.flac) locally
and on a local Ray cluster with 1 and 2 workers, and reports as JSON:

* per worker: files/s and audio seconds per second while transcribing (startup excluded);
* startup: cluster start plus every worker loading the model;
* driver overhead per file: the driver process's CPU time (every thread: writing outputs
  and the manifest, Ray's own client threads) while the workers transcribe, per file, and
  the round trip of an empty call to a warm worker.

    python scripts/ray_bench.py [--files 40] [--size tiny|0.6b] [--max-new-tokens 32]

`tiny` is the trained test fixture (fast: the driver's share shows); `0.6b` a random-weight
checkpoint at the real dims with a fixed token budget (what a worker really costs).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlx_qwen_asr.frontends import cluster  # noqa: E402
from mlx_qwen_asr.frontends.folder import transcribe_folder  # noqa: E402

HELDOUT = REPO / "tests" / "fixtures" / "heldout"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_model(size: str, work: Path) -> Path:
    if size == "tiny":
        from mlx_qwen_asr.testing.compact_checkpoint import expand_compact
        return expand_compact(REPO / "tests" / "fixtures" / "tiny_asr.npz", work / "model")
    from mlx_qwen_asr.testing.random_checkpoint import model_config_dict, random_weights, write_checkpoint
    config = model_config_dict(size)
    return write_checkpoint(work / "model", config, random_weights(config, seed=0), dtype="float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--size", choices=["tiny", "0.6b"], default="tiny")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="fixed budget per clip (default: the model's own stop; give one for 0.6b)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    try:
        clips = sorted(HELDOUT.glob("short_*.flac"))
        inputs = work / "in"
        inputs.mkdir()
        for i in range(args.files):
            shutil.copy(clips[i % len(clips)], inputs / f"{i:04d}_{clips[i % len(clips)].name}")
        model = build_model(args.size, work)
        options = dict(model=model, dtype="float32", quiet=True, max_new_tokens=args.max_new_tokens,
                       repetition_guard=args.max_new_tokens is None, recover_loops=args.max_new_tokens is None)

        driver = {}
        original = cluster.RayWorkers.transcribe_groups

        def timed(self, *args):
            start = cpu_seconds()
            original(self, *args)
            driver["cpu"] = cpu_seconds() - start
            warm = self.actors[0]
            self.ray.get(warm.ready.remote())
            start = time.perf_counter()
            for _ in range(50):
                self.ray.get(warm.ready.remote())
            driver["round_trip"] = (time.perf_counter() - start) / 50

        cluster.RayWorkers.transcribe_groups = timed
        report = {"files": args.files, "size": args.size, "max_new_tokens": args.max_new_tokens, "runs": {}}
        for name, ray, workers in (("local", None, None), ("ray_1_worker", True, 1), ("ray_2_workers", True, 2)):
            driver.clear()
            summary = transcribe_folder(inputs, work / f"out-{name}", ray=ray, ray_workers=workers, **options)
            seconds = summary["transcribe_seconds"]
            run = {"wall_s": summary["wall_seconds"], "transcribe_s": seconds,
                   "startup_s": round(summary["wall_seconds"] - seconds, 2),
                   "files_per_s": round(summary["done"] / seconds, 3),
                   "audio_s_per_s": round(summary["audio_seconds"] / seconds, 2)}
            if driver:
                run["driver_cpu_ms_per_file"] = round(1000 * driver["cpu"] / summary["done"], 2)
                run["round_trip_ms"] = round(1000 * driver["round_trip"], 2)
            report["runs"][name] = run
            print(name, run, file=sys.stderr)
        print(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
