"""Every command and Python snippet in README.md runs as written, adapted only to what this
machine has: the hub models are the trained fixtures (tests/fixtures, written out here), the
audio names are clips of the held-out set, and the long or hardware-bound ones are listed
in SKIPPED with the reason. A README command or snippet that is in neither list, or an
adaptation whose text is no longer in the README, fails the test: they cannot drift apart.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.heldout import HELDOUT

from mlx_qwen_asr import AudioError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")

# Commands not run here, and why (each must be a command of the README).
SKIPPED = {
    "pip install -e .": "installs this checkout: the suite already runs in it",
    'pip install -e ".[test]"': "installs this checkout's test extra: the suite already runs in it",
    'pip install -e ".[vad]"': "installs an extra the dev environment has",
    'pip install -e ".[server]"': "installs an extra the dev environment has",
    'pip install -e ".[ray]"': "installs an extra the dev environment has",
    'pip install -e ".[diarize]"': "installs an extra the dev environment has (SciPy)",
    "apt-get install -y chromium chromium-driver": "a system install, as root",
    "python -m pytest": "the whole suite (minutes): this test is part of it",
    'python -m pytest -m "not slow and not official"': "a subset of this suite (minutes)",
    "python -m fixture_training.model": "trains the fixture model for hours (espeak-ng, torch)",
    "python -m fixture_training.aligner": "trains the fixture aligner for hours (espeak-ng, torch)",
    "python -m mlx_qwen_asr.testing.random_checkpoint /tmp/random-asr --size 0.6b":
        "5.7 GB of memory and 30-90 s; tests/testing/test_random_checkpoint.py covers the builder",
    "python -m mlx_qwen_asr.bench --compare-official": "a 4-minute benchmark with the official engine",
    "python scripts/check_peer_checkpoints.py": "builds other projects' virtual environments (minutes, network)",
    "python scripts/server_bench.py --fixture": "a benchmark (minutes)",
    "python scripts/server_soak.py --minutes 10 --clients 4": "a 10-minute soak; tests/frontends/test_server_faults.py "
                                                             "covers each fault it mixes",
    "python -m mlx_qwen_asr --mic": "needs a microphone",
    "python -m mlx_qwen_asr --mic --vad [--timestamps]": "needs a microphone",
    "python -m mlx_qwen_asr --list-devices": "lists this machine's sound devices (PortAudio)",
    "python -m mlx_qwen_asr archive/ -o transcripts --ray": "starts a Ray cluster (~30 s): tests/frontends/test_cluster.py",
    "ray start --head": "starts a Ray cluster that outlives the test",
    "ray start --address HEAD_IP:6379": "joins a Ray cluster on another machine",
    "python -m mlx_qwen_asr archive/ -o transcripts --ray=HEAD_IP:6379": "needs a Ray cluster on another machine",
    "python -m mlx_qwen_asr FOLDER ... -o OUT --ray[=ADDRESS] [--ray-workers N]": "a synopsis, not a command",
    "python -m mlx_qwen_asr AUDIO_OR_FOLDER ... [--model ID_OR_DIR] [--language L] [--context TEXT] "
    "[--dtype float32|bfloat16|float16] [--max-new-tokens N] [--verbose]": "a synopsis, not a command",
    "python -m mlx_qwen_asr FOLDER ... -o OUT -f txt,json,srt,vtt,tsv|all [--overwrite] [--quiet]":
        "a synopsis, not a command",
}
# README words -> what stands for them here ({model}, {aligner}, {tmp}: see `place`).
WORDS = {
    "Qwen/Qwen3-ASR-0.6B": "{model}", "Qwen/Qwen3-ASR-1.7B": "{model}", "/tmp/tiny-asr": "{tmp}/tiny-asr",
    "/tmp/tiny-aligner": "{tmp}/tiny-aligner", "tests/fixtures/": f"{ROOT}/tests/fixtures/",
    "scripts/": f"{ROOT}/scripts/", "CLIP": "talk.wav", "OUT.html": "{tmp}/out.html", "OUT.png": "{tmp}/out.png",
    "qwen3-asr-0.6b-8bit": "{tmp}/converted",
}
SERVE_SECONDS = 60


def commands() -> list[str]:
    """The README's shell commands: lines of its bash and plain code blocks (a synopsis's
    continuation lines joined), and inline `python ...`, `pip ...`, `ray ...` commands."""
    found = []
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, re.S):
        if lang not in ("", "bash"):
            continue
        for line in body.splitlines():
            line = re.split(r"\s+#\s", line)[0].strip()
            if not line:
                continue
            if found and body.splitlines()[0] != line and line.startswith("["):
                found[-1] += " " + line   # a synopsis continued
            else:
                found.append(line)
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    found += re.findall(r"`((?:python|pip) [^`]*)`", prose)
    return list(dict.fromkeys(found))


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


@pytest.fixture(scope="module")
def place(tmp_path_factory, trained_checkpoint, trained_aligner) -> dict:
    """A folder holding what the README's commands name: talk.wav and friends (held-out
    clips), folders of them, a transcript; and the values of {model}, {aligner}, {tmp}."""
    tmp = tmp_path_factory.mktemp("readme")
    clip, rate = sf.read(HELDOUT / "short_03.flac")
    for name in ("talk.wav", "speech.wav", "long.wav", "a.wav", "meeting.flac", "talk.flac", "call.wav"):
        sf.write(tmp / name, clip, rate)
    # Two voices of the held-out set one after the other (a meeting), one of them alone (a
    # speaker's reference clip), and room noise.
    other, _ = sf.read(HELDOUT / "medium_01.flac")
    sf.write(tmp / "meeting.wav", np.concatenate([clip, np.zeros(rate // 2), other]), rate)
    sf.write(tmp / "ann.wav", other, rate)
    sf.write(tmp / "hum.wav", 0.05 * np.sin(2 * np.pi * 50 * np.arange(3 * rate) / rate), rate)
    sf.write(tmp / "b.mp3", clip, rate)
    for folder in ("talks", "recordings", "archive", "calls"):
        (tmp / folder).mkdir()
        for name in ("one.flac", "two.flac"):
            shutil.copy(HELDOUT / "short_02.flac", tmp / folder / name)
    (tmp / "transcript.txt").write_text("ship opens if\n")
    if shutil.which("ffmpeg"):
        for name in ("talk.mp4", "interview.m4a"):
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", HELDOUT / "short_03.flac",
                            tmp / name], check=True)
    return {"tmp": str(tmp), "model": str(trained_checkpoint), "aligner": str(trained_aligner)}


def adapt(command: str, place: dict) -> str:
    """The README command as it runs here: its words replaced (WORDS), the fixtures given
    where the README relies on the hub defaults, and this interpreter for `python`."""
    for word, stands in WORDS.items():
        command = command.replace(word, stands)
    words = shlex.split(command.split("|")[-1].split("<")[0])
    ours = words[:3] == ["python", "-m", "mlx_qwen_asr"]
    if ours and "serve" not in words and not {"--version", "--list-languages"} & set(words):
        if "--model" not in words and "--align" not in words:   # --align recognises nothing
            command += " --model {model}"
        if {"--timestamps", "--align", "--diarize"} & set(words) or re.search(r"-f \S*(srt|vtt)", command):
            command += "" if "--aligner" in words else " --aligner {aligner}"
    if ours and words[3:4] == ["serve"]:
        command += " --port 0" + ("" if "--model" in words else " --model {model}")
    command = re.sub(r"(^|\| )python ", lambda m: m.group(1) + shlex.quote(sys.executable) + " ", command)
    return command.format(**place)


def run_command(command: str, place: dict) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "KEY": "readme-key", "HF_HUB_OFFLINE": "1"}
    if " serve" in command:   # serves until stopped: up and listening is what the README promises
        proc = subprocess.Popen(command, shell=True, cwd=place["tmp"], env=env, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            line = proc.stderr.readline()
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=SERVE_SECONDS)
        return subprocess.CompletedProcess(command, 0 if line.startswith("serving ") else 1, "", line)
    return subprocess.run(command, shell=True, cwd=place["tmp"], env=env, capture_output=True, text=True,
                          timeout=300)


def test_every_readme_command_is_run_or_skipped_with_a_reason():
    stale = [command for command in SKIPPED if command not in commands()]
    assert not stale, f"SKIPPED names commands the README no longer has: {stale}"
    assert all(reason.strip() for reason in SKIPPED.values())


@pytest.mark.parametrize("command", [c for c in commands() if c not in SKIPPED])
def test_readme_command_runs(command, place):
    if ("m4a" in command or "mp4" in command) and not shutil.which("ffmpeg"):
        pytest.skip("m4a/mp4 need ffmpeg, which is not installed")
    done = run_command(adapt(command, place), place)
    assert done.returncode == 0, f"{command}\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr


# Python snippets: README text -> what stands for it here. Run in order in one namespace,
# as a reader would; `microphone_chunks` is the README's stand-in for a live source.
SNIPPET_CHANGES = {
    'mlx_qwen_asr.transcribe("talk.wav")': 'mlx_qwen_asr.transcribe("talk.wav", model=MODEL)',
    'load_model("Qwen/Qwen3-ASR-1.7B")': "load_model(MODEL)",
    'base_url="http://127.0.0.1:8000/v1"': "base_url=SERVER",
    'model=model, formats=("srt", "json"))': 'model=model, formats=("srt", "json"), aligner=ALIGNER)',
    'transcribe("meeting.wav", diarize=True)': 'transcribe("meeting.wav", diarize=True, model=model, aligner=ALIGNER)',
    'transcribe("meeting.wav", diarize=options)': 'transcribe("meeting.wav", diarize=options, model=model, aligner=ALIGNER)',
}


def microphone_chunks():
    """48 kHz pieces of a held-out clip, as a microphone would give them."""
    audio, rate = sf.read(HELDOUT / "short_03.flac", dtype="float32")
    from mlx_qwen_asr.audio.resample import resample

    audio = resample(audio, rate, 48000)
    return [audio[i:i + 4800] for i in range(0, len(audio), 4800)]


def test_every_snippet_change_is_still_in_the_readme():
    assert all(any(old in snippet for snippet in snippets()) for old in SNIPPET_CHANGES)


def test_readme_python_snippets_run(place, monkeypatch):
    monkeypatch.chdir(place["tmp"])
    namespace = {"MODEL": place["model"], "ALIGNER": place["aligner"], "microphone_chunks": microphone_chunks}
    for snippet in snippets():
        for old, new in SNIPPET_CHANGES.items():
            snippet = snippet.replace(old, new)
        if "from openai import OpenAI" in snippet:
            with serving(place) as url:
                exec(compile(snippet, "README.md", "exec"), {**namespace, "SERVER": url})
            continue
        exec(compile(snippet, "README.md", "exec"), namespace)
    assert namespace["result"].text and namespace["results"][0].text
    assert isinstance(namespace["results"][1], AudioError)   # gone.wav: its error in its place
    assert namespace["turns"] and namespace["result"].speakers
    assert namespace["summary"]["failed"] == 0 and namespace["final"].final


class serving:
    """`python -m mlx_qwen_asr serve` on the fixture, on a free port, for the client snippet."""

    def __init__(self, place):
        self.place = place

    def __enter__(self) -> str:
        self.proc = subprocess.Popen([sys.executable, "-m", "mlx_qwen_asr", "serve", "--port", "0",
                                      "--model", self.place["model"], "--model-name", "qwen3-asr",
                                      "--aligner", self.place["aligner"]],   # srt is word-timed
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        assert line.startswith("serving "), line
        return re.search(r"\(OpenAI API at (\S+)\)", line).group(1)

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=SERVE_SECONDS)
        return False


# --- what the README says about the Python API, checked against the code ---------------------

def test_documented_transcribe_signature_and_timings_keys(trained_checkpoint):
    import inspect

    import mlx_qwen_asr

    documented = re.search(r"`transcribe\((audio, [^`]*)\)` takes", README.replace("\n", " ")).group(1)
    for name in inspect.signature(mlx_qwen_asr.transcribe).parameters:
        assert re.search(rf"\b{name}\b", documented), f"README's transcribe() lacks {name}"
    result = mlx_qwen_asr.transcribe(HELDOUT / "short_03.flac", model=trained_checkpoint, language="en")
    timings = README[README.index("`timings` (") :][:400]
    for key in result.timings:
        assert f"`{key}`" in timings, f"README's timings lack {key}"
    assert "load" not in result.timings


def test_an_array_without_its_rate_names_what_the_caller_wrote(trained_checkpoint):
    import mlx_qwen_asr

    with pytest.raises(mlx_qwen_asr.AudioError) as caught:
        mlx_qwen_asr.transcribe(np.zeros(16000, dtype=np.float32), model=trained_checkpoint)
    assert "sample_rate=" in str(caught.value) and "load_audio" not in str(caught.value)


def test_performance_doc_batch_size_call_runs(trained_checkpoint):
    import mlx_qwen_asr

    doc = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert "`model.transcribe(..., batch_size=1)`" in doc
    model = mlx_qwen_asr.load_model(trained_checkpoint)
    assert model.transcribe(HELDOUT / "short_03.flac", batch_size=1).text


def test_script_help_descriptions_are_whole_sentences():
    import ast

    for script in sorted((ROOT / "scripts").glob("*.py")):
        source = script.read_text(encoding="utf-8")
        if "description=__doc__.splitlines()[0]" not in source and 'description=__doc__.split("\\n")[0]' not in source:
            continue
        doc = ast.get_docstring(ast.parse(source), clean=False)
        assert doc.splitlines()[0].strip() == doc.split("\n\n")[0].strip(), f"{script.name}: --help cuts its first sentence"
