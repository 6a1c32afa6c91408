"""The package's layout rules: the runtime never imports test support, nor looks beside the checkout."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlx_qwen_asr"
# Tools run by hand that build their own test checkpoints and audio; not the runtime.
TOOLS = {"bench.py"}


def runtime_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module `path` imports, at any depth of its code."""
    package = ["mlx_qwen_asr", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_runtime_modules_never_import_test_support():
    offenders = {str(p.relative_to(PACKAGE)): sorted(n for n in imported_modules(p) if n.startswith("mlx_qwen_asr.testing"))
                 for p in runtime_modules() if p.name not in TOOLS}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_sees_test_support_imports():
    """The scan above can fail: bench (a tool) does import test support, relatively."""
    assert any(n.startswith("mlx_qwen_asr.testing") for n in imported_modules(PACKAGE / "bench.py"))


def test_fixture_trainers_stay_outside_the_package():
    """fixture_training/ (the trained fixtures' recipes) is neither shipped nor imported by the runtime."""
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'\[tool\.setuptools\.packages\.find\]\s+include = \["mlx_qwen_asr\*"\]\s', pyproject)
    assert (PACKAGE.parent / "fixture_training" / "model.py").is_file()
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if any(n.split(".")[0] == "fixture_training" for n in imported_modules(p))]
    assert offenders == []


def test_no_package_code_points_beside_the_checkout():
    """Only test support may look for the development machines' ../shared folder."""
    offenders = [str(p.relative_to(PACKAGE)) for p in runtime_modules()
                 if any(isinstance(n, ast.Constant) and n.value == "shared"
                        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert offenders == []


def test_a_transcription_loads_no_test_support(trained_checkpoint):
    """Importing every runtime module and transcribing a clip leaves mlx_qwen_asr.testing unloaded."""
    modules = [".".join(("mlx_qwen_asr", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
               for p in runtime_modules() if p.name not in TOOLS and p.name != "__main__.py"]
    heldout = Path(__file__).resolve().parent / "fixtures" / "heldout" / "short_01.flac"
    code = (f"import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            f"import mlx_qwen_asr\n"
            f"result = mlx_qwen_asr.load_model({str(trained_checkpoint)!r}, dtype='float32').transcribe({str(heldout)!r})\n"
            f"assert result.text, 'empty transcript'\n"
            f"print(sorted(m for m in sys.modules if m.startswith('mlx_qwen_asr.testing')))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# Units over the size limits, each with the reason it stays whole. A new entry needs a
# reason a reader would accept; an entry whose unit has shrunk must go (see the test).
MAX_CLASS_LINES, MAX_FUNCTION_LINES = 200, 60
LONG_UNITS = {
    "frontends/server/app.py::create_app": "the FastAPI routes are closures over one app's worker and settings",
    "frontends/server/app.py::create_app._transcribe": "one OpenAI request from form fields to response, in the order "
                                             "the API documents them",
    "frontends/cli.py::build_parser": "one add_argument per flag, in --help order",
    "frontends/folder.py::_run_folder": "one folder run's loop: resume, write all-or-nothing, record; split, the "
                              "journal and lock state would be passed around",
    "frontends/server/worker.py::Worker": "the one MLX thread: its queue, the batch it picks each turn and how each "
                                "job completes share the same state",
    "testing/official_worker.py::Official": "test support: the official engine's side of the worker protocol, "
                                            "one short method per request",
    "testing/random_checkpoint.py::write_checkpoint": "test support: writes every file of a checkpoint folder",
    "testing/random_checkpoint.py::model_config_dict": "test support: the config.json literal",
    "testing/random_checkpoint.py::weight_shapes": "test support: the checkpoint's tensor table",
}


def long_units() -> dict[str, int]:
    """`module::Class.method` -> lines, for every class over MAX_CLASS_LINES and function
    over MAX_FUNCTION_LINES in the package (nested ones included)."""
    found = {}

    def visit(node, path: str, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                lines = child.end_lineno - child.lineno + 1
                if lines > (MAX_CLASS_LINES if isinstance(child, ast.ClassDef) else MAX_FUNCTION_LINES):
                    found[f"{path}::{name}"] = lines
                visit(child, path, name + ".")
            else:
                visit(child, path, prefix)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path.relative_to(PACKAGE).as_posix(), "")
    return found


def test_no_long_class_or_function_without_a_stated_reason():
    found = long_units()
    assert {unit: lines for unit, lines in found.items() if unit not in LONG_UNITS} == {}
    assert sorted(set(LONG_UNITS) - set(found)) == []   # shrunk below the limit: drop its entry
    assert all(len(reason) > 20 for reason in LONG_UNITS.values())


def test_the_size_scan_sees_nested_and_async_units():
    assert "frontends/server/app.py::create_app._transcribe" in long_units()


def test_an_unregistered_marker_is_an_error(tmp_path):
    """Markers select the fast subset (-m "not slow and not official"): a misspelt one
    would silently select nothing, so the project's settings make it a collection error."""
    (tmp_path / "pyproject.toml").write_text((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    (tmp_path / "test_marked.py").write_text("import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_marked.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "'slwo' not found in `markers`" in done.stdout, done.stdout
