"""Model hyper-parameters, read from a checkpoint's config.json (Hugging Face layout).

Every size comes from the file; nothing here assumes 0.6B or 1.7B.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelLoadError

# utils.SUPPORTED_LANGUAGES of the official package, in its order.
SUPPORTED_LANGUAGES = (
    "Chinese", "English", "Cantonese", "Arabic", "German", "French", "Spanish",
    "Portuguese", "Indonesian", "Italian", "Korean", "Russian", "Thai", "Vietnamese",
    "Japanese", "Turkish", "Hindi", "Malay", "Dutch", "Swedish", "Danish", "Finnish",
    "Polish", "Czech", "Filipino", "Persian", "Greek", "Romanian", "Hungarian",
    "Macedonian",
)

# Token ids fixed by the Qwen3-ASR tokenizer (docs/model.md §6); config.json may override
# the audio ones.
ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
DEFAULT_EOS_IDS = (IM_END_ID, ENDOFTEXT_ID)


@dataclass(frozen=True)
class AudioEncoderConfig:
    num_mel_bins: int
    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    output_dim: int
    downsample_hidden_size: int
    n_window: int
    n_window_infer: int
    max_source_positions: int

    @property
    def chunk_frames(self) -> int:
        """Mel frames per conv chunk (100 = 1 s)."""
        return 2 * self.n_window

    @property
    def chunks_per_window(self) -> int:
        """Conv chunks per attention window (8 = 8 s)."""
        return self.n_window_infer // self.chunk_frames


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool


@dataclass(frozen=True)
class ModelConfig:
    audio: AudioEncoderConfig
    text: TextConfig
    audio_token_id: int = 151676
    audio_start_token_id: int = 151669
    audio_end_token_id: int = 151670
    eos_token_ids: tuple[int, ...] = DEFAULT_EOS_IDS
    support_languages: tuple[str, ...] = SUPPORTED_LANGUAGES
    # Raw config.json, kept so a converted model can be written back out unchanged.
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        raw = nest_flat_config(raw)
        try:
            thinker = raw["thinker_config"]
            audio_raw = thinker["audio_config"]
            text_raw = thinker["text_config"]
            audio = AudioEncoderConfig(**{k: audio_raw[k] for k in _AUDIO_KEYS})
            text_values = {k: text_raw[k] for k in _TEXT_KEYS_REQUIRED}
            text_values["head_dim"] = text_raw.get(
                "head_dim", text_raw["hidden_size"] // text_raw["num_attention_heads"])
            text_values["rms_norm_eps"] = float(text_raw.get("rms_norm_eps", 1e-6))
            text_values["rope_theta"] = float(text_raw.get("rope_theta", 1e6))
            text_values["tie_word_embeddings"] = bool(text_raw.get(
                "tie_word_embeddings", raw.get("tie_word_embeddings", True)))
            text = TextConfig(**text_values)
        except (KeyError, TypeError) as exc:
            raise ModelLoadError(f"config.json is not a Qwen3-ASR config: missing or bad field {exc}") from None
        eos = raw.get("eos_token_id") or thinker.get("eos_token_id") or DEFAULT_EOS_IDS
        if isinstance(eos, int):
            eos = (eos,)
        return cls(
            audio=audio,
            text=text,
            audio_token_id=int(thinker.get("audio_token_id", 151676)),
            audio_start_token_id=int(thinker.get("audio_start_token_id", 151669)),
            audio_end_token_id=int(thinker.get("audio_end_token_id", 151670)),
            eos_token_ids=tuple(int(e) for e in eos),
            support_languages=tuple(raw.get("support_languages") or SUPPORTED_LANGUAGES),
            raw=raw,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelLoadError(f"{path} not found: a Qwen3-ASR model directory needs config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{path} is not a Qwen3-ASR config (expected a JSON object)")
        return cls.from_dict(raw)


def nest_flat_config(raw: dict) -> dict:
    """A config with top-level audio_config/text_config (mlx-audio's own ModelConfig reads
    that form too) -> the Hugging Face nesting under thinker_config; others unchanged."""
    if "thinker_config" in raw or not ("audio_config" in raw and "text_config" in raw):
        return raw
    ids = {k: raw[k] for k in ("audio_token_id", "audio_start_token_id", "audio_end_token_id") if k in raw}
    thinker = {"audio_config": raw["audio_config"], "text_config": raw["text_config"], **ids}
    return {**{k: v for k, v in raw.items() if k not in ("audio_config", "text_config")}, "thinker_config": thinker}


_AUDIO_KEYS = (
    "num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim",
    "output_dim", "downsample_hidden_size", "n_window", "n_window_infer", "max_source_positions",
)
_TEXT_KEYS_REQUIRED = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads",
)
