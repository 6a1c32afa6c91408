"""The fixtures' data sets: training voices and their word table, the held-out set, validation clips."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .speech import SR, WORDS, Voice, add_noise, compose, random_sentence, sentence_text, speak_words
from .training import log

SEED = 20261122
N_TRAIN_VOICES = 64

HELDOUT_GROUPS = (("short", 20), ("medium", 5), ("long", 3))
HELDOUT_SECONDS = {"short": (1.0, 6.0), "medium": (8.0, 15.0), "long": (20.0, 40.0)}



def train_voices(seed: int) -> list[Voice]:
    rng = np.random.default_rng([seed, 3])
    voices: list[Voice] = []
    while len(voices) < N_TRAIN_VOICES:
        v = Voice.sample(rng)
        if v not in voices:
            voices.append(v)
    return voices


def build_word_table(seed: int, work: Path) -> list[list[np.ndarray]]:
    """table[voice][word]: every vocabulary word in every training voice (cached in work)."""
    voices = train_voices(seed)
    cache = work / "words.npz"
    jobs = [(w, v) for v in voices for w in WORDS]
    if not cache.exists():
        t0 = time.time()
        audio = speak_words(jobs)
        log(f"synthesized {len(audio)} words ({sum(map(len, audio)) / SR / 3600:.2f} h) "
            f"in {time.time() - t0:.0f} s")
        offsets = np.cumsum([0] + [len(a) for a in audio])
        np.savez(cache, offsets=offsets, key=np.array([f"{v}|{w}" for w, v in jobs]),
                 audio=np.round(np.clip(np.concatenate(audio), -1, 1) * 32767).astype(np.int16))
    data = np.load(cache, allow_pickle=False)
    if [str(k) for k in data["key"]] != [f"{v}|{w}" for w, v in jobs]:
        raise RuntimeError(f"{cache} was built with another seed or vocabulary: delete it")
    offsets, audio = data["offsets"], data["audio"].astype(np.float32) / 32767.0
    flat = [audio[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
    return [flat[v * len(WORDS):(v + 1) * len(WORDS)] for v in range(len(voices))]


def heldout_specs(seed: int):
    """(kind, voice, sentences) of every held-out clip: voices not among the training
    voices, sentences drawn from their own generator (training draws never repeat them:
    see ClipMaker.clip)."""
    rng = np.random.default_rng([seed, 1])
    trained = set(train_voices(seed))
    specs = []
    for kind, count in HELDOUT_GROUPS:
        for _ in range(count):
            voice = Voice.sample(rng)
            while voice in trained:
                voice = Voice.sample(rng)
            if kind == "short":
                sentences = [random_sentence(rng, 3, 12)]
            elif kind == "medium":
                sentences = [random_sentence(rng, 8, 12) for _ in range(3)]
            else:
                sentences = [random_sentence(rng, 5, 12) for _ in range(int(rng.integers(7, 11)))]
            specs.append((kind, voice, sentences))
    return specs


def build_heldout(seed: int, out_dir: Path) -> list[dict]:
    """Synthesize the held-out clips into out_dir: FLAC 16 kHz mono, manifest.tsv (file,
    duration, text, kind, voice) and words.json (file -> [[word, start, end], ...])."""
    import soundfile as sf

    rng = np.random.default_rng([seed, 2])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, timings, counters = [], {}, {}
    for kind, voice, sentences in heldout_specs(seed):
        used = sorted({w for s in sentences for w in s})
        snippets = dict(zip(used, speak_words([(WORDS[w], voice) for w in used])))
        lo, hi = HELDOUT_SECONDS[kind]
        while True:
            audio, spans = compose(sentences, snippets, rng, edge=(0.1, 0.4))
            if len(audio) / SR <= hi or len(sentences) == 1:
                break
            sentences = sentences[:-1]
        audio = add_noise(audio, rng, snr_db=float(rng.uniform(30, 45)))
        audio = audio * (float(rng.uniform(0.3, 0.9)) / max(1e-6, float(np.abs(audio).max())))
        counters[kind] = counters.get(kind, 0) + 1
        name = f"{kind}_{counters[kind]:02d}.flac"
        sf.write(out_dir / name, audio, SR, subtype="PCM_16")
        words = [WORDS[w] for s in sentences for w in s]
        timings[name] = [[w, round(a, 3), round(b, 3)] for w, (a, b) in zip(words, spans)]
        rows.append({"file": name, "duration": round(len(audio) / SR, 2), "text": " ".join(words),
                     "kind": kind, "voice": str(voice)})
    with open(out_dir / "manifest.tsv", "w", encoding="utf-8") as f:
        f.write("file\tduration\ttext\tkind\tvoice\n")
        for r in rows:
            f.write(f"{r['file']}\t{r['duration']}\t{r['text']}\t{r['kind']}\t{r['voice']}\n")
    lines = ",\n".join(f"{json.dumps(name)}: {json.dumps(words)}" for name, words in timings.items())
    (out_dir / "words.json").write_text("{\n" + lines + "\n}\n", encoding="utf-8")
    return rows


def read_manifest(heldout_dir: Path) -> list[dict]:
    lines = (heldout_dir / "manifest.tsv").read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line.strip()]


def validation_clips(seed: int, exclude_voices: set[Voice]):
    """A few never-trained clips in unseen voices (not the held-out set) to watch training."""
    rng = np.random.default_rng([seed, 5])
    clips = []
    for kind, count, n_sent in (("short", 8, 1), ("medium", 3, 3), ("long", 2, 8)):
        for _ in range(count):
            voice = Voice.sample(rng)
            while voice in exclude_voices:
                voice = Voice.sample(rng)
            sentences = [random_sentence(rng, 4, 12) for _ in range(n_sent)]
            used = sorted({w for s in sentences for w in s})
            snippets = dict(zip(used, speak_words([(WORDS[w], voice) for w in used])))
            audio, _ = compose(sentences, snippets, rng)
            audio = add_noise(audio, rng, snr_db=35.0)
            clips.append((kind, audio, " ".join(sentence_text(s) for s in sentences)))
    return clips
