"""The official implementation (PyPI `qwen-asr`, PyTorch) as a client, for parity checks.

The official engine runs out of process: in its own environment (official_env.py, created
on first use) a worker (official_worker.py) loads models and answers requests, so torch,
transformers and qwen-asr never enter this package's environment. One worker per process
(`worker()`), started on first use and stopped at exit; models stay loaded in it.
Imported only by tests, benchmarks and scripts, never by the inference path.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import official_env
from .official_worker import read_message, write_message

WORKER_SCRIPT = Path(__file__).with_name("official_worker.py")


class OfficialError(RuntimeError):
    """The official worker failed; the message carries its traceback or log tail."""


class Worker:
    """One official worker process and its request/reply pipe."""

    def __init__(self, python: Path, script: Path = WORKER_SCRIPT):
        self.log = tempfile.TemporaryFile()   # the worker's stderr, quoted if it dies
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        # -I: neither PYTHONPATH, user site-packages nor the script's folder (this package).
        self.process = subprocess.Popen([str(python), "-I", str(script)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.versions = self._reply()

    def request(self, op: str, **kwargs):
        if self.process.poll() is not None:
            raise OfficialError(f"the official worker has exited ({self.process.returncode}){self._log_tail()}")
        try:
            write_message(self.process.stdin, {"op": op, "kwargs": kwargs})
        except BrokenPipeError:
            raise OfficialError(f"the official worker died{self._log_tail()}") from None
        return self._reply()

    def _reply(self):
        try:
            reply = read_message(self.process.stdout)
        except EOFError:
            self.process.wait()
            raise OfficialError(f"the official worker died (exit {self.process.returncode}){self._log_tail()}") from None
        if "error" in reply:
            raise OfficialError("the official worker failed:\n" + reply["error"])
        return reply["ok"]

    def _log_tail(self) -> str:
        self.log.seek(0)
        lines = self.log.read().decode(errors="replace").strip().splitlines()
        return (": " + " | ".join(lines[-5:])) if lines else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


_worker: Worker | None = None


def worker(announce=None) -> Worker:
    """This process's official worker, creating the environment and starting it if needed.

    Raises official_env.OfficialEnvError (one line) when the environment cannot be made."""
    global _worker
    if _worker is None or _worker.process.poll() is not None:
        _worker = Worker(official_env.ensure_env(announce))
        atexit.register(_worker.close)
    return _worker


def stop_worker() -> None:
    global _worker
    if _worker is not None:
        _worker.close()
        _worker = None


def _audio(audio) -> np.ndarray | str:
    return str(audio) if isinstance(audio, (str, Path)) else np.ascontiguousarray(audio, np.float32)


@dataclass(frozen=True)
class Result:
    """One official transcription."""
    language: str
    text: str


@dataclass(frozen=True)
class Word:
    """One official aligned word (its field names)."""
    text: str
    start_time: float
    end_time: float


class OfficialASR:
    """A `qwen_asr.Qwen3ASRModel` held by the worker."""

    def __init__(self, model_dir, dtype: str = "float32", window_mask: bool = True,
                 max_new_tokens: int | None = None, device: str = "cpu"):
        loaded = worker().request("load_asr", model_dir=str(model_dir), dtype=dtype, window_mask=window_mask,
                                  max_new_tokens=max_new_tokens, device=device)
        self.handle, self.param_dtypes = loaded["handle"], loaded["param_dtypes"]

    def _ask(self, op: str, **kwargs):
        return worker().request(op, handle=self.handle, **kwargs)

    def features(self, audio) -> np.ndarray:
        """Log-mel [n_mels, T] as the official processor computes it."""
        return self._ask("features", audio=_audio(audio))

    def encoder_output(self, mel: np.ndarray) -> np.ndarray:
        """Audio embeddings [N, output_dim] for a [n_mels, T] mel."""
        return self._ask("encoder_output", mel=np.ascontiguousarray(mel, np.float32))

    def prompt_ids(self, audio, context: str = "", language: str | None = None, prompt: str | None = None) -> list:
        """What the official pipeline feeds `generate` as input ids for one 16 kHz clip."""
        return self._ask("prompt_ids", audio=_audio(audio), context=context, language=language, prompt=prompt)

    def logits(self, audio, context: str = "", language: str | None = None,
               continuation: list[int] | None = None) -> np.ndarray:
        """Logits [P + len(continuation), V] for the prompt followed by `continuation` (teacher forcing)."""
        return self._ask("logits", audio=_audio(audio), context=context, language=language,
                         continuation=list(continuation or []))

    def generate(self, audio, max_new_tokens: int, context: str = "", language: str | None = None,
                 prompt: str | None = None, stop_at_eos: bool = True, eos_token_id=None) -> list[int]:
        """Greedy tokens from the official `generate`, EOS excluded (unless `stop_at_eos=False`)."""
        return self._ask("generate", audio=_audio(audio), max_new_tokens=max_new_tokens, context=context,
                         language=language, prompt=prompt, stop_at_eos=stop_at_eos, eos_token_id=eos_token_id)

    def transcribe(self, audio, language: str | None = None, context: str = "") -> list[Result]:
        """The whole official pipeline on a path or 16 kHz samples."""
        results = self._ask("transcribe", audio=_audio(audio), language=language, context=context)
        return [Result(**r) for r in results]

    def chat_prompt(self, context: str = "") -> str:
        """The processor's chat template for one audio turn with `context` as system text."""
        return self._ask("chat_prompt", context=context)

    def parameters(self, names: list[str]) -> dict[str, np.ndarray]:
        return self._ask("parameters", names=list(names))

    def forced_timing(self, audio, tokens: int) -> dict:
        """Stage times (s) of one run decoding exactly `tokens` tokens (the benchmark's workload)."""
        return self._ask("forced_timing", audio=_audio(audio), tokens=tokens)


def load_official(model_dir, dtype: str = "float32", window_mask: bool = True,
                  max_new_tokens: int | None = None, device: str = "cpu") -> OfficialASR:
    """`qwen_asr.Qwen3ASRModel` on `device` ("cpu", or "cuda" for scripts/gpu_check.py) in one
    dtype for every parameter, encoder windows restored unless `window_mask=False` (the
    official transformers backend drops them; docs/model.md §4)."""
    return OfficialASR(model_dir, dtype, window_mask, max_new_tokens, device)


class OfficialAligner:
    """A `qwen_asr.Qwen3ForcedAligner` held by the worker; `facts` describes the loaded model."""

    def __init__(self, model_dir, dtype: str = "float32", window_mask: bool = True, by_parts: bool = False):
        self.facts = worker().request("load_aligner", model_dir=str(model_dir), dtype=dtype,
                                      window_mask=window_mask, by_parts=by_parts)
        self.handle = self.facts["handle"]

    def align(self, audio, text: str, language: str) -> list[Word]:
        words = worker().request("align", handle=self.handle, audio=_audio(audio), text=text, language=language)
        return [Word(*w) for w in words]

    def timestamp_logits(self, audio, text: str, language: str) -> tuple[list[int], np.ndarray]:
        """(prompt ids, logits at the <timestamp> tokens) exactly as the official align() computes them."""
        out = worker().request("timestamp_logits", handle=self.handle, audio=_audio(audio), text=text,
                               language=language)
        return out["ids"], out["logits"]


def load_official_aligner(model_dir, dtype: str = "float32", window_mask: bool = True,
                          by_parts: bool = False) -> OfficialAligner:
    """The official aligner: its from_pretrained, or (`by_parts`) AutoModel + AutoProcessor
    assembled as from_pretrained does, which also reports the loading info in `facts["info"]`."""
    return OfficialAligner(model_dir, dtype, window_mask, by_parts)


class OfficialTokenizer:
    """The official processor's tokenizer (`via="processor"`) or transformers' AutoTokenizer."""

    def __init__(self, model_dir, via: str = "processor"):
        self.handle = worker().request("load_tokenizer", model_dir=str(model_dir), via=via)

    def _calls(self, method: str, calls: list):
        return worker().request("tokenizer_calls", handle=self.handle, method=method, calls=calls)

    def encode(self, text: str, **kwargs) -> list[int]:
        return self._calls("encode", [[[text], kwargs]])[0]

    def decode(self, ids: list[int], **kwargs) -> str:
        return self._calls("decode", [[[list(ids)], kwargs]])[0]

    def decode_many(self, id_lists: list[list[int]], **kwargs) -> list[str]:
        return self._calls("decode", [[[list(ids)], kwargs] for ids in id_lists])

    def convert_tokens_to_ids(self, token: str) -> int:
        return self._calls("convert_tokens_to_ids", [[[token], {}]])[0]

    def attributes(self, names: list[str]) -> dict:
        return worker().request("tokenizer_attributes", handle=self.handle, names=list(names))


def loader_report(model_dir) -> dict:
    """transformers' AutoModel on a checkpoint: {"info", "param_dtypes", "lm_head_tied"}."""
    return worker().request("loader_report", model_dir=str(model_dir))


def normalize_audio(source) -> np.ndarray:
    """The official loader's samples for a path, or for an (array, sample rate) pair."""
    if isinstance(source, tuple):
        source = [np.asarray(source[0]), int(source[1])]
    else:
        source = str(source)
    return worker().request("normalize_audio", source=source)


def soxr_hq(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """librosa.resample(res_type="soxr_hq"), run in the official engine's environment."""
    return worker().request("soxr_hq", audio=np.asarray(audio), orig_sr=int(orig_sr), target_sr=int(target_sr))


def split_words(cases: list[tuple[str, str]]) -> list[list[str]]:
    """The official aligner's word split of each (text, language)."""
    return worker().request("split_words", texts=[list(c) for c in cases])


def fix_timestamps(arrays: list[np.ndarray]) -> list[list[float]]:
    """The official aligner's repair (`fix_timestamp`) of each array of raw times."""
    return worker().request("fix_timestamps", arrays=[np.asarray(a, np.float32) for a in arrays])


def supported_languages() -> list[str]:
    return worker().request("supported_languages")


def fix_repetitions(texts: list[str]) -> list[str]:
    """`qwen_asr.inference.utils.detect_and_fix_repetitions` of each text."""
    return worker().request("fix_repetitions", texts=list(texts))


def parse_output(raw: str, user_language: str | None = None) -> tuple:
    """`qwen_asr.inference.utils.parse_asr_output`."""
    return tuple(worker().request("parse_output", raw=raw, user_language=user_language))


class FeatureExtractor:
    """transformers' WhisperFeatureExtractor as the official processor calls it."""

    def __init__(self, **kwargs):
        made = worker().request("load_feature_extractor", kwargs=kwargs)
        self.handle, self.mel_filters = made["handle"], made["mel_filters"]

    def __call__(self, audio) -> tuple[np.ndarray, np.ndarray]:
        """(features [n_mels, T], attention mask [T]) for one 16 kHz clip."""
        out = worker().request("extract_features", handle=self.handle, audio=_audio(audio))
        return out["features"], out["mask"]
