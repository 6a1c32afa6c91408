"""Command line. Text on stdout, diagnostics on stderr.

    python -m mlx_qwen_asr AUDIO_OR_FOLDER ...                  # text to stdout
    python -m mlx_qwen_asr AUDIO_OR_FOLDER ... -o OUT -f srt,json  # files in OUT (folder.py)
    python -m mlx_qwen_asr FOLDER -o OUT --ray [ADDRESS]         # the same over a Ray cluster (cluster.py)

Exit status: 0 all done, 1 some file failed, 2 setup error (model, language, options),
130 interrupted (rerun the same command to continue a folder run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .config import SUPPORTED_LANGUAGES
from .errors import QwenASRError
from .folder import find_audio, transcribe_folder
from .options import DEFAULT_ALIGNER, DEFAULT_MODEL, TranscribeOptions
from .segment import DEFAULT_SEGMENT_SECONDS
from .transcribe import Transcription, load_model
from .writers import FORMATS, parse_formats

# Flags a mode would silently ignore, refused instead: (flag, attribute, mode test, mode name).
IGNORED = (
    ("--timestamps", "timestamps", lambda a: a.stream or a.stream_fast or a.mic, "streaming"),
    ("--segment-seconds", "segment_seconds", lambda a: a.stream or a.stream_fast or a.mic, "streaming"),
    ("--max-new-tokens", "max_new_tokens", lambda a: a.stream or a.stream_fast or a.mic, "streaming"),
    ("--aligner", "aligner", lambda a: not a.timestamps, "transcription without --timestamps"),
    ("--ray-workers", "ray_workers", lambda a: not a.ray, "a run without --ray"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_qwen_asr",
        description="Transcribe audio files with Qwen3-ASR on MLX.",
    )
    parser.add_argument("audio", nargs="*", metavar="AUDIO_OR_FOLDER",
                        help="audio files (wav, flac, ogg, mp3, aiff; m4a/mp4 with ffmpeg) and folders (searched recursively)")
    parser.add_argument("-o", "--output-dir", default=None,
                        help="write output files here, mirroring the input folders; resumable (without -o: text to stdout)")
    parser.add_argument("-f", "--format", action="append", default=None,
                        help=f"with -o: output format(s), repeatable or comma-separated: {', '.join(FORMATS)}, all "
                             "(default: txt)")
    parser.add_argument("--overwrite", action="store_true", help="with -o: redo inputs that are already done")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or final summary")
    parser.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                        help="with -o: spread the files over a Ray cluster's workers (pip install "
                             "'mlx-qwen-asr[ray]'): ADDRESS of a running one (host:port, auto), or none to start "
                             "a local one; write --ray=ADDRESS or put it after the inputs")
    parser.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --ray: this many workers, each loading the model (default: 2 on a local "
                             "cluster, one per node on a running one)")
    parser.add_argument("--segment-seconds", type=_positive_seconds, default=None,
                        help=f"long audio is cut near every this many seconds (default: {DEFAULT_SEGMENT_SECONDS:g})")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"hub id or local model directory (default: {DEFAULT_MODEL})")
    parser.add_argument("--language", default=None,
                        help="force the language instead of detecting it; one of: " + ", ".join(SUPPORTED_LANGUAGES))
    parser.add_argument("--context", default="", help="context text (names, terms) given to the model as system prompt")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="compute precision (default: float32 on CPU, bfloat16 on GPU)")
    parser.add_argument("--quantize", type=int, default=None, choices=[4, 8],
                        help="quantize the decoder to 4 or 8 bits at load: less memory (faster on Apple GPUs; "
                             "slower than float32 on the CPU backend)")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per segment (default: scales with each segment's duration)")
    parser.add_argument("--verbose", action="store_true", help="print language, stage timings and finish reason to stderr")
    parser.add_argument("--timestamps", action="store_true",
                        help="time every word with the forced aligner: word-timed srt/vtt cues, words in json/tsv")
    parser.add_argument("--aligner", default=None,
                        help=f"forced aligner for --timestamps: hub id or directory (default: {DEFAULT_ALIGNER})")
    live = parser.add_mutually_exclusive_group()
    live.add_argument("--stream", action="store_true",
                      help="stream the file(s) at real-time speed, printing text as it is recognised")
    live.add_argument("--stream-fast", action="store_true", help="stream the file(s) as fast as possible")
    live.add_argument("--mic", action="store_true",
                      help="transcribe the microphone live until Ctrl-C (needs: pip install 'mlx-qwen-asr[mic]')")
    return parser


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, got {text}")
    return value


def _report(path: str, result: Transcription) -> str:
    t = result.timings
    stages = ", ".join(f"{name} {t[name] * 1000:.0f} ms" for name in ("load", "mel", "encoder", "prefill", "decode") if name in t)
    speed = f", {t['decode_tokens_per_s']:.1f} tok/s" if t.get("decode_tokens_per_s") else ""
    return (f"{path}: {result.duration:.2f} s, language {result.language or '-'}, "
            f"{len(result.tokens)} tokens, finish {result.finish_reason}; {stages}{speed}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.output_dir is None and (args.format or args.overwrite or args.ray or args.ray_workers):
        parser.error("-f/--format, --overwrite and --ray write files: give an output folder with -o")
    if not args.audio and not args.mic:
        parser.error("give audio files or folders (or --mic)")
    if args.mic and args.audio:
        parser.error("--mic takes no audio files")
    if (args.stream or args.stream_fast or args.mic) and args.output_dir is not None:
        parser.error("--stream/--stream-fast/--mic print text; they do not write files with -o")
    for flag, name, applies, mode in IGNORED:
        if getattr(args, name) not in (None, False) and applies(args):
            print(f"error: {flag} has no effect in {mode}", file=sys.stderr)
            return 2
    try:
        options = options_from(args)
        if args.output_dir is not None:
            return _folder_mode(args, options)
        if args.mic:
            return _live_mode(args, options, [])
        paths = _expand(args.audio)
        if not paths:
            raise QwenASRError("no audio files found in: " + ", ".join(args.audio))
        model = load_model(args.model, args.dtype, args.quantize)
    except (QwenASRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.stream or args.stream_fast:
        return _live_mode(args, options, paths, model)
    failures = 0
    for path in paths:
        try:
            result = model.transcribe(path, options)
        except QwenASRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
            continue
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        prefix = f"{path}: " if len(paths) > 1 else ""
        print(prefix + result.text, flush=True)
        if args.verbose:
            print(_report(path, result), file=sys.stderr)
        if result.finish_reason in ("length", "repetition"):
            print(f"warning: {path}: decoding stopped early ({result.finish_reason}); the text may be incomplete",
                  file=sys.stderr)
    return 1 if failures else 0


def options_from(args) -> TranscribeOptions:
    """The one options value of this run (checked before any model loads or audio is read)."""
    return TranscribeOptions(
        language=args.language, context=args.context, max_new_tokens=args.max_new_tokens,
        segment_seconds=DEFAULT_SEGMENT_SECONDS if args.segment_seconds is None else args.segment_seconds,
        word_timestamps=args.timestamps, aligner=args.aligner or DEFAULT_ALIGNER)


def _expand(inputs: list[str]) -> list[str]:
    """Folders become the audio files under them; anything else is passed on as given."""
    paths = []
    for given in inputs:
        if os.path.isdir(given):
            found = find_audio([given])
            for note in found.notes:
                print(f"note: {note}", file=sys.stderr)
            paths += [str(job.source) for job in found.jobs]
        else:
            paths.append(given)
    return paths


def _folder_mode(args, options: TranscribeOptions) -> int:
    formats = parse_formats(args.format or ["txt"])
    try:
        # A quantized model is loaded here; transcribe_folder loads plain ones itself.
        model = load_model(args.model, args.dtype, args.quantize) if args.quantize else args.model
        summary = transcribe_folder(
            args.audio, args.output_dir, options, model=model, dtype=args.dtype, formats=formats,
            overwrite=args.overwrite, quiet=args.quiet, verbose=args.verbose, ray=args.ray,
            ray_workers=args.ray_workers)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return 130
    return 1 if summary["failed"] else 0


def _live_mode(args, options: TranscribeOptions, paths, model=None) -> int:
    from .live import stream_file, stream_microphone

    try:
        model = model or load_model(args.model, args.dtype, args.quantize)
        if args.mic:
            started = time.perf_counter()
            final = stream_microphone(model, options)
            if args.verbose:
                print(_stream_report("microphone", final, time.perf_counter() - started), file=sys.stderr)
            return 0
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for path in paths:
        try:
            if len(paths) > 1:
                print(f"{path}:", flush=True)
            started = time.perf_counter()
            final = stream_file(path, model, options, realtime=args.stream)
            if args.verbose and final is not None:
                print(_stream_report(path, final, time.perf_counter() - started), file=sys.stderr)
        except QwenASRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
    return 1 if failures else 0


def _stream_report(source: str, final, wall: float) -> str:
    return (f"{source}: {final.audio_seconds:.2f} s streamed in {wall:.2f} s, language {final.language or '-'}, "
            f"{len(final.committed.split())} words")
