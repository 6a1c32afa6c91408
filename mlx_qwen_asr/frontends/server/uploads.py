"""An uploaded file -> its audio cut into segments, read exactly as the CLI reads a file.

The upload is written to a file of a random name in the server's own temporary folder
(the client's file name never reaches the file system; it only appears in messages),
decoded and cut, and deleted before the audio is queued: no file outlives its request.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from ...audio.blocks import open_audio_blocks
from ...errors import AudioError
from ...audio.cutting import DEFAULT_SEGMENT_SECONDS, AudioPiece, iter_pieces

COPY_BLOCK = 1 << 20
FOLDER_PREFIX = "mlx-qwen-asr-server-"   # then the server's process id


class TooLong(Exception):
    pass


@dataclass
class Audio:
    pieces: list[AudioPiece]
    duration: float


class TempFolder:
    """The server's folder for uploads in flight, removed when the server stops."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))

    def new_file(self) -> Path:
        return self.path / uuid.uuid4().hex

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def display_name(filename: str | None) -> str:
    """The client's file name made safe for a one-line message (never used as a path)."""
    name = re.sub(r"[\x00-\x1f\x7f]", "", os.path.basename((filename or "").replace("\\", "/")))
    return name[:120] or "upload"


def read_upload(source, folder: TempFolder, filename: str | None, max_seconds: float,
                segment_seconds: float = DEFAULT_SEGMENT_SECONDS) -> Audio:
    """`source`: a binary file object holding the upload. Raises AudioError (with the
    CLI's message, naming the upload) or TooLong."""
    name = display_name(filename)
    path = folder.new_file()
    try:
        with open(path, "xb") as out:
            shutil.copyfileobj(source, out, COPY_BLOCK)
        try:
            stream = open_audio_blocks(str(path))
            if stream.duration > max_seconds:
                raise TooLong(f"{name}: {stream.duration:.1f} s of audio exceeds the server's limit of "
                              f"{max_seconds:g} s (--max-audio-seconds)")
            pieces = list(iter_pieces(stream.blocks, segment_seconds))
        except AudioError as exc:
            raise AudioError(str(exc).replace(os.path.abspath(path), name).replace(str(path), name)) from None
        return Audio(pieces, stream.duration)
    finally:
        path.unlink(missing_ok=True)
