"""Folder runs: mirrored output names, bad files, resuming, --overwrite, interruption, summary."""

import json
import subprocess
import sys

import pytest
import soundfile as sf

from support.audio_samples import speech
from mlx_qwen_asr.frontends import folder
from mlx_qwen_asr import writers
from mlx_qwen_asr.errors import QwenASRError
from mlx_qwen_asr.frontends.folder import find_audio, transcribe_folder
from mlx_qwen_asr.transcribe import ASRModel

# srt here as one cue per segment: these tests are about files, not word times.
FAST = dict(max_new_tokens=3, quiet=True, word_timestamps=False)


def make_talks(root, seconds=(1.0, 1.2)):
    """talks/day1/a.wav and talks/day2/a.wav (plus a hidden AppleDouble file to ignore)."""
    for day, length in zip(("day1", "day2"), seconds):
        (root / "talks" / day).mkdir(parents=True)
        sf.write(root / "talks" / day / "a.wav", speech(length), 16000)
    (root / "talks" / "day1" / "._a.wav").write_bytes(b"\0\5\26\7 mac resource fork")
    (root / "talks" / "notes.txt").write_text("not audio, not picked up")
    return root / "talks"


def outputs(out):
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def forbid_transcribing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was called for a finished input")
    monkeypatch.setattr(ASRModel, "transcribe", fail)
    monkeypatch.setattr(ASRModel, "transcribe_many", fail)
    monkeypatch.setattr(folder, "load_model", fail)


def test_names_mirror_roots_and_collisions_are_resolved(tmp_path):
    talks = make_talks(tmp_path)
    for name in ("x/a.wav", "y/a.wav", "x/b.wav", "x/B.flac", "x/summary.wav"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        sf.write(tmp_path / name, speech(0.2), 16000)
    found = find_audio([talks, tmp_path / "x/a.wav", tmp_path / "y/a.wav", tmp_path / "x/b.wav",
                        tmp_path / "x/B.flac", tmp_path / "x/summary.wav", talks / "day1/a.wav", tmp_path / "gone"])
    names = {job.source.relative_to(tmp_path).as_posix(): job.name for job in found.jobs}
    assert names["talks/day1/a.wav"] == "day1/a" and names["talks/day2/a.wav"] == "day2/a"
    assert names["x/a.wav"].startswith("a.wav-") and names["y/a.wav"].startswith("a.wav-")
    assert names["x/a.wav"] != names["y/a.wav"]
    assert (names["x/b.wav"], names["x/B.flac"]) == ("b.wav", "B.flac")   # case-insensitive, like macOS
    assert names["x/summary.wav"] == "summary.wav"                        # summary.json is the run's
    assert len(found.jobs) == 7                                           # talks/day1/a.wav only once
    assert found.missing == [(str(tmp_path / "gone"), "no such file or folder")]
    assert sum("another input has that name" in note for note in found.renames) == 4
    assert any("summary.wav.* rather than summary.* (a name the run uses itself)" in n for n in found.renames)
    # Deterministic: the same inputs in another order give the same names.
    again = find_audio([tmp_path / "x/summary.wav", tmp_path / "y/a.wav", tmp_path / "x/B.flac",
                        tmp_path / "x/b.wav", tmp_path / "x/a.wav", talks])
    assert {job.source.relative_to(tmp_path).as_posix(): job.name for job in again.jobs} == names


def test_run_then_rerun_skips_then_overwrite_redoes(tiny_checkpoint, tmp_path, monkeypatch):
    talks, out = make_talks(tmp_path), tmp_path / "out"
    summary = transcribe_folder(talks, out, model=tiny_checkpoint, formats="txt,srt", **FAST)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    assert outputs(out) == ["day1/a.srt", "day1/a.txt", "day2/a.srt", "day2/a.txt", "manifest.json", "summary.json"]
    written = json.loads((out / "summary.json").read_text())
    assert written == summary
    assert summary["audio_seconds"] == pytest.approx(2.2) and summary["audio_hours"] == pytest.approx(2.2 / 3600, abs=1e-4)
    assert summary["rtf"] > 0 and summary["wall_seconds"] > 0 and summary["interrupted"] is None
    assert summary["truncated"] == 2 and summary["retries"] == 0   # 3 tokens: every file hits its budget
    assert summary["options"]["max_new_tokens"] == 3 and summary["formats"] == ["txt", "srt"]
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    entry = manifest[str((talks / "day1" / "a.wav").resolve())]
    assert entry["outputs"] == {"txt": "day1/a.txt", "srt": "day1/a.srt"}
    assert entry["size"] == (talks / "day1" / "a.wav").stat().st_size

    times = {p: (out / p).stat().st_mtime_ns for p in outputs(out) if p.startswith("day")}
    with monkeypatch.context() as patch:
        forbid_transcribing(patch)
        again = transcribe_folder(talks, out, model=tiny_checkpoint, formats="srt", **FAST)   # a subset: still done
    assert (again["done"], again["skipped"], again["failed"]) == (0, 2, 0)
    assert {p: (out / p).stat().st_mtime_ns for p in times} == times

    calls = []
    real = ASRModel.transcribe_many
    monkeypatch.setattr(ASRModel, "transcribe_many", lambda self, audios, **kw: calls.append(audios) or real(self, audios, **kw))
    redone = transcribe_folder(talks, out, model=tiny_checkpoint, formats="txt,srt", overwrite=True, **FAST)
    assert (redone["done"], redone["skipped"]) == (2, 0) and len(calls) == 1 and len(calls[0]) == 2
    assert all((out / p).stat().st_mtime_ns >= times[p] for p in times)

    # Changed options (here the model's budget) are not the same output: redone without --overwrite.
    changed = transcribe_folder(talks, out, model=tiny_checkpoint, formats="txt", max_new_tokens=2, quiet=True)
    assert (changed["done"], changed["skipped"]) == (2, 0)


def test_interrupted_run_leaves_no_partial_output_and_resumes(tiny_checkpoint, tmp_path, monkeypatch):
    talks, out = make_talks(tmp_path, seconds=(1.0, 1.1)), tmp_path / "out"
    sf.write(talks / "b.wav", speech(0.9), 16000)
    real_srt = writers.WRITERS["srt"]
    written = []

    def srt_then_interrupt(result, file, **kwargs):
        if written:
            file.write("1\n00:00:00,000 --> ")
            raise KeyboardInterrupt
        written.append(1)
        real_srt(result, file, **kwargs)

    monkeypatch.setitem(writers.WRITERS, "srt", srt_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        transcribe_folder(talks, out, model=tiny_checkpoint, formats=["txt", "srt"], **FAST)
    # b.wav (first in order) is complete; day1/a was interrupted writing its srt, so none of
    # its formats is there (its txt was complete, but an input's outputs go in together).
    assert outputs(out) == ["b.srt", "b.txt", "manifest.json", "summary.json"]
    assert not list(out.rglob(".*.tmp"))
    interrupted = json.loads((out / "summary.json").read_text())
    assert interrupted["interrupted"] == "Ctrl-C" and interrupted["done"] == 1
    assert interrupted["total"] == 3 and interrupted["rtf"] > 0
    assert list(json.loads((out / "manifest.json").read_text())["files"]) == [str((talks / "b.wav").resolve())]

    monkeypatch.setitem(writers.WRITERS, "srt", real_srt)
    resumed = transcribe_folder(talks, out, model=tiny_checkpoint, formats=["txt", "srt"], **FAST)
    assert (resumed["done"], resumed["skipped"], resumed["failed"]) == (2, 1, 0)
    assert [f["status"] for f in resumed["files"]] == ["skipped", "done", "done"]
    assert outputs(out) == ["b.srt", "b.txt", "day1/a.srt", "day1/a.txt", "day2/a.srt", "day2/a.txt",
                            "manifest.json", "summary.json"]


def test_cli_bad_file_is_reported_and_the_rest_is_done(tiny_checkpoint, tmp_path):
    talks, out = make_talks(tmp_path), tmp_path / "out"
    (talks / "day2" / "broken.wav").write_text("not audio")
    done = subprocess.run([sys.executable, "-m", "mlx_qwen_asr", str(talks), "-o", str(out), "-f", "json",
                           "-f", "txt", "--model", str(tiny_checkpoint), "--max-new-tokens", "3",
                           "--segment-seconds", "5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""   # files mode: nothing on stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.wav" in errors[0] and "Traceback" not in done.stderr
    assert "done 2, skipped 0, failed 1" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["done"], summary["failed"]) == (2, 1)
    assert summary["failures"][0]["input"] == str(talks / "day2" / "broken.wav")
    assert "broken.wav" in summary["failures"][0]["error"]
    assert summary["options"]["segment_seconds"] == 5.0
    assert outputs(out) == ["day1/a.json", "day1/a.txt", "day2/a.json", "day2/a.txt", "manifest.json", "summary.json"]
    result = json.loads((out / "day2" / "a.json").read_text())
    assert result["input"] == str(talks / "day2" / "a.wav") and result["model"] == str(tiny_checkpoint)
    assert result["segments"] and {"start", "end", "text", "finish_reason"} <= set(result["segments"][0])


def test_long_file_reports_progress_per_segment(tiny_checkpoint):
    from mlx_qwen_asr.transcribe import load_model
    seen = []
    model = load_model(tiny_checkpoint)
    model.transcribe(speech(4.0), sample_rate=16000, segment_seconds=1.5, max_new_tokens=2,
                     progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 2 and all(total == pytest.approx(4.0) for _, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == pytest.approx(4.0)


def test_setup_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(QwenASRError, match="no audio files found"):
        transcribe_folder(tmp_path / "empty", tmp_path / "out", quiet=True)
    with pytest.raises(ValueError, match="unknown output format"):
        transcribe_folder(tmp_path, tmp_path / "out", formats="docx")
    with pytest.raises(TypeError, match="temperature"):
        transcribe_folder(tmp_path, tmp_path / "out", temperature=0.5)


def test_cli_without_output_dir_prints_text_of_folders(tiny_checkpoint, tmp_path, capsys):
    from mlx_qwen_asr.frontends.cli import main
    talks = make_talks(tmp_path)
    assert main([str(talks), "--model", str(tiny_checkpoint), "--max-new-tokens", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(talks / "day1" / "a.wav"), str(talks / "day2" / "a.wav")]
    assert main([str(talks), "-f", "srt"]) == 2
    assert "-o" in capsys.readouterr().err
    assert main([str(talks), "-o", str(tmp_path / "out"), "-f", "docx"]) == 2
    assert "unknown output format 'docx'" in capsys.readouterr().err


def test_loaded_model_single_file_with_progress_bars(tiny_checkpoint, tmp_path, capsys):
    from mlx_qwen_asr.transcribe import load_model
    sf.write(tmp_path / "long.wav", speech(4.0), 16000)
    model = load_model(tiny_checkpoint)
    summary = transcribe_folder(tmp_path / "long.wav", tmp_path / "out", model=model, formats="all",
                                segment_seconds=1.5, max_new_tokens=2, word_timestamps=False)
    assert summary["done"] == 1 and summary["options"]["model"] == str(model.path)
    assert outputs(tmp_path / "out") == ["long.json", "long.srt", "long.tsv", "long.txt", "long.vtt",
                                         "manifest.json", "summary.json"]
    assert len(json.loads((tmp_path / "out" / "long.json").read_text())["segments"]) >= 2
    err = capsys.readouterr().err
    assert "files" in err and "long.wav" in err and "done 1, skipped 0, failed 0" in err
    # stderr is no terminal here (as a log file is not): plain lines, no bar redrawn with \r.
    assert "\r" not in err and "files: 1/1 (long)" in err


def test_journal_line_torn_by_a_kill_is_skipped_and_later_lines_kept(tmp_path):
    from mlx_qwen_asr.frontends.folder import JOURNAL_NAME, Job, Manifest

    first = Job(tmp_path / "a.wav", "a", "/x/a.wav")
    manifest = Manifest(tmp_path)
    manifest.record(first, {"size": 1})
    with open(tmp_path / JOURNAL_NAME, "a", encoding="utf-8") as file:
        file.write('["/x/b.wav", {"si')   # a run SIGKILLed mid-append
    resumed = Manifest(tmp_path)
    assert list(resumed.entries) == ["/x/a.wav"]
    resumed.record(Job(tmp_path / "c.wav", "c", "/x/c.wav"), {"size": 3})
    assert list(Manifest(tmp_path).entries) == ["/x/a.wav", "/x/c.wav"]
    resumed.save()
    assert not (tmp_path / JOURNAL_NAME).exists() and list(Manifest(tmp_path).entries) == ["/x/a.wav", "/x/c.wav"]


def test_folder_srt_and_vtt_are_word_timed_as_the_cli_s(trained_checkpoint, trained_model, trained_aligner, tmp_path):
    from support.heldout import HELDOUT

    from mlx_qwen_asr.frontends.cli import main
    from mlx_qwen_asr.writers import to_string

    clip = HELDOUT / "medium_01.flac"
    transcribe_folder(clip, tmp_path / "py", model=trained_model, formats=("srt", "vtt"), aligner=str(trained_aligner),
                      quiet=True)
    assert main([str(clip), "--model", str(trained_checkpoint), "--dtype", "float32", "--aligner", str(trained_aligner),
                 "-o", str(tmp_path / "cli"), "-f", "srt,vtt"]) == 0
    for fmt in ("srt", "vtt"):
        assert (tmp_path / "py" / f"medium_01.{fmt}").read_text() == (tmp_path / "cli" / f"medium_01.{fmt}").read_text()
    timed = trained_model.transcribe(clip, word_timestamps=True, aligner=str(trained_aligner))
    assert (tmp_path / "py" / "medium_01.srt").read_text() == to_string(timed, "srt")
    assert (tmp_path / "py" / "medium_01.srt").read_text().count(" --> ") > len(timed.segments)   # cues of words
    # word_timestamps=False: one cue per segment, as --no-timestamps.
    transcribe_folder(clip, tmp_path / "plain", model=trained_model, formats="srt", word_timestamps=False, quiet=True)
    assert (tmp_path / "plain" / "medium_01.srt").read_text() == to_string(trained_model.transcribe(clip), "srt")
