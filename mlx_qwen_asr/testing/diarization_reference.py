"""The diarization networks' original PyTorch code as a client, for parity checks and the
weight conversion.

The originals run out of process, in their own environment (diarization_env.py, created on
first use), served by diarization_worker.py over official.py's pipe protocol. One worker per
process, started on first use and stopped at exit. Imported only by tests and scripts.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import numpy as np

from . import diarization_env
from .official import Worker

WORKER_SCRIPT = Path(__file__).with_name("diarization_worker.py")

_worker: Worker | None = None


def worker(announce=None) -> Worker:
    """This process's worker, creating the environment and starting it if needed.

    Raises diarization_env.DiarizationEnvError (one line) when the environment cannot be made."""
    global _worker
    if _worker is None or _worker.process.poll() is not None:
        _worker = Worker(diarization_env.ensure_env(announce), WORKER_SCRIPT)
        atexit.register(_worker.close)
    return _worker


def stop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


def segmentation_state() -> dict[str, np.ndarray]:
    """pyannote segmentation-3.0's state dict (float32), as the original checkpoint holds it."""
    return worker().request("segmentation_state")


def embedding_state() -> dict[str, np.ndarray]:
    """CAM++'s state dict (float32), as the original checkpoint holds it."""
    return worker().request("embedding_state")


def checkpoint_paths() -> dict[str, str]:
    """Where the original checkpoints and their licence notices lie in the environment."""
    return worker().request("checkpoint_paths")


def segmentation(waveforms: np.ndarray) -> np.ndarray:
    """The original PyanNet's log-probabilities [batch, frames, 7] for [batch, samples]."""
    return worker().request("segmentation", waveforms=np.ascontiguousarray(waveforms, np.float32))


def segmentation_geometry(num_samples: int) -> dict:
    """The original's frame count for `num_samples`, frame duration, step and start (s)."""
    return worker().request("segmentation_geometry", num_samples=num_samples)


def embedding(fbank: np.ndarray) -> np.ndarray:
    """The original CAM++'s embeddings [batch, 192] for fbank [batch, frames, 80]."""
    return worker().request("embedding", fbank=np.ascontiguousarray(fbank, np.float32))


def fbank(audio: np.ndarray, subtract_mean: bool = True) -> np.ndarray:
    """Kaldi's fbank [frames, 80] (kaldi-native-fbank) with CAM++'s options."""
    return worker().request("fbank", audio=np.ascontiguousarray(audio, np.float32), subtract_mean=subtract_mean)
