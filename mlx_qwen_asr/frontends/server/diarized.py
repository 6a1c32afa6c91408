"""response_format=diarized_json: OpenAI's gpt-4o-transcribe-diarize response (segments with
speaker, start, end, text), with known speakers named by `known_speaker_names[]` and
`known_speaker_references[]` (short clips as data URLs, as OpenAI takes them)."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import soundfile as sf

from ...audio.load import SAMPLE_RATE, load_audio
from ...errors import QwenASRError
from ...results import Transcription, join_texts
from ...speakers.attach import diarize_options as checked
from ...speakers.options import DiarizeOptions
from ...writers import speaker_runs

# OpenAI takes up to 4 known speakers.
MAX_KNOWN_SPEAKERS = 4


class DiarizeRequestError(QwenASRError):
    """A diarization field of the request is unusable; `param` names it."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


def diarize_options(form) -> DiarizeOptions:
    """The request's DiarizeOptions: known speakers decoded and checked (SciPy's presence too)."""
    names = form.getlist("known_speaker_names[]") + form.getlist("known_speaker_names")
    clips = form.getlist("known_speaker_references[]") + form.getlist("known_speaker_references")
    if len(names) != len(clips):
        raise DiarizeRequestError(f"known_speaker_names[] ({len(names)}) and known_speaker_references[] "
                                  f"({len(clips)}) must pair up, one reference clip per name",
                                  "known_speaker_references")
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise DiarizeRequestError(f"at most {MAX_KNOWN_SPEAKERS} known speakers, got {len(names)}",
                                  "known_speaker_names")
    if len(set(names)) != len(names):
        raise DiarizeRequestError("known_speaker_names[] has a name twice", "known_speaker_names")
    speakers = {}
    for name, clip in zip(names, clips):
        speakers[str(name)] = _reference_audio(str(name), clip)
    try:
        return checked(DiarizeOptions(speakers=speakers or None))
    except QwenASRError as exc:
        raise DiarizeRequestError(str(exc), "known_speaker_names") from None


def _reference_audio(name: str, clip) -> np.ndarray:
    """A reference clip (a data URL such as data:audio/wav;base64,..., or a file part) as 16 kHz audio."""
    if hasattr(clip, "file"):   # an uploaded file part
        data = clip.file.read()
    else:
        text = str(clip)
        _, comma, payload = text.partition(",")
        if not (text.startswith("data:") and comma):
            raise DiarizeRequestError(f"reference for {name}: give a data URL (data:audio/wav;base64,...)",
                                      "known_speaker_references")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise DiarizeRequestError(f"reference for {name}: the data URL is not valid base64",
                                      "known_speaker_references") from None
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return load_audio((samples, rate)) if rate != SAMPLE_RATE or samples.shape[1] > 1 else samples[:, 0]
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, QwenASRError) as exc:
        raise DiarizeRequestError(f"reference for {name}: not audio libsndfile reads (wav, flac, ogg): "
                                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                                  "known_speaker_references") from None


def diarized_json_body(result: Transcription) -> dict:
    """OpenAI's diarized_json: one segment per run of one speaker's speech."""
    segments = []
    for speaker, run in speaker_runs(result):
        text = join_texts([s.text for s in run])
        if text:
            segments.append({"type": "transcript.text.segment", "id": f"seg_{len(segments)}", "speaker": speaker,
                             "start": round(run[0].start, 3), "end": round(run[-1].end, 3), "text": text})
    return {"task": "transcribe", "duration": round(result.duration, 3), "text": result.text, "segments": segments,
            "usage": {"type": "duration", "seconds": round(result.duration, 3)}}
