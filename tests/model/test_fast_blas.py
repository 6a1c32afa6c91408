"""fast_blas: binds MKL only when it may, says why otherwise, and products stay correct."""

import ast
import json
import platform
import subprocess
import sys
from pathlib import Path

import mlx_qwen_asr
from mlx_qwen_asr.model import fast_blas

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def run_status(code_before: str = "", env_extra: dict | None = None) -> dict:
    import os
    env = {**os.environ, **(env_extra or {})}
    code = f"{code_before}\nimport json, mlx_qwen_asr\nprint(json.dumps(mlx_qwen_asr.model.fast_blas.status()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_status_reports_and_products_are_correct():
    status = fast_blas.status()
    assert {"active", "library", "reason"} <= status.keys()
    assert fast_blas.self_check()
    assert status.get("self_check") == "passed"
    assert mlx_qwen_asr.model.fast_blas is fast_blas


def test_opt_out_by_environment():
    status = run_status(env_extra={fast_blas.ENV: "0"})
    assert status["active"] is False and fast_blas.ENV in status["reason"]


def test_nothing_bound_when_mlx_imported_first():
    status = run_status("import mlx.core")
    assert status["active"] is False
    assert "self_check" not in status   # nothing bound, nothing to check at import
    if sys.platform == "linux":
        assert "imported before" in status["reason"]


def test_importing_mlx_first_is_said_once_on_stderr():
    code = "import mlx.core\nimport mlx_qwen_asr\nimport mlx_qwen_asr.transcribe"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    warned = [line for line in run.stderr.splitlines() if "imported before mlx_qwen_asr" in line]
    if sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64"):
        assert len(warned) == 1, run.stderr
    else:
        assert not warned
    clean = subprocess.run([sys.executable, "-c", "import mlx_qwen_asr\nimport mlx.core"], capture_output=True,
                           text=True, check=True)
    assert "imported before" not in clean.stderr


def test_scripts_import_the_package_before_mlx():
    """A script that imports mlx.core first measures MLX's reference BLAS, not what users run."""
    late = []
    for path in sorted(SCRIPTS.glob("*.py")):
        order = [name for node in ast.parse(path.read_text(encoding="utf-8")).body
                 for name in _top_level_imports(node)]
        first_mlx = next((i for i, n in enumerate(order) if n == "mlx" or n.startswith("mlx.")), None)
        first_pkg = next((i for i, n in enumerate(order) if n.split(".")[0] == "mlx_qwen_asr"), None)
        if first_mlx is not None and (first_pkg is None or first_pkg > first_mlx):
            late.append(path.name)
    assert not late


def _top_level_imports(node) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module]
    return []


def test_missing_library_is_reported_not_fatal():
    status = run_status(env_extra={fast_blas.ENV: "/nonexistent/libnothing.so"})
    assert status["active"] is False
    if sys.platform == "linux" and fast_blas._applicable() is None:
        assert "libnothing" in status["reason"]


def test_products_stay_right_when_torch_was_imported_first(official_engine):
    """torch brings its own OpenMP runtime; a second one under MKL gave wrong addmm results.
    The binding then uses sequential MKL, and the self-check covers addmm. torch comes from
    the official engine's environment, put after this one's packages on the path."""
    from mlx_qwen_asr.testing import official_env

    torch_site = official_env.site_packages(official_env.ensure_env())
    code = (
        f"import sys\nsys.path.append({torch_site!r})\n"
        "import torch\nimport numpy as np, mlx_qwen_asr\nimport mlx.core as mx\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.standard_normal((256, 64)).astype(np.float32); w = rng.standard_normal((96, 64)).astype(np.float32)\n"
        "b = rng.standard_normal(96).astype(np.float32)\n"
        "y = np.array(mx.addmm(mx.array(b), mx.array(x), mx.array(w).T))\n"
        "print('ERR', float(np.abs(y - (x @ w.T + b)).max()), mlx_qwen_asr.model.fast_blas.status().get('self_check'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    _, err, check = done.stdout.strip().splitlines()[-1].split()
    assert float(err) < 1e-3 and check == "passed"


def test_plain_install_brings_mkl_on_linux_x86_64():
    """The fast path is what `pip install -e .` gives there, not an extra to know about."""
    from pathlib import Path

    import pytest

    try:
        import tomllib
    except ImportError:   # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")

    from packaging.markers import Marker
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    linux_x86 = {"sys_platform": "linux", "platform_machine": "x86_64"}
    mac_arm = {"sys_platform": "darwin", "platform_machine": "arm64"}
    mkl = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "mkl"]
    assert len(mkl) == 1
    marker = mkl[0].marker or Marker("python_version > '0'")
    assert marker.evaluate(linux_x86) and not marker.evaluate(mac_arm)


def test_active_by_default_where_it_applies():
    import os
    import platform

    env = {k: v for k, v in os.environ.items() if k != fast_blas.ENV}
    code = "import json, mlx_qwen_asr\nprint(json.dumps(mlx_qwen_asr.model.fast_blas.status()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    status = json.loads(out.stdout.strip().splitlines()[-1])
    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert status["active"] is True and status["self_check"] == "passed", status["reason"]
    else:
        assert status["active"] is False
