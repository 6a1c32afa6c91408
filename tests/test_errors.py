"""Bad input gives one clear error (an AudioError / ModelLoadError / LanguageError), never a deep traceback."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

import mlx_qwen_asr
from mlx_qwen_asr import AudioError, LanguageError, ModelLoadError
from mlx_qwen_asr.transcribe import ASRModel

from support.audio_samples import speech


def test_missing_file(model, tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        model.transcribe(tmp_path / "nope.wav")


def test_not_audio(model, tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio at all\n" * 20)
    with pytest.raises(AudioError, match="notes.wav"):
        model.transcribe(path)


def test_empty_file(model, tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        model.transcribe(path)


def test_zero_samples(model, tmp_path):
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        model.transcribe(path)
    with pytest.raises(AudioError, match="no audio samples"):
        model.transcribe(np.zeros(0, np.float32), sample_rate=16000)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_samples(model, bad):
    audio = speech(1.0)
    audio[100] = bad
    with pytest.raises(AudioError, match="NaN or infinite"):
        model.transcribe(audio, sample_rate=16000)


def test_array_needs_sample_rate(model):
    with pytest.raises(AudioError, match="sample rate"):
        model.transcribe(speech(1.0))


def test_unknown_language_lists_supported(model):
    with pytest.raises(LanguageError, match="Klingon.*English"):
        model.transcribe(speech(1.0), sample_rate=16000, language="Klingon")


def test_model_directory_missing(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ASRModel.load(tmp_path / "no-such-model")


def copy_of(checkpoint, tmp_path):
    """A copy of the checkpoint to break."""
    broken = tmp_path / "model"
    shutil.copytree(checkpoint, broken)
    return broken


def test_model_directory_without_weights(tiny_checkpoint, tmp_path):
    broken = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        ASRModel.load(broken)


def test_model_directory_without_config(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    (broken / "config.json").unlink()
    with pytest.raises(ModelLoadError, match="config.json"):
        ASRModel.load(broken)


def test_broken_config_json(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        ASRModel.load(broken)


def test_config_of_another_model(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    with pytest.raises(ModelLoadError, match="not a Qwen3-ASR config"):
        ASRModel.load(broken)


def test_config_that_does_not_fit_the_weights(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["thinker_config"]["text_config"]["num_hidden_layers"] += 1
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="missing"):
        ASRModel.load(broken)


def test_missing_tokenizer_files(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    (broken / "vocab.json").unlink()
    with pytest.raises(ModelLoadError, match="vocab.json"):
        ASRModel.load(broken)


def test_corrupt_weights(tiny_checkpoint, tmp_path):
    broken = copy_of(tiny_checkpoint, tmp_path)
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelLoadError, match="cannot read weights"):
        ASRModel.load(broken)


def test_public_transcribe_reports_bad_input_too(tiny_checkpoint, tmp_path):
    with pytest.raises(AudioError):
        mlx_qwen_asr.transcribe(tmp_path / "missing.flac", model=tiny_checkpoint)
