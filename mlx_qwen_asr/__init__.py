"""mlx-qwen-asr: Qwen3-ASR speech recognition on Apple MLX.

    import mlx_qwen_asr
    result = mlx_qwen_asr.transcribe("audio.wav")            # Qwen/Qwen3-ASR-0.6B from the hub
    model = mlx_qwen_asr.load_model("Qwen/Qwen3-ASR-1.7B")  # load once ...
    model.transcribe("a.wav").text                           # ... transcribe many
"""

from .config import SUPPORTED_LANGUAGES
from .errors import AudioError, LanguageError, ModelLoadError, QwenASRError
from .transcribe import ASRModel, Transcription, load_model, transcribe

__version__ = "0.1.0"

__all__ = [
    "ASRModel", "AudioError", "LanguageError", "ModelLoadError", "QwenASRError",
    "SUPPORTED_LANGUAGES", "Transcription", "load_model", "transcribe",
]
