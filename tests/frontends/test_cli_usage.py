"""The command line as a shell user meets it, run as a real process: pipes that close early,
standard input, mistyped flags, --help, Ctrl-C and setup checks that come before the model loads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import soundfile as sf
from support.heldout import HELDOUT

CLIP = HELDOUT / "short_01.flac"


def command(*args) -> list[str]:
    return [sys.executable, "-m", "mlx_qwen_asr", *map(str, args)]


def run_cli(*args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), capture_output=True, text=True, timeout=timeout, **kw)


def one_error_line(err: str) -> bool:
    return err.startswith("error:") and err.strip().count("\n") == 0 and "Traceback" not in err


def run_with_stdout_closed(*args) -> tuple[int, str]:
    """`... | head -0`: the reader of stdout is gone before the first line is written."""
    proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


# --- 7: a closed pipe ----------------------------------------------------------------------

def test_list_languages_into_a_closed_pipe_is_quiet():
    code, err = run_with_stdout_closed("--list-languages")
    assert err == "" and code == 141


def test_transcripts_into_a_closed_pipe_are_quiet(trained_checkpoint, tmp_path):
    code, err = run_with_stdout_closed(CLIP, HELDOUT / "short_02.flac", "--model", trained_checkpoint,
                                       "--language", "en")
    assert "Traceback" not in err and "BrokenPipe" not in err and "error" not in err
    assert code == 141


# --- 6: --align with a file that is not there ----------------------------------------------

@pytest.mark.parametrize("value", ["nonexist.txt", "notes/talk", "Talk Notes.SRT"])
def test_align_with_a_missing_file_is_a_setup_error(value, trained_aligner, tmp_path):
    done = run_cli(CLIP, "--align", value, "--aligner", trained_aligner, cwd=tmp_path)
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert f"--align: {value}: no such file" in done.stderr and done.stdout == ""


def test_align_with_text_that_has_a_full_stop_still_aligns(trained_aligner, tmp_path):
    done = run_cli(CLIP, "--align", "Hello there. It is late/early.", "--aligner", trained_aligner, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Hello" in done.stdout


# --- 5: standard input ---------------------------------------------------------------------

def test_m4a_on_standard_input_reads_as_the_file_does(trained_checkpoint, tmp_path):
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: m4a is decoded by ffmpeg (its absence: the test below)")
    m4a = tmp_path / "talk.m4a"   # 39 s: ffmpeg writes the index after the samples, out of a pipe's reach
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", HELDOUT / "long_01.flac", m4a],
                   check=True)
    flags = ("--model", trained_checkpoint, "--language", "en", "--max-new-tokens", "4")
    from_file = run_cli(m4a, *flags)
    with open(m4a, "rb") as stdin:
        from_pipe = run_cli("-", *flags, stdin=stdin)
    assert from_file.returncode == 0 and from_pipe.returncode == 0, from_pipe.stderr
    assert from_pipe.stdout == from_file.stdout and from_pipe.stdout.strip()


def test_m4a_on_standard_input_without_ffmpeg_says_so(trained_checkpoint, tmp_path):
    fake_m4a = tmp_path / "talk.m4a"
    fake_m4a.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    env = {**os.environ, "PATH": str(tmp_path)}   # no ffmpeg there
    with open(fake_m4a, "rb") as stdin:
        done = run_cli("-", "--model", trained_checkpoint, stdin=stdin, env=env)
    assert done.returncode == 1 and one_error_line(done.stderr), done.stderr
    assert "ffmpeg is not installed" in done.stderr


def test_raw_rate_with_a_flac_on_standard_input_is_an_error(trained_checkpoint, tmp_path):
    flac = tmp_path / "even.flac"
    sf.write(flac, sf.read(CLIP)[0][:16000], 16000)
    with open(flac, "rb") as stdin:
        done = run_cli("-", "--raw-rate", "16000", "--model", trained_checkpoint, stdin=stdin)
    assert done.returncode == 1 and one_error_line(done.stderr), done.stderr
    assert "holds a FLAC file, not raw PCM: leave out --raw-rate" in done.stderr and done.stdout == ""


def test_standard_input_on_a_terminal_says_pipe_audio_in(tmp_path):
    import pty

    leader, terminal = pty.openpty()
    try:
        done = run_cli("-", "--model", tmp_path / "no-model-needed", stdin=terminal, timeout=60)
    finally:
        os.close(leader)
        os.close(terminal)
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert "standard input, which is this terminal: pipe audio in" in done.stderr


# --- 12: serve's setup checks --------------------------------------------------------------

def test_serve_reports_a_taken_port_before_loading_the_model(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A model folder that does not exist: were it loaded first, that would be the error.
        done = run_cli("serve", "--port", port, "--model", tmp_path / "no-model", timeout=60)
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


# --- 10: --help, whisper's spellings, mistyped flags ---------------------------------------

def test_help_has_groups_examples_and_serve():
    done = run_cli("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m mlx_qwen_asr [options] AUDIO_OR_FOLDER")
    for heading in ("input and output:", "model:", "recognition:", "word times and subtitles:",
                    "live: streaming and microphone:", "Ray cluster:", "examples:"):
        assert f"\n{heading}\n" in done.stdout, heading
    assert "python -m mlx_qwen_asr serve --help" in done.stdout
    assert "    python -m mlx_qwen_asr talk.wav --timestamps\n" in done.stdout


def test_usage_names_the_command_as_invoked(tmp_path):
    script = tmp_path / "mlx-qwen-asr"   # what the installed entry point runs
    script.write_text("from mlx_qwen_asr.frontends.cli import main\nraise SystemExit(main())\n")
    for args in (["--help"], ["serve", "--help"]):
        done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: mlx-qwen-asr "), done.stdout[:80]
        assert "python -m" not in done.stdout


def test_whisper_spellings_mean_the_same(trained_checkpoint, tmp_path):
    out = tmp_path / "out"
    done = run_cli(CLIP, "-m", trained_checkpoint, "-l", "en", "--output_dir", out, "--output_format", "json",
                   "--output-format=txt", "--max_new_tokens", "4", "--quiet")
    assert done.returncode == 0, done.stderr
    assert {"short_01.json", "short_01.txt"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("given, meant", [("--outptu-dir", "--output-dir"), ("--initial_prompt", "--context"),
                                          ("--word-timestamps", "--timestamps"), ("--langauge", "--language")])
def test_an_unknown_flag_names_the_one_meant(given, meant, tmp_path):
    done = run_cli(CLIP, given, "x")
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert f"unrecognized arguments: {given} x; did you mean {meant}?" in done.stderr


@pytest.mark.parametrize("glued, says", [("-osrt", "-osrt is whisper.cpp's output flag; here: -o FOLDER -f srt"),
                                         ("-oout", "-oout: write -o and its value apart (-o out)"),
                                         ("-fsrt", "-fsrt: write -f and its value apart (-f srt)")])
def test_a_glued_short_option_is_refused(glued, says, tmp_path):
    done = run_cli(CLIP, glued, cwd=tmp_path)
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert says in done.stderr and list(tmp_path.iterdir()) == []


# --- 11: slow combinations on the CPU ------------------------------------------------------

@pytest.mark.parametrize("flags, warned", [(("--quantize", "8", "--dtype", "float16"), "--quantize 8 with --dtype float16"),
                                           (("--low-memory", "--dtype", "bfloat16"), "--low-memory with --dtype bfloat16"),
                                           (("--quantize", "8"), None), (("--dtype", "float16"), None)])
def test_quantized_half_precision_on_the_cpu_is_warned(flags, warned, trained_checkpoint):
    import mlx.core as mx

    warned = warned if mx.default_device() == mx.cpu else None   # only the CPU backend lacks a fast path
    done = run_cli(HELDOUT / "short_03.flac", "--model", trained_checkpoint, "--language", "en", *flags)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    if warned:
        assert f"warning: {warned} on the CPU is many times slower than with float32" in done.stderr
        assert "leave out --dtype" in done.stderr
    else:
        assert "slower" not in done.stderr


# --- 9: text as it is decoded; Ctrl-C keeps it; notes only about what is written -------------

def test_text_is_printed_as_decoded_and_kept_on_ctrl_c(trained_checkpoint, tmp_path):
    import numpy as np
    import signal

    audio, rate = sf.read(HELDOUT / "long_01.flac")
    talk = tmp_path / "talk.wav"   # two minutes in 1 s segments: many batches of 8
    sf.write(talk, np.concatenate([audio] * 3), rate)
    flags = (talk, "--model", trained_checkpoint, "--language", "en", "--segment-seconds", "1")
    whole = run_cli(*flags).stdout
    proc = subprocess.Popen(command(*flags), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = os.read(proc.stdout.fileno(), 1 << 16).decode()   # the first batch's text, while decoding goes on
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    printed = first + rest.decode()
    assert proc.returncode == 130 and err.decode().strip().endswith("interrupted"), err
    assert first.strip() and printed.endswith("\n") and printed.count("\n") == 1
    assert whole.startswith(printed.rstrip("\n")) and len(printed) < len(whole)


def test_a_folder_without_output_has_no_output_name_notes(trained_checkpoint, tmp_path):
    clip, rate = sf.read(CLIP)
    for name in ("same.wav", "same.flac"):   # with -o they would be renamed same.wav.*, same.flac.*
        sf.write(tmp_path / name, clip[:rate], rate)
    done = run_cli(tmp_path, "--model", trained_checkpoint, "--language", "en")
    assert done.returncode == 0, done.stderr
    assert "output name" not in done.stderr and len(done.stdout.splitlines()) == 2


# --- 8: a Ray address with no cluster ------------------------------------------------------

def test_ray_address_with_no_cluster_is_one_line_at_once(trained_checkpoint, tmp_path):
    import socket
    import time

    with socket.socket() as probe:   # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", sf.read(CLIP)[0][:16000], 16000)
    started = time.monotonic()
    done = run_cli(tmp_path / "in", "-o", tmp_path / "out", "--model", trained_checkpoint,
                   f"--ray=127.0.0.1:{port}", timeout=120)
    assert time.monotonic() - started < 60
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert f"Ray cluster 127.0.0.1:{port}: cannot connect" in done.stderr


# --- 15: a model or aligner the hub cannot give says how to use a local folder ----------------

@pytest.mark.parametrize("flags, flag", [(("--model", "Qwen/Qwen3-ASR-0.6B"), "--model"), (("--timestamps",), "--aligner")])
def test_hub_failure_says_how_to_give_a_local_folder(flags, flag, trained_checkpoint, tmp_path):
    flags = flags if flag == "--model" else ("--model", trained_checkpoint, *flags)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-cache")}
    done = run_cli(CLIP, *flags, env=env)
    assert done.returncode == 2 and one_error_line(done.stderr), done.stderr
    assert "from the Hugging Face hub" in done.stderr
    assert f"for a local copy give {flag} DIR (a folder holding its config.json" in done.stderr
