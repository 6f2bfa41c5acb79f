"""Attacks on the grade, as a student who has read this repository would write them: each is a submission of
``02_parameters`` graded by the real pipeline (``make grade``), and each test asserts the exact grade it gets.

One class of attack per category of the grade-integrity issue: reach the grader's code (imports, introspection,
files, a package submitted beside the notebook), steer the probe (a forged record, an input transformer, silenced
errors), nbgrader's partial credit (an ``execute_result`` in a test cell), write where grades live (other
submissions, gradebooks, state), processes that outlive the kernel, and a kernel that exhausts memory, ignores
interrupts or floods the feedback. An honest student graded alongside keeps full marks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from conftest import grading_in

from grader_tests.engine import grade as G
from grader_tests.engine.fabricated_class import graded_tests, perfect, released, replace
from grader_tests.engine.nbgrader_plugins import FLAGGED
from grader_tests.engine.sandbox import UID_BASE, Cgroup, unavailable

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=f"no sandbox here: {unavailable()}")

ROOT = Path(__file__).resolve().parents[1]
A = "02_parameters"
TESTS = graded_tests(A)  # {"test_get_module_params_num": 3, "test_conv2d_params": 1, "test_linear_params": 1}
ANSWERS = ("get_module_params_num", "conv2d_params", "linear_params")
OOM_KILLED = Cgroup.available()  # a cgroup's OOM killer ends a hog's kernel; else setrlimit makes its cell fail

# The answer cells of an attacker: delegate to whatever reference the attack found, else implement nothing.
DELEGATE = {
    "get_module_params_num": "def get_module_params_num(module):\n    return REF['get_module_params_num'](module)",
    "conv2d_params": "def conv2d_params(*args, **kwargs):\n    return REF['conv2d_params'](*args, **kwargs)",
    "linear_params": "def linear_params(*args, **kwargs):\n    return REF['linear_params'](*args, **kwargs)",
}

REACH_THE_GRADER = '''
import gc, glob, importlib, inspect, os, sys
REF, REACHED = {}, []
def _take(namespace, how):
    for name in ("get_module_params_num", "conv2d_params", "linear_params"):
        if callable(namespace.get(name)) and name not in REF:
            REF[name] = namespace[name]
            REACHED.append(how)
for name in ["grader_tests." + "judges." + "parameters", "grader_tests.judges", "grader_tests.engine.grade"]:
    try:
        _take(vars(importlib.import_module(name)), "import " + name)
    except Exception:
        pass
for module in list(sys.modules.values()):
    if getattr(module, "__name__", "").startswith("grader_tests") and "kernel" not in module.__name__:
        _take(vars(module), "sys.modules " + module.__name__)
for obj in gc.get_objects():
    if inspect.isfunction(obj) and (obj.__module__ or "").startswith("grader_tests.judges"):
        _take({obj.__name__: obj}, "gc " + obj.__module__)
root = os.path.dirname(os.path.dirname(importlib.import_module("grader_tests").__file__))
for path in glob.glob(root + "/grader_tests/**/*.py", recursive=True) + glob.glob(root + "/solutions/*/*.ipynb"):
    if "kernel" not in path:
        try:
            namespace = {}
            exec(compile(open(path).read(), path, "exec"), namespace)
            _take(namespace, "file " + path)
        except Exception:
            pass
print("REACHED:", REACHED)
'''

SHADOW_PACKAGE = {  # files beside the notebook: a fake probe package that records "everything passes"
    "grader_tests/__init__.py": "",
    "grader_tests/kernel/__init__.py": "",
    "grader_tests/kernel/parameters.py": (
        "import base64, io, torch\n"
        "from IPython.display import publish_display_data\n"
        "MIME = 'application/vnd.visualizing-cnns.hidden-check+base64'\n"
        "def _fake(name):\n"
        "    def check(*args):\n"
        "        buffer = io.BytesIO()\n"
        "        torch.save({'check': 'parameters.' + name, 'observations': {'passed': True}}, buffer)\n"
        "        publish_display_data({MIME: base64.b64encode(buffer.getvalue()).decode()})\n"
        "    return check\n"
        "check_get_module_params_num = _fake('check_get_module_params_num')\n"
        "check_conv2d_params = _fake('check_conv2d_params')\n"
        "check_linear_params = _fake('check_linear_params')\n"
    ),
}
USE_SHADOW = f'''
import os, sys
for path, text in {SHADOW_PACKAGE!r}.items():  # written by the kernel: intake grades notebooks only
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").write(text)
for name in [name for name in sys.modules if name.startswith("grader_tests")]:
    del sys.modules[name]
sys.path.insert(0, os.getcwd())
import grader_tests.kernel.parameters
print("SHADOW:", grader_tests.kernel.parameters.__file__.startswith(os.getcwd()))
'''

FORGED_RECORD_FIRST = '''
from IPython.display import publish_display_data
from grader_tests.kernel import parameters as probes
from grader_tests.kernel.record import RECORD_MIME, encode
def _right(i, o, k, bias=True):
    return o * i * k * k + (o if bias else 0)
def _publish_first(info):  # before the test cell runs: a record that would pass, computed on the side
    if "check_conv2d_params(" in info.raw_cell:
        record = encode(probes.check_conv2d_params.name, probes.check_conv2d_params.probe(_right))
        publish_display_data({RECORD_MIME: record, "text/plain": ""})
get_ipython().events.register("pre_run_cell", _publish_first)
def conv2d_params(in_channels, out_channels, kernel_size, bias=True):  # right for the visible 1x1 and 3x3 only
    weights = in_channels * out_channels * (kernel_size ** 2 if kernel_size <= 3 else kernel_size)
    return weights + (out_channels if bias else 0)
'''

FLOOD_OF_RECORDS = '''
from IPython.display import publish_display_data
from grader_tests.kernel import parameters as probes
from grader_tests.kernel.record import RECORD_MIME, encode
def _flood(info):  # twenty copies of a record that would pass, and one of 30 MB
    if "check_conv2d_params(" in info.raw_cell:
        record = encode(probes.check_conv2d_params.name, probes.check_conv2d_params.probe(conv2d_params))
        for _ in range(20):
            publish_display_data({RECORD_MIME: record, "text/plain": ""})
        publish_display_data({RECORD_MIME: "A" * 30_000_000, "text/plain": ""})
get_ipython().events.register("pre_run_cell", _flood)
'''

SILENCE_AND_STRIP = '''
import re
get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)  # no error is ever shown
def _strip_hidden(lines):  # rewrite every later cell: its hidden tests are gone
    text = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", "".join(lines), flags=re.S)
    return text.splitlines(keepends=True)
get_ipython().input_transformers_post.append(_strip_hidden)
'''

EXECUTE_RESULT = '''
get_ipython().set_custom_exc((BaseException,), lambda *args, **kwargs: None)
_scores = iter(["full marks", 99, "7"])
def _claim(result):  # an execute_result in each later cell: nbgrader reads it as the cell's score
    get_ipython().displayhook(next(_scores, "full marks"))
get_ipython().events.register("post_run_cell", _claim)
'''

WRITE_WHERE_GRADES_LIVE = '''
import glob, os
WROTE, READ = [], []
def _mine(path):
    path = os.path.realpath(path)
    return path.startswith(os.path.realpath(os.getcwd())) or path.startswith(("/tmp", "/dev/shm", "/home/student"))
def _candidates():
    for top, folders, files in os.walk("/"):
        folders[:] = [f for f in folders if os.path.join(top, f) not in ("/usr", "/proc", "/sys", "/dev")]
        yield from (os.path.join(top, name) for name in files if name.endswith((".ipynb", ".db", ".json", ".html")))
    yield from glob.glob("../../*/*/*.ipynb") + glob.glob("../*.db") + glob.glob("../../*.db")
for path in _candidates():
    if os.path.isfile(path) and not _mine(path):
        try:
            with open(path, "a") as handle:
                handle.write("PWN" + "ED")
            WROTE.append(path)
        except OSError:
            pass
for path in glob.glob("/work/**/solutions/**/*.ipynb", recursive=True) + glob.glob("/root/**", recursive=True):
    try:
        open(path).read(10)
        READ.append(path)
    except OSError:
        pass
print("WROTE:", WROTE, "READ:", READ)
'''

OUTLIVE = '''
import os, socket, subprocess
subprocess.Popen(["sleep", "600"], start_new_session=True)   # its own session: out of the kernel's group
if os.fork() == 0:                                           # a double-forked daemon
    os.setsid()
    if os.fork() == 0:
        import time
        time.sleep(600)
    os._exit(0)
try:
    socket.create_connection(("pypi.org", 443), timeout=3)
    print("NETWORK: open")
except OSError as error:
    print("NETWORK: closed", type(error).__name__)
'''

FILL_THE_DISK = '''
import os, sys
folder = os.path.dirname(sys.argv[sys.argv.index("-f") + 1])  # its connection file's folder, on the host
filled = 0
try:
    for index in range(200):
        with open(os.path.join(folder, f"fill{index}"), "wb") as handle:
            handle.write(bytes(2**20))
        filled += 1
except OSError:
    pass
print("FILLED MB:", filled)
'''

MEMORY_HOG = "import torch\nhog = []\nwhile True:\n    hog.append(torch.ones(2**25))  # 128 MB a step"
IGNORE_INTERRUPTS = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
BIG_DISPLAY = ("from IPython.display import display\nimport base64, os\n"
               "display({'image/png': base64.b64encode(os.urandom(50_000_000)).decode()}, raw=True)")


def _stubbed(*code: str, delegate: bool = False) -> nbformat.NotebookNode:
    """The released notebook, its first answer cell prefixed with ``code``."""
    nb = released(A)
    if delegate:
        for name in ANSWERS:
            replace(nb, name, DELEGATE[name])
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWERS[0])
    first.source = "\n".join(code) + "\n\n" + first.source
    return nb


def _shadowed() -> nbformat.NotebookNode:
    """Right answers but for conv2d_params beyond the visible kernel sizes, and the fake probes in use."""
    nb = perfect(A)
    first = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWERS[0])
    first.source = USE_SHADOW + "\n\n" + first.source
    conv = FORGED_RECORD_FIRST[FORGED_RECORD_FIRST.index("def conv2d_params"):]
    return replace(nb, "conv2d_params", conv)


def _after(nb: nbformat.NotebookNode, grade_id: str, code: str) -> nbformat.NotebookNode:
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _class() -> dict[str, tuple[nbformat.NotebookNode, dict[str, str], dict[str, float]]]:
    """``{student: (notebook, other files, expected points per graded test cell)}``."""
    zero = dict.fromkeys(TESTS, 0.0)
    conv_zero = {**TESTS, "test_conv2d_params": 0.0}
    return {
        "honest": (perfect(A), {}, dict(TESTS)),
        "reachgrader": (_stubbed(REACH_THE_GRADER, delegate=True), {}, zero),
        "shadowpackage": (_shadowed(), {}, zero),
        "forgedrecord": (replace(perfect(A), "conv2d_params", FORGED_RECORD_FIRST), {}, conv_zero),
        "floodsrecords": (_after(perfect(A), "conv2d_params", FLOOD_OF_RECORDS), {}, conv_zero),
        "stripshidden": (_stubbed(SILENCE_AND_STRIP), {}, zero),
        "executeresult": (_stubbed(EXECUTE_RESULT), {}, zero),
        "writesgrades": (_stubbed(WRITE_WHERE_GRADES_LIVE), {}, zero),
        "outlives": (_stubbed(OUTLIVE), {}, zero),
        "fillsdisk": (_stubbed(FILL_THE_DISK), {}, zero),
        "memoryhog": (_after(perfect(A), "test_get_module_params_num", MEMORY_HOG), {},
                      {**zero, "test_get_module_params_num": 3.0} if OOM_KILLED else dict(TESTS)),
        "ignoresinterrupts": (_after(perfect(A), "test_conv2d_params", IGNORE_INTERRUPTS), {},
                              {**TESTS, "test_linear_params": 0.0}),
        "bigdisplay": (_after(perfect(A), "test_get_module_params_num", BIG_DISPLAY), {}, dict(TESTS)),
    }


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    with grading_in(tmp_path_factory.mktemp("grading")) as grading:
        yield _grade_the_attacks(grading, tmp_path_factory.mktemp("attacks"))


def _grade_the_attacks(grading: Path, submissions: Path) -> tuple:
    expected = {}
    for student, (nb, files, points) in _class().items():
        folder = submissions / student / A
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "parameters.ipynb")
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        expected[student] = points
    honest_bytes = (submissions / "honest" / A / "parameters.ipynb").read_bytes()
    state = G.grade(submissions, workers=2, timeout=8, memory_mb=1024)
    rows = {row["student"]: row for row in G.write_reports(state)}
    return state, rows, expected, grading, submissions, honest_bytes


def _points(row: dict) -> dict[str, float]:
    return {name: float(row[f"{A}/{name}"] or 0) for name in TESTS}


def _feedback(grading: Path, student: str) -> str:
    return (grading / "feedback" / student / A / "parameters.html").read_text()


def test_every_attack_ends_graded_with_exactly_its_expected_points(attacked):
    state, rows, expected, *_ = attacked
    assert {key: entry["status"] for key, entry in state.entries.items()} == dict.fromkeys(
        (f"{student}/{A}" for student in expected), "graded")
    assert {student: _points(rows[student]) for student in expected} == expected


def test_the_grader_was_out_of_reach_and_nothing_outside_the_sandbox_was_written(attacked):
    _, _, _, grading, submissions, honest_bytes = attacked
    assert "REACHED: []" in _feedback(grading, "reachgrader")
    assert "WROTE: [] READ: []" in _feedback(grading, "writesgrades")
    assert (submissions / "honest" / A / "parameters.ipynb").read_bytes() == honest_bytes
    assert (grading / "submitted" / "honest" / A / "parameters.ipynb").read_bytes() == honest_bytes
    assert not [path for path in grading.rglob("*") if path.is_file() and b"PWNED" in path.read_bytes()]


def test_tampered_records_are_flagged_to_the_instructor(attacked):
    state, *_ = attacked
    flagged = {key for key, entry in state.entries.items() for note in entry["notes"] if note.startswith(FLAGGED)}
    assert flagged == {f"forgedrecord/{A}", f"floodsrecords/{A}"}
    shadowed = _feedback(attacked[3], "shadowpackage")
    assert "SHADOW: True" in shadowed and shadowed.count("HiddenTestFailed") == len(TESTS)


def test_no_kernel_process_and_no_network_outlived_grading(attacked):
    assert "NETWORK: closed" in _feedback(attacked[3], "outlives")
    assert "FILLED MB: 0" in _feedback(attacked[3], "fillsdisk")  # its folder on the host holds 1 MB at most
    assert _sandboxed_processes() == []


def test_a_kernel_out_of_memory_or_deaf_to_interrupts_keeps_what_ran_before_with_the_reason(attacked):
    state, *_ = attacked
    hog = " ".join(state.entries[f"memoryhog/{A}"]["notes"])
    assert "ran out of memory" in hog if OOM_KILLED else "allocate memory" in _feedback(attacked[3], "memoryhog")
    assert any("ignored the interrupt" in note for note in state.entries[f"ignoresinterrupts/{A}"]["notes"])


def test_display_output_is_capped(attacked):
    grading = attacked[3]
    page = grading / "feedback" / "bigdisplay" / A / "parameters.html"
    assert page.stat().st_size < 5_000_000 and "output dropped: over the 6 MB a notebook may show" in page.read_text()


def _sandboxed_processes() -> list[int]:
    """Processes that run as a sandbox's user (any left after grading escaped its end): as root, a uid of
    ``UID_BASE`` and above; rootless, this user's processes in a PID namespace below this one's."""
    found, depth = [], _pid_namespace_depth("self")
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            uid = entry.stat().st_uid
            if (uid >= UID_BASE if os.geteuid() == 0 else
                    uid == os.geteuid() and _pid_namespace_depth(entry.name) > depth):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def _pid_namespace_depth(pid: str) -> int:
    """How many PID namespaces, from this one down, number process ``pid`` (``NSpid`` of its status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) - 1
    return 1


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["kill -9", "Ctrl-C"])
def test_stopping_the_grader_leaves_no_process_behind(tmp_path, signum):
    slow = _after(perfect(A), "test_get_module_params_num", "import time\ntime.sleep(120)")
    for student in ("slow1", "slow2"):
        (tmp_path / "class" / student / A).mkdir(parents=True)
        nbformat.write(slow, tmp_path / "class" / student / A / "parameters.ipynb")
    env = {**os.environ, "VISUALIZING_CNNS_GRADING": str(tmp_path / "grading")}
    grader = subprocess.Popen([sys.executable, "-m", "grader_tests.engine.grade", str(tmp_path / "class"),
                               "--workers", "2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until both kernels run (this grader's: other graders may run beside it)
        family = _descendants(grader.pid)
        if len(family & set(_sandboxed_processes())) >= 2:
            break
        time.sleep(0.5)
    others = set(_sandboxed_processes()) - family
    assert family & set(_sandboxed_processes())
    os.kill(grader.pid, signum)
    grader.wait(timeout=120)  # a guard against a hang, not a latency goal: on a loaded 2-core machine this took > 30 s
    deadline = time.monotonic() + 60
    while (_alive(family) or set(_sandboxed_processes()) - others) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(family) == set() and set(_sandboxed_processes()) - others == set()
