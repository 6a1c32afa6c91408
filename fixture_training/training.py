"""What both trainers share: the log line, the learning-rate schedule, run state saved and
resumed, and the trainer pieces common to the ASR and aligner fixtures."""

from __future__ import annotations

import math
import os
import time

import numpy as np

from .official import AUDIO_PAD


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def learning_rate(step: int, steps: int, peak: float, warmup: int = 100, final: float = 0.05) -> float:
    """Linear warmup, then cosine decay to final * peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))


def resume(ckpt, trainer, opt) -> tuple[int, float]:
    """(step, seconds of training so far) of the run state saved in `ckpt`, loaded into
    `trainer` and `opt`; (0, 0.0) when there is none."""
    import torch

    if not ckpt.exists():
        return 0, 0.0
    state = torch.load(ckpt, weights_only=False)
    trainer.load_state(state["trainer"])
    try:
        opt.load_state_dict(state["opt"])
    except ValueError:      # a training aid added since: weights kept, optimizer restarted
        log("optimizer state does not match the parameters: starting it afresh")
    step, elapsed = state["step"], state["elapsed"]
    log(f"resumed at step {step} ({elapsed / 60:.1f} min of training so far)")
    return step, elapsed


def save_state(ckpt, trainer, opt, step: int, elapsed: float) -> None:
    """The run state, written whole or not at all (a rerun resumes from it)."""
    import torch

    tmp = ckpt.with_suffix(".tmp")
    torch.save({"trainer": trainer.state(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed}, tmp)
    os.replace(tmp, ckpt)


class TrainerBase:
    """The pieces both trainers share over the official model (`self.model`, with
    `self.tower`, `self.text`, the trained rows `self.embed` of token ids `self.cand`
    through `self.remap`, and the layer `self.align_layer` whose attention is taught)."""

    # Training-aid heads in a saved state: always there, and added since the first runs.
    REQUIRED_HEADS: tuple[str, ...] = ()
    OPTIONAL_HEADS: tuple[str, ...] = ()

    def _capture(self, module, args, kwargs):
        hs = kwargs.get("hidden_states", args[0] if args else None)
        pe = kwargs.get("position_embeddings", args[1] if len(args) > 1 else None)
        self._attn_inputs = (hs, pe)

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

    def alignment_loss(self, batch):
        """-log of the attention mass (mean over heads of layer align_layer) that each
        position in batch["align"] puts on its audio tokens."""
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

    def _exported(self, vocab_size: int) -> dict[str, np.ndarray]:
        """PyTorch-named numpy weights with the full embedding: untrained rows exactly zero."""
        import torch

        sd = {k: v.detach().float().numpy() for k, v in self.model.state_dict().items()}
        full = torch.zeros(vocab_size, self.embed.shape[1])
        full[self.cand] = self.embed.detach()
        sd["thinker.model.embed_tokens.weight"] = full.numpy()
        return sd
