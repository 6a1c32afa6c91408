"""Train the tiny Qwen3-ASR fixture model that the tests transcribe real speech with.

Writes tests/fixtures/tiny_asr.npz and the held-out set tests/fixtures/heldout, then the
official engine's WER on it. The recipe, its stages and figures: docs/fixtures.md.

    python -m fixture_training.model              # everything
    python -m fixture_training.model --eval-only  # re-evaluate the written model
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .clips import ClipMaker
from .datasets import (HELDOUT_GROUPS, SEED, build_heldout, build_word_table, heldout_specs, read_manifest,
                       train_voices, validation_clips)
from .official import (AUDIO_PAD, ENDOFTEXT, IM_END, VOCAB_SIZE, candidate_ids, fixture_config, load_processor,
                       official_model, use_windowed_attention, word_token_ids)
from .speech import sentence_text
from .training import TrainerBase, learning_rate, log, resume, save_state

REPO = Path(__file__).resolve().parent.parent


class FixtureTrainer(TrainerBase):
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

    def export_weights(self) -> dict[str, np.ndarray]:
        """PyTorch-named numpy weights; untrained vocabulary rows exactly zero, the head tied."""
        sd = self._exported(VOCAB_SIZE)
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


def train(args, config, processor, clip_maker, val_clips):
    import torch

    cand = candidate_ids(processor)
    trainer = FixtureTrainer(config, cand, word_token_ids(processor)[1], args.seed)
    params = trainer.parameters()
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    ckpt = args.work / "train_state.pt"
    step, elapsed = resume(ckpt, trainer, opt)
    log(f"training: {sum(p.numel() for p in params):,} parameters, {len(cand)} vocabulary rows, "
        f"{args.steps} steps of ~{args.batch_seconds:.0f} s audio")

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
            save_state(ckpt, trainer, opt, step, elapsed)
            last_save = time.time()
    return trainer, elapsed


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fixture_training.model", description=__doc__.split("\n\n")[0])
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
