"""Stage-by-stage parity with the official implementation at real model dimensions.

Builds (or reuses) a random-weight checkpoint at 0.6B or 1.7B dimensions in the Hugging Face
layout (bf16 on disk, as published), loads it on both sides in float32, and prints the error
figures of every stage for an 11 s clip as JSON. The official side runs out of process in
its own environment (mlx_qwen_asr/testing/official_env.py; created on first use).

    python scripts/parity_report.py --size 0.6b [--audio clip.wav] [--work-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mlx_qwen_asr.testing import official, parity
from mlx_qwen_asr.bench import DEFAULT_WORK_DIR, clip, random_model_dir, speech_source
from mlx_qwen_asr.transcribe import ASRModel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="0.6b", choices=["0.6b", "1.7b"])
    parser.add_argument("--audio", default=None, help="speech file (default: shared JFK clip or synthesized)")
    parser.add_argument("--seconds", type=float, default=11.0)
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)

    model_dir = random_model_dir(args.size, Path(args.work_dir).expanduser())
    source, source_name = speech_source(args.audio)
    audio = clip(source, args.seconds)
    start = time.perf_counter()
    ours = ASRModel.load(model_dir, dtype="float32")
    reference = official.load_official(model_dir, dtype="float32")
    print(f"loaded both in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    report = {"size": args.size, "model_dir": str(model_dir), "audio": source_name,
              "seconds": args.seconds, "dtype": "float32"}
    for stage, compare in [
        ("mel", lambda: parity.compare_mel(ours, reference, audio)),
        ("encoder", lambda: parity.compare_encoder(ours, reference, audio)),
        ("prompt_ids", lambda: parity.compare_prompt_ids(ours, reference, audio)),
        ("prefill_logits", lambda: parity.compare_prefill(ours, reference, audio)),
        ("teacher_forced_32", lambda: parity.compare_teacher_forced(ours, reference, audio, steps=32)),
        ("greedy_32", lambda: parity.compare_greedy(ours, reference, audio, tokens=32)),
    ]:
        start = time.perf_counter()
        figures = compare()
        figures.pop("relative_errors", None)
        report[stage] = figures
        print(f"{stage}: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
