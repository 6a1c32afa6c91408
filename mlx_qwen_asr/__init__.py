"""mlx-qwen-asr: Qwen3-ASR speech recognition on Apple MLX.

    import mlx_qwen_asr
    result = mlx_qwen_asr.transcribe("audio.wav")            # Qwen/Qwen3-ASR-0.6B from the hub
    model = mlx_qwen_asr.load_model("Qwen/Qwen3-ASR-1.7B")  # load once ...
    model.transcribe("a.wav").text                           # ... transcribe many
"""

# Before anything imports mlx.core: on Linux x86-64, bind MLX's BLAS to MKL if installed.
from .model import fast_blas

fast_blas.enable()
fast_blas.warn_if_imported_too_late()

from .model.config import SUPPORTED_LANGUAGES  # noqa: E402
from .errors import AudioError, LanguageError, ModelLoadError, OptionError, OutputError, QwenASRError, SetupError  # noqa: E402
from .options import LoadOptions, TranscribeOptions  # noqa: E402
from .results import Segment, Transcription  # noqa: E402
from .transcribe import ASRModel, load_model, transcribe  # noqa: E402
from .batch import transcribe_batch  # noqa: E402
from .frontends.folder import transcribe_folder  # noqa: E402
from .aligner import align  # noqa: E402
from .transcripts import align_transcription  # noqa: E402
from .stream.session import StreamingSession, StreamUpdate, transcribe_stream  # noqa: E402
from .speakers.options import DiarizeOptions  # noqa: E402
from .speakers.pipeline import SpeakerTurn, diarize  # noqa: E402

if fast_blas.status()["active"]:   # the wheel's own BLAS needs no check at every import
    fast_blas.self_check()

__version__ = "0.1.0"

__all__ = [
    "ASRModel", "AudioError", "DiarizeOptions", "LanguageError", "LoadOptions", "ModelLoadError", "OptionError", "OutputError",
    "QwenASRError", "SUPPORTED_LANGUAGES", "Segment", "SetupError", "SpeakerTurn", "StreamUpdate", "StreamingSession",
    "TranscribeOptions", "Transcription", "align", "align_transcription", "diarize", "load_model", "transcribe",
    "transcribe_batch", "transcribe_folder", "transcribe_stream",
]
