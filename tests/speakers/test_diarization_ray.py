"""--diarize on a folder over a Ray cluster (cluster.py): the workers diarize as a local run
does, the speakers reach every output and the manifest records the option."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import ray
import soundfile as sf

from support.heldout import HELDOUT
from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.frontends.folder import transcribe_folder

pytestmark = pytest.mark.slow   # a local Ray cluster and two transcriptions: ~30 s
RATE = 16000


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Two voices in turns (A B A B) and one voice alone."""
    folder = tmp_path_factory.mktemp("ray-diarize") / "in"
    folder.mkdir()
    a, b = load_audio(HELDOUT / "medium_01.flac"), load_audio(HELDOUT / "medium_05.flac")
    pause = np.zeros(RATE // 2, np.float32)
    turns = [a[:len(a) // 2], pause, b[:len(b) // 2], pause, a[len(a) // 2:], pause, b[len(b) // 2:]]
    sf.write(folder / "two.wav", np.concatenate(turns), RATE)
    shutil.copy(HELDOUT / "medium_01.flac", folder / "one.flac")
    return folder


def outputs(out: Path) -> dict:
    """The run's outputs, json without timings and the manifest without finish times."""
    found = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name == "summary.json":
            continue
        if path.name == "manifest.json":
            files = json.loads(path.read_text())["files"]
            found[path.name] = {key: {k: v for k, v in entry.items() if k != "finished"}
                                for key, entry in files.items()}
        elif path.suffix == ".json":
            found[path.name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "timings"}
        else:
            found[path.name] = path.read_bytes()
    return found


def test_ray_folder_run_diarizes_as_a_local_run(inputs, trained_checkpoint, trained_aligner, tmp_path):
    options = dict(dtype="float32", formats=["txt", "json", "rttm"], quiet=True, diarize=True,
                   aligner=str(trained_aligner))
    local = transcribe_folder(inputs, tmp_path / "local", model=trained_checkpoint, **options)
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    try:
        remote = transcribe_folder(inputs, tmp_path / "ray", model=trained_checkpoint, ray=True, **options)
    finally:
        ray.shutdown()
    assert (remote["done"], remote["failed"]) == (local["done"], local["failed"]) == (2, 0)
    found = outputs(tmp_path / "ray")
    assert found == outputs(tmp_path / "local")
    assert found["two.json"]["speakers"] == ["SPEAKER_1", "SPEAKER_2"]
    assert found["one.json"]["speakers"] == ["SPEAKER_1"]
    assert {line.split()[7] for line in found["two.rttm"].decode().splitlines()} == {"SPEAKER_1", "SPEAKER_2"}
    assert all("diarize" in entry["options"] for entry in found["manifest.json"].values())
