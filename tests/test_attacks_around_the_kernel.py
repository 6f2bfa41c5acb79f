"""Attacks around the kernel, where the grader meets what a submission carries: each is a submission of
``02_parameters`` graded by the real pipeline, and each test asserts its exact grade and outcome.

One class of attack per category: read the grader's environment and paths (frames, ``gc``, the kernel's own
memory, ``/proc``), walk around the output caps (display updates, errors, metadata, many cells), reach the host
through the system calls a namespace does not cover, slow the neighbours down (a CPU hog), and a record that
inflates in the judge. An honest student graded beside them keeps full marks.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import nbformat
import pytest
from conftest import grading_in

from grader_tests.engine import grade as G
from grader_tests.engine.fabricated_class import graded_tests, perfect
from grader_tests.engine.nbgrader_plugins import FLAGGED
from grader_tests.engine.sandbox import Cgroup, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=f"no sandbox here: {unavailable()}")

A = "02_parameters"
TESTS = graded_tests(A)
PLANTED = "VISUALIZING_CNNS_PLANTED_SECRET"
MARK = "vcnnmark"  # the grading folder's name starts with it

# Looks for the planted secret (``VCNNPLANT-`` and 32 hex digits) and the grading folder's name (``vcnnmark`` and
# digits) wherever a kernel can look: its environment, every frame and object, /proc files and its whole memory
# (read with ctypes: /proc/self/mem is closed to a kernel, which is not dumpable once it has changed user).
# The patterns are built so that the cell's own text never matches them.
PEEK = r'''
import gc, os, re, sys
SECRET = re.compile(b"VCNNPLANT" + b"-[0-9a-f]{32}")
FOLDER = re.compile(b"vcnn" + b"mark[0-9]")
FOUND = set()
def _look(where, data):
    data = data if isinstance(data, bytes) else str(data).encode("utf-8", "replace")
    for name, pattern in (("secret", SECRET), ("folder", FOLDER)):
        if pattern.search(data):
            FOUND.add(f"{name} in {where}")
_look("os.environ", repr(dict(os.environ)))
for frame in sys._current_frames().values():
    while frame is not None:
        _look("frames", repr(frame.f_locals)[:10**6])
        frame = frame.f_back
for obj in gc.get_objects():
    if isinstance(obj, dict):
        _look("gc", " ".join(v for v in (*obj.keys(), *obj.values()) if isinstance(v, str))[:10**6])
for name in ("environ", "cmdline", "mountinfo", "maps", "cgroup"):
    try:
        _look("/proc/self/" + name, open("/proc/self/" + name, "rb").read())
    except OSError:
        pass
import ctypes
for line in open("/proc/self/maps").read().splitlines():  # its whole memory: heap, stacks, anonymous maps
    fields = line.split()
    anonymous = len(fields) < 6 or fields[5] in ("[heap]", "[stack]") or fields[4] == "0"
    if not fields[1].startswith("r") or not anonymous or "[v" in line:
        continue
    start, end = (int(part, 16) for part in fields[0].split("-"))
    for offset in range(start, end, 1 << 26):
        _look("memory", ctypes.string_at(offset, min(1 << 26, end - offset)))
print("FOUND:", sorted(FOUND))
'''

PLANT_IN_KERNEL = '_secret, _folder = "VCNN" + "PLANT-" + "ab" * 16, "/x/vcnn" + "mark7/y"  # what PEEK must find'

SYSTEM_CALLS = r'''
import ctypes, errno, os, socket
libc = ctypes.CDLL(None, use_errno=True)
ALLOWED = []
for name, family, kind in (("AF_INET", 2, 1), ("AF_INET6", 10, 1), ("AF_VSOCK", 40, 1), ("AF_NETLINK", 16, 3),
                           ("AF_PACKET", 17, 3), ("AF_ALG", 38, 5)):
    try:
        socket.socket(family, kind).close()
        ALLOWED.append(name)
    except OSError:
        pass
CALLS = {"unshare(CLONE_NEWUSER)": (272, 0x10000000), "bpf": (321, 0, 0, 0), "perf_event_open": (298, 0, 0, -1, -1, 0),
         "userfaultfd": (323, 0), "keyctl": (250, 0, 0), "ptrace(PTRACE_TRACEME)": (101, 0, 0, 0, 0),
         "io_uring_setup": (425, 1, 0), "mount": (165, 0, 0, 0, 0, 0)}
for name, (number, *args) in CALLS.items():
    if libc.syscall(number, *args) >= 0 or ctypes.get_errno() not in (errno.EPERM, errno.ENOSYS):
        ALLOWED.append(f"{name} ({os.strerror(ctypes.get_errno())})")
print("ALLOWED:", ALLOWED)
'''

# One display shown 200 times and then updated with 1.9 MB (200 copies), an error of 30 MB, a display with 30 MB of
# metadata, and twelve cells of 1.9 MB each: 500 MB of notebook without the budget.
UPDATE_ONE_DISPLAY = r'''
from IPython.display import display, update_display
for _ in range(200):
    display({"text/plain": "tick"}, raw=True, display_id="one")
update_display({"text/plain": "x" * 1_900_000}, raw=True, display_id="one")
'''
HUGE_ERROR = 'raise ValueError("x" * 30_000_000)'
HUGE_METADATA = r'''
from IPython.display import publish_display_data
publish_display_data({"text/plain": "small"}, metadata={"huge": "m" * 30_000_000})
'''
BIG_CELL = 'from IPython.display import display\ndisplay({"image/png": "A" * 1_900_000}, raw=True)'

CPU_HOG = r'''
import os, time
for _ in range(120):
    if os.fork() == 0:
        while True:
            pass
time.sleep(40)
'''


def _record_bomb() -> str:
    """A cell that publishes, as the conv2d check's record, a torch.save archive re-packed with DEFLATE: 400 KB
    that would be 300 MB once loaded."""
    return r'''
import base64, io, zipfile, torch
from IPython.display import publish_display_data
from grader_tests.kernel.record import RECORD_MIME
def _bomb(info):
    if "check_conv2d_params(" in info.raw_cell:
        plain = io.BytesIO()
        torch.save({"check": "parameters.check_conv2d_params", "observations": {"t": torch.zeros(75_000_000)}}, plain)
        packed = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(plain.getvalue())) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as out:
            for entry in source.infolist():
                out.writestr(entry.filename, source.read(entry))
        for _ in range(6):
            publish_display_data({RECORD_MIME: base64.b64encode(packed.getvalue()).decode()})
get_ipython().events.register("pre_run_cell", _bomb)
'''


def _with_cells(*sources: str) -> nbformat.NotebookNode:
    """The perfect notebook with the student's own ``sources`` as cells before its first graded test."""
    nb = perfect(A)
    first_test = next(i for i, cell in enumerate(nb.cells) if cell.metadata.get("nbgrader", {}).get("grade_id") in TESTS)
    for offset, source in enumerate(sources):
        nb.cells.insert(first_test + offset, nbformat.v4.new_code_cell(source))
    return nb


def _class() -> dict[str, tuple[nbformat.NotebookNode, dict[str, float]]]:
    full = dict(TESTS)
    return {
        "honest": (perfect(A), full),
        "peeks": (_with_cells(PEEK), full),
        "peekscontrol": (_with_cells(PLANT_IN_KERNEL, PEEK), full),
        "systemcalls": (_with_cells(SYSTEM_CALLS), full),
        "outputs": (_with_cells(UPDATE_ONE_DISPLAY, HUGE_ERROR, HUGE_METADATA, *[BIG_CELL] * 12), full),
        "recordbomb": (_with_cells(_record_bomb()), {**full, "test_conv2d_params": 0.0}),
    }


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    secret = f"VCNNPLANT-{uuid.uuid4().hex}"
    patch = pytest.MonkeyPatch()
    patch.setenv(PLANTED, secret)  # in the grading process and its workers, as an instructor's token would be
    try:
        with grading_in(tmp_path_factory.mktemp(MARK)) as grading:
            submissions = tmp_path_factory.mktemp("submissions")
            for student, (nb, _) in _class().items():
                (submissions / student / A).mkdir(parents=True)
                nbformat.write(nb, submissions / student / A / "parameters.ipynb")
            state = G.grade(submissions, workers=2, timeout=60, memory_mb=2048)
            rows = {row["student"]: row for row in G.write_reports(state)}
            yield state, rows, grading
    finally:
        patch.undo()


def _feedback(grading: Path, student: str) -> str:
    return (grading / "feedback" / student / A / "parameters.html").read_text()


def test_every_attack_ends_graded_with_exactly_its_expected_points(attacked):
    state, rows, _ = attacked
    assert {key: entry["status"] for key, entry in state.entries.items()} == {f"{s}/{A}": "graded" for s in _class()}
    points = {student: {name: float(rows[student][f"{A}/{name}"] or 0) for name in TESTS} for student in _class()}
    assert points == {student: expected for student, (_, expected) in _class().items()}


def test_the_kernel_holds_nothing_of_the_grader(attacked):
    _, _, grading = attacked
    assert MARK in str(grading) and os.environ[PLANTED].startswith("VCNNPLANT-")  # the premises: both were there
    assert "FOUND: []" in _feedback(grading, "peeks")
    control = _feedback(grading, "peekscontrol")  # the same search finds what a kernel does hold
    assert all(f"{what} in {where}" in control for what in ("secret", "folder") for where in ("gc", "memory"))


def test_no_socket_but_unix_sockets_and_no_system_call_out_of_the_sandbox(attacked):
    assert "ALLOWED: []" in _feedback(attacked[2], "systemcalls")


def test_a_graded_notebook_and_its_page_stay_under_10_mb_whatever_the_output_path(attacked):
    _, _, grading = attacked
    notebook = grading / "autograded" / "outputs" / A / "parameters.ipynb"
    page = grading / "feedback" / "outputs" / A / "parameters.html"
    assert notebook.stat().st_size < 10_000_000 and page.stat().st_size < 10_000_000
    text = page.read_text()
    assert "output dropped: over the 6 MB a notebook may show" in text
    assert "characters cut" in text  # the 30 MB error, kept as an error with its start and end
    nb = nbformat.read(notebook, as_version=4)
    assert max(len(str(out.get("metadata", {}))) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.outputs) < 10_000


def test_a_record_that_would_inflate_is_refused_unread_and_flagged(attacked):
    state, *_ = attacked
    notes = state.entries[f"recordbomb/{A}"]["notes"]
    assert [note for note in notes if note.startswith(FLAGGED) and "test_conv2d_params" in note]


def _cpu_quota() -> bool:
    from grader_tests.engine.sandbox import Limits

    group = Cgroup.create(f"probe-cpu-{os.getpid()}", Limits())
    try:
        return group is not None and group.cpu_limited
    finally:
        if group is not None:
            group.remove()


@pytest.mark.skipif(not _cpu_quota(), reason="this host offers no cgroup CPU controller")
def test_a_cpu_hog_does_not_slow_the_submission_graded_beside_it(tmp_path):
    """120 busy processes in one kernel: the honest kernel beside it keeps its pace (within 2x of alone).

    Each worker first grades a warm-up submission (its fork server's start is not the hog's doing), then the
    honest one, alone or while the other worker grades the hog."""

    def seconds(students: dict[str, nbformat.NotebookNode], folder: Path, workers: int) -> float:
        for student, nb in students.items():
            (folder / "class" / student / A).mkdir(parents=True)
            nbformat.write(nb, folder / "class" / student / A / "parameters.ipynb")
        with grading_in(folder / "grading"):
            state = G.grade(folder / "class", workers=workers, timeout=60)  # in order of the students' names
        assert state.entries[f"b-honest/{A}"]["status"] == "graded"
        return state.entries[f"b-honest/{A}"]["seconds"]["autograde"]

    warm = {f"a-warm{i}": perfect(A) for i in range(2)}
    alone = seconds({**warm, "b-honest": perfect(A)}, tmp_path / "alone", workers=1)
    beside = seconds({**warm, "b-hog": _with_cells(CPU_HOG), "b-honest": perfect(A)}, tmp_path / "beside", workers=2)
    assert beside < 2 * alone + 1.0, (alone, beside)  # + 1 s: a start-up jitter on a busy 2-core machine
