"""The transport to the GPU machine: scripts/gpu_bundle.py packs and splits, and
scripts/gpu_remote.sh keeps the parts call by call, notices a missing or damaged one, and
joins them back into the same files (docs/gpu.md). No download: small stand-in files."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1].parent
REMOTE = ROOT / "scripts" / "gpu_remote.sh"
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_bundle  # noqa: E402


def make_staging(folder: Path) -> dict[str, bytes]:
    rng = random.Random(0)
    contents = {"ours/a.whl": rng.randbytes(3000), "official/b.whl": rng.randbytes(5000),
                "debs/c.deb": rng.randbytes(700)}
    for name, data in contents.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return contents


def remote(command: str, checkout: Path, gpu_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GPU_HOME": str(gpu_home), "PYTHON": sys.executable}
    return subprocess.run(["bash", str(REMOTE), command], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=120)


def test_pack_splits_into_parts_that_join_back(tmp_path):
    contents = make_staging(tmp_path / "staging")
    parts = gpu_bundle.pack(tmp_path / "staging", tmp_path, part_bytes=4096)
    assert len(parts) >= 3 and all(p.stat().st_size <= 4096 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    sums = dict(reversed(line.split("  ")) for line in (tmp_path / "SHA256SUMS").read_text().splitlines())
    assert sums["bundle.tar"] == hashlib.sha256(joined).hexdigest()
    (tmp_path / "joined.tar").write_bytes(joined)
    with tarfile.open(tmp_path / "joined.tar") as tar:
        tar.extractall(tmp_path / "out", filter="data")
    for name, data in contents.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert len((tmp_path / "out" / "MANIFEST").read_text().splitlines()) == len(contents)


def test_part_size_leaves_room_for_the_checkout():
    assert abs(gpu_bundle.part_mib(21.9) - 38.1) < 1e-9   # 64 - checkout - 4 MiB margin
    assert gpu_bundle.part_mib(10.0) == gpu_bundle.LARGEST_PART_MIB
    assert gpu_bundle.part_mib(None) == 36.0


def test_remote_stashes_parts_call_by_call_and_refuses_a_damaged_one(tmp_path):
    contents = make_staging(tmp_path / "staging")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    parts = gpu_bundle.pack(tmp_path / "staging", bundle, part_bytes=4096)
    checkout, gpu_home = tmp_path / "checkout", tmp_path / "gpu"
    carried = checkout / ".gpu-bundle"

    for i, part in enumerate(parts):   # one call per part: only that part and the sums travel
        shutil.rmtree(carried, ignore_errors=True)
        carried.mkdir(parents=True)
        shutil.copy(part, carried)
        shutil.copy(bundle / "SHA256SUMS", carried)
        done = remote("stash", checkout, gpu_home)
        assert done.returncode == 0, done.stderr
        missing = [p.name for p in parts[i + 1:]]
        assert f"parts missing: {' '.join(missing) if missing else 'none'}" in " ".join(done.stdout.split())

    stashed = gpu_home / "parts" / parts[1].name
    stashed.write_bytes(b"x" + stashed.read_bytes()[1:])   # damaged in transit
    shutil.rmtree(carried)
    done = remote("install", checkout, gpu_home)
    assert done.returncode == 3
    assert f"{parts[1].name}: FAILED" in done.stdout and "a part is missing or damaged" in done.stderr

    carried.mkdir()
    shutil.copy(parts[1], carried)   # carried again
    done = remote("install", checkout, gpu_home)
    # Joined, verified and unpacked; the stand-in wheels then fail pip, which is named.
    assert done.returncode == 3 and "pip install of our wheels failed" in done.stderr
    for name, data in contents.items():
        assert (gpu_home / "bundle" / name).read_bytes() == data
