"""The loaded model (`ASRModel`, `load_model`) and offline transcription (`transcribe`).

Audio is read block by block and cut at quiet moments into pieces of about 30 s; each is
transcribed on its own into a segment (its own language, token budget and finish reason)
and the segments are joined. The pieces are scheduled by batch.py and decoded by
segments.py, where a piece that loops or runs out of budget is decoded again with a remedy.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx

from .batch import transcribe_batch
from .model.config import ModelConfig
from .errors import AudioError
from .model.loading import load_network, low_memory_settings, parse_dtype, refuse_aligner, resolve_model_dir
from .model.network import Qwen3ASR
from .model_input import prompt_ids
from .aligner import named_aligner
from .options import DEFAULT_MODEL, LoadOptions, TranscribeOptions
from .model.peer_layouts import stored_quantization
from .languages import forced_language, language_set
from .prompt import ASR_TEXT_TAG, LANGUAGE_WORD, NO_SPEECH_NAME
from .results import Transcription
from .model.tokenizer import QwenTokenizer


class ASRModel:
    """A loaded Qwen3-ASR model: network, tokenizer and config. Load once, transcribe many."""

    def __init__(self, network: Qwen3ASR, tokenizer: QwenTokenizer, config: ModelConfig, path: Path, dtype: mx.Dtype,
                 quantize: int | None = None, low_memory: bool = False):
        self.network = network
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.dtype = dtype
        self.quantize = quantize
        self.low_memory = low_memory   # also: segments decoded one at a time by default
        # The output's "language" token, and what follows it for no speech ("language None").
        self.language_token = tokenizer.encode(LANGUAGE_WORD)[0]
        self.no_speech_ids = tuple(tokenizer.encode(NO_SPEECH_NAME)[:1])

    def __repr__(self) -> str:
        quantized = f", quantize={self.quantize}" if self.quantize else ""
        return f"ASRModel({str(self.path)!r}, dtype={self.dtype}{quantized})"

    @classmethod
    def load(cls, model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None,
             low_memory: bool = False) -> "ASRModel":
        """`quantize` (4 or 8) quantizes the decoder's linear layers at that many bits once
        loaded (encoder and head at 8; quantization.py has the policy). It saves memory; on
        the CPU backend it is slower than float32 (docs/performance.md). `low_memory=True`
        picks the small-footprint recipe for this device (loading.low_memory_settings)."""
        LoadOptions(model, dtype, quantize)   # checked before anything is read
        model_dir = resolve_model_dir(model)
        config = ModelConfig.from_file(model_dir / "config.json")
        refuse_aligner(model_dir, config)
        if low_memory:
            dtype, quantize = low_memory_settings(dtype, quantize, bool(stored_quantization(model_dir, config.raw)))
        mx_dtype = parse_dtype(dtype)
        network = load_network(model_dir, config, mx_dtype, quantize=quantize)
        tokenizer = QwenTokenizer.from_model_dir(model_dir, config.raw)
        return cls(network, tokenizer, config, model_dir, mx_dtype, quantize, low_memory)

    def prompt_ids(self, num_audio_tokens: int, context: str = "", language: str | None = None) -> list[int]:
        return prompt_ids(self.tokenizer, num_audio_tokens, context, language)

    def header_tokens(self, language: str) -> list[int]:
        """The tokens of the output's header for `language`: "language", its name, "<asr_text>"."""
        return self.tokenizer.encode(f"{LANGUAGE_WORD} {language}{ASR_TEXT_TAG}")

    def header_choices(self, language) -> list[list[int]] | None:
        """The headers a language set (options.language) lets the model choose from; None otherwise."""
        names = language_set(language)
        return [self.header_tokens(name) for name in names] if names else None

    def language_slot(self, language) -> int | None:
        """Where, in a prompt that forces `language`, the model's language slot is (the
        position after "language", from the end); None when the language is not forced."""
        forced = forced_language(language)
        return -len(self.header_tokens(forced)) if forced else None

    def transcribe(self, audio, options: TranscribeOptions | None = None, *, sample_rate: int | None = None,
                   progress=None, batch_size: int | None = None, **changes) -> Transcription:
        """Transcribe one file path or array (with `sample_rate`), of any length.

        `options` (a TranscribeOptions; keyword `changes` override its fields, see options.py)
        say how. Audio longer than `segment_seconds` is cut at quiet moments; its segments
        are decoded `batch_size` at a time (default 8, or 1 for a model loaded with
        `low_memory`: each row holds its own cache; the text is the same either way), so
        memory stays bounded. `progress`, if given, is called as
        progress(done_seconds, total_seconds) as segments are done. An integer array is
        divided by its peak, as the official engine does (streamed chunks are scaled by
        their type's range instead: see audio.load_audio).
        """
        def on_segment(index, end_seconds, duration):
            progress(min(end_seconds, duration), duration)

        [result] = transcribe_batch(self, [audio], options, batch_size=batch_size, sample_rate=sample_rate,
                                    on_segment=on_segment if progress else None, **changes)
        return result

    def transcribe_many(self, audios: list, options: TranscribeOptions | None = None, *, on_error: str = "raise",
                        **kwargs) -> list:
        """`transcribe_batch(self, audios, options, ...)`: several inputs, segments decoded together.
        `on_error="return"` puts a bad input's exception in its place in the list instead of
        raising it (the others are still transcribed)."""
        return transcribe_batch(self, audios, options, on_error=on_error, **kwargs)


_loaded: dict[tuple, ASRModel] = {}


def load_model(model: str | Path = DEFAULT_MODEL, dtype=None, quantize: int | None = None,
               low_memory: bool = False) -> ASRModel:
    """Load (or reuse, for the same path, dtype and quantization) a model; `quantize`: 4 or 8;
    `low_memory`: the small-footprint recipe for this device (see ASRModel.load)."""
    key = (str(model), str(parse_dtype(dtype)), quantize, low_memory)
    if key not in _loaded:
        _loaded.clear()  # keep at most one model in memory
        _loaded[key] = ASRModel.load(model, dtype, quantize, low_memory)
    return _loaded[key]


def transcribe(audio, options: TranscribeOptions | None = None, *, model: str | Path | ASRModel = DEFAULT_MODEL,
               dtype=None, quantize: int | None = None, sample_rate: int | None = None, on_error: str = "raise",
               **changes) -> Transcription | list:
    """Transcribe an audio file path or array (with `sample_rate`), or a list of them.

    `model` is a hub id, a local directory, or an `ASRModel` from `load_model()` (`dtype` and
    `quantize` apply when it is loaded here). A list in gives a list out, in the same order
    (`transcribe_batch`). `options` and the keyword `changes` to it: see TranscribeOptions.

    A bad input of a list (a missing or unreadable file, a bad array): `on_error="raise"`
    raises its exception, before the model loads where it can tell (a missing file);
    `on_error="return"` puts the exception in that input's place in the list and
    transcribes the others. A single input's error is always raised.
    """
    if on_error not in ("raise", "return"):
        raise ValueError(f'on_error must be "raise" or "return", got {on_error!r}')
    options = TranscribeOptions.build(options, **named_aligner(changes))   # checked before the model loads
    if not isinstance(model, ASRModel):
        if on_error == "raise" or not isinstance(audio, list):
            _check_paths(audio if isinstance(audio, list) else [audio])   # before a model download
        model = load_model(model, dtype, quantize)
    if isinstance(audio, list):
        return transcribe_batch(model, audio, options, sample_rate=sample_rate, on_error=on_error)
    return model.transcribe(audio, options, sample_rate=sample_rate)


def _check_paths(sources: list) -> None:
    """A missing audio file is reported before the model is loaded (maybe downloaded)."""
    for source in sources:
        if isinstance(source, (str, os.PathLike)) and not os.path.exists(source):
            raise AudioError(f"{os.fspath(source)}: no such file")
