"""Every pipeline's exact outputs as JSON, to prove a refactor changes none of them.

    python scripts/compare_outputs.py --out before.json      # on the old code
    python scripts/compare_outputs.py --out after.json       # on the new code
    cmp before.json after.json                               # must be identical

On the trained fixture (tests/fixtures/tiny_asr.npz, float32) over the held-out clips:
offline, batched (batch_size 6), streamed (0.5 s pieces), 8-bit, word timestamps with the
tiny aligner (offline and streamed); on a random-weight checkpoint at 0.6B dims (bfloat16):
32 greedy tokens on an 11 s clip, offline and batched. Tokens, texts, segment bounds,
finish reasons and word times are recorded exactly; timings are not.
`--clips N` keeps the first N held-out clips of each kind (short, medium, long).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]   # this checkout's package; tests/support/heldout.py

from support.heldout import HELDOUT, TRAINED_ALIGNER, TRAINED_MODEL, rows  # noqa: E402

from mlx_qwen_asr import ASRModel  # noqa: E402
from mlx_qwen_asr.audio.load import load_audio  # noqa: E402
from mlx_qwen_asr.stream.session import StreamingSession  # noqa: E402

try:   # the test-support modules' home after the refactor, then before it
    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact
    from mlx_qwen_asr.testing.random_checkpoint import build_random_checkpoint
except ImportError:
    from mlx_qwen_asr.compact_checkpoint import expand_compact
    from mlx_qwen_asr.random_checkpoint import build_random_checkpoint


def transcription(result) -> dict:
    return {"text": result.text, "language": result.language, "finish_reason": result.finish_reason,
            "tokens": result.tokens, "raw": result.raw,
            "segments": [segment(s) for s in result.segments]}


def segment(s) -> dict:
    out = {"start": s.start, "end": s.end, "text": s.text, "language": s.language,
           "finish_reason": s.finish_reason, "tokens": s.tokens, "retries": s.retries, "remedy": s.remedy}
    if s.words is not None:
        out["words"] = words(s.words)
    return out


def words(timed) -> list:
    return [[w.word, w.start, w.end, list(w.span) if w.span is not None else None] for w in timed]


def streamed(model, path: Path, chunk: int, **options) -> dict:
    audio = load_audio(path)
    session = StreamingSession(model, **options)
    updates = [session.feed(audio[i:i + chunk]) for i in range(0, len(audio), chunk)]
    updates.append(session.finish())
    return {"updates": [[u.committed, u.partial, u.language] for u in updates],
            "words": words(updates[-1].words) if updates[-1].words is not None else None}


def fixture_outputs(work: Path, picked: list[dict]) -> dict:
    checkpoint = expand_compact(TRAINED_MODEL, work / "tiny-trained")
    aligner = expand_compact(TRAINED_ALIGNER, work / "tiny-aligner")
    paths = [HELDOUT / r["file"] for r in picked]
    model = ASRModel.load(checkpoint, dtype="float32")
    out = {"offline": {p.name: transcription(model.transcribe(p)) for p in paths}}
    out["batched"] = {p.name: transcription(r) for p, r in zip(paths, model.transcribe_many(paths, batch_size=6))}
    out["streamed"] = {p.name: streamed(model, p, 8000) for p in paths}
    out["word_timestamps"] = {p.name: transcription(model.transcribe(p, word_timestamps=True, aligner=aligner))
                              for p in paths}
    out["streamed_words"] = {p.name: streamed(model, p, 8000, word_timestamps=True, aligner=aligner)
                             for p in paths[:3]}
    quantized = ASRModel.load(checkpoint, dtype="float32", quantize=8)
    out["8bit"] = {p.name: transcription(quantized.transcribe(p)) for p in paths}
    return out


def random_outputs(work: Path) -> dict:
    # The synthesized tokenizer always: the real one's presence must not change the prompt.
    checkpoint = build_random_checkpoint(work / "random-0.6b", size="0.6b", dtype="bfloat16", tokenizer_source=False)
    model = ASRModel.load(checkpoint)
    audio = np.concatenate([load_audio(HELDOUT / "long_01.flac"), load_audio(HELDOUT / "long_02.flac")])
    clip11 = audio[:11 * 16000]
    forced = {"max_new_tokens": 32, "repetition_guard": False, "recover_loops": False}
    offline = model.transcribe(clip11, sample_rate=16000, **forced)
    batched = model.transcribe_many([clip11, audio[16000:7 * 16000]], sample_rate=16000, batch_size=2, **forced)
    return {"offline": transcription(offline), "batched": [transcription(r) for r in batched]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--clips", type=int, default=None, help="first N held-out clips of each kind")
    p.add_argument("--no-random", action="store_true", help="skip the 0.6B-dim random checkpoint")
    args = p.parse_args(argv)
    all_rows = rows()
    picked = [r for kind in ("short", "medium", "long")
              for r in [r for r in all_rows if r["kind"] == kind][:args.clips]]
    with tempfile.TemporaryDirectory() as tmp:
        report = {"clips": [r["file"] for r in picked], "fixture": fixture_outputs(Path(tmp), picked)}
        if not args.no_random:
            report["random_0.6b"] = random_outputs(Path(tmp))
    Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(picked)} clips" + ("" if args.no_random else " + random 0.6B"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
