"""Errors a user can act on. Each carries a one-line message; the CLI prints it without a traceback.

Two kinds, because a run treats them differently: a `SetupError` (model, aligner, options,
output folder, missing inputs) is wrong for every file, so it is found before any audio is
processed and stops the run (CLI exit 2); an `AudioError` concerns one file, which is
reported while the others go on (CLI exit 1).
"""


class QwenASRError(Exception):
    """Base class of every error this package raises on purpose."""


class SetupError(QwenASRError):
    """Something every input depends on is unusable: model, aligner, options, output folder."""


class AudioError(QwenASRError):
    """The audio could not be read or is unusable (missing, not audio, empty, NaN/Inf)."""


class ModelLoadError(SetupError):
    """The model directory or hub id does not hold a usable Qwen3-ASR checkpoint."""


class LanguageError(SetupError, ValueError):
    """An unsupported language name was given."""


class OutputError(SetupError):
    """The output folder cannot be used (a file, not writable, or another run holds it)."""


class OptionError(SetupError, ValueError):
    """An option has a value it cannot take (a token budget of 0, a segment of -1 s, ...)."""


def first_line(exc: BaseException) -> str:
    """The one line a user sees: our own errors' message, anything else with its type
    (an unforeseen error is still one line, never a traceback)."""
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    return message if isinstance(exc, QwenASRError) else f"{type(exc).__name__}: {message}".rstrip(": ")
