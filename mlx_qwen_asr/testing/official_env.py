"""The official implementation's own virtual environment, created once and reused.

torch, transformers and qwen-asr pin versions of huggingface_hub and tokenizers older than
the ones this package runs on, so they never go into the user's environment: they live in
a venv of their own, by default ~/.cache/mlx_qwen_asr/official-env-<hash of the pins and
Python version> ($XDG_CACHE_HOME respected; MLX_QWEN_ASR_OFFICIAL_ENV names another
folder). A file lock lets parallel and repeated runs share one creation; a folder without
its completion marker (an interrupted creation) is rebuilt.
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

REQUIREMENTS = Path(__file__).with_name("official_requirements.txt")
ENV_VARIABLE = "MLX_QWEN_ASR_OFFICIAL_ENV"
COMPLETE_MARKER = ".mlx-qwen-asr-complete"


class OfficialEnvError(RuntimeError):
    """The official environment could not be created; the message is one line."""


def env_dir() -> Path:
    """Where the environment lives (it may not exist yet)."""
    override = os.environ.get(ENV_VARIABLE)
    if override:
        return Path(override).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    pins = REQUIREMENTS.read_bytes() + f"{sys.implementation.name}{sys.version_info[:2]}".encode()
    return cache / "mlx_qwen_asr" / f"official-env-{hashlib.sha256(pins).hexdigest()[:12]}"


def env_python(folder: Path) -> Path:
    return folder / "bin" / "python"


def site_packages(python: Path) -> str:
    """The environment's site-packages folder (for a check that needs torch beside MLX)."""
    done = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def is_complete(folder: Path) -> bool:
    # .exists() follows bin/python's link: an env whose base interpreter is gone is rebuilt.
    return (folder / COMPLETE_MARKER).is_file() and env_python(folder).exists()


def ensure_env(announce=None) -> Path:
    """The environment's python, creating the environment first if needed.

    `announce(line)` is told before a creation starts (it takes minutes)."""
    return ensure_venv(env_dir(), "the official engine's environment", "(torch, qwen-asr)", "a few minutes",
                       [(f"pip install -r {REQUIREMENTS}", ["-r", str(REQUIREMENTS)])], OfficialEnvError, announce)


def ensure_venv(folder: Path, name: str, contents: str, takes: str, installs: list[tuple[str, list[str]]],
                error: type[Exception], announce=None) -> Path:
    """`folder`'s python, the venv created first if needed: `python -m venv`, then each of
    `installs` (a step's name, its `pip install` arguments). One creation under a file lock
    for parallel runs; the completion marker written last; a failure raises `error` in one
    line. `name`, `contents` and `takes` say what it is in the messages."""
    if is_complete(folder):
        return env_python(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # a parallel run creating it: wait, then reuse
        if not is_complete(folder):
            _create(folder, name, contents, takes, installs, error, announce)
    return env_python(folder)


def _create(folder: Path, name: str, contents: str, takes: str, installs: list[tuple[str, list[str]]],
            error: type[Exception], announce) -> None:
    log = folder.with_name(folder.name + ".log")
    if announce:
        announce(f"creating {name} {contents} in {folder}; once, {takes} (log: {log})")
    shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    pip = [str(env_python(folder)), "-m", "pip", "install", "--no-input"]
    with open(log, "w") as out:
        steps = [("python -m venv", [sys.executable, "-m", "venv", str(folder)]),
                 *[(step_name, [*pip, *arguments]) for step_name, arguments in installs]]
        for step_name, step in steps:
            out.write(f"$ {' '.join(step)}\n")
            out.flush()
            done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode:
                raise error(f"could not create {name} in {folder}: {step_name} failed (exit {done.returncode}): "
                            f"{_last_line(log)} (full log: {log})")
    (folder / COMPLETE_MARKER).write_text(f"created in {time.monotonic() - started:.0f} s\n")


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]
