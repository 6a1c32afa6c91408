"""The GPU path, run for real: every check of MLX's CUDA backend in one run, one JSON report.

    python scripts/gpu_check.py --device gpu --out DIR           # on the GPU machine (<= 8 min)
    python scripts/gpu_check.py --device cpu --rehearsal --out DIR   # here: small dims, ~2-3 min

Checks, in order (each in a process of its own with a time budget, so a crash, a hang or an
exception in one is recorded and the others still run; the whole run stops starting checks
at `--deadline`):

- environment: MLX's version and device, the GPU's name, and one float32, bfloat16,
  quantized and fused-attention product each against NumPy (a broken backend stops the run).
- checkpoints: the random-weight checkpoints (0.6B and 1.7B dims; `tiny` in rehearsal) and
  the trained fixture model, built once in `--work-dir`.
- tokens_fp32: float32 greedy tokens (0.6B dims, 11 s clip, 32 tokens) on the device equal
  the CPU's, and equal the official engine's (float32, encoder windows on) on the same device.
- precision: the trained fixture's held-out set in float32, bfloat16, float16, 8-bit, 4-bit
  and the --low-memory recipe; each WER within 1 point of float32's.
- speed_<size>: ours (bfloat16, 8-bit, 4-bit) and the official engine (bfloat16, as
  shipped) on the 11 s clip, 32 forced tokens: end to end, encoder, encoder + prefill,
  decode ms per token (mlx_qwen_asr.bench's workload and timers).
- folder: 20 clips one by one against batched (bench's folder workloads).
- long: one 121 s file, its segments batched against one by one (bench's long workloads).
- streaming: scripts/stream_bench.py over 30 s of speech: a 2 s step's compute time.
- server: scripts/server_bench.py, 1 against 8 concurrent clients.
- diarization: its cost (the shipped speaker networks over minutes of speech), as a real-time factor.

Writes `report.json` (every figure), `report.txt` (the table printed last) and
`checks.log` (each check's own output) to `--out` ($OUT when set). The report is rewritten
after every check, so a run cut short still leaves what it measured. Exit status 0 when every
check ran and passed, 1 otherwise. How to run it on the GPU machine: docs/gpu.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's package, not another installed one
HELDOUT_MODULE = ROOT / "tests" / "support" / "heldout.py"
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_asr.npz"
SCHEMA = 1
MIN_START_S = 20.0   # a check is not started with less time than this left
# Per-check environment: a float32 comparison in float32 arithmetic (MLX's CUDA matmuls
# use TF32 unless told not to; the official side turns TF32 off itself).
CHECK_ENV = {"tokens_fp32": {"MLX_ENABLE_TF32": "0"}}


@dataclass(frozen=True)
class Plan:
    """What the checks run: the GPU run's workloads, or the rehearsal's smaller ones."""
    token_size: str
    speed_sizes: tuple[str, ...]
    tokens: int
    runs: int
    warmup: int   # untimed runs first (the GPU compiles kernels per new shape)
    heldout_clips: tuple[int, int, int] | None   # short, medium, long clips; None: all 28
    folder_clips: int
    long_seconds: float
    stream_minutes: float
    server_requests: int
    server_clips: int
    budgets: dict


FULL = Plan(token_size="0.6b", speed_sizes=("0.6b", "1.7b"), tokens=32, runs=3, warmup=1, heldout_clips=None,
            folder_clips=20, long_seconds=121.0, stream_minutes=0.5, server_requests=16, server_clips=4,
            budgets={"environment": 90, "checkpoints": 150, "tokens_fp32": 100, "precision": 90,
                     "speed_0.6b": 100, "speed_1.7b": 120, "folder": 60, "long": 70, "streaming": 60,
                     "server": 120, "diarization": 60})
REHEARSAL = Plan(token_size="tiny", speed_sizes=("tiny",), tokens=16, runs=1, warmup=0, heldout_clips=(2, 1, 0),
                 folder_clips=4, long_seconds=40.0, stream_minutes=0.25, server_requests=4, server_clips=2,
                 budgets={"environment": 120, "checkpoints": 300, "tokens_fp32": 300, "precision": 300,
                          "speed_tiny": 300, "folder": 300, "long": 300, "streaming": 300, "server": 300,
                          "diarization": 120})


def check_names(plan: Plan) -> list[str]:
    speed = [f"speed_{size}" for size in plan.speed_sizes]
    return ["environment", "checkpoints", "tokens_fp32", "precision", speed[0], "folder", "long",
            "streaming", "server", *speed[1:], "diarization"]


class Failed(Exception):
    """The check ran but its criterion does not hold; the message says which."""


# ----------------------------------------------------------------------------- context

class Context:
    """What a check needs: options, plan, device, and the shared checkpoint folder."""

    def __init__(self, args):
        self.args = args
        self.plan = REHEARSAL if args.rehearsal else FULL
        self.device = args.device
        self.work_dir = Path(args.work_dir).expanduser()
        self.torch_device = "cuda" if args.device == "gpu" else "cpu"
        self.default_dtype = "bfloat16" if args.device == "gpu" else "float32"

    def use_device(self) -> None:
        import mlx.core as mx

        if self.device == "gpu" and not mx.is_available(mx.gpu):
            raise RuntimeError(f"MLX {mx.__version__} has no GPU here (install mlx-cuda-13: docs/gpu.md)")
        mx.set_default_device(mx.gpu if self.device == "gpu" else mx.cpu)

    def checkpoint(self, size: str) -> Path:
        """The random-weight checkpoint at `size` dims (bfloat16, as the hub's), built once;
        the same folder mlx_qwen_asr.bench caches."""
        from mlx_qwen_asr.testing.random_checkpoint import build_random_checkpoint

        out = self.work_dir / f"random-{size}-bfloat16"
        if not (out / "config.json").is_file():
            partial = out.with_name(out.name + ".partial")   # a killed build is never reused
            shutil.rmtree(partial, ignore_errors=True)
            build_random_checkpoint(partial, size=size, dtype="bfloat16")
            shutil.rmtree(out, ignore_errors=True)
            partial.rename(out)
        return out

    def fixture_model(self) -> Path:
        from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

        out = self.work_dir / "fixture-tiny-asr"
        if not (out / "config.json").is_file():
            partial = out.with_name(out.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            expand_compact(FIXTURE, partial)
            shutil.rmtree(out, ignore_errors=True)
            partial.rename(out)
        return out

    def speech(self, seconds: float):
        from mlx_qwen_asr import bench

        source, _ = bench.speech_source(None)
        return bench.clip(source, seconds)

    def official(self, model_dir: Path, dtype: str, window_mask: bool):
        from mlx_qwen_asr.testing import official

        return official.load_official(model_dir, dtype=dtype, window_mask=window_mask, device=self.torch_device)


def note(line: str) -> None:
    """Progress, into checks.log (a check that runs out of time shows how far it got)."""
    print(line, file=sys.stderr, flush=True)


def free_memory() -> None:
    """After the caller dropped its model: give MLX's cached buffers back before the next loads."""
    import mlx.core as mx

    gc.collect()
    mx.clear_cache()


def official_leg(ctx: Context, leg):
    """Run `leg()` (the official engine's part of a check) unless --skip-official; an
    error there is recorded in the result and leaves our figures standing."""
    if ctx.args.skip_official:
        return {"skipped": "--skip-official"}
    try:
        return leg()
    except Exception as error:   # noqa: BLE001 - any failure of the other engine is reported, not fatal
        return {"error": f"{type(error).__name__}: {error}"[:2000]}


# ----------------------------------------------------------------------------- checks

ENV_PREFIXES = ("MLX_", "CUDA_", "LD_LIBRARY_PATH", "OMP_", "MKL_")


def check_environment(ctx: Context) -> dict:
    import mlx.core as mx
    import numpy as np

    from mlx_qwen_asr import bench

    from mlx_qwen_asr.model import fast_blas

    info = {"mlx": mx.__version__, "gpu_available": bool(mx.is_available(mx.gpu)),
            "fast_blas": fast_blas.status(), "provenance": bench.provenance()}
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    info["environment_variables"] = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    ctx.use_device()
    info["device"] = str(mx.default_device())
    try:
        info["device_info"] = {k: v for k, v in mx.device_info().items() if isinstance(v, (str, int, float, bool))}
    except Exception as error:   # noqa: BLE001 - a name is nice to have, not a reason to stop
        info["device_info"] = {"error": f"{type(error).__name__}: {error}"}

    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 512)).astype(np.float32)
    b = rng.standard_normal((512, 384)).astype(np.float32)
    expected = a.astype(np.float64) @ b.astype(np.float64)

    def error(actual) -> float:
        actual = np.asarray(actual.astype(mx.float32), np.float64)
        return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))

    errors = {"float32_matmul": error(mx.array(a) @ mx.array(b)),
              "bfloat16_matmul": error(mx.array(a, mx.bfloat16) @ mx.array(b, mx.bfloat16))}
    w, scales, biases = mx.quantize(mx.array(b.T), group_size=64, bits=4)
    dequantized = np.asarray(mx.dequantize(w, scales, biases, group_size=64, bits=4), np.float64)
    product = mx.quantized_matmul(mx.array(a), w, scales, biases, transpose=True, group_size=64, bits=4)
    errors["q4_matmul_vs_dequantized"] = float(
        np.linalg.norm(np.asarray(product, np.float64) - a @ dequantized.T) / np.linalg.norm(a @ dequantized.T))
    q, k, v = (rng.standard_normal((1, 4, 64, 32)).astype(np.float32) for _ in range(3))
    fused = mx.fast.scaled_dot_product_attention(mx.array(q), mx.array(k), mx.array(v), scale=32 ** -0.5)
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) * 32 ** -0.5
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    reference = np.einsum("bhqk,bhkd->bhqd", weights / weights.sum(-1, keepdims=True), v)
    errors["fused_attention"] = float(np.linalg.norm(np.asarray(fused) - reference) / np.linalg.norm(reference))
    info["relative_errors"] = errors
    # Loose on purpose: this gate stops the whole run, so it catches a broken backend (errors
    # near 1, NaN), not precision; float32 may run as TF32 on a GPU (~3e-4), bf16 near 3e-3.
    bounds = {"float32_matmul": 1e-2, "bfloat16_matmul": 5e-2, "q4_matmul_vs_dequantized": 1e-2,
              "fused_attention": 1e-2}
    bad = [f"{k} {errors[k]:.1e} > {bounds[k]:.0e}" for k in bounds if not errors[k] <= bounds[k]]
    info["summary"] = f"{info['device']} {info['device_info'].get('device_name', '')}; mlx {mx.__version__}"
    if bad:
        raise Failed("products off: " + ", ".join(bad))
    return info


def check_checkpoints(ctx: Context) -> dict:
    built = {}
    for size in dict.fromkeys([ctx.plan.token_size, *ctx.plan.speed_sizes]):
        start = time.perf_counter()
        path = ctx.checkpoint(size)
        built[size] = {"path": str(path), "seconds": round(time.perf_counter() - start, 1),
                       "bytes": sum(f.stat().st_size for f in path.glob("*.safetensors"))}
    start = time.perf_counter()
    built["fixture"] = {"path": str(ctx.fixture_model()), "seconds": round(time.perf_counter() - start, 1)}
    return {"checkpoints": built, "summary": ", ".join(f"{k} {v['seconds']} s" for k, v in built.items())}


def greedy_tokens(model, audio, tokens: int) -> list[int]:
    """Greedy tokens as the parity tests decode them (EOS stops, no repetition guard)."""
    from mlx_qwen_asr.decoding import greedy_decode
    from mlx_qwen_asr.model_input import asr_prompt

    _, embeddings = asr_prompt(model, audio)
    return greedy_decode(model.network, embeddings[None], tokens, model.config.eos_token_ids, guard=None).tokens


def first_difference(a: list, b: list) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check_tokens_fp32(ctx: Context) -> dict:
    import mlx.core as mx

    from mlx_qwen_asr.transcribe import ASRModel

    model_dir = ctx.checkpoint(ctx.plan.token_size)
    audio = ctx.speech(11.0)
    tokens = ctx.plan.tokens
    mx.set_default_device(mx.cpu)
    model = ASRModel.load(model_dir, dtype="float32")
    cpu = greedy_tokens(model, audio, tokens)
    del model
    free_memory()
    # A model of its own for the device: its compiled decode step must be traced there.
    ctx.use_device()
    model = ASRModel.load(model_dir, dtype="float32")
    device = greedy_tokens(model, audio, tokens)
    del model
    free_memory()

    def official():
        reference = ctx.official(model_dir, "float32", window_mask=True)
        return {"tokens": reference.generate(audio, max_new_tokens=tokens)}

    result = {"size": ctx.plan.token_size, "clip_s": 11.0, "max_tokens": tokens, "device": ctx.device,
              "tf32": os.environ.get("MLX_ENABLE_TF32", "default"), "cpu_tokens": cpu, "device_tokens": device,
              "distinct": len(set(cpu)), "equal_to_cpu": device == cpu,
              "first_difference_from_cpu": first_difference(device, cpu), "official": official_leg(ctx, official)}
    problems = []
    if device != cpu:
        problems.append(f"{ctx.device} tokens differ from the CPU's at {result['first_difference_from_cpu']}")
    if "tokens" in result["official"]:
        theirs = result["official"]["tokens"]
        result["equal_to_official"] = device == theirs
        result["first_difference_from_official"] = first_difference(device, theirs)
        if device != theirs:
            problems.append(f"{ctx.device} tokens differ from the official engine's at "
                            f"{result['first_difference_from_official']}")
    result["summary"] = (f"{len(device)} tokens; = CPU: {device == cpu}; = official: "
                         f"{result.get('equal_to_official', 'not run')}")
    if result["distinct"] <= 3:
        problems.append("degenerate output (<= 3 distinct tokens): the comparison is weak")
    if problems:
        raise Failed("; ".join(problems) + f" ({result['summary']})")
    return result


def heldout_rows(counts: tuple[int, int, int] | None) -> list[dict]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("heldout", HELDOUT_MODULE)
    heldout = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heldout)
    rows = heldout.rows()
    if counts is None:
        return [dict(r, path=str(heldout.HELDOUT / r["file"])) for r in rows]
    picked = []
    for kind, count in zip(heldout.GROUPS, counts):
        picked += [r for r in rows if r["kind"] == kind][:count]
    return [dict(r, path=str(heldout.HELDOUT / r["file"])) for r in picked]


PRECISIONS = (("float32", {"dtype": "float32"}), ("bfloat16", {"dtype": "bfloat16"}),
              ("float16", {"dtype": "float16"}), ("8-bit", {"quantize": 8}), ("4-bit", {"quantize": 4}),
              ("low-memory", {"low_memory": True}))


def check_precision(ctx: Context) -> dict:
    from mlx_qwen_asr.testing.wer import wer
    from mlx_qwen_asr.transcribe import ASRModel

    ctx.use_device()
    model_dir = ctx.fixture_model()
    rows = heldout_rows(ctx.plan.heldout_clips)
    references = [r["text"] for r in rows]
    variants, texts = {}, {}
    for name, options in PRECISIONS:
        start = time.perf_counter()
        model = ASRModel.load(model_dir, **options)
        texts[name] = [model.transcribe(r["path"]).text for r in rows]
        variants[name] = {"options": options, "dtype": str(model.dtype), "quantize": model.quantize,
                          "wer": wer(references, texts[name]), "seconds": round(time.perf_counter() - start, 2)}
        note(f"precision {name}: WER {100 * variants[name]['wer']:.2f} in {variants[name]['seconds']} s")
        del model
        free_memory()
    base = variants["float32"]["wer"]
    for name, entry in variants.items():
        entry["wer_points_over_float32"] = round(100 * (entry["wer"] - base), 2)
        entry["transcripts_differing_from_float32"] = sum(a != b for a, b in zip(texts[name], texts["float32"]))
    far = [n for n, e in variants.items() if abs(e["wer_points_over_float32"]) > 1.0]
    summary = "WER " + ", ".join(f"{n} {100 * e['wer']:.1f}" for n, e in variants.items())
    result = {"clips": len(rows), "variants": variants, "summary": summary}
    if far:
        raise Failed(f"more than 1 WER point from float32: {', '.join(far)} ({summary})")
    return result


SPEED_VARIANTS = (("bfloat16", None), ("8-bit", 8), ("4-bit", 4))
STAGES = ("total_s", "encoder_s", "prefill_incl_encoder_s", "decode_ms_per_token")


def check_speed(ctx: Context, size: str) -> dict:
    import mlx.core as mx

    from mlx_qwen_asr import bench

    ctx.use_device()
    model_dir = ctx.checkpoint(size)
    audio = ctx.speech(11.0)
    tokens, runs = ctx.plan.tokens, ctx.plan.runs
    ours = {}
    for name, bits in SPEED_VARIANTS:
        mx.reset_peak_memory()
        model, load = bench.load_timed(model_dir, "bfloat16", bits)
        samples = bench.repeat(lambda: bench.ours_forced(model, audio, tokens), runs, ctx.plan.warmup)
        stages = bench.stage_summary(samples)
        ours[name] = {"load": load, "stages": stages, "weight_bytes": bench.parameter_bytes(model.network),
                      "mlx_peak_bytes": mx.get_peak_memory()}
        note(f"speed {size} {name}: {stages['total_s']['min']:.3f} s")
        del model
        free_memory()

    def official():
        reference = ctx.official(model_dir, "bfloat16", window_mask=False)   # as shipped
        samples = bench.repeat(lambda: reference.forced_timing(audio, tokens), runs, ctx.plan.warmup)
        return {"dtype": "bfloat16", "stages": bench.stage_summary(samples)}

    result = {"size": size, "clip_s": 11.0, "tokens": tokens, "runs": runs, "ours": ours,
              "official": official_leg(ctx, official)}
    theirs = result["official"].get("stages")
    if theirs:
        result["ours_bf16_over_official"] = {k: ours["bfloat16"]["stages"][k]["min"] / theirs[k]["min"]
                                             for k in STAGES if theirs[k]["min"] > 0}
    result["summary"] = "; ".join(
        f"{n} {e['stages']['total_s']['min']:.2f} s, {e['stages']['decode_ms_per_token']['min']:.1f} ms/tok"
        for n, e in ours.items()) + (f"; official bf16 {theirs['total_s']['min']:.2f} s, "
                                     f"{theirs['decode_ms_per_token']['min']:.1f} ms/tok" if theirs else "")
    return result


def speed_model(ctx: Context):
    """The model the throughput checks run: 0.6B dims (tiny in rehearsal), device dtype."""
    from mlx_qwen_asr.transcribe import ASRModel

    ctx.use_device()
    return ASRModel.load(ctx.checkpoint(ctx.plan.speed_sizes[0]), dtype=ctx.default_dtype)


def speedup(one_by_one: dict, batched: dict) -> float:
    return one_by_one["total_s"]["min"] / batched["total_s"]["min"]


def check_folder(ctx: Context) -> dict:
    from mlx_qwen_asr import bench
    from mlx_qwen_asr.audio.load import SAMPLE_RATE, load_audio

    model = speed_model(ctx)
    source, _ = bench.speech_source(None)
    paths = bench.write_folder(source, ctx.work_dir / "folder")[:ctx.plan.folder_clips]
    runs, warmup = min(ctx.plan.runs, 2), ctx.plan.warmup
    one = bench.stage_summary(bench.repeat(lambda: bench.ours_folder(model, paths), runs, warmup))
    batched = bench.stage_summary(bench.repeat(lambda: bench.ours_folder_batched(model, paths), runs, warmup))
    seconds = sum(len(load_audio(p)) for p in paths) / SAMPLE_RATE
    result = {"clips": len(paths), "audio_s": round(seconds, 2), "batch_size": bench.FOLDER_BATCH,
              "dtype": str(model.dtype), "one_by_one": one, "batched": batched,
              "batched_speedup": speedup(one, batched)}
    result["summary"] = (f"{len(paths)} clips: one by one {one['total_s']['min']:.2f} s, batched "
                         f"{batched['total_s']['min']:.2f} s ({result['batched_speedup']:.2f}x)")
    return result


def check_long(ctx: Context) -> dict:
    from mlx_qwen_asr import bench

    model = speed_model(ctx)
    audio = ctx.speech(ctx.plan.long_seconds)
    batched = bench.stage_summary(bench.repeat(lambda: bench.ours_long(model, audio, 8), 1, ctx.plan.warmup))
    one = bench.stage_summary(bench.repeat(lambda: bench.ours_long(model, audio, 1), 1, ctx.plan.warmup))
    result = {"audio_s": ctx.plan.long_seconds, "dtype": str(model.dtype), "batched": batched, "one_by_one": one,
              "batched_speedup": speedup(one, batched)}
    result["summary"] = (f"{ctx.plan.long_seconds:.0f} s, {batched['segments']['min']:.0f} segments: batched "
                         f"{batched['total_s']['min']:.2f} s, one by one {one['total_s']['min']:.2f} s "
                         f"({result['batched_speedup']:.2f}x)")
    return result


def script_json(command: list[str], json_path: Path, timeout: float, ok_codes=(0,)) -> tuple[int, object]:
    """Run one of scripts/*.py (this interpreter, this checkout) and read the JSON it wrote."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, timeout=timeout,
                          stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode not in ok_codes or not json_path.is_file():
        raise RuntimeError(f"{command[0]} exited {done.returncode} (its output: checks.log)")
    return done.returncode, json.loads(json_path.read_text())


# The streaming and server checks run scripts in processes of their own, on MLX's default
# device: the GPU wherever MLX has one (--device cpu on a GPU machine does not reach them).
def check_streaming(ctx: Context) -> dict:
    model_dir = ctx.checkpoint(ctx.plan.speed_sizes[0])
    out = ctx.work_dir / "stream_bench.json"
    out.unlink(missing_ok=True)
    _, report = script_json(["scripts/stream_bench.py", "--minutes", str(ctx.plan.stream_minutes),
                             "--model", str(model_dir), "--dtype", ctx.default_dtype, "--json", str(out)],
                            out, timeout=ctx.args.budget_s)
    report.pop("provenance", None)
    step = report["step_compute_s"]
    report["summary"] = (f"2 s step: median {step['median']:.3f} s, p90 {step['p90']:.3f} s; "
                         f"real time: {report['keeps_up_with_real_time']}")
    return report


def check_server(ctx: Context) -> dict:
    model_dir = ctx.checkpoint(ctx.plan.speed_sizes[0])
    out = ctx.work_dir / "server_bench.json"
    out.unlink(missing_ok=True)
    code, figures = script_json(["scripts/server_bench.py", "--model", str(model_dir), "--dtype", ctx.default_dtype,
                                 "--max-new-tokens", str(ctx.plan.tokens), "--requests",
                                 str(ctx.plan.server_requests), "--clips", str(ctx.plan.server_clips),
                                 "--clients", "1", "8", "--json", str(out)],
                                out, timeout=ctx.args.budget_s, ok_codes=(0, 1))
    result = {"runs": figures, "scaling_8_over_1": figures[-1]["throughput"] / figures[0]["throughput"]}
    result["summary"] = (f"throughput 1 client {figures[0]['throughput']:.1f}, 8 clients "
                         f"{figures[-1]['throughput']:.1f} audio s/s ({result['scaling_8_over_1']:.2f}x)")
    if code == 1:
        raise Failed("the server's transcripts differ from the CLI's: " + json.dumps(figures))
    return result


def check_diarization(ctx: Context) -> dict:
    """Speaker diarization's cost on this device: the shipped networks over speech of a few
    minutes (the same speech the speed checks use), as a real-time factor, against a
    float32 0.6B-dims transcription's of the same audio when the plan has one."""
    import mlx.core as mx

    import mlx_qwen_asr

    ctx.use_device()
    seconds = 30.0 if ctx.args.rehearsal else 300.0
    audio = ctx.speech(seconds)
    mlx_qwen_asr.diarize(audio[:16000 * 12], sample_rate=16000)   # warm-up: loads and compiles
    mx.reset_peak_memory()
    start = time.perf_counter()
    turns = mlx_qwen_asr.diarize(audio, sample_rate=16000)
    wall = time.perf_counter() - start
    speakers = sorted({t.speaker for t in turns})
    note(f"diarization: {seconds:g} s of audio in {wall:.2f} s ({len(speakers)} speaker(s), {len(turns)} turns)")
    return {"audio_s": seconds, "wall_s": wall, "rtf": wall / seconds, "turns": len(turns),
            "speakers": len(speakers), "mlx_peak_bytes": mx.get_peak_memory(),
            "summary": f"{seconds:g} s in {wall:.2f} s (RTF {wall / seconds:.3f})"}


def run_check(name: str, ctx: Context) -> dict:
    if name.startswith("speed_"):
        return check_speed(ctx, name.removeprefix("speed_"))
    return globals()[f"check_{name}"](ctx)


# ----------------------------------------------------------------------------- orchestration

def child_main(args) -> int:
    """One check, in this process; its outcome goes to --result-file."""
    import mlx_qwen_asr  # noqa: F401  (binds the fast BLAS before mlx.core loads)

    ctx = Context(args)
    outcome: dict
    try:
        result = run_check(args.run_check, ctx)
        skipped = isinstance(result, dict) and "skipped" in result and len(result) <= 2
        outcome = {"status": "skipped" if skipped else "ok", "passed": None if skipped else True, "result": result}
    except Failed as failed:
        outcome = {"status": "failed", "passed": False, "error": str(failed)}
    except Exception:   # noqa: BLE001 - recorded; the parent goes on with the next check
        outcome = {"status": "error", "passed": False, "error": traceback.format_exc()[-4000:]}
    Path(args.result_file).write_text(json.dumps(outcome, default=str))
    return 0


def child_command(args, name: str, result_file: Path, budget: float) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--run-check", name, "--result-file", str(result_file),
               "--device", args.device, "--work-dir", str(args.work_dir), "--budget-s", str(int(budget))]
    return command + (["--rehearsal"] if args.rehearsal else []) + (["--skip-official"] if args.skip_official else [])


def run_child(args, name: str, budget: float, out: Path, log) -> dict:
    result_file = out / f".{name}.result.json"
    result_file.unlink(missing_ok=True)
    log.write(f"\n===== {name} (budget {budget:.0f} s) =====\n")
    log.flush()
    start = time.monotonic()
    # A process group of its own: a timeout ends the check with its servers and workers.
    env = {**os.environ, **CHECK_ENV.get(name, {})}
    proc = subprocess.Popen(child_command(args, name, result_file, budget), cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    seconds = round(time.monotonic() - start, 1)
    if result_file.is_file():
        outcome = json.loads(result_file.read_text())
        result_file.unlink()
    elif time.monotonic() - start >= budget:
        outcome = {"status": "timeout", "passed": False, "error": f"over its {budget:.0f} s budget"}
    else:
        outcome = {"status": "error", "passed": False, "error": f"the check's process died (exit {proc.returncode})"}
    return {**outcome, "seconds": seconds, "budget_s": round(budget), "env": CHECK_ENV.get(name, {})}


def summary_line(entry: dict) -> str:
    if entry.get("result") and isinstance(entry["result"], dict) and entry["result"].get("summary"):
        return entry["result"]["summary"]
    text = entry.get("error") or entry.get("reason") or ""
    return text.strip().splitlines()[-1] if text.strip() else ""


def table(report: dict) -> str:
    lines = [f"gpu_check ({report['mode']}, device {report['device']}): {report.get('device_name', '?')}",
             f"{'check':<14} {'status':<8} {'seconds':>8}  figures"]
    for name, entry in report["checks"].items():
        lines.append(f"{name:<14} {entry['status']:<8} {entry.get('seconds', 0):>8.1f}  {summary_line(entry)[:150]}")
    lines.append(f"total {report.get('total_s', 0):.0f} s; report: {report['out']}/report.json")
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.txt").write_text(table(report) + "\n")


def parent_main(args) -> int:
    plan = REHEARSAL if args.rehearsal else FULL
    if args.deadline is None:
        args.deadline = 1800.0 if args.rehearsal else 480.0
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    names = check_names(plan)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: unknown check {', '.join(unknown)}; this plan has: {' '.join(names)}", file=sys.stderr)
            return 2
        names = [n for n in names if n in args.only]
    report = {"schema": SCHEMA, "mode": "rehearsal" if args.rehearsal else "full", "device": args.device,
              "skip_official": args.skip_official, "deadline_s": args.deadline, "out": str(out),
              "work_dir": str(Path(args.work_dir).expanduser()), "plan": asdict(plan),
              "command": " ".join([Path(sys.executable).name, *sys.argv]),
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "checks": {}}
    started = time.monotonic()
    stop_reason = None
    with open(out / "checks.log", "w") as log:
        for name in names:
            remaining = args.deadline - (time.monotonic() - started)
            if stop_reason or remaining < MIN_START_S:
                reason = stop_reason or f"not started: {remaining:.0f} s left of the {args.deadline:.0f} s deadline"
                report["checks"][name] = {"status": "skipped", "passed": None, "reason": reason, "seconds": 0.0}
                continue
            entry = run_child(args, name, min(plan.budgets[name], remaining), out, log)
            report["checks"][name] = entry
            if name == "environment":
                report["device_name"] = (entry.get("result") or {}).get("device_info", {}).get("device_name")
                if entry["status"] != "ok":
                    stop_reason = "not started: the environment check did not pass"
            print(f"{name}: {entry['status']} in {entry['seconds']:.1f} s  {summary_line(entry)[:150]}", flush=True)
            report["total_s"] = round(time.monotonic() - started, 1)
            write_report(report, out)
    report["total_s"] = round(time.monotonic() - started, 1)
    write_report(report, out)
    print(table(report), flush=True)
    return 0 if all(e["status"] in ("ok", "skipped") for e in report["checks"].values()) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu", help="where MLX runs the checks")
    parser.add_argument("--rehearsal", action="store_true",
                        help="tiny dimensions, fewer clips and runs: the whole run in minutes on a CPU")
    parser.add_argument("--skip-official", action="store_true", help="leave out the official engine's legs")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out",
                        help="report folder (default: $OUT, else ./gpu-check-out)")
    parser.add_argument("--work-dir", default="~/.cache/mlx_qwen_asr/bench",
                        help="checkpoints and generated audio, reused between runs (bench's cache)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="seconds after which no check runs on (default 480; rehearsal 1800)")
    parser.add_argument("--only", nargs="+", help="run only these checks")
    parser.add_argument("--run-check", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    parser.add_argument("--budget-s", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return child_main(args) if args.run_check else parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
