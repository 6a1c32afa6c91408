"""Serve MLX's CPU matrix products from Intel MKL on Linux x86-64 (a default dependency there).

`enable()` binds MKL's `cblas_*` names before `mlx.core` is imported (so the package's
`__init__` calls it first); `self_check()` checks the products afterwards (`__init__` runs
it when a library was bound); `status()` says what happened. `MLX_QWEN_ASR_FAST_BLAS=0` opts out, or names another CBLAS library.
How and why: docs/architecture.md, "CPU speed".
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import sys
import warnings

ENV = "MLX_QWEN_ASR_FAST_BLAS"
# What libmlx.so imports for matmul (float32 / float64 / complex64); `nm -D` of MLX 0.32.
REQUIRED_SYMBOLS = ("cblas_sgemm", "cblas_dgemm", "cblas_cgemm")
MKL_NAMES = ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so")
# MKL_Set_Interface_Layer: 32-bit integers, what MLX's cblas/LAPACK calls pass. (The
# gfortran-convention layer would need libmkl_gf_lp64, which the PyPI wheel lacks; MKL
# aborts the process when a layer's library is missing, hence the file checks below.)
_MKL_INTERFACE_LP64 = 0
_MKL_LAYER_FILES = {"intel": "libmkl_intel_thread.so*", "sequential": "libmkl_sequential.so*",
                    "gnu": "libmkl_gnu_thread.so*", "tbb": "libmkl_tbb_thread.so*"}
# MKL_Set_Threading_Layer: 0 = Intel OpenMP, 1 = sequential, 2 = GNU OpenMP, 3 = TBB.
_MKL_THREADING = {"intel": 0, "sequential": 1, "gnu": 2, "tbb": 3}
# MKL's own default (Intel OpenMP, one thread per CPU we may run on). Measured on a busy
# 2-core VM (docs/performance-lab-notes.md): GNU OpenMP made a 1024x3072 matvec 25x slower (8 ms vs
# 0.3 ms); sequential MKL is sometimes better when other processes compete for the cores
# (MKL_THREADING_LAYER=sequential selects it).
DEFAULT_THREADING = "intel"

_status: dict = {"active": False, "library": None, "reason": "enable() not called"}
_handle = None


def _applicable() -> str | None:
    """Why binding does not apply here (None when it does)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"not applicable on {sys.platform}/{platform.machine()} (only the Linux x86-64 CPU wheel has a slow BLAS)"
    setting = os.environ.get(ENV, "").strip()
    if setting.lower() in ("0", "false", "no", "off"):
        return f"disabled by {ENV}={setting}"
    if "mlx.core" in sys.modules:
        return ("mlx.core was imported before mlx_qwen_asr, so its BLAS is already bound; "
                "import mlx_qwen_asr first (or LD_PRELOAD the library) to use MKL")
    return None


def _candidates() -> list[str]:
    setting = os.environ.get(ENV, "").strip()
    if setting and setting.lower() not in ("1", "true", "yes", "on", "auto"):
        return [os.path.expanduser(setting)]
    prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, sys.exec_prefix])
    found = []
    for prefix in prefixes:
        for name in MKL_NAMES:
            found += sorted(glob.glob(os.path.join(prefix, "lib", name)))
    return found


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _mkl_parts_present(path: str) -> str | None:
    """The libraries libmkl_rt loads at its first call (it aborts if one is missing)."""
    folder = os.path.dirname(path)
    for pattern in ("libmkl_core.so*", "libmkl_intel_lp64.so*"):
        if not glob.glob(os.path.join(folder, pattern)):
            return f"{path}: {pattern} is missing beside it"
    return None


def _other_openmp_loaded() -> str | None:
    """An OpenMP runtime already in the process (torch brings libgomp), or None."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                name = os.path.basename(line.split()[-1]) if "/" in line else ""
                if name.startswith(("libgomp", "libiomp", "libomp")):
                    return name
    except OSError:
        pass
    return None


def _threading_layer(folder: str) -> str:
    wanted = os.environ.get("MKL_THREADING_LAYER", "").lower()
    if not wanted:
        # A second OpenMP runtime next to one already loaded gives WRONG products (measured:
        # torch imported first, then MKL on Intel OpenMP: mx.addmm off by ~40 for >= 64
        # rows). Sequential MKL has no runtime of its own to clash with.
        wanted = "sequential" if _other_openmp_loaded() else DEFAULT_THREADING
    for layer in (wanted, "sequential"):
        if layer in _MKL_LAYER_FILES and glob.glob(os.path.join(folder, _MKL_LAYER_FILES[layer])):
            return layer
    return wanted


def _configure_mkl(lib, path: str) -> dict:
    """Interface and threading, set before the first MKL call; user environment wins."""
    info = {}
    if hasattr(lib, "MKL_Set_Interface_Layer") and "MKL_INTERFACE_LAYER" not in os.environ:
        lib.MKL_Set_Interface_Layer(ctypes.c_int(_MKL_INTERFACE_LP64))
    if hasattr(lib, "MKL_Set_Threading_Layer"):
        layer = _threading_layer(os.path.dirname(path))
        if layer in _MKL_THREADING:
            lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_THREADING[layer]))
        info["threading"] = layer
    if hasattr(lib, "MKL_Set_Num_Threads"):
        if not any(v in os.environ for v in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")):
            # MKL counts physical cores; on a VM every vCPU we may run on is worth using.
            lib.MKL_Set_Num_Threads(ctypes.c_int(_cpu_count()))
        lib.MKL_Get_Max_Threads.restype = ctypes.c_int
        info["threads"] = int(lib.MKL_Get_Max_Threads())
    if hasattr(lib, "MKL_Get_Version_String"):
        buf = ctypes.create_string_buffer(256)
        lib.MKL_Get_Version_String(buf, ctypes.c_int(len(buf)))
        info["version"] = buf.value.decode(errors="replace").strip()
    return info


def enable() -> dict:
    """Bind MLX's BLAS to MKL if possible; returns `status()`. Idempotent."""
    global _handle, _status
    if _status.get("active") or _status.get("reason") != "enable() not called":
        return status()
    reason = _applicable()
    if reason:
        _status = {"active": False, "library": None, "reason": reason}
        return status()
    candidates = _candidates()
    if not candidates:
        _status = {"active": False, "library": None,
                   "reason": "MKL not installed (a default dependency on Linux x86-64: pip install mkl)"}
        return status()
    problems = []
    for path in candidates:
        try:
            private = ctypes.CDLL(path, mode=os.RTLD_LOCAL)
        except OSError as exc:
            problems.append(f"{path}: {exc}")
            continue
        missing = [s for s in REQUIRED_SYMBOLS if not hasattr(private, s)]
        if missing:
            problems.append(f"{path} lacks {', '.join(missing)}")
            continue
        is_mkl = hasattr(private, "MKL_Get_Max_Threads")
        problem = _mkl_parts_present(path) if is_mkl else None
        if problem:
            problems.append(problem)
            continue
        info = _configure_mkl(private, path) if is_mkl else {}
        # Same file again with RTLD_GLOBAL promotes it to the global lookup scope.
        _handle = ctypes.CDLL(path, mode=os.RTLD_GLOBAL)
        _status = {"active": True, "library": path, "reason": "bound before mlx.core import", **info}
        return status()
    _status = {"active": False, "library": None, "reason": "; ".join(problems)}
    return status()


def warn_if_imported_too_late() -> None:
    """Say so when mlx.core came first: its products then run on the wheel's bundled
    reference BLAS, several times slower (measured: a 1024 x 151,936 product 79 ms vs 25)."""
    if str(_status.get("reason", "")).startswith("mlx.core was imported before"):
        warnings.warn("mlx_qwen_asr: " + _status["reason"], RuntimeWarning, stacklevel=3)


def self_check() -> bool:
    """Compare MLX float32 products on the CPU with numpy; warn loudly on a mismatch."""
    if "self_check" in _status:
        return _status["self_check"] == "passed"
    import mlx.core as mx
    import numpy as np

    rng = np.random.default_rng(0)
    failures = []
    # Odd sizes, both transposes and a matrix-vector product: the code paths MLX uses.
    for m, k, n, ta, tb in [(67, 129, 45, False, False), (33, 70, 81, True, False),
                            (40, 96, 130, False, True), (1, 256, 300, False, True)]:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        a_op, b_op = (a.T if ta else a), (b.T if tb else b)
        expected = a_op.astype(np.float64) @ b_op.astype(np.float64)
        xa, xb = mx.array(a), mx.array(b)
        got = mx.matmul(xa.T if ta else xa, xb.T if tb else xb, stream=mx.cpu)
        got = np.array(got, dtype=np.float64)
        err = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
        if not np.isfinite(err) or err > 1e-5:
            failures.append(f"{m}x{k}x{n} ta={ta} tb={tb}: relative error {err:.2e}")
    # addmm (GEMM with beta = 1, every biased Linear) on sizes big enough to be threaded:
    # the path a threading-runtime clash broke while plain matmul stayed right.
    for m, k, n in [(64, 64, 96), (300, 128, 256)]:
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        bias = rng.standard_normal(n, dtype=np.float32)
        expected = x.astype(np.float64) @ w.T.astype(np.float64) + bias
        got = np.array(mx.addmm(mx.array(bias), mx.array(x), mx.array(w).T, stream=mx.cpu), dtype=np.float64)
        err = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
        if not np.isfinite(err) or err > 1e-5:
            failures.append(f"addmm {m}x{k}x{n}: relative error {err:.2e}")
    _status["self_check"] = "failed: " + "; ".join(failures) if failures else "passed"
    if failures and _status.get("active"):
        warnings.warn(
            f"mlx_qwen_asr: MLX matrix products are WRONG with {_status['library']} bound as BLAS "
            f"({'; '.join(failures)}). Results cannot be trusted: set {ENV}=0 and restart.",
            RuntimeWarning, stacklevel=2)
    return not failures


def mapped_blas_libraries() -> list[str]:
    """BLAS/LAPACK shared libraries mapped into this process (Linux; for provenance)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "/" in line}
    except OSError:
        return []
    keys = ("blas", "lapack", "mkl_rt", "mkl_core", "openblas", "accelerate")
    return sorted(p for p in paths if any(k in os.path.basename(p).lower() for k in keys))


def status() -> dict:
    """What is bound and why: active, library, reason, threads, threading, version, self_check."""
    return dict(_status)
