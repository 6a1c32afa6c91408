"""Folder runs on a Ray cluster (cluster.py): the same files as a local run, a worker killed
mid-file, the driver killed and the run resumed, a bad file reported once.

One local cluster of two worker CPUs serves the in-process runs (Ray starts slowly); the
killed-driver test runs the CLI, which starts and stops its own, in its own session so that
every process it leaves behind can be found and checked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray

from support.heldout import HELDOUT
from mlx_qwen_asr.errors import QwenASRError
from mlx_qwen_asr.frontends.folder import transcribe_folder

REPO = Path(__file__).resolve().parents[2]
CLIPS = [f"short_{i:02d}.flac" for i in range(1, 20)]   # groups of 8, 8, 3 (batch.GROUP_FILES)
OPTIONS = dict(dtype="float32", formats="all", quiet=True, word_timestamps=False)   # srt/vtt: segment cues


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """19 held-out clips and a file that is not audio."""
    folder = tmp_path_factory.mktemp("cluster-in") / "in"
    folder.mkdir()
    for name in CLIPS:
        shutil.copy(HELDOUT / name, folder / name)
    (folder / "bad.wav").write_bytes(b"RIFF not really a wave file")
    return folder


@pytest.fixture(scope="module")
def local_run(inputs, trained_checkpoint, tmp_path_factory) -> tuple[Path, dict]:
    """The reference: the same folder transcribed in this process, without Ray."""
    out = tmp_path_factory.mktemp("cluster-local") / "out"
    return out, transcribe_folder(inputs, out, model=trained_checkpoint, **OPTIONS)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for this module: two worker CPUs, a small object store."""
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield
    ray.shutdown()


def contents(out: Path) -> dict:
    """Every file of a run's output folder, comparable across runs: json outputs without
    their timings, the manifest without finish times; the summary (a run's own) left out."""
    found = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name == "summary.json" or is_temp(path):
            continue
        name = path.relative_to(out).as_posix()
        if path.name == "manifest.json":
            files = json.loads(path.read_text())["files"]
            found[name] = {key: {k: v for k, v in entry.items() if k != "finished"} for key, entry in files.items()}
        elif path.suffix == ".json":
            found[name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "timings"}
        else:
            found[name] = path.read_bytes()
    return found


def is_temp(path: Path) -> bool:
    """An atomic write's temporary file (writers.atomic_write): hidden, never an output's name."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def assert_same_as_local(out: Path, summary: dict, local_run, temps_allowed: bool = False) -> None:
    """Every output and manifest entry equal to the local run's, none missing or extra;
    no temporary file left, unless a killed driver may have left one mid-write."""
    local_out, local_summary = local_run
    assert contents(out) == contents(local_out)
    assert temps_allowed or not [p for p in out.rglob("*") if is_temp(p)]
    assert summary["failures"] == local_summary["failures"] and len(summary["failures"]) == 1


def test_ray_run_writes_what_a_local_run_writes(inputs, local_run, trained_checkpoint, cluster, tmp_path, capsys):
    out = tmp_path / "out"
    summary = transcribe_folder(inputs, out, model=trained_checkpoint, ray=True, **OPTIONS)
    assert (summary["done"], summary["failed"]) == (len(CLIPS), 1)
    assert_same_as_local(out, summary, local_run)
    # The bad file fails once, reported on one line, and the run went on.
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.wav" in errors[0]
    # A rerun skips everything without asking for workers (nothing listens at that address).
    again = transcribe_folder(inputs, out, model=trained_checkpoint, ray="127.0.0.1:1", **OPTIONS)
    assert (again["done"], again["skipped"], again["failed"]) == (0, len(CLIPS), 1)


def _session_processes(session: int) -> list[int]:
    """Pids of the processes in `session` (Linux /proc), this test's own excluded."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                # Field 6 of /proc/PID/stat, after the parenthesised command name.
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session and fields[0] != "Z":
                found.append(int(entry))
    return found


def _transcribing_worker(session: int) -> int | None:
    """A Ray worker of this session in the middle of Worker.transcribe (Ray titles it so)."""
    for pid in _session_processes(session):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title.startswith(b"ray::Worker.transcribe"):
            return pid
    return None


def test_a_worker_killed_mid_file_loses_nothing(inputs, local_run, trained_checkpoint, cluster, tmp_path, capsys):
    out = tmp_path / "out"
    result = {}
    run = threading.Thread(target=lambda: result.update(
        transcribe_folder(inputs, out, model=trained_checkpoint, ray=True, **OPTIONS)))
    run.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and run.is_alive() and time.monotonic() < deadline:
        killed = _transcribing_worker(os.getsid(0))
        if killed is None:
            time.sleep(0.01)
    assert killed is not None, "no worker was seen transcribing"
    os.kill(killed, signal.SIGKILL)
    run.join(timeout=120)
    assert not run.is_alive()
    assert "a Ray worker died while transcribing" in capsys.readouterr().err
    assert (result["done"], result["failed"]) == (len(CLIPS), 1)   # every file once, none lost
    assert len(result["files"]) == len(CLIPS) + 1
    assert_same_as_local(out, result, local_run)


def test_a_killed_driver_resumes_on_rerun(inputs, local_run, trained_checkpoint, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mlx_qwen_asr", str(inputs), "-o", str(out), "--model", str(trained_checkpoint),
               "--dtype", "float32", "-f", "all", "--no-timestamps", "--quiet", "--ray"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def run_cli(kill_after_first: bool) -> tuple[int, int]:
        """The CLI in its own session; returns (exit status or -9, manifest entries at the kill)."""
        driver = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        recorded = 0
        try:
            if kill_after_first:
                deadline = time.monotonic() + 90
                while not recorded and driver.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    try:   # each finished input is one line of the journal at once
                        recorded = (out / "manifest.journal").read_text().count("\n")
                    except OSError:
                        pass
                driver.send_signal(signal.SIGKILL)
            status = driver.wait(timeout=120)
            stderr = driver.stderr.read().decode()
        finally:
            driver.kill()
            driver.stderr.close()
        left = _session_processes(driver.pid)
        if not kill_after_first:
            # A run that ends shuts its local cluster down: nothing of it stays behind.
            for _ in range(100):
                left = _session_processes(driver.pid)
                if not left:
                    break
                time.sleep(0.1)
            assert left == [], stderr
        for pid in left:   # the killed driver's cluster winds down by itself within a minute; not here
            os.kill(pid, signal.SIGKILL)
        return status, recorded

    status, recorded = run_cli(kill_after_first=True)
    assert status == -signal.SIGKILL and 0 < recorded < len(CLIPS)
    status, _ = run_cli(kill_after_first=False)
    assert status == 1   # bad.wav failed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] >= recorded and summary["done"] >= 1
    assert (summary["done"] + summary["skipped"], summary["failed"]) == (len(CLIPS), 1)
    # Killed mid-write, the driver may leave a temporary file beside an output; the output
    # itself is never partial (atomic rename).
    assert_same_as_local(out, summary, local_run, temps_allowed=True)


def test_a_model_the_workers_cannot_load_is_a_setup_error(inputs, cluster, tmp_path):
    """Said on one line before any audio is processed, as a local run says it."""
    with pytest.raises(QwenASRError, match="does not exist") as caught:
        transcribe_folder(inputs, tmp_path / "out", model=tmp_path / "no-model", ray=True, **OPTIONS)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_workers_load_the_model_as_the_driver_loaded_it(tiny_checkpoint, tmp_path, monkeypatch):
    """A loaded low-memory model reaches the workers as its LoadOptions (dtype, bits and
    low_memory), so each worker loads it the same way, not as a plain model."""
    import soundfile as sf

    from support.audio_samples import speech
    from mlx_qwen_asr.errors import SetupError
    from mlx_qwen_asr.frontends import cluster
    from mlx_qwen_asr.transcribe import load_model

    model = load_model(tiny_checkpoint, low_memory=True)
    given = []

    def start(address, load, workers=None):   # no cluster: what the workers would be given
        given.append(load)
        raise SetupError("no cluster in this test")

    monkeypatch.setattr(cluster.RayWorkers, "start", start)
    sf.write(tmp_path / "a.wav", speech(0.5), 16000)
    with pytest.raises(SetupError, match="no cluster"):
        transcribe_folder(tmp_path / "a.wav", tmp_path / "out", model=model, ray=True, quiet=True)
    worker = cluster.Worker(given[0])
    assert worker.problem == ""
    assert worker.asr.low_memory and (worker.asr.dtype, worker.asr.quantize) == (model.dtype, model.quantize)
    assert worker.asr.quantize   # the low-memory recipe quantizes


def test_a_bad_worker_count_is_a_setup_error_before_the_output_folder(tmp_path):
    """Ray's setup failures are SetupErrors, as a local run's are: one line, exit status 2,
    and no empty output folder left behind."""
    import soundfile as sf

    from support.audio_samples import speech
    from mlx_qwen_asr.errors import SetupError

    sf.write(tmp_path / "a.wav", speech(0.5), 16000)
    with pytest.raises(SetupError, match="ray_workers must be at least 1"):
        transcribe_folder(tmp_path / "a.wav", tmp_path / "out", ray=True, ray_workers=0, quiet=True)
    assert not (tmp_path / "out").exists()
