"""Folder runs over a Ray cluster (`transcribe_folder(..., ray=...)`, `--ray`; the `ray` extra).

This process stays the driver: folder.py finds the inputs, skips finished ones and writes
every output, the manifest and the summary, so the files are those of a local run; this
module only hands it each group's results (a callback). Workers only transcribe: each is a
Ray actor that loads the model once (LoadOptions) and takes one group of files at a time,
the groups a local run makes (batch.file_groups, so batched decoding fills the same
batches), through the same batch.transcribe_files, and hands back the results. Workers
write nothing, so nothing partial reaches the output folder whatever happens to them.

* A worker that dies mid-group (killed, out of memory, its machine lost) is restarted by
  Ray, and its group goes back in the queue for the next free worker. A group that has
  lost its worker twice is split into single files; a single file that has, fails with
  that reason (a file that crashes the process must not take the run down with it).
* The driver killed: the manifest says what is finished; the same command resumes.
* Inputs and the model must be readable at the same paths on every node (a shared
  folder; hub ids are fetched by each node), with mlx-qwen-asr installed there.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from pathlib import Path

from ..batch import transcribe_files
from ..errors import QwenASRError, SetupError, first_line
from ..options import LoadOptions, TranscribeOptions
from ..results import Transcription
from ..transcribe import load_model

# A local cluster started for a run: this many workers (each a process holding the model),
# and a small object store, since only file names and transcripts travel through it.
LOCAL_WORKERS = 2
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20
# Losing its worker this many times splits a group into single files, or fails a single file.
DEATHS_PER_GROUP = 2
# A worker restarted more often than this is given up (Ray keeps restarting it until then).
WORKER_RESTARTS = 3
# An ADDRESS that does not answer a TCP connection this fast is reported at once (Ray itself
# retries for many minutes, then names the node's own address rather than the one given).
CONNECT_SECONDS = 5


class Worker:
    """One Ray actor's state: the model, loaded once."""

    def __init__(self, load: LoadOptions):
        # A load error is kept and reported by ready(): an actor whose constructor raises
        # would be restarted over and over instead of saying why.
        self.problem = ""
        try:
            self.asr = load_model(load.model, load.dtype, load.quantize, load.low_memory)
        except Exception as exc:
            self.problem = first_line(exc)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "problem": self.problem}

    def transcribe(self, sources: list[str], options: TranscribeOptions) -> list:
        results = transcribe_files(self.asr, sources, options)
        # Only the message travels back: every exception pickles as a plain QwenASRError.
        return [r if isinstance(r, Transcription) else QwenASRError(first_line(r)) for r in results]


def _unreachable(address: str) -> str | None:
    """Why nothing answers at a HOST:PORT (or ray://HOST:PORT) address, or None (answered,
    or an address such as "auto" that Ray resolves itself)."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            return None
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


class _ray_stderr_hidden:
    """Ray's start-up chatter (its C++ log lines, advice about flags of its own command line)
    is not this command's output: standard error goes to a scratch file meanwhile; the
    error Ray raises is still reported, as one line."""

    def __enter__(self):
        import sys
        import tempfile

        sys.stderr.flush()
        self.saved = os.dup(2)
        self.scratch = tempfile.TemporaryFile()
        os.dup2(self.scratch.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        import sys

        sys.stderr.flush()
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.scratch.close()
        return False


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SetupError("--ray needs Ray: pip install 'mlx-qwen-asr[ray]'") from None
    return ray


class RayWorkers:
    """The workers of one folder run, and the driver loop that feeds them."""

    def __init__(self, ray, actors, started_cluster: bool):
        self.ray, self.actors, self.started_cluster = ray, actors, started_cluster

    @classmethod
    def start(cls, address, load: LoadOptions, workers: int | None = None) -> "RayWorkers":
        """Join the cluster at `address` ("auto", "HOST:PORT", "ray://...") or, for True,
        start a local one; start `workers` actors (default: LOCAL_WORKERS on a local
        cluster, one per node on a running one) and wait until each has loaded the model
        `load` names."""
        ray = _import_ray()
        if workers is not None and workers < 1:
            raise SetupError(f"ray_workers must be at least 1, got {workers}")
        started = False
        if not ray.is_initialized():
            common = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            name = "(local)" if address is True else str(address)
            unreachable = None if address is True else _unreachable(str(address))
            if unreachable:
                raise SetupError(f"Ray cluster {name}: cannot connect ({unreachable}); start one there "
                                 "(ray start --head), or give --ray without an address for a local one")
            try:
                with _ray_stderr_hidden():
                    if address is True:
                        ray.init(num_cpus=workers or LOCAL_WORKERS, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                                 **common)
                    else:
                        ray.init(address=str(address), **common)
            except ConnectionError:   # Ray's own advice names flags this command does not have
                raise SetupError(f"Ray cluster {name}: no running cluster found; start one (ray start --head), "
                                 "or give --ray without an address for a local one") from None
            except Exception as exc:
                raise SetupError(f"Ray cluster {name}: {first_line(exc)}") from None
            started = True
        if workers is None:
            workers = LOCAL_WORKERS if address is True else max(1, sum(
                n.get("Alive", False) and n.get("Resources", {}).get("CPU", 0) >= 1 for n in ray.nodes()))
        actor = ray.remote(num_cpus=1, max_restarts=WORKER_RESTARTS, max_task_retries=0)(Worker)
        actors = [actor.options(scheduling_strategy="SPREAD").remote(load) for _ in range(workers)]
        self = cls(ray, actors, started)
        try:
            problems = {r["problem"] for r in ray.get([a.ready.remote() for a in actors]) if r["problem"]}
        except BaseException as exc:   # Ctrl-C too: the cluster this run started goes with it
            self.close()
            if isinstance(exc, Exception):
                raise SetupError(f"Ray workers did not start: {first_line(exc)}") from None
            raise
        if problems:
            self.close()
            raise SetupError(sorted(problems)[0])
        return self

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        self.actors = []
        if self.started_cluster:
            self.ray.shutdown()

    def transcribe_groups(self, paths: list, groups, options: TranscribeOptions, on_group, on_lost) -> None:
        """Each of `groups` (lists of indices into `paths`, as batch.file_groups gives) to
        a free worker; `on_group(indices, results)` gets each group's results as soon as
        they come back, and returns False to stop the run. `on_lost(note)` hears of each
        worker lost: `note` says what happens to its files, or is None when they failed
        (on_group then has their errors)."""
        ray = self.ray
        groups = iter(groups)   # options name the aligner: each worker loads it
        fresh = True      # groups may still come from `groups`
        retry = deque()   # (group, times it lost its worker), served before new groups
        idle = deque(self.actors)
        restarts = dict.fromkeys(self.actors, 0)
        # result ref -> (actor, group, times it lost its worker); group None: a restarted
        # worker's ready() call, so that no group is sent to a worker before it is back.
        pending = {}
        while True:
            while idle and (retry or fresh):
                item = retry.popleft() if retry else next(((g, 0) for g in groups), None)
                if item is None:
                    fresh = False
                    break
                actor = idle.popleft()
                pending[actor.transcribe.remote([str(paths[i]) for i in item[0]], options)] = (actor, *item)
            if not any(group for _, group, _ in pending.values()) and not retry and not fresh:
                return
            if not pending:
                raise QwenASRError("every Ray worker died; run the same command again to continue")
            [ref], _ = ray.wait(list(pending), num_returns=1)
            actor, group, deaths = pending.pop(ref)
            try:
                results = ray.get(ref)
            except ray.exceptions.RayActorError:
                if group is not None:
                    self._lost_worker(paths, group, deaths, retry, on_group, on_lost)
                restarts[actor] += 1
                if restarts[actor] <= WORKER_RESTARTS:   # Ray restarts it: wait until it is back
                    pending[actor.ready.remote()] = (actor, None, 0)
                continue
            except ray.exceptions.RayError as exc:   # the call itself failed, not the files
                if group is None:
                    continue
                results = [QwenASRError(f"{paths[i]}: {first_line(exc)}") for i in group]
            if group is None and results["problem"]:   # restarted, but the model no longer loads there
                continue
            if group is not None and not on_group(group, results):
                return
            idle.append(actor)

    def _lost_worker(self, paths, group, deaths, retry, on_group, on_lost) -> None:
        """Requeue (or split, or fail) a group whose worker died."""
        deaths += 1
        names = Path(paths[group[0]]).name + (f" +{len(group) - 1}" if len(group) > 1 else "")
        if deaths < DEATHS_PER_GROUP:
            on_lost(f"a Ray worker died while transcribing {names}; redoing it")
            retry.append((group, deaths))
        elif len(group) > 1:
            on_lost(f"{names} lost a Ray worker twice; redoing them one by one")
            retry.extend(([index], 0) for index in group)
        else:
            on_lost(None)
            on_group(group, [QwenASRError(f"{paths[group[0]]}: the Ray worker transcribing it died {deaths} times")])
