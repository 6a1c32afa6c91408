"""Memory and speed of one model recipe: load it, transcribe a 3 s clip twice, report.

    python scripts/footprint_bench.py MODEL_DIR [--dtype float32] [--low-memory]

Run one process per recipe (the process's peak RSS is the figure): the float checkpoint,
`--dtype bfloat16`, a directory converted with `python -m mlx_qwen_asr.convert --bits 8`
or `--bits 4`, or `--low-memory` (the preset's recipe for this device). The clip decodes
exactly 16 tokens (budget given, repetition guard off; random weights never emit EOS).
Prints one JSON line: load seconds, the faster of the two runs and its stage timings, peak
RSS and MLX's peak allocation, the weight files' size on disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # this checkout's package

import mlx_qwen_asr  # noqa: E402,F401  (first: it binds MLX's BLAS before mlx.core loads)
import mlx.core as mx  # noqa: E402

from mlx_qwen_asr import ASRModel  # noqa: E402
from mlx_qwen_asr.bench import clip, disk_bytes, speech_source  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--low-memory", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model = ASRModel.load(args.model, dtype=args.dtype, low_memory=args.low_memory)
    load_s = time.perf_counter() - start
    audio = clip(speech_source(None)[0], 3.0)
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        result = model.transcribe(audio, sample_rate=16000, max_new_tokens=16, repetition_guard=False,
                                  recover_loops=False)
        runs.append((time.perf_counter() - start, result.timings))
    seconds, timings = min(runs, key=lambda run: run[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(json.dumps({
        "model": str(model.path), "dtype": str(model.dtype), "quantize": model.quantize,
        "low_memory": args.low_memory, "disk_bytes": disk_bytes(Path(model.path)), "load_s": load_s,
        "clip3_16_tokens_s": seconds, "timings": timings, "rss_peak_bytes": peak,
        "mlx_peak_bytes": mx.get_peak_memory(),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
