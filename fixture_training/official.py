"""The official PyTorch model set up for training: the fixture's config and tokenizer, the
official processor and prompt, the token ids trained, windowed encoder attention, init.

torch, transformers and qwen_asr are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .speech import WORDS

# Token ids (docs/model.md §6).
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645
AUDIO_START, AUDIO_END, AUDIO_PAD, ASR_TEXT = 151669, 151670, 151676, 151704
VOCAB_SIZE = 151936

# Audio tokens: 13 per 1 s conv chunk, each from 8 mel frames of 10 ms; 104 per 8 s window.
TOKENS_PER_CHUNK, TOKENS_PER_WINDOW = 13, 104



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
