"""Find a checkpoint (local directory or Hugging Face hub id) and load it into MLX."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx

from .checkpoint import load_weights, weight_files
from .config import ModelConfig
from ..errors import ModelLoadError
from .network import Qwen3ASR, from_stored_name
from .peer_layouts import detect as detect_peer_layout, read_weights as read_peer_weights
from .quantization import QuantizationSpec, quantize_network

# Files a Qwen3-ASR repo has that inference needs; nothing else is downloaded.
HUB_FILES = [
    "config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json",
    "chat_template.json", "vocab.json", "merges.txt", "tokenizer.json",
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json",
    "weights.safetensors", "quantization_config.json",   # mlx-qwen3-asr's layout (peer_layouts.py)
]

# config.json key of a converted directory: {"format": 1, "layout": "mlx", "dtype": ...}.
MLX_FORMAT_KEY = "mlx_qwen_asr"

DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def default_dtype() -> str:
    """float32 on the CPU backend (fast BLAS paths exist only for fp32 there); bfloat16,
    the checkpoint's own precision, on a GPU where fewer bytes per token win."""
    return "float32" if mx.default_device() == mx.cpu else "bfloat16"


# The small-footprint recipe per backend (docs/performance.md, "Small footprint"): decoder
# linear layers at these bits, encoder and tied head at 8 (quantization.py's policy).
# On a GPU, 4-bit weights in bfloat16 are both the smallest and the fastest (decoding reads
# fewer bytes per token). On the CPU backend the quantized decoding step is MLX's own kernel,
# not BLAS, so it is ~2x slower than float32 whatever the bits (the encoder and prefill
# dequantize to BLAS: quantization.QuantizedLinear); 8 bits keep float32's greedy output
# (100 % argmax agreement on the trained fixture, 4 bits 99.4 %) for 0.2 GB more.
LOW_MEMORY_BITS = {"cpu": 8, "gpu": 4}


def low_memory_settings(dtype=None, quantize: int | None = None, already_quantized: bool = False):
    """(dtype, quantize) of the small-footprint recipe on this device; given values are kept,
    and a model directory that is already quantized is loaded as it is."""
    on_cpu = mx.default_device() == mx.cpu
    if dtype is None:
        dtype = default_dtype()
    if quantize is None and not already_quantized:
        quantize = LOW_MEMORY_BITS["cpu" if on_cpu else "gpu"]
    return dtype, quantize


def slow_on_this_device(dtype, quantize: int | None, low_memory: bool) -> str | None:
    """Why this combination is much slower than the default here, or None. On the CPU backend
    only float32 takes the BLAS paths (quantization.QuantizedLinear dequantizes to float32
    BLAS); quantized weights in float16/bfloat16 run MLX's own kernels for every product."""
    if mx.default_device() != mx.cpu or not (quantize or low_memory) or dtype is None:
        return None
    if parse_dtype(dtype) == mx.float32:
        return None
    flag = f"--quantize {quantize}" if quantize else "--low-memory"
    return (f"{flag} with --dtype {dtype} on the CPU is many times slower than with float32 (no BLAS path "
            "for quantized half-precision weights): leave out --dtype for the fast combination")


def parse_dtype(dtype) -> mx.Dtype:
    if dtype is None:
        dtype = default_dtype()
    if isinstance(dtype, mx.Dtype):
        return dtype
    name = str(dtype).replace("torch.", "").lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}
    name = aliases.get(name, name)
    if name not in DTYPES:
        raise ModelLoadError(f"unsupported dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name]


def resolve_model_dir(model: str | os.PathLike, flag: str = "--model") -> Path:
    """A local directory as it is, or a hub id downloaded (only the needed files) to the standard cache.
    `flag`: the option that names a local folder instead, for the message when the hub fails."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; --model takes a model directory or a hub id such as Qwen/Qwen3-ASR-0.6B")
        return path
    text = str(model)
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise ModelLoadError(f"model directory {text} does not exist (and it is not a hub id like Qwen/Qwen3-ASR-0.6B)")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id=text, allow_patterns=HUB_FILES))
    except Exception as exc:  # hub errors come in many classes; all mean the same to the user
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set and it is not in the local cache)" if offline else ""
        reason = str(exc).splitlines()[0].split(". ")[0] if str(exc) else ""
        raise ModelLoadError(f"cannot get {text} from the Hugging Face hub{hint}: {type(exc).__name__}: {reason}; "
                             f"for a local copy give {flag} DIR (a folder holding its config.json, "
                             "model.safetensors and tokenizer files)") from None


def refuse_aligner(model_dir: Path, config: ModelConfig) -> None:
    """An aligner's folder given as the speech model: say what it is (its shapes would only mismatch)."""
    kind = str(config.raw.get("thinker_config", {}).get("model_type", ""))
    if "forced_aligner" in kind:
        raise ModelLoadError(f"{model_dir} is a Qwen3-ForcedAligner checkpoint (word timing), not a speech "
                             "recognition model: pass it as --aligner (with --timestamps), and a Qwen3-ASR model "
                             "as --model")


def is_mlx_layout(config: ModelConfig) -> bool:
    """A directory written by `mlx_qwen_asr.convert`: MLX names and layouts, maybe quantized."""
    return isinstance(config.raw.get(MLX_FORMAT_KEY), dict)


def _quantized_weights(network, weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Float weights -> the parameters of `network`'s quantized layers (lazily quantized)."""
    out = dict(weights)
    for path, module in network.named_modules():
        key = f"{path}.weight"
        if not hasattr(module, "bits") or not hasattr(module, "scales") or key not in out:
            continue   # not quantized, or missing (reported by the caller's check)
        quantized = mx.quantize(out[key], group_size=module.group_size, bits=module.bits, mode=module.mode)
        out[key], out[f"{path}.scales"] = quantized[0], quantized[1]
        if len(quantized) > 2 and quantized[2] is not None:
            out[f"{path}.biases"] = quantized[2]
    return out


def load_network(model_dir: Path, config: ModelConfig, dtype: mx.Dtype,
                 quantize: int | QuantizationSpec | None = None, network: Qwen3ASR | None = None) -> Qwen3ASR:
    """Build the network (or take `network`, e.g. the aligner's, built for `config`) and
    load its weights (lazily read, cast tensor by tensor). The one loader of every model.

    A converted directory is loaded as stored (quantized layers built first from its
    config's "quantization"); a Hugging Face checkpoint goes through `sanitize`. `quantize`
    (bits or a QuantizationSpec) quantizes a float model once loaded.
    """
    network = Qwen3ASR(config) if network is None else network
    mlx_layout = is_mlx_layout(config)
    peer = None if mlx_layout else detect_peer_layout(model_dir, config.raw)
    if peer is not None and peer.quantized and quantize:
        raise ModelLoadError(f"{model_dir} is already quantized ({peer.name}: {peer.quantization or 'per layer'}); "
                             "load it without quantize")
    stored = config.raw.get("quantization") if mlx_layout else None
    if stored:
        if quantize:
            raise ModelLoadError(f"{model_dir} is already quantized ({stored}); load it without quantize")
        try:
            quantize_network(network, QuantizationSpec.from_config(stored))
        except (ValueError, TypeError) as exc:
            raise ModelLoadError(f"{model_dir}/config.json has a bad \"quantization\" entry: {exc}") from None
    if peer is not None:   # converted by another MLX project: its own quantized layers
        weights = read_peer_weights(peer, network, config)
    else:
        weights = load_weights(weight_files(model_dir))
        if mlx_layout:   # stored under the checkpoint's names, in MLX layouts
            weights = {from_stored_name(k): v for k, v in weights.items()}
        else:
            weights = Qwen3ASR.sanitize(weights, config)
    # Lazy casts: each float tensor is read and converted when evaluated, and the stored
    # copy is freed right after, so the peak stays near the converted size.
    weights = {k: (v.astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v) for k, v in weights.items()}
    if quantize:
        # The quantized layers are built first and each float weight is quantized as it is
        # read, so the whole float model is never in memory (the same arrays as quantizing
        # the loaded float model: the same mx.quantize of the same tensors).
        spec = quantize if isinstance(quantize, QuantizationSpec) else QuantizationSpec(bits=int(quantize))
        quantize_network(network, spec)
        weights = _quantized_weights(network, weights)
    expected = {k for k, _ in _flat_parameters(network)}
    missing = sorted(expected - weights.keys())
    unexpected = sorted(weights.keys() - expected)
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
        raise ModelLoadError(f"{model_dir} does not match its config.json: {'; '.join(detail)}")
    try:
        network.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:
        raise ModelLoadError(f"{model_dir}: weights do not fit config.json: {exc}") from None
    network.eval()
    mx.eval(network.parameters())
    return network


def _flat_parameters(module) -> list:
    from mlx.utils import tree_flatten
    return tree_flatten(module.parameters())
