"""Errors a user can act on. Each carries a one-line message; the CLI prints it without a traceback."""


class QwenASRError(Exception):
    """Base class of every error this package raises on purpose."""


class AudioError(QwenASRError):
    """The audio could not be read or is unusable (missing, not audio, empty, NaN/Inf)."""


class ModelLoadError(QwenASRError):
    """The model directory or hub id does not hold a usable Qwen3-ASR checkpoint."""


class LanguageError(QwenASRError, ValueError):
    """An unsupported language name was given."""


class OptionError(QwenASRError, ValueError):
    """An option has a value it cannot take (a token budget of 0, a segment of -1 s, ...)."""
