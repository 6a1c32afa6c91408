"""Benchmarks on fixed workloads: stage times, RTF, memory, size, provenance (JSON).

    python -m mlx_qwen_asr.bench --compare-official    # headline figures, ~2 min on 2 cores
    python -m mlx_qwen_asr.bench --full                # every workload (~15 min on 2 cores)
    python -m mlx_qwen_asr.bench --model Qwen/Qwen3-ASR-0.6B --json bench.json

Without `--model` a random-weight checkpoint in the exact Hugging Face layout is built once
(cached in `--work-dir`, ~1.9 GB at 0.6B dims; the report says where and how big): speed
does not depend on the weights' values, only on their shapes, so the figures hold for the
real model. The decoded token count is forced (EOS and the repetition guard off,
`min_new_tokens` on the official side) so every run does the same work.

Workloads (default: `clip11`; `--full`: all): `clip11` (11 s of speech, 32 tokens),
`clip60` (60 s, 32 tokens), `folder` (20 clips of 2-6 s from files, one by one through
`ASRModel.transcribe`), `folder_batched` (the same 20 files through
`ASRModel.transcribe_many(paths, batch_size=8)`, reported with its speed-up over `folder`),
`long` (one 121 s file through `ASRModel.transcribe`: 5 segments of `LONG_TOKENS` = 120 tokens,
about 4 tokens per second of audio, decoded and encoded in one batch) and `long_one_by_one`
(the same file with `batch_size=1`, reported with the speed-up of `long` over it). The
folder and long workloads decode exactly their token budgets (passed explicitly, so no loop
recovery; repetition guard off; random weights do not emit EOS), so the paired workloads do
the same work (the token totals are reported to check it). Short workloads run once to warm
up, then `--runs` times; the long ones `--long-runs` times; min and median are reported.
`--compare-official` times the official PyTorch implementation (float32, 2 torch threads,
as shipped: no encoder window mask) on the same checkpoint and clip, in a process of its
own in the official engine's environment (created on first use, a few minutes; see
mlx_qwen_asr/testing/official_env.py), its runs alternating with a second set of ours (a
shared machine's load comes in bursts; `--no-interleave` runs them after ours; our first,
solo set is kept as `ours_solo`). `--profile` adds a separate pass timing sub-modules behind `mx.eval` barriers (slower than
a real run: it removes all overlap; read it as shares, not as totals).

Benchmarks report; they never fail on timing. JSON goes to stdout (and `--json FILE`), a
readable summary to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from .model import fast_blas
from .audio.load import SAMPLE_RATE, load_audio
from .decoding import greedy_decode
from .model.config import ModelConfig
from .model.checkpoint import weight_files
from .model.loading import load_network, parse_dtype, resolve_model_dir
from .model_input import asr_prompt, clip_mel, embed_asr_prompt
from .model.tokenizer import QwenTokenizer
from .transcribe import ASRModel

DEFAULT_WORK_DIR = Path("~/.cache/mlx_qwen_asr/bench").expanduser()
WORKLOADS = ("clip11", "clip60", "folder", "folder_batched", "long", "long_one_by_one")
DEFAULT_WORKLOADS = ("clip11",)
FOLDER_CLIPS, FOLDER_TOKENS, FOLDER_BATCH = 20, 32, 8
LONG_SECONDS, LONG_TOKENS = 121.0, 120


# ----------------------------------------------------------------------------- audio

def speech_source(path: str | None) -> tuple[np.ndarray, str]:
    """The speech the clips are cut from: `path` (--audio), else synthetic speech."""
    if path:
        return load_audio(path), str(path)
    from .testing.synthetic_speech import synthetic_speech

    return synthetic_speech(11.0), "synthetic"


def clip(source: np.ndarray, seconds: float, start: float = 0.0) -> np.ndarray:
    """`seconds` of audio from `source` (looped), starting `start` seconds in."""
    n, first = int(round(seconds * SAMPLE_RATE)), int(start * SAMPLE_RATE) % len(source)
    reps = -(-(first + n) // len(source))
    return np.tile(source, reps)[first:first + n].astype(np.float32)


def write_folder(source: np.ndarray, folder: Path) -> list[Path]:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(FOLDER_CLIPS):
        seconds = float(rng.uniform(2.0, 6.0))
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, clip(source, seconds, start=1.7 * i), SAMPLE_RATE, subtype="PCM_16")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- model

def random_model_dir(size: str, work_dir: Path) -> Path:
    """The cached random-weight checkpoint at real `size` dims (bf16, as the hub's)."""
    from .testing.random_checkpoint import build_random_checkpoint

    out = work_dir / f"random-{size}-bfloat16"
    if not (out / "config.json").is_file():
        print(f"building a random-weight {size} checkpoint in {out} (once) ...", file=sys.stderr)
        build_random_checkpoint(out, size=size, dtype="bfloat16")
    return out


def disk_bytes(model_dir: Path) -> int:
    try:
        return sum(f.stat().st_size for f in weight_files(model_dir))
    except Exception:  # an unusual layout: report the directory's safetensors
        return sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))


def load_timed(model_dir: Path, dtype, quantize) -> tuple[ASRModel, dict]:
    """`ASRModel.load`, piece by piece, timing the network and the tokenizer apart."""
    config = ModelConfig.from_file(model_dir / "config.json")
    mx_dtype = parse_dtype(dtype)
    start = time.perf_counter()
    network = load_network(model_dir, config, mx_dtype, **({"quantize": quantize} if quantize else {}))
    network_s = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = QwenTokenizer.from_model_dir(model_dir, config.raw)
    tokenizer_s = time.perf_counter() - start
    return ASRModel(network, tokenizer, config, model_dir, mx_dtype), {"network_s": network_s, "tokenizer_s": tokenizer_s}


def parameter_bytes(network) -> int:
    from mlx.utils import tree_flatten
    return sum(v.nbytes for _, v in tree_flatten(network.parameters()))


def rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


# ----------------------------------------------------------------------------- timing

def summarize(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "runs": len(values)}


def repeat(fn, runs: int, warmup: int = 1) -> list[dict]:
    for _ in range(warmup):
        fn()
    return [fn() for _ in range(runs)]


def stage_summary(samples: list[dict]) -> dict:
    return {key: summarize([s[key] for s in samples]) for key in samples[0]}


def ours_forced(model: ASRModel, audio: np.ndarray, tokens: int, seen: list | None = None) -> dict:
    """One pass of the offline pipeline with exactly `tokens` decoded tokens (appended to
    `seen` when given, so passes can be checked against each other)."""
    start = time.perf_counter()
    stages: dict = {}
    _, embeddings = asr_prompt(model, audio, timings=stages)
    result = greedy_decode(model.network, embeddings[None], tokens, eos_ids=(), guard=None)
    end = time.perf_counter()
    assert len(result.tokens) == tokens
    if seen is not None:
        seen.append(result.tokens)
    return {
        "mel_s": stages["mel"],
        "encoder_s": stages["encoder"],
        "prefill_s": result.prefill_s,  # decoder over the prompt, first token included
        "prefill_incl_encoder_s": stages["encoder"] + result.prefill_s,
        "decode_ms_per_token": 1e3 * result.decode_s / max(tokens - 1, 1),
        "total_s": end - start,
    }


def generated(result) -> int:
    """Tokens decoded for a transcription, language headers included."""
    return sum(s.generated for s in result.segments)


FOLDER_OPTIONS = {"max_new_tokens": FOLDER_TOKENS, "repetition_guard": False, "recover_loops": False}


def ours_folder(model: ASRModel, paths: list[Path]) -> dict:
    start = time.perf_counter()
    tokens = 0
    for path in paths:
        tokens += generated(model.transcribe(path, **FOLDER_OPTIONS))
    return {"total_s": time.perf_counter() - start, "tokens": float(tokens)}


def ours_folder_batched(model: ASRModel, paths: list[Path]) -> dict:
    start = time.perf_counter()
    results = model.transcribe_many(paths, batch_size=FOLDER_BATCH, **FOLDER_OPTIONS)
    tokens = sum(generated(r) for r in results)
    return {"total_s": time.perf_counter() - start, "tokens": float(tokens)}


# 27 s segments cut the synthetic 121 s file into 5 (19-31 s) at its pauses.
LONG_OPTIONS = {"max_new_tokens": LONG_TOKENS, "repetition_guard": False, "recover_loops": False,
                "segment_seconds": 27.0}


def ours_long(model: ASRModel, audio: np.ndarray, batch_size: int) -> dict:
    """One long input through `transcribe`, its segments `batch_size` at a time."""
    start = time.perf_counter()
    result = model.transcribe(audio, sample_rate=SAMPLE_RATE, batch_size=batch_size, **LONG_OPTIONS)
    return {"total_s": time.perf_counter() - start, "tokens": float(generated(result)),
            "segments": float(len(result.segments)), "encoder_s": result.timings.get("encoder", 0.0),
            "prefill_s": result.timings.get("prefill", 0.0), "decode_s": result.timings.get("decode", 0.0)}


def cache_report(work_dir: Path) -> dict:
    total = sum(f.stat().st_size for f in work_dir.rglob("*") if f.is_file()) if work_dir.is_dir() else 0
    return {"dir": str(work_dir), "bytes": total}


class Official:
    """The official implementation, timed stage by stage the same way as ours.

    It runs in its own process and environment (testing/official_env.py, created on first
    use), so torch never shares this process with MLX; stage times are taken there."""

    def __init__(self, model_dir: Path, threads: int = 2):
        from .testing import official

        worker = official.worker(announce=lambda line: print(line, file=sys.stderr, flush=True))
        self.threads = worker.request("set_threads", threads=threads)
        self.versions = worker.versions
        start = time.perf_counter()
        # As shipped (no window mask): this is the engine users run.
        self.asr = official.load_official(model_dir, dtype="float32", window_mask=False)
        self.load_s = time.perf_counter() - start

    def forced(self, audio: np.ndarray, tokens: int) -> dict:
        return self.asr.forced_timing(audio, tokens)


# ----------------------------------------------------------------------------- profile

class _Timed:
    """Stands in for a sub-module (or method): runs it, evaluates, adds the time to a bucket."""

    def __init__(self, profile: "Profile", inner, bucket: str):
        self.profile, self.inner, self.bucket = profile, inner, bucket

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        mx.eval(out)
        self.profile.add(self.bucket, time.perf_counter() - start)
        return out

    def __getattr__(self, name):  # e.g. `conv_out.weight.dtype` still works
        return getattr(self.inner, name)


class Profile:
    """Per-operation times from one extra pass with an `mx.eval` barrier after each piece."""

    def __init__(self, network):
        self.network = network
        self.phase = ""
        self.times: dict[str, float] = {}
        self.patches: list[tuple[object, str, object]] = []

    def add(self, bucket: str, seconds: float) -> None:
        key = bucket.replace("{phase}", self.phase)
        self.times[key] = self.times.get(key, 0.0) + seconds

    def _patch(self, owner, name: str, bucket: str) -> None:
        inner = getattr(owner, name)
        self.patches.append((owner, name, inner))
        setattr(owner, name, _Timed(self, inner, bucket))

    def __enter__(self):
        enc, dec = self.network.audio_tower, self.network.decoder
        self._patch(enc, "conv_stem", "encoder.conv_stem")
        for layer in enc.layers:
            self._patch(layer, "self_attn", "encoder.attention")
            self._patch(layer, "fc1", "encoder.mlp")
            self._patch(layer, "fc2", "encoder.mlp")
        for layer in dec.layers:
            self._patch(layer, "self_attn", "{phase}.attention")
            self._patch(layer, "mlp", "{phase}.mlp")
        self._patch(self.network, "logits", "{phase}.head")
        return self

    def __exit__(self, *exc):
        for owner, name, inner in reversed(self.patches):
            if isinstance(inner, nn.Module):
                setattr(owner, name, inner)  # back into the module's children
            else:
                delattr(owner, name)  # uncovers the class's method again
        self.patches.clear()


def profile_pass(model: ASRModel, audio: np.ndarray, tokens: int) -> dict:
    network = model.network
    with Profile(network) as prof:
        start = time.perf_counter()
        mel = clip_mel(audio, model.config.audio)
        mx.eval(mel)
        prof.add("mel", time.perf_counter() - start)
        start = time.perf_counter()
        audio_embeddings = network.encode_audio(mel)
        mx.eval(audio_embeddings)
        prof.add("encoder.total", time.perf_counter() - start)
        _, prompt = embed_asr_prompt(model, audio_embeddings)
        embeddings = prompt[None]
        cache = network.make_cache(embeddings.shape[1] + tokens + 1)
        prof.phase = "prefill"
        start = time.perf_counter()
        token = mx.argmax(network(embeddings, cache)[:, -1, :], axis=-1)
        mx.eval(token)
        prof.add("prefill.total", time.perf_counter() - start)
        prof.phase = "decode"
        start = time.perf_counter()
        for _ in range(tokens - 1):
            token = mx.argmax(network(network.embed_tokens(token)[:, None, :], cache)[:, -1, :], axis=-1)
            mx.eval(token)
        prof.add("decode.total", time.perf_counter() - start)
    times = prof.times
    for stage, parts in (("encoder", ("conv_stem", "attention", "mlp")),
                         ("prefill", ("attention", "mlp", "head")),
                         ("decode", ("attention", "mlp", "head"))):
        known = sum(times.get(f"{stage}.{p}", 0.0) for p in parts)
        times[f"{stage}.other"] = times[f"{stage}.total"] - known
    steps = max(tokens - 1, 1)
    out = {k: round(v * 1e3, 2) for k, v in sorted(times.items())}
    out.update({f"{k}_per_token": round(v * 1e3 / steps, 3) for k, v in sorted(times.items()) if k.startswith("decode.")})
    return {"unit": "ms", **out}


# ----------------------------------------------------------------------------- provenance

def cpu_name() -> str:
    try:
        if sys.platform == "darwin":
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True,
                                  text=True, timeout=5).stdout.strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except Exception:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if commit.returncode:
            return None
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return None


def provenance() -> dict:
    metal = False
    try:
        metal = bool(mx.metal.is_available())
    except Exception:
        pass
    return {
        "machine": platform.machine(), "os": platform.platform(), "cpu": cpu_name(),
        "cpus": os.cpu_count(), "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "mlx": mx.__version__, "device": str(mx.default_device()),
        "metal_available": metal, "fast_blas": {**fast_blas.status(), "mapped": fast_blas.mapped_blas_libraries()},
        "numpy": np.__version__, "git_commit": git_commit(),
    }


# ----------------------------------------------------------------------------- main

def run(args) -> dict:
    work_dir = Path(args.work_dir).expanduser()
    model_dir = resolve_model_dir(args.model) if args.model else random_model_dir(args.size, work_dir)
    source, source_name = speech_source(args.audio)
    report = {"provenance": provenance(), "model": str(model_dir),
              "weights": "given" if args.model else f"random, {args.size} dims", "audio": source_name,
              "tokens": args.tokens, "workloads": {}}

    mx.reset_peak_memory()
    model, load = load_timed(model_dir, args.dtype, args.quantize)
    report["load"] = {
        **load, "dtype": str(model.dtype),
        "weight_bytes_in_use": parameter_bytes(model.network), "disk_bytes": disk_bytes(model_dir),
        "mlx_peak_bytes": mx.get_peak_memory(), "rss_peak_bytes": rss_peak_bytes(),
    }
    if args.quantize:
        report["load"]["quantize"] = args.quantize
    print(f"loaded {model_dir}: network {load['network_s']:.2f} s, tokenizer {load['tokenizer_s']:.2f} s "
          f"({model.dtype})", file=sys.stderr)

    clips = {"clip11": clip(source, 11.0), "clip60": clip(source, 60.0)}
    for name in [w for w in args.workloads if w in clips]:
        audio = clips[name]
        samples = repeat(lambda: ours_forced(model, audio, args.tokens), args.runs)
        stages = stage_summary(samples)
        seconds = len(audio) / SAMPLE_RATE
        report["workloads"][name] = {"audio_s": seconds, "ours": stages,
                                     "rtf": stages["total_s"]["min"] / seconds}
        print(f"{name}: ours {stages['total_s']['min']:.2f} s, decode "
              f"{stages['decode_ms_per_token']['min']:.1f} ms/token", file=sys.stderr)
    folder_workloads(report, model, source, work_dir, args)
    long_workloads(report, model, source, args)
    add_speedups(report)
    report["memory"] = {
        "weight_bytes_in_use": report["load"]["weight_bytes_in_use"],
        "mlx_peak_bytes": mx.get_peak_memory(), "rss_peak_bytes": rss_peak_bytes(),
    }
    report["memory"]["mlx_peak_over_weights"] = report["memory"]["mlx_peak_bytes"] / report["memory"]["weight_bytes_in_use"]

    if args.profile:
        report["profile"] = profile_pass(model, clips["clip11"], args.tokens)

    if args.compare_official:
        report["official"] = compare_official(report, model, model_dir, clips, args)
    report["provenance"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["cache"] = cache_report(work_dir)
    print(f"cache: {report['cache']['dir']} ({report['cache']['bytes'] / 1e9:.2f} GB: the random-weight "
          f"checkpoint and the generated audio; delete the folder to free it)", file=sys.stderr)
    return report


def folder_workloads(report: dict, model, source, work_dir: Path, args) -> None:
    """`folder` and `folder_batched`: 20 short files, one by one and batched."""
    folder_runs = {"folder": ours_folder, "folder_batched": ours_folder_batched}
    for name in [w for w in folder_runs if w in args.workloads]:
        paths = write_folder(source, work_dir / "folder")
        samples = repeat(lambda: folder_runs[name](model, paths), args.runs)
        seconds = sum(len(load_audio(p)) for p in paths) / SAMPLE_RATE
        stages = stage_summary(samples)
        entry = {"audio_s": seconds, "clips": len(paths), "ours": stages, "rtf": stages["total_s"]["min"] / seconds}
        if name == "folder_batched":
            entry["batch_size"] = FOLDER_BATCH
        report["workloads"][name] = entry
        print(f"{name}: ours {stages['total_s']['min']:.2f} s for {seconds:.1f} s of audio "
              f"({stages['tokens']['min']:.0f} tokens)", file=sys.stderr)


def long_workloads(report: dict, model, source, args) -> None:
    """`long` and `long_one_by_one`: one 121 s input, its segments batched and one by one."""
    long_runs = {"long": 8, "long_one_by_one": 1}
    for name in [w for w in long_runs if w in args.workloads]:
        audio = clip(source, LONG_SECONDS)
        samples = repeat(lambda: ours_long(model, audio, long_runs[name]), args.long_runs, warmup=0)
        stages = stage_summary(samples)
        report["workloads"][name] = {"audio_s": LONG_SECONDS, "batch_size": long_runs[name], "ours": stages,
                                     "rtf": stages["total_s"]["min"] / LONG_SECONDS}
        print(f"{name}: ours {stages['total_s']['min']:.2f} s for {LONG_SECONDS:.0f} s of audio "
              f"({stages['segments']['min']:.0f} segments, {stages['tokens']['min']:.0f} tokens)", file=sys.stderr)


def add_speedups(report: dict) -> None:
    """The paired workloads' speed-ups (batched over one by one), when both ran."""
    if "long" in report["workloads"] and "long_one_by_one" in report["workloads"]:
        one_by_one = report["workloads"]["long_one_by_one"]["ours"]
        batched = report["workloads"]["long"]["ours"]
        speedup = {stat: one_by_one["total_s"][stat] / batched["total_s"][stat] for stat in ("min", "median")}
        report["workloads"]["long"]["speedup_over_one_by_one"] = speedup
        print(f"long: {speedup['min']:.2f}x its segments one by one", file=sys.stderr)
    if "folder" in report["workloads"] and "folder_batched" in report["workloads"]:
        one_by_one = report["workloads"]["folder"]["ours"]
        batched = report["workloads"]["folder_batched"]["ours"]
        speedup = {stat: one_by_one["total_s"][stat] / batched["total_s"][stat] for stat in ("min", "median")}
        report["workloads"]["folder_batched"]["speedup_over_folder"] = speedup
        print(f"folder_batched: {speedup['min']:.2f}x the one-by-one folder run (min over min; "
              f"median {speedup['median']:.2f}x)", file=sys.stderr)


def compare_official(report: dict, model, model_dir: Path, clips: dict, args) -> dict:
    """The official implementation's figures on the same checkpoint and clips (`--compare-official`);
    each of our workloads it also ran gets `ours_over_official`."""
    if not (model_dir / "model.safetensors").is_file() and not (model_dir / "model.safetensors.index.json").is_file():
        return {"error": "--compare-official needs a checkpoint in the Hugging Face layout"}
    from .testing.official_env import OfficialEnvError

    try:
        official = Official(model_dir, threads=args.torch_threads)
    except OfficialEnvError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2)
    result = {"load_s": official.load_s, "torch_threads": official.threads,
              "torch": official.versions["torch"], "workloads": {}}
    for name in [w for w in args.official_workloads if w in clips]:
        audio = clips[name]
        if args.interleave and name in report["workloads"]:
            stages = interleaved(report["workloads"][name], model, official, audio, args)
        else:
            samples = repeat(lambda: official.forced(audio, args.tokens), args.official_runs)
            stages = stage_summary(samples)
        result["workloads"][name] = stages
        ours = report["workloads"].get(name, {}).get("ours")
        if ours:
            report["workloads"][name]["ours_over_official"] = {
                key: ours[key]["min"] / stages[key]["min"]
                for key in stages if key in ours and stages[key]["min"] > 0}
        print(f"{name}: official {stages['total_s']['min']:.2f} s, decode "
              f"{stages['decode_ms_per_token']['min']:.1f} ms/token", file=sys.stderr)
    return result


def interleaved(entry: dict, model: ASRModel, official: Official, audio: np.ndarray, args) -> dict:
    """Our runs and the official's alternated in time (the load on a shared machine comes
    and goes in bursts); our earlier, solo figures move to `ours_solo`. Returns the
    official's stages. Our tokens must equal the solo pass's (the official engine runs now)."""
    solo: list = []
    ours_forced(model, audio, args.tokens, solo)
    official.forced(audio, args.tokens)  # warm-up
    ours_samples, official_samples, seen = [], [], []
    for i in range(max(args.runs, args.official_runs)):
        if i < args.runs:
            ours_samples.append(ours_forced(model, audio, args.tokens, seen))
        if i < args.official_runs:
            official_samples.append(official.forced(audio, args.tokens))
    if any(tokens != solo[0] for tokens in seen):
        raise RuntimeError("our tokens changed once the official engine ran (BLAS / OpenMP clash?)")
    entry["ours_solo"] = entry["ours"]
    entry["ours"] = stage_summary(ours_samples)
    entry["interleaved_with_official"] = True
    print(f"interleaved: ours {entry['ours']['total_s']['min']:.2f} s, decode "
          f"{entry['ours']['decode_ms_per_token']['min']:.1f} ms/token", file=sys.stderr)
    return stage_summary(official_samples)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlx_qwen_asr.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory or hub id (default: random weights at --size dims)")
    parser.add_argument("--size", default="0.6b", choices=["0.6b", "1.7b"])
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: per device)")
    parser.add_argument("--quantize", type=int, default=None, choices=[4, 8], help="quantize the decoder at load")
    parser.add_argument("--work-dir", default=str(DEFAULT_WORK_DIR))
    parser.add_argument("--audio", help="speech file to cut the clips from (default: synthetic speech)")
    parser.add_argument("--workloads", nargs="+", default=None, choices=WORKLOADS,
                        help=f"default: {' '.join(DEFAULT_WORKLOADS)}; --full: all")
    parser.add_argument("--full", action="store_true", help="every workload (long ones included)")
    parser.add_argument("--long-runs", type=int, default=1, help="runs of each long workload")
    parser.add_argument("--tokens", type=int, default=32, help="forced decode tokens per clip")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare-official", action="store_true")
    parser.add_argument("--official-workloads", nargs="+", default=["clip11"], choices=["clip11", "clip60"])
    parser.add_argument("--official-runs", type=int, default=3)
    parser.add_argument("--torch-threads", type=int, default=2)
    parser.add_argument("--no-interleave", dest="interleave", action="store_false",
                        help="with --compare-official: time the official runs after ours instead of alternating")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--json", help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.workloads is None:
        args.workloads = list(WORKLOADS if args.full else DEFAULT_WORKLOADS)
    report = run(args)
    text = json.dumps(report, indent=2, default=str)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
