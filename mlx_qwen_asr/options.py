"""What to do with a request, as one frozen value checked once: `TranscribeOptions`, and
the load-time settings of a model, `LoadOptions`.

Every front end (the Python API, batch and folder runs, streaming, the CLI, a server)
builds these values and hands them on; nothing below re-reads or re-checks them.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, fields, replace

from .model.aligner_network import DEFAULT_ALIGNER
from .model.config import SUPPORTED_LANGUAGES
from .errors import OptionError
from .languages import normalize_languages
from .limits import MAX_NEW_TOKENS, MAX_SEGMENT_SECONDS
from .confidence import DEFAULT_LOGPROB_THRESHOLD, DEFAULT_MIN_SPEECH_SECONDS, DEFAULT_NO_SPEECH_THRESHOLD
from .audio.cutting import DEFAULT_SEGMENT_SECONDS

DEFAULT_MODEL = "Qwen/Qwen3-ASR-0.6B"
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZE_BITS = (4, 8)


@dataclass(frozen=True)
class TranscribeOptions:
    """Per-request transcription options: they may differ between two calls on one loaded model.

    language:          force this language ("english" -> "English"); None detects it per segment;
                       a set (["en", "zh"] or "en,zh") lets the model choose each segment's
                       language among those only (a set of one forces it).
    context:           text (names, terms) given to the model as its system prompt.
    max_new_tokens:    token budget per segment, at least 1; None scales it with each segment's
                       duration (and lets loop recovery retry a segment that hits it).
    segment_seconds:   audio longer than this (at least 1 s) is cut at quiet moments into
                       segments of about this length, each transcribed on its own.
    repetition_guard:  stop a segment's decoding when it loops, and call one that ended in a
                       loop at EOS a loop too; False is plain greedy decoding, token for token
                       the official `generate`.
    recover_loops:     decode a segment that looped or hit its default budget again, with a
                       repetition penalty, then in two halves.
    word_timestamps:   time every word with the forced aligner (`Segment.words`). None (the
                       default): as the output needs them: on where srt/vtt files or
                       responses are made (transcribe_folder, the server), which are
                       word-timed as the CLI's are; off otherwise.
    aligner:           the forced aligner for word_timestamps: hub id or directory. A name only: the
                       loaded aligner is kept beside the options (aligner.get_aligner); a loaded
                       `Aligner` given to transcribe(..., aligner=...) or the other entry points
                       becomes the kept one and is held here by its path.
    skip_silence:      transcribe only the spans a voice-activity detector calls speech (vad.py;
                       needs the `vad` extra); every time stays on the input's clock.
    no_speech_threshold: a segment whose no_speech_prob is above this and whose text is unsure
                       (avg_logprob below `logprob_threshold`) is dropped, finish_reason
                       "no_speech" (confidence.py); None keeps every segment.
    logprob_threshold: the avg_logprob under which a segment's text counts as unsure; None:
                       every text does (the no-speech evidence alone decides).
    min_speech_seconds: a segment whose text is unsure and in whose audio a speech-activity
                       network (speech_presence.py) hears less speech than this is dropped as
                       "no speech" too; None: the audio is not listened to.
    diarize:           who spoke when: True, or a speakers.options.DiarizeOptions (number of
                       speakers, known voices); every segment and word gets a speaker
                       (speakers/attach.py). It times the words (word_timestamps), as segments
                       are split where the speaker changes. Needs the `diarize` extra (SciPy).

    Streaming uses language, context, word_timestamps and aligner; the others are offline only.
    The model, its dtype and quantization are not here: they are fixed when a model is loaded
    (`LoadOptions`).
    """

    language: str | tuple[str, ...] | None = None
    context: str = ""
    max_new_tokens: int | None = None
    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    repetition_guard: bool = True
    recover_loops: bool = True
    word_timestamps: bool | None = None
    aligner: str | os.PathLike = DEFAULT_ALIGNER
    skip_silence: bool = False
    no_speech_threshold: float | None = DEFAULT_NO_SPEECH_THRESHOLD
    logprob_threshold: float | None = DEFAULT_LOGPROB_THRESHOLD
    min_speech_seconds: float | None = DEFAULT_MIN_SPEECH_SECONDS
    diarize: object = None

    def __post_init__(self):
        set_ = object.__setattr__   # frozen: the checked values are stored once, here
        set_(self, "language", normalize_languages(self.language, SUPPORTED_LANGUAGES))
        if self.context is None:
            set_(self, "context", "")
        if not isinstance(self.context, str):
            raise OptionError(f"context must be text, got {type(self.context).__name__}")
        if self.max_new_tokens is not None and not (_is_int(self.max_new_tokens) and self.max_new_tokens >= 1):
            raise OptionError(f"max_new_tokens must be a whole number of at least 1, got {self.max_new_tokens!r}")
        if self.max_new_tokens is not None and self.max_new_tokens > MAX_NEW_TOKENS:
            raise OptionError(f"max_new_tokens may be at most {MAX_NEW_TOKENS} (its cache is made before "
                              f"decoding), got {self.max_new_tokens}")
        if not (_is_number(self.segment_seconds) and math.isfinite(self.segment_seconds)
                and self.segment_seconds >= 1.0):
            raise OptionError(f"segment_seconds must be a number of at least 1 (seconds), got {self.segment_seconds!r}")
        if self.segment_seconds > MAX_SEGMENT_SECONDS:
            raise OptionError(f"segment_seconds may be at most {MAX_SEGMENT_SECONDS:g} (one segment is decoded "
                              f"whole), got {self.segment_seconds:g}")
        if not (self.word_timestamps is None or isinstance(self.word_timestamps, bool)):
            raise OptionError(f"word_timestamps must be True, False or None, got {self.word_timestamps!r}")
        for name in ("repetition_guard", "recover_loops", "skip_silence"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.no_speech_threshold is not None and not (_is_number(self.no_speech_threshold)
                                                         and 0.0 <= self.no_speech_threshold <= 1.0):
            raise OptionError(f"no_speech_threshold must be a probability from 0 to 1 or None, got "
                              f"{self.no_speech_threshold!r}")
        if self.logprob_threshold is not None and not (_is_number(self.logprob_threshold)
                                                       and -math.inf < self.logprob_threshold <= 0.0):
            raise OptionError(f"logprob_threshold must be a log-probability (a number <= 0) or None, got "
                              f"{self.logprob_threshold!r}")
        if self.min_speech_seconds is not None and not (_is_number(self.min_speech_seconds)
                                                        and 0.0 <= self.min_speech_seconds < math.inf):
            raise OptionError(f"min_speech_seconds must be a number of seconds >= 0 or None, got "
                              f"{self.min_speech_seconds!r}")
        if self.skip_silence:
            from .audio.vad import check_available

            check_available()   # a missing detector is a setup error, found before any audio
        if self.diarize is not None and self.diarize is not False:
            from .speakers.attach import diarize_options

            set_(self, "diarize", diarize_options(self.diarize))   # SciPy's presence checked too
            set_(self, "word_timestamps", True)
        else:
            set_(self, "diarize", None)
        if not (isinstance(self.aligner, (str, os.PathLike)) and str(self.aligner)):
            raise OptionError(f"aligner must be a hub id or a directory, got {self.aligner!r} (a loaded Aligner "
                              "goes to transcribe(..., aligner=...) or another entry point, not into the options)")

    @classmethod
    def build(cls, options: "TranscribeOptions | None" = None, **changes) -> "TranscribeOptions":
        """`options` (default: the defaults) with `changes` applied; an unknown name is a TypeError."""
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown transcription option(s): {', '.join(unknown)}")
        if options is None:
            return cls(**changes)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a TranscribeOptions, got {type(options).__name__}")
        return replace(options, **changes) if changes else options

    def changed(self) -> list[str]:
        """Names of the fields that differ from their defaults."""
        default = TranscribeOptions()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]

    def record(self) -> dict:
        """The options as plain JSON values (a folder run's manifest): the aligner only when
        word timestamps are on (otherwise it changes nothing)."""
        out = asdict(replace(self, diarize=None))
        out["aligner"] = str(self.aligner) if self.word_timestamps else None
        del out["diarize"]
        if self.diarize is not None:   # recorded only when on: earlier manifests stay valid
            out["diarize"] = self.diarize.record()
        if isinstance(self.language, tuple):
            out["language"] = list(self.language)   # as JSON gives it back
        for name in NEWER_FIELDS:   # at their defaults, outputs recorded before these existed stay reusable
            if out[name] == getattr(TranscribeOptions, name):
                del out[name]
        return out


# Fields the folder manifests of earlier versions did not record (see `record`).
NEWER_FIELDS = ("no_speech_threshold", "logprob_threshold", "min_speech_seconds")

# What streaming cannot honour (it decodes growing regions with its own budget and guard).
NOT_STREAMED = ("max_new_tokens", "segment_seconds", "repetition_guard", "recover_loops", "skip_silence",
                "no_speech_threshold", "logprob_threshold", "min_speech_seconds", "diarize")


def check_streamable(options: TranscribeOptions) -> TranscribeOptions:
    ignored = [name for name in options.changed() if name in NOT_STREAMED]
    if ignored:
        raise OptionError(f"streaming does not use {', '.join(ignored)} (offline transcription only)")
    return options


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded; fixed for its lifetime (one loaded model per setting).

    model:     hub id or local directory.
    dtype:     "float32", "bfloat16", "float16", an mx.Dtype, or None (float32 on CPU, bfloat16 on GPU).
    quantize:  4 or 8: quantize the decoder's linear layers at that many bits once loaded; None: not.
    low_memory: the small-footprint recipe for the device (loading.low_memory_settings; given
               dtype and quantize are kept), and segments decoded one at a time by default.
    """

    model: object = DEFAULT_MODEL
    dtype: object = None
    quantize: int | None = None
    low_memory: bool = False

    def __post_init__(self):
        if not (isinstance(self.model, (str, os.PathLike)) and str(self.model)):
            raise OptionError(f"model must be a hub id or a directory, got {self.model!r}")
        if isinstance(self.dtype, str) and self.dtype not in DTYPES:
            raise OptionError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.quantize is not None and not (_is_int(self.quantize) and self.quantize in QUANTIZE_BITS):
            raise OptionError(f"quantize must be 4 or 8 (bits), got {self.quantize!r}")


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
