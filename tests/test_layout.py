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


def test_the_scan_sees_test_support_imports(tmp_path, monkeypatch):
    """The scan above can fail: relative and absolute imports of test support, at any depth."""
    package = tmp_path / "mlx_qwen_asr"
    (package / "stream").mkdir(parents=True)
    (package / "stream" / "session.py").write_text("def f():\n    from ..testing import parity\n")
    (package / "cli.py").write_text("import mlx_qwen_asr.testing.wer\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    assert "mlx_qwen_asr.testing.parity" in imported_modules(package / "stream" / "session.py")
    assert "mlx_qwen_asr.testing.wer" in imported_modules(package / "cli.py")


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


def long_units(root: Path = PACKAGE) -> dict[str, int]:
    """`module::Class.method` -> lines, for every class over MAX_CLASS_LINES and function
    over MAX_FUNCTION_LINES in the package, or the sources under `root` (nested ones included)."""
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

    for path in sorted(root.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), path.relative_to(root).as_posix(), "")
    return found


def test_no_long_class_or_function_without_a_stated_reason():
    found = long_units()
    assert {unit: lines for unit, lines in found.items() if unit not in LONG_UNITS} == {}
    assert sorted(set(LONG_UNITS) - set(found)) == []   # shrunk below the limit: drop its entry
    assert all(len(reason) > 20 for reason in LONG_UNITS.values())


def test_the_size_scan_sees_nested_and_async_units(tmp_path):
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mod.py").write_text(f"def outer():\n    async def inner():\n{body}\n"
                                             f"class Small:\n    async def method(self):\n{body}")
    assert long_units(tmp_path) == {"sub/mod.py::outer": MAX_FUNCTION_LINES + 2,
                                    "sub/mod.py::outer.inner": MAX_FUNCTION_LINES + 1,
                                    "sub/mod.py::Small.method": MAX_FUNCTION_LINES + 1}


def test_an_unregistered_marker_is_an_error(tmp_path):
    """Markers select the fast subset (-m "not slow and not official"): a misspelt one
    would silently select nothing, so the project's settings make it a collection error."""
    (tmp_path / "pyproject.toml").write_text((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    (tmp_path / "test_marked.py").write_text("import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    pass\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_marked.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "'slwo' not found in `markers`" in done.stdout, done.stdout


# ---- Layers: which part of the package may import which ----------------------------------
# The package's parts, lowest first. A part may import itself and the parts listed for it;
# nothing imports the front ends. mlx_qwen_asr/__init__.py (the public API) and
# __main__.py may import anything: they are the package's edge, loaded first.
BASE = {"errors"}              # leaf helpers every layer may use
ALLOWED = {
    "base": set(),
    "model": {"base"},
    "audio": {"base"},
    "pipeline": {"base", "model", "audio"},            # the flat modules at the top and speakers/
    "stream": {"base", "model", "audio", "pipeline"},
    "frontends": {"base", "model", "audio", "pipeline", "stream"},
    "tools": {"base", "model", "audio", "pipeline", "stream", "testing"},   # TOOLS: bench builds checkpoints
    "testing": {"base", "model", "audio", "pipeline", "stream", "testing"},
}
FACADE = {"mlx_qwen_asr", "mlx_qwen_asr.__main__"}


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `package` (a package's name for its __init__)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = (package.name, *path.relative_to(package).with_suffix("").parts)
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any depth of its code. An import names
    the most specific module it reaches (`from . import formats` is the module formats) and
    the packages above it that it loads, except the top package: its __init__ is the public
    API, loaded first by any import of the package."""
    modules = module_files(package)
    graph = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [[alias.name] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                candidates = [[f"{module}.{alias.name}", module] for alias in node.names]
            else:
                continue
            for options in candidates:
                target = next((c for c in options if c in modules), None)
                if target is None:
                    continue
                parts = target.split(".")
                targets.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
        graph[name] = {t for t in targets if t != name and t in modules}
    return graph


def part_of(module: str) -> str:
    rest = module.split(".")[1:]
    if not rest or module in FACADE:
        return "facade"
    if rest[0] in ("model", "audio", "stream", "frontends", "testing"):
        return rest[0]
    if rest[0] in BASE:
        return "base"
    if rest[0] + ".py" in TOOLS:
        return "tools"
    return "pipeline"


def layer_breaches(graph: dict[str, set[str]]) -> list[str]:
    breaches = []
    for module, targets in graph.items():
        here = part_of(module)
        if here == "facade":
            continue
        for target in sorted(targets):
            there = part_of(target)
            if there != here and there not in ALLOWED[here] and there != "facade":
                breaches.append(f"{module} ({here}) imports {target} ({there})")
    return breaches


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_every_import_goes_down_the_layers():
    assert layer_breaches(import_graph(PACKAGE)) == []


def test_the_package_has_no_import_circle():
    graph = import_graph(PACKAGE)
    assert import_circles({m: t for m, t in graph.items() if m not in FACADE}) == []


def _write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "mlx_qwen_asr"
    for name, source in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(source)
    return package


def test_the_layer_scan_sees_an_upward_import(tmp_path):
    package = _write_package(tmp_path, {
        "model/__init__.py": "", "model/network.py": "def f():\n    from ..frontends import cli\n",
        "frontends/__init__.py": "", "frontends/cli.py": "from ..transcribe import run\n",
        "transcribe.py": "from .model.network import f\nfrom .errors import E\n", "errors.py": "",
        "audio/__init__.py": "", "audio/load.py": "from ..transcribe import run\n"})
    assert layer_breaches(import_graph(package)) == [
        "mlx_qwen_asr.audio.load (audio) imports mlx_qwen_asr.transcribe (pipeline)",
        "mlx_qwen_asr.model.network (model) imports mlx_qwen_asr.frontends (frontends)",
        "mlx_qwen_asr.model.network (model) imports mlx_qwen_asr.frontends.cli (frontends)"]


def test_the_circle_scan_sees_a_circle_through_a_function_level_import(tmp_path):
    package = _write_package(tmp_path, {
        "batch.py": "from .transcribe import piece\n",
        "transcribe.py": "def run():\n    from . import batch\n",
        "server/__init__.py": "from .main import main\n", "server/main.py": "from . import formats\n",
        "server/formats.py": "from ..server import app\n", "server/app.py": "",
        "alone.py": "from . import batch\n"})
    assert import_circles(import_graph(package)) == [
        ["mlx_qwen_asr.batch", "mlx_qwen_asr.transcribe"],
        ["mlx_qwen_asr.server", "mlx_qwen_asr.server.formats", "mlx_qwen_asr.server.main"]]


def test_the_architecture_map_names_every_module():
    """docs/architecture.md's map lists each module of the package once, and only modules that exist."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("\n## Map\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `([\w/]+\.py)` \|", section, re.M)   # the first cell of each row
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert sorted(set(listed) - set(modules)) == []   # stale rows
    assert sorted(set(modules) - set(listed)) == []   # modules missing from the map
    assert len(listed) == len(set(listed))
