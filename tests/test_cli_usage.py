"""The command line as a shell user meets it, run as a real process: pipes that close early,
standard input, mistyped flags, --help, Ctrl-C and setup checks that come before the model loads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import soundfile as sf
from heldout import HELDOUT

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
