"""Session fixtures: Qwen3-ASR checkpoints in the Hugging Face layout, random-weight ones
built here and the trained fixtures (tests/support/heldout.py) written out from their compact form.

Built once per test session into pytest's temporary directory (well under a second
each). The tokenizer is the real Qwen vocabulary when ../shared is present, otherwise a
synthesized byte-level BPE with the special tokens on their real ids.

`official_engine` is the official implementation's worker process, one per session, in
an environment of its own that the first run creates (mlx_qwen_asr/testing/official_env.py).

Markers (registered in pyproject.toml), set here rather than test by test: `official` on
every test that needs a reference implementation's worker (the official engine, or the
original diarization networks), `browser` on those that drive Chromium, `slow` on the
modules and tests listed in SLOW. While
editing, `python -m pytest -m "not slow and not official"` runs the rest (README, Tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_qwen_asr.testing.random_checkpoint import model_config_dict, random_weights, write_checkpoint


# Fixtures that start a reference implementation's worker: tests using them are `official`.
REFERENCE_WORKERS = {"official_engine", "originals"}

# Fixtures that drive a headless Chromium: tests using them are `browser`.
BROWSERS = {"chromium", "browser"}

# `slow`: over ~5 s each on 2 CPU cores (pytest --durations), by module or by test.
SLOW = {
    # whole modules: command lines, servers, clusters and pipelines run end to end
    "test_fixture_pipelines.py", "test_fixture_model.py", "test_peer_checkpoints.py", "test_gpu_check.py",
    "test_gpu_bundle.py", "test_server.py", "test_server_faults.py", "test_server_page.py",
    "test_server_listen.py", "test_cluster.py", "test_cli_usage.py", "test_cli_flags.py", "test_readme.py",
    "test_bad_input.py", "test_diarization_real.py", "test_streaming.py",
    # single tests
    "test_confidence.py::test_the_default_gate_keeps_the_held_out_speech",
    "test_confidence.py::test_unsure_noisy_speech_keeps_its_text",
    "test_word_timestamps.py::test_streamed_committed_text_gets_word_times",
    "test_batching.py::test_long_file_segments_batched_equal_one_by_one",
    "test_cli.py::test_stream_fast_prints_the_final_text",
    "test_language_sets.py::test_a_set_with_the_detected_language_keeps_the_detected_transcript",
    "test_official_env.py::test_a_failed_creation_is_one_line_and_is_retried",
    "test_official_env.py::test_parallel_runs_create_the_env_once_and_reuse_it",
    "test_dictation.py::test_printed_utterances_are_their_offline_transcripts",
    "test_server_worker.py::test_a_long_file_does_not_starve_a_short_one",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REFERENCE_WORKERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.official)
        if BROWSERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.browser)
        module = item.path.name
        if module in SLOW or f"{module}::{getattr(item, 'originalname', item.name)}" in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _reference_workers_only_through_their_fixtures(request, monkeypatch):
    """A test that reaches a reference worker without its fixture would escape the
    `official` marker (and the one-line error if the worker's environment cannot be made)."""
    if request.node.get_closest_marker("official") is None:
        from mlx_qwen_asr.testing import diarization_reference, official

        def refuse(*args, **kwargs):
            pytest.fail("this test uses a reference worker: request the official_engine (or originals) "
                        "fixture, which also marks it `official`", pytrace=False)

        monkeypatch.setattr(official, "worker", refuse)
        monkeypatch.setattr(diarization_reference, "worker", refuse)


@pytest.fixture(scope="session")
def tiny_config_and_weights() -> tuple[dict, dict]:
    """config.json dict and float32 weights of the tiny model (seed 0)."""
    config = model_config_dict("tiny")
    return config, random_weights(config, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_config_and_weights) -> Path:
    """Tiny random checkpoint stored in bfloat16, like the published ones."""
    config, weights = tiny_config_and_weights
    return write_checkpoint(tmp_path_factory.mktemp("tiny-bf16"), config, weights, dtype="bfloat16")


@pytest.fixture(scope="session")
def tiny_checkpoint_fp32(tmp_path_factory, tiny_config_and_weights) -> Path:
    """The same weights stored in float32: parity tests compare without bf16 rounding."""
    config, weights = tiny_config_and_weights
    return write_checkpoint(tmp_path_factory.mktemp("tiny-fp32"), config, weights, dtype="float32")


@pytest.fixture(scope="session")
def model(tiny_checkpoint_fp32):
    """The tiny random model in float32, loaded once for every module that transcribes with
    it (a module needing another model defines its own `model`)."""
    from mlx_qwen_asr import ASRModel

    return ASRModel.load(tiny_checkpoint_fp32, dtype="float32")


@pytest.fixture(scope="session")
def synthetic_tokenizer_checkpoint(tmp_path_factory, tiny_config_and_weights) -> Path:
    """Tiny bf16 checkpoint whose tokenizer is always the synthesized one."""
    config, weights = tiny_config_and_weights
    return write_checkpoint(tmp_path_factory.mktemp("tiny-synth-tok"), config, weights,
                            dtype="bfloat16", tokenizer_source=False)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """The tiny trained fixture model (tests/support/heldout.py) as a Hugging Face folder, bf16."""
    from support.heldout import TRAINED_MODEL

    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

    return expand_compact(TRAINED_MODEL, tmp_path_factory.mktemp("tiny-trained"))


@pytest.fixture(scope="session")
def trained_model(trained_checkpoint):
    """The trained fixture model in float32, shared by the modules that test with it."""
    from mlx_qwen_asr import ASRModel

    return ASRModel.load(trained_checkpoint, dtype="float32")


@pytest.fixture(scope="session")
def trained_offline(trained_model) -> dict:
    """file -> the trained model's offline transcription (default settings) of each held-out clip."""
    from support.heldout import HELDOUT, rows

    return {r["file"]: trained_model.transcribe(HELDOUT / r["file"]) for r in rows()}


@pytest.fixture(scope="session")
def trained_aligner(tmp_path_factory) -> Path:
    """The tiny trained forced-aligner fixture (tests/support/heldout.py) as a Hugging Face folder."""
    from support.heldout import TRAINED_ALIGNER

    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

    return expand_compact(TRAINED_ALIGNER, tmp_path_factory.mktemp("tiny-aligner"))


@pytest.fixture(scope="session")
def official_engine(request):
    """The official engine (torch, qwen-asr) out of process; the first run creates its
    environment (minutes, announced), later runs reuse it. Failing that: one line."""
    from mlx_qwen_asr.testing import official, official_env

    capture = request.config.pluginmanager.getplugin("capturemanager")

    def announce(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    try:
        worker = official.worker(announce)
    except official_env.OfficialEnvError as error:
        pytest.fail(str(error), pytrace=False)
    yield worker
    official.stop_worker()
