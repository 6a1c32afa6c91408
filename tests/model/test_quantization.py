"""Quantized models: the recipes keep the float model's choices, and convert/load round-trips.

Teacher forcing: the float32 model's greedy continuation is fed to every model and the
argmax at each of 64 positions is compared with float32's. Tiny dims (64/128 wide) take
group size 32 or 64.

A random tiny model is a harsh judge: its 151,936 logits are near-Gaussian (std ~1), so the
float32 top-1 leads the runner-up by a median of only ~0.12, where a trained model's choice
is decisive. 8-bit disagrees only at such near-ties (float32 gap < 0.05); 4-bit, at tiny
width (64), changes logits by ~25 % and agrees at ~50-56 % here (docs/performance-lab-notes.md).
The gates below are what this model supports, not the 99 % / 95 % targets for real weights.
"""

import json

import mlx.core as mx
import numpy as np
import pytest

from mlx_qwen_asr.convert import convert
from mlx_qwen_asr.decoding import greedy_decode
from mlx_qwen_asr.model.encoder import audio_token_count
from mlx_qwen_asr.model.loading import load_network
from mlx_qwen_asr.audio.mel import log_mel_spectrogram
from mlx_qwen_asr.model.quantization import QuantizationSpec
from mlx_qwen_asr.transcribe import ASRModel

from support.audio_samples import speech
from support.teacher_forcing import teacher_forced_logits

POSITIONS = 64


@pytest.fixture(scope="module")
def reference(tiny_checkpoint_fp32):
    return ASRModel.load(tiny_checkpoint_fp32, dtype="float32")


@pytest.fixture(scope="module")
def forced(reference):
    """Prompt ids and embeddings input for 6 s of speech, plus float32's greedy continuation."""
    audio = speech(6.0)
    mel = log_mel_spectrogram(audio, reference.config.audio.num_mel_bins)
    ids = reference.prompt_ids(audio_token_count(mel.shape[1]))
    continuation = greedy_decode(reference.network, reference.network.embed_prompt(ids, reference.network.encode_audio(mel)),
                                 POSITIONS, eos_ids=(), guard=None).tokens
    return mel, ids, continuation


def agreement(network, reference, forced) -> tuple[float, float]:
    """(exact argmax agreement, largest float32 logit gap at a disagreement)."""
    mel, ids, continuation = forced
    ours = teacher_forced_logits(network, mel, ids, continuation).argmax(-1)
    expected_logits = teacher_forced_logits(reference.network, mel, ids, continuation)
    expected = expected_logits.argmax(-1)
    assert expected.tolist() == continuation  # teacher forcing reproduces greedy decoding
    rows = np.arange(len(expected))
    gaps = expected_logits[rows, expected] - expected_logits[rows, ours]
    return float(np.mean(ours == expected)), float(gaps.max())


@pytest.mark.parametrize("group_size", [32, 64])
def test_8bit_disagrees_only_at_near_ties(tiny_checkpoint_fp32, reference, forced, group_size):
    network = load_network(tiny_checkpoint_fp32, reference.config, mx.float32,
                           quantize=QuantizationSpec(bits=8, group_size=group_size))
    exact, worst_gap = agreement(network, reference, forced)
    assert exact >= 0.9
    assert worst_gap < 0.05


def test_4bit_stays_close(tiny_checkpoint_fp32, reference, forced):
    network = load_network(tiny_checkpoint_fp32, reference.config, mx.float32,
                           quantize=QuantizationSpec(bits=4, group_size=32))
    exact, _ = agreement(network, reference, forced)
    assert exact >= 0.45


def test_policy_keeps_encoder_at_8_bits_and_conv_float(tiny_checkpoint_fp32, reference):
    network = load_network(tiny_checkpoint_fp32, reference.config, mx.float32,
                           quantize=QuantizationSpec(bits=4, group_size=32))
    assert network.audio_tower.layers[0].fc1.bits == 8
    assert network.audio_tower.conv2d2.weight.dtype == mx.float32
    assert network.decoder.layers[0].mlp.down_proj.bits == 4
    assert network.decoder.embed_tokens.bits == 8
    with pytest.raises(ValueError):
        QuantizationSpec(bits=4, encoder_bits=4)


@pytest.mark.parametrize("bits", [None, 8])
def test_converted_directory_loads_as_stored(tmp_path, tiny_checkpoint_fp32, reference, forced, bits):
    out = convert(tiny_checkpoint_fp32, tmp_path / "converted", bits=bits, group_size=32, dtype="float32")
    config = json.loads((out / "config.json").read_text())
    assert config["mlx_qwen_asr"]["layout"] == "mlx"
    assert ("quantization" in config) == (bits is not None)
    loaded = ASRModel.load(out, dtype="float32")
    if bits is None:  # float conversion is exact
        mel, ids, continuation = forced
        assert teacher_forced_logits(loaded.network, mel, ids, continuation).argmax(-1).tolist() == continuation
    else:
        in_memory = load_network(tiny_checkpoint_fp32, reference.config, mx.float32,
                                 quantize=QuantizationSpec(bits=bits, group_size=32))
        for (name, a), (_, b) in zip(sorted(_flat(loaded.network)), sorted(_flat(in_memory))):
            assert np.array_equal(np.array(a), np.array(b)), name
    assert loaded.tokenizer.encode("hello world") == reference.tokenizer.encode("hello world")


def _flat(network):
    from mlx.utils import tree_flatten
    return tree_flatten(network.parameters())


def test_converted_directory_stores_the_checkpoint_names(tmp_path, tiny_checkpoint_fp32):
    """The network's `decoder.*` is stored as the checkpoint's `model.*` (minus `thinker.`),
    so directories converted before the module was named `decoder` load the same."""
    out = convert(tiny_checkpoint_fp32, tmp_path / "converted", bits=8, group_size=32, dtype="float32")
    names = set(mx.load(str(out / "model.safetensors")))
    assert "model.layers.0.mlp.down_proj.scales" in names and "model.embed_tokens.weight" in names
    assert not any(name.startswith("decoder.") for name in names)
    loaded = ASRModel.load(out, dtype="float32")
    assert loaded.network.decoder.layers[0].mlp.down_proj.bits == 8


def test_load_with_quantize_through_the_public_api(tiny_checkpoint_fp32, reference, forced):
    from mlx_qwen_asr import load_model

    model = ASRModel.load(tiny_checkpoint_fp32, dtype="float32", quantize=8)
    assert model.quantize == 8 and "quantize=8" in repr(model)
    assert model.network.decoder.layers[0].mlp.down_proj.bits == 8
    result = model.transcribe(speech(3.0), sample_rate=16000, max_new_tokens=12,
                              repetition_guard=False, recover_loops=False)
    assert 0 < len(result.tokens) <= 12 and isinstance(result.text, str)
    # A random model's free-running tokens part at its first near-tie (often within a few
    # tokens), so agreement with float32 is judged position by position under teacher forcing.
    exact, worst_gap = agreement(model.network, reference, forced)
    assert exact >= 0.9 and worst_gap < 0.05
    assert load_model(tiny_checkpoint_fp32, "float32", 8).quantize == 8
    assert load_model(tiny_checkpoint_fp32, "float32").quantize is None  # not the cached 8-bit one
    with pytest.raises(ValueError):
        ASRModel.load(tiny_checkpoint_fp32, quantize=3)


def test_low_memory_preset_picks_this_devices_recipe(tmp_path, tiny_checkpoint_fp32, capsys, monkeypatch):
    """On the CPU backend: 8-bit decoder (encoder and head at 8) with float32 compute; an
    already quantized directory is taken as it is; the CLI flag loads the same recipe."""
    import soundfile as sf

    from mlx_qwen_asr.frontends.cli import main
    from mlx_qwen_asr.model.loading import LOW_MEMORY_BITS, low_memory_settings

    expected_bits = LOW_MEMORY_BITS["cpu" if mx.default_device() == mx.cpu else "gpu"]
    model = ASRModel.load(tiny_checkpoint_fp32, low_memory=True)
    assert model.quantize == expected_bits
    assert model.network.decoder.layers[0].mlp.down_proj.bits == expected_bits
    # Segments are decoded one at a time (each batch row would hold its own cache).
    from mlx_qwen_asr import batch
    sizes = []
    original = batch.decode_jobs
    monkeypatch.setattr(batch, "decode_jobs", lambda m, jobs, o: sizes.append(len(jobs)) or original(m, jobs, o))
    model.transcribe(speech(3.0), sample_rate=16000, segment_seconds=1.0, max_new_tokens=2)
    assert len(sizes) >= 2 and set(sizes) == {1}
    assert low_memory_settings("bfloat16", 4) == ("bfloat16", 4)   # explicit choices win
    out = convert(tiny_checkpoint_fp32, tmp_path / "q4", bits=4, group_size=32, dtype="float32")
    stored = ASRModel.load(out, low_memory=True)
    assert stored.quantize is None and stored.network.decoder.layers[0].mlp.down_proj.bits == 4
    audio = tmp_path / "a.wav"
    sf.write(audio, speech(2.0), 16000)
    assert main([str(audio), "--model", str(tiny_checkpoint_fp32), "--low-memory", "--max-new-tokens", "3"]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("bits", [4, 8])
def test_quantize_at_load_equals_quantizing_the_loaded_float_model(tiny_checkpoint_fp32, reference, bits):
    """Weights are quantized as they are read (the float model is never whole in memory):
    the very arrays of quantizing the loaded float model afterwards."""
    from mlx.utils import tree_flatten

    from mlx_qwen_asr.model.quantization import quantize_network

    as_read = load_network(tiny_checkpoint_fp32, reference.config, mx.float32, quantize=bits)
    after = load_network(tiny_checkpoint_fp32, reference.config, mx.float32)
    quantize_network(after, QuantizationSpec(bits=bits))
    a, b = dict(tree_flatten(as_read.parameters())), dict(tree_flatten(after.parameters()))
    assert a.keys() == b.keys() and any(k.endswith(".scales") for k in a)
    for name in a:
        assert np.array_equal(np.array(a[name]), np.array(b[name])), name
