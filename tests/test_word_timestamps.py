"""Word timestamps through the whole product: transcribe, writers (phrase cues), CLI, Jupyter."""

import json
import subprocess
import sys

import pytest
import soundfile as sf

from mlx_qwen_asr.aligner import Aligner
from mlx_qwen_asr.testing.random_checkpoint import aligner_config_dict, random_weights, write_checkpoint
from mlx_qwen_asr.writers import MAX_CUE_SECONDS, build_cues, cue_items, to_string, word_phrases, wrap

from support.audio_samples import speech


@pytest.fixture(scope="module")
def aligner_dir(tmp_path_factory):
    config = aligner_config_dict("tiny")
    return write_checkpoint(tmp_path_factory.mktemp("aligner"), config, random_weights(config, seed=1), dtype="float32")


@pytest.fixture(scope="module")
def aligner(aligner_dir):
    return Aligner.load(aligner_dir, dtype="float32")


@pytest.fixture(scope="module")
def timed(model, aligner, tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    sf.write(path, speech(25.0), 16000)
    return model.transcribe(path, language="English", segment_seconds=10, max_new_tokens=24,
                            word_timestamps=True, aligner=aligner)


def test_every_segment_gets_well_formed_word_times(timed):
    assert len(timed.segments) >= 2
    for segment in timed.segments:
        assert segment.words, segment.text
        starts = [w.start for w in segment.words]
        assert starts == sorted(starts)
        for word in segment.words:
            assert segment.start - 1e-6 <= word.start < word.end <= segment.end + 1e-6
    assert timed.words == [w for s in timed.segments for w in s.words]


def test_subtitle_cues_come_from_word_times(timed):
    items = cue_items(timed)
    times = {round(t, 6) for w in timed.words for t in (w.start, w.end)}
    for start, end, text in items:
        assert round(start, 6) in times and round(end, 6) in times
        assert end - start <= MAX_CUE_SECONDS + 1e-6 or " " not in text
    for cue in build_cues(items):
        # Lines wrap at spaces: only a single word longer than a line may exceed it.
        assert len(cue.lines) <= 2 and all(len(line) <= 42 or " " not in line for line in cue.lines)
    srt = to_string(timed, "srt")
    assert srt.count(" --> ") == len(items)


def test_a_loaded_aligner_is_kept_and_the_options_hold_its_path(aligner, aligner_dir):
    """The options hold names: a loaded Aligner given at an entry point becomes the kept one."""
    from mlx_qwen_asr.aligner import get_aligner, named_aligner
    from mlx_qwen_asr.errors import OptionError
    from mlx_qwen_asr.options import TranscribeOptions

    changes = named_aligner({"aligner": aligner, "language": "English"})
    assert changes == {"aligner": str(aligner_dir), "language": "English"}
    options = TranscribeOptions.build(word_timestamps=True, **changes)
    assert options.record()["aligner"] == str(aligner_dir)
    assert get_aligner(options.aligner, "bfloat16") is aligner   # used as loaded, not loaded again
    with pytest.raises(OptionError, match="aligner must be a hub id or a directory"):
        TranscribeOptions(aligner=aligner)
    by_name = get_aligner(f"{aligner_dir}/", "float32")   # another name: loaded, then kept
    assert by_name is not aligner and get_aligner(f"{aligner_dir}/", "float32") is by_name


def test_json_and_tsv_carry_the_words(timed):
    data = json.loads(to_string(timed, "json"))
    words = [w for s in data["segments"] for w in s["words"]]
    assert len(words) == len(timed.words) and {"word", "start", "end"} <= set(words[0]) <= {"word", "start", "end",
                                                                                            "probability"}
    tsv = to_string(timed, "tsv").splitlines()
    assert len(tsv) == 1 + len([w for w in timed.words if w.word])


def test_jupyter_view_has_a_player_and_clickable_words(timed):
    page = timed._repr_html_()
    assert "<audio" in page and "data:audio/mpeg;base64," in page
    assert page.count('<span class="q-w" data-s=') == len(timed.words)   # each plays from its start


def test_phrases_break_at_pauses_sentences_and_length():
    words = [(0.0, 0.3, "Hello"), (0.3, 0.6, "there."), (0.7, 1.0, "General"), (1.0, 1.3, "Kenobi"),
             (3.0, 3.2, "after"), (3.2, 3.5, "a"), (3.5, 3.9, "pause")]
    assert [p[2] for p in word_phrases(words)] == ["Hello there.", "General Kenobi", "after a pause"]
    many = [(i * 0.5, i * 0.5 + 0.4, "word") for i in range(40)]
    phrases = word_phrases(many)
    assert all(end - start <= MAX_CUE_SECONDS and len(wrap(text)) <= 2 for start, end, text in phrases)
    assert " ".join(p[2] for p in phrases) == " ".join(["word"] * 40)


def test_cli_timestamps_writes_word_timed_outputs(tiny_checkpoint, aligner_dir, tmp_path):
    audio = tmp_path / "in" / "clip.wav"
    audio.parent.mkdir()
    sf.write(audio, speech(6.0), 16000)
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(audio.parent), "-o", str(tmp_path / "out"),
                           "-f", "json,srt", "--timestamps", "--aligner", str(aligner_dir), "--model",
                           str(tiny_checkpoint), "--language", "English", "--max-new-tokens", "12", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "out" / "clip.json").read_text())
    assert data["segments"][0]["words"]
    assert (tmp_path / "out" / "clip.srt").read_text().count(" --> ") >= 1


def test_streamed_committed_text_gets_word_times(model, aligner):
    from mlx_qwen_asr.stream.session import StreamingSession
    from mlx_qwen_asr.word_split import split_words

    session = StreamingSession(model, language="English", max_region_seconds=16, keep_seconds=4,
                               word_timestamps=True, aligner=aligner)
    audio = speech(30.0)
    timed_updates = []
    for i in range(0, len(audio), 16000):
        update = session.feed(audio[i:i + 16000])
        if update.committed:
            timed_updates.append(update)
            assert update.words, "committed text without word times"
    final = session.finish()
    assert timed_updates and len(session.archived_words) > 0   # a region was closed with its words
    starts = [w.start for w in final.words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start < w.end <= 30.0 + 1e-6 for w in final.words)
    # The timed words spell the committed text (regions may split one long token run differently).
    assert "".join(w.word for w in final.words) == "".join(split_words(final.committed, "English"))
