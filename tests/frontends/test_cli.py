"""`python -m mlx_qwen_asr`: text on stdout, diagnostics on stderr, exit codes."""

import subprocess
import sys

import soundfile as sf

from mlx_qwen_asr.transcribe import load_model

from support.audio_samples import speech


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
    sf.write(tmp_path / "x.wav", speech(0.5), 16000)
    done = run_cli(tmp_path / "x.wav", "--model", tmp_path / "missing-model")
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "does not exist" in done.stderr


def test_stream_fast_prints_the_final_text(tiny_checkpoint, tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, speech(5.0), 16000)
    done = run_cli(path, "--model", tiny_checkpoint, "--stream-fast", "--language", "English")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n") and len(done.stdout.strip()) > 0


def test_mic_without_sounddevice_is_a_clear_error(tiny_checkpoint):
    import importlib.util

    if importlib.util.find_spec("sounddevice") is not None:
        import pytest
        pytest.skip("sounddevice is installed: this checks the message shown when it is not")
    done = run_cli("--mic", "--model", tiny_checkpoint)
    assert done.returncode == 2
    assert "pip install 'mlx-qwen-asr[mic]'" in done.stderr and "Traceback" not in done.stderr


def test_stream_options_conflict_with_output_dir(tmp_path):
    done = run_cli(tmp_path / "a.wav", "--stream", "-o", tmp_path / "out")
    assert done.returncode == 2 and "do not write files" in done.stderr


def test_quantize_option(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    audio = tmp_path / "one.wav"
    sf.write(audio, speech(1.5), 16000)
    done = run_cli(audio, "--model", tiny_checkpoint, "--quantize", "8", "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert run_cli(audio, "--model", tiny_checkpoint, "--quantize", "3").returncode == 2  # argparse choices

    # The model the command line transcribes with is really quantized (8 bits), not just asked to be.
    from mlx_qwen_asr.frontends import cli

    loaded = []
    monkeypatch.setattr(cli, "load_model", lambda *args: loaded.append(load_model(*args)) or loaded[-1])
    assert cli.main([str(audio), "--model", str(tiny_checkpoint), "--quantize", "8", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.strip()
    [model] = loaded
    assert model.network.decoder.layers[0].mlp.down_proj.bits == 8
