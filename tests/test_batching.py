"""Batched decoding: token for token what one-at-a-time decoding gives, in float32."""

import numpy as np
import pytest
import soundfile as sf

from mlx_qwen_asr.decoding import greedy_decode, greedy_decode_batch
from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.model_input import asr_prompt

from support.audio_samples import speech


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


def test_long_file_segments_batched_equal_one_by_one(trained_model):
    """A single long file: its segments decoded (and encoded) in batches give the text and
    tokens of decoding them one at a time (trained fixture, held-out 39 s clip, 8 s segments)."""
    from support.heldout import HELDOUT

    path = HELDOUT / "long_01.flac"
    one_by_one = trained_model.transcribe(path, segment_seconds=8.0, batch_size=1)
    batched = trained_model.transcribe(path, segment_seconds=8.0, batch_size=3)
    assert len(one_by_one.segments) >= 4
    assert batched.text == one_by_one.text and batched.text.strip()
    assert [s.tokens for s in batched.segments] == [s.tokens for s in one_by_one.segments]
    assert [(s.start, s.end) for s in batched.segments] == [(s.start, s.end) for s in one_by_one.segments]


def test_encoder_batch_equals_each_clip_alone(trained_model):
    """encode_batch lays several clips out in windows of their own: each output is that clip's
    own encoding (float rounding apart), for clips under, at and over the 8 s window and
    one of a single chunk (encoded alone)."""
    import mlx.core as mx

    from support.heldout import HELDOUT
    from mlx_qwen_asr.audio.load import load_audio
    from mlx_qwen_asr.model_input import clip_mel

    audio = load_audio(HELDOUT / "long_01.flac")
    clips = [audio[:7 * 16000], audio[7 * 16000:19 * 16000], audio[:8000], audio[20 * 16000:28 * 16000 + 160]]
    mels = [clip_mel(c, trained_model.config.audio) for c in clips]
    tower = trained_model.network.audio_tower
    for mel, out in zip(mels, tower.encode_batch(mels)):
        alone = tower(mel)
        assert out.shape == alone.shape
        assert float(mx.abs(out - alone).max()) < 1e-5 * float(mx.abs(alone).max())


def test_batch_size_must_be_positive(model):
    with pytest.raises(ValueError, match="batch_size"):
        model.transcribe(speech(1.0), sample_rate=16000, batch_size=0)


def test_rows_of_one_batch_keep_their_own_options(trained_model):
    """decode_jobs with options per row (the server batches requests that differ): each row
    is that clip decoded alone with its options - a forced language, a context, a budget,
    no loop guard - and a silent row is skipped with its own language."""
    import numpy as np

    from support.heldout import HELDOUT
    from mlx_qwen_asr.audio.load import load_audio
    from mlx_qwen_asr.segments import PieceJob, decode_jobs, decode_piece
    from mlx_qwen_asr.options import TranscribeOptions

    names = ["short_01.flac", "short_02.flac", "medium_01.flac", "short_03.flac"]
    clips = [load_audio(HELDOUT / n) for n in names] + [np.zeros(16000, dtype=np.float32)]
    options = [TranscribeOptions(language="English"), TranscribeOptions(context="a list of names"),
               TranscribeOptions(max_new_tokens=3), TranscribeOptions(repetition_guard=False),
               TranscribeOptions(language="German")]
    jobs = [PieceJob(0, i, clip, 1.5 * i, {}) for i, clip in enumerate(clips)]
    batched = decode_jobs(trained_model, jobs, options)
    alone = [decode_piece(trained_model, clip, 1.5 * i, o) for i, (clip, o) in enumerate(zip(clips, options))]
    fields = lambda s: (s.start, s.end, s.text, s.language, s.finish_reason, s.tokens)   # noqa: E731
    assert [fields(s) for s in batched] == [fields(s) for s in alone]
    assert batched[2].finish_reason == "length" and batched[2].generated == 3   # the budget counts the header
    assert batched[4].finish_reason == "silence" and batched[4].language == "German"
    assert batched[0].text and batched[1].text and batched[3].text   # row 2: 3 tokens hold only the prefix


def test_an_input_s_segments_come_out_in_piece_order():
    """InputSegments (batch.py and the server's worker keep an input's pieces in it): pieces
    finished out of order are handed on only once all before them are, the input is complete
    only once fully read with every piece finished, and its result joins them in order."""
    from mlx_qwen_asr.results import Segment
    from mlx_qwen_asr.segments import InputSegments

    state = InputSegments(4.0, {"decode": 2.0})
    first, second = state.add_piece(), state.add_piece()
    a, b, c = (Segment(0.0, 2.0, "one", "English", "eos", generated=3),
               Segment(2.0, 3.0, "two", "English", "eos", generated=2),
               Segment(3.0, 4.0, "three", "English", "eos", generated=1))
    state.put(second, [b, c])
    assert state.newly_in_order() == [] and state.in_order() == []
    state.put(first, [a])
    assert not state.complete   # more pieces may still be cut
    assert state.newly_in_order() == [[a], [b, c]] and state.newly_in_order() == []
    assert state.in_order() == [a, b, c]
    state.read = True
    assert state.complete
    result = state.transcription()
    assert result.text == "one two three" and result.segments == [a, b, c] and result.duration == 4.0
    assert result.timings["decode_tokens_per_s"] == 3.0
