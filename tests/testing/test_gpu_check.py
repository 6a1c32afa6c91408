"""scripts/gpu_check.py: its CPU rehearsal runs every check for real and reports each one.

The GPU run itself needs a GPU machine (docs/gpu.md); what can be held here is that the same
script, with small dimensions on the CPU, runs every check to the end, that the report has
the figures each check promises, and that one check's failure stops no other."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1].parent
SCRIPT = ROOT / "scripts" / "gpu_check.py"
REHEARSAL_CHECKS = ["environment", "checkpoints", "tokens_fp32", "precision", "speed_tiny", "folder", "long",
                    "streaming", "server", "diarization"]


def run_check_script(out: Path, work: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--work-dir", str(work), *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    return done, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work")
    done, report = run_check_script(out, work, "--device", "cpu", "--rehearsal", "--skip-official")
    return done, report, out


def test_rehearsal_runs_every_check(rehearsal):
    done, report, out = rehearsal
    assert done.returncode == 0, done.stdout + done.stderr
    assert report["mode"] == "rehearsal" and report["device"] == "cpu"
    assert list(report["checks"]) == REHEARSAL_CHECKS
    for name, entry in report["checks"].items():
        assert entry["status"] == "ok", (name, entry)
        assert entry["passed"] is True and entry["seconds"] > 0
    table = (out / "report.txt").read_text()
    assert all(name in table for name in REHEARSAL_CHECKS)
    assert (out / "checks.log").read_text().count("=====") == 2 * len(REHEARSAL_CHECKS)


def test_rehearsal_report_holds_the_figures(rehearsal):
    _, report, _ = rehearsal
    checks = {name: entry.get("result") for name, entry in report["checks"].items()}

    tokens = checks["tokens_fp32"]
    assert len(tokens["cpu_tokens"]) == 16 and tokens["device_tokens"] == tokens["cpu_tokens"]
    assert tokens["equal_to_cpu"] is True and tokens["distinct"] > 3
    assert tokens["official"] == {"skipped": "--skip-official"}
    assert tokens["tf32"] == "0"   # the check's own environment reached its process

    variants = checks["precision"]["variants"]
    assert list(variants) == ["float32", "bfloat16", "float16", "8-bit", "4-bit", "low-memory"]
    assert variants["bfloat16"]["dtype"] == "mlx.core.bfloat16" and variants["4-bit"]["quantize"] == 4
    assert all(abs(v["wer_points_over_float32"]) <= 1.0 for v in variants.values())
    assert checks["precision"]["clips"] == 3

    speed = checks["speed_tiny"]
    assert list(speed["ours"]) == ["bfloat16", "8-bit", "4-bit"]
    for entry in speed["ours"].values():
        stages = entry["stages"]
        assert stages["total_s"]["min"] >= stages["encoder_s"]["min"] > 0
        assert stages["decode_ms_per_token"]["min"] > 0
    assert speed["ours"]["4-bit"]["weight_bytes"] < speed["ours"]["bfloat16"]["weight_bytes"]

    folder, long = checks["folder"], checks["long"]
    assert folder["clips"] == 4 and folder["batched"]["tokens"]["min"] == folder["one_by_one"]["tokens"]["min"]
    assert long["batched"]["segments"]["min"] >= 2
    assert long["batched"]["tokens"]["min"] == long["one_by_one"]["tokens"]["min"]
    assert checks["streaming"]["step_compute_s"]["median"] > 0
    assert [run["clients"] for run in checks["server"]["runs"]] == [1, 8]
    assert all(run["identical_to_cli"] for run in checks["server"]["runs"])


def test_a_failed_environment_stops_the_run_and_says_so(tmp_path):
    # This machine's MLX has no GPU: the environment check fails, and every later check is
    # recorded as not started (a GPU run must not spend its minutes on a broken backend).
    done, report = run_check_script(tmp_path / "out", tmp_path / "work", "--device", "gpu", "--rehearsal",
                                    "--skip-official", "--only", "environment", "checkpoints")
    assert done.returncode == 1
    environment = report["checks"]["environment"]
    assert environment["status"] == "error" and "has no GPU here" in environment["error"]
    assert report["checks"]["checkpoints"]["status"] == "skipped"
    assert "environment check did not pass" in report["checks"]["checkpoints"]["reason"]
