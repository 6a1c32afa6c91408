"""Streaming cost, latency and memory over a long stream (default: real 0.6B dimensions).

Feeds looped speech in 0.5 s chunks as fast as possible and records, per 2 s step, the
compute time (it must stay below the step length to keep up with real time), when the
first words are committed, and the process RSS at every minute (it must stay flat).
Random weights never end a transcript, so each step's new tokens are capped at
`--step-tokens` (about what real speech gives per 2 s step with the 5 re-decoded tokens).

With `--live` the speech arrives at real-time pace instead (a simulated clock: audio up
to the current time is available, in 0.25 s blocks, as from a microphone) and the session
catches up (StreamingSession's `catch_up`): a step takes all audio that arrived while the
previous one ran. Reported then: how far behind the audio the text runs (when an update
appears minus the end of the audio it covers), whether that stays bounded, and how much
audio arrived per feed.

    python scripts/stream_bench.py --minutes 10 [--size 0.6b] [--model DIR] [--live] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from mlx_qwen_asr.audio.load import SAMPLE_RATE
from mlx_qwen_asr.bench import DEFAULT_WORK_DIR, provenance, random_model_dir, speech_source
from mlx_qwen_asr.stream.session import StreamingSession
from mlx_qwen_asr.transcribe import ASRModel


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live_report(steps: list[dict]) -> dict:
    """How far the text runs behind the audio with --live, per minute of audio, and whether
    that stays bounded: over the run's second half it grows by less than 1 s per minute
    (least-squares slope; region closes make single steps spike regularly)."""
    if not steps:
        return {}
    behind = np.array([s["behind_s"] for s in steps])
    audio = np.array([s["audio_s"] for s in steps])
    minute = (audio // 60).astype(int)
    per_minute = {int(m) + 1: round(float(behind[minute == m].mean()), 2) for m in np.unique(minute)}
    half = audio >= audio[-1] / 2
    slope = float(np.polyfit(audio[half], behind[half], 1)[0]) * 60 if half.sum() > 2 else float("nan")
    return {"behind_s": {"median": float(np.median(behind)), "p90": float(np.percentile(behind, 90)),
                         "max": float(behind.max())},
            "mean_behind_s_by_minute": per_minute,
            "growth_s_per_minute_second_half": slope,
            "arrived_per_feed_s": {"median": float(np.median([s["fed_s"] for s in steps])),
                                   "max": float(max(s["fed_s"] for s in steps))},
            "bounded": bool(slope < 1.0)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", default="0.6b", choices=["0.6b", "1.7b"])
    parser.add_argument("--model", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--step-tokens", type=int, default=16,
                        help="cap on new tokens per step (random weights never stop); 0 = no cap, "
                             "for a trained model such as the fixture (README quick start)")
    parser.add_argument("--audio", default=None, help="speech to loop (default: JFK from ../shared, "
                        "else synthetic)")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--unfixed-steps", type=int, default=2)
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--live", action="store_true", help="audio arrives at real-time pace; the session catches up")
    parser.add_argument("--tokens-per-second", type=float, default=4.0,
                        help="--live: text per second of speech for random weights' per-step cap "
                             "(4 is brisk English: ~180 words a minute)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    model_dir = args.model or random_model_dir(args.size, Path(args.work_dir).expanduser())
    model = ASRModel.load(model_dir, dtype=args.dtype)
    source, source_name = speech_source(args.audio)
    session = StreamingSession(model, language="English", step_seconds=args.step_seconds,
                               unfixed_steps=args.unfixed_steps, max_step_tokens=args.step_tokens or None,
                               catch_up=args.live)
    block = SAMPLE_RATE // 2 if not args.live else SAMPLE_RATE // 4
    total = int(args.minutes * 60 * SAMPLE_RATE)
    steps, rss, first_commit = [], {}, None
    fed = 0
    clock = 0.0   # --live: seconds since the stream began (arrivals at real-time pace, plus compute)
    next_minute = 1
    started = time.perf_counter()
    while fed < total:
        if args.live:
            # Everything that has arrived by now (whole blocks), or wait for the next block.
            arrived = max(fed + block, int(clock * SAMPLE_RATE) // block * block)
            clock = max(clock, arrived / SAMPLE_RATE)
            end = min(arrived, total)
        else:
            end = fed + block
        piece = np.take(source, np.arange(fed, end), mode="wrap")
        if args.live and args.step_tokens:
            # A catch-up step covers more audio, so it gets more text: what speech at
            # --tokens-per-second adds over the audio fed, plus the re-decoded unfixed tokens.
            session.max_step_tokens = round(args.tokens_per_second * len(piece) / SAMPLE_RATE) + session.unfixed_tokens
        before_steps = session.steps_in_region
        t0 = time.perf_counter()
        update = session.feed(piece)
        elapsed = time.perf_counter() - t0
        clock += elapsed
        fed = end
        behind = clock - fed / SAMPLE_RATE   # --live: when this text appears, minus the end of its audio
        if session.steps_in_region != before_steps or elapsed > 0.05:
            steps.append({"audio_s": fed / SAMPLE_RATE, "compute_s": elapsed, "fed_s": len(piece) / SAMPLE_RATE,
                          "behind_s": behind})
        if first_commit is None and update.committed:
            first_commit = {"audio_s": fed / SAMPLE_RATE, "step_compute_s": elapsed,
                            "latency_after_speech_start_s": (clock if args.live else fed / SAMPLE_RATE + elapsed)}
        if fed >= next_minute * 60 * SAMPLE_RATE:
            rss[next_minute] = rss_bytes()
            print(f"minute {next_minute}: rss {rss_bytes() / 2**20:.0f} MiB, last step {elapsed:.2f} s"
                  + (f", text {behind:.1f} s behind the audio" if args.live else ""), file=sys.stderr)
            next_minute += 1
    session.finish()
    compute = np.array([s["compute_s"] for s in steps[5:]]) if len(steps) > 5 else np.array([0.0])
    minutes = sorted(rss)
    report = {
        "model": str(model_dir), "audio": source_name, "minutes": args.minutes, "dtype": str(model.dtype),
        "step_seconds": args.step_seconds, "step_tokens_cap": args.step_tokens, "unfixed_steps": args.unfixed_steps,
        "step_compute_s": {"median": float(np.median(compute)), "p90": float(np.percentile(compute, 90)),
                           "max": float(compute.max())},
        "keeps_up_with_real_time": bool(np.percentile(compute, 90) < args.step_seconds),
        "live": live_report(steps[5:]) if args.live else None,
        "first_commit": first_commit,
        "rss_mib_by_minute": {m: round(rss[m] / 2**20, 1) for m in minutes},
        "rss_growth_first_to_last_minute": (rss[minutes[-1]] / rss[minutes[0]] - 1) if len(minutes) > 1 else 0.0,
        "wall_s": time.perf_counter() - started,
        "provenance": provenance(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
