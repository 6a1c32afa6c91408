"""Dictation (--mic --vad): utterances found as audio comes are the VAD's spans of the whole,
each printed text is that utterance's offline transcript, capture never waits for the
transcriber, and the microphone is chosen by index or name (--list-devices, --mic-device)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from support.heldout import HELDOUT, rows

from mlx_qwen_asr.frontends import cli
from mlx_qwen_asr.frontends.dictation import (RealClock, SimulatedClock, UtteranceDetector, dictate, heard_line, paced_blocks,
                                    printer)
from mlx_qwen_asr.errors import SetupError
from mlx_qwen_asr.frontends.mic import InputDevice, device_lines, input_devices, resolve_device
from mlx_qwen_asr.options import TranscribeOptions
from mlx_qwen_asr.testing.noisy_audio import with_gaps
from mlx_qwen_asr.audio.vad import speech_spans

ROOT = Path(__file__).resolve().parents[2]
SHORT = [r["file"] for r in rows() if r["kind"] == "short"]


def gapped(files, gaps, seed=0):
    """Held-out clips with pauses of silence and faint noise (the tiny model invents words on louder noise)."""
    clips = [sf.read(HELDOUT / f, dtype="float32")[0] for f in files]
    return with_gaps(clips, gaps, noise_db=-65.0, seed=seed)


def detect(audio, block, **kwargs):
    detector = UtteranceDetector(**kwargs)
    found = []
    for start in range(0, len(audio), block):
        found += detector.feed(audio[start:start + block])
    return found + detector.finish()


# --- utterances ----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", [333, 4000, 160000])
def test_utterances_are_the_vad_spans_of_the_whole_audio(block):
    """Whatever the block size, the utterances are exactly speech_spans of the whole input
    (no utterance reaches the length cut here)."""
    audio, _ = gapped([r["file"] for r in rows()], [1.5] * len(rows()))
    utterances = detect(audio, block, max_seconds=1000.0)
    spans = speech_spans(audio)
    assert len(utterances) == len(spans) > 28
    for utterance, (a, b) in zip(utterances, spans):
        assert (utterance.start, utterance.end) == (a / 16000, b / 16000)
        assert np.array_equal(utterance.audio, audio[a:b])
    assert [u.index for u in utterances] == list(range(1, len(spans) + 1))


def test_an_utterance_without_pauses_is_cut_at_the_length_limit():
    audio, _ = gapped(SHORT[:8], [0.3] * 8)   # pauses too short to end an utterance
    utterances = detect(audio, 4000, max_seconds=10.0)
    assert len(utterances) >= 3
    assert all(u.seconds <= 10.0 + 1e-9 for u in utterances)
    for before, after in zip(utterances, utterances[1:]):
        assert after.start >= before.end - 1e-9   # in order, never overlapping


def test_silence_only_gives_no_utterance_and_bounded_memory():
    detector = UtteranceDetector()
    for _ in range(400):   # 100 s of silence
        assert detector.feed(np.zeros(4000, np.float32)) == []
    assert len(detector.audio) < 16000   # only a lead-in is kept
    assert detector.finish() == []


# --- the pipeline on the trained fixture ---------------------------------------------------------

def test_printed_utterances_are_their_offline_transcripts(trained_model):
    """The live path on a simulated clock: each printed line is that utterance's offline text."""
    files = SHORT[:6]
    audio, starts = gapped(files, [1.0, 2.0, 1.5, 2.5, 1.2, 2.0])
    clock = SimulatedClock()
    out, err = io.StringIO(), io.StringIO()
    heard = dictate(trained_model, TranscribeOptions(), paced_blocks(audio, clock), clock=clock,
                    on_heard=printer(timestamps=True, verbose=True, out=out, err=err))
    utterances = [h.utterance for h in heard]
    assert [(u.start, u.end) for u in utterances] == [(a / 16000, b / 16000) for a, b in speech_spans(audio)]
    alone = [trained_model.transcribe(u.audio, sample_rate=16000).text for u in utterances]
    assert [h.result.text for h in heard] == alone
    assert out.getvalue().splitlines() == [heard_line(h, True) for h in heard if h.result.text.strip()]
    assert out.getvalue().startswith(f"[00:0{int(utterances[0].start)}.")
    assert len(err.getvalue().splitlines()) == len(heard) and "printed" in err.getvalue()
    # The session clock: each text is printed after its utterance ended, in order.
    assert all(h.printed >= h.utterance.end and h.queued >= h.utterance.end for h in heard)
    assert [h.printed for h in heard] == sorted(h.printed for h in heard)
    # The sentences are all there (each clip is one utterance or more).
    reference = " ".join(r["text"] for r in rows() if r["file"] in files)
    from mlx_qwen_asr.testing.wer import wer

    assert wer(reference, " ".join(alone)) <= wer(reference, " ".join(
        trained_model.transcribe(HELDOUT / f).text for f in files)) + 0.05


def test_capture_does_not_wait_for_the_transcriber(trained_model):
    """Audio given faster than it is transcribed: every utterance is queued before the
    second is printed, and those queued meanwhile are decoded together, texts unchanged."""
    audio, _ = gapped(SHORT[:5], [1.5] * 5)
    blocks = [audio[i:i + 4000] for i in range(0, len(audio), 4000)]
    heard = dictate(trained_model, TranscribeOptions(), blocks, clock=RealClock())
    assert len(heard) >= 5
    assert max(h.queued for h in heard) < heard[1].printed
    assert len({h.started for h in heard}) < len(heard)   # batched
    assert [h.result.text for h in heard] == [trained_model.transcribe(h.utterance.audio, sample_rate=16000).text
                                              for h in heard]


def test_a_failing_source_is_reported_after_what_was_heard(trained_model):
    audio, _ = gapped(SHORT[:2], [1.0, 1.5])

    def blocks():
        yield from (audio[i:i + 4000] for i in range(0, len(audio), 4000))
        yield from (np.zeros(4000, np.float32) for _ in range(8))
        raise SetupError("the microphone went away")

    shown = []
    with pytest.raises(SetupError, match="went away"):
        dictate(trained_model, TranscribeOptions(), blocks(), on_heard=shown.append)
    assert len(shown) == 2


# --- choosing the microphone ---------------------------------------------------------------------

DEVICES = [
    {"name": "HDMI Output", "max_input_channels": 0, "max_output_channels": 2},
    {"name": "Built-in Microphone", "max_input_channels": 1, "max_output_channels": 0},
    {"name": "USB Audio Mic", "max_input_channels": 2, "max_output_channels": 2},
    {"name": "USB Audio Mic Array", "max_input_channels": 4, "max_output_channels": 0},
]


def test_input_devices_keep_those_that_record_and_mark_the_default():
    found = input_devices(DEVICES, default_input=1)
    assert [(d.index, d.name, d.channels, d.default) for d in found] == [
        (1, "Built-in Microphone", 1, True), (2, "USB Audio Mic", 2, False), (3, "USB Audio Mic Array", 4, False)]
    assert device_lines(found) == ["*  1  Built-in Microphone  (1 channel)", "   2  USB Audio Mic  (2 channels)",
                                   "   3  USB Audio Mic Array  (4 channels)"]


@pytest.mark.parametrize("wanted, index", [("1", 1), ("3", 3), ("built-in", 1), ("ARRAY", 3), (" usb audio mic ", 2)])
def test_resolve_device_by_index_or_name(wanted, index):
    assert resolve_device(input_devices(DEVICES, 1), wanted).index == index


@pytest.mark.parametrize("wanted, words", [
    ("0", ["--mic-device 0", "no input device has that index", "1 'Built-in Microphone' (default)"]),
    ("7", ["no input device has that index", "3 'USB Audio Mic Array'"]),
    ("webcam", ["'webcam'", "no input device has that in its name", "input devices: 1 'Built-in"]),
    ("usb", ["matches 2 input devices", "2 'USB Audio Mic'", "3 'USB Audio Mic Array'", "give its index"]),
    ("", ["no input device has that in its name"]),
])
def test_resolve_device_names_the_problem_and_the_choices(wanted, words):
    with pytest.raises(SetupError) as caught:
        resolve_device(input_devices(DEVICES, 1), wanted)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_resolve_device_without_devices():
    with pytest.raises(SetupError, match="there are no input devices"):
        resolve_device([], "1")
    assert resolve_device([InputDevice(5, "Only", 1)], "only").index == 5


# --- the command line ----------------------------------------------------------------------------

def run_cli(*args, fake: Path | None = None, env_extra=None, timeout=120):
    path = [str(fake)] if fake else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [str(ROOT)]), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_error(err: str, *words: str) -> None:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word.lower() in errors[0].lower(), (word, errors[0])


# A stand-in for the sounddevice package: the device list of FAKE_DEVICES, and an input
# stream that plays FAKE_MIC_AUDIO (then silence, as a quiet room) and presses Ctrl-C
# FAKE_STOP_SECONDS of audio later.
FAKE_SOUNDDEVICE = textwrap.dedent('''
    import json, os, signal, sys, threading, time
    import numpy as np

    _devices = json.loads(os.environ.get("FAKE_DEVICES", "[]"))

    class _Default:
        device = (int(os.environ.get("FAKE_DEFAULT_INPUT", "-1")), -1)

    default = _Default()

    def query_devices(device=None, kind=None):
        if kind == "input":
            if default.device[0] < 0:
                raise ValueError("No input device matching")
            return _devices[default.device[0]]
        return _devices

    class InputStream:
        def __init__(self, samplerate, channels, dtype, device, blocksize, callback):
            print(f"fake: input stream on device {device}", file=sys.stderr, flush=True)
            self.blocksize, self.callback, self.done = blocksize, callback, threading.Event()

        def __enter__(self):
            import soundfile
            audio = soundfile.read(os.environ["FAKE_MIC_AUDIO"], dtype="float32")[0]
            stop_at = len(audio) + int(float(os.environ["FAKE_STOP_SECONDS"]) * 16000)

            def play():
                at = 0
                while not self.done.is_set():
                    block = np.zeros((self.blocksize, 1), np.float32)
                    piece = audio[at:at + self.blocksize]
                    block[:len(piece), 0] = piece
                    self.callback(block, self.blocksize, None, None)
                    at += self.blocksize
                    if at >= stop_at and at - self.blocksize < stop_at:
                        os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.02)

            threading.Thread(target=play, daemon=True).start()
            return self

        def __exit__(self, *exc):
            self.done.set()
''')


@pytest.fixture
def fake_sounddevice(tmp_path) -> Path:
    folder = tmp_path / "fake-site"
    folder.mkdir()
    (folder / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    return folder


def devices_env(devices=DEVICES, default=1) -> dict:
    return {"FAKE_DEVICES": json.dumps(devices), "FAKE_DEFAULT_INPUT": str(default)}


@pytest.mark.parametrize("args, words", [
    (["--vad"], ["--vad", "--mic"]),
    (["{clip}", "--vad"], ["--vad", "--mic"]),
    (["{clip}", "--stream", "--vad"], ["--vad", "--mic"]),
    (["--mic-device", "1"], ["--mic-device", "--mic"]),
    (["--mic", "--vad", "-o", "{out}"], ["-o", "prints"]),
    (["--mic", "--vad", "--skip-silence"], ["--skip-silence", "dictation"]),
    (["--mic", "--vad", "--no-timestamps"], ["--no-timestamps", "dictation"]),
    (["--mic", "--vad", "--timestamps", "--aligner", "x"], ["--aligner", "dictation"]),
    (["--mic", "--vad", "--max-line-width", "30"], ["--max-line-width", "dictation"]),
    (["--mic", "--vad", "--max-cue-seconds", "3"], ["--max-cue-seconds", "dictation"]),
    (["--mic", "--vad", "--stream"], ["--stream", "--mic"]),
    (["--mic", "--vad", "{clip}"], ["--mic takes no audio"]),
])
def test_dictation_flags_it_cannot_honour(capsys, tmp_path, args, words):
    args = [a.format(clip=HELDOUT / SHORT[0], out=tmp_path / "out") for a in args]
    try:
        code = cli.main(args + ["--model", str(tmp_path / "no-model")])
    except SystemExit as exc:   # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    one_error(err, *words)
    assert not (tmp_path / "out").exists()


def test_list_devices(fake_sounddevice):
    done = run_cli("--list-devices", fake=fake_sounddevice, env_extra=devices_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == device_lines(input_devices(DEVICES, 1))
    assert done.stdout.splitlines()[0].startswith("*  1  Built-in Microphone")


@pytest.mark.parametrize("wanted, words", [
    ("webcam", ["--mic-device 'webcam'", "no input device", "1 'Built-in Microphone' (default)"]),
    ("usb", ["matches 2 input devices", "give its index"]),
    ("9", ["--mic-device 9", "no input device has that index"]),
])
def test_mic_device_that_does_not_resolve_stops_before_listening_and_loading(fake_sounddevice, tmp_path, wanted, words):
    done = run_cli("--mic", "--vad", "--mic-device", wanted, "--model", tmp_path / "no-model",
                   fake=fake_sounddevice, env_extra=devices_env())
    assert done.returncode == 2
    one_error(done.stderr, *words)   # the device, not the missing model: found first
    assert "listening" not in done.stderr


def test_mic_device_found_goes_on_to_the_model(fake_sounddevice, tmp_path):
    done = run_cli("--mic", "--vad", "--mic-device", "array", "--model", tmp_path / "no-model",
                   fake=fake_sounddevice, env_extra=devices_env())
    assert done.returncode == 2
    one_error(done.stderr, "no-model")
    assert "listening" not in done.stderr


@pytest.mark.parametrize("args", [["--list-devices"], ["--mic", "--vad", "--mic-device", "1"]])
def test_no_input_devices_is_one_line(fake_sounddevice, tmp_path, args):
    done = run_cli(*args, "--model", tmp_path / "no-model", fake=fake_sounddevice,
                   env_extra=devices_env(devices=[DEVICES[0]], default=-1))
    assert done.returncode == 2 and done.stdout == ""
    one_error(done.stderr, "no input devices")


def test_no_portaudio_is_one_line(tmp_path):
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    for args in (["--list-devices"], ["--mic", "--vad", "--mic-device", "usb", "--model", tmp_path / "m"]):
        done = run_cli(*args, fake=fake)
        assert done.returncode == 2
        one_error(done.stderr, args[0], "PortAudio", "install")


def test_no_sounddevice_is_one_line(tmp_path):
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sounddevice.py").write_text("raise ImportError('No module named sounddevice')\n")
    done = run_cli("--list-devices", fake=fake)
    assert done.returncode == 2
    one_error(done.stderr, "--list-devices", "pip install 'mlx-qwen-asr[mic]'")


def test_mic_vad_prints_each_utterance_until_ctrl_c(fake_sounddevice, trained_checkpoint, trained_model, tmp_path):
    """The whole command: the chosen device plays three sentences, Ctrl-C comes 1.5 s of
    silence later; every utterance is printed (with its session times) and it exits 0."""
    audio, _ = gapped(SHORT[:3], [1.0, 1.5, 2.0])
    clip = tmp_path / "spoken.wav"
    sf.write(clip, audio, 16000, subtype="FLOAT")
    done = run_cli("--mic", "--vad", "--mic-device", "usb audio mic array", "--timestamps", "--verbose",
                   "--model", trained_checkpoint, fake=fake_sounddevice, timeout=300,
                   env_extra={**devices_env(), "FAKE_MIC_AUDIO": str(clip), "FAKE_STOP_SECONDS": "1.5"})
    assert done.returncode == 0, done.stderr
    assert "fake: input stream on device 3" in done.stderr and "listening" in done.stderr
    utterances = detect(np.concatenate([audio, np.zeros(16000 * 2, np.float32)]), 4000)
    expected = []
    for u in utterances:
        text = " ".join(trained_model.transcribe(u.audio, sample_rate=16000).text.split())
        if text:
            expected.append(f"[{_clock(u.start)} --> {_clock(u.end)}] {text}")
    assert len(expected) >= 3 and done.stdout.splitlines() == expected
    assert f"microphone: {len(utterances)} utterances" in done.stderr


def _clock(seconds: float) -> str:
    from mlx_qwen_asr.clock import clock_centis

    return clock_centis(seconds)


def test_mic_device_also_chooses_the_streaming_microphone(fake_sounddevice, trained_checkpoint, tmp_path):
    clip = tmp_path / "spoken.wav"
    sf.write(clip, sf.read(HELDOUT / SHORT[2], dtype="float32")[0], 16000)
    done = run_cli("--mic", "--mic-device", "Built-in", "--model", trained_checkpoint, fake=fake_sounddevice,
                   timeout=300, env_extra={**devices_env(), "FAKE_MIC_AUDIO": str(clip), "FAKE_STOP_SECONDS": "1.0"})
    assert done.returncode == 0, done.stderr
    assert "fake: input stream on device 1" in done.stderr and done.stdout.strip()
