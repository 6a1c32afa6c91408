"""Limits on what a request may ask for (limits.py): a context over its token limit is one
clear error from the Python API, streaming and the CLI, before any audio is read."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlx_qwen_asr.errors import OptionError
from mlx_qwen_asr.limits import MAX_CONTEXT_TOKENS, check_context
from mlx_qwen_asr.stream.session import StreamingSession

from support.heldout import HELDOUT, rows

ROOT = HELDOUT.parent.parent.parent
SHORT = [r["file"] for r in rows() if r["kind"] == "short"]
HUGE = "names and terms " * 3000   # 48 kB, thousands of tokens


def test_the_limit_counts_tokens(trained_model):
    tokenizer = trained_model.tokenizer
    fits = "<|im_end|>" * 1000   # 10 kB of text, but 1000 tokens (a special token each)
    assert len(fits.encode()) > MAX_CONTEXT_TOKENS >= len(tokenizer.encode(fits))
    check_context(tokenizer, fits)
    with pytest.raises(OptionError, match=f"context is {len(tokenizer.encode(HUGE))} tokens long"):
        check_context(tokenizer, HUGE)


def test_python_api_and_streaming_refuse_a_huge_context(trained_model, tmp_path):
    missing = tmp_path / "not-there.wav"   # the context is refused before the audio is opened
    with pytest.raises(OptionError, match="the limit is 1024 tokens"):
        trained_model.transcribe(missing, context=HUGE)
    with pytest.raises(OptionError, match="the limit is 1024 tokens"):
        StreamingSession(trained_model, context=HUGE)
    assert trained_model.transcribe(HELDOUT / SHORT[0], context="names").text


def test_cli_refuses_a_huge_context_in_one_line(trained_checkpoint, tmp_path):
    run = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", "--model", str(trained_checkpoint),
                          "--context", HUGE, str(HELDOUT / SHORT[0])], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip().splitlines()[-1].startswith("error: --context is ")
    assert "Traceback" not in run.stderr and "the limit is 1024 tokens" in run.stderr


def test_lying_headers_are_one_error_from_python_and_the_cli(trained_model, trained_checkpoint, tmp_path):
    from mlx_qwen_asr.audio.load import load_audio
    from mlx_qwen_asr.errors import AudioError

    from support.lying_audio import LYING

    paths = []
    for name, (data, words) in LYING.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
        for read in (load_audio, trained_model.transcribe):
            with pytest.raises(AudioError, match=words):
                read(path)
    run = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", "--model", str(trained_checkpoint), *map(str, paths)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(LYING)
    for line, path, (_data, words) in zip(errors, paths, LYING.values()):
        assert line.startswith(f"error: {path}: the header claims") and words in line, line
