"""Grading on a Dask cluster of separate processes: a scheduler and workers started with ``dask scheduler`` and
``dask worker --preload grader_tests.engine.cluster`` on the loopback, as on separate machines (no file system is
shared through the tasks: each carries its submission and brings back its results).

Each process is a plain process on 127.0.0.1, not in a network namespace of its own: ``unshare -n`` would give each
its own loopback, and they could not reach one another.

- part of the fabricated class, graded through two workers, one of them killed with ``kill -9`` as soon as it grades:
  the expected grades (those the local grading gives, tests/test_grading.py), every submission merged exactly once;
- a worker whose sandbox is unavailable refuses to grade: the other grades all; alone, it makes ``make grade`` stop
  with its reason;
- the grading process keeps up with many workers: ``state.json`` of 10,000 students takes a result in a line.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import grading_in

from grader_tests.engine import cluster as C
from grader_tests.engine import grade as G
from grader_tests.engine.fabricated_class import build_class, graded_tests
from grader_tests.engine.sandbox import unavailable

ROOT = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).parent / "dask"
ASSIGNMENT = "02_parameters"
STUDENTS = ("perfect", "untouched", "rewrotetest", "patchipython")  # a full score, none, a restored test, a cheat


class Cluster:
    """A scheduler and its workers, each a process of its own on the loopback."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.workers = folder, {}
        self.file = folder / "scheduler.json"
        self.scheduler = self._start("scheduler", [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                                   "--no-dashboard", "--scheduler-file", str(self.file)], {})
        deadline = time.monotonic() + 120
        while not self.file.exists():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.5)

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the process's, closed with it
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text()[-3000:]

    def start_worker(self, name: str, **env: str) -> None:
        if unavailable() and C.UNAVAILABLE_FOR_TESTS not in env:
            env["VISUALIZING_CNNS_NO_SANDBOX"] = "1"  # no sandbox on this machine: allowed for the tests
        self.workers[name] = self._start(name, [
            str(DASK), "worker", "--scheduler-file", str(self.file), "--name", name, "--host", "127.0.0.1",
            "--nthreads", "1", "--no-nanny", "--no-dashboard", "--preload", C.PRELOAD], env)

    def client(self):
        from distributed import Client

        return Client(scheduler_file=str(self.file), timeout=60)

    def wait_for(self, names: set[str]) -> dict[str, str]:
        """``{name: address}`` once every worker of ``names`` has joined."""
        with self.client() as client:
            deadline = time.monotonic() + 240
            while True:
                joined = {info["name"]: address for address, info in client.scheduler_info()["workers"].items()}
                if names <= set(joined):
                    return joined
                dead = [name for name in names if self.workers[name].poll() is not None]
                assert not dead and time.monotonic() < deadline, [self.log(name) for name in names]
                time.sleep(1)

    def kill(self, name: str) -> None:
        self.workers[name].send_signal(signal.SIGKILL)
        self.workers[name].wait()

    def close(self) -> None:
        for process in [*self.workers.values(), self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers.values(), self.scheduler]:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    running = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fabricated")
    students = build_class(folder / "all")
    for student in STUDENTS:
        shutil.copytree(folder / "all" / student / ASSIGNMENT, folder / "class" / student / ASSIGNMENT)
    return folder / "class", {student: students[student].expected[ASSIGNMENT] for student in STUDENTS}


def _kill_when_grading(cluster: Cluster, name: str, killed: threading.Event) -> None:
    """Kill worker ``name`` with SIGKILL as soon as it grades a submission (a task takes a second or more: its
    kernel starts and runs the graded cells)."""
    with cluster.client() as client:
        while not killed.is_set():
            info = client.scheduler_info()["workers"]
            address = next((address for address, worker in info.items() if worker["name"] == name), None)
            if address and client.processing([address]).get(address):
                time.sleep(0.2)  # into its grading
                cluster.kill(name)
                killed.set()
            time.sleep(0.05)


def test_a_class_graded_on_two_workers_one_killed_gets_its_grades_each_merged_once(
        cluster, fabricated, tmp_path, monkeypatch):
    submissions, expected = fabricated
    cluster.start_worker("stays")
    cluster.start_worker("killed")
    cluster.wait_for({"stays", "killed"})
    merged = Counter()
    merge = G.merge
    monkeypatch.setattr(G, "merge", lambda main, scores, assignment, student: (
        merged.update([student]), merge(main, scores, assignment, student)))
    killed = threading.Event()
    killer = threading.Thread(target=_kill_when_grading, args=(cluster, "killed", killed), daemon=True)
    killer.start()
    with grading_in(tmp_path / "grading"):
        state = G.grade(submissions, timeout=30, scheduler=_address(cluster))
        rows = {row["student"]: row for row in G.write_reports(state)}
    assert killed.is_set(), "the worker was never seen grading"
    killed.set()
    assert {key: entry["status"] for key, entry in state.entries.items()} == {
        f"{student}/{ASSIGNMENT}": "graded" for student in STUDENTS}
    assert state.graded_now == len(STUDENTS) and merged == Counter(STUDENTS)
    actual = {student: sum(float(rows[student][f"{ASSIGNMENT}/{cell}"] or 0) for cell in graded_tests(ASSIGNMENT))
              for student in STUDENTS}
    assert actual == expected
    for student in STUDENTS:  # the results came back: the graded notebook and its feedback
        assert (tmp_path / "grading" / "feedback" / student / ASSIGNMENT / "parameters.html").stat().st_size > 0
        assert (tmp_path / "grading" / "autograded" / student / ASSIGNMENT / "parameters.ipynb").exists()
    assert (tmp_path / "grading" / "feedback" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000  # shared


def test_a_worker_without_a_sandbox_refuses_to_grade_and_alone_stops_the_grading(
        cluster, fabricated, tmp_path, monkeypatch, capsys):
    submissions, expected = fabricated
    cluster.start_worker("refuses", **{C.UNAVAILABLE_FOR_TESTS: "simulated for the test"})
    joined = cluster.wait_for({"stays", "refuses"})
    one = tmp_path / "one"
    shutil.copytree(submissions / "perfect", one / "perfect")
    with grading_in(tmp_path / "grading"):
        state = G.grade(one, timeout=30, scheduler=_address(cluster))
    assert state.entries[f"perfect/{ASSIGNMENT}"]["worker"] == joined["stays"]
    assert f"Dask worker {joined['refuses']} does not grade: sandbox unavailable: simulated for the test" in (
        capsys.readouterr().out)
    cluster.kill("stays")
    monkeypatch.setattr(C, "PATIENCE", 5.0)
    with grading_in(tmp_path / "again"):
        with pytest.raises(SystemExit, match=r"no worker of the Dask cluster at tcp://\S+ can grade after 5 s \(1 "
                                             r"worker\(s\) connected\):\n  tcp://\S+: sandbox unavailable: simulated"):
            G.grade(one, timeout=30, scheduler=_address(cluster))


def _address(cluster: Cluster) -> str:
    import json

    return json.loads(cluster.file.read_text())["address"]


def test_the_state_of_a_large_class_records_each_result_in_a_line_and_survives_a_cut_one(tmp_path):
    """10,000 students x 14 notebooks: a result recorded in milliseconds (the whole file took 3.3 s), a line cut short
    by a crash ignored, the journal folded into state.json when read again."""
    state = G.State(tmp_path / "state.json")
    sandbox = {"on": True, "why": None, "mode": "root", "limits": "cgroup", "seccomp": None}
    for i in range(140_000):
        state.entries[f"student{i // 14}/{i % 14:02d}"] = {"digest": "d" * 64, "status": "graded", "notes": [],
                                                            "sandbox": sandbox}
    state.save()
    started = time.perf_counter()
    for i in range(100):
        state.record(G.Task(f"new{i}", "02_parameters", "e" * 64, [f"note {i}"]), "graded", sandbox=sandbox)
    assert (time.perf_counter() - started) / 100 < 0.05
    with open(tmp_path / "state.journal", "a") as journal:
        journal.write('["cut/02_parameters", {"digest": "f", "sta')  # a crash in the middle of a line
    again = G.State(tmp_path / "state.json")
    assert len(again.entries) == 140_100 and "cut/02_parameters" not in again.entries
    assert again.entries["new99/02_parameters"]["notes"] == ["note 99"] and again.done(
        G.Task("new99", "02_parameters", "e" * 64))
    assert not (tmp_path / "state.journal").exists()
    assert len(G.State(tmp_path / "state.json").entries) == 140_100
