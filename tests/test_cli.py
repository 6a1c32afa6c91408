"""`python -m mlx_qwen_asr`: text on stdout, diagnostics on stderr, exit codes."""

import subprocess
import sys

import soundfile as sf

from audio_samples import speech


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_transcribes_files_with_verbose_timings(tiny_checkpoint, tmp_path):
    first, second = tmp_path / "one.wav", tmp_path / "two.flac"
    sf.write(first, speech(1.5), 16000)
    sf.write(second, speech(2.0), 16000)
    done = run_cli(first, second, "--model", tiny_checkpoint, "--max-new-tokens", "6", "--verbose",
                   "--language", "english")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(first), str(second)]
    assert "encoder" in done.stderr and "decode" in done.stderr and "language English" in done.stderr


def test_bad_file_is_reported_and_others_still_run(tiny_checkpoint, tmp_path):
    good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
    sf.write(good, speech(1.0), 16000)
    bad.write_text("not audio")
    done = run_cli(bad, good, "--model", tiny_checkpoint, "--max-new-tokens", "4")
    assert done.returncode == 1
    assert done.stdout.startswith(f"{good}:")
    assert "error:" in done.stderr and "bad.wav" in done.stderr and "Traceback" not in done.stderr


def test_unknown_language_fails_before_loading(tmp_path):
    done = run_cli(tmp_path / "x.wav", "--model", tmp_path / "missing-model", "--language", "Klingon")
    assert done.returncode == 2
    assert "unsupported language 'Klingon'" in done.stderr and "Traceback" not in done.stderr


def test_missing_model_directory(tmp_path):
    done = run_cli(tmp_path / "x.wav", "--model", tmp_path / "missing-model")
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "does not exist" in done.stderr
