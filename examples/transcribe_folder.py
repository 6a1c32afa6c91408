"""Transcribe every audio file under a folder into subtitles and JSON, resumably.

    python examples/transcribe_folder.py recordings/ transcripts/

Rerunning after an interruption does only what is left; a file that fails is listed at the
end and the others still run. The same as:

    python -m mlx_qwen_asr recordings/ -o transcripts/ -f srt -f json
"""

import sys

import mlx_qwen_asr


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    source, target = sys.argv[1:]
    summary = mlx_qwen_asr.transcribe_folder(
        source, target,
        model="Qwen/Qwen3-ASR-0.6B",
        formats=["srt", "json"],
        # language="English",   # force a language instead of detecting it per segment
        # context="Names: Ada Lovelace, Charles Babbage",   # spellings the model should know
    )
    for path in summary["truncated_files"]:
        print(f"check {path}: decoding stopped early", file=sys.stderr)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
