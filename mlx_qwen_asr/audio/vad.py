"""Voice-activity detection: which stretches of 16 kHz audio hold speech, and one map from the
speech-only audio's clock back to the input's.

`speech_spans(audio, options)` is a pure function. Frames of 30 ms are judged by WebRTC's
voice-activity detector (the `webrtcvad-wheels` package: a small Gaussian-mixture model
compiled into it, nothing fetched at run time; extra `vad`). On the trained fixture's
held-out clips with silence and noise put between them it kept every word at every noise
level tried, where an energy-and-flatness detector lost words once noise ran under the
speech; loud steady noise (pink, hum at -40 dBFS) it partly keeps as speech (scripts/vad_bench.py --compare; figures in docs/performance.md). Runs of speech
frames are joined across pauses shorter than `min_silence_seconds`, runs shorter than
`min_speech_seconds` dropped, and every span padded by `pad_seconds` on both sides (words
start and end softly; the padding keeps their edges).

`SpeechMap` joins the spans into one shorter signal and maps any time in it back to the
input's clock, so segments and word times come out where they were spoken.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .load import SAMPLE_RATE
from ..errors import SetupError


@dataclass(frozen=True)
class VadOptions:
    """How speech is told from the rest.

    frame_seconds: analysis frame length (10, 20 or 30 ms: what WebRTC's VAD takes).
    aggressiveness: WebRTC's mode, 0 (keeps most) to 3 (drops most non-speech).
    min_silence_seconds: pauses shorter than this stay inside a span (a sentence's breaths).
    min_speech_seconds: speech runs shorter than this are dropped (clicks, bumps).
    pad_seconds: kept on both sides of every span.
    """
    frame_seconds: float = 0.03
    aggressiveness: int = 3
    min_silence_seconds: float = 0.8
    min_speech_seconds: float = 0.12
    pad_seconds: float = 0.3


def _webrtc():
    try:
        import webrtcvad
    except ImportError:
        raise SetupError("skipping silence needs the optional webrtcvad-wheels package: "
                         "pip install 'mlx-qwen-asr[vad]'") from None
    return webrtcvad


def check_available() -> None:
    """Raises SetupError (one line, with the install command) if the detector is missing."""
    _webrtc()


class FrameJudge:
    """Speech/not-speech per whole frame, for audio that comes in pieces: one detector
    kept across calls (it adapts to the noise it has heard)."""

    def __init__(self, options: VadOptions = VadOptions()):
        self.vad = _webrtc().Vad(options.aggressiveness)
        self.frame = int(round(options.frame_seconds * SAMPLE_RATE))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """One decision per whole frame of 16 kHz `audio` (a trailing part frame is not judged)."""
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767).astype("<i2")
        return np.array([self.vad.is_speech(pcm[i:i + self.frame].tobytes(), SAMPLE_RATE)
                         for i in range(0, len(pcm) - self.frame + 1, self.frame)], dtype=bool)


def speech_frames(audio: np.ndarray, options: VadOptions = VadOptions()) -> np.ndarray:
    """One speech/not-speech decision per whole frame of 16 kHz `audio`."""
    return FrameJudge(options)(audio)


def speech_spans(audio: np.ndarray, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """[(start, end), ...] sample ranges of 16 kHz `audio` that hold speech, in order, not
    overlapping, padded and clipped to the audio."""
    return frames_to_spans(speech_frames(audio, options), len(audio), options)


def frames_to_spans(speech: np.ndarray, total: int, options: VadOptions = VadOptions()) -> list[tuple[int, int]]:
    """Per-frame speech decisions -> padded sample spans (pauses bridged, blips dropped)."""
    frame = max(1, int(round(options.frame_seconds * SAMPLE_RATE)))
    runs, start = [], None
    for i, on in enumerate(np.append(speech, False)):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append([start, i])
            start = None
    gap = options.min_silence_seconds / options.frame_seconds
    joined: list[list[int]] = []
    for run in runs:
        if joined and run[0] - joined[-1][1] < gap:
            joined[-1][1] = run[1]
        else:
            joined.append(run)
    shortest = options.min_speech_seconds / options.frame_seconds
    pad = int(round(options.pad_seconds * SAMPLE_RATE))
    spans: list[tuple[int, int]] = []
    for first, last in joined:
        if last - first < shortest:
            continue
        begin, end = max(0, first * frame - pad), min(total, last * frame + pad)
        if spans and begin <= spans[-1][1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((begin, end))
    return spans


class SpeechMap:
    """The speech spans of an input joined end to end, and the way back: `to_input(t)` is
    where second `t` of the joined audio was in the input."""

    def __init__(self, spans: list[tuple[int, int]]):
        self.spans = list(spans)
        lengths = np.array([end - start for start, end in self.spans], dtype=np.int64)
        self.joined_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
        self.input_starts = np.array([start for start, _ in self.spans], dtype=np.int64)
        self.length = int(lengths.sum()) if len(lengths) else 0

    def join(self, audio: np.ndarray) -> np.ndarray:
        if not self.spans:
            return np.zeros(0, np.float32)
        return np.concatenate([audio[start:end] for start, end in self.spans]).astype(np.float32, copy=False)

    def to_input(self, seconds: float, end: bool = False) -> float:
        """A time of the joined audio on the input's clock. At a junction between two spans
        a start belongs to the later span and an end (`end=True`) to the earlier one."""
        if not self.spans:
            return seconds
        sample = seconds * SAMPLE_RATE
        index = self._index(sample, "left" if end else "right")
        return (self.input_starts[index] + sample - self.joined_starts[index]) / SAMPLE_RATE

    def remap(self, segments) -> None:
        """Segments (and their words) transcribed from the joined audio, moved in place onto
        the input's clock."""
        import dataclasses

        for segment in segments:
            segment.start, segment.end = self.to_input(segment.start), self.to_input(segment.end, end=True)
            if segment.words:
                segment.words = [dataclasses.replace(w, start=round(start, 3), end=round(end, 3))
                                 for w in segment.words for start, end in [self.word_to_input(w.start, w.end)]]

    def word_to_input(self, start: float, end: float) -> tuple[float, float]:
        """A word's times on the input's clock. A word is spoken within one span: one that
        the aligner let run over a junction is put in the span that holds more of it, cut
        to that span (never on the far side of the removed gap from where it was said)."""
        first = self._index(start * SAMPLE_RATE, "right")
        last = self._index(end * SAMPLE_RATE, "left")
        if last <= first:
            return self.to_input(start), self.to_input(end, end=True)
        bounds = [(self.joined_starts[i] / SAMPLE_RATE, (self.joined_starts[i] + self.spans[i][1] - self.spans[i][0])
                   / SAMPLE_RATE) for i in range(first, last + 1)]
        shares = [min(end, b) - max(start, a) for a, b in bounds]
        index = first + shares.index(max(shares))
        (a, b), shift = bounds[index - first], (self.input_starts[index] - self.joined_starts[index]) / SAMPLE_RATE
        return float(max(start, a) + shift), float(min(end, b) + shift)

    def _index(self, sample: float, side: str) -> int:
        return max(0, int(np.searchsorted(self.joined_starts, sample, side=side)) - 1)


def speech_only(stream, options: VadOptions = VadOptions()):
    """An input's blocks (audio_blocks.AudioBlocks) cut down to its speech, and the map back.
    The whole input is read first: the detector's noise floor and spans need all of it
    (16 kHz float32: about 3.8 MB a minute)."""
    from .blocks import AudioBlocks

    blocks = [np.asarray(b, np.float32) for b in stream.blocks]
    audio = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    speech = SpeechMap(speech_spans(audio, options))
    joined = speech.join(audio)
    return AudioBlocks(iter([joined] if len(joined) else []), stream.duration), speech
