"""The server (python -m mlx_qwen_asr serve) on 127.0.0.1, through the real OpenAI client:
every response format, streaming, the realtime session, errors, limits, load and faults.

Transcripts are compared with the trained fixture's offline transcription of the same
file, which is what the CLI prints."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
import websockets.exceptions

from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.audio.blocks import open_audio_blocks
from mlx_qwen_asr.errors import AudioError
from mlx_qwen_asr.audio.resample import resample
from mlx_qwen_asr.writers import to_string

from support.heldout import HELDOUT, rows
from support.server_support import ROOT, ServerProcess

KEY = "test-key-123"
SHORT = [r["file"] for r in rows() if r["kind"] == "short"]
MEDIUM = [r["file"] for r in rows() if r["kind"] == "medium"]
LONG = [r["file"] for r in rows() if r["kind"] == "long"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, trained_checkpoint, trained_aligner):
    proc = ServerProcess(["--model", str(trained_checkpoint), "--dtype", "float32", "--aligner", str(trained_aligner),
                          "--model-name", "tiny", "--max-upload-mb", "2", "--max-audio-seconds", "60"],
                         tmp_path_factory.mktemp("server"), api_key=KEY)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def transcribe(client, name: str, **options):
    with open(HELDOUT / name, "rb") as f:
        return client.audio.transcriptions.create(model="tiny", file=(name, f), **options)


def test_json_and_text_are_the_cli_transcript(client, trained_offline):
    for name in (SHORT[0], MEDIUM[0], LONG[0]):
        assert transcribe(client, name).text == trained_offline[name].text, name
    assert transcribe(client, SHORT[1], response_format="text").strip() == trained_offline[SHORT[1]].text


def test_subtitles_are_the_cli_files(server, client, trained_model, trained_aligner, trained_offline):
    # Word-timed by default, as the CLI's; segment cues when only segments are asked for
    # (the CLI's --no-timestamps); the page's downloads (/subtitles of its verbose_json) the same.
    for name in (SHORT[2], LONG[1]):
        timed = trained_model.transcribe(HELDOUT / name, word_timestamps=True, aligner=str(trained_aligner))
        body = transcribe(client, name, response_format="verbose_json", timestamp_granularities=["word", "segment"])
        for fmt in ("srt", "vtt"):
            assert transcribe(client, name, response_format=fmt) == to_string(timed, fmt), (fmt, name)
            assert transcribe(client, name, response_format=fmt, timestamp_granularities=["word"]) == to_string(timed, fmt)
            assert transcribe(client, name, response_format=fmt, timestamp_granularities=["segment"]) == \
                to_string(trained_offline[name], fmt), (fmt, name)
            page = httpx.post(server.url + "/subtitles", headers=server.headers,
                              json={"format": fmt, "transcription": body.model_dump()})
            assert page.status_code == 200 and page.text == to_string(timed, fmt), (fmt, name)
    bad = httpx.post(server.url + "/subtitles", headers=server.headers, json={"format": "doc"})
    assert bad.status_code == 400 and "verbose_json" in bad.json()["error"]["message"]


def test_verbose_json_segments_and_words(client, trained_model, trained_aligner, trained_offline):
    name = LONG[0]
    result = transcribe(client, name, response_format="verbose_json", language="en")
    offline = trained_model.transcribe(HELDOUT / name, language="English")
    assert result.language == "english" and result.text == offline.text
    assert [(s.start, s.end, s.text) for s in result.segments] == [
        (round(s.start, 3), round(s.end, 3), s.text) for s in offline.segments if s.text]
    assert result.duration == pytest.approx(offline.duration, abs=1e-3)

    timed = transcribe(client, SHORT[3], response_format="verbose_json", timestamp_granularities=["word", "segment"])
    reference = trained_model.transcribe(HELDOUT / SHORT[3], word_timestamps=True, aligner=str(trained_aligner))
    assert [(w.word, w.start, w.end) for w in timed.words] == [
        (t, round(a, 3), round(b, 3)) for s in reference.segments for a, b, t in s.word_items()]
    assert len(timed.words) == len(reference.text.split())


def test_stream_sends_deltas_then_done(client, trained_offline):
    name = LONG[2]
    with open(HELDOUT / name, "rb") as f:
        events = list(client.audio.transcriptions.create(model="tiny", file=(name, f), stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert events[-1].type == "transcript.text.done" and events[-1].text == trained_offline[name].text
    assert len(deltas) >= 2 and "".join(deltas) == trained_offline[name].text   # one per ~30 s segment


def test_concurrent_requests_are_batched_and_identical(server, client, trained_offline):
    names = SHORT[:6] + MEDIUM[:3] + LONG[:1]
    with ThreadPoolExecutor(len(names)) as pool:
        texts = list(pool.map(lambda n: transcribe(client, n).text, names))
    assert texts == [trained_offline[n].text for n in names]
    assert httpx.get(server.url + "/health", headers=server.headers).json()["largest_batch"] > 1


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    health = httpx.get(server.url + "/health", headers=server.headers).json()
    assert health["status"] == "ok" and health["model"] == "tiny"


def test_bad_requests_get_openai_errors(server, client, tmp_path):
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(client, SHORT[0], temperature=0.4)
    assert caught.value.body["param"] == "temperature" and "temperature" in caught.value.body["message"]
    assert transcribe(client, SHORT[0], temperature=0.0).text   # 0 is served

    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError) as cli_error:
        list(open_audio_blocks(str(bad)).blocks)
    with pytest.raises(openai.BadRequestError) as caught:
        with open(bad, "rb") as f:
            client.audio.transcriptions.create(model="tiny", file=("notes.wav", f))
    # The CLI's one-line message, naming the upload as the client called it.
    assert caught.value.body["message"] == str(cli_error.value).replace(str(bad), "notes.wav")
    assert caught.value.body["code"] == "invalid_audio"

    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(client, SHORT[0], response_format="json", timestamp_granularities=["word"])
    assert caught.value.body["param"] == "timestamp_granularities"
    with pytest.raises(openai.BadRequestError) as caught:
        transcribe(client, SHORT[0], language="xx")
    assert caught.value.body["param"] == "language"

    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        transcribe(wrong, SHORT[0])
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    assert httpx.get(server.url + "/health").status_code == 401

    missing = httpx.post(server.url + "/v1/audio/transcriptions", headers=server.headers, data={"model": "tiny"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
    big = httpx.post(server.url + "/v1/audio/transcriptions", headers=server.headers, data={"model": "tiny"},
                     files={"file": ("big.wav", b"\0" * 3_000_000)})
    assert big.status_code == 413 and "limit" in big.json()["error"]["message"]
    long_audio = io.BytesIO()
    sf.write(long_audio, np.zeros(16000 * 61, np.int16), 16000, format="FLAC")
    too_long = httpx.post(server.url + "/v1/audio/transcriptions", headers=server.headers, data={"model": "tiny"},
                          files={"file": ("long.flac", long_audio.getvalue())})
    assert too_long.status_code == 413 and too_long.json()["error"]["code"] == "audio_too_long"
    unknown = httpx.get(server.url + "/v1/nothing", headers=server.headers)
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert server.alive() and server.upload_files() == []


def test_host_and_origin_checks(server):
    assert httpx.get(server.url + "/health", headers={**server.headers, "Host": "evil.example"}).status_code == 403
    cross = httpx.post(server.url + "/v1/audio/transcriptions", headers={**server.headers, "Origin": "http://evil.example"},
                       data={"model": "tiny"})
    assert cross.status_code == 403


def test_page_needs_the_key(server):
    assert "API key needed" in httpx.get(server.url + "/").text
    assert httpx.get(server.url + "/").status_code == 401
    assert httpx.post(server.url + "/login", data={"key": "wrong"}).status_code == 401
    with httpx.Client(base_url=server.url) as browser:
        login = browser.post("/login", data={"key": KEY})
        assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
        page = browser.get("/")
        assert page.status_code == 200 and 'id="mic"' in page.text
        assert browser.get("/v1/models").status_code == 200   # the page's own requests carry the cookie


def pcm24k(name: str) -> bytes:
    audio = resample(load_audio(HELDOUT / name), 16000, 24000)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def realtime_items(client, names: list[str], chunk_ms: int = 100, language: str = "en") -> list[tuple[str, list[str]]]:
    """One session: each clip appended in chunks and committed; (transcript, deltas) per clip."""
    out = []
    with client.realtime.connect(model="tiny") as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "tiny", "language": language}}}}})
        updated = conn.recv()
        assert updated.type == "session.updated"
        if language == "en,zh":
            assert updated.session.audio.input.transcription.language == "English,Chinese"
        for name in names:
            pcm = pcm24k(name)
            step = 24000 * 2 * chunk_ms // 1000
            for i in range(0, len(pcm), step):
                conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i:i + step]).decode()})
            conn.send({"type": "input_audio_buffer.commit"})
            deltas = []
            while True:
                event = conn.recv()
                if event.type == "conversation.item.input_audio_transcription.delta":
                    deltas.append(event.delta)
                elif event.type == "conversation.item.input_audio_transcription.completed":
                    out.append((event.transcript, deltas))
                    break
                elif event.type == "error":
                    raise AssertionError(event.error.message)
    return out


def test_realtime_sessions_at_once(client, trained_offline):
    """Three live sessions at the same time, two items each: every transcript is the
    offline one, and each item's deltas add up to it."""
    plans = [SHORT[0:2], SHORT[2:4], SHORT[4:6]]
    with ThreadPoolExecutor(len(plans)) as pool:
        results = list(pool.map(lambda names: realtime_items(client, names), plans))
    for names, items in zip(plans, results):
        for name, (transcript, deltas) in zip(names, items):
            assert transcript == trained_offline[name].text, name
            assert "".join(deltas) == transcript


def test_realtime_takes_a_language_set(client, trained_offline):
    [(transcript, _)] = realtime_items(client, SHORT[6:7], language="en,zh")
    assert transcript == trained_offline[SHORT[6]].text


def test_language_sets_and_confidence(client, trained_offline):
    name = SHORT[3]
    offline = trained_offline[name]
    verbose = transcribe(client, name, response_format="verbose_json", language="en,zh", include=["logprobs"])
    assert verbose.language == "english" and verbose.text == offline.text
    [segment] = verbose.segments
    assert segment.avg_logprob == pytest.approx(offline.segments[0].avg_logprob, abs=1e-3)
    assert segment.no_speech_prob == pytest.approx(offline.segments[0].no_speech_prob, abs=1e-3)
    plain = transcribe(client, name, include=["logprobs"])
    assert "".join(t.token for t in plain.logprobs).strip() == offline.text
    assert [t.logprob for t in plain.logprobs] == pytest.approx(offline.segments[0].logprobs, abs=1e-3)
    for bad in ({"include": ["everything"]}, {"include": ["logprobs"], "response_format": "text"},
                {"language": "en,xx"}):
        with pytest.raises(openai.BadRequestError):
            transcribe(client, name, **bad)


def test_realtime_refuses_a_wrong_key(server):
    wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        with wrong.realtime.connect(model="tiny") as conn:
            conn.recv()
    assert refused.value.response.status_code == 403


def test_load_200_requests_16_clients(server, trained_offline, tmp_path):
    """20 % bad requests mixed in: each good one is right, each bad one the right 4xx, the
    server alive throughout and its memory flat from request 50 to request 200."""
    corrupt = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    oversize = b"RIFF" + b"\0" * 2_100_000
    kinds = ["good"] * 160 + ["corrupt"] * 10 + ["missing"] * 10 + ["key"] * 10 + ["oversize"] * 10
    np.random.default_rng(1).shuffle(kinds)
    clips = sorted(SHORT, key=lambda n: (HELDOUT / n).stat().st_size)[:5]   # the shortest: a fast test
    audio = {name: (HELDOUT / name).read_bytes() for name in clips}

    def one(i: int) -> tuple[str, bool]:
        kind, name = kinds[i], clips[i % len(clips)]
        headers = {"Authorization": "Bearer wrong"} if kind == "key" else server.headers
        files = {"corrupt": {"file": ("x.wav", corrupt)}, "oversize": {"file": ("x.wav", oversize)},
                 "missing": None}.get(kind, {"file": (name, audio[name])})
        response = httpx.post(server.url + "/v1/audio/transcriptions", headers=headers, data={"model": "tiny"},
                              files=files, timeout=120)
        expected = {"good": 200, "corrupt": 400, "missing": 400, "key": 401, "oversize": 413}[kind]
        ok = response.status_code == expected and "error" in response.json() if kind != "good" else (
            response.status_code == 200 and response.json()["text"] == trained_offline[name].text)
        return kind, ok

    with ThreadPoolExecutor(16) as pool:
        first = list(pool.map(one, range(50)))
        assert server.alive()
        rss_50 = server.rss_kib()
        rest = list(pool.map(one, range(50, 200)))
    rss_200 = server.rss_kib()
    failed = [(i, kind) for i, (kind, ok) in enumerate(first + rest) if not ok]
    assert failed == []
    assert server.alive() and server.upload_files() == []
    assert rss_200 <= rss_50 * 1.10, (rss_50, rss_200)


def _raw_post(server, body_bytes: int, send_bytes: int) -> socket.socket:
    """A multipart upload that announces `body_bytes` and sends only `send_bytes` of them."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: {body_bytes}\r\n\r\n"
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n")
    sock.sendall(head.encode() + b"\0" * send_bytes)
    return sock


def _kill(sock: socket.socket) -> None:
    """Close as a killed process's socket closes: at once, with a reset."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    sock.close()


@pytest.mark.filterwarnings("error::DeprecationWarning")   # the suite stays free of them
def test_clients_killed_mid_upload_and_mid_stream(server, client, trained_offline):
    for _ in range(5):
        _kill(_raw_post(server, 1_500_000, 400_000))
    # A client process killed while its upload is in flight.
    script = (
        "import time, httpx\n"
        "def body():\n"
        "    yield b'--B\\r\\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\\r\\n\\r\\n'\n"
        "    yield b'x' * 100000\n"
        "    time.sleep(60)\n"
        f"httpx.post('{server.url}/v1/audio/transcriptions', content=body(), timeout=120,\n"
        f"           headers={{'Authorization': 'Bearer {KEY}', 'Content-Type': 'multipart/form-data; boundary=B'}})\n")
    killed = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    time.sleep(1.5)
    killed.kill()
    killed.wait()
    # Streams dropped after the first event, and a plain request dropped while it is decoded.
    for _ in range(3):
        with httpx.stream("POST", server.url + "/v1/audio/transcriptions", headers=server.headers,
                          data={"model": "tiny", "stream": "true"},
                          files={"file": (LONG[0], (HELDOUT / LONG[0]).read_bytes())}, timeout=60) as response:
            next(response.iter_lines())
    with pytest.raises(httpx.TimeoutException):
        httpx.post(server.url + "/v1/audio/transcriptions", headers=server.headers, data={"model": "tiny"},
                   files={"file": (LONG[1], (HELDOUT / LONG[1]).read_bytes())}, timeout=0.3)
    # A live session whose client vanishes mid-item.
    host, port = server.url.removeprefix("http://").split(":")
    from websockets.sync.client import connect
    with connect(f"ws://{host}:{port}/v1/realtime", additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24k(SHORT[0])).decode()}))
        _kill(ws.socket)

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(server.url + "/health", headers=server.headers).json()
        if health["queued_requests"] == 0 and health["live_sessions"] == 0:
            break
        time.sleep(0.2)
    assert health["queued_requests"] == 0 and health["live_sessions"] == 0, health
    assert server.upload_files() == []
    assert transcribe(client, SHORT[5]).text == trained_offline[SHORT[5]].text


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory, trained_checkpoint):
    """One request at a time, and a tenth of a second for each."""
    proc = ServerProcess(["--model", str(trained_checkpoint), "--dtype", "float32", "--max-queue", "1",
                          "--request-timeout", "0.1"], tmp_path_factory.mktemp("tight"))
    yield proc
    proc.stop()


def test_timeout_and_full_queue(tight_server):
    long_clip = (HELDOUT / LONG[0]).read_bytes()

    def post():
        return httpx.post(tight_server.url + "/v1/audio/transcriptions", data={"model": "m"},
                          files={"file": ("a.flac", long_clip)}, timeout=60)

    late = post()
    assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: post(), range(8)))
    busy = [r for r in responses if r.status_code == 429]
    assert busy and all(int(r.headers["Retry-After"]) >= 1 for r in busy)
    assert {r.status_code for r in responses} <= {429, 504}
    assert tight_server.alive()


def test_non_loopback_host_needs_a_key(trained_checkpoint):
    run = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", "serve", "--host", "0.0.0.0", "--model",
                          str(trained_checkpoint)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--api-key" in run.stderr and "Traceback" not in run.stderr
