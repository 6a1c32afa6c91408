"""Peak memory of long-audio transcription: it must not grow with the input's length.

Writes hours of synthetic speech-like audio to a FLAC file (44.1 kHz, so the streamed
resampler is in the path), transcribes it segment by segment with a model (default: a tiny
random-weight checkpoint: the pipeline's memory, not the model's, is what is measured; a
small token budget keeps the run short), and reports peak RSS per duration as JSON.

    python scripts/long_audio_memory.py --hours 1 3 [--model DIR] [--max-new-tokens 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

CHILD = """
import json, resource, sys, time
import mlx_qwen_asr  # first: it binds MLX's BLAS before mlx.core loads
import mlx.core as mx
from mlx_qwen_asr.transcribe import ASRModel
model = ASRModel.load(sys.argv[1], dtype="float32")
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
result = model.transcribe(sys.argv[2], max_new_tokens=int(sys.argv[3]), recover_loops=False)
print(json.dumps({"segments": len(result.segments), "duration_s": result.duration,
                  "wall_s": time.perf_counter() - start, "rss_after_load_bytes": loaded,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "mlx_peak_bytes": mx.get_peak_memory()}))
"""


def write_long_flac(path: Path, hours: float, rate: int = 44100) -> None:
    """Voiced syllables with pauses, written block by block (never whole in memory)."""
    rng = np.random.default_rng(0)
    block = rate * 60
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        for minute in range(int(round(hours * 60))):
            t = (np.arange(block) + minute * block) / rate
            pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
            voice = sum(np.sin(k * 2 * np.pi * pitch * t) / k for k in range(1, 6))
            envelope = np.clip(np.sin(2 * np.pi * 3.3 * t), 0, None) ** 2 * (np.sin(2 * np.pi * 0.25 * t) > -0.7)
            f.write((0.3 * voice * envelope + 0.003 * rng.standard_normal(block)).astype(np.float32))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--model", default=None, help="model directory (default: a tiny random checkpoint)")
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--work-dir", default=None)
    args = parser.parse_args(argv)

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="long-audio-"))
    work.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        from mlx_qwen_asr.testing.random_checkpoint import build_random_checkpoint
        model = str(build_random_checkpoint(work / "tiny", size="tiny", dtype="float32"))
    report = []
    for hours in args.hours:
        audio = work / f"synthetic-{hours:g}h.flac"
        if not audio.exists():
            started = time.perf_counter()
            write_long_flac(audio, hours)
            print(f"wrote {audio} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        done = subprocess.run([sys.executable, "-c", CHILD, model, str(audio), str(args.max_new_tokens)],
                              capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures.update(hours=hours, file_bytes=audio.stat().st_size)
        report.append(figures)
        print(json.dumps(figures), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
