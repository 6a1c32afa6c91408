"""The public API end to end: equal to the official pipeline's transcription, plus its own contract."""

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

import mlx_qwen_asr
from mlx_qwen_asr.testing import official
from mlx_qwen_asr.audio.mel import log_mel_spectrogram
from mlx_qwen_asr.decoding import RepetitionGuard, token_budget
from mlx_qwen_asr.options import TranscribeOptions
from mlx_qwen_asr.segments import to_segment
from mlx_qwen_asr.transcribe import ASRModel, Transcription

from support.audio_samples import speech
from support.looping import always_token

MAX_TOKENS = 60


@pytest.fixture(scope="module")
def ours(tiny_checkpoint_fp32):
    return ASRModel.load(tiny_checkpoint_fp32, dtype="float32")


@pytest.fixture(scope="module")
def reference(official_engine, tiny_checkpoint_fp32):
    return official.load_official(tiny_checkpoint_fp32, dtype="float32", max_new_tokens=MAX_TOKENS)


@pytest.mark.parametrize("seconds,language,context", [
    (0.3, None, ""),          # shorter than 0.5 s: fed as it is, like the official pipeline
    (3.0, None, "Speaker: JFK"),
    (11.0, None, ""),         # two encoder windows
    (4.0, "English", ""),     # forced language
])
def test_transcription_equals_official_pipeline(ours, reference, seconds, language, context):
    audio = speech(seconds)
    expected = reference.transcribe(audio, language=language, context=context)[0]
    # The official pipeline drops no text: neither does ours here (the random model's text is
    # unsure, and the first 0.3 s hold no speech the no-speech gate would hear).
    result = ours.transcribe(audio, sample_rate=16000, language=language, context=context,
                             max_new_tokens=MAX_TOKENS, repetition_guard=False, no_speech_threshold=None)
    assert (result.language, result.text) == (expected.language, expected.text)


def test_markup_in_the_decoded_text_is_not_in_the_segment_text(ours):
    from mlx_qwen_asr.decoding import DecodeResult
    from mlx_qwen_asr.stream.text import StreamText

    raw = "language English<asr_text>one two thirdlanguage English<asr_text>third<non_speech> four"
    tokens = ours.tokenizer.encode(raw)
    segment = to_segment(ours, DecodeResult(tokens, "eos", 0.0, 0.0), 0.0, 1.0, TranscribeOptions())
    assert (segment.language, segment.text) == ("English", "one two third third four")
    assert segment.raw == raw   # the raw output as decoded
    # The tokens are the text's: from after the first header on (markup mid-text kept).
    assert segment.tokens == tokens[tokens.index(ours.tokenizer.token_to_id("<asr_text>")) + 1:]
    assert segment.generated == len(tokens)
    forced = to_segment(ours, DecodeResult(tokens, "eos", 0.0, 0.0), 0.0, 1.0, TranscribeOptions(language="English"))
    assert forced.tokens == tokens   # a forced language's header is in the prompt, not the output
    assert StreamText(ours.tokenizer, None).body(tokens) == "one two third third four"


def test_a_loop_ended_by_eos_finishes_as_repetition(ours):
    from mlx_qwen_asr.decoding import DecodeResult

    speech_tokens = ours.tokenizer.encode("language English<asr_text>no, no, no. we sat on the mat.")
    looped = ours.tokenizer.encode("language English<asr_text>we sat" + " on the mat" * 5 + ".")
    finish = lambda tokens, check: to_segment(ours, DecodeResult(tokens, "eos", 0, 0), 0.0, 1.0,
                                              TranscribeOptions(repetition_guard=check)).finish_reason
    assert finish(looped, True) == "repetition"
    assert finish(looped, False) == "eos"   # plain greedy decoding (repetition_guard=False)
    assert finish(speech_tokens, True) == "eos"


def test_result_fields_and_timings(ours, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, speech(2.0), 16000)
    result = mlx_qwen_asr.transcribe(path, model=ours, max_new_tokens=5)
    assert isinstance(result, Transcription)
    assert result.duration == pytest.approx(2.0)
    assert len(result.tokens) == 5 and result.finish_reason == "length"
    assert all(isinstance(t, int) for t in result.tokens)
    assert {"mel", "encoder", "prefill", "decode", "decode_tokens_per_s"} <= set(result.timings)
    assert result.timings["decode_tokens_per_s"] > 0
    assert str(result) == result.text


def test_default_budget_scales_with_duration(ours):
    assert token_budget(60.0) > token_budget(10.0) > token_budget(1.0) > 0
    result = ours.transcribe(speech(1.0), sample_rate=16000)
    assert len(result.tokens) <= token_budget(1.0)


def test_load_model_reuses_a_loaded_model(tiny_checkpoint):
    first = mlx_qwen_asr.load_model(tiny_checkpoint, dtype="float32")
    assert mlx_qwen_asr.load_model(tiny_checkpoint, dtype="float32") is first
    assert mlx_qwen_asr.load_model(tiny_checkpoint, dtype="bfloat16") is not first


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_runs_and_stays_close(ours, tiny_checkpoint_fp32, dtype):
    half = ASRModel.load(tiny_checkpoint_fp32, dtype=dtype)
    audio = speech(3.0)
    mel = log_mel_spectrogram(audio)
    full = np.array(ours.network.encode_audio(mel))
    low = np.array(half.network.encode_audio(mel).astype(mx.float32))
    assert np.max(np.abs(low - full)) < 0.05 * np.max(np.abs(full))
    assert half.transcribe(audio, sample_rate=16000, max_new_tokens=3).finish_reason == "length"


def test_pure_silence_gives_no_text(ours):
    result = ours.transcribe(np.zeros(16000 * 3, np.float32), sample_rate=16000)
    assert result.text == "" and result.tokens == [] and result.finish_reason == "silence"


def test_a_few_samples_are_padded_not_an_error(ours):
    blip = 0.5 * np.sin(np.arange(80) * 0.3).astype(np.float32)  # 5 ms
    result = ours.transcribe(blip, sample_rate=16000, max_new_tokens=2)
    assert result.duration == pytest.approx(0.005) and len(result.tokens) == 2


def test_repetition_guard_spots_loops_but_not_speech():
    guard = RepetitionGuard()
    assert guard.is_looping([5] * 16)
    assert not guard.is_looping([5] * 15)
    phrase = [11, 12, 13, 14, 15, 16]
    assert guard.is_looping([1, 2, 3] + phrase * 8)
    assert not guard.is_looping([1, 2, 3] + phrase * 7)
    assert not guard.is_looping([7, 8, 7, 8, 7, 8, 9, 10, 11])  # "no, no, no" is speech


def test_repetition_guard_stops_a_looping_model(ours, monkeypatch):
    """A looping model: the guard cuts it short and says so; without it, decoding is plain
    greedy and runs on to the budget."""
    always_token(ours, monkeypatch)
    audio = speech(4.0)
    guarded = ours.transcribe(audio, sample_rate=16000, language="English", max_new_tokens=400)
    plain = ours.transcribe(audio, sample_rate=16000, language="English", max_new_tokens=400,
                            repetition_guard=False)
    assert guarded.finish_reason == "repetition" and len(guarded.tokens) < 400
    assert plain.tokens[:len(guarded.tokens)] == guarded.tokens
    assert plain.finish_reason != "repetition"
