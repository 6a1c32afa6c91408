"""Run the official implementation (PyPI `qwen-asr`, PyTorch) stage by stage, for parity checks.

Needs the `test` extra (torch, qwen-asr); imported only by tests, benchmarks and the fixture
script, never by the inference path.

The official transformers backend on CPU ignores the encoder's 8 s attention windows (it
never passes the block mask it can build, docs/model.md §4); the model was trained and is
served (flash-attention, vLLM) with them. `enable_window_mask` restores them so the
reference computes the semantics the model actually has.
"""

from __future__ import annotations

import numpy as np


def load_official(model_dir, dtype: str = "float32", window_mask: bool = True):
    """`qwen_asr.Qwen3ASRModel` on CPU in one dtype for every parameter."""
    import torch
    from qwen_asr import Qwen3ASRModel

    torch_dtype = getattr(torch, dtype)
    asr = Qwen3ASRModel.from_pretrained(str(model_dir), dtype=torch_dtype, device_map="cpu")
    dtypes = {p.dtype for p in asr.model.parameters()}
    if dtypes != {torch_dtype}:
        raise RuntimeError(f"official model loaded with mixed dtypes {dtypes} (sub-config dtype pitfall)")
    asr.model.eval()
    if window_mask:
        enable_window_mask(asr.model)
    return asr


def enable_window_mask(model) -> None:
    """Make every encoder layer attend only within its `cu_seqlens` window (idempotent)."""
    tower = model.thinker.audio_tower
    for layer in tower.layers:
        if getattr(layer, "_window_mask_enabled", False):
            continue
        original = layer.forward

        def forward(hidden_states, cu_seqlens, attention_mask=None, _original=original, **kwargs):
            if attention_mask is None:
                attention_mask = tower._prepare_attention_mask(hidden_states, cu_seqlens)
            return _original(hidden_states, cu_seqlens, attention_mask=attention_mask, **kwargs)

        layer.forward = forward
        layer._window_mask_enabled = True


def prompt_text(asr, context: str = "", language: str | None = None) -> str:
    return asr._build_text_prompt(context=context, force_language=language)


def processor_inputs(asr, audio: np.ndarray, context: str = "", language: str | None = None):
    """What the official pipeline feeds `generate` for one 16 kHz mono clip."""
    text = prompt_text(asr, context, language)
    inputs = asr.processor(text=[text], audio=[audio], return_tensors="pt", padding=True)
    return inputs.to(asr.model.device).to(asr.model.dtype)


def features(asr, audio: np.ndarray) -> np.ndarray:
    """Log-mel [n_mels, T] as the official processor computes it."""
    return processor_inputs(asr, audio)["input_features"][0].float().numpy()


def encoder_output(asr, mel: np.ndarray) -> np.ndarray:
    """Audio embeddings [N, output_dim] for a [n_mels, T] mel."""
    import torch

    tower = asr.model.thinker.audio_tower
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(mel)).to(tower.conv_out.weight.dtype)
        out = tower(x, feature_lens=torch.tensor([mel.shape[1]]))
    return out.last_hidden_state.float().numpy()


def logits_for(asr, inputs, continuation: list[int] | None = None) -> np.ndarray:
    """Logits [P + len(continuation), V] for the prompt followed by `continuation` (teacher forcing)."""
    import torch

    ids = inputs["input_ids"]
    if continuation:
        ids = torch.cat([ids, torch.tensor([continuation], dtype=ids.dtype)], dim=1)
    with torch.no_grad():
        out = asr.model.thinker(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            input_features=inputs["input_features"],
            feature_attention_mask=inputs["feature_attention_mask"],
        )
    return out.logits[0].float().numpy()


def generate(asr, inputs, max_new_tokens: int) -> list[int]:
    """Greedy tokens from the official `generate`, EOS excluded."""
    import torch

    with torch.no_grad():
        out = asr.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
    eos = {151645, 151643}
    result = []
    for token in new:
        if token in eos:
            break
        result.append(token)
    return result
