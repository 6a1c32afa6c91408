"""The server under faults, on 127.0.0.1 through the real clients: clients that give up at
every stage of their request, huge prompts, lying headers, shutdown by signal, realtime
events that are too large, and the order in which waiting requests are served."""

from __future__ import annotations

import base64
import signal
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from mlx_qwen_asr.audio.load import load_audio
from mlx_qwen_asr.audio.resample import resample
from mlx_qwen_asr.frontends.server.uploads import FOLDER_PREFIX

from support.heldout import HELDOUT, rows
from support.server_support import ServerProcess

SHORT = [r["file"] for r in rows() if r["kind"] == "short"]
LONG = [r["file"] for r in rows() if r["kind"] == "long"]


def start(tmp_path_factory, checkpoint, *args: str) -> ServerProcess:
    return ServerProcess(["--model", str(checkpoint), "--dtype", "float32", *args], tmp_path_factory.mktemp("faults"))


def openai_client(server: ServerProcess, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=timeout)


def transcribe(client: openai.OpenAI, name: str, **options):
    with open(HELDOUT / name, "rb") as f:
        return client.audio.transcriptions.create(model="tiny", file=(name, f), **options)


def pcm24k(name: str) -> bytes:
    """A clip as the Realtime API's pcm16: 24 kHz mono little-endian."""
    audio = resample(load_audio(HELDOUT / name), 16000, 24000)
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def health(server: ServerProcess) -> dict:
    return httpx.get(server.url + "/health", timeout=10).json()


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def pair_server(tmp_path_factory, trained_checkpoint):
    """Two segments a batch: with three long files sent, two decode while the third waits."""
    proc = start(tmp_path_factory, trained_checkpoint, "--batch-size", "2")
    yield proc
    proc.stop()


def test_clients_that_give_up_while_queued_or_decoding(pair_server, trained_model):
    """A (kept), B (gives up while its segment is decoded in a batch with A's) and C (gives
    up while it waits in the queue): A is answered right, and the server goes on serving.
    Before the fix the queued client's cancellation killed the worker thread and every
    later request hung."""
    results: dict[str, object] = {}

    def send(label: str, name: str, timeout: float) -> None:
        try:
            results[label] = transcribe(openai_client(pair_server, timeout), name).text
        except openai.APITimeoutError:
            results[label] = "gave up"

    threads = [threading.Thread(target=send, args=("A", LONG[0], 60))]
    threads[0].start()
    assert wait_for(lambda: health(pair_server)["queued_requests"] == 1)
    threads.append(threading.Thread(target=send, args=("B", LONG[1], 1.5)))
    threads[1].start()
    assert wait_for(lambda: health(pair_server)["queued_requests"] == 2)
    threads.append(threading.Thread(target=send, args=("C", LONG[2], 0.6)))
    threads[2].start()
    for thread in threads:
        thread.join(90)
    assert results["B"] == results["C"] == "gave up"
    assert results["A"] == trained_model.transcribe(HELDOUT / LONG[0]).text
    assert wait_for(lambda: health(pair_server)["queued_requests"] == 0)
    expected = trained_model.transcribe(HELDOUT / SHORT[0]).text
    assert transcribe(openai_client(pair_server, 30), SHORT[0]).text == expected
    assert pair_server.upload_files() == []


HUGE_PROMPT = "names and terms " * 6000   # 96 kB: this once crashed the whole server


def test_a_huge_prompt_is_refused_before_the_audio_is_read(pair_server, trained_model):
    client = openai_client(pair_server)
    with pytest.raises(openai.BadRequestError) as refused:
        # The file is not audio: the prompt is refused first, so its message is the prompt's.
        client.audio.transcriptions.create(model="tiny", file=("a.wav", b"not audio"), prompt=HUGE_PROMPT)
    error = refused.value.body
    assert error["param"] == "prompt" and error["code"] == "prompt_too_long"
    assert "the limit is 1024 tokens" in error["message"]
    with client.realtime.connect(model="tiny") as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "transcription": {"model": "tiny", "prompt": HUGE_PROMPT}}}}})
        event = conn.recv()
        assert event.type == "error" and event.error.code == "prompt_too_long"
    assert transcribe(client, SHORT[1], prompt="names").text == trained_model.transcribe(
        HELDOUT / SHORT[1], context="names").text
    assert pair_server.alive()


def test_lying_headers_are_400_with_the_cli_message(pair_server):
    from support.lying_audio import LYING

    client = openai_client(pair_server)
    for name, (data, words) in LYING.items():
        with pytest.raises(openai.BadRequestError) as refused:
            client.audio.transcriptions.create(model="tiny", file=(name, data))
        error = refused.value.body
        assert error["code"] == "invalid_audio" and error["message"].startswith(f"{name}: the header claims")
        assert words in error["message"]
    assert pair_server.alive() and pair_server.upload_files() == []


def _upload_folders(server: ServerProcess) -> list:
    return list(Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}{server.proc.pid}-*"))


def _post_in_thread(server: ServerProcess, name: str, results: dict, key: str) -> threading.Thread:
    def post() -> None:
        try:
            results[key] = httpx.post(server.url + "/v1/audio/transcriptions", data={"model": "tiny"},
                                      files={"file": (name, (HELDOUT / name).read_bytes())}, timeout=60)
        except httpx.HTTPError as exc:
            results[key] = exc

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_sigterm_finishes_the_requests_in_flight_and_exits_0(tmp_path_factory, trained_checkpoint, trained_model):
    server = start(tmp_path_factory, trained_checkpoint, "--batch-size", "1", "--shutdown-timeout", "60")
    try:
        results: dict = {}
        threads = [_post_in_thread(server, LONG[0], results, "running")]
        assert wait_for(lambda: health(server)["queued_requests"] == 1)
        threads.append(_post_in_thread(server, SHORT[2], results, "queued"))
        assert wait_for(lambda: health(server)["queued_requests"] == 2)
        server.proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(90)
        assert server.proc.wait(60) == 0
        assert results["running"].status_code == 200 and results["queued"].status_code == 200
        assert results["running"].json()["text"] == trained_model.transcribe(HELDOUT / LONG[0]).text
        assert results["queued"].json()["text"] == trained_model.transcribe(HELDOUT / SHORT[2]).text
        with pytest.raises(httpx.ConnectError):   # no longer accepting
            httpx.get(server.url + "/health", timeout=5)
        assert _upload_folders(server) == []
        assert "Traceback" not in server.output()
    finally:
        server.stop()


def test_sigint_past_the_grace_period_is_503_and_live_sessions_end_cleanly(tmp_path_factory, trained_checkpoint):
    """Ctrl-C with offline work and a live session in flight: what the grace period does not
    finish is answered 503 in OpenAI's shape, the process exits 0 (it used to abort at exit
    after MLX work on a thread, "terminate called without an active exception")."""
    server = start(tmp_path_factory, trained_checkpoint, "--batch-size", "1", "--shutdown-timeout", "0.5")
    try:
        client = openai_client(server)
        conn = client.realtime.connect(model="tiny").enter()
        assert conn.recv().type == "session.created"
        conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24k(SHORT[0])).decode()})
        conn.send({"type": "input_audio_buffer.commit"})
        while conn.recv().type != "conversation.item.input_audio_transcription.completed":
            pass
        conn.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm24k(SHORT[1])).decode()})
        results: dict = {}
        threads = [_post_in_thread(server, name, results, name) for name in LONG]
        assert wait_for(lambda: health(server)["queued_requests"] == len(LONG))
        server.proc.send_signal(signal.SIGINT)
        for thread in threads:
            thread.join(90)
        assert server.proc.wait(60) == 0, server.output()
        refused = [r for r in results.values() if r.status_code == 503]
        assert refused and all(r.status_code in (200, 503) for r in results.values())
        for response in refused:
            assert response.json()["error"] == {"message": "the server is stopping", "type": "server_error",
                                                "param": None, "code": "server_stopping"}
        assert _upload_folders(server) == []
        assert "terminate called" not in server.output() and "Traceback" not in server.output()
        conn.close()
    finally:
        server.stop()


def _b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def test_a_large_append_takes_turns_with_other_work(pair_server, trained_model):
    """39 s of audio in one append: the session decodes it in bounded calls, so an HTTP
    request sent meanwhile is answered long before the session is done (it used to wait for
    the whole append). Delta events come only when the text changes (issue: mostly empty ones)."""
    client = openai_client(pair_server)
    short = {}

    def short_request() -> None:
        started = time.monotonic()
        short["text"] = transcribe(client, SHORT[2]).text
        short["seconds"] = time.monotonic() - started

    with client.realtime.connect(model="tiny") as conn:
        assert conn.recv().type == "session.created"
        started = time.monotonic()
        conn.send({"type": "input_audio_buffer.append", "audio": _b64(pcm24k(LONG[0]))})
        conn.send({"type": "input_audio_buffer.commit"})
        time.sleep(0.3)
        thread = threading.Thread(target=short_request)
        thread.start()
        deltas = []
        while True:
            event = conn.recv()
            if event.type == "conversation.item.input_audio_transcription.delta":
                deltas.append((event.delta, event.model_extra.get("partial")))
            elif event.type == "conversation.item.input_audio_transcription.completed":
                break
            assert event.type != "error", event
        session_seconds = time.monotonic() - started
        thread.join(60)
    assert short["text"] == trained_model.transcribe(HELDOUT / SHORT[2]).text
    assert short["seconds"] < 0.5 * session_seconds, (short["seconds"], session_seconds)
    assert "".join(d for d, _ in deltas) == event.transcript and event.transcript
    previous = ""
    for delta, partial in deltas:   # every delta event says something new
        assert delta or partial != previous
        previous = partial


def test_an_oversized_append_is_an_error_event(pair_server, trained_model):
    from mlx_qwen_asr.frontends.server.realtime import MAX_APPEND_BYTES

    with openai_client(pair_server).realtime.connect(model="tiny") as conn:
        assert conn.recv().type == "session.created"
        conn.send({"type": "input_audio_buffer.append", "audio": _b64(b"\0" * (MAX_APPEND_BYTES + 2))})
        event = conn.recv()
        assert event.type == "error" and event.error.code == "audio_too_large"
        assert f"at most {MAX_APPEND_BYTES} bytes" in event.error.message
        conn.send({"type": "input_audio_buffer.append", "audio": _b64(pcm24k(SHORT[3]))})
        conn.send({"type": "input_audio_buffer.commit"})
        while (event := conn.recv()).type != "conversation.item.input_audio_transcription.completed":
            assert event.type != "error", event
        assert event.transcript


def test_a_short_request_is_not_held_up_by_a_long_file(tmp_path_factory, trained_checkpoint, trained_model, tmp_path):
    """--batch-size 1, a ~2 min file (4 segments) sent first and a short one right after:
    the short one is answered after at most the long file's first segment (it used to wait
    for all of them: the oldest request was always served first)."""
    import soundfile as sf

    long_path = tmp_path / "long.wav"
    sf.write(long_path, np.concatenate([load_audio(HELDOUT / name) for name in LONG]), 16000)
    server = start(tmp_path_factory, trained_checkpoint, "--batch-size", "1")
    try:
        done: list[str] = []
        results: dict = {}

        def send(label: str, path: Path) -> None:
            with open(path, "rb") as f:
                results[label] = openai_client(server).audio.transcriptions.create(model="tiny", file=(path.name, f))
            done.append(label)

        first = threading.Thread(target=send, args=("long", long_path))
        first.start()
        assert wait_for(lambda: health(server)["queued_requests"] == 1)
        second = threading.Thread(target=send, args=("short", HELDOUT / SHORT[4]))
        second.start()
        first.join(120)
        second.join(120)
        assert done == ["short", "long"]
        assert results["short"].text == trained_model.transcribe(HELDOUT / SHORT[4]).text
        assert results["long"].text == trained_model.transcribe(long_path).text
    finally:
        server.stop()
