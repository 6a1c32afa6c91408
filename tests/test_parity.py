"""Stage-by-stage numerical parity with the official implementation (float32, tiny random weights).

The reference is PyPI `qwen-asr` (installed by the test extra) with its encoder's 8 s window
mask restored (see mlx_qwen_asr/official.py).
"""

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr import official
from mlx_qwen_asr.decoding import greedy_decode
from mlx_qwen_asr.encoder import audio_token_count
from mlx_qwen_asr.mel import log_mel_spectrogram
from mlx_qwen_asr.transcribe import ASRModel

from audio_samples import speech


@pytest.fixture(scope="module")
def ours(tiny_checkpoint_fp32):
    return ASRModel.load(tiny_checkpoint_fp32, dtype="float32")


@pytest.fixture(scope="module")
def reference(tiny_checkpoint_fp32):
    return official.load_official(tiny_checkpoint_fp32, dtype="float32")


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def our_prefill_inputs(model, audio, context="", language=None):
    mel = log_mel_spectrogram(audio, model.config.audio.num_mel_bins)
    audio_embeddings = model.network.encode_audio(mel)
    ids = model.prompt_ids(audio_token_count(mel.shape[1]), context, language)
    return ids, model.network.embed_prompt(ids, audio_embeddings)


@pytest.mark.parametrize("seconds", [0.5, 2.29, 11.0, 17.3])
def test_encoder_matches_official(ours, reference, seconds):
    audio = speech(seconds)
    mel = official.features(reference, audio)
    expected = official.encoder_output(reference, mel)
    actual = np.array(ours.network.encode_audio(mx.array(mel)))
    assert actual.shape == expected.shape == (audio_token_count(mel.shape[1]), ours.config.audio.output_dim)
    assert np.max(np.abs(actual - expected)) < 1e-4 * np.max(np.abs(expected))


def test_encoder_windows_matter_beyond_8s(ours, reference, tiny_checkpoint_fp32):
    """Sanity check of the reference itself: without the window mask the 11 s output differs."""
    audio = speech(11.0)
    mel = official.features(reference, audio)
    unmasked = official.load_official(tiny_checkpoint_fp32, dtype="float32", window_mask=False)
    windowed = official.encoder_output(reference, mel)
    full = official.encoder_output(unmasked, mel)
    assert np.max(np.abs(windowed - full)) > 1e-3
    assert np.max(np.abs(windowed[:104] - full[:104])) > 1e-3


@pytest.mark.parametrize("context,language", [("", None), ("Names: Qwen, MLX.", None), ("", "English")])
def test_prompt_ids_match_official(ours, reference, context, language):
    audio = speech(3.0)
    inputs = official.processor_inputs(reference, audio, context, language)
    ids, _ = our_prefill_inputs(ours, audio, context, language)
    assert ids == inputs["input_ids"][0].tolist()


def test_prefill_logits_match_official(ours, reference):
    audio = speech(11.0)
    inputs = official.processor_inputs(reference, audio)
    expected = official.logits_for(reference, inputs)
    ids, embeddings = our_prefill_inputs(ours, audio)
    actual = np.array(ours.network(embeddings, ours.network.make_cache(), last_only=False)[0])
    assert actual.shape == expected.shape
    assert relative_error(actual, expected) < 1e-4


def test_teacher_forced_decode_steps_match_official(ours, reference):
    """32 decode steps through our KV cache, fed the official greedy tokens."""
    audio = speech(11.0)
    inputs = official.processor_inputs(reference, audio)
    forced = official.generate(reference, inputs, max_new_tokens=32)
    forced = (forced + [151645] * 32)[:32]  # keep 32 steps even if the reference stopped early
    expected = official.logits_for(reference, inputs, continuation=forced)
    prompt_len = inputs["input_ids"].shape[1]

    _, embeddings = our_prefill_inputs(ours, audio)
    cache = ours.network.make_cache()
    step_logits = [ours.network(embeddings, cache)[0, -1]]
    for token in forced[:-1]:
        step_embeddings = ours.network.embed_tokens(mx.array([[token]]))
        step_logits.append(ours.network(step_embeddings, cache)[0, -1])
    actual = np.array(mx.stack(step_logits))
    reference_steps = expected[prompt_len - 1: prompt_len - 1 + 32]
    for step in range(32):
        assert relative_error(actual[step], reference_steps[step]) < 1e-4, f"step {step}"


@pytest.mark.parametrize("seconds,language", [(11.0, None), (2.29, "English")])
def test_greedy_tokens_match_official_generate(ours, reference, seconds, language):
    audio = speech(seconds)
    inputs = official.processor_inputs(reference, audio, language=language)
    expected = official.generate(reference, inputs, max_new_tokens=32)
    _, embeddings = our_prefill_inputs(ours, audio, language=language)
    result = greedy_decode(ours.network, embeddings, 32, ours.config.eos_token_ids, guard=None)
    assert result.tokens == expected
    assert len(set(expected)) > 3, "degenerate reference output: the parity check would be weak"
