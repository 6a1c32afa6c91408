"""Session fixtures: Qwen3-ASR checkpoints in the Hugging Face layout, random-weight ones
built here and the trained fixtures (tests/heldout.py) written out from their compact form.

Built once per test session into pytest's temporary directory (well under a second
each). The tokenizer is the real Qwen vocabulary when ../shared is present, otherwise a
synthesized byte-level BPE with the special tokens on their real ids.

`official_engine` is the official implementation's worker process, one per session, in
an environment of its own that the first run creates (mlx_qwen_asr/testing/official_env.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mlx_qwen_asr.testing.random_checkpoint import model_config_dict, random_weights, write_checkpoint


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
def synthetic_tokenizer_checkpoint(tmp_path_factory, tiny_config_and_weights) -> Path:
    """Tiny bf16 checkpoint whose tokenizer is always the synthesized one."""
    config, weights = tiny_config_and_weights
    return write_checkpoint(tmp_path_factory.mktemp("tiny-synth-tok"), config, weights,
                            dtype="bfloat16", tokenizer_source=False)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory) -> Path:
    """The tiny trained fixture model (tests/heldout.py) as a Hugging Face folder, bf16."""
    from heldout import TRAINED_MODEL

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
    from heldout import HELDOUT, rows

    return {r["file"]: trained_model.transcribe(HELDOUT / r["file"]) for r in rows()}


@pytest.fixture(scope="session")
def trained_aligner(tmp_path_factory) -> Path:
    """The tiny trained forced-aligner fixture (tests/heldout.py) as a Hugging Face folder."""
    from heldout import TRAINED_ALIGNER

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
