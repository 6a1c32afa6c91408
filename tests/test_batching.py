"""Batched decoding: token for token what one-at-a-time decoding gives, in float32."""

import numpy as np
import pytest
import soundfile as sf

from mlx_qwen_asr.decoding import greedy_decode, greedy_decode_batch
from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.model_input import asr_prompt
from mlx_qwen_asr.transcribe import ASRModel

from audio_samples import speech


@pytest.fixture(scope="module")
def model(tiny_checkpoint_fp32):
    return ASRModel.load(tiny_checkpoint_fp32, dtype="float32")


def embeddings(model, audio):
    """[P, hidden] prompt embeddings of a clip, as the pipeline builds them."""
    return asr_prompt(model, audio)[1]


def clips():
    """Different lengths (so prompts pad differently), one reversed so contents differ."""
    return [speech(2.0), speech(5.3)[::-1].copy(), speech(3.1), speech(0.7), speech(9.0)]


def test_batch_rows_equal_single_decoding(model):
    prompts = [embeddings(model, a) for a in clips()]
    budgets = [24, 24, 10, 24, 17]
    singles = [greedy_decode(model.network, p[None], n, model.config.eos_token_ids).tokens
               for p, n in zip(prompts, budgets)]
    batched = greedy_decode_batch(model.network, prompts, budgets, model.config.eos_token_ids)
    assert [r.tokens for r in batched] == singles
    assert [r.finish_reason for r in batched] == ["length"] * 5


def test_batch_of_one_single_token_steps(model):
    """Batch > 1 single-token steps with per-row RoPE positions (the case that broke another port)
    and a batch of one both match."""
    prompt = embeddings(model, speech(4.0))
    single = greedy_decode(model.network, prompt[None], 12, model.config.eos_token_ids).tokens
    assert greedy_decode_batch(model.network, [prompt], [12], model.config.eos_token_ids)[0].tokens == single
    pair = greedy_decode_batch(model.network, [prompt, prompt[:40]], [12, 12], model.config.eos_token_ids)
    assert pair[0].tokens == single


def test_rows_stop_on_their_own_at_eos(model):
    """A row whose EOS comes first stops there while the others go on."""
    prompts = [embeddings(model, a) for a in clips()[:3]]
    reference = [greedy_decode(model.network, p[None], 16, model.config.eos_token_ids).tokens for p in prompts]
    eos = (reference[1][3],)  # pretend the 4th token of row 1 is an end-of-sequence id
    batched = greedy_decode_batch(model.network, prompts, [16] * 3, eos)
    expected = [greedy_decode(model.network, p[None], 16, eos) for p in prompts]
    assert [r.tokens for r in batched] == [e.tokens for e in expected]
    assert batched[1].finish_reason == "eos" and len(batched[1].tokens) <= 3


def test_transcribe_many_equals_transcribe_each(model, tmp_path):
    paths = []
    for i, audio in enumerate(clips()):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, audio, 16000)
        paths.append(path)
    options = dict(max_new_tokens=12, recover_loops=False, segment_seconds=4.0)
    each = [model.transcribe(p, **options) for p in paths]
    many = model.transcribe_many(paths, batch_size=3, **options)
    assert [r.tokens for r in many] == [r.tokens for r in each]
    assert [len(r.segments) for r in many] == [len(r.segments) for r in each]
    assert [(s.start, s.end) for r in many for s in r.segments] == [(s.start, s.end) for r in each for s in r.segments]


def test_one_bad_input_does_not_stop_the_others(model, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, speech(1.5), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    results = model.transcribe_many([good, bad, np.zeros(16000, np.float32)], sample_rate=None, on_error="return",
                                    max_new_tokens=4)
    assert len(results[0].tokens) == 4
    assert isinstance(results[1], AudioError)
    assert isinstance(results[2], AudioError)  # an array without its sample rate
    with pytest.raises(AudioError):
        model.transcribe_many([good, bad], max_new_tokens=4)
