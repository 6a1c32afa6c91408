"""One options value for every front end: checked once, with one clear line per bad value."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from support.audio_samples import speech

from mlx_qwen_asr import LoadOptions, OptionError, StreamingSession, TranscribeOptions, transcribe_folder
from mlx_qwen_asr.frontends.cli import main


def test_defaults_and_normalised_language():
    options = TranscribeOptions(language="english", context=None)
    assert options.language == "English" and options.context == ""
    assert options.changed() == ["language"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.language = "German"


@pytest.mark.parametrize("changes, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be a whole number of at least 1, got 0"),
    ({"max_new_tokens": -5}, "max_new_tokens must be a whole number of at least 1, got -5"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be a whole number"),
    ({"max_new_tokens": 10**12}, "max_new_tokens may be at most 16384"),
    ({"segment_seconds": 0}, "segment_seconds must be a number of at least 1"),
    ({"segment_seconds": -10.0}, "segment_seconds must be a number of at least 1"),
    ({"segment_seconds": float("inf")}, "segment_seconds must be a number of at least 1"),
    ({"segment_seconds": 1e9}, "segment_seconds may be at most 1200"),
    ({"segment_seconds": "30"}, "segment_seconds must be a number of at least 1"),
    ({"repetition_guard": "no"}, "repetition_guard must be True or False"),
    ({"recover_loops": 1}, "recover_loops must be True or False"),
    ({"word_timestamps": "yes"}, "word_timestamps must be True, False or None"),
    ({"aligner": ""}, "aligner must be a hub id"),
    ({"context": 3}, "context must be text"),
])
def test_bad_values_are_one_clear_error(changes, message):
    with pytest.raises(OptionError, match=message):
        TranscribeOptions(**changes)
    with pytest.raises(OptionError, match=message):   # a changed copy is checked again
        dataclasses.replace(TranscribeOptions(), **changes)


def test_a_bad_transcript_to_align_is_a_setup_error(tmp_path):
    """--align's text or file: an option value that cannot be used, not the base error class."""
    from mlx_qwen_asr.transcripts import read_transcript

    empty = tmp_path / "empty.srt"
    empty.write_text("1\n00:00:00,000 --> 00:00:01,000\n\n")
    for given, message in (("   ", "the transcript is empty"), (str(empty), "holds no transcript text"),
                           ("notes/talk.txt", "no such file")):
        with pytest.raises(OptionError, match=message):
            read_transcript(given)


def test_unknown_option_names_it():
    with pytest.raises(TypeError, match="temperature"):
        TranscribeOptions.build(temperature=0.5)
    with pytest.raises(TypeError, match="TranscribeOptions"):
        TranscribeOptions.build({"language": "English"})


def test_load_options_are_checked():
    with pytest.raises(OptionError, match="quantize must be 4 or 8"):
        LoadOptions(quantize=3)
    with pytest.raises(OptionError, match="dtype must be one of"):
        LoadOptions(dtype="float64")


@pytest.mark.parametrize("changes", [{"max_new_tokens": 0}, {"max_new_tokens": -5},
                                     {"segment_seconds": 0}, {"segment_seconds": -1.0}])
def test_api_refuses_a_useless_budget_or_segment_length(model, changes):
    """Before: max_new_tokens 0 or -5 gave an empty transcript; segment_seconds 0 or
    negative died in a numpy reduction."""
    audio = speech(2.0)
    with pytest.raises(OptionError):
        model.transcribe(audio, sample_rate=16000, **changes)
    with pytest.raises(OptionError):
        model.transcribe_many([audio], sample_rate=16000, **changes)


def test_folder_run_refuses_zero_budget_before_writing(tiny_checkpoint, tmp_path):
    """Before: a folder run with max_new_tokens=0 recorded empty outputs as done."""
    sf.write(tmp_path / "a.wav", speech(1.0), 16000)
    with pytest.raises(OptionError, match="max_new_tokens"):
        transcribe_folder(tmp_path / "a.wav", tmp_path / "out", model=tiny_checkpoint, max_new_tokens=0, quiet=True)
    assert not (tmp_path / "out").exists()


def test_folder_manifest_records_the_options(model, tmp_path):
    import json

    sf.write(tmp_path / "a.wav", speech(1.0), 16000)
    options = TranscribeOptions(language="English", max_new_tokens=2, word_timestamps=False)
    summary = transcribe_folder(tmp_path / "a.wav", tmp_path / "out", options, model=model, quiet=True)
    entry = next(iter(json.loads((tmp_path / "out" / "manifest.json").read_text())["files"].values()))
    assert summary["done"] == 1
    assert {k: entry["options"][k] for k in options.record()} == options.record()
    assert entry["options"]["language"] == "English" and entry["options"]["aligner"] is None


def test_streaming_refuses_offline_only_options(model):
    with pytest.raises(OptionError, match="streaming does not use max_new_tokens, segment_seconds"):
        StreamingSession(model, max_new_tokens=5, segment_seconds=10.0)
    session = StreamingSession(model, TranscribeOptions(language="english"))
    assert session.language == "English"


def test_cli_zero_budget_is_a_setup_error(tmp_path, capsys):
    """Before: --max-new-tokens 0 printed an empty line and exited 0."""
    sf.write(tmp_path / "a.wav", speech(1.0), 16000)
    assert main([str(tmp_path / "a.wav"), "--model", str(tmp_path / "no-model"), "--max-new-tokens", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: max_new_tokens must be") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [["--stream", "--timestamps"], ["--stream-fast", "--segment-seconds", "10"],
                                   ["--stream", "--max-new-tokens", "5"], ["--aligner", "some/aligner"]])
def test_cli_refuses_flags_the_mode_ignores(tmp_path, capsys, flags):
    """Before: --timestamps and --segment-seconds were silently ignored with --stream."""
    assert main([str(tmp_path / "a.wav"), "--model", str(tmp_path / "no-model"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flags[-2] if flags[-1][0] != '-' else flags[-1]} has no effect")


def test_cli_verbose_works_with_streaming(tiny_checkpoint, tmp_path, capsys):
    """Before: --verbose printed nothing with --stream."""
    path = tmp_path / "clip.wav"
    sf.write(path, speech(3.0).astype(np.float32), 16000)
    assert main([str(path), "--model", str(tiny_checkpoint), "--stream-fast", "--verbose", "--language", "English"]) == 0
    err = capsys.readouterr().err
    assert f"{path}: 3.00 s streamed in" in err and "language English" in err
