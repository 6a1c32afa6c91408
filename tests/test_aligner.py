"""Word timestamps: Qwen3-ForcedAligner in MLX against the official `Qwen3ForcedAligner`.

The reference is the official aligner (PyPI `qwen-asr`, out of process in its own
environment) on a tiny random-weight aligner checkpoint in the Hugging Face layout,
float32, with its encoder's 8 s window mask restored (mlx_qwen_asr/testing/official.py).
Random weights give arbitrary, mostly non-monotonic times, which exercises the official
repair (`fix_timestamp`) hard.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlx_qwen_asr import aligner as aligner_module, word_split
from mlx_qwen_asr.aligner import (Aligner, WordTiming, fix_timestamps, tidy_spans)
from mlx_qwen_asr.errors import LanguageError, ModelLoadError
from mlx_qwen_asr.testing import official
from mlx_qwen_asr.testing.random_checkpoint import aligner_config_dict, random_weights, write_checkpoint
from mlx_qwen_asr.word_split import WordSplitError, locate_units, split_words

from support.audio_samples import speech

SENTENCE = ("And so, my fellow Americans: ask not what your country can do for you - "
            "ask what you can do for your country! It's 3.14, 你好world.")

SPLIT_CASES = [
    ("English", "Hello, world! It's 3.14 -- don't stop."),
    ("English", "emoji \U0001F600 and full\u3000width spaces, tabs\tand\nnewlines"),
    ("English", "  ...  "),
    ("Chinese", "今天天气很好，我们去公园吧。Qwen3-ASR很好用！"),
    ("Cantonese", "我哋今日去飲茶，好唔好？"),
    ("German", "Grüße aus München – schön, oder?"),
    ("French", "L'été dernier, j'ai visité Paris ; c'était génial !"),
    ("Spanish", "¿Cómo estás? ¡Muy bien!"),
    ("Russian", "Привет, как дела? Всё хорошо."),
    ("Arabic", "مرحبا، كيف حالك؟"),
    ("Hindi", "नमस्ते, आप कैसे हैं?"),
    ("Thai", "สวัสดีครับ วันนี้อากาศดี"),
    ("Vietnamese", "Xin chào, tôi là người Việt Nam."),
    ("Japanese", "今日はいい天気ですね。音声認識のテストです、Qwenさん。"),
    ("Korean", "안녕하세요, 오늘 날씨가 좋네요. 한국어 음성 인식 테스트입니다."),
]


# ---------------------------------------------------------------------------------------
# Fixtures

@pytest.fixture(scope="module", autouse=True)
def korean_word_list(official_engine):
    """Our Korean splitter reads the official word list; qwen-asr lives in the official env."""
    import os

    from mlx_qwen_asr.testing import official_env

    if word_split.KOREAN_DICT_ENV not in os.environ:
        site = official_env.site_packages(official_env.ensure_env())
        os.environ[word_split.KOREAN_DICT_ENV] = f"{site}/qwen_asr/inference/assets/{word_split.KOREAN_DICT_NAME}"
        word_split._korean_tokenizer.cache_clear()


@pytest.fixture(scope="module")
def aligner_dir(tmp_path_factory):
    config = aligner_config_dict("tiny")
    return write_checkpoint(tmp_path_factory.mktemp("aligner-fp32"), config, random_weights(config, seed=0),
                            dtype="float32")


@pytest.fixture(scope="module")
def ours(aligner_dir):
    return Aligner.load(aligner_dir, dtype="float32")


@pytest.fixture(scope="module")
def reference(official_engine, aligner_dir):
    """The official Qwen3ForcedAligner, built as its from_pretrained does (with the loading info)."""
    return official.load_official_aligner(aligner_dir, dtype="float32", by_parts=True)


# ---------------------------------------------------------------------------------------
# Checkpoint and word splitting

def test_official_loads_the_random_aligner_exactly(reference, ours):
    facts = reference.facts
    assert not any(facts["info"].values()), facts["info"]
    assert facts["param_dtypes"] == ["float32"]
    assert tuple(facts["lm_head_shape"]) == (5000, 64)
    assert not facts["lm_head_tied"]
    assert facts["timestamp_token_id"] == ours.config.timestamp_token_id == 151705
    assert facts["timestamp_segment_time"] == ours.config.timestamp_segment_time == 80.0
    assert ours.config.classify_num == 5000 and ours.config.network.text.vocab_size == 152064


@pytest.fixture(scope="module")
def official_splits(official_engine):
    """(language, text) -> the official aligner's word split, for every SPLIT_CASES entry."""
    return dict(zip(SPLIT_CASES, official.split_words([(text, language) for language, text in SPLIT_CASES])))


@pytest.mark.parametrize("language,text", SPLIT_CASES)
def test_word_split_matches_official(official_splits, language, text):
    expected = official_splits[(language, text)]
    assert split_words(text, language) == expected
    if language not in ("Japanese", "Korean"):
        assert split_words(text, None) == expected  # no language: the space/CJK splitter


@pytest.mark.parametrize("language,text", SPLIT_CASES)
def test_units_are_located_in_the_text(language, text):
    units = split_words(text, language)
    spans = locate_units(text, units)
    assert all(span is not None for span in spans)
    previous_end = 0
    for unit, (begin, end) in zip(units, spans):
        assert begin >= previous_end and text[begin] == unit[0] and text[end - 1] == unit[-1]
        rest = iter(text[begin:end])
        assert all(ch in rest for ch in unit)  # the unit is a subsequence of its span
        previous_end = end


def test_missing_japanese_and_korean_splitters_say_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nagisa", None)
    with pytest.raises(WordSplitError, match="timestamps-ja-ko"):
        split_words("今日は", "Japanese")
    monkeypatch.setenv("MLX_QWEN_ASR_KOREAN_DICT", "/nonexistent/korean.dict")
    word_split._korean_tokenizer.cache_clear()
    with pytest.raises(WordSplitError, match="MLX_QWEN_ASR_KOREAN_DICT"):
        split_words("안녕하세요", "Korean")
    word_split._korean_tokenizer.cache_clear()


# ---------------------------------------------------------------------------------------
# Parity with the official aligner

PARITY_CASES = [
    (3.0, SENTENCE, "English"),
    (11.0, SENTENCE + " " + SENTENCE, "English"),       # two encoder windows
    (2.29, "今天天气很好，我们去公园吧。Qwen3-ASR很好用！", "Chinese"),
    (0.3, "Hi there.", "English"),
    (6.0, "今日はいい天気ですね。音声認識のテストです。", "Japanese"),
]


@pytest.mark.parametrize("seconds,text,language", PARITY_CASES)
def test_timestamps_match_official(ours, reference, seconds, text, language):
    audio = speech(seconds)
    expected = reference.align(audio, text, language)
    got = ours.align_samples(audio, text, language, official=True)
    assert [w.word for w in got] == [item.text for item in expected]
    diff_ms = max(abs(w.start - e.start_time) + abs(w.end - e.end_time) for w, e in zip(got, expected)) * 1000
    assert diff_ms == 0.0

    ids, ref_logits = reference.timestamp_logits(audio, text, language)
    words = split_words(text, language)
    assert ours.prompt_ids(words, ids.count(ours.config.network.audio_token_id)) == ids
    logits = np.array(ours.timestamp_logits(audio, words))
    assert np.max(np.abs(logits - ref_logits)) < 1e-4 * np.max(np.abs(ref_logits))
    assert len(set(np.argmax(ref_logits, -1).tolist())) > 1, "degenerate reference: the check would be weak"


def test_chunked_prefill_equals_one_pass(ours, monkeypatch):
    audio = speech(4.0)
    words = split_words(SENTENCE)
    whole = np.array(ours.timestamp_logits(audio, words))
    monkeypatch.setattr(ours, "prefill_chunk", 17)
    chunked = np.array(ours.timestamp_logits(audio, words))
    assert np.max(np.abs(whole - chunked)) < 1e-4 * np.max(np.abs(whole))


def test_fix_timestamps_matches_official_repair(official_engine):
    rng = np.random.default_rng(0)
    trials = []
    for trial in range(400):
        n = int(rng.integers(1, 40))
        if trial % 3 == 0:     # mostly rising with outliers, like a trained aligner's
            values = np.sort(rng.integers(0, 200, n)) * 80
            outliers = rng.random(n) < 0.2
            values[outliers] = rng.integers(0, 5000, outliers.sum()) * 80
        else:                  # few distinct values: many ties
            values = rng.integers(0, 1 + trial % 7 * 10, n) * 80
        trials.append(values.astype(np.float32))
    for values, expected in zip(trials, official.fix_timestamps(trials)):
        assert fix_timestamps(values) == expected, values.tolist()
    assert fix_timestamps(np.zeros(0, np.float32)) == []


# ---------------------------------------------------------------------------------------
# Guarantees of the default output

def check_timings(timings: list[WordTiming], duration: float, words: list[str]) -> None:
    assert [t.word for t in timings] == words
    bounds = [x for t in timings for x in (t.start, t.end)]
    assert bounds == sorted(bounds), "times not monotonic or words overlap"
    assert bounds[0] >= 0 and bounds[-1] <= duration + 1e-9
    assert all(t.end > t.start for t in timings), "zero-length word"


def test_random_inputs_give_ordered_positive_spans_inside_the_audio(ours):
    rng = np.random.default_rng(1)
    vocabulary = ["the", "quick", "brown", "fox", "it's", "3.5", "你", "好", "Qwen", "naïve", "!!", "—"]
    for trial in range(12):
        seconds = float(rng.choice([0.004, 0.02, 0.3, 1.0, 2.7, 6.0, 9.5]))
        samples = int(seconds * 16000)
        audio = speech(seconds)[:samples] if trial % 2 else (rng.standard_normal(samples) * 0.1).astype(np.float32)
        text = " ".join(rng.choice(vocabulary, int(rng.integers(1, 60))))
        timings = ours.align_samples(audio, text, "English")
        check_timings(timings, samples / 16000, split_words(text))


def test_long_text_on_short_audio(ours):
    text = " ".join(f"word{i}" for i in range(400))
    timings = ours.align_samples(speech(0.5), text, "English")
    check_timings(timings, 0.5, split_words(text))
    assert min(t.duration for t in timings) >= 0.5 / 400 - 1e-6


def test_empty_or_punctuation_only_text_gives_no_words(ours):
    assert ours.align_samples(speech(1.0), "", "English") == []
    assert ours.align_samples(speech(1.0), " ?! -- ... ", "English") == []


def test_align_takes_files_and_arrays_and_checks_the_language(ours, tmp_path):
    import soundfile as sf

    audio = speech(2.0)
    sf.write(tmp_path / "clip.wav", audio, 16000, subtype="FLOAT")
    from_file = ours.align(tmp_path / "clip.wav", "ask not what your country", "english")
    from_array = aligner_module.align(audio, "ask not what your country", "English", aligner=ours, sample_rate=16000)
    assert [t.word for t in from_file] == ["ask", "not", "what", "your", "country"]
    assert from_file == from_array
    assert from_file[1].span == (4, 7)
    with pytest.raises(LanguageError):
        ours.align(audio, "x", "Klingon", sample_rate=16000)


def test_tidy_spans():
    valid = np.array([[0.1, 0.3], [0.3, 0.5], [0.9, 1.2]])
    assert np.array_equal(tidy_spans(valid, 2.0), valid)
    # A zero-length word between two others takes time from both, 80 ms in total.
    spans = tidy_spans(np.array([[1.0, 1.2], [1.2, 1.2], [1.2, 1.5]]), 2.0)
    assert np.allclose(spans, [[1.0, 1.16], [1.16, 1.24], [1.24, 1.5]])
    # Beyond the audio: pulled inside, in order, each word at least 80 ms.
    spans = tidy_spans(np.array([[0.5, 0.6], [303.8, 303.8], [303.8, 303.8]]), 3.0)
    assert np.allclose(spans, [[0.5, 0.6], [2.84, 2.92], [2.92, 3.0]])
    rng = np.random.default_rng(2)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        duration = float(rng.uniform(0.01, 20))
        raw = rng.choice([0.0, 1.0, 5.0, 30.0], 2 * n) * rng.random(2 * n)
        raw = (np.sort(raw) if rng.random() < 0.5 else raw).reshape(n, 2)
        spans = tidy_spans(raw, duration, 0.08)
        flat = spans.reshape(-1)
        assert np.all(np.diff(flat) >= 0) and flat[0] >= 0 and flat[-1] <= duration
        assert np.all(spans[:, 1] - spans[:, 0] >= min(0.08, duration / n) - 2e-6)


def test_long_audio_goes_through_windows(ours, monkeypatch):
    """Past MAX_ALIGN_SECONDS the audio is aligned in windows (scaled down here: 10 s
    windows on 40 s of audio) and the result keeps every guarantee."""
    monkeypatch.setattr(aligner_module, "MAX_ALIGN_SECONDS", 10.0)
    monkeypatch.setattr(aligner_module, "WINDOW_SEARCH_SECONDS", 1.0)
    monkeypatch.setattr(aligner_module, "WINDOW_GUARD_SECONDS", 2.0)
    calls = []
    original = Aligner._window_spans

    def spy(self, samples, words):
        calls.append((len(samples), len(words)))
        return original(self, samples, words)

    monkeypatch.setattr(Aligner, "_window_spans", spy)
    text = " ".join([SENTENCE] * 2)
    timings = ours.align_samples(speech(40.0), text, "English")
    check_timings(timings, 40.0, split_words(text))
    assert len(calls) >= 4 and all(n <= 10 * 16000 for n, _ in calls)


def test_an_asr_checkpoint_is_not_an_aligner(tiny_checkpoint):
    with pytest.raises(ModelLoadError, match="not a Qwen3-ForcedAligner"):
        Aligner.load(tiny_checkpoint, dtype="float32")
