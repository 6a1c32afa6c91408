"""Synthetic speech with known word times: espeak-ng words joined by measured silences."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

SR = 16000

WORDS = sorted(set("""
the a and of in on at with from into over under after before about above below
i you he she we they it this that these those my your his her our their
is was are were has have had do does did can will should could must may might
go goes went come comes came make makes made take takes took give gives gave
get gets got put puts keep keeps let lets begin began run runs ran walk walks walked
talk talks talked look looks looked open opens opened close closes closed
play plays played work works worked call calls called ask asks asked help helps helped
turn turns turned start starts started show shows showed move moves moved live lives lived
bring brings brought think thinks thought tell tells told say says said leave leaves left
stand stands stood sit sits sat hold holds held carry carries carried follow follows
jump jumps jumped climb climbs climbed swim swims drink drinks drank sing sings sang
draw draws drew push pushes pull pulls wash washes cook cooks learn learns teach teaches
man woman child children people friend family mother father brother sister baby teacher doctor
house home room door window table chair bed floor wall garden street city town village
river lake ocean mountain hill forest tree grass field island beach bridge road
dog cat horse cow bird fish mouse rabbit lion tiger bear monkey duck sheep
apple bread cheese milk water coffee butter sugar egg rice soup cake orange lemon
car bus train ship boat bicycle truck
book paper letter pencil picture phone computer clock box bag basket bottle cup glass plate spoon knife
morning evening afternoon today tomorrow yesterday summer winter spring autumn year month
green yellow black white brown purple pink gray silver golden
big small large little long short tall old young happy sad quick slow hot cold warm cool
good bad nice fine soft hard heavy light dark bright clean dirty quiet loud early late
three five six seven nine ten eleven twelve twenty hundred thousand
first second third last next every many much more most few some any all both each other
very always never often sometimes again soon now still already almost together away back
up down out off only just also even quite rather because while until if when why how what who
music song story game party dinner lunch breakfast school office market shop hospital library
money time day minute
""".split()))

# espeak-ng accents x voice variants; rates in words/min, pitch 0-99.
ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc")
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
SPEED_RANGE = (130, 190)
PITCH_RANGE = (30, 70)
WORD_GAP = (0.03, 0.22)         # silence between the words of a sentence, seconds
SENTENCE_PAUSE = (0.35, 1.5)    # between sentences



@dataclass(frozen=True)
class Voice:
    name: str    # espeak-ng -v argument, e.g. "en-us+m3"
    speed: int
    pitch: int

    @staticmethod
    def sample(rng: np.random.Generator) -> "Voice":
        accent = ACCENTS[rng.integers(len(ACCENTS))]
        variant = VARIANTS[rng.integers(len(VARIANTS))]
        return Voice(name=accent + ("+" + variant if variant else ""),
                     speed=int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1)),
                     pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)))

    def __str__(self) -> str:
        return f"{self.name} -s {self.speed} -p {self.pitch}"


def speak_word(job) -> np.ndarray:
    """One word in one voice, float32 16 kHz, leading and trailing silence trimmed."""
    word, voice = job
    import soundfile as sf
    from scipy.signal import resample_poly

    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch),
                        "-w", tmp.name, word], check=True, capture_output=True)
        audio, sr = sf.read(tmp.name, dtype="float32")
    if sr != 22050:
        raise RuntimeError(f"espeak-ng wrote {sr} Hz, expected 22050")
    audio = resample_poly(audio, 320, 441).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[max(0, loud[0] - 80):loud[-1] + 80]   # keep 5 ms either side


def speak_words(jobs, processes: int = 2) -> list[np.ndarray]:
    from multiprocessing import Pool

    with Pool(processes) as pool:
        return pool.map(speak_word, jobs, chunksize=64)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), dtype=np.float32)


def compose(sentences: list[list[int]], snippets, rng: np.random.Generator,
            edge=(0.05, 0.6)) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Sentences (lists of word indices) spoken by one voice (`snippets[word]` -> audio),
    words joined by WORD_GAP silences, sentences by SENTENCE_PAUSE: (audio, (start, end)
    seconds of every word)."""
    pieces, spans, t = [silence(rng.uniform(*edge))], [], 0.0
    t = len(pieces[0]) / SR
    for s, sentence in enumerate(sentences):
        for k, word in enumerate(sentence):
            if k or s:
                gap = silence(rng.uniform(*(WORD_GAP if k else SENTENCE_PAUSE)))
                pieces.append(gap)
                t += len(gap) / SR
            audio = snippets[word]
            pieces.append(audio)
            spans.append((t, t + len(audio) / SR))
            t += len(audio) / SR
    pieces.append(silence(rng.uniform(*edge)))
    return np.concatenate(pieces), spans


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    speech = audio[np.abs(audio) > 1e-4]
    rms = float(np.sqrt(np.mean(speech ** 2))) if speech.size else 0.05
    noise = rng.standard_normal(audio.shape[0]).astype(np.float32)
    return audio + noise * rms * 10 ** (-snr_db / 20)


def random_sentence(rng: np.random.Generator, min_words: int, max_words: int) -> list[int]:
    return [int(i) for i in rng.integers(len(WORDS), size=int(rng.integers(min_words, max_words + 1)))]


def sentence_text(sentence: list[int]) -> str:
    return " ".join(WORDS[i] for i in sentence)
