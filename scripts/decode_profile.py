"""Where a batched decoding step's time goes, for B = 1, 2, 4, 8 rows (held-out clips).

    python scripts/decode_profile.py --fixture
    python scripts/decode_profile.py --model DIR          # e.g. a random 0.6B checkpoint

Per B: the batch's mel + encoder and its prefill (once per batch), then one decoding step
split into the decoder layers (with the key/value cache update) and the head (logits over
the whole vocabulary + argmax), and a whole step; each the fastest of `--repeat` runs, in
ms, each evaluated on its own (no overlap between steps).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's package

import mlx_qwen_asr  # noqa: E402,F401  (first: it binds MLX's BLAS before mlx.core loads)
import mlx.core as mx  # noqa: E402

from mlx_qwen_asr import ASRModel  # noqa: E402
from mlx_qwen_asr.audio.load import load_audio  # noqa: E402
from mlx_qwen_asr.decoding import prefill_rows  # noqa: E402
from mlx_qwen_asr.model_input import asr_prompts  # noqa: E402

HELDOUT = ROOT / "tests" / "fixtures" / "heldout"


def fastest_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def profile(model: ASRModel, clips: list, rows: int, repeat: int) -> dict:
    network = model.network
    start = time.perf_counter()
    prompts = [p[1] for p in asr_prompts(model, clips[:rows], [""] * rows, [None] * rows)]
    mx.eval(prompts)
    encode_ms = 1000 * (time.perf_counter() - start)
    lengths = [p.shape[0] for p in prompts]
    longest = max(lengths)
    length = mx.array(lengths)[:, None, None, None]
    start = time.perf_counter()
    _, cache = prefill_rows(network, prompts, longest + 3 * repeat + 8)
    prefill_ms = 1000 * (time.perf_counter() - start)
    tokens = mx.zeros((rows,), dtype=mx.uint32)
    step = [0]

    def layers() -> mx.array:   # as decoding.greedy_decode_batch's step
        keys = mx.arange(longest + step[0] + 1)[None, None, None, :]
        mask = (keys < length) | (keys >= longest)
        positions = mx.array([n + step[0] for n in lengths])
        hidden = network.decoder(network.embed_tokens(tokens)[:, None, :], cache, mask=mask, positions=positions)
        mx.eval(hidden, cache.state())
        step[0] += 1
        return hidden

    hidden = layers()
    return {"rows": rows, "prompt_tokens": lengths, "encode_ms": round(encode_ms), "prefill_ms": round(prefill_ms),
            "layers_ms": fastest_ms(layers, repeat),
            "head_ms": fastest_ms(lambda: mx.eval(mx.argmax(network.logits(hidden[:, -1, :]), axis=-1)), repeat),
            "step_ms": fastest_ms(lambda: mx.eval(mx.argmax(network.logits(layers()[:, -1, :]), axis=-1)), repeat)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model folder")
    which.add_argument("--fixture", action="store_true", help="the trained tiny fixture model")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    if args.fixture:
        from mlx_qwen_asr.testing.compact_checkpoint import expand_compact
        model_dir = expand_compact(ROOT / "tests" / "fixtures" / "tiny_asr.npz", Path(tempfile.mkdtemp()) / "model")
    else:
        model_dir = args.model
    model = ASRModel.load(model_dir, dtype=args.dtype)
    names = sorted(p for p in HELDOUT.glob("*.flac") if not p.name.startswith("long"))[:max(args.rows)]
    clips = [load_audio(p) for p in names]
    profile(model, clips, 1, 2)   # warm-up
    base = None
    for rows in args.rows:
        r = profile(model, clips, rows, args.repeat)
        base = base or r["step_ms"]
        print(f"B={rows}: encoder {r['encode_ms']} ms, prefill {r['prefill_ms']} ms (prompts {r['prompt_tokens']}); "
              f"step {r['step_ms']:.1f} ms = layers {r['layers_ms']:.1f} + head {r['head_ms']:.1f}; "
              f"{r['step_ms'] / rows:.1f} ms per row, {r['step_ms'] / base:.2f}x the 1-row step", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
