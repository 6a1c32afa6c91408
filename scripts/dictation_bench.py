"""Live dictation (--mic --vad): does it keep up, and does the previous utterance as context help?

    python scripts/dictation_bench.py --fixture --minutes 10               # backlog, trained fixture
    python scripts/dictation_bench.py --random 0.6b --minutes 10           # backlog, random weights at 0.6B dims
    python scripts/dictation_bench.py --fixture --context-wer              # WER without / with the previous text

Backlog: a session of held-out speech (the trained fixture's clips, tests/fixtures/heldout,
in shuffled rounds with 0.6-2.5 s pauses of silence and faint noise) is played in 0.25 s
blocks through dictation.dictate, the code path of --mic --vad with the microphone
replaced by `paced_blocks` (utterances queued while the transcriber is busy are decoded
together, as there). With --clock simulated (default) the session clock runs in
real time while anything computes and jumps over the pauses when the transcriber has
nothing queued (dictation.SimulatedClock): the backlog real time would give, in the
session's compute time. Per minute of session it reports the time from each utterance's
end to its text printed and the audio waiting in the queue, and the slope of both over the
second half (bounded: about 0). Random weights produce arbitrary tokens and rarely stop,
so each utterance's budget is --tokens-per-second (default 4 with --random) times its
length, about what speech needs.

--context-wer cuts the 28 held-out clips (one round, 1-3 s pauses) into utterances and
compares WER against the references: offline per clip, dictation, and dictation with the
previous utterance's text as context (the model's system prompt).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.heldout import HELDOUT, TRAINED_MODEL, group_wers, rows  # noqa: E402

from mlx_qwen_asr.frontends.dictation import RealClock, SimulatedClock, dictate, paced_blocks  # noqa: E402
from mlx_qwen_asr.options import TranscribeOptions  # noqa: E402
from mlx_qwen_asr.testing.noisy_audio import with_gaps  # noqa: E402
from mlx_qwen_asr.transcribe import ASRModel  # noqa: E402

NOISE_DB = -65.0   # faint: the tiny fixture model invents words on louder noise kept as padding


def session_audio(minutes: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """Held-out clips in shuffled rounds with natural pauses, at least `minutes` long; (audio, clips)."""
    rng = np.random.default_rng(seed)
    files = [r["file"] for r in rows()]
    clips, total = [], 0.0
    while total < minutes * 60:
        for index in rng.permutation(len(files)):
            clip = sf.read(HELDOUT / files[index], dtype="float32")[0]
            clips.append(clip)
            total += len(clip) / 16000 + 1.5
            if total >= minutes * 60:
                break
    gaps = list(rng.uniform(0.6, 2.5, len(clips)))
    audio, _ = with_gaps(clips, gaps, noise_db=NOISE_DB, seed=seed)
    return audio[:int(minutes * 60 * 16000)], len(clips)


def budget_options(options: TranscribeOptions, tokens_per_second: float | None):
    if not tokens_per_second:
        return None
    # A batch decodes as many steps as its longest row's budget: the same steps as budgets per row.
    return lambda utterances, previous: TranscribeOptions.build(
        options, max_new_tokens=max(1, math.ceil(tokens_per_second * max(u.seconds for u in utterances))))


def progress(heard) -> None:
    """A line per utterance on stderr, so a cut-short run still says how it went."""
    print(f"{heard.utterance.end:7.1f} s: utterance {heard.utterance.index} printed {heard.latency:.2f} s after "
          f"it ended, {heard.waiting:.1f} s waiting, {len(heard.result.tokens)} tokens", file=sys.stderr, flush=True)


def waiting_at(heard, t: float) -> float:
    """Seconds of audio queued and not yet being transcribed at session time `t`."""
    return sum(h.utterance.seconds for h in heard if h.queued <= t < h.started)


def busy(heard) -> float:
    """Seconds spent transcribing (a batch's utterances share one start and end)."""
    return sum(printed - started for started, printed in {(h.started, h.printed) for h in heard})


def slope(xs, ys) -> float:
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 2 else 0.0


def backlog(model: ASRModel, args) -> dict:
    audio, clips = session_audio(args.minutes, args.seed)
    clock = SimulatedClock() if args.clock == "simulated" else RealClock()
    options = TranscribeOptions(language=args.language)
    started = time.perf_counter()
    heard = dictate(model, options, paced_blocks(audio, clock), clock=clock, on_heard=progress,
                    options_for=budget_options(options, args.tokens_per_second))
    wall = time.perf_counter() - started
    events = sorted({h.started for h in heard} | {h.printed for h in heard})   # after each take and each print
    minutes = []
    for m in range(int(math.ceil(len(audio) / 16000 / 60))):
        ended = [h for h in heard if m * 60 <= h.utterance.end < (m + 1) * 60]
        waits = [waiting_at(heard, t) for t in events if m * 60 <= t < (m + 1) * 60] or [0.0]
        latencies = [h.latency for h in ended] or [0.0]
        minutes.append({"minute": m + 1, "utterances": len(ended),
                        "latency_mean_s": round(float(np.mean(latencies)), 2),
                        "latency_max_s": round(max(latencies), 2),
                        "waiting_max_s": round(max(waits), 2),
                        "compute_s": round(busy([h for h in heard if m * 60 <= h.started < (m + 1) * 60]), 1)})
    half = len(audio) / 16000 / 2
    second = [h for h in heard if h.utterance.end >= half]
    speech = sum(h.utterance.seconds for h in heard)
    compute = busy(heard)
    return {
        "model": str(model.path), "clock": args.clock, "session_s": round(len(audio) / 16000, 1), "clips": clips,
        "utterances": len(heard), "batches": len({h.started for h in heard}), "speech_s": round(speech, 1),
        "compute_s": round(compute, 1),
        "compute_per_speech_second": round(compute / speech, 3) if speech else None,
        "tokens": sum(len(h.result.tokens) for h in heard), "tokens_per_second_budget": args.tokens_per_second,
        "wall_s": round(wall, 1), "per_minute": minutes,
        "latency_slope_s_per_min_second_half": round(60 * slope([h.utterance.end for h in second],
                                                                [h.latency for h in second]), 3),
        "waiting_slope_s_per_min_second_half": round(60 * slope(
            [t for t in events if t >= half], [waiting_at(heard, t) for t in events if t >= half]), 3),
        "latency_max_s": round(max(h.latency for h in heard), 2) if heard else None,
        "load_average": list(os.getloadavg()),
    }


def context_wer(model: ASRModel, args) -> dict:
    files = [r["file"] for r in rows()]
    clips = [sf.read(HELDOUT / f, dtype="float32")[0] for f in files]
    gaps = list(np.random.default_rng(args.seed).uniform(1.0, 3.0, len(clips)))
    audio, starts = with_gaps(clips, gaps, noise_db=NOISE_DB, seed=args.seed)
    bounds = [(s, s + len(c) / 16000) for s, c in zip(starts, clips)]
    options = TranscribeOptions(language=args.language)
    with_previous = lambda utterances, previous: TranscribeOptions.build(options, context=previous)  # noqa: E731
    report = {"offline_per_clip": group_wers({f: model.transcribe(c, options, sample_rate=16000).text
                                              for f, c in zip(files, clips)})}
    for name, options_for in (("dictation", None), ("dictation_previous_as_context", with_previous)):
        heard = dictate(model, options, [audio], options_for=options_for, batch_size=1)   # previous = the one before
        texts = {f: [] for f in files}
        for h in heard:   # each utterance to the clip it overlaps most
            overlap = [min(h.utterance.end, b) - max(h.utterance.start, a) for a, b in bounds]
            texts[files[int(np.argmax(overlap))]].append(h.result.text)
        report[name] = group_wers({f: " ".join(t) for f, t in texts.items()})
        report[name]["utterances"] = len(heard)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--fixture", action="store_true", help="the trained fixture model (tests/fixtures)")
    which.add_argument("--random", choices=["0.6b", "1.7b"], help="a random-weight checkpoint at these dims")
    which.add_argument("--model", help="a model directory")
    parser.add_argument("--work-dir", default=str(Path("~/.cache/mlx_qwen_asr/bench").expanduser()),
                        help="where --random's checkpoint is built (once)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clock", choices=["simulated", "real"], default="simulated")
    parser.add_argument("--tokens-per-second", type=float, default=None,
                        help="per-utterance budget: this many tokens per second of audio (default: 4 with --random)")
    parser.add_argument("--language", default="English")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--context-wer", action="store_true")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    if args.random and args.tokens_per_second is None:
        args.tokens_per_second = 4.0
    with tempfile.TemporaryDirectory() as tmp:
        if args.fixture:
            from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

            model_dir = expand_compact(TRAINED_MODEL, Path(tmp) / "fixture")
        elif args.random:
            from mlx_qwen_asr.bench import random_model_dir

            model_dir = random_model_dir(args.random, Path(args.work_dir).expanduser())
        else:
            model_dir = args.model
        model = ASRModel.load(model_dir, dtype="float32")
        report = context_wer(model, args) if args.context_wer else backlog(model, args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
