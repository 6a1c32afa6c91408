"""Batch runs: every audio file under the given files and folders, transcribed into an
output folder, resumably, without one bad file stopping the run.

Inputs are walked in a fixed order, output names mirror the inputs' paths, each finished
input is journaled at once (a killed run redoes one file), outputs are written all or
nothing, one run per folder (flock). The rules and why: docs/architecture.md, "Folder runs".
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..aligner import get_aligner, named_aligner
from ..batch import file_groups, transcribe_files
from ..clock import clock_seconds
from ..errors import OutputError, SetupError, first_line
from ..languages import forced_language_warning
from ..options import DEFAULT_MODEL, LoadOptions, TranscribeOptions
from .preflight import check_output_dir
from ..results import FINISH_LENGTH, FINISH_REPETITION, Transcription
from ..transcribe import ASRModel, load_model
from ..writers import CueShape, atomic_write, parse_formats, remove_stale_temps, write_outputs

try:
    import fcntl
except ImportError:   # Windows: no flock; runs into one folder are then not kept apart
    fcntl = None

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif", ".m4a", ".mp4", ".aac", ".webm",
    ".wma", ".mkv", ".mov", ".caf", ".au", ".snd", ".w64",
})
MANIFEST_NAME = "manifest.json"
JOURNAL_NAME = "manifest.journal"
SUMMARY_NAME = "summary.json"
RESERVED_NAMES = frozenset({"manifest", "summary"})
# Errors writing outputs that every later file would hit too: the run stops.
FOLDER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


@dataclass
class Job:
    source: Path          # the audio file
    name: str             # output path relative to the output folder, without the format extension
    key: str              # the resolved source path: one manifest entry per real file


@dataclass
class FoundInputs:
    jobs: list[Job] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)   # (input, reason)
    notes: list[str] = field(default_factory=list)
    renames: list[str] = field(default_factory=list)   # output names changed to avoid a collision (-o runs)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _walk(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        found += [Path(folder, f) for f in files
                  if not _hidden(f) and os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def find_audio(inputs) -> FoundInputs:
    """Jobs for `inputs` (paths of files and folders), with collision-free output names."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found = FoundInputs()
    candidates: list[tuple[Path, PurePosixPath, str]] = []   # (source, path relative to its root, key)
    seen = set()
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            files = [(p, PurePosixPath(p.relative_to(path).as_posix())) for p in _walk(path)]
            if not files:
                found.notes.append(f"{given}: no audio files ({', '.join(sorted(e[1:] for e in AUDIO_EXTENSIONS))})")
        elif path.is_file():
            files = [(path, PurePosixPath(path.name))]
        else:
            found.missing.append((str(given), "no such file or folder"))
            continue
        for source, relative in files:
            key = str(source.resolve())
            if key not in seen:   # the same file given twice, or inside a given folder too
                seen.add(key)
                candidates.append((source, relative, key))
    names = _output_names([(relative, key) for _, relative, key in candidates])
    for (source, relative, key), (name, level) in zip(candidates, names):
        found.jobs.append(Job(source, name, key))
        if level:
            plain = relative.with_suffix("").as_posix()
            why = "a name the run uses itself" if plain.lower() in RESERVED_NAMES else "another input has that name"
            found.renames.append(f"{source}: output name {name}.* rather than {plain}.* ({why})")
    return found


def _output_names(items: list[tuple[PurePosixPath, str]]) -> list[tuple[str, int]]:
    """Output names (and how far each was disambiguated): the relative path without its
    extension; where names collide, with the extension; then with a hash of the full path.
    Each name depends only on the inputs that collide with it, not on the order given."""

    def name(relative: PurePosixPath, key: str, level: int) -> str:
        if level == 0:
            return relative.with_suffix("").as_posix() if relative.suffix else relative.as_posix()
        if level == 1:
            return relative.as_posix()
        return f"{relative.as_posix()}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"

    levels = [0] * len(items)
    while True:
        groups = defaultdict(list)
        for i, (relative, key) in enumerate(items):
            groups[name(relative, key, levels[i]).lower()].append(i)
        clashing = [i for k, members in groups.items() if len(members) > 1 or k in RESERVED_NAMES for i in members]
        clashing = [i for i in clashing if levels[i] < 2]
        if not clashing:
            break
        for i in clashing:
            levels[i] += 1
    return [(name(relative, key, level), level) for (relative, key), level in zip(items, levels)]


class Manifest:
    """What earlier runs finished in this output folder, keyed by resolved input path:
    manifest.json, then the journal's lines (inputs finished since it was last written)."""

    def __init__(self, output_dir: Path):
        self.path = output_dir / MANIFEST_NAME
        self.journal = output_dir / JOURNAL_NAME
        self.entries: dict[str, dict] = {}
        self.problem = ""
        self._dirty = False
        if self.path.exists():
            try:
                self.entries = dict(json.loads(self.path.read_text(encoding="utf-8"))["files"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.problem = f"{self.path}: unreadable ({type(exc).__name__}); finished files will be redone"
        self._torn = False   # the journal ends in a line a killed run did not finish
        if self.journal.exists():
            self._dirty = True
            text = self.journal.read_text(encoding="utf-8", errors="replace")
            self._torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    key, entry = json.loads(line)
                except (ValueError, TypeError):
                    continue   # the last line of a run killed mid-append
                self.entries[key] = entry

    def is_done(self, job: Job, stat: os.stat_result, options: dict, formats, output_dir: Path) -> bool:
        entry = self.entries.get(job.key)
        if not entry or entry.get("options") != options:
            return False
        if entry.get("size") != stat.st_size or entry.get("mtime_ns") != stat.st_mtime_ns:
            return False
        outputs = entry.get("outputs", {})
        return all(outputs.get(fmt) == f"{job.name}.{fmt}" and (output_dir / outputs[fmt]).is_file()
                   for fmt in formats)

    def record(self, job: Job, entry: dict) -> None:
        """Recorded on disk before this returns: one flushed line appended to the journal."""
        line = ("\n" if self._torn else "") + json.dumps([job.key, entry], ensure_ascii=False) + "\n"
        with open(self.journal, "a", encoding="utf-8") as file:
            file.write(line)
            file.flush()
            os.fsync(file.fileno())
        self.entries[job.key] = entry
        self._dirty, self._torn = True, False

    def save(self) -> None:
        """Fold the journal into manifest.json (atomically), then drop the journal."""
        if not self._dirty:
            return
        with atomic_write(self.path) as file:
            json.dump({"version": 1, "files": self.entries}, file, ensure_ascii=False, indent=1)
            file.write("\n")
        self.journal.unlink(missing_ok=True)
        self._dirty = False


class FolderLock:
    """Exclusive use of an output folder while a run lasts: an flock on the folder itself
    (nothing is written for it). The system drops the lock when the process ends, even by
    SIGKILL, so it never goes stale."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.fd = None

    def __enter__(self) -> "FolderLock":
        if fcntl is None:
            return self
        self.fd = os.open(self.output_dir, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise OutputError(f"output folder {self.output_dir} is in use by another run; wait for it to finish, "
                              "or give another -o") from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing releases the flock
            self.fd = None


def _say(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def _on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", None) and sys.stderr.isatty())


class FileProgress:
    """Files done: a tqdm bar on a terminal; where stderr is not one (a log file, a pipe)
    a plain line per update instead of the bar's carriage-return redraws."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.total, self.desc, self.quiet, self.done, self.note = total, desc, quiet, 0, ""
        self.bar = tqdm(total=total, unit="file", desc=desc, disable=quiet or not _on_terminal(), dynamic_ncols=True)

    def __enter__(self) -> "FileProgress":
        return self

    def __exit__(self, *_) -> None:
        self.bar.close()

    def set_postfix_str(self, note: str) -> None:
        self.note = note
        self.bar.set_postfix_str(note)

    def update(self, n: int) -> None:
        self.done += n
        self.bar.update(n)
        if self.bar.disable and not self.quiet and n:
            _say(f"{self.desc}: {self.done}/{self.total}" + (f" ({self.note})" if self.note else ""))


class SegmentProgress:
    """A bar over the audio seconds of a long file transcribed alone, on a terminal: the
    `progress` callback of batch.transcribe_files. A file's bar goes when it is done, or
    when the next file reports."""

    def __init__(self, segment_seconds: float, quiet: bool):
        self.segment_seconds, self.quiet = segment_seconds, quiet
        self.path, self.bar = None, None

    def __enter__(self) -> "SegmentProgress":
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def __call__(self, path, done: float, total: float) -> None:
        if path != self.path:
            self.close()
            self.path = path
        if self.bar is None and total > self.segment_seconds and not self.quiet and _on_terminal():
            self.bar = tqdm(total=round(total, 1), unit="s", desc=Path(path).name, leave=False, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(round(done, 1) - self.bar.n)
            if done >= total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.path, self.bar = None, None


def transcribe_folder(inputs, output_dir, options: TranscribeOptions | None = None, *, model=DEFAULT_MODEL,
                      dtype=None, formats=("txt",), overwrite: bool = False, quiet: bool = False,
                      verbose: bool = False, shape=None, ray=None, ray_workers: int | None = None,
                      **changes) -> dict:
    """Transcribe audio files and folders (recursively) into `output_dir`; returns the summary.

    `model` is a hub id, a local directory or a loaded `ASRModel`; `formats` any of txt,
    json, srt, vtt, tsv or "all"; `options` and the keyword `changes` to it: see
    TranscribeOptions (the manifest records them); srt/vtt are word-timed (by the forced
    aligner) unless `word_timestamps=False` makes them one cue per segment, as the CLI's
    --no-timestamps does; `shape` (writers.CueShape) shapes srt/vtt cues. Finished inputs are skipped on a rerun
    with the same options unless `overwrite`. Files that fail are listed in the summary's
    `failures`; `quiet` turns off the progress bars and the printed summary (errors are
    still printed).
    `ray` spreads the files over a Ray cluster's workers (cluster.py; the `ray` extra): True
    starts a local one, "auto" or an address joins a running one; `ray_workers` says how many.
    The outputs, manifest and resuming are the same as a local run's.
    """
    options = TranscribeOptions.build(options, **named_aligner(changes))
    formats = parse_formats(formats)
    if options.word_timestamps is None:   # srt/vtt are word-timed unless word_timestamps=False (the CLI's rule)
        options = dataclasses.replace(options, word_timestamps=bool({"srt", "vtt"} & set(formats)))
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    found = find_audio(inputs)
    if found.missing:
        raise SetupError("; ".join(f"{given}: {reason}" for given, reason in found.missing))
    if not found.jobs:
        raise SetupError("no audio files found in: " + ", ".join(map(str, inputs)))
    if isinstance(model, ASRModel):
        settings = {"model": str(model.path), "dtype": str(model.dtype)}
        if getattr(model, "quantize", None):
            settings["quantize"] = model.quantize  # outputs of a float run are not reused
        # how each Ray worker loads it again
        load = LoadOptions(str(model.path), str(model.dtype).rsplit(".", 1)[-1], model.quantize, model.low_memory)
    else:
        settings = {"model": str(model), "dtype": dtype}
        load = LoadOptions(model, dtype)
    settings.update(options.record())
    if shape is not None and shape != CueShape() and {"srt", "vtt"} & set(formats):
        settings["shape"] = dataclasses.asdict(shape)  # other cue shapes: other outputs

    created = not Path(output_dir).exists()
    output_dir = check_output_dir(output_dir)
    plan = _Plan(inputs=inputs, found=found, output_dir=output_dir, formats=formats, settings=settings,
                 options=options, shape=shape, load=load, model=model if isinstance(model, ASRModel) else None,
                 overwrite=overwrite, quiet=quiet, verbose=verbose, ray=ray, ray_workers=ray_workers)
    try:
        with FolderLock(output_dir):
            removed = remove_stale_temps(output_dir)
            if removed and verbose:
                _say(f"note: removed {removed} temporary file(s) left by an earlier run that was killed")
            return _run_folder(plan)
    except SetupError:
        if created and not any(output_dir.iterdir()):
            output_dir.rmdir()   # a model or aligner that failed to load leaves no empty folder behind
        raise


@dataclass(frozen=True)
class _Plan:
    """One folder run as transcribe_folder settled it: what, into where, how and on what."""

    inputs: list                  # as given (the summary lists them)
    found: FoundInputs
    output_dir: Path
    formats: tuple
    settings: dict                # what the manifest records: a finished input is reused only under the same
    options: TranscribeOptions
    shape: CueShape | None
    load: LoadOptions             # the model: loaded only when there is work, by each worker on Ray
    model: ASRModel | None        # the caller's loaded model (used here, not on Ray)
    overwrite: bool
    quiet: bool
    verbose: bool
    ray: object                   # None: transcribed here; else the cluster (cluster.RayWorkers.start)
    ray_workers: int | None


def _run_folder(plan: _Plan) -> dict:
    started, wall_start = datetime.now(timezone.utc), time.perf_counter()
    manifest = Manifest(plan.output_dir)
    records: list[dict] = []
    for note in ([manifest.problem] if manifest.problem else []) + plan.found.notes + plan.found.renames:
        _say(f"note: {note}")

    todo: list[tuple[Job, os.stat_result]] = []
    for job in plan.found.jobs:
        try:
            stat = job.source.stat()
        except OSError as exc:
            _say(f"error: {job.source}: {exc.strerror or exc}")
            records.append({"input": str(job.source), "status": "failed", "error": exc.strerror or str(exc)})
            continue
        if not plan.overwrite and manifest.is_done(job, stat, plan.settings, plan.formats, plan.output_dir):
            entry = manifest.entries[job.key]
            records.append({"input": str(job.source), "status": "skipped",
                             "outputs": [entry["outputs"][f] for f in plan.formats], "duration": entry.get("duration")})
        else:
            todo.append((job, stat))

    # Loaded only when there is work: a rerun of a finished folder needs no model (nor cluster).
    # On Ray the workers load model and aligner; setup errors (no Ray, no model) surface here,
    # before any audio. Locally the aligner too is loaded before any audio, so a bad one is one
    # setup error, not one per file.
    workers = None
    if todo and plan.ray:
        from .cluster import RayWorkers
        workers = RayWorkers.start(plan.ray, plan.load, plan.ray_workers)
    asr = plan.model
    if todo and not workers and asr is None:
        asr = load_model(plan.load.model, plan.load.dtype, plan.load.quantize, plan.load.low_memory)
    options = plan.options
    if todo and options.word_timestamps and not workers:
        get_aligner(options.aligner, asr.dtype)   # loaded and kept for the run
    run = _Run(plan, options, manifest, records)
    interrupted = None
    transcribe_start = time.perf_counter()
    try:
        if todo:
            run.transcribe_on(workers, todo) if workers else run.transcribe_all(asr, todo)
    except BaseException as exc:
        interrupted = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else first_line(exc) or type(exc).__name__
        raise
    finally:
        if workers:
            workers.close()
        transcribe_seconds = time.perf_counter() - transcribe_start if todo else 0.0
        interrupted = interrupted or run.stopped
        problems = []
        try:
            manifest.save()
        except OSError as exc:   # the journal still holds every finished input
            problems.append(f"{manifest.path} not updated: {exc.strerror or exc} (the next run reads the journal)")
        summary = _summary(records, plan, started, time.perf_counter() - wall_start, transcribe_seconds, interrupted)
        try:
            with atomic_write(plan.output_dir / SUMMARY_NAME) as file:
                json.dump(summary, file, ensure_ascii=False, indent=2)
                file.write("\n")
        except OSError as exc:
            problems.append(f"{plan.output_dir / SUMMARY_NAME} not written: {exc.strerror or exc}")
        if not plan.quiet:
            print(format_summary(summary), file=sys.stderr)
        elif interrupted:
            _say(_interrupted_line(interrupted))
        for problem in problems:
            _say(f"error: {problem}")
    return summary


def _group_names(group) -> str:
    """The progress bar's note for the group being transcribed."""
    return group[0][0].name if len(group) == 1 else f"{group[0][0].name} +{len(group) - 1}"


class _Run:
    """The transcribing part of a folder run: groups (batch.file_groups), progress bars,
    outputs, manifest; here or on a Ray cluster's workers (cluster.py)."""

    def __init__(self, plan: _Plan, options: TranscribeOptions, manifest: Manifest, records: list[dict]):
        self.plan = plan
        self.options = options   # plan.options, with the aligner loaded where it runs here
        self.manifest, self.records = manifest, records
        self.stopped = None   # why the run stopped early (a full disk), if it did

    def transcribe_all(self, asr, todo) -> None:
        sources = [job.source for job, _ in todo]
        with (FileProgress(len(todo), "files", self.plan.quiet) as bar,
              SegmentProgress(self.options.segment_seconds, self.plan.quiet) as segments):
            for indices in file_groups(sources):
                group = [todo[i] for i in indices]
                bar.set_postfix_str(_group_names(group))
                results = transcribe_files(asr, [sources[i] for i in indices], self.options, segments)
                segments.close()
                self.finish_group(group, results)
                bar.update(len(group))
                if self.stopped:
                    return

    def transcribe_on(self, workers, todo) -> None:
        """transcribe_all on a Ray cluster's `workers` (cluster.RayWorkers): the same groups,
        each group's outputs written as soon as its results come back."""
        sources = [job.source for job, _ in todo]
        lost = 0
        with FileProgress(len(todo), f"files ({len(workers.actors)} Ray workers)", self.plan.quiet) as bar:
            def finished(indices, results) -> bool:
                group = [todo[i] for i in indices]
                self.finish_group(group, results)
                bar.update(len(group))
                return not self.stopped   # the output folder failed (a full disk): stop as a local run does

            def worker_lost(note) -> None:
                nonlocal lost
                lost += 1
                if note:
                    _say(f"note: {note}")
                bar.set_postfix_str(f"{lost} worker(s) lost")

            workers.transcribe_groups(sources, file_groups(sources), self.options, finished, worker_lost)

    def finish_group(self, group, results) -> None:
        """Write a group's outputs (or report its failures); each is journaled as it is done.
        Stops early (see `stopped`) when the output folder itself fails (a full disk)."""
        for (job, stat), result in zip(group, results):
            self._finish(job, stat, result)
            if self.stopped:
                return

    def _finish(self, job: Job, stat, result) -> None:
        plan = self.plan
        record = {"input": str(job.source), "status": "failed"}
        if isinstance(result, Transcription):
            try:
                paths = write_outputs(result, plan.output_dir / job.name, plan.formats, input=str(job.source),
                                      model=plan.settings["model"], options=plan.settings, shape=plan.shape)
            except OSError as exc:
                result = OutputError(f"{job.source}: writing its outputs failed: {exc.strerror or exc}")
                if exc.errno in FOLDER_ERRNOS:
                    self.stopped = f"output folder {plan.output_dir}: {exc.strerror}"
            except Exception as exc:
                result = exc
        if not isinstance(result, Transcription):
            record["error"] = first_line(result)
            _say(f"error: {record['error']}" if str(job.source) in record["error"] else
                 f"error: {job.source}: {record['error']}")
            self.records.append(record)
            return
        outputs = {fmt: path.relative_to(plan.output_dir).as_posix() for fmt, path in zip(plan.formats, paths)}
        record.update(status="done", outputs=list(outputs.values()), duration=round(result.duration, 3),
                      language=result.language, finish_reason=result.finish_reason,
                      truncated=result.truncated, retries=result.retries)
        try:
            self._record(job, stat, result, record, outputs)
        except OSError as exc:   # the outputs are complete; only a rerun's skip is lost
            _say(f"error: {self.manifest.journal}: {exc.strerror or exc}")
            if exc.errno in FOLDER_ERRNOS:
                self.stopped = f"output folder {plan.output_dir}: {exc.strerror}"
        self.records.append(record)
        if result.finish_reason in (FINISH_LENGTH, FINISH_REPETITION):
            _say(f"warning: {job.source}: decoding stopped early ({result.finish_reason}); the text may be incomplete")
        warning = forced_language_warning(str(job.source), result, self.options.language)
        if warning:
            _say(warning)
        if plan.verbose:
            _say(f"{job.source}: {result.duration:.1f} s, language {result.language or '-'}, "
                 f"finish {result.finish_reason} -> {', '.join(outputs.values())}")

    def _record(self, job, stat, result, record, outputs) -> None:
        self.manifest.record(job, {
            "input": str(job.source), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "options": self.plan.settings, "outputs": outputs, "duration": record["duration"],
            "language": result.language, "finish_reason": result.finish_reason,
            "truncated": result.truncated, "retries": result.retries,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })


def _summary(records, plan: _Plan, started, wall, transcribe_seconds, interrupted) -> dict:
    done = [r for r in records if r["status"] == "done"]
    audio = sum(r["duration"] for r in done)
    return {
        "output_dir": str(plan.output_dir),
        "inputs": [str(i) for i in plan.inputs],
        "model": plan.settings["model"],
        "options": plan.settings,
        "formats": list(plan.formats),
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall, 3),
        "interrupted": interrupted,
        "total": len(plan.found.jobs),   # audio files found; done + skipped + failed is less when the run stopped early
        "done": len(done),
        "skipped": sum(r["status"] == "skipped" for r in records),
        "failed": sum(r["status"] == "failed" for r in records),
        "failures": [{"input": r["input"], "error": r["error"]} for r in records if r["status"] == "failed"],
        "audio_seconds": round(audio, 3),
        "audio_hours": round(audio / 3600, 4),
        "transcribe_seconds": round(transcribe_seconds, 3),
        # Real-time factor: seconds spent transcribing per second of audio (model load excluded).
        "rtf": round(transcribe_seconds / audio, 4) if audio > 0 and transcribe_seconds > 0 else None,
        "truncated": sum(bool(r.get("truncated")) for r in done),
        "truncated_files": [r["input"] for r in done if r.get("truncated")],
        "retries": sum(r.get("retries", 0) for r in done),
        "files": records,
    }


def _interrupted_line(reason: str) -> str:
    return f"interrupted ({reason}): run the same command again to continue"


def format_summary(summary: dict) -> str:
    total = summary.get("total", summary["done"] + summary["skipped"] + summary["failed"])
    handled = summary["done"] + summary["skipped"] + summary["failed"]
    left = f", not reached {total - handled}" if total > handled else ""
    lines = [f"done {summary['done']}, skipped {summary['skipped']}, failed {summary['failed']}{left} "
             f"(of {total} inputs) -> {summary['output_dir']}"]
    lines += [f"  failed: {f['input']}: {f['error']}" for f in summary["failures"]]
    rtf = f", RTF {summary['rtf']:.3f}" if summary["rtf"] is not None else ""
    lines.append(f"audio {summary['audio_hours']:.2f} h ({clock_seconds(summary['audio_seconds'])}), "
                 f"wall {clock_seconds(summary['wall_seconds'])}{rtf}")
    truncated = f" ({', '.join(summary['truncated_files'])})" if summary["truncated_files"] else ""
    lines.append(f"truncated: {summary['truncated']}{truncated}; retries: {summary['retries']}")
    if summary["interrupted"]:
        lines.append(_interrupted_line(summary["interrupted"]))
    lines.append(f"summary: {Path(summary['output_dir']) / SUMMARY_NAME}")
    return "\n".join(lines)
