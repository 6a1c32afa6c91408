"""End-to-end transcription with the tiny trained fixture model (tests/support/heldout.py).

Random-weight parity tests prove the arithmetic matches the official code; these prove
that a model which really transcribes does so through our engine: the held-out set (never-
trained sentences, unseen voices, clips over one 8 s encoder window and 20-40 s clips with
pauses) comes out with WER < 10 %, and the official engine on the same checkpoint writes
the same transcripts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.heldout import GROUPS, HELDOUT, TRAINED_MODEL, group_wers, rows, word_times


MAX_WER = 0.10
ROWS = rows()
# Long enough that no held-out clip is cut: the official engine transcribes a 40 s clip
# in one piece, so parity compares like with like.
WHOLE_CLIP_SECONDS = 60.0


def test_fixture_is_small_and_in_the_real_layout(trained_checkpoint):
    assert TRAINED_MODEL.stat().st_size <= 50_000_000
    config = json.loads((trained_checkpoint / "config.json").read_text())
    text = config["thinker_config"]["text_config"]
    audio = config["thinker_config"]["audio_config"]
    assert text["vocab_size"] == 151936
    assert (audio["n_window"], audio["n_window_infer"]) == (50, 800)  # 1 s chunks, 8 s windows
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "chat_template.json", "preprocessor_config.json",
                 "generation_config.json"):
        assert (trained_checkpoint / name).is_file(), name


def test_heldout_set_covers_windows_and_long_clips():
    kinds = [r["kind"] for r in ROWS]
    assert {k: kinds.count(k) for k in GROUPS} == {"short": 20, "medium": 5, "long": 3}
    durations = {k: [float(r["duration"]) for r in ROWS if r["kind"] == k] for k in GROUPS}
    assert sum(d > 8.0 for d in durations["medium"]) >= 4      # more than one encoder window
    assert all(20.0 <= d <= 40.0 for d in durations["long"])
    times = word_times()
    for r in ROWS:
        assert (HELDOUT / r["file"]).is_file()
        words = times[r["file"]]
        assert [w for w, _, _ in words] == r["text"].split()
        starts = np.array([a for _, a, _ in words])
        ends = np.array([b for _, _, b in words])
        assert np.all(ends > starts) and np.all(starts[1:] >= ends[:-1])
        assert ends[-1] <= float(r["duration"])


@pytest.fixture(scope="module")
def ours_whole(trained_model):
    return {r["file"]: trained_model.transcribe(HELDOUT / r["file"], segment_seconds=WHOLE_CLIP_SECONDS)
            for r in ROWS}


@pytest.fixture(scope="module")
def official_results(official_engine, trained_checkpoint):
    from mlx_qwen_asr.testing.official import load_official

    asr = load_official(trained_checkpoint, dtype="float32", window_mask=True)
    return {r["file"]: asr.transcribe(HELDOUT / r["file"])[0] for r in ROWS}


def test_our_engine_transcribes_heldout(trained_offline, ours_whole):
    """Whole clips: every group under 10 % WER. Default settings (clips over 30 s cut at a
    pause): under 10 % over the set. (Cut into ~19 s halves, the 37-39 s clips lose a few
    points: the fixture repeats a stretch when a word pair recurs, and where it happens
    depends on the cut; measured 12 % on the long group.)"""
    whole = group_wers({f: res.text for f, res in ours_whole.items()})
    print("mlx_qwen_asr WER, whole clips:", whole)
    assert all(v < MAX_WER for v in whole.values()), whole
    default = group_wers({f: res.text for f, res in trained_offline.items()})
    print("mlx_qwen_asr WER, default segmentation:", default)
    assert default["all"] < MAX_WER, default
    assert {res.language for res in ours_whole.values()} == {"English"}


def test_official_engine_transcribes_heldout(official_results):
    wers = group_wers({f: res.text for f, res in official_results.items()})
    print("official engine (window mask) WER:", wers)
    assert all(v < MAX_WER for v in wers.values()), wers


def test_our_transcripts_equal_official(ours_whole, official_results):
    differ = {f: (ours_whole[f].text, official_results[f].text) for f in ours_whole
              if (ours_whole[f].text, ours_whole[f].language)
              != (official_results[f].text, official_results[f].language)}
    assert not differ, differ


def test_silence_and_noise_give_no_text(trained_model):
    rng = np.random.default_rng(0)
    for audio in (np.zeros(3 * 16000, np.float32),
                  (0.01 * rng.standard_normal(4 * 16000)).astype(np.float32)):
        assert trained_model.transcribe(audio, sample_rate=16000).text == ""
