"""Speakers in every output: words and segments labelled from turns (speakers/attach.py),
txt/srt/vtt/tsv/json/rttm, the options and the CLI's one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mlx_qwen_asr.aligner import WordTiming
from mlx_qwen_asr.errors import OptionError
from mlx_qwen_asr.options import TranscribeOptions
from mlx_qwen_asr.results import Segment, Transcription
from mlx_qwen_asr.speakers.attach import add_speakers, speaker_at
from mlx_qwen_asr.speakers.options import DiarizeOptions
from mlx_qwen_asr.speakers.pipeline import SpeakerTurn
from mlx_qwen_asr.writers import parse_formats, to_string

TURNS = [SpeakerTurn(0.0, 2.1, "SPEAKER_1"), SpeakerTurn(2.3, 4.0, "SPEAKER_2"), SpeakerTurn(4.2, 6.0, "SPEAKER_1")]


def timed_segment(text, start, times):
    words, at = [], 0
    for word, (s, e) in zip(text.replace(",", "").replace(".", "").replace("?", "").split(), times):
        begin = text.index(word, at)
        words.append(WordTiming(word, s, e, (begin, begin + len(word))))
        at = begin + len(word)
    return Segment(start, times[-1][1], text, "English", "eos", [1, 2, 3], raw="language English<asr_text>" + text,
                   words=words)


def transcription():
    segment = timed_segment("Hello there, how are you? Fine thanks. Good.", 0.0,
                            [(0.1, 0.5), (0.6, 1.0), (1.1, 1.4), (1.5, 1.7), (1.8, 2.0),
                             (2.4, 2.9), (3.0, 3.8), (4.3, 4.9)])
    return Transcription.from_segments([segment], 6.0, {})


def test_words_take_the_speaker_of_their_turn_and_segments_split_there():
    result = add_speakers(transcription(), TURNS)
    assert [(s.speaker, s.text) for s in result.segments] == [
        ("SPEAKER_1", "Hello there, how are you?"), ("SPEAKER_2", "Fine thanks."), ("SPEAKER_1", "Good.")]
    assert [s.start for s in result.segments] == [0.0, 2.4, 4.3]
    assert result.segments[1].end == 4.3 and result.segments[2].end == 4.9
    assert result.text == "Hello there, how are you? Fine thanks. Good."
    assert result.tokens == [1, 2, 3] and result.speakers == ["SPEAKER_1", "SPEAKER_2"]
    second = result.segments[1]
    assert [second.text[a:b] for a, b in (w.span for w in second.words)] == ["Fine", "thanks"]
    assert all(w.speaker == s.speaker for s in result.segments for w in s.words)


def test_a_word_between_turns_goes_to_the_nearest_and_no_turns_no_speaker():
    assert speaker_at(TURNS, 2.12, 2.2) == "SPEAKER_1" and speaker_at(TURNS, 2.22, 2.29) == "SPEAKER_2"
    assert speaker_at([], 1.0, 2.0) is None
    plain = Segment(0.0, 6.0, "no words", "English", "eos")
    result = add_speakers(Transcription.from_segments([plain], 6.0, {}), TURNS)
    assert result.segments[0].speaker == "SPEAKER_1"


def test_outputs_carry_the_speakers():
    result = add_speakers(transcription(), TURNS)
    assert to_string(result, "txt") == "SPEAKER_1: Hello there, how are you?\nSPEAKER_2: Fine thanks.\nSPEAKER_1: Good.\n"
    vtt = to_string(result, "vtt")
    assert "<v SPEAKER_1>Hello there, how are you?" in vtt and "<v SPEAKER_2>Fine thanks." in vtt
    assert vtt.count("-->") == 3
    srt = to_string(result, "srt")
    assert "00:00:02,400 --> 00:00:03,800\n[SPEAKER_2] Fine thanks." in srt
    tsv = to_string(result, "tsv").splitlines()
    assert tsv[0] == "start\tend\tspeaker\ttext" and tsv[6] == "2400\t2900\tSPEAKER_2\tFine"
    data = json.loads(to_string(result, "json"))
    assert [s["speaker"] for s in data["segments"]] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
    assert data["segments"][1]["words"][0] == {"word": "Fine", "start": 2.4, "end": 2.9, "speaker": "SPEAKER_2"}
    assert data["speakers"] == ["SPEAKER_1", "SPEAKER_2"] and len(data["speaker_turns"]) == 3
    rttm = to_string(result, "rttm", input="talks/my talk.wav").splitlines()
    assert rttm[1] == "SPEAKER my_talk 1 2.300 1.700 <NA> <NA> SPEAKER_2 <NA> <NA>"


def test_undiarized_outputs_have_no_speakers_and_all_means_transcripts():
    result = transcription()
    assert result.speakers is None
    assert "speaker" not in to_string(result, "json") and to_string(result, "txt").startswith("Hello")
    with pytest.raises(ValueError, match="diarization"):
        to_string(result, "rttm")
    assert "rttm" not in parse_formats("all") and parse_formats("rttm,txt") == ("txt", "rttm")


def test_silence_diarized_has_no_speakers():
    result = add_speakers(Transcription.from_segments([Segment(0.0, 3.0, "", "", "silence")], 3.0, {}), [])
    assert result.speakers == [] and to_string(result, "txt") == "" and to_string(result, "rttm") == ""


def test_diarize_option_times_words_and_is_recorded_only_when_on():
    options = TranscribeOptions(diarize=True)
    assert options.word_timestamps and options.diarize == DiarizeOptions()
    assert options.record()["diarize"] == {"num_speakers": None, "min_speakers": None, "max_speakers": None,
                                           "speakers": None}
    assert "diarize" not in TranscribeOptions().record() and TranscribeOptions(diarize=False).diarize is None
    with pytest.raises(OptionError, match="num_speakers must be a whole number of at least 1, got 0"):
        TranscribeOptions(diarize={"num_speakers": 0})


@pytest.mark.parametrize("args, message", [
    (["a.wav", "--diarize", "--num-speakers", "0"], "--num-speakers: must be at least 1 speaker, got 0"),
    (["a.wav", "--diarize", "--min-speakers", "3", "--max-speakers", "2"], "min_speakers (3) is above max_speakers (2)"),
    (["a.wav", "--num-speakers", "2"], "--num-speakers says how to tell speakers apart: use it with --diarize"),
    (["a.wav", "-o", "out", "-f", "rttm"], "-f rttm writes speaker turns: use it with --diarize"),
    (["a.wav", "--diarize", "--stream"], "--diarize works on files, folders, standard input and dictation"),
    (["--mic", "--vad", "--diarize", "--num-speakers", "2"], "dictation finds speakers as they come"),
    (["a.wav", "--diarize", "--speaker", "Ann"], "--speaker takes NAME=CLIP"),
    (["a.wav", "--diarize", "--speaker", "Ann=/no/clip.wav"], "reference clip for Ann: /no/clip.wav: no such file"),
])
def test_cli_bad_speaker_flags_are_one_line(tmp_path, args, message):
    (tmp_path / "a.wav").write_bytes(b"")
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def wav_data_url(samples, rate=16000):
    import base64
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_server_diarized_json_request_fields():
    from starlette.datastructures import FormData

    from mlx_qwen_asr.frontends.server.diarized import DiarizeRequestError, diarize_options

    clip = (0.1 * np.sin(np.arange(48000) / 48000 * 2 * np.pi * 300)).astype(np.float32)
    options = diarize_options(FormData([("known_speaker_names[]", "Ann"),
                                        ("known_speaker_references[]", wav_data_url(clip, 48000))]))
    assert list(options.speakers) == ["Ann"] and len(options.speakers["Ann"]) == 16000
    for fields, message, param in [
        ([("known_speaker_names[]", "Ann")], "must pair up", "known_speaker_references"),
        ([("known_speaker_names[]", "Ann"), ("known_speaker_references[]", "https://x/a.wav")], "data URL",
         "known_speaker_references"),
        ([("known_speaker_names[]", "Ann"), ("known_speaker_references[]", "data:audio/wav;base64,%%")],
         "not valid base64", "known_speaker_references"),
        ([("known_speaker_names[]", "Ann"), ("known_speaker_references[]", "data:audio/wav;base64,AAAA")],
         "not audio", "known_speaker_references"),
    ]:
        with pytest.raises(DiarizeRequestError, match=message) as caught:
            diarize_options(FormData(fields))
        assert caught.value.param == param


def test_server_diarized_json_body():
    from mlx_qwen_asr.frontends.server.diarized import diarized_json_body

    body = diarized_json_body(add_speakers(transcription(), TURNS))
    assert body["task"] == "transcribe" and body["text"] == "Hello there, how are you? Fine thanks. Good."
    assert [(s["speaker"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        ("SPEAKER_1", 0.0, 2.4, "Hello there, how are you?"), ("SPEAKER_2", 2.4, 4.3, "Fine thanks."),
        ("SPEAKER_1", 4.3, 4.9, "Good.")]
    assert body["segments"][0]["type"] == "transcript.text.segment" and body["segments"][2]["id"] == "seg_2"


def test_without_scipy_diarize_is_a_setup_error_naming_the_install(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    code = ("import sys; sys.modules['scipy'] = None\n"
            "from mlx_qwen_asr.frontends.cli import main\n"
            "sys.exit(main(['a.wav', '--diarize']))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "error: speaker diarization needs the optional scipy package: " \
                          "pip install 'mlx-qwen-asr[diarize]'\n"


def test_notebook_view_colours_each_speaker():
    from mlx_qwen_asr.notebook import SPEAKER_COLOURS

    result = add_speakers(transcription(), TURNS)
    page = result._repr_html_()
    first, second = SPEAKER_COLOURS[:2]
    assert page.count(f"background:{first}") == 2 and page.count(f"background:{second}") == 1
    assert f'<b style="color:{second}">SPEAKER_2</b>' in page
    assert page.count(f"border-bottom:2px solid {first}") == 6   # SPEAKER_1's six words
    assert "SPEAKER" not in transcription()._repr_html_()
