"""Command line: `python -m mlx_qwen_asr AUDIO [AUDIO ...]`. Text on stdout, diagnostics on stderr."""

from __future__ import annotations

import argparse
import sys

from .config import SUPPORTED_LANGUAGES
from .errors import QwenASRError
from .prompt import normalize_language
from .transcribe import DEFAULT_MODEL, Transcription, load_model


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_qwen_asr",
        description="Transcribe audio files with Qwen3-ASR on MLX.",
    )
    parser.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, aiff; m4a/mp4 with ffmpeg)")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"hub id or local model directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--language", default=None,
                        help="force the language instead of detecting it; one of: " + ", ".join(SUPPORTED_LANGUAGES))
    parser.add_argument("--context", default="", help="context text (names, terms) given to the model as system prompt")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="compute precision (default: float32 on CPU, bfloat16 on GPU)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per file (default: scales with the audio duration)")
    parser.add_argument("--verbose", action="store_true", help="print language, stage timings and finish reason to stderr")
    return parser


def _report(path: str, result: Transcription) -> str:
    t = result.timings
    stages = ", ".join(f"{name} {t[name] * 1000:.0f} ms" for name in ("load", "mel", "encoder", "prefill", "decode") if name in t)
    speed = f", {t['decode_tokens_per_s']:.1f} tok/s" if t.get("decode_tokens_per_s") else ""
    return (f"{path}: {result.duration:.2f} s, language {result.language or '-'}, "
            f"{len(result.tokens)} tokens, finish {result.finish_reason}; {stages}{speed}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        language = normalize_language(args.language)
        model = load_model(args.model, args.dtype)
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for path in args.audio:
        try:
            result = model.transcribe(path, language=language, context=args.context,
                                      max_new_tokens=args.max_new_tokens)
        except QwenASRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        prefix = f"{path}: " if len(args.audio) > 1 else ""
        print(prefix + result.text, flush=True)
        if args.verbose:
            print(_report(path, result), file=sys.stderr)
        if result.finish_reason in ("length", "repetition"):
            print(f"warning: {path}: decoding stopped early ({result.finish_reason}); the text may be incomplete",
                  file=sys.stderr)
    return 1 if failures else 0
