"""Confidence from the decode loop: token log-probabilities equal a teacher-forced pass,
words and segments are summed from them, no_speech_prob is read at the language slot,
and the no-speech gate drops unsure text where the model said "no speech" or where a
speech-activity network hears no speech (noise, hum, room tone, tones)."""

import json
import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr import OptionError, TranscribeOptions
from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.confidence import is_no_speech, word_spans
from mlx_qwen_asr.decoding import greedy_decode
from mlx_qwen_asr.model_input import asr_prompt
from mlx_qwen_asr.notebook import _sureness
from mlx_qwen_asr.results import Segment
from mlx_qwen_asr.speech_presence import pure_tone_frames, speech_seconds
from mlx_qwen_asr.frontends.server import formats
from mlx_qwen_asr.testing.noisy_audio import noise
from mlx_qwen_asr.writers import to_string

from support.heldout import HELDOUT, rows

CLIP = HELDOUT / "short_03.flac"
NOISE = np.random.default_rng(0).normal(0, 0.1, 3 * 16000).astype(np.float32)


def teacher_forced(model, samples, language, tokens) -> np.ndarray:
    """[len(tokens) + 1, vocab] log-probabilities of a plain forward pass over prompt + tokens."""
    ids, embeddings = asr_prompt(model, samples, language=language)
    sequence = mx.concatenate([embeddings, model.network.embed_tokens(mx.array(tokens))], axis=0) if tokens \
        else embeddings
    hidden = model.network.decoder(sequence[None], model.network.make_cache())[0]
    logits = model.network.logits(hidden).astype(mx.float32)
    return np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True)), ids


@pytest.mark.parametrize("language", [None, "English"])
def test_token_logprobs_equal_a_teacher_forced_pass(trained_model, language):
    model = trained_model
    samples = load_audio(CLIP)
    segment = model.transcribe(samples, sample_rate=16000, language=language).segments[0]
    assert segment.tokens and len(segment.logprobs) == len(segment.tokens)
    # The segment's tokens are the text's; a detected language's header was generated before them.
    header = segment.generated - len(segment.tokens)
    assert header == (0 if language else 3)
    ids, embeddings = asr_prompt(model, samples, language=language)
    generated = greedy_decode(model.network, embeddings[None], segment.generated, model.config.eos_token_ids).tokens
    assert generated[header:] == segment.tokens
    forced, ids = teacher_forced(model, samples, language, generated)
    start = len(ids) - 1
    expected = [forced[start + i, t] for i, t in enumerate(generated)]
    assert np.allclose(segment.logprobs, expected[header:], atol=2e-4)
    eos = forced[start + len(generated)][list(model.config.eos_token_ids)]
    text = expected[header:] + [float(np.max(eos))]
    assert segment.avg_logprob == pytest.approx(sum(text) / len(text), abs=2e-4)
    # no speech: " None" and the EOS ids, at the position after "language"
    slot = start + 1 if language is None else len(ids) - 3
    quiet = [model.no_speech_ids[0], *model.config.eos_token_ids]
    assert segment.no_speech_prob == pytest.approx(float(np.exp(forced[slot][quiet]).sum()), rel=1e-3, abs=1e-6)


def test_scores_do_not_depend_on_the_path(trained_model):
    """Single, batched and forced decoding agree on the scores of the same tokens."""
    single = trained_model.transcribe(CLIP).segments[0]
    batched = trained_model.transcribe_many([CLIP, HELDOUT / "short_04.flac"], batch_size=2)[0].segments[0]
    forced = trained_model.transcribe(CLIP, language="English").segments[0]
    assert batched.tokens == single.tokens
    assert np.allclose(batched.logprobs, single.logprobs, atol=1e-4)
    assert np.allclose(forced.logprobs, single.logprobs, atol=1e-3)   # the text's tokens, header apart
    assert forced.no_speech_prob == pytest.approx(single.no_speech_prob, rel=1e-2)
    assert forced.avg_logprob == pytest.approx(single.avg_logprob, abs=1e-3)


def test_draft_decoding_gives_the_same_scores(trained_model):
    model = trained_model
    ids, embeddings = asr_prompt(model, load_audio(CLIP))
    eos = model.config.eos_token_ids
    plain = greedy_decode(model.network, embeddings[None], 40, eos)
    drafted = greedy_decode(model.network, embeddings[None], 40, eos, draft=plain.tokens[:4] + [7])
    assert drafted.tokens == plain.tokens
    assert np.allclose(np.array(drafted.scores), np.array(plain.scores), atol=1e-4)
    assert drafted.eos_score == pytest.approx(plain.eos_score, abs=1e-4)


def test_word_probabilities_are_their_tokens_together(trained_model):
    segment = trained_model.transcribe(HELDOUT / "medium_01.flac").segments[0]
    words = segment.word_probabilities
    assert [w.word for w in words] == segment.text.split()
    assert all(segment.text[a:b] == w.word for w in words for a, b in [w.span])
    assert all(0.0 < w.probability <= 1.0 for w in words)
    body = segment.logprobs   # the text's tokens (the language header is not in them)
    # the fixture writes each word as one token (docs/fixtures.md)
    assert len(body) == len(words)
    assert [w.probability for w in words] == pytest.approx([math.exp(lp) for lp in body])


def test_word_spans_split_cjk_ideographs():
    assert word_spans(" ship 中文ab  if.") == [(1, 5), (6, 7), (7, 8), (8, 10), (12, 15)]


def test_timed_words_carry_their_probability(trained_model, trained_aligner):
    result = trained_model.transcribe(CLIP, word_timestamps=True, aligner=trained_aligner)
    segment = result.segments[0]
    assert [w.probability for w in segment.words] == pytest.approx([w.probability for w in segment.word_probabilities])
    data = json.loads(to_string(result, "json"))
    assert data["segments"][0]["words"][0]["probability"] == pytest.approx(segment.words[0].probability, abs=1e-4)


def test_no_speech_prob_tells_noise_from_speech(trained_model):
    speech = trained_model.transcribe(CLIP).segments[0]
    noise = trained_model.transcribe(NOISE, sample_rate=16000).segments[0]
    assert speech.no_speech_prob < 0.01 < 0.9 < noise.no_speech_prob


def test_the_gate_drops_unsure_text_where_the_model_said_no_speech():
    def seg(text, no_speech, avg):
        s = Segment(0.0, 1.0, text, "English", "eos")
        s.no_speech_prob, s.avg_logprob = no_speech, avg
        return s
    assert is_no_speech(seg("hi", 0.9, -1.5), 0.6, -1.0)
    assert not is_no_speech(seg("hi", 0.9, -0.5), 0.6, -1.0)       # sure text is kept
    assert not is_no_speech(seg("hi", 0.5, -3.0), 0.6, -1.0)       # the model heard speech
    assert not is_no_speech(seg("hi", 0.9, -3.0), None, -1.0)      # gate off
    assert is_no_speech(seg("hi", 0.9, -0.1), 0.6, None)           # no-speech probability alone
    assert not is_no_speech(seg("", 0.99, -3.0), 0.6, -1.0)        # nothing to drop


def test_the_gate_in_a_transcription(trained_model):
    """Barred from "language None" by a language set, the fixture writes a word on this
    noise, unsure, where it said no speech: the default gate drops it, None keeps it."""
    hiss = noise("white", 8 * 16000, -45.0, np.random.default_rng(1))
    kept = trained_model.transcribe(hiss, sample_rate=16000, language=["en", "zh"], no_speech_threshold=None)
    dropped = trained_model.transcribe(hiss, sample_rate=16000, language=["en", "zh"])
    assert kept.text and kept.segments[0].finish_reason == "eos"
    assert kept.segments[0].no_speech_prob > 0.9 and kept.segments[0].avg_logprob < -1.0
    assert dropped.text == "" and dropped.segments[0].finish_reason == dropped.finish_reason == "no_speech"
    assert dropped.segments[0].tokens == kept.segments[0].tokens   # what it wrote is still on record


def test_the_default_gate_keeps_the_held_out_speech(trained_offline):
    for result in trained_offline.values():
        assert result.text and all(s.finish_reason != "no_speech" for s in result.segments)
        assert all(s.no_speech_prob < 0.01 for s in result.segments if s.text)


def room_tone(seconds: float, level_db: float, rng) -> np.ndarray:
    """Brown (1/f^2) noise with a faint 50 Hz hum under it, at `level_db` dBFS."""
    samples = int(seconds * 16000)
    spectrum = np.fft.rfft(rng.standard_normal(samples)) / np.maximum(np.arange(samples // 2 + 1), 1)
    x = np.fft.irfft(spectrum, samples)
    x = x / np.sqrt(np.mean(x ** 2)) + 0.1 * noise("hum", samples, 0.0, rng)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (level_db / 20)).astype(np.float32)


def sine(seconds: float, hz: float = 1000.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * 16000)) / 16000)).astype(np.float32)


NOISE_ONLY = {
    "pink": lambda rng: noise("pink", 8 * 16000, -35.0, rng),
    "hum": lambda rng: noise("hum", 8 * 16000, -20.0, rng),
    "room tone": lambda rng: room_tone(8.0, -45.0, rng),
    "1 s beep": lambda rng: sine(1.0),
    "3 s tone": lambda rng: sine(3.0),
}


@pytest.mark.parametrize("kind", NOISE_ONLY)
def test_noise_only_inputs_give_no_text(trained_model, kind):
    """The fixture is sure these are speech (no_speech_prob tiny) and writes words, unsure:
    the speech-activity network hears no speech in them, and the default gate drops them."""
    audio = NOISE_ONLY[kind](np.random.default_rng(3))
    kept = trained_model.transcribe(audio, sample_rate=16000, no_speech_threshold=None)
    assert kept.text, "the fixture writes words on this input without the gate"
    assert kept.segments[0].no_speech_prob < 0.6 and kept.segments[0].avg_logprob < -1.0
    unheard = trained_model.transcribe(audio, sample_rate=16000, min_speech_seconds=None)
    assert unheard.text == kept.text   # Whisper's gate alone keeps it: the model heard speech
    dropped = trained_model.transcribe(audio, sample_rate=16000)
    assert dropped.text == "" and [s.finish_reason for s in dropped.segments] == ["no_speech"]
    assert dropped.finish_reason == "no_speech" and dropped.segments[0].tokens   # what it wrote stays on record


def test_unsure_noisy_speech_keeps_its_text(trained_model):
    """Held-out speech under pink noise at 5 dB SNR, where the fixture's text is unsure: the
    network hears the speech, and the default gate keeps every such segment."""
    rng = np.random.default_rng(0)
    unsure = 0
    for row in [r for r in rows() if r["kind"] == "short"][:8]:
        clip = load_audio(HELDOUT / row["file"])
        level = 10 * np.log10(np.mean(clip ** 2)) - 5.0
        noisy = np.clip(clip + noise("pink", len(clip), level, rng), -1, 1).astype(np.float32)
        kept = trained_model.transcribe(noisy, sample_rate=16000, no_speech_threshold=None)
        gated = trained_model.transcribe(noisy, sample_rate=16000)
        unsure += sum(s.avg_logprob < -1.0 for s in kept.segments if s.text)
        assert gated.text == kept.text and all(s.finish_reason != "no_speech" for s in gated.segments)
    assert unsure >= 2, "some of these segments are unsure, so the network is asked"


def test_speech_seconds_hears_speech_not_noise():
    clip = load_audio(CLIP)
    assert speech_seconds(clip) > 0.6 * len(clip) / 16000
    rng = np.random.default_rng(2)
    for audio in (NOISE, noise("pink", 5 * 16000, -30.0, rng), room_tone(5.0, -40.0, rng), sine(1.0),
                  np.zeros(16000, np.float32)):
        assert speech_seconds(audio) == 0.0
    assert speech_seconds(np.zeros(0, np.float32)) == 0.0


def test_a_pure_tone_is_not_speech():
    """The network alone hears a 1 s beep as speech; its frames are pure tones, speech's are not."""
    window = np.pad(sine(1.0, 700.0), (0, 9 * 16000))
    tone = pure_tone_frames(window, 40)
    assert tone.all()
    clip = load_audio(CLIP)
    assert pure_tone_frames(clip, 100).mean() < 0.2


def test_the_gate_listens_only_to_unsure_text(monkeypatch):
    from mlx_qwen_asr import speech_presence

    def seg(avg):
        s = Segment(0.0, 1.0, "hi", "English", "eos")
        s.no_speech_prob, s.avg_logprob = 0.001, avg
        return s
    silence = np.zeros(16000, np.float32)
    assert is_no_speech(seg(-2.0), 0.6, -1.0, silence, 0.1)
    assert not is_no_speech(seg(-2.0), 0.6, -1.0, silence, None)      # not listening
    assert not is_no_speech(seg(-2.0), None, -1.0, silence, 0.1)      # gate off
    assert not is_no_speech(seg(-2.0), 0.6, -1.0, silence, 0.0)       # nothing is less than no time
    monkeypatch.setattr(speech_presence, "speech_seconds", lambda samples: pytest.fail("listened to sure text"))
    assert not is_no_speech(seg(-0.5), 0.6, -1.0, silence, 0.1)


@pytest.mark.parametrize("value", [-0.1, 1.5, "high", True])
def test_bad_no_speech_thresholds_are_refused(value):
    with pytest.raises(OptionError, match="no_speech_threshold"):
        TranscribeOptions(no_speech_threshold=value)
    with pytest.raises(OptionError, match="logprob_threshold"):
        TranscribeOptions(logprob_threshold=0.5)
    with pytest.raises(OptionError, match="min_speech_seconds"):
        TranscribeOptions(min_speech_seconds=-1.0)


def test_json_and_verbose_json_carry_confidence(trained_model):
    result = trained_model.transcribe(CLIP)
    segment = result.segments[0]
    data = json.loads(to_string(result, "json"))["segments"][0]
    assert data["avg_logprob"] == pytest.approx(segment.avg_logprob, abs=1e-4)
    assert data["no_speech_prob"] == pytest.approx(segment.no_speech_prob, abs=1e-4)
    assert len(data["logprobs"]) == len(data["tokens"])
    assert [w["word"] for w in data["word_probabilities"]] == segment.text.split()
    verbose = formats.verbose_json_body(result, False)["segments"][0]
    assert set(verbose) >= {"avg_logprob", "no_speech_prob", "tokens", "temperature"}
    logprobs = formats.logprobs_body(result, trained_model.tokenizer)
    assert "".join(item["token"] for item in logprobs).strip() == result.text
    assert all(bytes(item["bytes"]).decode("utf-8") == item["token"] for item in logprobs)


def test_notebook_draws_less_sure_words_lighter(trained_model):
    result = trained_model.transcribe(CLIP)
    html = result._repr_html_()
    unsure = [w for w in result.segments[0].word_probabilities if w.probability < 0.95]
    assert unsure, "the fixture is unsure of some word of this clip"
    for word in unsure:
        assert f"<span{_sureness(word.probability)}>{word.word}</span>" in html
    assert _sureness(0.99) == "" and _sureness(None) == ""
    assert "opacity:0.35" in _sureness(0.0)


def test_command_line_no_speech_threshold(capsys, trained_checkpoint, tmp_path):
    import soundfile as sf

    from mlx_qwen_asr.frontends import cli

    path = tmp_path / "hiss.wav"
    sf.write(path, noise("white", 8 * 16000, -45.0, np.random.default_rng(1)), 16000)
    base = [str(path), "--model", str(trained_checkpoint), "--language", "en,zh"]
    assert cli.main(base) == 0 and capsys.readouterr().out.strip() == ""
    assert cli.main(base + ["--no-speech-threshold", "none"]) == 0 and capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        cli.main(base + ["--no-speech-threshold", "2"])
    assert "probability from 0 to 1" in capsys.readouterr().err


def test_command_line_min_speech_seconds(capsys, trained_checkpoint, tmp_path):
    import soundfile as sf

    from mlx_qwen_asr.frontends import cli

    path = tmp_path / "hum.wav"
    sf.write(path, noise("hum", 8 * 16000, -20.0, np.random.default_rng(3)), 16000)
    base = [str(path), "--model", str(trained_checkpoint)]
    assert cli.main(base) == 0 and capsys.readouterr().out.strip() == ""
    assert cli.main(base + ["--min-speech-seconds", "none"]) == 0 and capsys.readouterr().out.strip()
    assert cli.main(base + ["--no-speech-threshold", "none"]) == 0 and capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        cli.main(base + ["--min-speech-seconds", "-1"])
    assert "seconds (a number >= 0)" in capsys.readouterr().err


def test_scores_when_nothing_counts_as_no_speech():
    """A benchmark decodes with no EOS ids at all: the scores still come, no speech at -inf."""
    from mlx_qwen_asr.decoding import quiet_array, token_scores

    logits = mx.array([[0.0, 1.0, 2.0]])
    (logprob, quiet), = token_scores(logits, mx.array([2]), quiet_array((), ())).tolist()
    assert logprob == pytest.approx(2.0 - math.log(1 + math.e + math.e ** 2)) and quiet == -math.inf
