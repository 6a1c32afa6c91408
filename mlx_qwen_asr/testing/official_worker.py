"""The official implementation (PyPI `qwen-asr`, PyTorch), served to another process.

Run by `official.py` as `<official env python> -I official_worker.py`: it imports only
numpy, torch, transformers and qwen_asr, never mlx or this package (it lives in the official
environment, official_env.py). Requests and replies go over stdin/stdout as length-prefixed
messages: a JSON header whose arrays are `{"__npy__": i}` stand-ins for .npy blobs that
follow it (the .npy format reads the same under any numpy). Loaded models stay in the
process under integer handles, so a test session loads each checkpoint once.

The official transformers backend on CPU ignores the encoder's 8 s attention windows (it
never passes the block mask it can build, docs/model.md §4); the model was trained and is
served (flash-attention, vLLM) with them. `window_mask=True` restores them so the
reference computes the semantics the model actually has.

This module's top level imports only the standard library and numpy: official.py imports
it for the message format.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import time
import traceback

import numpy as np

EOS_IDS = (151645, 151643)


# ------------------------------------------------------------------------ message format

def _pack(value, blobs: list):
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        blobs.append(buffer.getvalue())
        return {"__npy__": len(blobs) - 1}
    if isinstance(value, dict):
        return {str(k): _pack(v, blobs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_pack(v, blobs) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _unpack(value, blobs: list):
    if isinstance(value, dict):
        if set(value) == {"__npy__"}:
            return np.load(io.BytesIO(blobs[value["__npy__"]]), allow_pickle=False)
        return {k: _unpack(v, blobs) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, blobs) for v in value]
    return value


def write_message(stream, value) -> None:
    blobs: list[bytes] = []
    header = json.dumps(_pack(value, blobs)).encode()
    parts = [header, *blobs]
    stream.write(struct.pack("<I", len(parts)) + b"".join(struct.pack("<Q", len(p)) for p in parts))
    for part in parts:
        stream.write(part)
    stream.flush()


def _read_exact(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError("the other side closed the pipe")
    return data


def read_message(stream):
    (count,) = struct.unpack("<I", _read_exact(stream, 4))
    sizes = struct.unpack(f"<{count}Q", _read_exact(stream, 8 * count))
    header, *blobs = [_read_exact(stream, size) for size in sizes]
    return _unpack(json.loads(header), blobs)


# ------------------------------------------------------------------------ the official side

class Official:
    """Each public method is one request; its keyword arguments are the request's."""

    def __init__(self):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()   # keep per-call notices out of the log
        self.torch = torch
        self.objects: dict[int, object] = {}

    def _keep(self, obj) -> int:
        handle = len(self.objects) + 1
        self.objects[handle] = obj
        return handle

    def versions(self):
        from importlib.metadata import version

        return {name: version(name) for name in ("torch", "transformers", "qwen-asr")}

    def set_threads(self, threads: int):
        self.torch.set_num_threads(threads)
        return self.torch.get_num_threads()

    # -- ASR model

    def load_asr(self, model_dir: str, dtype: str = "float32", window_mask: bool = True,
                 max_new_tokens: int | None = None, device: str = "cpu"):
        """`qwen_asr.Qwen3ASRModel` on `device` ("cpu" or "cuda") in one dtype for every parameter."""
        from qwen_asr import Qwen3ASRModel

        torch_dtype = getattr(self.torch, dtype)
        if device != "cpu" and torch_dtype == self.torch.float32:
            # A float32 reference means float32 arithmetic: cuDNN's convolutions default to TF32.
            self.torch.backends.cudnn.allow_tf32 = False
            self.torch.backends.cuda.matmul.allow_tf32 = False
        kwargs = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        asr = Qwen3ASRModel.from_pretrained(model_dir, dtype=torch_dtype, device_map=device, **kwargs)
        dtypes = {p.dtype for p in asr.model.parameters()}
        if dtypes != {torch_dtype}:
            raise RuntimeError(f"official model loaded with mixed dtypes {dtypes} (sub-config dtype pitfall)")
        asr.model.eval()
        if window_mask:
            _enable_window_mask(asr.model)
        # generate() would announce this default at every call; setting it changes nothing.
        asr.model.generation_config.pad_token_id = asr.model.generation_config.eos_token_id
        return {"handle": self._keep(asr), "param_dtypes": sorted(str(d).replace("torch.", "") for d in dtypes)}

    def _inputs(self, asr, audio, context="", language=None, prompt=None):
        text = asr._build_text_prompt(context=context, force_language=language) if prompt is None else prompt
        inputs = asr.processor(text=[text], audio=[audio], return_tensors="pt", padding=True)
        return inputs.to(asr.model.device).to(asr.model.dtype)

    def features(self, handle: int, audio):
        """Log-mel [n_mels, T] as the official processor computes it."""
        return self._inputs(self.objects[handle], audio)["input_features"][0].float().cpu().numpy()

    def encoder_output(self, handle: int, mel):
        """Audio embeddings [N, output_dim] for a [n_mels, T] mel."""
        tower = self.objects[handle].model.thinker.audio_tower
        with self.torch.no_grad():
            weight = tower.conv_out.weight
            x = self.torch.from_numpy(np.ascontiguousarray(mel)).to(weight.device, weight.dtype)
            out = tower(x, feature_lens=self.torch.tensor([mel.shape[1]], device=weight.device))
        return out.last_hidden_state.float().cpu().numpy()

    def prompt_ids(self, handle: int, audio, context: str = "", language=None, prompt=None):
        return self._inputs(self.objects[handle], audio, context, language, prompt)["input_ids"][0].tolist()

    def logits(self, handle: int, audio, context: str = "", language=None, continuation=None):
        """Logits [P + len(continuation), V] for the prompt followed by `continuation` (teacher forcing)."""
        torch = self.torch
        asr = self.objects[handle]
        inputs = self._inputs(asr, audio, context, language)
        ids = inputs["input_ids"]
        if continuation:
            ids = torch.cat([ids, torch.tensor([continuation], dtype=ids.dtype, device=ids.device)], dim=1)
        with torch.no_grad():
            out = asr.model.thinker(input_ids=ids, attention_mask=torch.ones_like(ids),
                                    input_features=inputs["input_features"],
                                    feature_attention_mask=inputs["feature_attention_mask"])
        return out.logits[0].float().cpu().numpy()

    def generate(self, handle: int, audio, max_new_tokens: int, context: str = "", language=None,
                 prompt=None, stop_at_eos: bool = True, eos_token_id=None):
        """Greedy tokens from the official `generate`; with `stop_at_eos`, up to the first EOS (excluded)."""
        asr = self.objects[handle]
        inputs = self._inputs(asr, audio, context, language, prompt)
        extra = {} if eos_token_id is None else {"eos_token_id": eos_token_id}
        with self.torch.no_grad():
            out = asr.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **extra)
        new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        if not stop_at_eos:
            return new
        end = next((i for i, token in enumerate(new) if token in EOS_IDS), len(new))
        return new[:end]

    def transcribe(self, handle: int, audio, language=None, context: str = ""):
        """The whole official pipeline; `audio` is a path or 16 kHz samples."""
        source = audio if isinstance(audio, str) else (audio, 16000)
        with self.torch.no_grad():
            results = self.objects[handle].transcribe(audio=source, language=language, context=context)
        return [{"language": r.language, "text": r.text} for r in results]

    def chat_prompt(self, handle: int, context: str = ""):
        messages = [{"role": "system", "content": context},
                    {"role": "user", "content": [{"type": "audio", "audio": ""}]}]
        return self.objects[handle].processor.apply_chat_template(messages, add_generation_prompt=True,
                                                                  tokenize=False)

    def parameters(self, handle: int, names: list):
        state = self.objects[handle].model.state_dict()
        return {name: state[name].cpu().numpy() for name in names}

    def forced_timing(self, handle: int, audio, tokens: int):
        """Stage times of one forced-length run (the benchmark's workload)."""
        torch, asr = self.torch, self.objects[handle]
        sync = torch.cuda.synchronize if asr.model.device.type == "cuda" else (lambda: None)
        sync()
        start = time.perf_counter()
        inputs = self._inputs(asr, audio)
        sync()
        t_proc = time.perf_counter()
        self.encoder_output(handle, inputs["input_features"][0].float().cpu().numpy())
        t_enc = time.perf_counter()
        with torch.no_grad():
            asr.model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, do_sample=False)
            sync()
            t_prefill = time.perf_counter()
            out = asr.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
            sync()
        t_gen = time.perf_counter()
        generated = out.sequences.shape[1] - inputs["input_ids"].shape[1]
        if generated != tokens:
            raise RuntimeError(f"official generate made {generated} tokens, not {tokens}")
        generate_s, prefill_s = t_gen - t_prefill, t_prefill - t_enc
        return {
            "mel_s": t_proc - start,  # processor: mel + prompt
            "encoder_s": t_enc - t_proc,
            "prefill_incl_encoder_s": prefill_s,  # generate(1 token): encoder + prefill
            "decode_ms_per_token": 1e3 * (generate_s - prefill_s) / max(tokens - 1, 1),
            "total_s": (t_proc - start) + generate_s,  # processor + generate(tokens)
        }

    # -- the official loader on its own

    def loader_report(self, model_dir: str):
        """transformers' AutoModel on a checkpoint: loading info, dtypes, tied embeddings."""
        import qwen_asr  # noqa: F401  (registers the qwen3_asr Auto classes)
        from transformers import AutoModel

        model, info = AutoModel.from_pretrained(model_dir, dtype=self.torch.float32, output_loading_info=True)
        thinker = model.thinker
        return {"info": {k: [str(x) for x in v] for k, v in info.items()},
                "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in model.parameters()}),
                "lm_head_tied": thinker.lm_head.weight.data_ptr() == thinker.model.embed_tokens.weight.data_ptr()}

    # -- forced aligner

    def load_aligner(self, model_dir: str, dtype: str = "float32", window_mask: bool = True,
                     by_parts: bool = False):
        """`Qwen3ForcedAligner`: its `from_pretrained`, or (`by_parts`) assembled from
        AutoModel/AutoProcessor as from_pretrained does, which also yields the loading info."""
        from qwen_asr import Qwen3ForcedAligner

        torch_dtype = getattr(self.torch, dtype)
        info = None
        if by_parts:
            from qwen_asr.core.transformers_backend import (Qwen3ASRConfig, Qwen3ASRForConditionalGeneration,
                                                            Qwen3ASRProcessor)
            from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor
            from transformers import AutoConfig, AutoModel, AutoProcessor

            AutoConfig.register("qwen3_asr", Qwen3ASRConfig, exist_ok=True)
            AutoModel.register(Qwen3ASRConfig, Qwen3ASRForConditionalGeneration, exist_ok=True)
            AutoProcessor.register(Qwen3ASRConfig, Qwen3ASRProcessor, exist_ok=True)
            model, info = AutoModel.from_pretrained(model_dir, dtype=torch_dtype, device_map="cpu",
                                                    output_loading_info=True)
            processor = AutoProcessor.from_pretrained(model_dir, fix_mistral_regex=True)
            aligner = Qwen3ForcedAligner(model=model, processor=processor,
                                         aligner_processor=Qwen3ForceAlignProcessor())
        else:
            aligner = Qwen3ForcedAligner.from_pretrained(model_dir, dtype=torch_dtype, device_map="cpu")
        aligner.model.eval()
        if window_mask:
            _enable_window_mask(aligner.model)
        thinker = aligner.model.thinker
        return {
            "handle": self._keep(aligner),
            "info": None if info is None else {k: [str(x) for x in v] for k, v in info.items()},
            "param_dtypes": sorted({str(p.dtype).replace("torch.", "") for p in aligner.model.parameters()}),
            "lm_head_shape": list(thinker.lm_head.weight.shape),
            "lm_head_tied": thinker.lm_head.weight.data_ptr() == thinker.model.embed_tokens.weight.data_ptr(),
            "timestamp_token_id": aligner.timestamp_token_id,
            "timestamp_segment_time": aligner.timestamp_segment_time,
        }

    def align(self, handle: int, audio, text: str, language: str):
        """[[word, start, end], ...]; `audio` is a path or 16 kHz samples."""
        source = audio if isinstance(audio, str) else (audio, 16000)
        with self.torch.no_grad():
            (result,) = self.objects[handle].align(audio=source, text=text, language=language)
        return [[item.text, item.start_time, item.end_time] for item in result]

    def timestamp_logits(self, handle: int, audio, text: str, language: str):
        """(prompt ids, logits at the <timestamp> tokens) exactly as the official align() computes them."""
        aligner = self.objects[handle]
        _, prompt = aligner.aligner_processor.encode_timestamp(text, language)
        inputs = aligner.processor(text=[prompt], audio=[audio], return_tensors="pt", padding=True)
        inputs = inputs.to(aligner.model.device).to(aligner.model.dtype)
        with self.torch.no_grad():
            logits = aligner.model.thinker(**inputs).logits[0]
        ids = inputs["input_ids"][0]
        return {"ids": ids.tolist(), "logits": logits[ids == aligner.timestamp_token_id].float().numpy()}

    def normalize_audio(self, source):
        """The official loader (`normalize_audio_input`) on a path or an [array, rate] pair."""
        import warnings

        from qwen_asr.inference.utils import normalize_audio_input

        if isinstance(source, list):
            source = (source[0], int(source[1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # librosa's "PySoundFile failed. Trying audioread"
            return np.asarray(normalize_audio_input(source))

    def soxr_hq(self, audio, orig_sr: int, target_sr: int):
        """librosa's soxr_hq resampling, the reference our resampler is held to."""
        import librosa

        return np.asarray(librosa.resample(audio, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq"))

    def split_words(self, texts: list):
        """The aligner's word split (`encode_timestamp`) of each [text, language]."""
        from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

        processor = Qwen3ForceAlignProcessor()
        return [processor.encode_timestamp(text, language)[0] for text, language in texts]

    def fix_timestamps(self, arrays: list):
        """The official repair of each float32 array of raw times (ms)."""
        from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

        processor = Qwen3ForceAlignProcessor()
        return [list(processor.fix_timestamp(values)) for values in arrays]

    # -- prompt text helpers (qwen_asr.inference.utils)

    def supported_languages(self):
        from qwen_asr.inference.utils import SUPPORTED_LANGUAGES

        return list(SUPPORTED_LANGUAGES)

    def fix_repetitions(self, texts: list):
        from qwen_asr.inference.utils import detect_and_fix_repetitions

        return [detect_and_fix_repetitions(text) for text in texts]

    def parse_output(self, raw: str, user_language=None):
        from qwen_asr.inference.utils import parse_asr_output

        kwargs = {} if user_language is None else {"user_language": user_language}
        return list(parse_asr_output(raw, **kwargs))

    # -- tokenizer and feature extractor

    def load_tokenizer(self, model_dir: str, via: str = "processor"):
        """The official processor's tokenizer (`via="processor"`) or transformers' AutoTokenizer."""
        import qwen_asr  # noqa: F401  (registers the Qwen3-ASR processor classes)
        from transformers import AutoProcessor, AutoTokenizer

        if via == "processor":
            tokenizer = AutoProcessor.from_pretrained(model_dir, fix_mistral_regex=True).tokenizer
        else:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
        return self._keep(tokenizer)

    def tokenizer_calls(self, handle: int, method: str, calls: list):
        """`tokenizer.<method>(*args, **kwargs)` for each [args, kwargs] in `calls`."""
        if method not in ("encode", "decode", "convert_tokens_to_ids"):
            raise ValueError(f"tokenizer method {method!r} is not served")
        function = getattr(self.objects[handle], method)
        return [function(*args, **kwargs) for args, kwargs in calls]

    def tokenizer_attributes(self, handle: int, names: list):
        tokenizer = self.objects[handle]
        return {name: getattr(tokenizer, name) for name in names}

    def load_feature_extractor(self, kwargs: dict):
        """transformers' WhisperFeatureExtractor (the official processor's) and its filterbank."""
        import transformers

        extractor = transformers.WhisperFeatureExtractor(**kwargs)
        return {"handle": self._keep(extractor), "mel_filters": np.asarray(extractor.mel_filters)}

    def extract_features(self, handle: int, audio):
        """processing_qwen3_asr.Qwen3ASRProcessor.__call__'s audio kwargs, batch of one (torch path)."""
        out = self.objects[handle]([audio], sampling_rate=16000, padding=True, truncation=False,
                                   return_attention_mask=True, return_tensors="pt")
        return {"features": out["input_features"][0].float().numpy(), "mask": out["attention_mask"][0].numpy()}

    def release(self, handle: int):
        self.objects.pop(handle, None)


def _enable_window_mask(model) -> None:
    """Make every encoder layer attend only within its `cu_seqlens` window (idempotent)."""
    tower = model.thinker.audio_tower
    for layer in tower.layers:
        if getattr(layer, "_window_mask_enabled", False):
            continue
        original = layer.forward

        def forward(hidden_states, cu_seqlens, attention_mask=None, _original=original, **kwargs):
            if attention_mask is None:
                attention_mask = tower._prepare_attention_mask(hidden_states, cu_seqlens)
            return _original(hidden_states, cu_seqlens, attention_mask=attention_mask, **kwargs)

        layer.forward = forward
        layer._window_mask_enabled = True


def main() -> int:
    # Replies own the real stdout; anything the libraries print goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        official = Official()
        write_message(replies, {"ok": official.versions()})
    except Exception:
        write_message(replies, {"error": traceback.format_exc()})
        return 1
    while True:
        try:
            request = read_message(requests)
        except EOFError:
            return 0
        op, kwargs = request["op"], request.get("kwargs", {})
        try:
            if op.startswith("_") or not callable(getattr(official, op, None)):
                raise ValueError(f"unknown request {op!r}")
            reply = {"ok": getattr(official, op)(**kwargs)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        write_message(replies, reply)


if __name__ == "__main__":
    sys.exit(main())
