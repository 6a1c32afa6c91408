"""Log-mel features against the official extractor (transformers WhisperFeatureExtractor,
run out of process in the official engine's environment, where torch is installed).

Both sides compute the STFT in float32, and the official one is itself not exact: on JFK
its torch/MKL STFT is 4.4e-5 (max, in the final (x+4)/4 units) away from the same recipe
in float64, ours 1.9e-5. So features agree to float32 FFT rounding, a few 1e-5 at worst
in the quietest cells, 1e-7 on average; the bounds below are set from those measurements.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.audio.mel import MIN_SAMPLES, log_mel_spectrogram, mel_filters, mel_frames
from mlx_qwen_asr.testing import official

from support.audio_samples import SHARED_AUDIO, speech

PREPROCESSOR_CONFIG = SHARED_AUDIO.parent / "configs" / "preprocessor_config.json"

# Measured max |ours - official| on real speech: 3.5e-5 (JFK), 3.9e-5 over all shared clips.
MAX_DIFF = 1e-4
# Measured mean |ours - official|: 1.2e-7 (JFK), < 3e-7 over all shared clips.
MEAN_DIFF = 1e-6


@pytest.fixture(scope="module")
def extractor(official_engine):
    # The official environment has torch, so the extractor takes its torch path, as in the
    # official pipeline.
    kwargs = dict(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                  chunk_length=30, padding_value=0.0)
    if PREPROCESSOR_CONFIG.is_file():  # the real Qwen3-ASR preprocessor_config.json agrees
        config = json.loads(PREPROCESSOR_CONFIG.read_text())
        assert {k: config[k] for k in kwargs if k in config} == {k: kwargs[k] for k in kwargs if k in config}
        assert config["dither"] == 0.0
    return official.FeatureExtractor(**kwargs)


def official_features(fe, audio: np.ndarray) -> np.ndarray:
    """processing_qwen3_asr.Qwen3ASRProcessor.__call__: its audio kwargs, batch of one."""
    features, mask = fe(audio)
    assert mask.shape == (features.shape[1],) and mask.all()  # no padding to 30 s
    return features


def float64_recipe(audio: np.ndarray, n_mels: int = 128) -> np.ndarray:
    """The same recipe in float64 numpy: what both float32 implementations approximate."""
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    padded = np.pad(audio.astype(np.float64), 200, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 400)[::160][: len(audio) // 160]
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    log_spec = np.log10(np.maximum(mel_filters(n_mels).T @ power.T, 1e-10))
    return (np.maximum(log_spec, log_spec.max() - 8.0) + 4.0) / 4.0


def test_filterbank_equals_transformers(extractor):
    ours = mel_filters(128)
    assert ours.shape == extractor.mel_filters.shape == (201, 128)
    np.testing.assert_allclose(ours, extractor.mel_filters, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_samples", [
    MIN_SAMPLES,      # shortest the official torch path accepts: one frame
    8000,             # 0.5 s, the pipeline's minimum
    8077,             # odd length, not a multiple of 160
    16000,            # 1 s
    133920,           # 8.37 s
    133987,           # 8.37 s + 67 samples
    176000,           # 11 s (all of JFK)
])
def test_matches_official_extractor(extractor, num_samples):
    audio = speech(num_samples / 16000)
    expected = official_features(extractor, audio)
    actual = np.array(log_mel_spectrogram(audio))
    assert actual.dtype == np.float32
    assert actual.shape == expected.shape == (128, mel_frames(num_samples)) == (128, num_samples // 160)
    diff = np.abs(actual - expected)
    assert diff.max() < MAX_DIFF, diff.max()
    assert diff.mean() < MEAN_DIFF, diff.mean()


def test_close_to_float64_recipe():
    """Our float32 error vs exact arithmetic is below the official extractor's own (4.4e-5 on JFK)."""
    audio = speech(11.0)
    actual = np.array(log_mel_spectrogram(audio))
    assert np.abs(actual - float64_recipe(audio)).max() < 4e-5  # measured 1.9e-5 on JFK


def test_silence_and_input_types():
    silence = np.array(log_mel_spectrogram(np.zeros(8000, np.float32)))
    # log10(1e-10) = -10 everywhere, so (x + 4) / 4 = -1.5, as the official extractor gives.
    np.testing.assert_array_equal(silence, np.full((128, 50), -1.5, np.float32))

    audio = speech(1.3)
    reference = np.array(log_mel_spectrogram(audio))
    np.testing.assert_array_equal(np.array(log_mel_spectrogram(mx.array(audio))), reference)
    np.testing.assert_array_equal(np.array(log_mel_spectrogram(audio.astype(np.float64))), reference)


def test_mel_frames():
    assert [mel_frames(n) for n in (0, 159, 160, 161, 8000, 176000, 176159)] == [0, 0, 1, 1, 50, 1100, 1100]


def test_too_short_or_wrong_shape_is_a_clear_error():
    with pytest.raises(AudioError, match=r"too short.*200 samples.*at least 201"):
        log_mel_spectrogram(np.zeros(200, np.float32))
    with pytest.raises(AudioError, match=r"1-D audio"):
        log_mel_spectrogram(np.zeros((2, 8000), np.float32))


def test_other_mel_sizes():
    audio = speech(2.0)
    assert log_mel_spectrogram(audio, n_mels=80).shape == (80, 200)
    np.testing.assert_allclose(np.array(log_mel_spectrogram(audio, n_mels=80)), float64_recipe(audio, 80),
                               rtol=0, atol=4e-5)
