"""The server's worker thread: scheduling by segment, results equal to transcribe, dropped work."""

from __future__ import annotations

import threading

import pytest

from mlx_qwen_asr.audio.blocks import open_audio_blocks
from mlx_qwen_asr.options import TranscribeOptions
from mlx_qwen_asr.audio.cutting import iter_pieces
from mlx_qwen_asr.frontends.server.worker import CancelledJob, Job, QueueFull, Worker
from mlx_qwen_asr.transcribe import ASRModel

from support.heldout import HELDOUT, rows

OPTIONS = TranscribeOptions(segment_seconds=5.0)   # a long clip becomes many segments


@pytest.fixture(scope="module")
def worker(trained_checkpoint):
    # The model is loaded on the worker's own thread, as the server does.
    worker = Worker(lambda: ASRModel.load(trained_checkpoint, dtype="float32"), batch_size=2, max_jobs=3)
    worker.start()
    worker.ready.wait()
    yield worker
    worker.stop()


def job(name: str, options: TranscribeOptions = OPTIONS) -> Job:
    stream = open_audio_blocks(str(HELDOUT / name))
    return Job(list(iter_pieces(stream.blocks, options.segment_seconds)), stream.duration, options)


def test_a_long_file_does_not_starve_a_short_one(worker, trained_model):
    long_name = [r["file"] for r in rows() if r["kind"] == "long"][0]
    short_name = [r["file"] for r in rows() if r["kind"] == "short"][0]
    order = []
    gate = threading.Event()
    worker.call(lambda _m: gate.wait(30))   # holds the worker until both jobs are queued
    long_job, short_job = job(long_name), job(short_name)
    assert len(long_job.pieces) >= 6
    long_future, short_future = worker.submit(long_job), worker.submit(short_job)
    long_future.add_done_callback(lambda _f: order.append("long"))
    short_future.add_done_callback(lambda _f: order.append("short"))
    gate.set()
    long_result, short_result = long_future.result(60), short_future.result(60)
    assert order == ["short", "long"]
    assert long_result.text == trained_model.transcribe(HELDOUT / long_name, OPTIONS).text
    assert short_result.text == trained_model.transcribe(HELDOUT / short_name, OPTIONS).text
    assert [(s.start, s.end) for s in long_result.segments] == [
        (s.start, s.end) for s in trained_model.transcribe(HELDOUT / long_name, OPTIONS).segments]


def test_cancelled_work_is_dropped_and_the_queue_is_bounded(worker):
    long_name = [r["file"] for r in rows() if r["kind"] == "long"][1]
    gate = threading.Event()
    worker.call(lambda _m: gate.wait(30))
    jobs = [job(long_name) for _ in range(3)]
    futures = [worker.submit(j) for j in jobs]
    with pytest.raises(QueueFull):
        worker.submit(job(long_name))
    before = len(worker.batches)
    for j in jobs:
        j.cancel()
    gate.set()
    for future in futures:
        with pytest.raises(CancelledJob):
            future.result(60)
    assert len(worker.batches) == before   # nothing of theirs was decoded
    assert worker.outstanding == 0


def test_a_failing_call_does_not_stop_the_worker(worker):
    with pytest.raises(ZeroDivisionError):
        worker.call(lambda _m: 1 / 0).result(30)
    assert worker.call(lambda model: model.config.eos_token_ids).result(30)


def test_a_batch_waits_for_as_many_segments_as_the_last_one(trained_checkpoint):
    """After a batch of 3, a lone arrival waits (up to gather_seconds) for two more: the
    three requests sent 0.3 s apart are decoded as one batch, not three."""
    worker = Worker(lambda: ASRModel.load(trained_checkpoint, dtype="float32"), batch_size=4, gather_seconds=20)
    worker.start()
    worker.ready.wait()
    try:
        shorts = [r["file"] for r in rows() if r["kind"] == "short"][:3]
        gate, holding = threading.Event(), threading.Event()
        worker.call(lambda _m: holding.set() or gate.wait(30))
        holding.wait(30)   # the worker is in the call: the three jobs queue up together
        first = [worker.submit(job(name)) for name in shorts]
        gate.set()
        for future in first:
            future.result(60)
        assert worker.batches == [3]
        second = [worker.submit(job(shorts[0]))]
        for name in shorts[1:]:
            threading.Event().wait(0.3)
            second.append(worker.submit(job(name)))
        for future in second:
            future.result(60)
        assert worker.batches == [3, 3]
    finally:
        worker.stop()


def test_a_fault_in_a_turn_answers_its_jobs_and_the_worker_goes_on(worker, trained_model):
    """Whatever goes wrong inside the loop, the waiting requests get the error (they used to
    hang when the thread died) and the next request is served."""
    short_name = [r["file"] for r in rows() if r["kind"] == "short"][0]
    pick = worker._pick
    worker._pick = lambda: (_ for _ in ()).throw(RuntimeError("a fault in the scheduler"))
    try:
        with pytest.raises(RuntimeError, match="a fault in the scheduler"):
            worker.submit(job(short_name)).result(30)
    finally:
        worker._pick = pick
    assert worker.alive and worker.outstanding == 0
    assert worker.submit(job(short_name)).result(60).text == trained_model.transcribe(HELDOUT / short_name, OPTIONS).text
