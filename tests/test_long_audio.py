"""Long audio: cuts at quiet moments, no sample lost or repeated, per-segment results, loop recovery."""

import numpy as np
import pytest
import soundfile as sf

from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.audio.blocks import open_audio_blocks
from mlx_qwen_asr.results import join_texts, merge_languages
from mlx_qwen_asr.audio.cutting import iter_pieces
from mlx_qwen_asr.segments import decode_piece

from support.audio_samples import speech
from support.looping import always_token

SR = 16000


def noisy_with_gaps(seconds, gaps, seed=0):
    """White noise with 300 ms of silence starting at each of `gaps` (seconds)."""
    rng = np.random.default_rng(seed)
    audio = (0.3 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    for gap in gaps:
        audio[int(gap * SR): int((gap + 0.3) * SR)] = 0.0
    return audio


def test_segments_are_contiguous_and_lose_nothing():
    audio = noisy_with_gaps(200.0, [])
    segments = list(iter_pieces([audio], target_s=30, search_s=5))
    assert np.array_equal(np.concatenate([s.audio for s in segments]), audio)
    assert segments[0].start == 0
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert all(25 * SR <= len(s.audio) <= 35 * SR for s in segments[:-1])
    assert len(segments[-1].audio) <= 35 * SR


def test_cuts_land_in_the_quiet_gaps():
    gaps = [28.0, 61.5, 88.2]
    segments = list(iter_pieces([noisy_with_gaps(120.0, gaps)], target_s=30, search_s=5))
    cuts = [s.start / SR for s in segments[1:]]
    assert len(cuts) == 3
    for cut, gap in zip(cuts, gaps):
        assert gap <= cut <= gap + 0.3


@pytest.mark.parametrize("block", [1, 977, 16000, 10 ** 6])
def test_streamed_blocks_give_the_same_cuts(block):
    audio = noisy_with_gaps(100.0, [31.0, 58.0])
    whole = list(iter_pieces([audio]))
    streamed = list(iter_pieces((audio[i:i + block] for i in range(0, len(audio), block))))
    assert [(s.start, s.end) for s in streamed] == [(s.start, s.end) for s in whole]


@pytest.mark.parametrize("rate,subtype", [(44100, "PCM_16"), (16000, "PCM_16"), (22050, "FLOAT")])
def test_file_stream_equals_whole_load(tmp_path, rate, subtype):
    rng = np.random.default_rng(1)
    stereo = rng.uniform(-1, 1, (rate * 70, 2)).astype(np.float32) * (1.5 if subtype == "FLOAT" else 0.9)
    path = tmp_path / "long.wav"
    sf.write(path, stereo, rate, subtype=subtype)
    stream = open_audio_blocks(path, block_seconds=7.3)
    streamed = np.concatenate(list(stream.blocks))
    whole = load_audio(path)
    assert stream.duration == pytest.approx(70.0)
    assert streamed.shape == whole.shape
    assert np.max(np.abs(streamed - whole)) < 1e-6


def test_join_and_merge():
    assert join_texts(["Hello there.", "", " General Kenobi "]) == "Hello there. General Kenobi"
    assert join_texts(["你好。", "世界", "ok"]) == "你好。世界ok"
    assert merge_languages(["English", "English", "", "Chinese", "English"]) == "English,Chinese,English"


def test_long_file_is_transcribed_segment_by_segment(model, tmp_path):
    audio = speech(75.0)
    path = tmp_path / "talk.flac"
    sf.write(path, audio, SR)
    result = model.transcribe(path, segment_seconds=30, max_new_tokens=6, recover_loops=False)
    assert result.duration == pytest.approx(75.0)
    assert len(result.segments) == 3
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(75.0)
    assert all(a.end == b.start for a, b in zip(result.segments, result.segments[1:]))
    assert result.tokens == [t for s in result.segments for t in s.tokens]
    assert result.truncated and result.finish_reason == "length"  # a 6-token budget truncates
    # Each segment is exactly what that piece of audio gives on its own.
    first = result.segments[1]
    piece = load_audio(path)[int(first.start * SR): int(round(first.end * SR))]
    alone = decode_piece(model, piece, max_new_tokens=6)
    assert alone.tokens == first.tokens


def test_without_loops_output_is_plain_greedy(model):
    """Recovery only touches segments that loop: a clean one is bit-identical to greedy."""
    audio = speech(3.0)
    plain = model.transcribe(audio, sample_rate=SR, max_new_tokens=20, repetition_guard=False, recover_loops=False)
    default = model.transcribe(audio, sample_rate=SR, max_new_tokens=20)
    assert default.tokens == plain.tokens and default.retries == 0


def test_a_looping_segment_is_retried_and_reported(model, monkeypatch):
    """A model that loops whatever it hears is retried (penalty, then halves) and says so."""
    always_token(model, monkeypatch)
    audio = speech(4.0)
    result = model.transcribe(audio, sample_rate=SR, language="English")
    assert result.retries >= 1
    assert all(s.remedy in ("repetition_penalty", "split") for s in result.segments)
    assert result.segments[0].start == 0 and result.segments[-1].end == pytest.approx(4.0)
    no_recovery = model.transcribe(audio, sample_rate=SR, language="English", recover_loops=False)
    assert no_recovery.finish_reason == "repetition" and no_recovery.retries == 0
