"""The diarization pipeline's own logic (windows, clustering, aggregation, turns, options) on
synthetic voices, with stand-in networks (tests/support/speaker_standins.py): the real networks'
parity is tested apart."""

import numpy as np
import pytest

import mlx_qwen_asr  # noqa: F401  (binds BLAS before mlx.core is imported)
from mlx_qwen_asr.errors import OptionError
from mlx_qwen_asr.speakers import pipeline
from mlx_qwen_asr.speakers.options import DiarizeOptions
from mlx_qwen_asr.speakers.pipeline import diarize, iter_windows

from support.speaker_standins import RATE, conversation, standin_models, voice

MODELS = standin_models()


def run(audio, **options):
    return diarize(audio, sample_rate=RATE, models=MODELS, **options)


def speaker_of(turns, start, end):
    """The speaker who holds most of [start, end]."""
    held = {}
    for t in turns:
        held[t.speaker] = held.get(t.speaker, 0.0) + max(0.0, min(end, t.end) - max(start, t.start))
    return max(held, key=held.get) if held and max(held.values()) > 0 else None


def test_windows_cover_the_audio_in_steps_and_pad_only_the_last():
    audio = np.arange(37, dtype=np.float32)
    blocks = [audio[i:i + 7] for i in range(0, 37, 7)]
    windows = list(iter_windows(blocks, 10, 4))
    assert [s for s, _ in windows] == [0, 4, 8, 12, 16, 20, 24, 28]
    for start, samples in windows:
        real = audio[start:start + 10]
        assert np.array_equal(samples[:len(real)], real) and not samples[len(real):].any()
    assert list(iter_windows([audio[:3]], 10, 4))[0][0] == 0 and len(list(iter_windows([audio[:3]], 10, 4))) == 1
    assert list(iter_windows([], 10, 4)) == []


def test_silence_gives_no_speakers():
    assert run(np.zeros(12 * RATE, np.float32)) == []
    assert run(np.zeros(100, np.float32)) == []


def test_one_voice_is_one_speaker():
    turns = run(voice("A", 23.0))
    assert {t.speaker for t in turns} == {"SPEAKER_1"}
    assert turns[0].start < 0.1 and turns[-1].end > 22.9


def test_turns_follow_the_speakers_and_labels_go_by_first_appearance():
    audio, truth = conversation([("B", 4), (None, 1), ("A", 5), ("B", 3), ("C", 6), (None, 2), ("A", 4)])
    turns = run(audio)
    assert sorted({t.speaker for t in turns}) == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_3"]
    names = {}
    for start, end, name in truth:
        label = speaker_of(turns, start + 0.2, end - 0.2)
        assert names.setdefault(name, label) == label
    assert names == {"B": "SPEAKER_1", "A": "SPEAKER_2", "C": "SPEAKER_3"}
    for t in turns:   # every boundary within a frame or two of the truth
        assert min(abs(t.start - s) for s, _, _ in truth) < 0.1
        assert min(abs(t.end - e) for _, e, _ in truth) < 0.1
    assert speaker_of(turns, 19.2, 20.8) is None   # the pause


def test_more_speakers_than_a_window_holds():
    parts = [("A", 3), ("B", 3), ("C", 3), ("D", 3), ("A", 3), ("D", 3), ("B", 3), ("C", 3)]
    audio, truth = conversation(parts)
    turns = run(audio)
    assert len({t.speaker for t in turns}) == 4
    labels = {name: speaker_of(turns, s + 0.3, e - 0.3) for s, e, name in truth}
    assert len(set(labels.values())) == 4


def test_overlap_is_kept():
    a, b = voice("A", 12.0, 1), voice("B", 12.0, 2)
    audio = np.concatenate([a[:6 * RATE], np.zeros(6 * RATE, np.float32)])
    audio[4 * RATE:] += b[:8 * RATE]   # B from 4 s, both until 6 s
    turns = run(audio)
    assert len({t.speaker for t in turns}) == 2
    both = [t for t in turns if t.start < 5.0 < t.end]
    assert len(both) == 2 and {t.speaker for t in both} == {"SPEAKER_1", "SPEAKER_2"}


def test_fixed_and_bounded_counts():
    audio, _ = conversation([("A", 4), ("B", 4), ("C", 4), ("A", 4), ("B", 4)])
    assert len({t.speaker for t in run(audio, num_speakers=2)}) == 2
    assert len({t.speaker for t in run(audio, max_speakers=2)}) == 2
    assert len({t.speaker for t in run(audio, min_speakers=2, max_speakers=5)}) == 3
    one, _ = conversation([("A", 8)])
    assert len({t.speaker for t in run(one, num_speakers=1)}) == 1


def test_known_speakers_are_named():
    audio, truth = conversation([("A", 5), ("B", 5), ("A", 5)])
    turns = run(audio, speakers={"Bea": voice("B", 4.0, 9)})
    assert speaker_of(turns, 5.5, 9.5) == "Bea"
    assert speaker_of(turns, 0.5, 4.5) == "SPEAKER_1"


def test_a_reference_without_speech_is_one_clear_error():
    with pytest.raises(OptionError, match="reference clip for Ann has 0.0 s of speech"):
        run(voice("A", 5.0), speakers={"Ann": np.zeros(3 * RATE, np.float32)})
    with pytest.raises(OptionError, match="reference clip for Ann has 0.[0-9] s"):
        run(voice("A", 5.0), speakers={"Ann": voice("A", 0.5)})


@pytest.mark.parametrize("options, message", [
    ({"num_speakers": 0}, "num_speakers must be a whole number of at least 1, got 0"),
    ({"min_speakers": 3, "max_speakers": 2}, r"min_speakers \(3\) is above max_speakers \(2\)"),
    ({"num_speakers": 2, "max_speakers": 3}, "either num_speakers or min_speakers/max_speakers"),
    ({"max_speakers": 2.5}, "max_speakers must be a whole number"),
    ({"speakers": {"Ann": "/no/such/clip.wav"}}, "reference clip for Ann: /no/such/clip.wav: no such file"),
])
def test_bad_options_are_one_clear_line(options, message):
    with pytest.raises(OptionError, match=message):
        DiarizeOptions(**options)


def test_memory_per_window_is_small_and_audio_is_not_kept():
    audio, _ = conversation([("A", 20), ("B", 20), ("A", 20)])
    run_ = pipeline.Diarizer(MODELS, DiarizeOptions())
    window, step = int(pipeline.WINDOW_SECONDS * RATE), int(pipeline.STEP_SECONDS * RATE)
    for start, samples in iter_windows([audio], window, step):
        run_.add_windows([start / RATE], samples[None])
    assert len(run_.windows) == 1 + round((60 - pipeline.WINDOW_SECONDS) / pipeline.STEP_SECONDS)   # up to 50 s
    kept = sum(w.activity.nbytes for w in run_.windows) + sum(e.nbytes for e in run_.embeddings)
    assert kept < 60 * 1024
    assert {t.speaker for t in run_.turns(60.0)} == {"SPEAKER_1", "SPEAKER_2"}


def test_dictation_labels_utterances_as_they_come():
    import io

    from mlx_qwen_asr.frontends.dictation import Heard, Utterance, printer
    from mlx_qwen_asr.results import Transcription
    from mlx_qwen_asr.speakers.incremental import SpeakerTracker
    from mlx_qwen_asr.speakers.references import embed_references

    tracker = SpeakerTracker(MODELS)
    labels = [tracker.label(voice(name, 3.0, seed)) for seed, name in enumerate("ABACB")]
    assert labels == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1", "SPEAKER_3", "SPEAKER_2"]
    assert tracker.label(np.zeros(2 * RATE, np.float32)) is None
    named = SpeakerTracker(MODELS, embed_references({"Cy": voice("C", 3.0, 7)}, MODELS))
    assert [named.label(voice(n, 3.0, 8)) for n in "CA"] == ["Cy", "SPEAKER_1"]

    out = io.StringIO()
    show = printer(False, False, out=out, speakers=SpeakerTracker(MODELS))
    for index, name in enumerate("AB"):
        result = Transcription("hello there", "English", 3.0, [], "eos")
        show(Heard(Utterance(index, 0.0, 3.0, voice(name, 3.0, index)), result, 0, 0, 0, 0))
    assert out.getvalue() == "SPEAKER_1: hello there\nSPEAKER_2: hello there\n"


def _around(direction, count, spread, rng):
    """`count` unit vectors near `direction` (cosine distance about spread**2 / 2 to it)."""
    vectors = direction + spread * rng.standard_normal((count, len(direction))) / np.sqrt(len(direction))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_speaker_who_said_little_stays_a_speaker_when_far_from_the_rest():
    """Small clusters (under MIN_SPEAKER_SECONDS each) far from every large one are a voice
    of their own, joined together; before, they were folded into the large one (one speaker)."""
    from mlx_qwen_asr.speakers import clustering

    rng = np.random.default_rng(0)
    a, b = np.eye(64)[0], np.eye(64)[1]              # orthogonal: cosine distance 1
    talker = _around(a, 3, 0.2, rng)
    quiet = _around(b, 2, 1.0, rng)                  # two short prints, apart by more than the threshold
    distance = 1 - quiet[0] @ quiet[1]
    assert clustering.DISTANCE_THRESHOLD < distance < clustering.FOLD_DISTANCE
    centroids = clustering.cluster_centroids(np.vstack([talker, quiet]), np.array([3.0, 3.0, 3.0, 0.7, 0.7]))
    assert len(centroids) == 2
    assert sorted(np.argmax(centroids @ np.stack([a, b]).T, axis=1)) == [0, 1]


def test_a_small_cluster_near_a_large_one_is_folded_into_it():
    from mlx_qwen_asr.speakers import clustering

    rng = np.random.default_rng(1)
    a = np.eye(64)[0]
    talker = _around(a, 3, 0.2, rng)
    stray = (0.35 * a + np.sqrt(1 - 0.35 ** 2) * np.eye(64)[1])[None]   # cosine distance 0.65 to a
    distance = np.mean(1 - talker @ stray[0])           # average linkage's distance
    assert clustering.DISTANCE_THRESHOLD < distance < clustering.FOLD_DISTANCE, distance
    centroids = clustering.cluster_centroids(np.vstack([talker, stray]), np.array([3.0, 3.0, 3.0, 1.0]))
    assert len(centroids) == 1


def test_on_long_audio_a_cluster_with_a_sliver_of_the_speech_is_no_speaker():
    """Over 2 s of clean speech but under MIN_CLUSTER_SHARE of all of it: stray prints
    (18 speakers for an hour of 11 voices, before), folded into the nearest speaker."""
    from mlx_qwen_asr.speakers import clustering

    rng = np.random.default_rng(2)
    a, b, c = np.eye(64)[:3]
    prints = np.vstack([_around(a, 100, 0.2, rng), _around(b, 100, 0.2, rng), _around(c, 2, 0.2, rng)])
    seconds = np.full(len(prints), 2.0)                   # the stray pair: 4 s of 404 s
    assert clustering.MIN_SPEAKER_SECONDS < 4.0 < clustering.MIN_CLUSTER_SHARE * seconds.sum()
    assert len(clustering.cluster_centroids(prints, seconds)) == 2
    fewer = np.r_[0:20, 100:120, 200:202]                  # 4 s of 84 s: a speaker
    assert len(clustering.cluster_centroids(prints[fewer], seconds[fewer])) == 3
