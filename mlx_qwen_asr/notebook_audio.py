"""The audio a notebook view plays: the input compressed to a small embedded MP3, or, for
long inputs, a link to the file (or nothing, with a note saying why)."""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass
from pathlib import Path

# Longest input embedded: at 24 kbit/s, 5 minutes are ~0.9 MB (1.2 MB as base64).
EMBED_MAX_SECONDS = 300
# MP3 plays in Safari/WebKit, Chromium, Firefox and VS Code's notebooks; Opus in Ogg does
# not play in Safari before 18.4. libsndfile's constant-bitrate level 0.9 is 24 kbit/s for
# 16 kHz mono (MPEG-2 layer III): speech keeps its band up to ~5.8 kHz (32 kbit/s: ~7.3 kHz,
# a third larger); scripts/render_notebook_view.py --compare-codecs measures the choices.
MP3_LEVEL = 0.9
# Decoders without gapless info (libsndfile writes none) play LAME's 576-sample encoder
# delay plus the 529-sample decoder delay first: the view's clock runs this much behind.
MP3_DELAY_SAMPLES = 1105
# Fallback when this libsndfile cannot write MP3 (< 1.1): 8 kHz 16-bit WAV, 16 kB a second.
WAV_FALLBACK_RATE = 8000


@dataclass
class PlayerAudio:
    src: str = ""      # a data: URI or a link the page can load; "" when there is no audio
    mime: str = ""
    note: str = ""     # shown (already escaped HTML) when the audio is linked or missing
    delay: float = 0.0  # seconds of codec delay before the input's first sample plays


def player_audio(source, duration: float, cwd: str | os.PathLike | None = None) -> PlayerAudio:
    """What the view's <audio> plays for `source` (the transcribed path, array, or
    (array, rate) tuple): embedded up to EMBED_MAX_SECONDS, linked beyond when it is a path."""
    if source is None:
        return PlayerAudio()
    if duration > EMBED_MAX_SECONDS:
        limit = f"longer than {EMBED_MAX_SECONDS // 60} min, not embedded"
        if isinstance(source, (str, os.PathLike)):
            link = file_link(Path(source), Path(cwd or os.getcwd()))
            return PlayerAudio(link, "", f"audio {limit}: played from "
                               f"<a href=\"{html.escape(link)}\">{html.escape(os.fspath(source))}</a>")
        return PlayerAudio(note=f"audio {limit} (pass a file path to play it from the file)")
    samples = _samples(source)
    if samples is None:
        return PlayerAudio()
    from .audio.load import SAMPLE_RATE

    data, mime = compressed(samples)
    delay = MP3_DELAY_SAMPLES / SAMPLE_RATE if mime == "audio/mpeg" else 0.0
    return PlayerAudio(f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}", mime, delay=delay)


def compressed(samples) -> tuple[bytes, str]:
    """16 kHz mono samples as MP3 bytes (or, without an MP3 encoder, 8 kHz WAV) and its type."""
    import numpy as np
    import soundfile as sf

    from .audio.load import SAMPLE_RATE

    samples = np.asarray(samples, dtype=np.float32)
    try:
        buffer = io.BytesIO()
        sf.write(buffer, samples, SAMPLE_RATE, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=MP3_LEVEL, bitrate_mode="CONSTANT")
        return buffer.getvalue(), "audio/mpeg"
    except (TypeError, ValueError, RuntimeError):   # old soundfile / libsndfile: no MP3
        from .audio.resample import resample

        buffer = io.BytesIO()
        sf.write(buffer, resample(samples, SAMPLE_RATE, WAV_FALLBACK_RATE), WAV_FALLBACK_RATE,
                 format="WAV", subtype="PCM_16")
        return buffer.getvalue(), "audio/wav"


def file_link(path: Path, cwd: Path) -> str:
    """A URL for the file: relative to the notebook's folder when it lies under it (Jupyter
    serves it from there), else a file: URL (which only a page opened from disk can load)."""
    absolute = path.resolve()
    try:
        relative = absolute.relative_to(cwd.resolve())
    except ValueError:
        return absolute.as_uri()
    from urllib.parse import quote

    return quote(relative.as_posix())


def _samples(source):
    from .audio.load import load_audio
    from .errors import AudioError

    try:
        return load_audio(*source) if isinstance(source, tuple) else load_audio(source)
    except (AudioError, TypeError):
        return None
