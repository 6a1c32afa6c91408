"""Download what scripts/gpu_check.py needs on the GPU machine and split it for transport.

    python scripts/gpu_bundle.py                 # -> .gpu-bundle/bundle.tar.00, .01, ... + SHA256SUMS

The GPU machine reaches no package registry, and each call to it carries at most 64 MiB:
the checkout (about 23 MB) plus the paths it names. Its image already has Python 3.12,
torch 2.11 (CUDA 13), numpy, huggingface_hub, tokenizers, httpx, click, h11 and the
nvidia-* CUDA 13 libraries; it lacks MLX's CUDA build, soundfile, the server's packages and
the official engine's own pins. This script downloads those as wheels (no dependencies
resolved: each is named, for CPython 3.12 on manylinux x86-64), plus Debian's OpenBLAS for
MLX's CPU backend there (its bundled reference BLAS would make the CPU leg of the float32
check take minutes), packs them into one uncompressed tar (wheels are compressed already)
and splits it into parts of at most `--part-mib` MiB, one part per call. docs/gpu.md says
how the parts travel and scripts/gpu_remote.sh how they are joined and installed there.
The folder is git-ignored: never commit wheels.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Our side, installed into the machine's own python3 (its torch venv): MLX with the CUDA 13
# backend, soundfile (+ cffi), and the server's packages for scripts/server_bench.py.
OURS = ["mlx==0.32.4", "mlx-cuda-13==0.32.4", "soundfile==0.14.0", "cffi==2.0.0", "pycparser==3.0",
        "fastapi==0.165.0", "starlette==1.10.0", "pydantic==2.13.4", "pydantic-core==2.46.4",
        "annotated-types==0.7.0", "typing-inspection==0.4.2", "uvicorn==0.55.0", "python-multipart==0.0.34",
        "websockets==17.4"]
# The official engine (mlx_qwen_asr/testing/official_requirements.txt: qwen-asr 0.0.6 on
# transformers 4.57.6, the engine every parity test compares with) in a venv of its own on
# top of the machine's torch; huggingface_hub and tokenizers at the versions transformers
# 4.57.6 accepts; what `import qwen_asr` imports (nagisa + DyNet38, librosa and its needs
# that the image lacks). Versions: those of the official environment the tests create.
OFFICIAL = ["qwen-asr==0.0.6", "transformers==4.57.6", "huggingface-hub==0.36.2", "tokenizers==0.22.2",
            "nagisa==0.2.11", "DyNet38==2.2", "librosa==0.11.0", "audioread==3.1.0", "soxr==1.1.0",
            "pooch==1.9.0", "decorator==5.3.2", "platformdirs==4.14.9", "soundfile==0.14.0", "cffi==2.0.0",
            "pycparser==3.0"]
# OpenBLAS with the standard cblas_* names (MLX_QWEN_ASR_FAST_BLAS binds it), and its Fortran runtime.
DEBS = ["libopenblas0-pthread", "libgfortran5"]
PLATFORMS = ["manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64"]


def run(command: list[str], cwd: Path | None = None) -> None:
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    done = subprocess.run(command, cwd=cwd)
    if done.returncode:
        raise SystemExit(f"error: {command[0]} {command[1] if len(command) > 1 else ''} failed "
                         f"(exit {done.returncode})")


def download_wheels(names: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", *platforms, "-d", str(folder), *names])


def download_debs(folder: Path) -> None:
    if not shutil.which("apt-get"):
        print("warning: no apt-get here: OpenBLAS is left out (the CPU leg of tokens_fp32 runs on "
              "MLX's reference BLAS: minutes)", file=sys.stderr)
        return
    folder.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", *DEBS], cwd=folder)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


CALL_LIMIT_MIB, MARGIN_MIB, LARGEST_PART_MIB = 64.0, 4.0, 40.0


def checkout_mib() -> float | None:
    """What every call carries anyway: the tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True)
    if listed.returncode:
        return None
    files = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


def part_mib(checkout: float | None) -> float:
    if checkout is None:
        return 36.0
    return max(8.0, min(LARGEST_PART_MIB, CALL_LIMIT_MIB - checkout - MARGIN_MIB))


def split(path: Path, part_bytes: int) -> list[Path]:
    parts = []
    with open(path, "rb") as f:
        for i, block in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = path.with_name(f"{path.name}.{i:02d}")
            part.write_bytes(block)
            parts.append(part)
    return parts


def pack(staging: Path, out: Path, part_bytes: int) -> list[Path]:
    """The files under `staging`, with a MANIFEST of their checksums, as one tar split into
    `out`/bundle.tar.00, .01, ... of at most `part_bytes`, and `out`/SHA256SUMS of the tar
    and each part (scripts/gpu_remote.sh checks both). `staging` is removed."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = "".join(f"{sha256(p)}  {p.relative_to(staging)}\n" for p in files)
    (staging / "MANIFEST").write_text(manifest)
    tar_path = out / "bundle.tar"
    with tarfile.open(tar_path, "w") as tar:
        for p in sorted(staging.iterdir()):
            tar.add(p, arcname=p.name)
    shutil.rmtree(staging)
    parts = split(tar_path, part_bytes)
    checksums = [f"{sha256(tar_path)}  bundle.tar"] + [f"{sha256(p)}  {p.name}" for p in parts]
    (out / "SHA256SUMS").write_text("\n".join(checksums) + "\n")
    (out / "MANIFEST").write_text(manifest)   # a copy to read here; the tar holds its own
    tar_path.unlink()
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / ".gpu-bundle"), help="folder (git-ignored) for the parts")
    parser.add_argument("--part-mib", type=float, default=None,
                        help="largest part (default: 64 MiB per call less this checkout, less 4, at most 40)")
    parser.add_argument("--no-official", action="store_true", help="leave the official engine's wheels out")
    args = parser.parse_args(argv)

    checkout = checkout_mib()
    size = args.part_mib or part_mib(checkout)
    print(f"checkout {checkout or 0:.1f} MiB: parts of at most {size:.1f} MiB", file=sys.stderr)
    out = Path(args.out).resolve()
    staging = out / "staging"
    shutil.rmtree(out, ignore_errors=True)
    download_wheels(OURS, staging / "ours")
    if not args.no_official:
        download_wheels(OFFICIAL, staging / "official")
    download_debs(staging / "debs")
    parts = pack(staging, out, int(size * 2**20))
    files = (out / "MANIFEST").read_text().splitlines()

    total = sum(p.stat().st_size for p in parts)
    print(f"{len(files)} files, {total / 2**20:.1f} MiB in {len(parts)} parts under {out}:", file=sys.stderr)
    for p in parts:
        print(f"  {p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}  {p.stat().st_size / 2**20:.1f} MiB",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
