"""Train the tiny Qwen3-ForcedAligner fixture: word times checked against known ones.

Writes tests/fixtures/tiny_aligner.npz, starting from the trained ASR fixture's run state
(run `python -m fixture_training.model` first), then our aligner's mean word-boundary
error on the held-out set. The recipe and its history: docs/fixtures.md.

    python -m fixture_training.aligner
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .clips import ClipMaker, token_labels
from .datasets import SEED, build_word_table, heldout_specs
from .official import (AUDIO_END, AUDIO_PAD, AUDIO_START, ENDOFTEXT, TOKENS_PER_CHUNK, candidate_ids,
                       fixture_config, official_model)
from .official import load_processor as load_asr_processor
from .speech import SR, WORDS, sentence_text
from .training import TrainerBase, learning_rate, log, resume, save_state

REPO = Path(__file__).resolve().parent.parent
TIMESTAMP = 151705
CLASS_SECONDS = 0.08
CLASSIFY_NUM = 5000


def aligner_config() -> dict:
    from mlx_qwen_asr.testing.random_checkpoint import aligner_config_dict

    base = fixture_config()["thinker_config"]
    text = {k: base["text_config"][k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                 "num_attention_heads", "num_key_value_heads", "head_dim",
                                                 "rope_theta")}
    return aligner_config_dict("tiny", classify_num=CLASSIFY_NUM, timestamp_segment_time=80,
                               audio_config={k: base["audio_config"][k] for k in
                                             ("d_model", "encoder_layers", "encoder_attention_heads",
                                              "encoder_ffn_dim", "downsample_hidden_size")},
                               text_config=text)


def load_processor(config: dict, work: Path):
    import qwen_asr  # noqa: F401
    from transformers import AutoProcessor

    from mlx_qwen_asr.testing.random_checkpoint import ADDED_TOKENS, ALIGNER_ADDED_TOKENS, write_tokenizer_files

    skeleton = work / "aligner-processor"
    write_tokenizer_files(skeleton, work / "tokenizer", ADDED_TOKENS + ALIGNER_ADDED_TOKENS)
    (skeleton / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return AutoProcessor.from_pretrained(str(skeleton), fix_mistral_regex=True)


def prompt_text(words: list[str]) -> str:
    """The official aligner input text (Qwen3ForceAlignProcessor.encode_timestamp)."""
    stamps = "<timestamp><timestamp>"
    return "<|audio_start|><|audio_pad|><|audio_end|>" + stamps.join(words) + stamps


class AlignerTrainer(TrainerBase):
    """The official Qwen3ASRForConditionalGeneration in its forced-aligner form."""

    def __init__(self, config: dict, cand: list[int], seed: int, align_layer: int = 3):
        import torch

        self.model = official_model(config, seed)
        thinker = self.model.thinker
        self.tower, self.text, self.head = thinker.audio_tower, thinker.model, thinker.lm_head
        self.text.embed_tokens.weight.requires_grad_(False)
        hidden = config["thinker_config"]["text_config"]["hidden_size"]
        self.vocab = config["thinker_config"]["text_config"]["vocab_size"]
        self.cand = torch.tensor(cand)
        self.remap = torch.full((self.vocab,), -1, dtype=torch.long)
        self.remap[self.cand] = torch.arange(len(cand))
        self.embed = torch.nn.Parameter(torch.randn(len(cand), hidden) * 0.05)
        # Training aid, not saved: the word each <timestamp> token belongs to, read from
        # the first decoder layer's output there (a previous-token head: what the
        # <timestamp> query then looks for in the audio).
        self.stamp_word_head = torch.nn.Linear(hidden, len(WORDS))
        # Training aid, not saved: each audio token's own time class read at the alignment
        # layer's input, so the values that layer's attention gathers already carry time.
        self.clock_head = torch.nn.Linear(hidden, CLASSIFY_NUM)
        # Training aid, not saved: the word spoken at each audio token (or none), read at the
        # alignment layer's input, so the keys there say which word a boundary ends; the
        # <timestamp> queries know their word (stamp-word), and without this the attention
        # found the right boundary first but spread most of its mass over the neighbours'.
        self.audio_word_head = torch.nn.Linear(hidden, len(WORDS) + 1)
        self.align_layer = align_layer
        self.audio_weight, self.align_weight = 0.5, 1.0
        # "clock": the decoder learns alone to tell each audio token's time (in joint
        # training it did not: the timestamp loss sat near chance); "stamp-word": the first
        # layer learns each <timestamp>'s word; "align": the alignment layer alone learns to
        # look from each <timestamp> at its boundary's audio; "joint": everything.
        self.stage = "joint"
        self._attn_inputs = None
        self.text.layers[align_layer].self_attn.register_forward_pre_hook(self._capture, with_kwargs=True)

    def start_from_asr(self, state: dict, asr_cand: list[int]) -> None:
        """Encoder, decoder layers and the shared token rows from the trained ASR fixture."""
        import torch

        layers = {k: v for k, v in state["model"].items()
                  if k.startswith(("thinker.audio_tower.", "thinker.model.layers.", "thinker.model.norm."))}
        self.model.load_state_dict(layers, strict=False)
        with torch.no_grad():
            for row, token in enumerate(asr_cand):
                if 0 <= token < self.vocab and self.remap[token] >= 0:
                    self.embed[self.remap[token]] = state["embed"][row]

    def parameters(self):
        params = [p for n, p in self.model.named_parameters()
                  if n.startswith(("thinker.audio_tower.", "thinker.model.layers.", "thinker.model.norm.",
                                   "thinker.lm_head."))]
        return params + [self.embed, *self.stamp_word_head.parameters(), *self.clock_head.parameters(),
                         *self.audio_word_head.parameters()]

    def state(self) -> dict:
        return {"model": {k: v for k, v in self.model.state_dict().items() if "embed_tokens" not in k},
                "embed": self.embed.detach().clone(), "stamp_word_head": self.stamp_word_head.state_dict(),
                "clock_head": self.clock_head.state_dict(), "audio_word_head": self.audio_word_head.state_dict()}

    REQUIRED_HEADS = ()
    OPTIONAL_HEADS = ("stamp_word_head", "clock_head", "audio_word_head")

    def loss(self, batch):
        """(total, timestamp accuracy within one class, timestamp loss, alignment loss)."""
        import torch.nn.functional as F

        ids = batch["ids"]
        out = self._decoder(ids, self._encode_audio(batch))
        h = out.last_hidden_state
        stamp = ids == TIMESTAMP
        stamp_word = F.cross_entropy(self.stamp_word_head(out.hidden_states[1][stamp]), batch["stamp_words"])
        if self.stage == "stamp-word":
            hit = (self.stamp_word_head(out.hidden_states[1][stamp]).argmax(-1) == batch["stamp_words"])
            return stamp_word, hit.float().mean(), stamp_word, stamp_word.new_zeros(())
        logits = self.head(h[stamp])
        target = batch["stamp_classes"]
        stamp_loss = F.cross_entropy(logits, target)
        close = ((logits.argmax(-1) - target).abs() <= 1).float().mean()
        pad = ids == AUDIO_PAD
        audio_loss = F.cross_entropy(self.head(h[pad]), batch["audio_classes"])
        at_align = out.hidden_states[self.align_layer][pad]   # audio tokens at the alignment layer's input
        inner = self.clock_head(at_align)
        audio_loss = audio_loss + F.cross_entropy(inner, batch["audio_classes"])
        if self.stage == "clock":
            hit = ((inner.argmax(-1) - batch["audio_classes"]).abs() <= 1).float().mean()
            return audio_loss, hit, audio_loss, audio_loss.new_zeros(())
        align = self.alignment_loss(batch)
        audio_word = F.cross_entropy(self.audio_word_head(at_align), batch["audio_words"])
        if self.stage == "align":
            return align + stamp_word + audio_word, close, stamp_loss, align
        return (stamp_loss + self.audio_weight * audio_loss + self.align_weight * align + stamp_word + audio_word,
                close, stamp_loss, align)

    def export_weights(self) -> dict[str, np.ndarray]:
        """PyTorch-named numpy weights; untrained vocabulary rows exactly zero."""
        return self._exported(self.vocab)


class AlignerClips:
    """Aligner inputs and targets from the ASR fixture's training clips."""

    def __init__(self, clip_maker: ClipMaker, processor):
        self.clips, self.processor = clip_maker, processor

    def batch(self, rng: np.random.Generator, seconds: float, progress: float):
        import torch

        kinds = ("short", "medium", "long")
        p = min(1.0, max(0.0, progress))
        probs = np.array([0.6 - 0.3 * p, 0.3, 0.1 + 0.3 * p])
        feats, ids, stamps, stamp_words, audio_classes, audio_words, align, total = [], [], [], [], [], [], [], 0.0
        while total < seconds:
            audio, words, spans = self.clips.clip(rng, kinds[rng.choice(3, p=probs / probs.sum())])
            text = prompt_text([WORDS[w] for w in words])
            inputs = self.processor(text=[text], audio=[audio], return_tensors="pt", padding=True)
            i = inputs["input_ids"][0]
            audio_pos = torch.nonzero(i == AUDIO_PAD)[:, 0]
            n = len(audio_pos)
            starts = (np.arange(n) // TOKENS_PER_CHUNK) + (np.arange(n) % TOKENS_PER_CHUNK) * 0.08
            audio_classes.append(torch.from_numpy(np.round((starts + 0.04) / CLASS_SECONDS).astype(np.int64)))
            times = np.array(spans).reshape(-1)
            stamps.append(torch.from_numpy(np.round(times / CLASS_SECONDS).astype(np.int64)))
            stamp_words.append(torch.tensor(np.repeat(words, 2), dtype=torch.long))
            label, word_frames = token_labels(n, spans)
            audio_words.append(torch.from_numpy(np.where(label >= 0, np.asarray(words)[np.maximum(label, 0)],
                                                         len(WORDS)).astype(np.int64)))
            rows = torch.nonzero(i == TIMESTAMP)[:, 0].tolist()
            # A word's first <timestamp> looks at its first two audio tokens, the second at its
            # last two: the attention output then carries that boundary's time (looking at the
            # whole word, as the ASR fixture does, gives only its middle: 309 ms error).
            frames = [audio_pos[torch.from_numpy(word_frames[r // 2][:2] if r % 2 == 0 else word_frames[r // 2][-2:])]
                      for r in range(len(rows))]
            align.append((rows, frames))
            feats.append(inputs["input_features"][0].float())
            ids.append(i)
            total += len(audio) / SR
        padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=ENDOFTEXT)
        return {"feats": feats, "ids": padded, "stamp_classes": torch.cat(stamps),
                "stamp_words": torch.cat(stamp_words),
                "audio_classes": torch.cat(audio_classes), "audio_words": torch.cat(audio_words), "align": align}


def boundary_error(aligner_dir: Path, heldout: Path) -> dict:
    """Mean |predicted - true| word start/end on the held-out set, with our Aligner."""
    from mlx_qwen_asr.aligner import Aligner

    aligner = Aligner.load(aligner_dir, dtype="float32")
    truth = json.loads((heldout / "words.json").read_text(encoding="utf-8"))
    errors = {}
    for name, words in truth.items():
        timed = aligner.align(str(heldout / name), " ".join(w for w, _, _ in words), language="English")
        pred = np.array([[t.start, t.end] for t in timed])
        errors[name] = np.abs(pred - np.array([[a, b] for _, a, b in words])).ravel()
    groups = {kind: float(np.concatenate([e for n, e in errors.items() if n.startswith(kind)]).mean())
              for kind in ("short", "medium", "long")}
    # Over all word boundaries, as tests/testing/test_fixture_aligner.py measures it.
    return {"mean": float(np.concatenate(list(errors.values())).mean()), "per_group": groups,
            "per_file": {n: float(e.mean()) for n, e in errors.items()}}


def train(args) -> None:
    """Train from the ASR fixture's run state in --work (resuming our own), write --out."""
    import torch

    from mlx_qwen_asr.testing.compact_checkpoint import save_compact

    config = aligner_config()
    processor = load_processor(config, args.work)
    asr_processor = load_asr_processor(fixture_config(), args.work)
    table = build_word_table(args.seed, args.work)
    specs = heldout_specs(args.seed)
    exclude = {sentence_text(s) for _, _, sentences in specs for s in sentences}
    clips = AlignerClips(ClipMaker(table, asr_processor, exclude), processor)
    tok = processor.tokenizer
    cand = sorted({*(tok(w).input_ids[0] for w in WORDS), AUDIO_START, AUDIO_END,
                   AUDIO_PAD, TIMESTAMP, ENDOFTEXT})
    trainer = AlignerTrainer(config, cand, args.seed)
    asr_state = torch.load(args.work / "train_state.pt", weights_only=False)["trainer"]
    trainer.start_from_asr(asr_state, candidate_ids(asr_processor))
    params = trainer.parameters()
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    ckpt = args.work / "aligner_state.pt"
    step, elapsed = resume(ckpt, trainer, opt)
    last_save, window = time.time(), []
    while step < args.steps:
        t0 = time.time()
        rng = np.random.default_rng([args.seed, 200, step])
        first_align = args.clock_steps + args.stamp_word_steps
        first_joint = first_align + args.align_steps
        trainer.stage = ("clock" if step < args.clock_steps else
                         "stamp-word" if step < first_align else
                         "align" if step < first_joint else "joint")
        batch = clips.batch(rng, args.batch_seconds, step / max(1, args.steps) / 0.5)
        if trainer.stage == "clock":
            lr = learning_rate(step, args.clock_steps, 2 * args.lr, final=1.0)
        elif trainer.stage in ("stamp-word", "align"):
            lr = 2 * args.lr
        else:
            lr = learning_rate(step - first_joint, args.steps - first_joint, args.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, close, stamp_loss, align = trainer.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        step += 1
        elapsed += time.time() - t0
        window.append((loss.item(), close.item(), stamp_loss.item(), align.item()))
        if step % 25 == 0 or step == args.steps:
            l, c, s, a = np.mean(window, axis=0)
            window = []
            log(f"{trainer.stage} step {step}/{args.steps} loss {l:.3f} within 80 ms {c:.3f} "
                f"stamp {s:.3f} align {a:.3f} lr {lr:.2e} {elapsed / 60:.1f} min")
        if time.time() - last_save > 180 or step == args.steps:
            save_state(ckpt, trainer, opt, step, elapsed)
            last_save = time.time()
    save_compact(args.out, config, trainer.export_weights(), args.work / "tokenizer")
    log(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), {elapsed / 60:.1f} min training")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fixture_training.aligner", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "tests/fixtures/tiny_aligner.npz")
    p.add_argument("--heldout", type=Path, default=REPO / "tests/fixtures/heldout")
    p.add_argument("--work", type=Path, default=Path.home() / ".cache/mlx-qwen-asr/fixture-asr")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--steps", type=int, default=6000, help="all training steps")
    p.add_argument("--clock-steps", type=int, default=400, help="stage 1: the decoder learns time alone")
    p.add_argument("--stamp-word-steps", type=int, default=200,
                   help="stage 2: the first decoder layer learns each <timestamp>'s word alone")
    p.add_argument("--align-steps", type=int, default=500,
                   help="stage 3: the alignment layer learns alone where each <timestamp> looks")
    p.add_argument("--batch-seconds", type=float, default=45.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-only", action="store_true")
    args = p.parse_args(argv)

    import torch

    from mlx_qwen_asr.testing.compact_checkpoint import expand_compact

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if not args.eval_only:
        train(args)
    with tempfile.TemporaryDirectory() as tmp:
        result = boundary_error(expand_compact(args.out, Path(tmp) / "aligner"), args.heldout)
    log(f"held-out mean word-boundary error: {result['mean'] * 1000:.0f} ms")
    (args.work / "aligner_report.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
