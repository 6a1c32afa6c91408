"""Bad and odd input, the way a careless user gives it: through the CLI, the Python API,
folder runs and streaming.

Every bad input must give one line that names the problem, exit 1 when a file failed and
2 for a setup error (found before any audio is processed), no traceback, and nothing
partial on disk; every odd but valid input must transcribe. The CLI cases run `main()` in
this process (one model load for the module; an uncaught exception fails the test as a
traceback would); the ones that need a real process (environment, signals, two runs at
once) start `python -m mlx_qwen_asr`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mlx_qwen_asr
from mlx_qwen_asr import AudioError, ModelLoadError, OutputError, SetupError
from mlx_qwen_asr.frontends.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "fixtures" / "heldout"
GOOD = HELDOUT / "short_03.flac"          # 2.0 s the trained fixture transcribes
LONGER = HELDOUT / "medium_01.flac"       # 14.4 s


@pytest.fixture(scope="module")
def model_dir(trained_checkpoint) -> Path:
    return trained_checkpoint


@pytest.fixture(scope="module")
def model(trained_checkpoint):
    return mlx_qwen_asr.load_model(trained_checkpoint)


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the command line in this process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:   # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args, env=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def error_line(err: str, *words: str) -> str:
    """The one error line in `err`, which must name every word given; never a traceback."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith(("error:", "python -m mlx_qwen_asr: error:"))]
    assert len(errors) == 1, err
    for word in words:
        assert word.lower() in errors[0].lower(), (word, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files (a half-written output) under `folder`."""
    return sorted(p.name for p in folder.rglob(".*.tmp")) if folder.exists() else []


# --- broken audio files -----------------------------------------------------------------

def _truncated_flac(tmp: Path) -> Path:
    path = tmp / "truncated.flac"
    data = LONGER.read_bytes()
    path.write_bytes(data[:len(data) // 2])   # the decoder loses sync mid-file
    return path


def _empty(tmp):
    path = tmp / "empty.wav"
    path.write_bytes(b"")
    return path


def _text_as_wav(tmp):
    path = tmp / "notes.wav"
    path.write_text("this is not audio\n")
    return path


def _random_bytes(name: str, seed: int):
    """A file of random bytes under an audio file's name."""
    def make(tmp):
        path = tmp / name
        path.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
        return path
    return make


def _no_frames(tmp):
    path = tmp / "header-only.wav"
    sf.write(path, np.zeros((0, 1), np.float32), 16000)
    return path


def _nan_wav(tmp):
    path = tmp / "nan.wav"
    audio = sf.read(GOOD, dtype="float32")[0]
    audio[100] = np.nan
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path


def _inf_wav(tmp):
    path = tmp / "inf.wav"
    audio = sf.read(GOOD, dtype="float32")[0]
    audio[-5] = np.inf
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path


def _truncated_wav_header(tmp):
    """A wav cut to its header and a few bytes: no whole frame."""
    path = tmp / "cut.wav"
    sf.write(tmp / "full.wav", sf.read(GOOD)[0], 16000)
    path.write_bytes((tmp / "full.wav").read_bytes()[:44 + 1])
    return path


BROKEN = {
    "truncated-flac": (_truncated_flac, "corrupt or truncated"),
    "empty": (_empty, "empty"),
    "text-named-wav": (_text_as_wav, "cannot decode"),
    "random-flac": (_random_bytes("noise.flac", 0), "cannot decode"),
    "random-mp3": (_random_bytes("noise.mp3", 1), "cannot decode"),
    "random-m4a": (_random_bytes("noise.m4a", 2), "cannot decode"),
    "no-frames": (_no_frames, "no audio samples"),
    "nan": (_nan_wav, "nan"),
    "inf": (_inf_wav, "infinite"),
    "header-only-wav": (_truncated_wav_header, ""),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_then_good_file_cli(case, model_dir, tmp_path, capsys):
    """One line for the broken file, and the file after it is still transcribed."""
    make, words = BROKEN[case]
    bad = make(tmp_path)
    code, out, err = cli(capsys, bad, GOOD, "--model", model_dir)
    assert code == 1, err
    error_line(err, str(bad), words)
    assert out.startswith(f"{GOOD}: ") and len(out.split(": ", 1)[1].strip()) > 0


@pytest.mark.parametrize("case", ["truncated-flac", "text-named-wav", "nan", "no-frames"])
def test_broken_file_in_folder_run_leaves_no_output(case, model_dir, tmp_path, capsys):
    make, words = BROKEN[case]
    talks = tmp_path / "talks"
    talks.mkdir()
    bad = make(talks)
    shutil.copy(GOOD, talks / "good.flac")
    out = tmp_path / "out"
    code, _, err = cli(capsys, talks, "-o", out, "-f", "all", "--no-timestamps", "--model", model_dir, "--quiet")
    assert code == 1, err
    error_line(err, bad.name, words)
    assert sorted(p.name for p in out.iterdir() if p.stem == bad.stem) == []
    assert sorted(p.name for p in out.iterdir() if p.stem == "good") == [f"good.{f}" for f in
                                                                         sorted(("txt", "json", "srt", "vtt", "tsv"))]
    assert leftovers(out) == []


def test_truncated_flac_in_a_folder_without_output_dir(model_dir, tmp_path, capsys):
    talks = tmp_path / "talks"
    talks.mkdir()
    _truncated_flac(talks)
    shutil.copy(GOOD, talks / "z-good.flac")
    code, out, err = cli(capsys, talks, "--model", model_dir)
    assert code == 1
    error_line(err, "truncated.flac", "corrupt or truncated")
    assert "z-good.flac: " in out


def test_truncated_flac_streamed(model_dir, tmp_path, capsys):
    bad = _truncated_flac(tmp_path)
    code, out, err = cli(capsys, bad, GOOD, "--model", model_dir, "--stream-fast")
    assert code == 1
    error_line(err, "truncated.flac", "corrupt or truncated")
    assert f"{GOOD}:" in out


# --- odd but valid audio ------------------------------------------------------------------

def _write(tmp, name, audio, sr, **kw):
    path = tmp / name
    sf.write(path, audio, sr, **kw)
    return path


def _speech(sr):
    from mlx_qwen_asr.audio.load import resample
    return resample(sf.read(GOOD, dtype="float32")[0], 16000, sr)


ODD = {
    "8khz": lambda t: _write(t, "phone.wav", _speech(8000), 8000),
    "44k1-stereo": lambda t: _write(t, "cd.wav", np.stack([_speech(44100)] * 2, 1), 44100),
    "48k-6ch": lambda t: _write(t, "surround.wav", np.stack([_speech(48000)] * 6, 1), 48000),
    "int32-pcm": lambda t: _write(t, "int32.wav", _speech(16000), 16000, subtype="PCM_32"),
    "float-loud": lambda t: _write(t, "loud.wav", 3.0 * _speech(16000), 16000, subtype="FLOAT"),
    "flac-24bit": lambda t: _write(t, "hires.flac", _speech(24000), 24000, subtype="PCM_24"),
    "aiff": lambda t: _write(t, "mac.aiff", _speech(22050), 22050),
    "ogg-vorbis": lambda t: _write(t, "web.ogg", _speech(16000), 16000, format="OGG", subtype="VORBIS"),
    "upper-ext": lambda t: _write(t, "LOUD NAME ÄÖ.WAV", _speech(16000), 16000),
    "silence": lambda t: _write(t, "silence.wav", np.zeros(16000, np.float32), 16000),
    "ten-samples": lambda t: _write(t, "click.wav", np.full(10, 0.5, np.float32), 16000),
    "dash-name": lambda t: _write(t, "-dash.wav", _speech(16000), 16000),
}


@pytest.mark.parametrize("case", sorted(ODD))
def test_odd_but_valid_audio_transcribes(case, model_dir, tmp_path, capsys):
    path = ODD[case](tmp_path)
    code, out, err = cli(capsys, "--model", model_dir, "--", path)
    assert code == 0, err
    assert "error" not in err and "Traceback" not in err
    if case not in ("silence", "ten-samples"):
        assert len(out.strip()) > 0


# --- model and aligner folders (setup errors: exit 2, before any audio) ---------------------

def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


MODELS = {
    "missing-dir": (lambda m, t: t / "nope", "does not exist"),
    "file-as-model": (lambda m, t: _write(t, "x.wav", np.zeros(10), 16000), "is a file"),
    "no-config": (lambda m, t: _without(m, t, "config.json"), "config.json"),
    "bad-json": (lambda m, t: _edit(m, t, "config.json", "{not json"), "not valid json"),
    "other-model-config": (lambda m, t: _edit(m, t, "config.json", '{"model_type": "whisper"}'), "not a qwen3-asr"),
    "no-weights": (lambda m, t: _without(m, t, "model.safetensors"), "model.safetensors"),
    "corrupt-weights": (lambda m, t: _edit(m, t, "model.safetensors", "garbage"), "cannot read weights"),
    "no-tokenizer": (lambda m, t: _without(m, t, "vocab.json"), "vocab"),
    "aligner-as-model": (lambda m, t: t / "aligner", "--aligner"),
    "not-a-hub-id": (lambda m, t: "a/b/c", "does not exist"),
}


def _without(model: Path, tmp: Path, name: str) -> Path:
    folder = _copy_model(model, tmp / "model")
    (folder / name).unlink()
    return folder


def _edit(model: Path, tmp: Path, name: str, text: str) -> Path:
    folder = _copy_model(model, tmp / "model")
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("case", sorted(MODELS))
def test_bad_model_is_a_setup_error(case, model_dir, trained_aligner, tmp_path, capsys):
    make, words = MODELS[case]
    if case == "aligner-as-model":
        shutil.copytree(trained_aligner, tmp_path / "aligner")
    given = make(model_dir, tmp_path)
    out_dir = tmp_path / "out"
    code, out, err = cli(capsys, GOOD, "--model", given, "-o", out_dir)
    assert code == 2, err
    error_line(err, words)
    assert out == "" and not out_dir.exists()   # the model is checked before anything is written


@pytest.mark.parametrize("case", ["missing-dir", "asr-model-as-aligner", "file-as-aligner"])
def test_bad_aligner_is_one_setup_error_before_any_file(case, model_dir, tmp_path, capsys):
    aligner = {"missing-dir": tmp_path / "nope", "asr-model-as-aligner": model_dir,
               "file-as-aligner": _write(tmp_path, "a.wav", np.zeros(10), 16000)}[case]
    talks = tmp_path / "talks"
    talks.mkdir()
    for i in range(3):
        shutil.copy(GOOD, talks / f"{i}.flac")
    out_dir = tmp_path / "out"
    code, _, err = cli(capsys, talks, "-o", out_dir, "--model", model_dir, "--timestamps", "--aligner", aligner,
                       "--quiet")
    assert code == 2, err
    error_line(err)   # one line, not one per file
    assert not list(out_dir.glob("*.txt"))


def test_hub_failure_is_one_line_after_the_inputs_are_checked(model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    missing = run_cli(tmp_path / "speech.wav", env=env)
    assert missing.returncode == 2
    error_line(missing.stderr, "speech.wav", "no such file")
    hub = run_cli(GOOD, env=env)
    assert hub.returncode == 2
    error_line(hub.stderr, "Qwen/Qwen3-ASR-0.6B", "hub")
    # The default aligner, not in the cache: one line before any file is transcribed.
    aligner = run_cli(GOOD, LONGER, "--model", model_dir, "--timestamps", env=env)
    assert aligner.returncode == 2 and aligner.stdout == ""
    error_line(aligner.stderr, "Qwen/Qwen3-ForcedAligner-0.6B", "hub")


def test_convert_reports_unloadable_sources_in_one_line(model_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    (tmp_path / "file").write_text("x")
    for source, out, words in (("Qwen/Qwen3-ASR-0.6B", tmp_path / "o1", "hub"),
                               (tmp_path / "missing", tmp_path / "o2", "does not exist"),
                               (model_dir, tmp_path / "file", "existing file")):
        done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr.convert", "--model", str(source), "--out",
                               str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        error_line(done.stderr, words)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# --- options and inputs (setup errors) --------------------------------------------------------

OPTIONS = {
    "unknown-language": (["--language", "Klingon"], "Klingon"),
    "segment-zero": (["--segment-seconds", "0"], "segment-seconds"),
    "segment-text": (["--segment-seconds", "long"], "segment-seconds"),
    "unknown-format": (["-o", "{out}", "-f", "docx"], "docx"),
    "format-without-output": (["-f", "srt"], "-o"),
    "dtype": (["--dtype", "int8"], "dtype"),
    "quantize-3": (["--quantize", "3"], "quantize"),
    "stream-with-output": (["--stream", "-o", "{out}"], "do not write files"),
    "output-is-file": (["-o", "{file}"], "existing file"),
    "output-under-file": (["-o", "{file}/sub"], "cannot create"),
    "missing-input": (["{missing}"], "no such file"),
    "two-missing-inputs": (["{missing}", "{missing2}"], "no such files"),
    "folder-without-audio": (["{empty_dir}"], "no audio files"),
}


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_bad_option_or_input_is_a_setup_error(case, model_dir, tmp_path, capsys):
    args, words = OPTIONS[case]
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty_dir").mkdir()
    names = {"out": tmp_path / "out", "file": tmp_path / "file", "missing": tmp_path / "speech.wav",
             "missing2": tmp_path / "other.wav", "empty_dir": tmp_path / "empty_dir"}
    args = [a.format(**names) for a in args]
    inputs = [] if case == "folder-without-audio" else [GOOD]   # beside other inputs it is only a note
    code, out, err = cli(capsys, *inputs, *args, "--model", model_dir)
    assert code == 2, err
    error_line(err, words)
    assert out == ""   # the good input was not transcribed first
    assert not (tmp_path / "out").exists()


def test_microphone_without_portaudio_says_so_before_listening(model_dir, tmp_path):
    """sounddevice installed but no PortAudio library: its import raises OSError."""
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)])}
    done = run_cli("--mic", "--model", tmp_path / "missing-model", env=env)
    assert done.returncode == 2
    error_line(done.stderr, "PortAudio")
    assert "listening" not in done.stderr


# --- Python API -----------------------------------------------------------------------------------

def test_api_missing_audio_is_reported_before_the_model_loads(tmp_path):
    with pytest.raises(AudioError, match="speech.wav: no such file"):
        mlx_qwen_asr.transcribe(tmp_path / "speech.wav", model=tmp_path / "not-a-model")


@pytest.mark.parametrize("audio, words", [
    (np.zeros((2, 3, 4), np.float32), "1-D"),
    (np.array(["a", "b"]), "dtype"),
    (np.zeros(0, np.float32), "no audio samples"),
    (np.array([0.0, np.nan] * 100, np.float32), "NaN"),
])
def test_api_bad_arrays(model, audio, words):
    with pytest.raises(AudioError, match=words):
        model.transcribe(audio, sample_rate=16000)


def test_api_array_without_rate(model):
    with pytest.raises(AudioError, match="sample rate"):
        model.transcribe(np.zeros(1600, np.float32))


def test_api_bad_file_in_a_list_with_on_error_return(model, tmp_path):
    bad = _text_as_wav(tmp_path)
    results = model.transcribe_many([str(bad), str(GOOD)], on_error="return")
    assert isinstance(results[0], AudioError) and results[1].text


def test_api_list_with_on_error_return_keeps_the_others(model_dir, model, tmp_path):
    missing = tmp_path / "gone.wav"
    for engine in (model_dir, model):   # loaded here (no check before loading) or given
        results = mlx_qwen_asr.transcribe([GOOD, missing, GOOD], model=engine, on_error="return")
        assert isinstance(results[1], AudioError) and "gone.wav: no such file" in str(results[1])
        assert results[0].text and results[2].text == results[0].text


def test_api_on_error_is_checked_and_raise_stays_the_default(tmp_path):
    with pytest.raises(ValueError, match="on_error"):
        mlx_qwen_asr.transcribe([GOOD], model=tmp_path / "not-a-model", on_error="skip")
    with pytest.raises(AudioError, match="gone.wav: no such file"):
        mlx_qwen_asr.transcribe([GOOD, tmp_path / "gone.wav"], model=tmp_path / "not-a-model")


def test_api_transcribe_many_takes_on_error(model, tmp_path):
    with pytest.raises(AudioError):
        model.transcribe_many([tmp_path / "gone.wav", GOOD])
    results = model.transcribe_many([tmp_path / "gone.wav", GOOD], on_error="return")
    assert isinstance(results[0], AudioError) and results[1].text


def test_api_load_model_names_an_aligner(trained_aligner):
    with pytest.raises(ModelLoadError, match="--aligner"):
        mlx_qwen_asr.load_model(trained_aligner)


def test_api_folder_run_checks_setup_before_writing(model_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="existing file"):
        mlx_qwen_asr.transcribe_folder(GOOD, tmp_path / "file", model=model_dir)
    with pytest.raises(SetupError, match="no such file"):
        mlx_qwen_asr.transcribe_folder([GOOD, tmp_path / "gone.wav"], tmp_path / "out", model=model_dir)
    assert not (tmp_path / "out").exists()


# --- streaming --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate, words", [(0, "sample"), (-16000, "sample"), (16000.5, "sample"), ("16k", "sample")])
def test_stream_bad_rates(model, rate, words):
    session = mlx_qwen_asr.StreamingSession(model)
    with pytest.raises(mlx_qwen_asr.QwenASRError, match=words):
        session.feed(np.zeros(1600, np.float32), rate)


@pytest.mark.parametrize("chunk, words", [(np.zeros((2, 2, 2), np.float32), "shape"),
                                          (np.array([np.inf] * 160, np.float32), "infinite")])
def test_stream_bad_chunks(model, chunk, words):
    session = mlx_qwen_asr.StreamingSession(model)
    with pytest.raises(AudioError, match=words):
        session.feed(chunk, 16000)


@pytest.mark.parametrize("case", ["one-sample-chunks", "empty-chunks", "int16-8k", "44k1-odd-sizes"])
def test_stream_odd_chunks_transcribe(model, case):
    audio = sf.read(GOOD, dtype="float32")[0]
    session = mlx_qwen_asr.StreamingSession(model)
    if case == "one-sample-chunks":
        for i in range(16000):
            session.feed(audio[i:i + 1], 16000)
        session.feed(audio[16000:], 16000)
    elif case == "empty-chunks":
        for i in range(0, len(audio), 8000):
            session.feed(np.zeros(0, np.float32), 16000)
            session.feed(audio[i:i + 8000], 16000)
    elif case == "int16-8k":
        pcm = (_speech(8000) * 32767).astype(np.int16)
        for i in range(0, len(pcm), 1000):
            session.feed(pcm[i:i + 1000], 8000)
    else:
        hi = _speech(44100)
        sizes = np.random.default_rng(0).integers(1, 9000, 200)
        start = 0
        for size in sizes:
            session.feed(hi[start:start + size], 44100)
            start += size
        session.feed(hi[start:], 44100)
    assert len(session.finish().committed.strip()) > 0


@pytest.mark.parametrize("chunk_seconds", [0, -0.5, float("nan")])
def test_stream_bad_chunk_seconds(model, chunk_seconds):
    with pytest.raises(mlx_qwen_asr.QwenASRError, match="chunk"):
        list(mlx_qwen_asr.transcribe_stream(GOOD, model, chunk_seconds=chunk_seconds))


# --- folder runs: full disk, SIGKILL, two runs at once, Ctrl-C ----------------------------------

FORMATS = ("json", "srt", "tsv", "txt", "vtt")


def _talks(tmp: Path, n: int) -> Path:
    talks = tmp / "talks"
    talks.mkdir()
    for i in range(n):
        shutil.copy(GOOD, talks / f"talk{i}.flac")
    return talks


def _complete_or_absent(out: Path, n: int) -> list[int]:
    """Indices of the inputs whose outputs are all there (the others must have none)."""
    done = []
    for i in range(n):
        present = sorted(p.suffix[1:] for p in out.glob(f"talk{i}.*"))
        assert present in ([], list(FORMATS)), (i, present)
        if present:
            done.append(i)
            assert json.loads((out / f"talk{i}.json").read_text())["text"]
    return done


# A run killed by the system mid-write: the json writer of the third input writes half its
# text, then the process SIGKILLs itself (no cleanup of any kind can run).
KILLER = """
import os, signal, sys
from mlx_qwen_asr.frontends import cli
from mlx_qwen_asr import writers
real, seen = writers.WRITERS["json"], []
def json_then_die(result, file, **kw):
    seen.append(1)
    if len(seen) == 3:
        file.write('{"text": "half')
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real(result, file, **kw)
writers.WRITERS["json"] = json_then_die
sys.exit(cli.main(sys.argv[1:]))
"""

# A run that holds its output folder until told to go on (the file GO appears).
HOLDER = """
import pathlib, sys, time
from mlx_qwen_asr.frontends import cli, folder
real = folder._Run.transcribe_all
def held(self, asr, todo):
    pathlib.Path(sys.argv[1], "STARTED").touch()
    while not pathlib.Path(sys.argv[1], "GO").exists():
        time.sleep(0.05)
    return real(self, asr, todo)
folder._Run.transcribe_all = held
sys.exit(cli.main(sys.argv[2:]))
"""


def _driver(code: str, *args, timeout=120) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_write_then_rerun(model_dir, tmp_path):
    talks, out = _talks(tmp_path, 5), tmp_path / "out"
    killed = _driver(KILLER, talks, "-o", out, "-f", "all", "--no-timestamps", "--model", model_dir, "--quiet")
    killed.wait(timeout=120)
    assert killed.returncode == -9
    stale = leftovers(out)                          # talk2's formats written so far, json half
    assert len(stale) == 2 and all(name.startswith(".talk2.") for name in stale)
    assert _complete_or_absent(out, 5) == [0, 1]    # nothing partial is visible
    again = run_cli(talks, "-o", out, "-f", "all", "--no-timestamps", "--model", model_dir, "--verbose", "--quiet")
    assert again.returncode == 0, again.stderr
    assert "removed 2 temporary file" in again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["skipped"], summary["done"], summary["failed"]) == (2, 3, 0)   # finished ones kept
    assert leftovers(out) == [] and _complete_or_absent(out, 5) == [0, 1, 2, 3, 4]
    assert not (out / "manifest.journal").exists() and len(json.loads((out / "manifest.json").read_text())["files"]) == 5


def test_second_run_into_the_same_folder_refuses(model_dir, tmp_path):
    talks, out = _talks(tmp_path, 2), tmp_path / "out"
    out.mkdir()
    first = _driver(HOLDER, out, talks, "-o", out, "--model", model_dir, "--quiet")
    try:
        for _ in range(1200):
            if (out / "STARTED").exists() or first.poll() is not None:
                break
            import time
            time.sleep(0.05)
        assert (out / "STARTED").exists(), first.communicate()
        second = run_cli(talks, "-o", out, "--model", model_dir, "--quiet")
        assert second.returncode == 2
        error_line(second.stderr, str(out), "in use by another run")
        (out / "GO").touch()
        assert first.wait(timeout=120) == 0, first.communicate()
    finally:
        if first.poll() is None:
            first.kill()
    assert sorted(p.name for p in out.glob("talk*")) == ["talk0.txt", "talk1.txt"]
    # The lock went with the first run: a third one proceeds (and finds everything done).
    third = run_cli(talks, "-o", out, "--model", model_dir, "--quiet")
    assert third.returncode == 0 and json.loads((out / "summary.json").read_text())["skipped"] == 2


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs to fill: a full disk that is this test's alone."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_full_disk_keeps_every_input_whole_and_resumes(model_dir, tmp_path, small_disk):
    disk = small_disk
    talks, out = _talks(tmp_path, 6), disk / "out"
    out.mkdir()
    page = os.statvfs(disk).f_frsize
    free = os.statvfs(disk).f_bavail * page
    (disk / "filler").write_bytes(b"\0" * (free - 13 * page))   # room for about two inputs
    full = run_cli(talks, "-o", out, "-f", "all", "--no-timestamps", "--model", model_dir, "--quiet")
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    first_error = next(line for line in full.stderr.splitlines() if line.startswith("error:"))
    assert "No space left on device" in first_error and "talk" in first_error
    assert "interrupted (output folder" in full.stderr   # the run stops: every later file would fail too
    done = _complete_or_absent(out, 6)
    assert 1 <= len(done) < 6 and leftovers(out) == []
    # The failed input's temporary files are gone, which leaves room for the run's own
    # records; were there none, the journal would still hold every finished input.
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == len(done) and summary["total"] == 6 and summary["interrupted"]
    assert len(json.loads((out / "manifest.json").read_text())["files"]) == len(done)
    (disk / "filler").unlink()
    resumed = run_cli(talks, "-o", out, "-f", "all", "--no-timestamps", "--model", model_dir, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == len(done) and summary["done"] == 6 - len(done)
    assert _complete_or_absent(out, 6) == list(range(6))


def test_ctrl_c_in_a_folder_run_prints_one_interrupted_line(model_dir, tmp_path, capsys, monkeypatch):
    from mlx_qwen_asr import writers

    talks, out = _talks(tmp_path, 3), tmp_path / "out"
    real, seen = writers.WRITERS["txt"], []

    def txt_then_ctrl_c(result, file, **kw):
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt
        real(result, file, **kw)

    monkeypatch.setitem(writers.WRITERS, "txt", txt_then_ctrl_c)
    code, _, err = cli(capsys, talks, "-o", out, "--model", model_dir)
    assert code == 130
    assert [line for line in err.splitlines() if "interrupted" in line] == [
        "interrupted (Ctrl-C): run the same command again to continue"]
    assert "(of 3 inputs)" in err and "not reached 2" in err and "RTF 0.000" not in err


def test_verbose_reports_the_model_load_time(model_dir):
    done = run_cli(GOOD, "--model", model_dir, "--verbose")
    assert done.returncode == 0, done.stderr
    loaded = next(line for line in done.stderr.splitlines() if "loaded in" in line)
    assert int(loaded.split("loaded in ")[1].split(" ms")[0]) > 0
    assert "load 0 ms" not in done.stderr


def test_convert_onto_a_full_disk_leaves_nothing(model_dir, small_disk):
    disk = small_disk
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr.convert", "--model", str(model_dir), "--out",
                           str(disk / "converted")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    error_line(done.stderr, "No space left on device")
    assert sorted(p.name for p in disk.iterdir()) == []   # neither the output nor its staging folder
