"""Setup checks that run before any audio is processed (and before any model download):
the inputs exist, the output folder is usable, the microphone can be opened.

Each raises a `SetupError` with one line naming the problem, so a typo in a command is
reported at once, not after a 1.8 GB download or after every file failed the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OutputError, SetupError


def check_inputs(inputs) -> None:
    """Every given file or folder exists (whether it is audio is each file's own matter)."""
    missing = [str(given) for given in inputs if not os.path.exists(given)]
    if len(missing) == 1:
        raise SetupError(f"{missing[0]}: no such file or folder")
    if missing:
        raise SetupError(f"no such files or folders: {', '.join(missing)}")


def check_output_dir(output_dir, create: bool = True) -> Path:
    """The output folder is a folder (or can be made one) and can be written; with
    `create`, it is made. Without, nothing is written (a check before the model loads)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output folder {path} is an existing file; give a folder (it is created if missing)")
    existing = path
    while not existing.exists():   # the nearest part of the path that exists
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot create output folder {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {path} is not writable" if existing == path else
                          f"cannot create output folder {path}: {existing} is not writable")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {path}: {exc.strerror or exc}") from None
    return path


def check_microphone(device: str | None = None) -> int | None:
    """sounddevice and PortAudio load, and there is a default input device, or the input
    device `device` names (index or part of its name: mic_devices.resolve_device), whose
    index is returned (None: the default)."""
    from .live import import_sounddevice
    from .mic import query_input_devices, resolve_device

    if device is not None:
        return resolve_device(query_input_devices(), device).index
    sounddevice = import_sounddevice()
    try:
        sounddevice.query_devices(kind="input")
    except Exception as exc:   # PortAudioError, or ValueError when there is no input device
        lines = str(exc).strip().splitlines()
        raise SetupError(f"cannot open the microphone: {lines[0] if lines else type(exc).__name__}") from None
    return None
