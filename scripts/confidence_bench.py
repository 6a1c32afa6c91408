"""Does confidence mean something, what does it cost, and what does the no-speech gate drop?

    python scripts/confidence_bench.py                          # AUROC and the gate, trained fixture
    python scripts/confidence_bench.py --cost-model DIR         # + cost per token at DIR's dims
    python scripts/confidence_bench.py --no-quality --recordings   # speech heard in ../shared's recordings
    python -m mlx_qwen_asr.testing.random_checkpoint DIR --size 0.6b   # (a random 0.6B checkpoint)

AUROC: the trained fixture (tests/fixtures/tiny_asr.npz) transcribes its 28 held-out clips,
clean and under white, pink and 50 Hz hum noise (mlx_qwen_asr/testing/noisy_audio.py) at
`--snr` dB; each written word is matched to the reference by a word-level edit alignment
(correct: matched to the same word); the AUROC says how often a correct word has a higher
probability than a wrong one (1: always, 0.5: chance).

Gate: every speech segment's no_speech_prob and avg_logprob, clean and noisy, and those of
noise-only inputs (white, pink, hum at several levels, a 1 kHz sine of 3 s and a beep of
1 s and, when ../shared is there, its recorded white noise and sine; "room tone": brown
noise with a faint hum), and which of them the default gate (confidence.py) drops or
leaves with text: the whole gate, and Whisper's part of it alone (`min_speech_seconds=None`,
the audio not listened to). With each, the seconds of speech the speech-activity network
(speech_presence.py) hears: for speech segments, those whose text is unsure (the only ones
it is asked about). Its cost: the time of one 10 s window, and how many windows the held-out
runs asked for.

Cost: `--cost-model DIR`: decode steps (network forward of one token and the argmax) timed
in pairs, one with the scores (decoding.token_scores) and one without, in alternating
order, and the scores alone on logits of the vocabulary's size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.heldout import HELDOUT, TRAINED_MODEL, rows  # noqa: E402

from mlx_qwen_asr import ASRModel  # noqa: E402
from mlx_qwen_asr.audio.load import load_audio  # noqa: E402
from mlx_qwen_asr.confidence import (DEFAULT_LOGPROB_THRESHOLD, DEFAULT_MIN_SPEECH_SECONDS,  # noqa: E402
                                     DEFAULT_NO_SPEECH_THRESHOLD, is_no_speech)
from mlx_qwen_asr.speech_presence import speech_seconds  # noqa: E402
from mlx_qwen_asr.testing.compact_checkpoint import expand_compact  # noqa: E402
from mlx_qwen_asr.testing.noisy_audio import NOISE_KINDS, noise  # noqa: E402
from mlx_qwen_asr.testing.wer import normalize  # noqa: E402

SHARED_AUDIO = ROOT.parent / "shared" / "data" / "audio"
DEFAULTS = (DEFAULT_NO_SPEECH_THRESHOLD, DEFAULT_LOGPROB_THRESHOLD)


def aligned_correct(reference: list[str], hypothesis: list[str]) -> list[bool]:
    """For each hypothesis word: does a minimum-edit alignment match it to the same reference word?"""
    n, m = len(reference), len(hypothesis)
    cost = np.zeros((n + 1, m + 1), int)
    cost[:, 0], cost[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(cost[i - 1, j] + 1, cost[i, j - 1] + 1,
                             cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]))
    correct = [False] * m
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i, j] == cost[i - 1, j - 1] + (reference[i - 1] != hypothesis[j - 1]):
            correct[j - 1] = reference[i - 1] == hypothesis[j - 1]
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i, j - 1] + 1:
            j -= 1
        else:
            i -= 1
    return correct


def auroc(positive: list[float], negative: list[float]) -> float:
    """P(a positive's score > a negative's), ties counting half (Mann-Whitney)."""
    if not positive or not negative:
        return float("nan")
    p, q = np.array(positive)[:, None], np.array(negative)[None, :]
    return float(((p > q).sum() + 0.5 * (p == q).sum()) / (p.size * q.size))


def scored_words(result, reference: str) -> list[tuple[float, bool]]:
    """(probability, correct) of each written word (punctuation-only words skipped)."""
    words = [(normalize(w.word), w.probability) for w in result.word_probabilities]
    words = [(" ".join(n), p) for n, p in words if n]
    correct = aligned_correct(normalize(reference), [w for w, _ in words])
    return [(p, ok) for (_, p), ok in zip(words, correct)]


def with_noise(clip: np.ndarray, kind: str, snr_db: float, rng) -> np.ndarray:
    level = 10 * np.log10(np.mean(clip ** 2) + 1e-12) - snr_db
    return np.clip(clip + noise(kind, len(clip), level, rng), -1, 1).astype(np.float32)


def room_tone(samples: int, level_db: float, rng) -> np.ndarray:
    """Room tone: brown (1/f^2) noise, a faint 50 Hz hum under it."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1)
    x = np.fft.irfft(spectrum, samples)
    x = x / (np.sqrt(np.mean(x ** 2)) or 1) + 0.1 * noise("hum", samples, 0.0, rng)
    return (x / np.sqrt(np.mean(x ** 2)) * 10 ** (level_db / 20)).astype(np.float32)


def noise_inputs(rng) -> dict[str, np.ndarray]:
    out = {}
    for kind in NOISE_KINDS:
        for db in (-20, -35, -50):
            out[f"{kind} {db} dBFS"] = noise(kind, 8 * 16000, db, rng)
    for db in (-30, -45):
        out[f"room tone {db} dBFS"] = room_tone(8 * 16000, db, rng)
    t = np.arange(3 * 16000) / 16000
    out["1 kHz sine, 3 s"] = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    out["1 kHz beep, 1 s"] = out["1 kHz sine, 3 s"][:16000]
    if (SHARED_AUDIO / "pdx" / "noise.wav").exists():
        out["pdx/noise.wav (10 s)"] = load_audio(SHARED_AUDIO / "pdx" / "noise.wav")[:10 * 16000]
        out["pdx/sine.wav"] = load_audio(SHARED_AUDIO / "pdx" / "sine.wav")
    return out


class Listener:
    """speech_seconds, counted and timed."""

    def __init__(self):
        self.calls, self.windows, self.seconds = 0, 0, 0.0

    def __call__(self, audio: np.ndarray) -> float:
        start = time.perf_counter()
        heard = speech_seconds(audio)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.windows += -(-len(audio) // 160000)
        return heard


def segment_audio(audio: np.ndarray, segment) -> np.ndarray:
    return audio[int(round(segment.start * 16000)):int(round(segment.end * 16000))]


def quality(model, snr_db: float) -> None:
    rng = np.random.default_rng(0)
    picked = rows()
    clips = [load_audio(HELDOUT / r["file"]) for r in picked]
    conditions = {"clean": clips}
    for kind in NOISE_KINDS:
        conditions[f"{kind} {snr_db:g} dB SNR"] = [with_noise(c, kind, snr_db, rng) for c in clips]
    everything = []
    listen = Listener()
    print(f"{'condition':22} {'words':>6} {'wrong':>6} {'AUROC':>6}  no_speech_prob max  avg_logprob min  "
          f"segments dropped: model alone, default gate  (unsure: speech heard, min)")
    for name, audios in conditions.items():
        results = model.transcribe_many(audios, sample_rate=16000, no_speech_threshold=None)
        scored = [pair for r, row in zip(results, picked) for pair in scored_words(r, row["text"])]
        everything += scored
        segs = [(s, segment_audio(a, s)) for r, a in zip(results, audios) for s in r.segments if s.text]
        alone = sum(is_no_speech(s, *DEFAULTS) for s, _ in segs)
        dropped = sum(is_no_speech(s, *DEFAULTS, a, DEFAULT_MIN_SPEECH_SECONDS) for s, a in segs)
        unsure = [listen(a) for s, a in segs if s.avg_logprob < DEFAULT_LOGPROB_THRESHOLD]
        right = [p for p, ok in scored if ok]
        wrong = [p for p, ok in scored if not ok]
        print(f"{name:22} {len(scored):6d} {len(wrong):6d} {auroc(right, wrong):6.3f}  "
              f"{max(s.no_speech_prob for s, _ in segs):18.2e}  {min(s.avg_logprob for s, _ in segs):15.3f}  "
              f"{alone}/{len(segs)}, {dropped}/{len(segs)}  ({len(unsure)} unsure"
              + (f": {min(unsure):.2f} s" if unsure else "") + ")", flush=True)
    right = [p for p, ok in everything if ok]
    wrong = [p for p, ok in everything if not ok]
    print(f"{'all':22} {len(everything):6d} {len(wrong):6d} {auroc(right, wrong):6.3f}  "
          f"(mean probability: correct {np.mean(right):.3f}, wrong {np.mean(wrong):.3f})")
    print(f"speech-activity network: asked about {listen.calls} unsure segments, {listen.windows} windows of 10 s, "
          f"{listen.seconds:.1f} s ({listen.seconds / max(listen.windows, 1) * 1000:.0f} ms a window)")


def gate(model) -> None:
    print(f"\nnoise only: default gate: avg_logprob < {DEFAULT_LOGPROB_THRESHOLD} and (no_speech_prob > "
          f"{DEFAULT_NO_SPEECH_THRESHOLD} or speech heard < {DEFAULT_MIN_SPEECH_SECONDS} s)")
    print(f"{'input':28} {'language':8} {'no_speech_prob':>14} {'avg_logprob':>11} {'heard':>6}  "
          f"text without gate -> model alone -> default gate")
    listen = Listener()
    for name, audio in noise_inputs(np.random.default_rng(1)).items():
        heard = listen(audio)
        for language in (None, ["en", "zh"]):
            kept = model.transcribe(audio, sample_rate=16000, language=language, no_speech_threshold=None)
            alone = model.transcribe(audio, sample_rate=16000, language=language, min_speech_seconds=None)
            gated = model.transcribe(audio, sample_rate=16000, language=language)
            k = kept.segments[0]
            print(f"{name:28} {'auto' if language is None else 'en,zh':8} {k.no_speech_prob or 0:14.4f} "
                  f"{k.avg_logprob if k.avg_logprob is not None else float('nan'):11.3f} {heard:5.2f}s  "
                  f"{kept.text[:24]!r} -> {alone.text[:24]!r} -> {gated.text[:24]!r} ({gated.finish_reason})",
                  flush=True)
    window = noise("pink", 160000, -30.0, np.random.default_rng(2))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        speech_seconds(window)
        times.append(time.perf_counter() - start)
    print(f"speech-activity network: one 10 s window {np.median(times) * 1000:.0f} ms (median of 5)")


def recordings() -> None:
    """Seconds of speech the network hears in each recording of ../shared/data/audio."""
    files = sorted(f for f in SHARED_AUDIO.glob("*/*") if f.suffix in (".wav", ".flac", ".aiff", ".mp3"))
    print(f"\nspeech heard in {SHARED_AUDIO}'s recordings (manifest.tsv says which hold none):")
    for heard, path in sorted((speech_seconds(load_audio(f)), f) for f in files):
        print(f"{heard:6.2f} s heard of {len(load_audio(path)) / 16000:6.2f} s  {path.relative_to(SHARED_AUDIO)}")


def cost(model_dir: str, pairs: int) -> None:
    """Decode steps in pairs, one with the scores and one without, in alternating order
    (a shared machine's load moves both alike): medians, and the scores alone."""
    import mlx.core as mx

    from mlx_qwen_asr.decoding import quiet_array, token_scores

    model = ASRModel.load(model_dir)
    network = model.network
    quiet = quiet_array(model.config.eos_token_ids, model.no_speech_ids)
    prompt = network.embed_tokens(mx.array(list(range(1000, 1200))))[None]
    cache = network.make_cache(200 + 4 * pairs + 8)
    token = mx.argmax(network(prompt, cache)[:, -1, :], axis=-1)
    mx.eval(token, cache.state())

    def step(scored: bool) -> float:
        nonlocal token
        start = time.perf_counter()
        logits = network(network.embed_tokens(token)[:, None, :], cache)[:, -1, :]
        token = mx.argmax(logits, axis=-1)
        mx.eval(token, token_scores(logits, token, quiet)) if scored else mx.eval(token)
        return time.perf_counter() - start

    step(True), step(False)   # warm up
    plain, scored = [], []
    for i in range(pairs):
        for flag in ((False, True) if i % 2 else (True, False)):
            (scored if flag else plain).append(step(flag))
    logits = mx.random.normal((1, network.config.text.vocab_size)).astype(model.dtype)
    picked = mx.argmax(logits, axis=-1)
    mx.eval(logits, picked)
    start = time.perf_counter()
    for _ in range(200):
        mx.eval(token_scores(logits, picked, quiet))
    alone = (time.perf_counter() - start) / 200
    base, extra = float(np.median(plain)), float(np.median(np.array(scored) - np.array(plain)))
    print(f"\ncost at {model_dir} ({model.dtype}), {pairs} pairs of steps: step {base * 1000:.1f} ms median; "
          f"with scores {np.median(scored) * 1000:.1f} ms; median pair difference {extra * 1000:+.2f} ms "
          f"({extra / base * 100:+.2f} %); the scores alone {alone * 1000:.3f} ms ({alone / base * 100:.2f} % of a step)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snr", type=float, default=5.0, help="noise under the held-out clips, dB SNR")
    parser.add_argument("--cost-model", default=None, help="checkpoint directory for the per-token cost")
    parser.add_argument("--pairs", type=int, default=40, help="pairs of decode steps timed")
    parser.add_argument("--no-quality", action="store_true", help="no AUROC and gate on the fixture")
    parser.add_argument("--recordings", action="store_true", help="speech heard in ../shared's recordings")
    args = parser.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    if not args.no_quality:
        with tempfile.TemporaryDirectory() as tmp:
            model = ASRModel.load(expand_compact(TRAINED_MODEL, Path(tmp)), dtype="float32")
            quality(model, args.snr)
            gate(model)
    if args.recordings:
        recordings()
    if args.cost_model:
        cost(args.cost_model, args.pairs)
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
