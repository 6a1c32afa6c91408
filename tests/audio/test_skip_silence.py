"""--skip-silence: speech spans found by vad.py are all that is transcribed, no word is lost,
and every time stays on the input's clock."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from support.heldout import HELDOUT, rows, word_times

from mlx_qwen_asr.frontends import cli
from mlx_qwen_asr.testing.noisy_audio import with_gaps
from mlx_qwen_asr.audio.vad import SpeechMap, speech_spans

FILES = [r["file"] for r in rows() if r["kind"] == "short"][:6]
GAPS = [3.0, 6.0, 4.0, 8.0, 5.0, 7.0]


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    """Six held-out sentences with 3-8 s of silence and faint noise (-65 dBFS; the tiny fixture model invents words on louder noise the detector keeps as padding) before each."""
    clips = [sf.read(HELDOUT / f, dtype="float32")[0] for f in FILES]
    audio, starts = with_gaps(clips, GAPS, noise_db=-65.0)
    path = tmp_path_factory.mktemp("gapped") / "gapped.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path, clips, starts


def test_speech_map_round_trip():
    spans = [(16000, 48000), (80000, 96000)]
    speech = SpeechMap(spans)
    audio = np.arange(100000, dtype=np.float32)
    joined = speech.join(audio)
    assert len(joined) == 48000 and joined[0] == 16000 and joined[32000] == 80000
    assert speech.to_input(0.0) == 1.0 and speech.to_input(2.0) == 5.0          # a start at the junction: later span
    assert speech.to_input(2.0, end=True) == 3.0 and speech.to_input(2.5) == 5.5  # an end there: earlier span


def test_no_word_lost_and_times_on_the_input_clock(trained_model, gapped):
    path, clips, starts = gapped
    spans = speech_spans(sf.read(path, dtype="float32")[0])
    kept = sum(e - s for s, e in spans) / 16000
    assert kept < sum(len(c) for c in clips) / 16000 + 2 * len(clips)   # the gaps are (nearly all) gone
    alone = " ".join(trained_model.transcribe(c, sample_rate=16000).text for c in clips)
    skipped = trained_model.transcribe(path, skip_silence=True, word_timestamps=False)
    assert skipped.text.split() == alone.split()
    assert abs(skipped.duration - (starts[-1] + len(clips[-1]) / 16000)) < 1e-3
    first, last = skipped.segments[0], skipped.segments[-1]
    assert starts[0] - 0.5 <= first.start <= starts[0] + 0.5
    assert last.end <= skipped.duration + 1e-6 and last.end >= starts[-1]
    batched = trained_model.transcribe_many([str(path)], skip_silence=True)[0]
    assert batched.tokens == skipped.tokens and [s.start for s in batched.segments] == [s.start for s in skipped.segments]


def test_word_times_map_back(trained_model, trained_aligner, gapped):
    path, clips, starts = gapped
    result = trained_model.transcribe(path, skip_silence=True, word_timestamps=True, aligner=str(trained_aligner))
    ends = [s + len(c) / 16000 for s, c in zip(starts, clips)]
    for word in result.words:
        # Every word inside one of the sentences (with the detector's 0.3 s padding), none in a gap.
        assert any(s - 0.35 <= word.start and word.end <= e + 0.35 for s, e in zip(starts, ends)), word
    # ... and in its own sentence, where it was said: a word the aligner let run over a
    # removed gap stays on the side that holds most of it (it used to go to the earlier
    # one, seconds before it was spoken).
    spoken = [(w, start + a) for f, start in zip(FILES, starts) for w, a, _ in word_times()[f]]
    for word in result.words:
        said = [at for w, at in spoken if w == word.word.lower()]
        if said:   # (words the fixture got wrong have no reference time)
            assert min(abs(word.start - at) for at in said) < 1.0, word


def test_a_word_over_a_junction_goes_to_the_span_holding_most_of_it():
    speech = SpeechMap([(16000, 48000), (80000, 96000)])   # joined 0-2 s is 1-3 s, 2-3 s is 5-6 s
    assert speech.word_to_input(1.6, 2.5) == (5.0, 5.5)
    assert speech.word_to_input(1.5, 2.2) == (2.5, 3.0)
    assert speech.word_to_input(0.5, 1.0) == (1.5, 2.0) and speech.word_to_input(2.1, 2.4) == (5.1, 5.4)


def test_cli_skip_silence(capsys, trained_checkpoint, gapped):
    path, _, _ = gapped
    assert cli.main([str(path), "--model", str(trained_checkpoint), "--skip-silence"]) == 0
    assert capsys.readouterr().out.strip()
    assert cli.main([str(path), "--stream", "--skip-silence"]) == 2
    assert "--skip-silence has no effect in streaming" in capsys.readouterr().err
