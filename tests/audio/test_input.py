"""One input normaliser: files, arrays and streamed chunks read by the same rules; bad rates are one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from support.audio_samples import speech

from mlx_qwen_asr.audio.load import chunk_samples, load_audio, resample
from mlx_qwen_asr.audio.blocks import BlockResampler, open_audio_blocks
from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.stream.session import StreamingSession

BAD_RATES = [0, -16000, 16000.5, "16000", None, True, float("nan")]


@pytest.mark.parametrize("rate", BAD_RATES)
def test_bad_rate_is_a_clear_error_everywhere(model, rate):
    """Before: feed(chunk, 0) raised ZeroDivisionError; negative, fractional or text rates
    passed or failed deep inside."""
    audio = speech(0.5)
    message = "sample_rate must be a positive integer number of Hz"
    with pytest.raises(AudioError, match=message):
        StreamingSession(model).feed(audio, rate)
    if rate is not None:   # None means "a file" to these
        with pytest.raises(AudioError, match=message):
            load_audio(audio, rate)
        with pytest.raises(AudioError, match=message):
            open_audio_blocks(audio, rate)
        with pytest.raises(AudioError, match=message):
            model.transcribe(audio, sample_rate=rate)
    with pytest.raises(AudioError, match=message):
        BlockResampler(rate)


def test_rate_change_keeps_every_sample(model):
    """Before: 1 s at 48 kHz then 1 s at 44.1 kHz came out 1.919 s long (the 44.1 kHz audio
    went through the 48 kHz resampler)."""
    session = StreamingSession(model, language="English")
    session.feed(np.zeros(48000, np.float32) + 0.1, 48000)
    session.feed(np.zeros(44100, np.float32) + 0.1, 44100)
    assert session.finish().audio_seconds == pytest.approx(2.0, abs=1e-3)


def test_rate_change_keeps_the_order(model):
    """Before: 48 kHz then 16 kHz chunks were reordered (the 16 kHz audio bypassed the
    resampler while it still held 48 kHz audio)."""
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    session = StreamingSession(model, language="English")
    session.feed(tone, 48000)
    session.feed(np.zeros(16000, np.float32), 16000)
    final = session.finish()
    assert final.audio_seconds == pytest.approx(2.0, abs=1e-3)
    region = session.region
    expected = resample(tone, 48000, 16000)
    assert np.abs(region[:15000] - expected[:15000]).max() < 1e-3
    assert np.all(region[16100:] == 0.0)


def test_stream_of_three_rates_lasts_what_was_fed(model):
    session = StreamingSession(model, language="English")
    session.feed(speech(1.0), 16000)
    session.feed(np.zeros(48000, np.float32), 48000)
    session.feed(np.zeros(44100, np.float32), 44100)
    assert session.finish().audio_seconds == pytest.approx(3.0, abs=1e-3)


def test_chunks_and_whole_arrays_share_the_channel_rule():
    """Before: a (channels, frames) chunk was averaged over time by streaming."""
    stereo = np.stack([speech(0.5), 0.5 * speech(0.5)])      # (2, frames)
    np.testing.assert_array_equal(chunk_samples(stereo), load_audio(stereo, 16000))
    np.testing.assert_array_equal(chunk_samples(stereo.T), load_audio(stereo.T, 16000))


def test_integer_chunks_are_scaled_mono_or_not():
    """Before: 2-D integer chunks were averaged to float first and never scaled."""
    mono = (speech(0.5) * 20000).astype(np.int16)
    stereo = np.stack([mono, mono], axis=1)
    np.testing.assert_array_equal(chunk_samples(mono), mono.astype(np.float32) / 32768)
    np.testing.assert_array_equal(chunk_samples(stereo), mono.astype(np.float32) / 32768)
    with pytest.raises(AudioError, match="1-D or \\(frames, channels\\)"):
        chunk_samples(np.zeros((2, 2, 2), np.float32))


def test_streamed_integer_pcm_is_scaled_by_its_full_scale():
    """Before: unsigned chunks were divided by 2^bits, not centred (uint8 silence, 128,
    came out at +0.5)."""
    np.testing.assert_array_equal(chunk_samples(np.array([0, 128, 255], np.uint8)), [-1.0, 0.0, 127 / 128])
    np.testing.assert_array_equal(chunk_samples(np.array([-128, 0, 64], np.int8)), [-1.0, 0.0, 0.5])
    np.testing.assert_array_equal(chunk_samples(np.array([-2**31, 2**30], np.int32)), [-1.0, 0.5])
    np.testing.assert_array_equal(chunk_samples(np.array([0, 32768, 49152], np.uint16)), [-1.0, 0.0, 0.5])


def test_integer_arrays_whole_by_peak_streamed_by_range():
    """The documented split (audio.load_audio): a whole int16 array is divided by its peak
    (the official engine's transcribe rule), streamed chunks by 32768 (its streaming rule),
    as a 16-bit file is read."""
    quiet = (speech(1.0) / np.abs(speech(1.0)).max() * 3000).astype(np.int16)   # peak 3000
    whole = load_audio(quiet, 16000)
    assert np.abs(whole).max() == 1.0
    np.testing.assert_array_equal(whole, quiet.astype(np.float32) / np.float32(3000))
    np.testing.assert_array_equal(chunk_samples(quiet), quiet.astype(np.float32) / 32768)
