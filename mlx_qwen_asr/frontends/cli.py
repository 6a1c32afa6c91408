"""Command line. Text on stdout, diagnostics on stderr.

    python -m mlx_qwen_asr AUDIO_OR_FOLDER ...                  # text to stdout
    python -m mlx_qwen_asr AUDIO ... --timestamps               # [00:01.20 --> 00:03.50] text
    python -m mlx_qwen_asr AUDIO_OR_FOLDER ... -o OUT -f srt,json  # files in OUT (folder.py)
    ffmpeg -i talk.mp4 -f s16le -ac 1 -ar 16000 - | python -m mlx_qwen_asr - --raw-rate 16000
    python -m mlx_qwen_asr talk.wav --align transcript.txt -o OUT -f srt   # time a given text
    python -m mlx_qwen_asr FOLDER -o OUT --ray [ADDRESS]         # the same over a Ray cluster (cluster.py)
    python -m mlx_qwen_asr --mic --vad [--mic-device NAME]      # dictation: a line per utterance (dictation.py)

Exit status: 0 all done, 1 some file failed, 2 setup error (model, language, options),
130 interrupted (rerun the same command to continue a folder run). A flag the chosen mode
cannot honour is a setup error, never silently ignored.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

from .args import (OneLineParser, bounded, long_options, number, number_or_none, positive_float, positive_int,
                   program_name)
from ..errors import OptionError, QwenASRError, SetupError, first_line
from .folder import find_audio, transcribe_folder
from ..languages import forced_language_warning, language_table
from ..model.loading import slow_on_this_device
from ..options import DEFAULT_ALIGNER, DEFAULT_MODEL, TranscribeOptions
from .preflight import check_inputs, check_microphone, check_output_dir
from ..clock import clock_centis
from ..confidence import DEFAULT_MIN_SPEECH_SECONDS, DEFAULT_NO_SPEECH_THRESHOLD
from ..audio.cutting import DEFAULT_SEGMENT_SECONDS
from ..limits import check_context
from ..results import FINISH_LENGTH, FINISH_REPETITION, join_texts
from ..transcribe import Transcription, load_model
from ..writers import (FORMATS, MAX_CUE_SECONDS, MAX_LINE_WIDTH, MAX_LINES, CueShape, parse_formats,
                      timed_lines)

STDIN = "-"


EPILOG = """\
examples:
  text on stdout, a line per file, written as each segment is decoded:
    {prog} talk.wav
  timed lines, [00:01.20 --> 00:03.50] text:
    {prog} talk.wav --timestamps
  files in out/ (resumable: run it again to continue):
    {prog} talks/ -o out -f srt,txt
  standard input:
    ffmpeg -i talk.mp4 -f s16le -ac 1 -ar 16000 - | {prog} - --raw-rate 16000
  time a transcript you have:
    {prog} talk.wav --align transcript.txt -o out -f srt
  dictation from the microphone, a line per utterance:
    {prog} --mic --vad
  OpenAI-compatible server and web page:
    {prog} serve --help

whisper's spellings work where they mean the same (--output_dir, --output_format, -l, -m;
_ for - in any long flag). Exit status: 0 all done, 1 some file failed, 2 setup error,
130 interrupted.
"""


_speaker_count = bounded(int, lambda value: value >= 1, "must be at least 1 speaker")
_positive_seconds = bounded(float, lambda value: value >= 1.0, "must be at least 1 second")
_no_speech_threshold = number_or_none(lambda value: 0.0 <= value <= 1.0, "a probability from 0 to 1")
_min_speech_seconds = number_or_none(lambda value: 0.0 <= value < math.inf, "seconds (a number >= 0)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    prog = program_name()
    parser = OneLineParser(
        prog=prog, nearest=_NEAREST,
        usage="%(prog)s [options] AUDIO_OR_FOLDER ...\n       %(prog)s --mic [options]\n"
              "       %(prog)s serve [options]   (see: %(prog)s serve --help)",
        description="Transcribe audio files with Qwen3-ASR on MLX.",
        epilog=EPILOG.format(prog=prog), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files = parser.add_argument_group("input and output")
    model = parser.add_argument_group("model")
    recognition = parser.add_argument_group("recognition")
    words = parser.add_argument_group("word times and subtitles")
    live_group = parser.add_argument_group("live: streaming and microphone")
    cluster = parser.add_argument_group("Ray cluster")
    parser.add_argument("audio", nargs="*", metavar="AUDIO_OR_FOLDER",
                        help="audio files (wav, flac, ogg, mp3, aiff; m4a/mp4 with ffmpeg) and folders (searched "
                             "recursively); - reads audio from standard input")
    parser.add_argument("--version", action="version", version=f"mlx-qwen-asr {__version__}")
    parser.add_argument("--list-languages", action="store_true",
                        help="print the languages --language takes (names, ISO 639-1/639-3 codes, aliases) and exit")
    files.add_argument("-o", "--output-dir", default=None,
                        help="write output files here, mirroring the input folders; resumable (without -o: text to stdout)")
    files.add_argument("-f", "--format", "--output-format", action="append", default=None,
                        help=f"with -o: output format(s), repeatable or comma-separated: {', '.join(FORMATS)}, all "
                             "(default: txt)")
    files.add_argument("--overwrite", action="store_true", help="with -o: redo inputs that are already done")
    files.add_argument("--quiet", action="store_true", help="with -o: no progress bars or final summary")
    files.add_argument("--raw-rate", type=_positive_rate, default=None, metavar="N",
                        help="with -: standard input is raw 16-bit little-endian mono PCM at N Hz")
    cluster.add_argument("--ray", nargs="?", const=True, default=None, metavar="ADDRESS",
                        help="with -o: spread the files over a Ray cluster's workers (pip install "
                             "'mlx-qwen-asr[ray]'): ADDRESS of a running one (host:port, auto), or none to start "
                             "a local one; write --ray=ADDRESS or put it after the inputs")
    cluster.add_argument("--ray-workers", type=int, default=None, metavar="N",
                        help="with --ray: this many workers, each loading the model (default: 2 on a local "
                             "cluster, one per node on a running one)")
    recognition.add_argument("--segment-seconds", type=_positive_seconds, default=None,
                        help=f"long audio is cut near every this many seconds (default: {DEFAULT_SEGMENT_SECONDS:g})")
    model.add_argument("-m", "--model", default=None,
                        help=f"hub id or local model directory (default: {DEFAULT_MODEL})")
    recognition.add_argument("-l", "--language", default=None,
                        help="force the language instead of detecting it: a name or ISO code (en, zh, yue, ja, ...; "
                             "see --list-languages); a comma list (en,zh) lets the model choose each segment's "
                             "language among those only")
    recognition.add_argument("--no-speech-threshold", type=_no_speech_threshold, default=DEFAULT_NO_SPEECH_THRESHOLD,
                             help="drop a segment whose no-speech probability is above this and whose text is unsure "
                                  f"(default: {DEFAULT_NO_SPEECH_THRESHOLD:g}; 'none' keeps every segment)")
    recognition.add_argument("--min-speech-seconds", type=_min_speech_seconds, default=DEFAULT_MIN_SPEECH_SECONDS,
                             help="also drop a segment whose text is unsure and in which a speech-activity network "
                                  f"hears less speech than this (default: {DEFAULT_MIN_SPEECH_SECONDS:g}; 'none': "
                                  "do not listen)")
    recognition.add_argument("--context", default="", help="context text (names, terms) given to the model as system prompt")
    model.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="compute precision (default: float32 on CPU, bfloat16 on GPU)")
    model.add_argument("--quantize", type=int, default=None, choices=[4, 8],
                        help="quantize the decoder to 4 or 8 bits at load: less memory (faster on Apple GPUs; "
                             "slower than float32 on the CPU backend)")
    model.add_argument("--low-memory", action="store_true",
                        help="small-footprint recipe for this device: 8-bit weights on the CPU (~1.2 GB peak for 0.6B, "
                             "several times slower), 4-bit in bfloat16 on a GPU (also faster); see docs/performance.md")
    recognition.add_argument("--max-new-tokens", type=int, default=None,
                        help="token budget per segment (default: scales with each segment's duration)")
    files.add_argument("--verbose", action="store_true",
                        help="print language, stage timings and finish reason to stderr (every mode)")
    _add_word_time_flags(words)
    recognition.add_argument("--skip-silence", action="store_true",
                        help="transcribe only what a voice-activity detector calls speech (long silences and noise "
                             "are not encoded or decoded); times stay on the input's clock (needs: pip install "
                             "'mlx-qwen-asr[vad]')")
    _add_live_flags(live_group)
    _add_speaker_flags(parser.add_argument_group("speakers (pip install 'mlx-qwen-asr[diarize]')"))
    return parser


def _add_word_time_flags(words: argparse._ArgumentGroup) -> None:
    """The flags of word times, --align and subtitle cue shapes."""
    timing = words.add_mutually_exclusive_group()
    timing.add_argument("--timestamps", action="store_true",
                        help="time every word with the forced aligner: timed lines on stdout, word-timed srt/vtt "
                             "cues, words in json/tsv (srt and vtt are word-timed by default)")
    timing.add_argument("--no-timestamps", action="store_true",
                        help="srt/vtt without the aligner: one cue per ~30 s segment")
    words.add_argument("--aligner", default=None,
                        help=f"forced aligner for word times: hub id or directory (default: {DEFAULT_ALIGNER})")
    words.add_argument("--align", default=None, metavar="TEXT_OR_FILE",
                        help="time this transcript instead of recognising one: the text itself, or a text, .srt or "
                             ".vtt file (its text is re-timed); one audio input; any output format")
    words.add_argument("--max-line-width", type=positive_int, default=None, metavar="COLUMNS",
                        help=f"subtitle/timed line width in columns, CJK characters count 2 (default: {MAX_LINE_WIDTH})")
    words.add_argument("--max-line-count", type=positive_int, default=None, metavar="LINES",
                        help=f"lines per subtitle cue (default: {MAX_LINES})")
    words.add_argument("--max-cue-seconds", type=positive_float, default=None, metavar="SECONDS",
                        help=f"longest word-timed cue (default: {MAX_CUE_SECONDS:g})")


def _add_live_flags(live_group: argparse._ArgumentGroup) -> None:
    """The flags of streaming, the microphone and dictation."""
    live = live_group.add_mutually_exclusive_group()
    live.add_argument("--stream", action="store_true",
                      help="stream the file(s) at real-time speed, printing text as it is recognised")
    live.add_argument("--stream-fast", action="store_true", help="stream the file(s) as fast as possible")
    live.add_argument("--mic", action="store_true",
                      help="transcribe the microphone live until Ctrl-C (needs: pip install 'mlx-qwen-asr[mic]')")
    live_group.add_argument("--vad", action="store_true",
                        help="with --mic: dictation: each utterance (a voice-activity detector finds them) is "
                             "transcribed when it ends and printed as a line; with --timestamps, with its times")
    live_group.add_argument("--mic-device", default=None, metavar="NAME_OR_INDEX",
                        help="with --mic: record from this input device: its index or part of its name "
                             "(see --list-devices)")
    live_group.add_argument("--list-devices", action="store_true",
                        help="print the input devices (index, name; * marks the default) and exit")


def _add_speaker_flags(speakers: argparse._ArgumentGroup) -> None:
    """The flags of --diarize."""
    speakers.add_argument("--diarize", action="store_true",
                          help="who spoke when: every line, segment, cue and word gets a speaker (SPEAKER_1, ...); "
                               "-f rttm writes the speaker turns")
    speakers.add_argument("--num-speakers", type=_speaker_count, default=None, metavar="N",
                          help="with --diarize: exactly N speakers (default: found)")
    speakers.add_argument("--min-speakers", type=_speaker_count, default=None, metavar="N",
                          help="with --diarize: at least N speakers")
    speakers.add_argument("--max-speakers", type=_speaker_count, default=None, metavar="N",
                          help="with --diarize: at most N speakers")
    speakers.add_argument("--speaker", action="append", default=None, metavar="NAME=CLIP",
                          help="with --diarize: a known speaker and a short clip of their voice (a few seconds, "
                               "alone); the matching speaker is called NAME. Repeatable")


# Other tools' flags that mean something close to one of ours (named in "did you mean").
_NEAREST = {"--initial-prompt": "--context", "--prompt": "--context", "--word-timestamps": "--timestamps",
            "--output-file": "-o", "--output-name": "-o", "--file": "the file name alone (no flag)",
            "--device": "--dtype", "--fp16": "--dtype float16", "--task": "(transcription only)"}

# whisper.cpp's -oFORMAT output flags -> our format (None: no such format here).
_WHISPER_CPP_FORMATS = {"txt": "txt", "srt": "srt", "vtt": "vtt", "j": "json", "jf": "json", "csv": None,
                        "lrc": None, "wts": None}


def normalize_argv(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """whisper's spellings of our flags (`--output_dir`: _ for -) as ours; a short option glued
    to its value (`-osrt`, whisper.cpp's output flags) is an error, never read as `-o srt`."""
    known = set(long_options(parser))
    glued = {name for action in parser._actions if action.nargs != 0
             for name in action.option_strings if len(name) == 2}
    result = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return result + argv[i:]
        flag, eq, value = arg.partition("=")
        if flag.startswith("--") and "_" in flag and flag not in known and flag.replace("_", "-") in known:
            arg = flag.replace("_", "-") + eq + value
        elif not arg.startswith("--") and arg[:2] in glued and len(arg) > 2:
            if arg[:2] == "-o" and arg[2:] in _WHISPER_CPP_FORMATS:
                ours = _WHISPER_CPP_FORMATS[arg[2:]] or "FORMAT (" + ", ".join(FORMATS) + ")"
                parser.error(f"{arg} is whisper.cpp's output flag; here: -o FOLDER -f {ours}")
            parser.error(f"{arg}: write {arg[:2]} and its value apart ({arg[:2]} {arg[2:]})")
        result.append(arg)
    return result






def _positive_rate(text: str) -> int:
    value = number(text, int)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive sample rate in Hz (such as 16000), got {text}")
    return value


def _mode(args) -> str:
    if args.align is not None:
        return "align"
    if args.mic and args.vad:
        return "dictation"
    if args.stream or args.stream_fast or args.mic:
        return "live"
    return "files" if args.output_dir is not None else "text"


def _formats(args) -> tuple[str, ...]:
    return parse_formats(args.format or ["txt"]) if args.output_dir is not None else ()


def _word_times(args) -> bool:
    """Whether words are timed: asked for, or srt/vtt output (which default to word times),
    or diarized (segments are split at the words where the speaker changes)."""
    if args.timestamps or args.align is not None or args.diarize:
        return True
    return bool({"srt", "vtt"} & set(_formats(args))) and not args.no_timestamps


def _unhonoured(args) -> str | None:
    """The first flag the chosen mode cannot honour, as an error message; None if all fit."""
    return _first_problem(args, _RULES)


# Which flags each mode honours, as rules read in order (the first broken one is reported):
# (flag, NEEDS, fact): the flag means something only where the fact holds;
# (flag, NOT_IN, fact): the flag means nothing where the fact holds (a mode, a format).
# A message may name {flag}, {live} (the streaming flag), {workers} and {speaker}.
NEEDS, NOT_IN = "needs", "not in"
_SHAPING = ("--max-line-width", "--max-line-count", "--max-cue-seconds")
_DICTATION_NO = "{flag} has no effect in dictation (--mic --vad): "
_STREAMING_NO = "{flag} has no effect in streaming ({live}): live text has no "
_ALIGN_NO = "{flag} does not apply to --align: the transcript is given, nothing is recognised"
_SPEAKER_COUNTS = ("--num-speakers", "--min-speakers", "--max-speakers")

_MICROPHONE_RULES = (
    ("--vad", NEEDS, "--mic",
     "--vad cuts the microphone's audio into utterances: use it with --mic (files: --skip-silence)"),
    ("--mic-device", NEEDS, "--mic", "--mic-device chooses the microphone: use it with --mic"),
)
_RULES = _MICROPHONE_RULES + (
    # dictation (--mic --vad)
    ("-o", NOT_IN, "dictation", "--mic --vad prints each utterance; it does not write files with -o"),
    ("--skip-silence", NOT_IN, "dictation", _DICTATION_NO + "the detector already leaves out what is not speech"),
    ("--no-timestamps", NOT_IN, "dictation", _DICTATION_NO + "there are no subtitle cues"),
    ("--aligner", NOT_IN, "dictation", _DICTATION_NO + "--timestamps prints each utterance's times, not word times"),
    ("--max-line-width", NOT_IN, "dictation", _DICTATION_NO + "each utterance is one line"),
    ("--max-line-count", NOT_IN, "dictation", _DICTATION_NO + "each utterance is one line"),
    ("--max-cue-seconds", NOT_IN, "dictation", _DICTATION_NO + "there are no subtitle cues"),
    # speakers (--diarize)
    *((flag, NEEDS, "--diarize", "{flag} says how to tell speakers apart: use it with --diarize")
      for flag in (*_SPEAKER_COUNTS, "--speaker")),
    ("-f rttm", NEEDS, "--diarize", "-f rttm writes speaker turns: use it with --diarize"),
    ("--diarize", NOT_IN, "--align",
     "--diarize does not apply to --align (a given transcript); transcribe the audio with --diarize"),
    ("--diarize", NOT_IN, "streaming",
     "--diarize works on files, folders, standard input and dictation (--mic --vad), not streaming"),
    *((flag, NOT_IN, "dictation", "--num-speakers/--min-speakers/--max-speakers need the whole recording; "
                                  "dictation finds speakers as they come") for flag in _SPEAKER_COUNTS),
    ("--speaker", NEEDS, "NAME=CLIP",
     "--speaker takes NAME=CLIP (a name and an audio clip of that voice), got {speaker}"),
    # files (-o), Ray, standard input (-)
    ("-f", NEEDS, "-o", "-f/--format and --overwrite write files: give an output folder with -o"),
    ("--overwrite", NEEDS, "-o", "-f/--format and --overwrite write files: give an output folder with -o"),
    ("--ray", NEEDS, "-o", "--ray and --ray-workers spread a folder run: give an output folder with -o"),
    ("--ray-workers", NEEDS, "-o", "--ray and --ray-workers spread a folder run: give an output folder with -o"),
    ("--ray-workers", NEEDS, "--ray", "--ray-workers has no effect in a run without --ray"),
    ("--ray-workers", NEEDS, "a worker or more", "--ray-workers must be at least 1, got {workers}"),
    ("--ray", NOT_IN, "-", "--ray spreads the files of a folder run; standard input and --align run here"),
    ("--ray", NOT_IN, "--align", "--ray spreads the files of a folder run; standard input and --align run here"),
    ("--quiet", NEEDS, "-o", "--quiet turns off the progress bars and summary of -o runs; without -o there are none"),
    ("--raw-rate", NEEDS, "-", "--raw-rate describes audio on standard input: give - as the audio"),
    ("-", NEEDS, "- once", "standard input (-) can be read only once"),
    # streaming (--stream, --stream-fast, --mic without --vad)
    ("-o", NOT_IN, "streaming", "--stream/--stream-fast/--mic print text; they do not write files with -o"),
    *((flag, NOT_IN, "streaming", _STREAMING_NO + "word times, budgets or segments")
      for flag in ("--timestamps", "--no-timestamps", "--aligner", "--max-new-tokens", "--segment-seconds",
                   "--skip-silence")),
    *((flag, NOT_IN, "streaming", _STREAMING_NO + "subtitle cues") for flag in _SHAPING),
    # --align (a given transcript)
    *((flag, NOT_IN, "--align", _ALIGN_NO)
      for flag in ("--model", "--context", "--max-new-tokens", "--quantize", "--segment-seconds",
                   "--skip-silence", "--no-timestamps")),
    ("--align", NEEDS, "one audio file", "--align times one transcript: give exactly one audio file (or -)"),
    # word times and subtitle cues
    ("--no-timestamps", NEEDS, "srt/vtt",
     "--no-timestamps turns off the word times of srt/vtt output (-o OUT -f srt); nothing else has them"),
    *((flag, NEEDS, "cues",
       "{flag} shapes subtitle cues and timed lines: use it with -o OUT -f srt/vtt or --timestamps")
      for flag in _SHAPING),
    ("--max-cue-seconds", NEEDS, "word times",
     "--max-cue-seconds needs word times; without them each cue is a whole segment"),
    ("--aligner", NEEDS, "word times",
     "--aligner has no effect without word times (--timestamps, --align, srt/vtt output)"),
)

# Whether each flag is given (its default is None, False or "").
_GIVEN = {
    "-o": lambda a: a.output_dir is not None, "-f": lambda a: a.format is not None,
    "-f rttm": lambda a: "rttm" in _formats(a), "-": lambda a: STDIN in a.audio,
    "--overwrite": lambda a: a.overwrite, "--quiet": lambda a: a.quiet, "--raw-rate": lambda a: a.raw_rate is not None,
    "--ray": lambda a: bool(a.ray), "--ray-workers": lambda a: a.ray_workers is not None,
    "--model": lambda a: a.model is not None, "--context": lambda a: bool(a.context),
    "--quantize": lambda a: bool(a.quantize), "--max-new-tokens": lambda a: a.max_new_tokens is not None,
    "--segment-seconds": lambda a: a.segment_seconds is not None, "--skip-silence": lambda a: a.skip_silence,
    "--timestamps": lambda a: a.timestamps, "--no-timestamps": lambda a: a.no_timestamps,
    "--aligner": lambda a: a.aligner is not None, "--align": lambda a: a.align is not None,
    "--max-line-width": lambda a: a.max_line_width is not None,
    "--max-line-count": lambda a: a.max_line_count is not None,
    "--max-cue-seconds": lambda a: a.max_cue_seconds is not None,
    "--vad": lambda a: a.vad, "--mic-device": lambda a: a.mic_device is not None,
    "--diarize": lambda a: a.diarize, "--num-speakers": lambda a: a.num_speakers is not None,
    "--min-speakers": lambda a: a.min_speakers is not None, "--max-speakers": lambda a: a.max_speakers is not None,
    "--speaker": lambda a: a.speaker is not None,
}

# The modes and settings the rules name.
_FACTS = {
    "--mic": lambda a: a.mic, "--diarize": lambda a: a.diarize, "--ray": lambda a: bool(a.ray),
    "-o": lambda a: a.output_dir is not None, "-": lambda a: STDIN in a.audio,
    "- once": lambda a: a.audio.count(STDIN) <= 1,
    "--align": lambda a: a.align is not None, "dictation": lambda a: _mode(a) == "dictation",
    "streaming": lambda a: _mode(a) == "live", "a worker or more": lambda a: a.ray_workers >= 1,
    "NAME=CLIP": lambda a: _bad_speaker(a) is None,
    "one audio file": lambda a: len(a.audio) == 1 and not os.path.isdir(a.audio[0]),
    "srt/vtt": lambda a: bool({"srt", "vtt"} & set(_formats(a))),
    "cues": lambda a: bool({"srt", "vtt"} & set(_formats(a))) or (_mode(a) in ("text", "align")
                                                                  and a.output_dir is None and _word_times(a)),
    "word times": _word_times,
}


def _first_problem(args, rules) -> str | None:
    """The message of the first rule `args` break, or None."""
    for flag, relation, fact, message in rules:
        if not _GIVEN[flag](args):   # before the fact: a fact may parse -f (an unknown format raises)
            continue
        holds = bool(_FACTS[fact](args))
        if holds if relation == NOT_IN else not holds:
            live = "--stream" if args.stream else "--stream-fast" if args.stream_fast else "--mic"
            return message.format(flag=flag, live=live, workers=args.ray_workers, speaker=repr(_bad_speaker(args)))
    return None


def _bad_speaker(args) -> str | None:
    """The first --speaker value that is not NAME=CLIP."""
    for spec in args.speaker or []:
        name, sep, clip = spec.partition("=")
        if not sep or not name.strip() or not clip:
            return spec
    return None


def diarize_from(args):
    """The DiarizeOptions of --diarize and its flags (None without --diarize)."""
    if not args.diarize:
        return None
    from ..speakers.options import DiarizeOptions

    speakers = dict(spec.partition("=")[::2] for spec in args.speaker) if args.speaker else None
    return DiarizeOptions(num_speakers=args.num_speakers, min_speakers=args.min_speakers,
                          max_speakers=args.max_speakers, speakers=speakers)


def _list_devices() -> int:
    from .mic import device_lines, query_input_devices

    try:
        devices = query_input_devices("--list-devices")
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not devices:
        print("error: there are no input devices (PortAudio lists none)", file=sys.stderr)
        return 2
    print("\n".join(device_lines(devices)))
    return 0


def _dictation_mode(args, options: TranscribeOptions, device: int | None) -> int:
    from .dictation import dictate_microphone

    model = _load(args)
    speakers = None
    if options.diarize is not None:   # each utterance labelled as it is printed (speakers/incremental.py)
        from ..speakers.incremental import SpeakerTracker
        from ..speakers.pipeline import shipped_models
        from ..speakers.references import embed_references

        models = shipped_models()
        speakers = SpeakerTracker(models, embed_references(options.diarize.speakers, models)
                                  if options.diarize.speakers else None)
    options = TranscribeOptions.build(options, word_timestamps=False, diarize=None)   # --timestamps: the utterances' times
    try:
        dictate_microphone(model, options, device, timestamps=args.timestamps, verbose=args.verbose,
                           speakers=speakers)
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _report(path: str, result: Transcription) -> str:
    t = result.timings
    stages = ", ".join(f"{name} {t[name] * 1000:.0f} ms"
                       for name in ("mel", "encoder", "prefill", "decode", "align") if name in t)
    speed = f", {t['decode_tokens_per_s']:.1f} tok/s" if t.get("decode_tokens_per_s") else ""
    return (f"{path}: {result.duration:.2f} s, language {result.language or '-'}, "
            f"{len(result.tokens)} tokens, finish {result.finish_reason}; {stages}{speed}")


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of stdout went away (`... | head`): stop quietly, as other tools do. Later
    writes (and the interpreter's final flush) go to /dev/null instead of raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141   # 128 + SIGPIPE, what a shell reports for a tool the pipe stopped


def _run(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        from .server.main import main as serve   # the server has its own options
        return serve(argv[1:])
    parser = build_parser()
    args = parser.parse_args(normalize_argv(parser, argv))
    done = _listing_or_flag_problem(parser, args)
    if done is not None:
        return done
    args.model = args.model or DEFAULT_MODEL
    # Setup first, cheapest checks first: options, inputs, output folder, microphone, then
    # model and aligner (which may download); no audio is read before all of them pass.
    try:
        options = options_from(args)
        check_inputs([path for path in args.audio if path != STDIN])
        if STDIN in args.audio and sys.stdin.isatty():
            raise SetupError("- reads audio from standard input, which is this terminal: pipe audio in "
                             "(mlx-qwen-asr - < talk.wav, or ffmpeg ... | mlx-qwen-asr -)")
        if args.output_dir is not None:
            check_output_dir(args.output_dir, create=False)   # created once all setup passed
        device = check_microphone(args.mic_device) if args.mic else None
        shape = CueShape(args.max_line_width or MAX_LINE_WIDTH, args.max_line_count or MAX_LINES,
                         args.max_cue_seconds or MAX_CUE_SECONDS)
        mode = _mode(args)
        if mode == "align":
            return _align_mode(args, options, shape)
        if mode == "dictation":
            return _dictation_mode(args, options, device)
        if mode == "live":
            return _live_mode(args, options, device)
        if mode == "files":
            return _folder_mode(args, options, shape)
        paths = _expand(args.audio)
        if not paths:
            raise SetupError("no audio files found in: " + ", ".join(args.audio))
        started = time.perf_counter()
        model = _load(args)
        if args.verbose:
            print(f"model {model.path}: loaded in {(time.perf_counter() - started) * 1000:.0f} ms", file=sys.stderr)
        options = _with_aligner(args, options, model.dtype)
    except (QwenASRError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:  # not foreseen: still one line, never a traceback
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 2
    return _print_files(model, paths, args, options, shape)


def _listing_or_flag_problem(parser, args) -> int | None:
    """The exit status of a listing (--list-languages, --list-devices) or of flags the
    mode cannot honour (after one line); None to go on, after any warnings."""
    if args.list_languages:
        print(language_table())
        return 0
    if args.list_devices:
        return _list_devices()
    if not args.audio and not args.mic:
        parser.error(_first_problem(args, _MICROPHONE_RULES) or "give audio files or folders (or --mic)")
    if args.mic and args.audio:
        parser.error("--mic takes no audio files")
    try:
        problem = _unhonoured(args)
    except OptionError as exc:   # an unknown -f format
        problem = str(exc)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.no_timestamps:
        print("warning: --no-timestamps: each subtitle cue is a whole segment (up to ~30 s and many lines)",
              file=sys.stderr)
    slow = slow_on_this_device(args.dtype, args.quantize, args.low_memory)
    if slow and args.align is None:
        print(f"warning: {slow}", file=sys.stderr)
    return None


def _print_files(model, paths: list[str], args, options: TranscribeOptions, shape: CueShape) -> int:
    """Transcribe the files one after another, printing each; 1 if any failed."""
    failures = 0
    for path in paths:
        # Plain text is printed segment by segment as it is decoded; timed lines (phrases
        # may span segments) once the file is done.
        printer = None if options.word_timestamps else TextPrinter(f"{_name(path)}: " if len(paths) > 1 else "")
        try:
            result = _transcribe(model, _source(path, args), options, printer)
        except SetupError as exc:   # wrong for every file: stop here
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            raise
        except Exception as exc:   # this file only; the others go on
            if printer is not None:
                printer.cut()
            print(f"error: {_file_error(_name(path), exc)}", file=sys.stderr)
            failures += 1
            continue
        except KeyboardInterrupt:
            if printer is not None:
                printer.cut()   # what was printed stays, its line ended
            print("interrupted", file=sys.stderr)
            return 130
        if printer is not None:
            printer.finish()
        else:
            _print_result(_name(path), result, len(paths) > 1, options.word_timestamps, shape)
        if args.verbose:
            print(_report(_name(path), result), file=sys.stderr)
        _warn(_name(path), result, options.language)
    return 1 if failures else 0


def options_from(args) -> TranscribeOptions:
    """The one options value of this run (checked before any model loads or audio is read)."""
    return TranscribeOptions(
        language=args.language, context=args.context, max_new_tokens=args.max_new_tokens,
        segment_seconds=DEFAULT_SEGMENT_SECONDS if args.segment_seconds is None else args.segment_seconds,
        word_timestamps=_word_times(args) and args.align is None, aligner=args.aligner or DEFAULT_ALIGNER,
        skip_silence=args.skip_silence, no_speech_threshold=args.no_speech_threshold,
        min_speech_seconds=args.min_speech_seconds,
        diarize=diarize_from(args))






def _with_aligner(args, options: TranscribeOptions, dtype=None) -> TranscribeOptions:
    """With word times: the aligner loaded (fetched like the model) before any audio is read."""
    if not options.word_timestamps:
        return options
    from ..aligner import aligner_name

    # Named by the folder it was loaded from, as folder manifests record it.
    return TranscribeOptions.build(options, aligner=aligner_name(_load_aligner(args, dtype)))


def _transcribe(model, source: tuple, options: TranscribeOptions, printer) -> Transcription:
    from ..batch import transcribe_batch

    on_text = None if printer is None else (lambda index, text: printer.add(text))
    [result] = transcribe_batch(model, list(source), options, on_text=on_text)
    return result


class TextPrinter:
    """One input's text on one stdout line, written a segment at a time as each is decoded
    (joined as `join_texts` joins them, so the line is the result's text)."""

    def __init__(self, prefix: str = ""):
        self.prefix, self.text, self.started = prefix, "", False

    def add(self, text: str) -> None:
        joined = join_texts([self.text, text])
        if joined != self.text:
            self._write(joined[len(self.text):])
            self.text = joined

    def finish(self) -> None:
        self._write("\n")
        self.started = False

    def cut(self) -> None:
        """End a line that was begun (an error or Ctrl-C in the middle of an input)."""
        if self.started:
            self.finish()

    def _write(self, piece: str) -> None:
        if not self.started:
            piece, self.started = self.prefix + piece, True
        sys.stdout.write(piece)
        sys.stdout.flush()


def _print_result(name: str, result: Transcription, several: bool, timed: bool, shape: CueShape) -> None:
    if result.speaker_turns is not None:
        from ..writers import speaker_runs

        if several:
            print(f"{name}:")
        for speaker, segments in speaker_runs(result):
            text = " ".join(join_texts([s.text for s in segments]).split())
            clock = f"[{clock_centis(segments[0].start)} --> {clock_centis(segments[-1].end)}] "
            if text:
                print(f"{clock}{speaker or '-'}: {text}", flush=True)
        return
    if timed:
        if several:
            print(f"{name}:")
        for line in timed_lines(result, shape):
            print(line, flush=True)
        return
    print((f"{name}: " if several else "") + result.text, flush=True)


def _warn(name: str, result: Transcription, language: str | None) -> None:
    if result.finish_reason in (FINISH_LENGTH, FINISH_REPETITION):
        print(f"warning: {name}: decoding stopped early ({result.finish_reason}); the text may be incomplete",
              file=sys.stderr)
    warning = forced_language_warning(name, result, language)
    if warning:
        print(warning, file=sys.stderr)


def _file_error(path: str, exc: BaseException) -> str:
    """One line naming the file (once) and the problem."""
    message = first_line(exc)
    return message if path in message else f"{path}: {message}"


def _name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def _source(path: str, args) -> tuple:
    """What the pipeline reads for one input, as (audio,): the path, or standard input's
    audio as an (array, rate) pair."""
    if path != STDIN:
        return (path,)
    from ..audio.load import read_stdin

    return (read_stdin(args.raw_rate),)


def _load_aligner(args, dtype=None):
    """The aligner, loaded (fetched like the model) before any audio is read."""
    from ..aligner import get_aligner

    return get_aligner(args.aligner or DEFAULT_ALIGNER, dtype if dtype is not None else args.dtype)


def _load(args):
    model = load_model(args.model, args.dtype, args.quantize, args.low_memory)
    check_context(model.tokenizer, args.context or "", "--context")   # before any audio is read
    return model


def _expand(inputs: list[str]) -> list[str]:
    """Folders become the audio files under them; anything else is passed on as given."""
    paths = []
    for given in inputs:
        if given != STDIN and os.path.isdir(given):
            found = find_audio([given])
            for note in found.notes:
                print(f"note: {note}", file=sys.stderr)
            paths += [str(job.source) for job in found.jobs]
        else:
            paths.append(given)
    return paths


def _folder_mode(args, options: TranscribeOptions, shape: CueShape) -> int:
    formats = parse_formats(args.format or ["txt"])
    if STDIN in args.audio:
        return _stdin_to_files(args, options, shape, formats)
    # A quantized model is loaded here; transcribe_folder loads plain ones itself.
    model = _load(args) if args.quantize or args.low_memory else args.model
    options = _with_aligner(args, options)
    try:
        summary = transcribe_folder(
            args.audio, args.output_dir, options, model=model, dtype=args.dtype, formats=formats,
            overwrite=args.overwrite, quiet=args.quiet, verbose=args.verbose, shape=shape,
            ray=args.ray, ray_workers=args.ray_workers)
    except KeyboardInterrupt:
        return 130   # the summary printed says so, and how to continue
    return 1 if summary["failed"] else 0


def _stdin_to_files(args, options: TranscribeOptions, shape: CueShape, formats) -> int:
    """Standard input with -o: OUT/stdin.<format> (nothing to resume: a pipe is read once)."""
    from pathlib import Path

    from ..writers import write_outputs

    if len(args.audio) > 1:
        raise SetupError("with -o, standard input (-) is transcribed alone: give - as the only input")
    model = _load(args)
    options = _with_aligner(args, options, model.dtype)
    try:
        result = model.transcribe(*_source(STDIN, args), options)
        paths = write_outputs(result, Path(args.output_dir) / "stdin", formats, input=STDIN, model=str(model.path),
                              shape=shape)
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(_report(_name(STDIN), result) + " -> " + ", ".join(map(str, paths)), file=sys.stderr)
    _warn(_name(STDIN), result, options.language)
    return 0


def _align_mode(args, options: TranscribeOptions, shape: CueShape) -> int:
    """--align: the given transcript timed against the one audio input."""
    from pathlib import Path

    from ..transcripts import align_transcription, read_transcript
    from ..writers import write_outputs

    text = read_transcript(args.align)
    formats = _formats(args)
    aligner = _load_aligner(args)
    path = args.audio[0]
    try:
        result = align_transcription(*_source(path, args), text, options.language, aligner=aligner)
        if formats:
            stem = "stdin" if path == STDIN else Path(path).stem
            write_outputs(result, Path(args.output_dir) / stem, formats, input=path, model=str(aligner.path),
                          options={"align": args.align}, shape=shape)
        else:
            for line in timed_lines(result, shape):
                print(line, flush=True)
    except QwenASRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(_report(_name(path), result), file=sys.stderr)
    return 0


def _live_mode(args, options: TranscribeOptions, device: int | None = None) -> int:
    from .live import stream_file, stream_microphone

    model = _load(args)
    if args.mic:
        try:
            started = time.perf_counter()
            final = stream_microphone(model, options, device=device)
            if args.verbose:
                print(_stream_report("microphone", final, time.perf_counter() - started), file=sys.stderr)
        except QwenASRError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    paths = _expand(args.audio)
    failures = 0
    for path in paths:
        try:
            if len(paths) > 1:
                print(f"{_name(path)}:", flush=True)
            started = time.perf_counter()
            final = stream_file(*_source(path, args), model, options, realtime=args.stream)
            if args.verbose and final is not None:
                print(_stream_report(_name(path), final, time.perf_counter() - started), file=sys.stderr)
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            raise
        except Exception as exc:
            print(f"error: {_file_error(_name(path), exc)}", file=sys.stderr)
            failures += 1
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
    return 1 if failures else 0


def _stream_report(source: str, final, wall: float) -> str:
    return (f"{source}: {final.audio_seconds:.2f} s streamed in {wall:.2f} s, language {final.language or '-'}, "
            f"{len(final.committed.split())} words")
