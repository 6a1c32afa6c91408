"""The official engine's own environment and worker: created once under a lock, reused,
one clear line when creation fails; the worker keeps torch out of this process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlx_qwen_asr.testing import official, official_env

ENSURE = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mlx_qwen_asr.testing import official_env
    official_env.REQUIREMENTS = Path(sys.argv[1])
    try:
        print("PYTHON", official_env.ensure_env(lambda line: print("ANNOUNCE", line, flush=True)))
    except official_env.OfficialEnvError as error:
        print("ERROR", error)
""")


def ensure_in_subprocess(folder: Path, requirements: Path) -> subprocess.Popen:
    import os

    env = {**os.environ, official_env.ENV_VARIABLE: str(folder)}
    return subprocess.Popen([sys.executable, "-c", ENSURE, str(requirements)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_parallel_runs_create_the_env_once_and_reuse_it(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install: only the venv itself\n")
    folder = tmp_path / "env"
    runs = [ensure_in_subprocess(folder, requirements) for _ in range(2)]
    outputs = [run.communicate(timeout=240)[0] for run in runs]
    assert sum(out.count("ANNOUNCE") for out in outputs) == 1, outputs
    pythons = {line.split(" ", 1)[1] for out in outputs for line in out.splitlines() if line.startswith("PYTHON")}
    assert pythons == {str(folder / "bin" / "python")}, outputs
    assert (folder / official_env.COMPLETE_MARKER).is_file()
    again = ensure_in_subprocess(folder, requirements).communicate(timeout=60)[0]
    assert "ANNOUNCE" not in again and "PYTHON" in again


def test_a_failed_creation_is_one_line_and_is_retried(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("./no-such-local-package\n")
    folder = tmp_path / "env"
    out = ensure_in_subprocess(folder, requirements).communicate(timeout=240)[0]
    errors = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "Traceback" not in out, out
    assert str(folder) in errors[0] and "pip install" in errors[0] and "no-such-local-package" in errors[0]
    assert not (folder / official_env.COMPLETE_MARKER).exists()
    out = ensure_in_subprocess(folder, requirements).communicate(timeout=240)[0]
    assert "ANNOUNCE" in out and "ERROR" in out   # not taken for done: tried again


def test_env_dir_depends_on_the_pins(tmp_path, monkeypatch):
    monkeypatch.delenv(official_env.ENV_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = official_env.env_dir()
    assert first.parent == tmp_path / "mlx_qwen_asr" and first.name.startswith("official-env-")
    other = tmp_path / "other.txt"
    other.write_text("torch==2.13.0\n")
    monkeypatch.setattr(official_env, "REQUIREMENTS", other)
    assert official_env.env_dir() != first


def test_the_pins_and_the_test_extra():
    """torch, qwen-asr and transformers are pinned for the official env and absent from the
    test extra (they would change the huggingface_hub and tokenizers the suite runs on)."""
    try:
        import tomllib
    except ImportError:   # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    from packaging.requirements import Requirement

    pins = {Requirement(line).name: str(Requirement(line).specifier)
            for line in official_env.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")}
    assert pins == {"torch": "==2.13.0", "qwen-asr": "==0.0.6", "transformers": "==4.57.6"}
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    test_extra = {Requirement(r).name for r in project["optional-dependencies"]["test"]}
    assert not test_extra & {"torch", "qwen-asr", "transformers"}


def test_the_worker_imports_no_mlx():
    tree = ast.parse(Path(official.WORKER_SCRIPT).read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] in ("mlx", "mlx_qwen_asr")}, names
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))


def test_worker_errors_come_back_and_it_keeps_serving(official_engine, tmp_path):
    worker = official_engine.process   # the official engine runs in a process of its own
    assert worker.pid != os.getpid() and worker.poll() is None
    with pytest.raises(official.OfficialError, match="the official worker failed"):
        official.load_official(tmp_path / "no-model")
    with pytest.raises(official.OfficialError, match="unknown request"):
        official_engine.request("no_such_request")
    assert official_engine.versions["torch"].startswith("2.13.0")   # still answering
    assert official.parse_output("language English<asr_text>hi") == ("English", "hi")
