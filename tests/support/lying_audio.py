"""Audio files whose headers lie (tests of audio.check_header): built byte by byte."""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile as sf


def wav(rate: int, channels: int = 1, data: bytes = b"\0" * 64) -> bytes:
    """A 16-bit PCM WAV whose fmt chunk says `rate` and `channels`."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * 2) & 0xFFFFFFFF, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def flac_claiming_frames(frames: int) -> bytes:
    """A one-second FLAC whose STREAMINFO claims `frames` frames (36 bits at its end)."""
    out = io.BytesIO()
    sf.write(out, np.zeros(16000, np.float32), 16000, format="FLAC")
    data = bytearray(out.getvalue())
    at = 4 + 4 + 10   # "fLaC", the block header, block and frame sizes: then rate, channels, bits, frames
    fields = int.from_bytes(data[at:at + 8], "big")
    fields = fields & ~((1 << 36) - 1) | frames
    data[at:at + 8] = fields.to_bytes(8, "big")
    return bytes(data)


# name -> (bytes, words of the one-line error)
LYING = {
    "rate.wav": (wav(2_147_483_647), "2147483647 Hz"),
    "slow.wav": (wav(1, data=b"\0" * 2000), "claims 1 Hz"),
    "channels.wav": (wav(16000, channels=1000, data=b"\0" * 4000), "1000 channels"),
    "length.flac": (flac_claiming_frames((1 << 36) - 1), "68719476735 frames"),
}
