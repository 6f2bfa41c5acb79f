"""Grading on a Dask cluster: the worker processes of this machine (``make grade``) or of many
(``make grade SCHEDULER=tcp://host:8786``, docs/instructors.md#grading-on-many-machines).

Each task carries one submission and returns its results; no file system is shared:

- in: the files of ``submitted/<student>/<assignment>/`` (bytes), the options of the grading kernels and, on a
  cluster of other machines, the course's fingerprint (:func:`course_digest`: a worker with other notebooks would
  grade otherwise);
- on the worker (:func:`grade_submission`): nbgrader's layout in a private temporary folder, graded into a copy in
  memory of the empty gradebook (built once per machine, :func:`template_gradebook`), by the worker's own fork
  server;
- out: the submission's automatic scores (:func:`grader_tests.engine.grade.task_scores`, merged into the gradebook
  by the grading process with :func:`grader_tests.engine.grade.merge`),
  the autograded notebook(s) and feedback page(s) (bytes, by their paths under the grading folder), the seconds
  and the sandbox's state; or ``"error"`` and nbgrader's log.

A worker grades only once :class:`GradingPlugin` has set it up (``--preload grader_tests.engine.cluster``): its
fork server started, and its sandbox checked. It then offers the resource :data:`RESOURCE`, which every grading
task needs, once: a worker whose kernels would not be sandboxed offers none and never gets a task (unless the
instructor allowed unsandboxed grading: ``VISUALIZING_CNNS_NO_SANDBOX=1`` on that worker; the local cluster of
``make grade`` grades like the process pool it replaces, with the loud warning, where this machine has no sandbox).

The grading process (:class:`GradingCluster`) keeps the gradebook and ``state.json``: one transaction per result.
It keeps at most one task per grading worker in flight. A worker that dies (out of memory, ``kill -9``, a lost
machine) costs no grade: Dask runs its task again elsewhere, until the task has been on more than
``distributed.scheduler.allowed-failures`` workers that died (1 on the local cluster; Dask's default, 3, on a
scheduler of yours) and Dask gives it up (``KilledWorker``). As a task that Dask ran again may have shared its new
worker with the one that killed them (their worker dies, Dask blames both), such a task is then graded once more
*alone*, no other task in flight, and fails only if its worker dies again: one submission never costs the others
their grades.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, get_worker, wait
from distributed.core import Status

ROOT = Path(__file__).resolve().parents[2]  # as grader_tests.engine.course has it (not imported: nbgrader is slow)

RESOURCE = "grading"
"""The Dask resource a grading worker offers once (one submission at a time) and every grading task needs."""

PRELOAD = "grader_tests.engine.cluster"
"""The module a grading worker preloads: ``dask worker --preload grader_tests.engine.cluster``."""

UNAVAILABLE_FOR_TESTS = "VISUALIZING_CNNS_SANDBOX_UNAVAILABLE"
"""Tests only: a reason the worker's check then reports, as if its sandbox were unavailable."""

AHEAD = 2
"""Tasks in flight per grading worker: the one it grades and the next, waiting at the scheduler, which hands it over
as soon as the worker is free; with one, a worker would wait each time for this process to take its result and
send the next (a fifth of its time)."""

PATIENCE = 120.0
"""Seconds the grading process waits for a worker that can grade before it gives up."""

logger = logging.getLogger(__name__)

WORKER_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}
"""Dask settings of a grading worker, set when it preloads this module (before it builds its periodic tasks), and of
the grading process (its scheduler and nannies, on the local cluster), which passes them to its local workers:

- no statistical profiler, which samples every thread's stack a hundred times a second (with :data:`AHEAD`, 0.63
  to 0.58 s a notebook over 16 students);
- the event loop's health tick every second instead of every 20 ms, and the system monitor (the dashboard's CPU and
  memory plots) every 5 s instead of 0.5 s: an idle local cluster of 3 workers then costs 1.4% of a core instead of
  7.2% (their CPU time over 20 s, measured on the 2-core machine). A task takes seconds; nothing here needs either
  more often."""

dask.config.set(WORKER_CONFIG)


# --- the course on a worker -------------------------------------------------------------------------------------


def course_digest(root: Path = ROOT, *extra: str) -> str:
    """The SHA-256 of the course's assignments: the source and released notebooks (their tests, points, hidden
    checks), and the files ``extra`` (relative to ``root``). The grading process and every worker of another machine
    must agree on it (the rest, the grader's code, is the installed version's: make env with the same commit)."""
    sha = hashlib.sha256()
    paths = [*sorted(root.glob("solutions/*/*.ipynb")), *sorted(root.glob("notebooks/*/*.ipynb")),
             *(root / name for name in extra)]
    for path in paths:
        sha.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


_DIGEST: str | None = None


def _course_digest() -> str:
    global _DIGEST
    if _DIGEST is None:
        _DIGEST = course_digest()
    return _DIGEST


def template_gradebook() -> Path:
    """An empty gradebook of this course (it knows the assignments, nothing else), built once per machine and version
    of the course (12 s) in this user's folder of the temporary folder; workers of one machine wait for the first to
    build it."""
    cache = Path(tempfile.gettempdir()) / f"visualizing-cnns-grading-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    status = cache.lstat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077 or cache.is_symlink():
        raise RuntimeError(f"{cache} is not this user's private folder: remove it (another user could forge the "
                           "empty gradebook every grade is built on)")
    path = cache / f"template-{course_digest(ROOT, 'nbgrader_config.py')[:16]}.db"
    if path.exists():
        return path
    with open(cache / "template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            from .course import generate

            partial = path.with_suffix(f".{os.getpid()}.tmp")
            with tempfile.TemporaryDirectory() as release:
                generate(Path(release), f"sqlite:///{partial}", quiet=True)
            partial.replace(path)
    return path


# --- the worker's side ------------------------------------------------------------------------------------------


class GradingPlugin(WorkerPlugin):
    """What a grading worker does first, before it offers :data:`RESOURCE`: SIGINT ignored (Ctrl-C is for the
    grading process), torch on one thread, its fork server started early, the judges' references and the feedback
    pages' shared cells computed (:func:`grader_tests.judges.warm`, :func:`grader_tests.engine.grade.warm_feedback`)
    and its sandbox checked.

    ``allow_unsandboxed``: grade even where the sandbox is unavailable (the local cluster, as the process pool did);
    ``exit_with``: end this worker as soon as that process (the grading process) is gone, even by ``kill -9``, so
    that its fork server sees its input close and kills its kernels; ``warm``: start the fork server now (not for
    tests whose tasks grade nothing) and compute what every student shares."""

    name = "visualizing-cnns-grading"

    def __init__(self, allow_unsandboxed: bool = False, exit_with: int | None = None, warm: bool = True) -> None:
        self.allow_unsandboxed, self.exit_with, self.warm = allow_unsandboxed, exit_with, warm
        self.refusal: str | None = None

    async def setup(self, worker: Any) -> None:
        import signal

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # before the fork server starts: it inherits this
        warnings.filterwarnings("ignore", module="nbgrader")  # nbgrader's own SQLAlchemy warnings
        if self.exit_with is not None:
            _exit_with(self.exit_with)
        import torch

        torch.set_num_threads(1)
        if self.warm:
            from grader_tests import judges

            from .forkserver import start_early
            from .grade import warm_feedback

            start_early()
            await asyncio.to_thread(judges.warm)  # while the fork server loads
            await asyncio.to_thread(warm_feedback)
            gc.freeze()  # what the worker keeps for good: its collections no longer walk it
        if not self.allow_unsandboxed:
            self.refusal = await asyncio.to_thread(refusal)
        if self.refusal:
            logger.error("this worker refuses to grade: %s (docs/instructors.md#grading-on-many-machines)",
                         self.refusal)
            return
        await _offer(worker)


def refusal() -> str | None:
    """Why this worker must not grade: its kernels would not be sandboxed, and no one allowed that
    (``VISUALIZING_CNNS_NO_SANDBOX=1``); None where it may grade. Waits for the fork server's first reply."""
    from .forkserver import ForkServer

    if os.environ.get("VISUALIZING_CNNS_NO_SANDBOX"):
        return None  # the instructor's explicit choice: graded, and reported as unsandboxed
    if why := os.environ.get(UNAVAILABLE_FOR_TESTS):
        return f"sandbox unavailable: {why}"
    sandbox = ForkServer.get().sandbox
    if sandbox["on"]:
        return None
    ForkServer.get().close()
    return f"sandbox unavailable: {sandbox['why']}"


async def _offer(worker: Any) -> None:
    """Offer :data:`RESOURCE` once: at registration if this worker has not registered yet (a preload), else now."""
    if worker.status == Status.running:
        await worker.set_resources(**{RESOURCE: 1})
    else:
        worker.state.total_resources[RESOURCE] = 1
        worker.state.available_resources[RESOURCE] = 1


def _exit_with(pid: int) -> None:
    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, name="exit-with-grader", daemon=True).start()


@click.command()
@click.option("--allow-unsandboxed", is_flag=True, help="grade where the sandbox is unavailable (local cluster)")
@click.option("--exit-with", type=int, default=None, help="end this worker when that process ends")
@click.option("--cold", is_flag=True, help="start no fork server now (tests whose tasks grade nothing)")
async def dask_setup(worker: Any, allow_unsandboxed: bool, exit_with: int | None, cold: bool) -> None:
    """``dask worker --preload grader_tests.engine.cluster``: set this worker up to grade (:class:`GradingPlugin`)."""
    await worker.plugin_add(GradingPlugin(allow_unsandboxed, exit_with, warm=not cold), catch_errors=False)


def worker_verdict(dask_worker: Any) -> dict[str, Any]:
    """A worker's verdict (``client.run`` runs this on each): ``{"grades": bool, "why": str | None}``."""
    plugin = dask_worker.plugins.get(GradingPlugin.name)
    if plugin is None:
        return {"grades": False, "why": f"not set up to grade (start it with --preload {PRELOAD})"}
    return {"grades": plugin.refusal is None, "why": plugin.refusal}


def grade_submission(task: Any, files: dict[str, bytes], execute: dict[str, Any],
                     course: str | None) -> dict[str, Any]:
    """Grade one submission on this worker (a Dask task): ``files`` are its folder's, by relative path; ``course``:
    the grading process's :func:`course_digest`. Returns :func:`grader_tests.engine.grade.grade_task`'s result with
    the files in place of their paths: ``files`` (``{path under the grading folder: bytes}``), ``log`` (text), and
    the graded notebook's grading notes (``notes``, read here: the grading process need not). ``course`` None: no
    check (a local worker shares the grading process's files)."""
    from .grade import grade_task

    if course is not None and course != _course_digest():
        raise RuntimeError(f"this worker's course is another version than the grading process's (course digest "
                           f"{_course_digest()[:12]}, not {course[:12]}): install the same one (git pull; make env)")
    with tempfile.TemporaryDirectory(prefix="grading-", dir=_scratch_root()) as scratch:
        folder = Path(scratch)
        submitted = folder / "submitted" / task.student / task.assignment
        for name, data in files.items():
            path = submitted / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        result = grade_task(task, template_gradebook(), execute, folder)
        result["worker"] = get_worker().address
        if "log" in result:
            result["log"] = Path(result["log"]).read_text()
        if "scores" in result:
            import nbformat

            from .nbgrader_plugins import notes

            result["files"] = {path.relative_to(folder).as_posix(): path.read_bytes()
                               for step in ("autograded", "feedback")
                               for path in sorted((folder / step / task.student / task.assignment).rglob("*"))
                               if path.is_file()}
            graded = sorted((folder / "autograded" / task.student / task.assignment).glob("*.ipynb"))
            result["notes"] = [note for path in graded for note in notes(nbformat.read(path, as_version=4))]
        return result


# --- the grading process's side ---------------------------------------------------------------------------------


def _scratch_root() -> str | None:
    """Where a task grades: a file system in memory (``/dev/shm``) where the machine has one, so that writing the
    notebooks and feedback never waits for a disk; else the temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None


def submission_files(folder: Path) -> dict[str, bytes]:
    """A submitted folder's files (bytes) by relative path: what a task carries."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return False
    return True


class GradingCluster:
    """The graders: a Dask client on a local cluster of ``workers`` processes with one thread each (``scheduler``
    None) or on the scheduler at ``scheduler`` (``tcp://host:8786``), whose workers preload this module.

    ``task``: what a worker runs, ``(task, files, execute, course) -> result`` (:func:`grade_submission`);
    ``warm``: local workers start their fork server at once (False: for tasks that grade nothing)."""

    def __init__(self, workers: int, scheduler: str | None = None, task: Callable[..., dict[str, Any]] | None = None,
                 warm: bool = True) -> None:
        import dask

        self.task = task or grade_submission
        self.cluster: LocalCluster | None = None
        if scheduler is None:
            argv = ["--allow-unsandboxed", "--exit-with", str(os.getpid()), *(["--cold"] if not warm else [])]
            # a worker that died is restarted by its nanny, however long its start takes on a busy machine (by
            # default the local cluster gives up on it after 15 s; read when a worker is lost, so set for good)
            dask.config.set({"distributed.deploy.lost-worker-timeout": "1 hour"})
            with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=":0", silence_logs=logging.ERROR,
                    preload=[PRELOAD], preload_argv=argv, memory_limit=0,
                )
            self.client = Client(self.cluster)
        else:
            self.client = Client(scheduler, timeout=30)
        self.where = "this machine" if scheduler is None else scheduler
        self._slots: tuple[float, int] = (-1e9, 0)  # when counted, and how many

    @property
    def dashboard(self) -> str | None:
        """The Dask dashboard's address (only where bokeh is installed)."""
        return self.client.dashboard_link if _has_bokeh() else None

    def slots(self, fresh: bool = False) -> int:
        """The workers that grade now (each offers :data:`RESOURCE` once), counted at most every 5 s unless
        ``fresh`` (the scheduler's information on a thousand workers is megabytes)."""
        if fresh or time.monotonic() - self._slots[0] > 5:
            workers = self.client.scheduler_info(n_workers=-1)["workers"].values()
            self._slots = (time.monotonic(), sum(int(w.get("resources", {}).get(RESOURCE, 0)) for w in workers))
        return self._slots[1]

    def refusals(self) -> dict[str, str]:
        """``{worker: why}`` for each worker of the cluster that does not grade."""
        verdicts = self.client.run(worker_verdict, on_error="return")
        return {address: (verdict["why"] if isinstance(verdict, dict) else f"{type(verdict).__name__}: {verdict}")
                for address, verdict in verdicts.items()
                if not (isinstance(verdict, dict) and verdict["grades"])}

    def _wait_for_graders(self) -> int:
        """The grading workers, once there is one; SystemExit, with every worker's reason, after :data:`PATIENCE`."""
        deadline = time.monotonic() + PATIENCE
        while (slots := self.slots(fresh=True)) == 0:
            if time.monotonic() > deadline:
                self._give_up()
            time.sleep(1)
        return slots

    def _give_up(self) -> None:
        refusals = self.refusals()
        why = "".join(f"\n  {worker}: {reason}" for worker, reason in sorted(refusals.items()))
        raise SystemExit(f"no worker of the Dask cluster at {self.where} can grade after {PATIENCE:.0f} s "
                         f"({len(refusals)} worker(s) connected){':' if why else ''}{why}")

    def results(self, todo: list[Any], files: Callable[[Any], dict[str, bytes]],
                execute: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
        """``(task, result)`` for each task of ``todo`` as it finishes; a result with ``"error"`` is a failure.
        ``files(task)``: the files the task carries, read when it is sent (at most :data:`AHEAD` tasks per grading
        worker are in flight)."""
        for worker, why in sorted(self.refusals().items()):
            print(f"WARNING: Dask worker {worker} does not grade: {why}", flush=True)
        course = None if self.cluster is not None else _course_digest()
        queue, suspects = deque(todo), deque[Any]()
        in_flight: dict[Any, tuple[Any, bool]] = {}  # future: (task, graded alone)

        def submit(task: Any, alone: bool) -> None:
            key = f"grade-{task.student}-{task.assignment}-{os.urandom(4).hex()}"
            future = self.client.submit(self.task, task, files(task), execute, course, key=key, pure=False,
                                        resources={RESOURCE: 1})
            in_flight[future] = (task, alone)

        without: float | None = None  # since when tasks are in flight and no worker grades
        while queue or suspects or in_flight:
            if not in_flight and (queue or suspects):
                self._wait_for_graders()
            if suspects and not in_flight:
                submit(suspects.popleft(), alone=True)
            elif not suspects:
                slots = max(1, self.slots())
                while queue and len(in_flight) < AHEAD * slots:
                    submit(queue.popleft(), alone=False)
            try:
                done, _ = wait(list(in_flight), timeout=5, return_when="FIRST_COMPLETED")
            except TimeoutError:
                if self.slots():
                    without = None
                elif without is None:
                    without = time.monotonic()
                elif time.monotonic() - without > PATIENCE:
                    self._give_up()
                continue
            for future in done:
                task, alone = in_flight.pop(future)
                if future.status == "error" and isinstance(future.exception(), KilledWorker) and not alone:
                    suspects.append(task)  # maybe only beside the task that killed the workers: once more, alone
                    continue
                yield task, _result(future)

    def cancel(self) -> None:
        """Drop the tasks in flight (a worker finishes the one it grades; its result is not taken)."""
        with contextlib.suppress(Exception):
            self.client.cancel(list(self.client.futures), force=True)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=20)


def _result(future: Any) -> dict[str, Any]:
    try:
        return future.result()
    except KilledWorker:
        return {"error": "its grading worker died while grading it alone (out of memory, or killed): a kernel's "
                         "limits do not cover the grading process itself"}
    except Exception as error:  # noqa: BLE001 - a failed task fails one submission, not the class
        return {"error": f"{type(error).__name__}: {error}"}


def write_results(grading: Path, task: Any, result: dict[str, Any]) -> None:
    """Put a graded task's autograded notebook(s) and feedback in the grading folder (replacing an older grading's),
    with the MathJax copy its pages share (``feedback/mathjax/``, written here rather than carried by every task)."""
    from .nbgrader_plugins import FeedbackExporter

    for step in ("autograded", "feedback"):
        shutil.rmtree(grading / step / task.student / task.assignment, ignore_errors=True)
    for name, data in result.pop("files").items():
        step, student, assignment, *rest = Path(name).parts
        if (step not in ("autograded", "feedback") or (student, assignment) != (task.student, task.assignment)
                or not rest or ".." in rest):
            raise ValueError(f"a grading worker returned a file outside its submission's folders: {name}")
        path = grading / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if (grading / "feedback" / task.student / task.assignment).is_dir():
        FeedbackExporter.write_shared_mathjax(grading / "feedback" / task.student / task.assignment)
