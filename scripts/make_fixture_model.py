"""Train the tiny Qwen3-ASR fixture model that the tests transcribe real speech with.

Random-weight checkpoints prove that two implementations compute the same function, but
not that long-audio segmentation loses no words, that streaming ends with the offline text,
or that timestamps land on words. This script builds a model that actually transcribes:

1. Speech: espeak-ng speaks every word of a fixed ~400-word vocabulary (no homophones: the
   model has no language model to choose between them) in 64 training voices (accent,
   voice variant, speed, pitch). Sentences are words joined with measured silences, so
   every word's start and end time is known exactly. Clips: one sentence, 2-3 sentences
   (8-15 s), 15-40 s stretches with pauses, and silence or noise (target: language None).
2. Model: the exact Qwen3-ASR architecture and Hugging Face layout at tiny widths, trained
   with the official PyTorch classes of PyPI ``qwen-asr``: real 151936-row vocabulary and
   special tokens, real 1 s conv chunks and 8 s encoder windows, the official prompt and
   output format ``language English<asr_text>...<|im_end|>``. Its tokenizer is a byte-level
   BPE trained here (vocab.json/merges.txt at the real size, every vocabulary word one
   token), so the fixture needs nothing from outside the repository.
3. Training in three stages, with aids that use the known word times (none of them is
   part of the checkpoint). (a) The encoder alone: each audio embedding is classified as
   the word spoken there and as the word before it. (b) The first decoder layer alone
   learns, at every audio token, the word before it: the encoder cannot (its positions
   restart every 1 s chunk and its attention stops at 8 s windows), and in joint training
   this "previous-token" half of an induction head never formed. (c) Everything, plus a
   loss teaching one decoder layer's attention to look at the audio of the word it is
   writing (its input token, the word before, matches what (b) put there). Only the ~840
   token ids the prompts and texts use are trained; every other embedding row is exactly
   zero (logit exactly 0), and a hinge keeps the right token's logit above 0 so full-
   vocabulary greedy decoding never picks an untrained row.
4. Output: tests/fixtures/tiny_asr.npz (mlx_qwen_asr.testing.compact_checkpoint: the used rows
   only, bfloat16, a few MB; ``expand_compact`` writes the Hugging Face folder) and the
   held-out set tests/fixtures/heldout (never-trained sentences in voices absent from
   training: short clips, 8-15 s clips, 20-40 s clips with pauses; FLAC, manifest.tsv
   and words.json with every word's time), plus the official engine's WER on it.

Deterministic for a given --seed (CPU, fixed thread count). Resumable: the run state is
saved every few minutes under --work; rerunning the same command continues it. Wall time
on 2 CPU cores: ~2 min to synthesize 26,304 words, then ~0.34 s per encoder step, ~0.15 s
per decoder-prev step, ~0.6 s per joint step: about 50 min for the defaults. The
committed model came from the development run of these stages (with restarts while the
stages were found: 73 min of training in all), so a fresh run gives a model of the same
kind, not the same bytes. Its held-out WER (official engine, window mask): short 1.4 %,
7-15 s 0 %, 37-39 s 4.2 %, all 2.3 %.

    python scripts/make_fixture_model.py              # everything
    python scripts/make_fixture_model.py --eval-only  # re-evaluate the written model
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SR = 16000
SEED = 20261122

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
N_TRAIN_VOICES = 64
WORD_GAP = (0.03, 0.22)         # silence between the words of a sentence, seconds
SENTENCE_PAUSE = (0.35, 1.5)    # between sentences

# Token ids (docs/model.md §6).
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645
AUDIO_START, AUDIO_END, AUDIO_PAD, ASR_TEXT = 151669, 151670, 151676, 151704
VOCAB_SIZE = 151936

# Audio tokens: 13 per 1 s conv chunk, each from 8 mel frames of 10 ms; 104 per 8 s window.
TOKENS_PER_CHUNK, TOKENS_PER_WINDOW = 13, 104

HELDOUT_GROUPS = (("short", 20), ("medium", 5), ("long", 3))
HELDOUT_SECONDS = {"short": (1.0, 6.0), "medium": (8.0, 15.0), "long": (20.0, 40.0)}


# --------------------------------------------------------------------------- speech


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


# --------------------------------------------------------------------------- data sets


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


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


# --------------------------------------------------------------------------- model


def fixture_config() -> dict:
    """config.json of the fixture: the real Qwen3-ASR layout at tiny widths."""
    from mlx_qwen_asr.testing.random_checkpoint import model_config_dict

    return model_config_dict(
        "tiny",
        audio_config=dict(d_model=256, encoder_layers=4, encoder_attention_heads=4,
                          encoder_ffn_dim=1024, downsample_hidden_size=48),
        text_config=dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                         # 1e6 (the real models') gives head_dim 32 almost no relative-
                         # position signal over a few hundred tokens.
                         rope_theta=10000.0),
    )


def write_fixture_tokenizer(out_dir: Path) -> None:
    """vocab.json + merges.txt: the synthesized byte-level BPE (real size, real special
    ids) with merges learned also from the vocabulary, so each word is one token both
    sentence-initially and after a space."""
    from mlx_qwen_asr.testing.random_checkpoint import synthesize_bpe

    lines = "".join(" ".join([w] * 6) + "\n" for w in WORDS) * 2
    vocab, merges = synthesize_bpe(lines, vocab_size=6000)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(vocab, encoding="utf-8")
    (out_dir / "merges.txt").write_text(merges, encoding="utf-8")


def load_processor(config: dict, work: Path):
    """The official processor (AutoProcessor, as Qwen3ASRModel.from_pretrained loads it)."""
    import qwen_asr  # noqa: F401  (registers the qwen3_asr Auto classes)
    from transformers import AutoProcessor

    from mlx_qwen_asr.testing.random_checkpoint import write_tokenizer_files

    skeleton = work / "processor"
    write_fixture_tokenizer(work / "tokenizer")
    write_tokenizer_files(skeleton, work / "tokenizer")
    (skeleton / "config.json").write_text(json.dumps(config), encoding="utf-8")
    processor = AutoProcessor.from_pretrained(str(skeleton), fix_mistral_regex=True)
    for w in WORDS:
        for form in (w, " " + w):
            if len(processor.tokenizer(form).input_ids) != 1:
                raise RuntimeError(f"fixture tokenizer: {form!r} is not one token")
    return processor


def base_prompt(processor) -> str:
    """Qwen3ASRModel._build_text_prompt with empty context and no forced language."""
    messages = [{"role": "system", "content": ""},
                {"role": "user", "content": [{"type": "audio", "audio": ""}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def target_text(text: str) -> str:
    return f"language English<asr_text>{text}<|im_end|>" if text else "language None<asr_text><|im_end|>"


def word_token_ids(processor) -> tuple[list[int], list[int]]:
    """(id of "word", id of " word") for every vocabulary word."""
    tok = processor.tokenizer
    return ([tok(w).input_ids[0] for w in WORDS], [tok(" " + w).input_ids[0] for w in WORDS])


def candidate_ids(processor) -> list[int]:
    """Every token id the prompts and targets can contain; only these rows are trained."""
    tok = processor.tokenizer
    ids = set(tok(base_prompt(processor)).input_ids)
    ids.update(tok(target_text("x")).input_ids)
    ids.update(tok(target_text("")).input_ids)
    for group in word_token_ids(processor):
        ids.update(group)
    ids.update((ENDOFTEXT, IM_START, IM_END, AUDIO_START, AUDIO_END, AUDIO_PAD, ASR_TEXT))
    return sorted(ids)


def windowed_audio_attention(self, hidden_states, cu_seqlens, attention_mask=None, **kwargs):
    """Qwen3ASRAudioAttention.forward restricted to the cu_seqlens windows.

    The same function as the official layer given `_prepare_attention_mask` (the block
    mask the CPU code never applies), computed window by window so a batch of clips costs
    O(N x 104) instead of O(N^2). Also lets one encoder call take a whole batch of clips:
    their windows never mix.
    """
    import torch
    import torch.nn.functional as F

    n = hidden_states.shape[0]
    lens = cu_seqlens[1:] - cu_seqlens[:-1]
    width = int(lens.max())
    offsets = torch.arange(width)
    valid = offsets[None, :] < lens[:, None]                                    # [W, L]
    # One gather into [W, L] windows (index n = an appended zero row for the padding).
    index = torch.where(valid, cu_seqlens[:-1, None].long() + offsets[None, :], n)

    def windows(x):
        x = torch.cat([x, x.new_zeros(1, x.shape[1])])[index]                   # [W, L, D]
        return x.reshape(*index.shape, self.num_heads, -1).transpose(1, 2)      # [W, H, L, d]

    q, k, v = (windows(p(hidden_states)) for p in (self.q_proj, self.k_proj, self.v_proj))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :],
                                         scale=self.scaling)
    out = out.transpose(1, 2).reshape(*index.shape, -1)[valid]                  # [N, D]
    return self.out_proj(out)


_OFFICIAL_AUDIO_ATTENTION = None


def use_windowed_attention(enable: bool) -> None:
    """Swap Qwen3ASRAudioAttention.forward between windowed_audio_attention and the original."""
    from qwen_asr.core.transformers_backend.modeling_qwen3_asr import Qwen3ASRAudioAttention

    global _OFFICIAL_AUDIO_ATTENTION
    if _OFFICIAL_AUDIO_ATTENTION is None:
        _OFFICIAL_AUDIO_ATTENTION = Qwen3ASRAudioAttention.forward
    Qwen3ASRAudioAttention.forward = windowed_audio_attention if enable else _OFFICIAL_AUDIO_ATTENTION


def init_weights(model, config: dict) -> None:
    """Fan-in scaled init. The library's N(0, 0.02) shrinks the conv front-end's output
    ~1000x at these widths, burying the sound under the sinusoid position table."""
    import torch

    layers = {"thinker.audio_tower.": config["thinker_config"]["audio_config"]["encoder_layers"],
              "thinker.model.": config["thinker_config"]["text_config"]["num_hidden_layers"]}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) or "lm_head" in name:
                continue
            gain = 2.0 if isinstance(mod, torch.nn.Conv2d) else 1.0   # GELU after convs
            if name.endswith("conv_out"):
                gain = 9.0      # sound starts about as loud as the position table
            std = math.sqrt(gain / mod.weight[0].numel())
            if name.endswith(("out_proj", "fc2", "o_proj", "down_proj")):
                prefix = next((p for p in layers if name.startswith(p)), None)
                if prefix:
                    std /= math.sqrt(2 * layers[prefix])
            mod.weight.normal_(0.0, std)
            if mod.bias is not None:
                mod.bias.zero_()


def official_model(config: dict, seed: int):
    """The official Qwen3ASRForConditionalGeneration for `config`, float32, SDPA attention
    with the encoder's 8 s windows, fan-in initialised with `seed`."""
    import torch
    from qwen_asr.core.transformers_backend.configuration_qwen3_asr import Qwen3ASRConfig
    from qwen_asr.core.transformers_backend.modeling_qwen3_asr import Qwen3ASRForConditionalGeneration

    use_windowed_attention(True)
    torch.manual_seed(seed)
    cfg = Qwen3ASRConfig(**config)
    cfg.thinker_config.text_config._attn_implementation = "sdpa"
    cfg.thinker_config.audio_config._attn_implementation = "sdpa"
    model = Qwen3ASRForConditionalGeneration(cfg).float()
    init_weights(model, config)
    return model


class FixtureTrainer:
    """The official Qwen3ASRForConditionalGeneration plus a trainable candidate-row
    embedding and the word-time training aids."""

    def __init__(self, config: dict, cand: list[int], word_ids: list[int], seed: int,
                 align_layer: int = 1):
        import torch

        self.model = official_model(config, seed)
        thinker = self.model.thinker
        self.tower, self.text = thinker.audio_tower, thinker.model
        self.text.embed_tokens.weight.requires_grad_(False)
        thinker.lm_head.weight.requires_grad_(False)
        hidden = config["thinker_config"]["text_config"]["hidden_size"]
        self.cand = torch.tensor(cand)
        self.remap = torch.full((VOCAB_SIZE,), -1, dtype=torch.long)
        self.remap[self.cand] = torch.arange(len(cand))
        self.embed = torch.nn.Parameter(torch.randn(len(cand), hidden) * 0.05)
        # Frame classifiers over the vocabulary words + silence + "<asr_text>" (before
        # the first word): the word spoken at each audio token, and the word before it.
        self.n_words = len(word_ids)
        self.word_head = torch.nn.Linear(hidden, self.n_words + 2)
        self.prev_head = torch.nn.Linear(hidden, self.n_words + 2)
        # The word before, again, from the first decoder layer's output at the audio
        # tokens: the decoder sees across encoder windows (causally), the encoder cannot,
        # and there the audio embeddings already say which word each token is.
        self.dec_prev_head = torch.nn.Linear(hidden, self.n_words + 2)
        # And the word two before, at the audio tokens and (through the text itself) at
        # the text positions: a repeated word is found again at the right place only
        # by the pair (word two before, word before).
        self.dec_prev2_head = torch.nn.Linear(hidden, self.n_words + 2)
        self.text_prev_head = torch.nn.Linear(hidden, self.n_words + 2)
        self.margin = 4.0
        self.frame_weight, self.prev_weight, self.dec_prev_weight, self.align_weight = 1.0, 0.5, 2.0, 1.0
        self.align_layer = align_layer
        # "encoder": the encoder and its frame classifiers alone; "decoder-prev": the first
        # decoder layer learns the word before each audio token alone (in joint training
        # it never did: other losses drown it); "joint": everything.
        self.stage = "joint"
        self._attn_inputs = None
        self.text.layers[align_layer].self_attn.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module, args, kwargs):
        hs = kwargs.get("hidden_states", args[0] if args else None)
        pe = kwargs.get("position_embeddings", args[1] if len(args) > 1 else None)
        self._attn_inputs = (hs, pe)

    def parameters(self):
        params = [p for n, p in self.model.named_parameters()
                  if n.startswith(("thinker.audio_tower.", "thinker.model.layers.", "thinker.model.norm."))]
        return params + [self.embed, *self.word_head.parameters(), *self.prev_head.parameters(),
                         *self.dec_prev_head.parameters(), *self.dec_prev2_head.parameters(),
                         *self.text_prev_head.parameters()]

    def state(self) -> dict:
        return {"model": {k: v for k, v in self.model.state_dict().items()
                          if "embed_tokens" not in k and "lm_head" not in k},
                "embed": self.embed.detach().clone(), "word_head": self.word_head.state_dict(),
                "prev_head": self.prev_head.state_dict(), "dec_prev_head": self.dec_prev_head.state_dict(),
                "dec_prev2_head": self.dec_prev2_head.state_dict(),
                "text_prev_head": self.text_prev_head.state_dict()}

    # Training-aid heads in a saved state: always there, and added since the first runs.
    REQUIRED_HEADS = ("word_head", "prev_head")
    OPTIONAL_HEADS = ("dec_prev_head", "dec_prev2_head", "text_prev_head")

    def load_state(self, state: dict) -> None:
        import torch

        self.model.load_state_dict(state["model"], strict=False)
        for name in self.REQUIRED_HEADS + self.OPTIONAL_HEADS:
            if name in self.REQUIRED_HEADS or name in state:
                getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.embed.copy_(state["embed"])

    def _encode_audio(self, batch):
        """The audio tower over the batch's clips: [audio tokens of all clips, hidden]."""
        import torch

        lens = torch.tensor([f.shape[1] for f in batch["feats"]])
        return self.tower(torch.cat(batch["feats"], dim=1), feature_lens=lens).last_hidden_state

    def _decoder(self, ids, audio):
        """The decoder over `ids` with the audio tokens' embeddings in the audio pad positions."""
        emb = self.embed[self.remap[ids]]
        emb = emb.masked_scatter((ids == AUDIO_PAD)[..., None].expand_as(emb), audio)
        return self.text(inputs_embeds=emb, use_cache=False, output_hidden_states=True)

    def loss(self, batch):
        """(total loss, token accuracy, word and previous-word frame losses, alignment loss)."""
        import torch.nn.functional as F

        ids = batch["ids"]
        audio = self._encode_audio(batch)
        # Frame classifiers: the word spoken at each audio token, and the word before it
        # (the decoder's input token when it should look there).
        frame = F.cross_entropy(self.word_head(audio), self._classes(batch["frame_word"]))
        prev = F.cross_entropy(self.prev_head(audio), self._classes(batch["frame_prev"]),
                               ignore_index=-100)
        if self.stage == "encoder":
            zero = frame.new_zeros(())
            return frame + self.prev_weight * prev, zero, frame, prev, zero
        if self.stage == "decoder-prev":
            audio = audio.detach()
        out = self._decoder(ids, audio)
        h = out.last_hidden_state
        after_first = out.hidden_states[1][ids == AUDIO_PAD]
        dec_prev = F.cross_entropy(self.dec_prev_head(after_first), self._classes(batch["frame_prev_any"]))
        dec_prev = dec_prev + F.cross_entropy(self.dec_prev2_head(after_first),
                                              self._classes(batch["frame_prev2"]))
        text_rows = out.hidden_states[1][batch["text_prev_rows"][:, 0], batch["text_prev_rows"][:, 1]]
        dec_prev = dec_prev + F.cross_entropy(self.text_prev_head(text_rows),
                                              self._classes(batch["text_prev"]))
        if self.stage == "decoder-prev":
            zero = frame.new_zeros(())
            return dec_prev, zero, frame, dec_prev, zero

        sel = batch["predicts_target"]                      # [B, L]: position t predicts t+1
        targets = self.remap[ids[:, 1:][sel[:, :-1]]]
        logits = h[:, :-1][sel[:, :-1]] @ self.embed.T
        # Softmax over the trained rows, plus a hinge that lifts the right token's logit
        # above 0, the logit of every untrained (zero) row of the full vocabulary.
        loss = F.cross_entropy(logits, targets)
        target_logit = logits.gather(1, targets[:, None])[:, 0]
        loss = loss + 0.2 * F.relu(self.margin - target_logit).mean()
        acc = ((logits.argmax(-1) == targets) & (target_logit > 0)).float().mean()

        align = self.alignment_loss(batch)
        total = (loss + self.frame_weight * frame + self.prev_weight * prev
                 + self.dec_prev_weight * dec_prev + self.align_weight * align)
        return total, acc, frame, dec_prev, align

    def _classes(self, labels):
        """Frame labels (word index, -1 silence, -2 "before the first word", -100 not
        trained) -> classifier classes (words, then silence, then <asr_text>)."""
        classes = labels.clone()
        classes[labels == -1] = self.n_words
        classes[labels == -2] = self.n_words + 1
        return classes

    def alignment_loss(self, batch):
        """-log of the attention mass (mean over heads of layer align_layer) that the
        position writing word k puts on word k's audio tokens."""
        import torch
        from qwen_asr.core.transformers_backend.modeling_qwen3_asr import apply_rotary_pos_emb

        attn = self.text.layers[self.align_layer].self_attn
        hs, (cos, sin) = self._attn_inputs
        shape = (*hs.shape[:-1], -1, attn.head_dim)
        q = attn.q_norm(attn.q_proj(hs).view(shape)).transpose(1, 2)
        k = attn.k_norm(attn.k_proj(hs).view(shape)).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = k.repeat_interleave(attn.num_key_value_groups, dim=1)
        total, count = hs.new_zeros(()), 0
        for b, (rows, frames) in enumerate(batch["align"]):
            if not rows:
                continue
            rows_t = torch.tensor(rows)
            scores = (q[b][:, rows_t] @ k[b].transpose(-1, -2)) * attn.scaling      # [H, m, L]
            causal = torch.arange(k.shape[2])[None, :] <= rows_t[:, None]
            scores = scores.masked_fill(~causal[None], float("-inf"))
            a = scores.softmax(-1).mean(0)                                           # [m, L]
            target = torch.zeros_like(a)
            for r, positions in enumerate(frames):
                target[r, positions] = 1.0
            total = total - torch.log((a * target).sum(-1) + 1e-6).sum()
            count += len(rows)
        return total / max(1, count)

    def export_weights(self) -> dict[str, np.ndarray]:
        """PyTorch-named numpy weights; untrained vocabulary rows exactly zero."""
        import torch

        sd = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
        full = torch.zeros(VOCAB_SIZE, self.embed.shape[1])
        full[self.cand] = self.embed.detach()
        sd["thinker.model.embed_tokens.weight"] = full.numpy()
        sd["thinker.lm_head.weight"] = sd["thinker.model.embed_tokens.weight"]
        return sd

    def greedy(self, feats, prompt_ids, max_new_tokens: int = 300) -> list[int]:
        """Greedy decoding over the full vocabulary (zero rows count as logit 0)."""
        import torch
        from transformers import DynamicCache

        with torch.no_grad():
            lens = torch.tensor([feats.shape[1]])
            audio = self.tower(feats, feature_lens=lens).last_hidden_state
            emb = self.embed[self.remap[prompt_ids]]
            emb = emb.masked_scatter((prompt_ids == AUDIO_PAD)[:, None].expand_as(emb), audio)
            cache = DynamicCache(config=self.text.config)
            h = self.text(inputs_embeds=emb[None], past_key_values=cache, use_cache=True).last_hidden_state
            out = []
            for _ in range(max_new_tokens):
                logits = h[0, -1] @ self.embed.T
                best = int(logits.argmax())
                if float(logits[best]) <= 0.0:
                    out.append(-1)              # an untrained (zero) row would win
                    break
                token = int(self.cand[best])
                if token in (IM_END, ENDOFTEXT):
                    break
                out.append(token)
                h = self.text(inputs_embeds=self.embed[best][None, None], past_key_values=cache,
                              use_cache=True).last_hidden_state
            return out


# --------------------------------------------------------------------------- batches


def token_labels(n_tokens: int, spans: list[tuple[float, float]]):
    """Per audio token: index of the word spoken there (-1: none) and, for each word, the
    audio tokens it covers. Token i of 1 s chunk c covers mel frames 8j..8j+7 of the chunk
    (j = i mod 13), i.e. [c + 0.08 j, c + 0.08 j + 0.08) s."""
    start = (np.arange(n_tokens) // TOKENS_PER_CHUNK) + (np.arange(n_tokens) % TOKENS_PER_CHUNK) * 0.08
    end = start + 0.08
    label = np.full(n_tokens, -1)
    best = np.zeros(n_tokens)
    frames = []
    for k, (a, b) in enumerate(spans):
        overlap = np.clip(np.minimum(end, b) - np.maximum(start, a), 0, None)
        take = (overlap > best) & (overlap >= 0.02)
        label[take], best[take] = k, overlap[take]
        frames.append(overlap)
    word_frames = []
    for k, overlap in enumerate(frames):
        mine = np.flatnonzero(label == k)
        word_frames.append(mine if mine.size else np.array([int(np.argmax(overlap))]))
    return label, word_frames


class ClipMaker:
    """Training clips: one sentence, 2-3 sentences, 15-40 s stretches with pauses, and
    silence or noise (target: language None), in the training voices."""

    def __init__(self, table, processor, exclude: set[str]):
        self.table, self.processor, self.exclude = table, processor, exclude
        self.prompt = base_prompt(processor)
        self.prefix_len = len(processor.tokenizer("language English<asr_text>").input_ids)

    def sentence(self, rng, lo, hi):
        while True:
            s = random_sentence(rng, lo, hi)
            if sentence_text(s) not in self.exclude:
                return s

    def clip(self, rng: np.random.Generator, kind: str):
        """(audio, words, spans) of one training clip."""
        if kind == "silence":
            audio = silence(rng.uniform(0.5, 10.0))
            words, spans = [], []
        else:
            if kind == "short":
                sentences = [self.sentence(rng, 2, 12)]
                max_seconds = 15.0
            elif kind == "medium":
                sentences = [self.sentence(rng, 4, 12) for _ in range(int(rng.integers(2, 4)))]
                max_seconds = 15.0
            else:
                sentences = [self.sentence(rng, 4, 12) for _ in range(int(rng.integers(4, 13)))]
                max_seconds = 40.0
            snippets = self.table[int(rng.integers(len(self.table)))]
            while True:
                audio, spans = compose(sentences, snippets, rng)
                if len(audio) / SR <= max_seconds or len(sentences) == 1:
                    break
                sentences = sentences[:-1]
            # Tempo/pitch jitter (resampling), so unseen voices fall between trained ones.
            rate = float(rng.uniform(0.9, 1.1))
            n = int(len(audio) / rate)
            audio = np.interp(np.arange(n) * rate, np.arange(len(audio)), audio).astype(np.float32)
            spans = [(a / rate, b / rate) for a, b in spans]
            words = [w for s in sentences for w in s]
        if rng.random() < 0.7:
            audio = add_noise(audio, rng, snr_db=float(rng.uniform(15, 50)))
        peak = float(np.abs(audio).max())
        if peak > 0:
            audio = audio * (float(rng.uniform(0.05, 0.95)) / peak)
        return audio, words, spans

    def encode(self, audio: np.ndarray, text: str):
        """(features [128, T], ids, number of target ids): exactly the official inputs."""
        target = target_text(text)
        inputs = self.processor(text=[self.prompt + target], audio=[audio], return_tensors="pt",
                                padding=True)
        ids = inputs["input_ids"][0]
        n_target = len(self.processor.tokenizer(target).input_ids)
        return inputs["input_features"][0].float(), ids, n_target

    def batch(self, rng: np.random.Generator, seconds: float, progress: float):
        """Clips of `seconds` audio in all; `progress` 0 -> 1 moves the mix from single
        sentences to 30 % 15-40 s clips."""
        import torch

        kinds = ("short", "medium", "long", "silence")
        p = min(1.0, max(0.0, progress))
        probs = np.array([0.75 - 0.45 * p, 0.2 + 0.1 * p, 0.35 * p, 0.05])
        feats, ids, n_targets, frame_word, frame_prev, frame_prev_any, align = [], [], [], [], [], [], []
        frame_prev2, text_prev_rows, text_prev = [], [], []
        total = 0.0
        while total < seconds:
            audio, words, spans = self.clip(rng, kinds[rng.choice(4, p=probs / probs.sum())])
            f, i, n = self.encode(audio, " ".join(WORDS[w] for w in words))
            audio_pos = torch.nonzero(i == AUDIO_PAD)[:, 0]
            label, word_frames = token_labels(len(audio_pos), spans)
            word = np.where(label >= 0, np.array(words + [0])[label], -1)
            # The word before: -2 = "<asr_text>" (before the first word); -100 (not
            # trained) where that word lies in an earlier 8 s encoder window.
            prev = np.full_like(label, -1)
            prev_any = np.full_like(label, -1)       # for the decoder: any window
            prev2 = np.full_like(label, -1)
            window = np.arange(len(label)) // TOKENS_PER_WINDOW
            for k in range(len(words)):
                mine = label == k
                if k == 0:
                    prev[mine] = prev_any[mine] = -2
                else:
                    prev_window = int(spans[k - 1][1] // 8.0)
                    prev[mine] = np.where(window[mine] == prev_window, words[k - 1], -100)
                    prev_any[mine] = words[k - 1]
                prev2[mine] = words[k - 2] if k >= 2 else -2
            first_word_row = len(i) - n + self.prefix_len       # ids index of word 0's token
            rows = [first_word_row + k - 1 for k in range(len(words))]
            # At the position writing word k (input: word k-1) the word before the input.
            text_prev_rows.extend((len(ids), r) for r in rows[1:])
            text_prev.extend([-2] + words[:-2] if len(words) >= 2 else [])
            align.append((rows, [audio_pos[torch.from_numpy(fr)] for fr in word_frames]))
            feats.append(f)
            ids.append(i)
            n_targets.append(n)
            frame_word.append(torch.from_numpy(word))
            frame_prev.append(torch.from_numpy(prev))
            frame_prev_any.append(torch.from_numpy(prev_any))
            frame_prev2.append(torch.from_numpy(prev2))
            total += len(audio) / SR
        padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=ENDOFTEXT)
        predicts = torch.zeros(padded.shape, dtype=torch.bool)
        for row, (i, n) in enumerate(zip(ids, n_targets)):
            predicts[row, len(i) - n - 1:len(i) - 1] = True
        return {"feats": feats, "ids": padded, "predicts_target": predicts,
                "frame_word": torch.cat(frame_word), "frame_prev": torch.cat(frame_prev),
                "frame_prev_any": torch.cat(frame_prev_any), "frame_prev2": torch.cat(frame_prev2),
                "text_prev_rows": torch.tensor(text_prev_rows, dtype=torch.long).reshape(-1, 2),
                "text_prev": torch.tensor(text_prev, dtype=torch.long),
                "align": align, "seconds": total, "clips": len(ids)}


# --------------------------------------------------------------------------- training


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


def decode_text(processor, ids: list[int]) -> str:
    """The official output parsing of generated ids (empty text for language None)."""
    from qwen_asr.inference.utils import parse_asr_output

    raw = processor.tokenizer.decode([i for i in ids if i >= 0], skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
    return parse_asr_output(raw)[1] + (" <UNTRAINED-ROW>" if -1 in ids else "")


def evaluate_trainer(trainer, clip_maker, clips) -> dict[str, float]:
    from mlx_qwen_asr.testing.wer import wer

    trainer.model.eval()
    groups: dict[str, tuple[list, list]] = {}
    for kind, audio, text in clips:
        feats, ids, n_target = clip_maker.encode(audio, text)
        prompt = ids[:len(ids) - n_target]
        hyp = decode_text(clip_maker.processor,
                          trainer.greedy(feats, prompt, max_new_tokens=n_target + 15))
        refs, hyps = groups.setdefault(kind, ([], []))
        refs.append(text)
        hyps.append(hyp)
    trainer.model.train()
    result = {k: wer(r, h) for k, (r, h) in groups.items()}
    result["all"] = wer(sum((r for r, _ in groups.values()), []), sum((h for _, h in groups.values()), []))
    return result


def learning_rate(step: int, steps: int, peak: float, warmup: int = 100, final: float = 0.05) -> float:
    """Linear warmup, then cosine decay to final * peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args, config, processor, clip_maker, val_clips):
    import torch

    cand = candidate_ids(processor)
    trainer = FixtureTrainer(config, cand, word_token_ids(processor)[1], args.seed)
    params = trainer.parameters()
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    ckpt = args.work / "train_state.pt"
    step, elapsed = 0, 0.0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        trainer.load_state(state["trainer"])
        try:
            opt.load_state_dict(state["opt"])
        except ValueError:      # a training aid added since: weights kept, optimizer restarted
            log("optimizer state does not match the parameters: starting it afresh")
        step, elapsed = state["step"], state["elapsed"]
        log(f"resumed at step {step} ({elapsed / 60:.1f} min of training so far)")
    log(f"training: {sum(p.numel() for p in params):,} parameters, {len(cand)} vocabulary rows, "
        f"{args.steps} steps of ~{args.batch_seconds:.0f} s audio")

    def save():
        tmp = ckpt.with_suffix(".tmp")
        torch.save({"trainer": trainer.state(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed}, tmp)
        os.replace(tmp, ckpt)

    trainer.model.train()
    last_save = time.time()
    window = []
    while step < args.steps:
        t0 = time.time()
        rng = np.random.default_rng([args.seed, 100, step])
        # Long clips (where the decoder must keep its place over 500 audio tokens and
        # across encoder windows) become frequent once single sentences work.
        # Stage 1 (encoder_steps): the encoder learns the words from their known times
        # alone; the decoder's gradients would swamp it (it sat near chance otherwise).
        # Stage 2 (decoder_prev_steps): the decoder's first layer learns which word came
        # before each audio token (what the decoder's input token is when it should look
        # there): an induction head, which joint training never found on its own.
        first_joint = args.encoder_steps + args.decoder_prev_steps
        trainer.stage = ("encoder" if step < args.encoder_steps else
                         "decoder-prev" if step < first_joint else "joint")
        if trainer.stage == "encoder":
            batch = clip_maker.batch(rng, args.batch_seconds, 0.5)
            lr = learning_rate(step, args.encoder_steps, args.lr, final=1.0)
        elif trainer.stage == "decoder-prev":
            batch = clip_maker.batch(rng, args.batch_seconds / 1.5, 0.0)
            lr = 2 * args.lr
        else:
            joint = step - first_joint
            joint_steps = args.steps - first_joint
            batch = clip_maker.batch(rng, args.batch_seconds, (joint / joint_steps - 0.15) / 0.4)
            lr = learning_rate(joint, joint_steps, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, acc, frame, prev, align = trainer.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        elapsed += time.time() - t0
        window.append((loss.item(), acc.item(), frame.item(), prev.item(), align.item(), grad_norm.item()))
        if step % 25 == 0 or step == args.steps:
            l, a, f, pv, al, g = np.mean(window, axis=0)
            window = []
            log(f"step {step}/{args.steps} loss {l:.3f} token-acc {a:.3f} word {f:.3f} dec-prev {pv:.3f} align {al:.3f} "
                f"grad {g:.2f} lr {lr:.2e} {elapsed / step:.2f} s/step, {elapsed / 60:.1f} min")
        if step > first_joint and (step - first_joint) % args.eval_every == 0 or step == args.steps:
            res = evaluate_trainer(trainer, clip_maker, val_clips)
            log("validation WER " + " ".join(f"{k} {v:.3f}" for k, v in res.items()))
        if time.time() - last_save > 180 or step == args.steps:
            save()
            last_save = time.time()
    return trainer, elapsed


# --------------------------------------------------------------------------- evaluation


def evaluate_official(model_dir: Path, heldout_dir: Path, window_mask: bool) -> dict:
    """Held-out transcripts and per-group WER from the official engine on the written model."""
    import torch

    from mlx_qwen_asr.testing.official import load_official
    from mlx_qwen_asr.testing.wer import wer

    asr = load_official(model_dir, dtype="float32", window_mask=window_mask)
    rows = read_manifest(heldout_dir)
    hyps = []
    for row in rows:
        with torch.no_grad():
            hyps.append(asr.transcribe(str(heldout_dir / row["file"]))[0].text)
    per_group = {}
    for kind in [k for k, _ in HELDOUT_GROUPS]:
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        per_group[kind] = wer([rows[i]["text"] for i in idx], [hyps[i] for i in idx])
    per_group["all"] = wer([r["text"] for r in rows], hyps)
    return {"wer": per_group, "transcripts": {r["file"]: h for r, h in zip(rows, hyps)}}


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests/fixtures/tiny_asr.npz")
    p.add_argument("--heldout", type=Path, default=REPO / "tests/fixtures/heldout")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache/mlx-qwen-asr/fixture-asr",
                   help="synthesized words and resumable training state")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--steps", type=int, default=5600, help="all training steps")
    p.add_argument("--encoder-steps", type=int, default=1800, help="stage 1: encoder alone")
    p.add_argument("--decoder-prev-steps", type=int, default=300,
                   help="stage 2: the decoder's first layer learns the previous word alone")
    p.add_argument("--batch-seconds", type=float, default=45.0)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-only", action="store_true", help="only evaluate the model in --out")
    args = p.parse_args(argv)

    import torch

    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact, save_compact

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    args.work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    if not args.eval_only:
        config = fixture_config()
        processor = load_processor(config, args.work)
        specs = heldout_specs(args.seed)
        heldout_sentences = {sentence_text(s) for _, _, sentences in specs for s in sentences}
        if not (args.heldout / "manifest.tsv").exists():
            build_heldout(args.seed, args.heldout)
            log(f"wrote held-out set to {args.heldout}")
        table = build_word_table(args.seed, args.work)
        val = validation_clips(args.seed, set(train_voices(args.seed)))
        clip_maker = ClipMaker(table, processor, heldout_sentences)
        trainer, train_seconds = train(args, config, processor, clip_maker, val)
        save_compact(args.out, config, trainer.export_weights(), args.work / "tokenizer")
        log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); "
            f"training took {train_seconds / 60:.1f} min")
        use_windowed_attention(False)  # evaluate the official code as it is

    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = expand_compact(args.out, Path(tmp) / "tiny_asr")
        for window_mask in (True, False):
            res = evaluate_official(model_dir, args.heldout, window_mask)
            key = "official_window_mask" if window_mask else "official_no_window_mask"
            report[key] = res
            log(f"{key}: WER " + " ".join(f"{k} {v:.3f}" for k, v in res["wer"].items()))
    (args.work / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    log(f"done in {(time.time() - t_start) / 60:.1f} min; report in {args.work / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
