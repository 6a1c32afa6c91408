"""mlx-qwen-asr: Qwen3-ASR speech recognition on Apple MLX.

    import mlx_qwen_asr
    result = mlx_qwen_asr.transcribe("audio.wav")            # Qwen/Qwen3-ASR-0.6B from the hub
    model = mlx_qwen_asr.load_model("Qwen/Qwen3-ASR-1.7B")  # load once ...
    model.transcribe("a.wav").text                           # ... transcribe many
"""

# Before anything imports mlx.core: on Linux x86-64, bind MLX's BLAS to MKL if installed.
from . import fast_blas

fast_blas.enable()

from .config import SUPPORTED_LANGUAGES  # noqa: E402
from .errors import AudioError, LanguageError, ModelLoadError, OptionError, QwenASRError  # noqa: E402
from .options import LoadOptions, TranscribeOptions  # noqa: E402
from .results import Segment, Transcription  # noqa: E402
from .transcribe import ASRModel, load_model, transcribe  # noqa: E402
from .batch import transcribe_batch  # noqa: E402
from .folder import transcribe_folder  # noqa: E402
from .streaming import StreamingSession, StreamUpdate, transcribe_stream  # noqa: E402

fast_blas.self_check()

__version__ = "0.1.0"

__all__ = [
    "ASRModel", "AudioError", "LanguageError", "LoadOptions", "ModelLoadError", "OptionError", "QwenASRError",
    "SUPPORTED_LANGUAGES", "Segment", "StreamUpdate", "StreamingSession", "TranscribeOptions", "Transcription",
    "load_model", "transcribe", "transcribe_batch", "transcribe_folder", "transcribe_stream",
]
