"""A language set of one decodes as forcing it; a set of several lets the model choose within it (0.6B dims).

On a random-weight checkpoint at 0.6B dims:

    python -m mlx_qwen_asr.testing.random_checkpoint /tmp/random-0.6b --size 0.6b
    python scripts/language_set_check.py --model /tmp/random-0.6b

Offline and batched, 32 greedy tokens of an 11 s and a 6 s held-out clip, for English and
Chinese: `language=["en"]` must give the tokens of `language="en"`. Then `language=
["zh", "de", "fr"]`: each segment's header must be one of those. Exit status 1 if not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.heldout import HELDOUT  # noqa: E402

from mlx_qwen_asr import ASRModel  # noqa: E402
from mlx_qwen_asr.audio.load import load_audio  # noqa: E402

SETTINGS = {"max_new_tokens": 32, "repetition_guard": False, "recover_loops": False, "sample_rate": 16000}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory (random 0.6B dims)")
    args = parser.parse_args(argv)
    model = ASRModel.load(args.model)
    audio = np.concatenate([load_audio(HELDOUT / "long_01.flac"), load_audio(HELDOUT / "long_02.flac")])
    clips = [audio[:11 * 16000], audio[16000:7 * 16000]]
    failures = 0
    for language in ("English", "Chinese"):
        forced = [model.transcribe(clip, language=language, **SETTINGS) for clip in clips]
        for way, results in (("offline", [model.transcribe(clip, language=[language], **SETTINGS) for clip in clips]),
                             ("batched", model.transcribe_many(clips, language=[language], batch_size=2, **SETTINGS))):
            same = all(a.tokens == b.tokens for a, b in zip(forced, results))
            failures += not same
            print(f"{language:8} set of one, {way:8}: {'identical' if same else 'DIFFERENT'} tokens "
                  f"({[len(r.tokens) for r in results]} tokens)")
    names = ("Chinese", "German", "French")
    headers = [model.header_tokens(name) for name in names]
    for way, results in (("offline", [model.transcribe(clip, language=list(names), **SETTINGS) for clip in clips]),
                         ("batched", model.transcribe_many(clips, language=list(names), batch_size=2, **SETTINGS))):
        chosen = [next((n for n, h in zip(names, headers) if r.tokens[:len(h)] == h), None) for r in results]
        failures += None in chosen
        print(f"set {','.join(names)}, {way}: headers chosen {chosen}")
    print("ok" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
