"""Diarization with the shipped networks, end to end: two espeak voices of the held-out
fixture clips (tests/support/heldout.py) taking turns, through diarize(), transcribe(diarize=True)
and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import mlx_qwen_asr
from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.speakers.attach import speaker_at

from support.heldout import HELDOUT

RATE = 16000


@pytest.fixture(scope="module")
def two_voices(tmp_path_factory):
    """A (en+f3) and B (en-029+m2) in turns A B A B with half-second pauses; the wav and the
    true parts as (start, end, name)."""
    a, b = load_audio(HELDOUT / "medium_01.flac"), load_audio(HELDOUT / "medium_05.flac")
    parts = [("A", a[:len(a) // 2]), ("B", b[:len(b) // 2]), ("A", a[len(a) // 2:]), ("B", b[len(b) // 2:])]
    audio, truth, at = [], [], 0.0
    for name, samples in parts:
        audio += [samples, np.zeros(RATE // 2, np.float32)]
        truth.append((at, at + len(samples) / RATE, name))
        at += len(samples) / RATE + 0.5
    path = tmp_path_factory.mktemp("voices") / "two_voices.wav"
    sf.write(path, np.concatenate(audio), RATE)
    return path, truth


def labels_of(turns, truth):
    return {name: speaker_at(turns, start + 0.5, end - 0.5) for start, end, name in truth}


def test_two_voices_two_speakers(two_voices):
    path, truth = two_voices
    turns = mlx_qwen_asr.diarize(path)
    assert sorted({t.speaker for t in turns}) == ["SPEAKER_1", "SPEAKER_2"]
    for start, end, name in truth:   # each part is held by its own speaker throughout
        assert speaker_at(turns, start + 0.5, end - 0.5) == {"A": "SPEAKER_1", "B": "SPEAKER_2"}[name]
    assert {t.speaker for t in mlx_qwen_asr.diarize(path, num_speakers=1)} == {"SPEAKER_1"}


def test_silence_and_one_voice(tmp_path):
    assert mlx_qwen_asr.diarize(np.zeros(12 * RATE, np.float32), sample_rate=RATE) == []
    turns = mlx_qwen_asr.diarize(HELDOUT / "medium_01.flac")
    assert {t.speaker for t in turns} == {"SPEAKER_1"} and turns[0].start < 1.0


def test_known_speaker_is_named(two_voices):
    path, truth = two_voices
    clip = load_audio(HELDOUT / "long_03.flac")[:8 * RATE]   # another voice: en-us+m1
    b_clip = load_audio(HELDOUT / "medium_05.flac")          # B's voice
    turns = mlx_qwen_asr.diarize(path, speakers={"Bo": b_clip, "Cy": clip})
    assert labels_of(turns, truth) == {"A": "SPEAKER_1", "B": "Bo"}


def test_transcript_with_speakers(two_voices, trained_model, trained_aligner):
    path, truth = two_voices
    result = trained_model.transcribe(path, diarize=True, aligner=str(trained_aligner))
    assert result.speakers == ["SPEAKER_1", "SPEAKER_2"]
    assert all(s.speaker in result.speakers for s in result.segments if s.text)
    assert [s.speaker for s in result.segments if s.text][:2] == ["SPEAKER_1", "SPEAKER_2"]
    for segment in result.segments:
        assert all(w.speaker == segment.speaker for w in segment.words)
    plain = trained_model.transcribe(path)
    assert result.text == plain.text   # speakers change no word


def test_cli_diarize_writes_every_format(two_voices, trained_checkpoint, trained_aligner, tmp_path):
    path, truth = two_voices
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(path), "--diarize", "--model",
                           str(trained_checkpoint), "--aligner", str(trained_aligner), "-o", str(out), "-f",
                           "txt,json,srt,vtt,rttm", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rttm = (out / "two_voices.rttm").read_text().splitlines()
    assert {line.split()[7] for line in rttm} == {"SPEAKER_1", "SPEAKER_2"}
    assert all(line.startswith("SPEAKER two_voices 1 ") for line in rttm)
    txt = (out / "two_voices.txt").read_text().splitlines()
    assert txt[0].startswith("SPEAKER_1: ") and txt[1].startswith("SPEAKER_2: ")
    assert "<v SPEAKER_2>" in (out / "two_voices.vtt").read_text()
    data = json.loads((out / "two_voices.json").read_text())
    assert data["speakers"] == ["SPEAKER_1", "SPEAKER_2"] and data["options"]["diarize"]["num_speakers"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 1 and summary["options"]["diarize"]["num_speakers"] is None

    def rerun(*flags):
        subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(path), "--diarize", *flags, "--model",
                        str(trained_checkpoint), "--aligner", str(trained_aligner), "-o", str(out), "-f",
                        "txt,json,srt,vtt,rttm", "--quiet"], check=True, capture_output=True)
        return json.loads((out / "summary.json").read_text())

    assert rerun()["skipped"] == 1                            # resumed: the manifest records the settings
    assert rerun("--num-speakers", "2")["done"] == 1          # other speaker settings: done again


def test_server_diarized_json(two_voices, trained_checkpoint, trained_aligner, tmp_path):
    import base64

    import httpx
    from support.server_support import ServerProcess

    path, truth = two_voices
    server = ServerProcess(["--model", str(trained_checkpoint), "--dtype", "float32", "--aligner",
                            str(trained_aligner)], tmp_path)
    try:
        def post(**fields):
            with open(path, "rb") as f:
                return httpx.post(server.url + "/v1/audio/transcriptions", timeout=600,
                                  files={"file": ("two_voices.wav", f)},
                                  data={"model": "tiny", "response_format": "diarized_json", **fields})

        body = post().json()
        assert body["task"] == "transcribe" and body["text"]
        assert [s["speaker"] for s in body["segments"]][:2] == ["SPEAKER_1", "SPEAKER_2"]
        assert all(set(s) == {"type", "id", "speaker", "start", "end", "text"} for s in body["segments"])
        b = load_audio(HELDOUT / "medium_05.flac")
        buffer = tmp_path / "b.wav"
        sf.write(buffer, b, RATE)
        url = "data:audio/wav;base64," + base64.b64encode(buffer.read_bytes()).decode()
        named = post(**{"known_speaker_names[]": "Bo", "known_speaker_references[]": url}).json()
        assert "Bo" in {s["speaker"] for s in named["segments"]}
        silent = tmp_path / "silent.wav"
        sf.write(silent, np.zeros(RATE, np.float32), RATE)
        url = "data:audio/wav;base64," + base64.b64encode(silent.read_bytes()).decode()
        bad = post(**{"known_speaker_names[]": "Al", "known_speaker_references[]": url})
        assert bad.status_code == 400
        assert "reference clip for Al has 0.0 s of speech" in bad.json()["error"]["message"]
        assert server.alive()
    finally:
        server.stop()
