"""Voice-activity detection on noisy audio, and what --skip-silence saves.

    python scripts/vad_bench.py --compare     # WebRTC's VAD (the one used) vs an energy detector
    python scripts/vad_bench.py --wall        # 10 min, half silence+noise: wall time with and without

--compare joins the trained fixture's 28 held-out clips with 2-8 s gaps of silence and noise
(tests/fixtures/heldout, mlx_qwen_asr/testing/noisy_audio.py) at several noise levels and
reports, for each detector, the share of words (words.json times) wholly inside the kept
spans (must be 100 %) and the share of the audio kept (lower saves more).
--wall transcribes a 10-minute file built the same way (about half non-speech) with the
trained fixture model, with and without skip_silence, and compares the texts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.heldout import HELDOUT, TRAINED_MODEL, rows, word_times  # noqa: E402

from mlx_qwen_asr.testing.noisy_audio import with_gaps  # noqa: E402
from mlx_qwen_asr.audio.vad import VadOptions, frames_to_spans, speech_spans  # noqa: E402


def energy_spans(audio, threshold_db=9.0, max_flatness=0.5, options=VadOptions()):
    """The alternative measured: 30 ms frames are speech when their energy stands
    `threshold_db` above the noise floor (10th percentile of the audible frames' energies)
    and their spectrum is not flat (white-ish noise has flatness near 1)."""
    frame = int(options.frame_seconds * 16000)
    count = len(audio) // frame
    frames = np.asarray(audio[:count * frame], np.float64).reshape(count, frame)
    energy = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    power = np.abs(np.fft.rfft(frames * np.hanning(frame), axis=1)) ** 2 + 1e-12
    flatness = np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)
    audible = energy[energy > -90.0]
    floor = float(np.percentile(audible, 10)) if len(audible) else -60.0
    speech = (energy > max(floor + threshold_db, -60.0)) & (flatness < max_flatness)
    return frames_to_spans(speech, len(audio), options)


def noisy_set(noise_db, background_db, seed=0):
    clips = [r["file"] for r in rows()]
    times = word_times()
    rng = np.random.default_rng(seed)
    gaps = list(rng.uniform(2, 8, len(clips)))
    audio, starts = with_gaps([sf.read(HELDOUT / f, dtype="float32")[0] for f in clips], gaps,
                              noise_db=noise_db, background_db=background_db, seed=seed)
    words = [(s + a, s + b) for f, s in zip(clips, starts) for _, a, b in times[f]]
    return audio, words


def score(spans, words, total):
    inside = sum(any(a * 16000 >= s and b * 16000 <= e for s, e in spans) for a, b in words)
    kept = sum(e - s for s, e in spans) / total
    return inside / len(words), kept


def compare():
    print(f"{'noise between / under (dBFS)':<30}{'detector':<20}{'words kept':>11}{'audio kept':>11}{'ms/min':>8}")
    for noise_db, background_db in ((-50, None), (-40, None), (-30, None), (-40, -50), (-35, -40)):
        audio, words = noisy_set(noise_db, background_db)
        detectors = [("energy", energy_spans)]
        detectors += [(f"webrtc {k}", lambda a, k=k: speech_spans(a, VadOptions(aggressiveness=k))) for k in (0, 2, 3)]
        for name, detect in detectors:
            start = time.perf_counter()
            spans = detect(audio)
            cost = (time.perf_counter() - start) * 1000 / (len(audio) / 16000 / 60)
            recall, kept = score(spans, words, len(audio))
            label = f"{noise_db} / {background_db if background_db is not None else '-'}"
            print(f"{label:<30}{name:<20}{recall:>10.1%}{kept:>11.1%}{cost:>8.1f}")


def wall():
    from mlx_qwen_asr import ASRModel
    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact
    from mlx_qwen_asr.testing.wer import wer

    model = ASRModel.load(expand_compact(TRAINED_MODEL, Path("/tmp/vad-bench-model")), dtype="float32")
    table = rows()
    clips = [sf.read(HELDOUT / r["file"], dtype="float32")[0] for r in table]
    texts = [r["text"] for r in table]
    picked, speech = [], 0.0
    while speech < 300:   # clips in turn until 5 minutes of speech
        picked.append(len(picked) % len(clips))
        speech += len(clips[picked[-1]]) / 16000
    clips, texts = [clips[i] for i in picked], [texts[i] for i in picked]
    rng = np.random.default_rng(1)
    gaps = list(rng.uniform(0.5, 1.5, len(clips)))
    gaps = [g * (600 - speech) / sum(gaps) for g in gaps]   # the rest of 10 min: gaps
    audio, _ = with_gaps(clips, gaps, noise_db=-40, background_db=None, seed=1)
    reference = " ".join(texts)
    print(f"audio {len(audio) / 16000:.1f} s, speech {speech:.1f} s")
    for skip in (False, True):
        start = time.perf_counter()
        result = model.transcribe(audio, sample_rate=16000, skip_silence=skip)
        seconds = time.perf_counter() - start
        print(f"skip_silence={skip!s:<5} wall {seconds:6.1f} s  WER vs reference {wer([reference], [result.text]):.4f}"
              f"  words {len(result.text.split())}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--wall", action="store_true")
    args = parser.parse_args()
    if args.compare or not args.wall:
        compare()
    if args.wall:
        wall()
