"""The command line as whisper's and the seed engines' users expect it: language codes,
--version, timed lines, standard input, --align, word-timed subtitles and line shaping.

Most checks call `cli.main` in this process (the model loads once); the standard-input ones
run `python -m mlx_qwen_asr` with a real pipe.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from support.heldout import HELDOUT

from mlx_qwen_asr.frontends import cli
from mlx_qwen_asr.errors import LanguageError
from mlx_qwen_asr.languages import forced_language_warning, normalize_language
from mlx_qwen_asr.results import Segment, Transcription
from mlx_qwen_asr.writers import _width

CLIP = HELDOUT / "medium_02.flac"
TIMED = re.compile(r"^\[(\d\d):(\d\d\.\d\d) --> (\d\d):(\d\d\.\d\d)\] (\S.*)$")


def run(capsys, *args):
    """cli.main(args) -> (exit status, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse: --version, bad values
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> bool:
    return err.startswith("error:") and err.strip().count("\n") == 0 and "Traceback" not in err


def seconds(minutes: str, secs: str) -> float:
    return int(minutes) * 60 + float(secs)


# --- languages, --version ----------------------------------------------------------------

@pytest.mark.parametrize("given, name", [("en", "English"), ("eng", "English"), ("EN-us", "English"),
                                         ("zh", "Chinese"), ("zho", "Chinese"), ("Mandarin", "Chinese"),
                                         ("yue", "Cantonese"), ("ja", "Japanese"), ("jpn", "Japanese"),
                                         ("farsi", "Persian"), ("tl", "Filipino"), ("fil", "Filipino"),
                                         ("german", "German"), ("de", "German")])
def test_codes_and_aliases_name_the_official_language(given, name):
    assert normalize_language(given) == name


def test_unknown_code_is_a_language_error():
    with pytest.raises(LanguageError, match="unsupported language 'xx'"):
        normalize_language("xx")


def test_list_languages_and_version(capsys):
    code, out, _ = run(capsys, "--list-languages")
    assert code == 0
    lines = {line.split()[2]: line.split()[:2] for line in out.splitlines()[1:]}
    assert len(lines) == 30 and lines["Cantonese"] == ["-", "yue"] and lines["Japanese"] == ["ja", "jpn"]
    import mlx_qwen_asr

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"mlx-qwen-asr {mlx_qwen_asr.__version__}"


def test_unknown_language_code_on_the_command_line(capsys, tmp_path):
    code, _, err = run(capsys, CLIP, "--model", tmp_path / "missing", "--language", "xx")
    assert code == 2 and one_error_line(err) and "'xx'" in err


def test_python_api_takes_codes(trained_model):
    by_code = trained_model.transcribe(CLIP, language="en")
    by_name = trained_model.transcribe(CLIP, language="English")
    assert by_code.language == "English" and by_code.tokens == by_name.tokens


def test_forced_language_with_no_text_warns():
    empty = Transcription.from_segments([Segment(0.0, 3.0, "", "Japanese", "eos")], 3.0, {})
    assert "nothing recognised" in forced_language_warning("a.wav", empty, "Japanese")
    silent = Transcription.from_segments([Segment(0.0, 3.0, "", "Japanese", "silence")], 3.0, {})
    assert forced_language_warning("a.wav", silent, "Japanese") is None      # silence: nothing to say
    assert forced_language_warning("a.wav", empty, None) is None             # detected: the model's call


# --- timed lines, --verbose, flags a mode cannot honour -------------------------------------

def test_timestamps_print_timed_phrases(capsys, trained_checkpoint, trained_aligner, trained_model):
    code, out, err = run(capsys, CLIP, "--model", trained_checkpoint, "--dtype", "float32", "--timestamps",
                         "--aligner", trained_aligner, "--verbose")
    assert code == 0, err
    lines = out.splitlines()
    matches = [TIMED.match(line) for line in lines]
    assert lines and all(matches), out
    starts = [seconds(m[1], m[2]) for m in matches]
    ends = [seconds(m[3], m[4]) for m in matches]
    assert starts == sorted(starts) and all(s < e for s, e in zip(starts, ends)) and ends[-1] <= 8.38 + 0.01
    assert " ".join(m[5] for m in matches).split() == trained_model.transcribe(CLIP).text.split()
    assert "align" in err and "encoder" in err   # --verbose reports every stage


def test_verbose_in_stream_mode(capsys, trained_checkpoint):
    code, out, err = run(capsys, CLIP, "--model", trained_checkpoint, "--stream-fast", "--verbose")
    assert code == 0 and out.strip()
    assert "streamed in" in err


@pytest.mark.parametrize("flags, named", [
    (["--stream", "--timestamps"], "--timestamps"),
    (["--stream-fast", "--max-new-tokens", "5"], "--max-new-tokens"),
    (["--max-line-width", "30"], "--max-line-width"),                 # plain text has no lines to shape
    (["--raw-rate", "16000"], "--raw-rate"),                          # no - among the inputs
    (["--quiet"], "--quiet"),                                         # without -o nothing to quiet
    (["--align", "some words", "--model", "x"], "--model"),
    (["-o", "out", "-f", "txt", "--no-timestamps"], "--no-timestamps"),
    (["-o", "out", "-f", "srt", "--no-timestamps", "--max-cue-seconds", "3"], "--max-cue-seconds"),
    (["--aligner", "x"], "--aligner"),
])
def test_flags_a_mode_cannot_honour_are_errors(capsys, tmp_path, flags, named):
    code, _, err = run(capsys, CLIP, *[str(tmp_path / f) if f == "out" else f for f in flags])
    assert code == 2 and one_error_line(err) and named in err, err


def test_the_rules_name_known_flags_and_facts():
    """A misspelt flag or fact in cli's table would raise only when a run reaches its rule."""
    options = {name for action in cli.build_parser()._actions for name in action.option_strings}
    for flag, relation, fact, message in cli._RULES:
        assert flag in cli._GIVEN and fact in cli._FACTS and relation in (cli.NEEDS, cli.NOT_IN), flag
        assert flag.split()[0] in options | {"-"}, flag
        assert message.format(flag=flag, live="--mic", workers=0, speaker="'x'"), flag


def test_bad_values_are_one_line(capsys):
    for flags in (["-", "--raw-rate", "0"], ["-", "--raw-rate", "abc"], [CLIP, "--max-line-width", "0"]):
        code, _, err = run(capsys, *flags)
        assert code == 2 and one_error_line(err), (flags, err)


# --- standard input --------------------------------------------------------------------------

def run_piped(data: bytes, *args):
    return subprocess.run([sys.executable, "-m", "mlx_qwen_asr", *map(str, args)], input=data,
                          capture_output=True, timeout=300)


def test_stdin_reads_files_and_raw_pcm(trained_checkpoint, tmp_path):
    by_path = run_piped(b"", CLIP, "--model", trained_checkpoint)
    assert by_path.returncode == 0 and by_path.stdout.strip()
    piped = run_piped(CLIP.read_bytes(), "-", "--model", trained_checkpoint)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == by_path.stdout
    samples, rate = sf.read(CLIP, dtype="int16")
    raw = run_piped(samples.astype("<i2").tobytes(), "-", "--raw-rate", rate, "--model", trained_checkpoint)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == by_path.stdout
    # Written to files with -o: OUT/stdin.<format>.
    out = tmp_path / "out"
    files = run_piped(CLIP.read_bytes(), "-", "-o", out, "--model", trained_checkpoint)
    assert files.returncode == 0, files.stderr
    assert (out / "stdin.txt").read_text().strip() == by_path.stdout.decode().strip()


def test_stdin_errors(trained_checkpoint):
    empty = run_piped(b"", "-", "--model", trained_checkpoint)
    assert empty.returncode == 1 and b"standard input: no data" in empty.stderr
    odd = run_piped(b"\x00\x01\x02", "-", "--raw-rate", "16000", "--model", trained_checkpoint)
    assert odd.returncode == 1 and b"odd number of bytes" in odd.stderr and b"Traceback" not in odd.stderr


def test_read_stdin_equals_the_file(tmp_path):
    from mlx_qwen_asr.audio.load import load_audio, read_stdin

    samples, rate = read_stdin(stream=io.BytesIO(CLIP.read_bytes()))
    assert np.array_equal(load_audio((samples, rate)), load_audio(CLIP))


# --- --align ----------------------------------------------------------------------------------

def test_align_plain_text_and_subtitles(capsys, trained_aligner, tmp_path):
    text = "field water loud of they"
    clip = HELDOUT / "short_02.flac"
    code, out, err = run(capsys, clip, "--align", text, "--aligner", trained_aligner)
    assert code == 0, err
    matches = [TIMED.match(line) for line in out.splitlines()]
    assert matches and all(matches) and " ".join(m[5] for m in matches) == text
    # An existing subtitle file, badly timed: its text is re-timed, in any output format.
    srt = tmp_path / "old.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:09,000\nfield water\nloud of they\n\n")
    code, _, err = run(capsys, clip, "--align", srt, "--aligner", trained_aligner, "-o", tmp_path / "out",
                       "-f", "srt,json")
    assert code == 0, err
    written = (tmp_path / "out" / "short_02.srt").read_text()
    assert "00:00:09,000" not in written and " ".join(
        line for line in written.splitlines() if line and "-->" not in line and not line.isdigit()) == text
    import json

    words = json.loads((tmp_path / "out" / "short_02.json").read_text())["segments"][0]["words"]
    assert [w["word"] for w in words] == text.split() and all(w["end"] <= 3.48 + 0.01 for w in words)


def test_align_empty_transcript_is_a_setup_error(capsys, trained_aligner, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    code, _, err = run(capsys, CLIP, "--align", empty, "--aligner", trained_aligner)
    assert code == 2 and one_error_line(err) and "empty.txt holds no transcript" in err


def test_align_is_exported():
    import mlx_qwen_asr

    assert callable(mlx_qwen_asr.align) and callable(mlx_qwen_asr.align_transcription)


# --- word-timed subtitles by default, line shaping ------------------------------------------

def cue_blocks(srt: str) -> list[list[str]]:
    return [block.splitlines() for block in srt.strip().split("\n\n") if block.strip()]


def test_srt_uses_word_times_by_default(capsys, trained_checkpoint, trained_aligner, tmp_path):
    clip = HELDOUT / "long_01.flac"
    code, _, err = run(capsys, clip, "--model", trained_checkpoint, "--aligner", trained_aligner,
                       "-o", tmp_path / "words", "-f", "srt", "--quiet")
    assert code == 0, err
    cues = cue_blocks((tmp_path / "words" / "long_01.srt").read_text())
    code, _, err = run(capsys, clip, "--model", trained_checkpoint, "-o", tmp_path / "segments", "-f", "srt",
                       "--no-timestamps", "--quiet")
    assert code == 0 and "warning: --no-timestamps" in err
    segment_cues = cue_blocks((tmp_path / "segments" / "long_01.srt").read_text())
    assert len(cues) > 2 * len(segment_cues) and all(len(cue) <= 4 for cue in cues)   # index, time, <= 2 lines


def test_missing_aligner_is_found_before_any_audio(capsys, trained_checkpoint, tmp_path):
    code, _, err = run(capsys, CLIP, "--model", trained_checkpoint, "--aligner", tmp_path / "no-aligner",
                       "-o", tmp_path / "out", "-f", "vtt")
    assert code == 2 and one_error_line(err) and "no-aligner" in err
    assert not (tmp_path / "out").exists()


def test_line_shaping_flags(capsys, trained_checkpoint, trained_aligner, tmp_path):
    clip = HELDOUT / "long_01.flac"
    code, _, err = run(capsys, clip, "--model", trained_checkpoint, "--aligner", trained_aligner,
                       "-o", tmp_path, "-f", "srt", "--max-line-width", "16", "--max-line-count", "1",
                       "--max-cue-seconds", "2.5", "--quiet")
    assert code == 0, err
    for cue in cue_blocks((tmp_path / "long_01.srt").read_text()):
        start, end = (seconds(t[3:5], t[6:].replace(",", ".")) for t in cue[1].split(" --> "))
        assert len(cue) == 3 and end - start <= 2.5 + 1e-6
        assert _width(cue[2]) <= 16 or " " not in cue[2]   # one word wider than a line gets its own


def test_cjk_lines_are_width_aware():
    from mlx_qwen_asr.writers import CueShape, shaped_cues

    words = [(i * 0.3, i * 0.3 + 0.25, char) for i, char in enumerate("今天天气很好我们去公园散步吧")]
    segment = Segment(0.0, 5.0, "".join(w[2] for w in words), "Chinese", "eos")
    segment.words = [_Word(c, s, e) for s, e, c in words]
    result = Transcription.from_segments([segment], 5.0, {})
    cues = shaped_cues(result, CueShape(max_line_width=10, max_line_count=1, max_cue_seconds=30))
    assert [line for cue in cues for line in cue.lines] == ["今天天气很", "好我们去公", "园散步吧"]


class _Word:
    def __init__(self, word, start, end):
        self.word, self.start, self.end, self.span = word, start, end, None
