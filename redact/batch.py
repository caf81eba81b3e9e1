"""Batch redaction: a folder or list of footage, each file redacted exactly once, resumable after any crash.

A records unit hands over a whole shift or a whole year of footage. The batch finds the videos, keys each by
the SHA-256 of its content, and keeps a journal (SQLite, in OUTDIR) of what is finished and what failed, so a
rerun after a crash, a SIGKILL or a reboot redoes nothing that was published. Every file is redacted by
`Redactor.run`, which publishes by atomic rename; what a killed run left under temporary names is removed
when the next run starts. A bad file fails alone: its error goes to the journal and the summary.

Backends: `local` runs `jobs` worker processes on this machine, each loading the models once (on a GPU, `jobs`
threads sharing one set of models and their detector batches instead); `ray` runs one
Ray task per file with its CPU and GPU needs declared, on a local Ray instance or an existing cluster (OUTDIR
must then be a folder every node sees at the same path). A file long enough to be cut into segments
(`--segment-minutes`) has each segment run as a Ray task of its own, so one long recording uses the cluster.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import resource
import shutil
import sqlite3
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

from redact.errors import UserError
from redact.models import sha256_file
from redact.pipeline import RedactOptions, Redactor, as_finished, output_stems, worker_process
from redact.review.keys import CERT_ENV, KEY_ENV

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mpg", ".mpeg", ".mkv", ".webm", ".ts", ".mts", ".m2ts",
                            ".wmv", ".3gp"})
JOURNAL = ".redact-batch.sqlite"
LOCK = ".redact-batch.lock"


class BatchItem(NamedTuple):
    """One input: its path, the SHA-256 of its content, the output folder (mirrors the input tree) and the stem
    of its outputs (the file name when another input in the folder has the same stem: cam.mp4 and cam.mov)."""

    path: Path
    sha256: str
    outdir: Path
    stem: str


class Outcome(NamedTuple):
    """What one file's redaction came to; `error` is None on success."""

    sha256: str
    error: str | None
    frames: int = 0
    tracks: int = 0
    seconds: float = 0.0
    video: str | None = None
    peak_rss_mb: float = 0.0  # of the worker process so far: grows across files only if something leaks


def find_inputs(source: str | os.PathLike[str], exclude: Path | None = None) -> tuple[list[Path], Path]:
    """The videos of a folder (recursively, by extension, hidden entries skipped) or of a list file (one path per
    line, # comments, relative paths taken from the list's folder), and the root their output tree mirrors."""
    source = Path(source)
    if source.is_dir():
        root = source.resolve()
        skip = exclude.resolve() if exclude else None
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and here / d != skip)
            found += [here / f for f in sorted(filenames)
                      if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES]
        return found, root
    if source.is_file():
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{source}: cannot read the list of inputs: {e}") from None
        entries = [line.strip() for line in lines]
        paths = [(source.parent / entry).resolve() for entry in entries if entry and not entry.startswith("#")]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"{source}: {len(missing)} listed file(s) do not exist, first: {missing[0]}")
        root = Path(os.path.commonpath([p.parent for p in paths])) if paths else source.parent.resolve()
        return paths, root
    raise UserError(f"{source}: no such folder or list file")


class Journal:
    """What every input came to, by content hash; SQLite, so a kill at any instant leaves it consistent."""

    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS files (
            sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
            error TEXT, video TEXT, frames INTEGER, tracks INTEGER, seconds REAL, peak_rss_mb REAL,
            attempts INTEGER NOT NULL, finished TEXT NOT NULL)""")

    def done(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT sha256 FROM files WHERE status = 'done'")}

    def record(self, item: BatchItem, outcome: Outcome) -> None:
        self.db.execute(
            """INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
               ON CONFLICT (sha256) DO UPDATE SET path = excluded.path, status = excluded.status,
                 error = excluded.error, video = excluded.video, frames = excluded.frames, tracks = excluded.tracks,
                 seconds = excluded.seconds, peak_rss_mb = excluded.peak_rss_mb, attempts = attempts + 1,
                 finished = excluded.finished""",
            (item.sha256, str(item.path), "failed" if outcome.error else "done", outcome.error, outcome.video,
             outcome.frames, outcome.tracks, round(outcome.seconds, 3), round(outcome.peak_rss_mb, 1),
             time.strftime("%Y-%m-%dT%H:%M:%S%z")))

    def close(self) -> None:
        self.db.close()


def lock_outdir(outdir: Path) -> int:
    """An exclusive lock on OUTDIR for the life of the process: a second batch into the same folder would remove
    the first one's work in progress as leftovers."""
    fd = os.open(outdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{outdir}: another `redact batch` is writing into this folder") from None
    return fd


def remove_leftovers(outdir: Path) -> list[Path]:
    """Delete what an interrupted run left under temporary names (never a published file): `.NAME.partial`,
    `.NAME.pending` and `.STEM.*.work` folders, the names `Redactor.run` finishes its outputs under."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(outdir):
        here = Path(dirpath)
        for d in [d for d in dirnames if d.startswith(".") and d.endswith(".work")]:
            shutil.rmtree(here / d, ignore_errors=True)
            dirnames.remove(d)
            removed.append(here / d)
        for f in filenames:
            if f.startswith(".") and (f.endswith(".partial") or f.endswith(".pending")):
                (here / f).unlink(missing_ok=True)
                removed.append(here / f)
    return removed


def describe(error: BaseException) -> str:
    """One line for the journal and the summary."""
    if isinstance(error, UserError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def redact_one(redactor: Redactor, item: BatchItem) -> Outcome:
    """Redact one file; any failure becomes an Outcome with its error (the outputs are then not published)."""
    start = time.perf_counter()
    try:
        result = redactor.run(item.path, item.outdir, stem=item.stem)
    except Exception as e:  # noqa: BLE001 - a bad file fails alone, its error goes to the journal
        return Outcome(item.sha256, describe(e), seconds=time.perf_counter() - start, peak_rss_mb=peak_rss_mb())
    for warning in result.warnings:  # the file is done; what failed after publishing is said, not journalled
        print(f"redact: warning: {warning}", file=sys.stderr, flush=True)
    return Outcome(item.sha256, None, result.frames, result.tracks, time.perf_counter() - start, str(result.video),
                   peak_rss_mb())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---- local backend: worker processes, each with its own Redactor (models loaded once per worker) ----
_redactor: Redactor | None = None


def _init_worker(options: RedactOptions) -> None:
    global _redactor
    worker_process()
    _redactor = Redactor(options)


def _work(item: BatchItem) -> Outcome:
    assert _redactor is not None
    return redact_one(_redactor, item)


def run_local(items: list[BatchItem], options: RedactOptions, jobs: int) -> Iterator[tuple[BatchItem, Outcome]]:
    """Outcomes as files finish, `jobs` at a time. A worker that dies (segfault, out of memory) fails the files in
    flight and a fresh pool takes over the rest; a pool that dies before finishing anything fails them all."""
    queue = list(reversed(items))
    while queue:
        pool = ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(options,))
        running: dict[Future, BatchItem] = {}
        finished_any = False
        try:
            while queue or running:
                while queue and len(running) < jobs:
                    item = queue.pop()
                    running[pool.submit(_work, item)] = item
                for future in wait(running, return_when=FIRST_COMPLETED).done:
                    item = running.pop(future)
                    yield item, future.result()
                    finished_any = True
        except BrokenProcessPool:
            lost = list(running.values())
            if not finished_any:  # the workers cannot even start: every file would fail the same way
                lost += queue[::-1]
                queue.clear()
            for item in lost:
                yield item, Outcome(item.sha256, "internal error: the worker process died (crash or out of memory)")
        finally:
            for process in list(getattr(pool, "_processes", {}).values()):  # stop work in flight on any exit
                process.kill()
            pool.shutdown(wait=True, cancel_futures=True)


# ---- local backend with the torch stage (GPU): threads sharing one Redactor ----
def run_shared(redactor: Redactor, items: list[BatchItem], jobs: int) -> Iterator[tuple[BatchItem, Outcome]]:
    """Outcomes as files finish, `jobs` at a time in threads of this process sharing `redactor`: one set of models
    on the GPU, and detector batches gathered from every file (`Redactor.run_many` does the same for `run`). A
    crash takes the whole batch down instead of one worker; the journal lets the rerun resume where it stopped."""
    yield from as_finished(lambda item: redact_one(redactor, item), items, jobs)


# ---- ray backend: one task per file ----
def _ray_work(options: RedactOptions, item: BatchItem) -> Outcome:
    global _redactor
    if _redactor is None or _redactor.options != options:  # Ray reuses worker processes: load the models once
        _redactor = Redactor(options)
    return redact_one(_redactor, item)


def cluster_device(device: str, resources: dict[str, float]) -> str:
    """The device Ray tasks redact on: 'auto' is the cluster's choice, not this machine's. The driver often has no
    GPU while the nodes do (or the reverse), so 'auto' means CUDA when the cluster has any GPU."""
    if device != "auto":
        return device
    return "cuda" if resources.get("GPU", 0) > 0 else "cpu"


def run_ray(items: list[BatchItem], options: RedactOptions, address: str | None, cpus: float,
            jobs: int) -> Iterator[tuple[BatchItem, Outcome]]:
    """Outcomes as Ray tasks finish. `address` None starts a local Ray instance; else joins that cluster. On CUDA
    each task asks Ray for 1/`jobs` of a GPU, so `jobs` files share one."""
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'redact[ray]'") from None
    started = not ray.is_initialized()
    if started:
        # the agency's key, where one is named, signs on every node (the path must be readable there too)
        named = {k: os.environ[k] for k in (KEY_ENV, CERT_ENV, "REDACT_KEYS") if os.environ.get(k)}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": named} if named else None)
    try:
        options = replace(options, device=cluster_device(options.device, ray.cluster_resources()))
        gpus = 1.0 / max(1, jobs) if options.device == "cuda" else 0.0
        options = replace(options, segment_ray=(cpus, gpus))  # a long file's segments: Ray tasks of their own
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=1)(_ray_work)
        pending = {task.remote(options, item): item for item in items}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            item = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001 - a lost node or killed worker fails this file only
                outcome = Outcome(item.sha256, f"internal error: Ray task failed: {type(e).__name__}: {e}")
            yield item, outcome
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


class Batch:
    """One batch into OUTDIR: holds its lock and journal, knows what is left to do, and runs it.

    Opening a batch removes what an interrupted run left, finds the inputs, hashes them and sets aside what the
    journal says is done (and inputs whose content another input already has).
    """

    def __init__(self, source: str | os.PathLike[str], outdir: str | os.PathLike[str], options: RedactOptions):
        self.outdir, self.options = Path(outdir), options
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.lock = lock_outdir(self.outdir)
        try:
            self.journal = Journal(self.outdir / JOURNAL)
            self.removed = remove_leftovers(self.outdir)
            paths, root = find_inputs(source, exclude=self.outdir)
            finished, seen = self.journal.done(), set()
            self.todo: list[BatchItem] = []
            self.skipped: list[BatchItem] = []
            self.unreadable: list[tuple[BatchItem, Outcome]] = []
            folders: dict[Path, list[Path]] = {}
            for path in paths:
                folders.setdefault(path.parent, []).append(path)
            stems = {p: s for group in folders.values() for p, s in zip(group, output_stems(group), strict=True)}
            for path in paths:
                stem = stems[path]
                try:
                    digest = sha256_file(path)
                except OSError as e:  # fails alone, like any bad file; keyed by path, as it has no content
                    item = BatchItem(path, f"unreadable:{path}", self.outdir, stem)
                    self.unreadable.append((item, Outcome(item.sha256, f"{path}: cannot read: {e.strerror or e}")))
                    continue
                item = BatchItem(path, digest, self.outdir / path.parent.relative_to(root), stem)
                (self.skipped if item.sha256 in finished or item.sha256 in seen else self.todo).append(item)
                seen.add(item.sha256)
        except BaseException:
            self.close()
            raise

    def run(self, jobs: int = 1, backend: str = "local", ray_address: str | None = None,
            cpus_per_task: float = 1.0) -> Iterator[tuple[BatchItem, Outcome]]:
        """Redact what is left, yielding each outcome once the journal has it."""
        if backend == "local":
            redactor = Redactor(self.options)  # bad options and missing models fail once, here, not once per file
            outcomes = run_shared(redactor, self.todo, max(1, jobs)) if redactor.stage is not None else \
                run_local(self.todo, self.options, max(1, jobs))
        elif backend == "ray":
            outcomes = run_ray(self.todo, self.options, ray_address, cpus_per_task, jobs)
        else:
            raise UserError(f"unknown backend '{backend}' (use local or ray)")
        for item, outcome in itertools.chain(self.unreadable, outcomes):
            self.journal.record(item, outcome)
            yield item, outcome

    def close(self) -> None:
        if getattr(self, "journal", None) is not None:
            self.journal.close()
            self.journal = None
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
