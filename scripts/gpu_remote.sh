#!/usr/bin/env bash
# The GPU machine's side of docs/gpu.md: keep the bundle parts that each call carries
# (scripts/gpu_bundle.py made them), join and install them once, then run the checks.
#
#   bash scripts/gpu_remote.sh stash           # a call carrying one part: keep it on the machine
#   bash scripts/gpu_remote.sh check [ARGS]    # the last part: stash, join, verify, install,
#                                              # smoke-test, then scripts/gpu_check.py --device gpu ARGS
#   bash scripts/gpu_remote.sh install         # the same without the checks
#   bash scripts/gpu_remote.sh status          # what is stashed and installed
#
# The parts stay in $GPU_HOME (default /root/gpu) only while the machine stays warm (30 s
# after a call): make the calls back to back. Installing is done once per machine
# ($GPU_HOME/installed marks it); every step prints what it did, and a failure says which step.
set -u -o pipefail

GPU_HOME=${GPU_HOME:-/root/gpu}
BUNDLE=.gpu-bundle          # where the carried parts arrive, in the checkout
STORE=$GPU_HOME/parts
PY=${PYTHON:-python3}       # the image's python3 (its torch venv)

die() { echo "gpu_remote: $*" >&2; exit 3; }

stash() {
    mkdir -p "$STORE"
    if compgen -G "$BUNDLE/bundle.tar.*" > /dev/null; then
        cp -f "$BUNDLE"/bundle.tar.* "$STORE"/ || die "could not copy the carried parts to $STORE"
    fi
    [ -f "$BUNDLE/SHA256SUMS" ] && cp -f "$BUNDLE/SHA256SUMS" "$STORE"/
    status
}

status() {
    echo "stashed in $STORE:"
    ls -l "$STORE" 2>/dev/null | sed 's/^/  /'
    if [ -f "$STORE/SHA256SUMS" ]; then
        (cd "$STORE" && grep -v ' bundle.tar$' SHA256SUMS | sha256sum -c --ignore-missing) || true
        missing=$(cd "$STORE" && grep -v ' bundle.tar$' SHA256SUMS | awk '{print $2}' | while read -r p; do
            [ -f "$p" ] || echo "$p"; done)
        echo "parts missing: ${missing:-none}"
    fi
    [ -f "$GPU_HOME/installed" ] && echo "installed: $(cat "$GPU_HOME/installed")"
    return 0
}

install() {
    if [ -f "$GPU_HOME/installed" ]; then echo "already installed: $(cat "$GPU_HOME/installed")"; return 0; fi
    stash
    [ -f "$STORE/SHA256SUMS" ] || die "no SHA256SUMS stashed: carry .gpu-bundle/SHA256SUMS with a part"
    (cd "$STORE" && grep -v ' bundle.tar$' SHA256SUMS | sha256sum -c --quiet) \
        || die "a part is missing or damaged (above): carry it again, then run this again"
    local started=$SECONDS
    cat "$STORE"/bundle.tar.[0-9][0-9] > "$GPU_HOME/bundle.tar"
    (cd "$GPU_HOME" && grep ' bundle.tar$' "$STORE/SHA256SUMS" | sha256sum -c --quiet) || die "the joined tar is damaged"
    rm -rf "$GPU_HOME/bundle" && mkdir -p "$GPU_HOME/bundle"
    tar -xf "$GPU_HOME/bundle.tar" -C "$GPU_HOME/bundle" && rm -f "$GPU_HOME/bundle.tar" || die "tar failed"
    (cd "$GPU_HOME/bundle" && sha256sum -c --quiet MANIFEST) || die "a file in the bundle is damaged"

    # Ours: into the image's python3, so that its subprocesses (server, CLI) import MLX too;
    # libmlx.so's RPATH ($ORIGIN/../../nvidia/...) then finds the image's CUDA 13 libraries.
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$GPU_HOME"/bundle/ours/*.whl \
        || die "pip install of our wheels failed"

    # The official engine: a venv of its own (transformers 4.57.6 must not replace the image's
    # 5.17) that sees the image's torch through a .pth line placed after its own packages.
    rm -rf "$GPU_HOME/official"
    "$PY" -m venv --without-pip "$GPU_HOME/official" || die "python3 -m venv failed"
    local osite torch_site
    osite=$("$GPU_HOME/official/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    torch_site=$("$PY" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))') \
        || die "the image's python3 has no torch"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$osite" \
        "$GPU_HOME"/bundle/official/*.whl || die "pip install of the official engine's wheels failed"
    echo "$torch_site" > "$osite/zz-image-site-packages.pth"
    echo "made from $GPU_HOME/bundle/official" > "$GPU_HOME/official/.mlx-qwen-asr-complete"

    # OpenBLAS for MLX's CPU backend (mlx_qwen_asr.model.fast_blas binds it): unpacked, never into /.
    if compgen -G "$GPU_HOME/bundle/debs/*.deb" > /dev/null; then
        for deb in "$GPU_HOME"/bundle/debs/*.deb; do dpkg -x "$deb" "$GPU_HOME/blas" || die "dpkg -x $deb failed"; done
    fi
    echo "$(date -u +%FT%TZ) in $((SECONDS - started)) s" > "$GPU_HOME/installed"
    echo "installed in $((SECONDS - started)) s"
}

environment() {
    export MLX_QWEN_ASR_OFFICIAL_ENV=$GPU_HOME/official
    local lib=$GPU_HOME/blas/usr/lib/x86_64-linux-gnu
    if [ -f "$lib/openblas-pthread/libopenblas.so.0" ]; then
        export MLX_QWEN_ASR_FAST_BLAS=$lib/openblas-pthread/libopenblas.so.0
        export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    export PYTHONUNBUFFERED=1
    # MLX compiles some kernels at run time: keep them across the checks' processes.
    export MLX_PTX_CACHE_DIR=$GPU_HOME/ptx-cache
    # NVRTC needs CUDA's headers; MLX looks in CUDA_HOME, CUDA_PATH, then /usr/local/cuda.
    if [ -z "${CUDA_HOME:-}${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda/include ] && command -v nvcc > /dev/null; then
        CUDA_HOME=$(dirname "$(dirname "$(command -v nvcc)")"); export CUDA_HOME
    fi
}

smoke() {
    nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader || true
    "$PY" -c '
import mlx_qwen_asr, mlx.core as mx
from mlx_qwen_asr.model import fast_blas
a = mx.random.normal((512, 512))
print("mlx", mx.__version__, "gpu:", mx.is_available(mx.gpu), mx.device_info().get("device_name"),
      "matmul:", (a @ a).sum().item(), "| fast_blas:", fast_blas.status().get("library"))
' || die "MLX does not run on this machine (above)"
    "$GPU_HOME/official/bin/python" -I -c '
import torch, transformers, qwen_asr
print("official: torch", torch.__version__, "cuda:", torch.cuda.is_available(), "transformers", transformers.__version__)
' || echo "gpu_remote: the official engine does not import (above); its legs will be recorded as errors" >&2
}

case "${1:-}" in
    stash) stash ;;
    status) status ;;
    install) install && environment && smoke ;;
    check)
        shift
        install || exit 3
        environment
        smoke
        "$PY" scripts/gpu_check.py --device gpu --out "${OUT:-gpu-check-out}" --work-dir "$GPU_HOME/work" "$@"
        ;;
    *) echo "usage: bash scripts/gpu_remote.sh stash|status|install|check [gpu_check.py options]" >&2; exit 2 ;;
esac
