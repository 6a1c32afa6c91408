"""Language sets: the model chooses each segment's language among a given set only.

A set of one is forcing that language (the same tokens); a set lets the model pick the
language header it rates highest among the set's names, then decoding goes on as usual.
"""

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr import LanguageError, TranscribeOptions
from mlx_qwen_asr.languages import forced_language, language_set, normalize_languages
from mlx_qwen_asr.model_input import asr_prompt
from mlx_qwen_asr.frontends.server import formats
from mlx_qwen_asr.stream.session import StreamingSession
from mlx_qwen_asr.audio.load import load_audio

from support.heldout import HELDOUT, rows

CLIPS = [HELDOUT / r["file"] for r in rows() if r["kind"] == "short"][:4] + [HELDOUT / "medium_01.flac"]


@pytest.mark.parametrize("given, expected", [
    ("en,zh", ("English", "Chinese")),
    (["en", "zh"], ("English", "Chinese")),
    (("Chinese", "yue", "english"), ("Chinese", "Cantonese", "English")),
    (["en", "English", "eng"], "English"),          # a set of one is that language, forced
    ("en,", "English"),
    (" en , zh ", ("English", "Chinese")),
    ([], None),
    (None, None),
    ("de", "German"),
])
def test_language_option_takes_sets(given, expected):
    assert TranscribeOptions(language=given).language == expected
    assert normalize_languages(given) == expected


@pytest.mark.parametrize("given", [["en", "klingon"], "en,xx", [1, 2], 3.0])
def test_bad_language_sets_are_refused(given):
    with pytest.raises(LanguageError):
        TranscribeOptions(language=given)


def test_forced_and_set_views():
    assert forced_language("English") == "English" and language_set("English") == ()
    assert forced_language(("English", "Chinese")) is None and language_set(("English", "Chinese")) == ("English", "Chinese")
    assert forced_language(None) is None and language_set(None) == ()


def test_server_language_field_takes_a_comma_list():
    assert formats.language_name("en,zh") == ["English", "Chinese"]
    assert formats.language_name("en") == "English"
    assert TranscribeOptions(language=formats.language_name("en, yue")).language == ("English", "Cantonese")


@pytest.mark.parametrize("checkpoint", ["trained", "random"])
def test_a_set_of_one_gives_the_forced_tokens(checkpoint, trained_model, tiny_checkpoint_fp32):
    from mlx_qwen_asr import ASRModel

    model = trained_model if checkpoint == "trained" else ASRModel.load(tiny_checkpoint_fp32, dtype="float32")
    for language in ("English", "Chinese"):
        forced = [model.transcribe(clip, language=language, max_new_tokens=None if checkpoint == "trained" else 12)
                  for clip in CLIPS[:3]]
        as_set = model.transcribe_many(CLIPS[:3], language=[language],
                                       max_new_tokens=None if checkpoint == "trained" else 12)
        for a, b in zip(forced, as_set):
            assert a.tokens == b.tokens and a.text == b.text and a.language == b.language
            assert a.language == (language if a.text else "")


def test_a_set_with_the_detected_language_keeps_the_detected_transcript(trained_model, trained_offline):
    for clip in CLIPS:
        detected = trained_offline[clip.name]
        assert detected.language == "English"
        chosen = trained_model.transcribe(clip, language=["zh", "en", "de"])
        assert chosen.language == "English"
        assert chosen.text == detected.text and chosen.tokens == detected.tokens


def test_the_model_chooses_within_the_set_by_its_own_scores(trained_model):
    """Without English the fixture must write another language; the one chosen is the one
    whose name the model rates highest at the language slot (an independent forward pass)."""
    model = trained_model
    samples = load_audio(CLIPS[0])
    ids, embeddings = asr_prompt(model, samples)
    language_token = model.tokenizer.encode("language")
    hidden = model.network.decoder(mx.concatenate([embeddings[None], model.network.embed_tokens(
        mx.array(language_token))[None]], axis=1), model.network.make_cache())
    slot = model.network.logits(hidden[0, -1:, :])[0]
    for names in (["Chinese", "German"], ["French", "Japanese", "Korean"]):
        first = [model.header_tokens(name)[1] for name in names]
        expected = names[int(np.argmax(np.array(slot)[first]))]
        result = model.transcribe(CLIPS[0], language=names)
        assert result.language == expected
        assert result.raw.startswith(f"language {expected}<asr_text>")
        segment = result.segments[0]   # its tokens are the text's: the chosen header came before them
        assert segment.generated - len(segment.tokens) == len(model.header_tokens(expected))


def test_no_speech_is_masked_in_a_set(trained_model):
    """On noise the fixture writes "language None"; with a set it may not."""
    noise = np.random.default_rng(1).normal(0, 0.1, 3 * 16000).astype(np.float32)
    assert trained_model.transcribe(noise, sample_rate=16000).raw.startswith("language None")
    result = trained_model.transcribe(noise, sample_rate=16000, language=["en", "zh"], no_speech_threshold=None)
    assert result.segments[0].language in ("English", "Chinese")


def test_batched_sets_equal_single_decoding(trained_model):
    names = ["Chinese", "German"]
    singles = [trained_model.transcribe(clip, language=names) for clip in CLIPS]
    batched = trained_model.transcribe_many(CLIPS, language=names, batch_size=4)
    assert [r.tokens for r in batched] == [r.tokens for r in singles]
    mixed = trained_model.transcribe_many(CLIPS[:2], language="en,zh", batch_size=2)
    assert [r.language for r in mixed] == ["English", "English"]


def test_a_tiny_budget_keeps_the_header_within_it(trained_model):
    result = trained_model.transcribe(CLIPS[0], language=["zh", "en"], max_new_tokens=2)
    assert len(result.tokens) == 2 and result.finish_reason == "length"


def test_streaming_honours_a_set(trained_model):
    clip = CLIPS[-1]
    audio = load_audio(clip)
    finals = {}
    for language in (None, ["en", "zh"], ["zh", "de"]):
        session = StreamingSession(trained_model, language=language)
        for i in range(0, len(audio), 8000):
            session.feed(audio[i:i + 8000], 16000)
        finals[str(language)] = session.finish()
    assert finals["['en', 'zh']"].text == finals["None"].text and finals["['en', 'zh']"].language == "English"
    assert finals["['zh', 'de']"].language in ("Chinese", "German")


def test_command_line_takes_a_language_set(capsys, trained_checkpoint, trained_offline):
    from mlx_qwen_asr.frontends import cli

    clip = CLIPS[0]
    code = cli.main([str(clip), "--model", str(trained_checkpoint), "--language", "en,zh", "--verbose"])
    out, err = capsys.readouterr()
    assert code == 0 and out.strip() == trained_offline[clip.name].text
    assert "language English" in err
    code = cli.main([str(clip), "--model", str(trained_checkpoint), "--language", "en,klingon"])
    out, err = capsys.readouterr()
    assert code == 2 and err.startswith("error:") and "klingon" in err and err.count("\n") == 1


def test_dictation_honours_a_set(trained_model):
    from mlx_qwen_asr.frontends.dictation import SimulatedClock, dictate, paced_blocks
    from mlx_qwen_asr.testing.noisy_audio import with_gaps

    audio, _ = with_gaps([load_audio(clip) for clip in CLIPS[:2]], [1.0, 1.5])
    clock = SimulatedClock()
    heard = dictate(trained_model, TranscribeOptions(language=["zh", "de"]), paced_blocks(audio, clock), clock=clock)
    assert heard and all(h.result.language in ("Chinese", "German", "") for h in heard)
    assert any(h.result.language for h in heard)
    alone = [trained_model.transcribe(h.utterance.audio, sample_rate=16000, language=["zh", "de"]) for h in heard]
    assert [h.result.tokens for h in heard] == [r.tokens for r in alone]


def test_a_tiny_budget_alone_and_batched(trained_model):
    from mlx_qwen_asr.decoding import greedy_decode

    ids, embeddings = asr_prompt(trained_model, load_audio(CLIPS[0]))
    choices = trained_model.header_choices(("Chinese", "English"))
    for budget in (1, 2, 3, 4):
        result = greedy_decode(trained_model.network, embeddings[None], budget, trained_model.config.eos_token_ids,
                               header_choices=choices)
        assert len(result.tokens) == len(result.scores) == budget and result.finish_reason == "length"
        assert result.tokens[:3] == trained_model.header_tokens("English")[:budget]


def test_one_language_where_a_set_makes_no_sense(trained_aligner):
    from mlx_qwen_asr import align_transcription
    from mlx_qwen_asr.languages import normalize_language

    with pytest.raises(LanguageError, match="not a set"):
        normalize_language(("English", "Chinese"))
    with pytest.raises(LanguageError, match="not a set"):
        align_transcription(CLIPS[0], "ship opens if", ["en", "zh"], aligner=trained_aligner)
