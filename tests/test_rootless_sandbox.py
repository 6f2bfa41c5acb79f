"""The sandbox built by an ordinary user (rootless: user namespaces) holds as it does under root.

Two parts:

* **the kernel's rights**, checked in a sandbox built here, in whatever mode this user gets (root, or rootless
  for an ordinary user): no capability left, no unmount or remount even without the system-call filter, a
  read-only system, and its memory and process limits enforced;
* **the attacks, as an ordinary user**: run as root, the last test creates a throwaway user and runs, as that
  user, a named subset of the attack suites (``tests/test_attacks.py``, ``tests/test_attacks_around_the_kernel.py``)
  and the checks above, in a rootless sandbox; each must pass, none be skipped, and every grading result must say
  that its kernel was sandboxed rootless.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader_tests.engine import sandbox, syscalls
from grader_tests.engine.sandbox import Cgroup, Limits, unavailable

ROOT = Path(__file__).resolve().parents[1]
ROOTLESS_RUN = "VISUALIZING_CNNS_ROOTLESS_RUN"
"""Set in the run as the throwaway user: its sandbox must be rootless."""

ATTACKS = (
    "tests/test_attacks.py::test_every_attack_ends_graded_with_exactly_its_expected_points",
    "tests/test_attacks.py::test_the_grader_was_out_of_reach_and_nothing_outside_the_sandbox_was_written",
    "tests/test_attacks.py::test_tampered_records_are_flagged_to_the_instructor",
    "tests/test_attacks.py::test_no_kernel_process_and_no_network_outlived_grading",
    "tests/test_attacks.py::test_a_kernel_out_of_memory_or_deaf_to_interrupts_keeps_what_ran_before_with_the_reason",
    "tests/test_attacks_around_the_kernel.py::test_every_attack_ends_graded_with_exactly_its_expected_points",
    "tests/test_attacks_around_the_kernel.py::test_the_kernel_holds_nothing_of_the_grader",
    "tests/test_attacks_around_the_kernel.py::test_no_socket_but_unix_sockets_and_no_system_call_out_of_the_sandbox",
)
"""What the throwaway user runs of the attack suites: reading the judges, other files and the grader's
environment, forged and flooded records, writing where grades live, the network, processes that outlive the
kernel, a memory hog, system calls out of the sandbox."""

KERNEL_RIGHTS = (
    "tests/test_rootless_sandbox.py::test_the_mode_is_the_one_this_user_gets",
    "tests/test_rootless_sandbox.py::test_the_kernel_holds_no_capability_and_cannot_unmount_or_remount",
    "tests/test_rootless_sandbox.py::test_a_memory_hog_and_a_fork_bomb_are_stopped",
)

sandboxed = pytest.mark.skipif(bool(unavailable()), reason=f"no sandbox here: {unavailable()}")

# Run in the kernel: JSON lines written to its standard output, the kernel's log (outside the sandbox).
RIGHTS = r'''
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(result):
    return "ok" if result == 0 else errno.errorcode[ctypes.get_errno()]
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
facts = {key: status[key].split()[0] for key in ("Uid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")}
REMOUNT, BIND, RDONLY, DETACH = 0x20, 0x1000, 0x1, 0x2
facts["umount /usr"] = call(libc.umount2(b"/usr", DETACH))
facts["umount /"] = call(libc.umount2(b"/", DETACH))
facts["remount / writable"] = call(libc.mount(b"none", b"/", None, ctypes.c_ulong(REMOUNT | BIND), None))
facts["remount /usr writable"] = call(libc.mount(b"none", b"/usr", None, ctypes.c_ulong(REMOUNT | BIND), None))
facts["mount tmpfs on /usr"] = call(libc.mount(b"tmpfs", b"/usr", b"tmpfs", ctypes.c_ulong(0), None))
facts["new user namespace"] = call(libc.unshare(0x10000000))
try:
    open("/usr/written-by-the-kernel", "w")
    facts["write /usr"] = "ok"
except OSError as error:
    facts["write /usr"] = errno.errorcode[error.errno]
os.write(1, (json.dumps(facts) + "\n").encode())
'''

LIMITS = r'''
import json, os, time
facts = {}
children = []
for _ in range(100):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
facts["forked"] = len(children)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
os.write(1, (json.dumps(facts) + "\n").encode())
try:
    hog = bytearray(b"x") * (1 << 30)  # 1 GB, written
    facts["hog"] = "allocated"
except MemoryError:
    facts["hog"] = "MemoryError"
os.write(1, (json.dumps(facts) + "\n").encode())
'''


def _in_sandbox(folder: Path, code: str, limits: Limits, *, seccomp: bool = True) -> tuple[list[dict], dict]:
    """Run ``code`` as a kernel would run (forked, then :func:`sandbox.enter`, with a cgroup where this user
    gets one), without the system-call filter if not ``seccomp``; the JSON lines it printed and its exit report."""
    kernel = folder / "k-1"
    kernel.mkdir(mode=0o700)
    (folder / "work").mkdir()
    cgroup = Cgroup.create(f"rights-{uuid.uuid4().hex[:8]}", limits)
    sandbox.cap_folder(str(kernel))
    try:
        pid = os.fork()
        if pid == 0:
            code_ = 0
            try:
                if not seccomp:
                    syscalls.available = lambda: "off for this test"
                sandbox.enter(str(kernel), str(folder / "work"), {}, limits, cgroup)
                exec(code, {})  # noqa: S102 - the kernel's code, as a notebook cell runs it
            except BaseException:  # noqa: BLE001 - into the kernel's log, or pytest's output before the sandbox
                traceback.print_exc()
                code_ = 1
            finally:
                sys.stdout.flush()
                os._exit(code_)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        log = Path(sandbox.log_path(str(kernel))).read_text()
        report = json.loads(Path(sandbox.exit_report_path(str(kernel))).read_text())
        return [json.loads(line) for line in log.splitlines() if line.startswith("{")], report
    finally:
        sandbox.release_folder(str(kernel))
        for _ in range(50):
            if cgroup is None or cgroup.remove():
                break
            time.sleep(0.1)


def test_the_mode_is_the_one_this_user_gets():
    why = unavailable()
    report = sandbox.report(why)
    if os.environ.get(ROOTLESS_RUN):
        assert os.geteuid() != 0 and why is None, why
    if why is not None:
        assert report == {"on": False, "why": why, "mode": None, "limits": None}
        return
    assert report == {"on": True, "why": None, "mode": "root" if os.geteuid() == 0 else "rootless",
                      "limits": "cgroup" if Cgroup.available() else "setrlimit"}


@sandboxed
def test_the_kernel_holds_no_capability_and_cannot_unmount_or_remount(tmp_path):
    """Without the system-call filter, which would deny these calls first: the kernel's own rights."""
    (facts,), report = _in_sandbox(tmp_path, RIGHTS, Limits(), seccomp=False)
    assert report["exit"] == 0
    assert int(facts["Uid"]) != 0 and facts["NoNewPrivs"] == "1"
    assert {key: int(facts[key], 16) for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)
    denied = ("umount /usr", "umount /", "remount / writable", "remount /usr writable", "mount tmpfs on /usr")
    assert {key: facts[key] for key in denied} == dict.fromkeys(denied, "EPERM")
    assert facts["write /usr"] == "EROFS"
    if sandbox.mode() == "rootless":  # no user namespace below its own (as root, the filter alone denies them)
        assert facts["new user namespace"] == "ENOSPC"


@sandboxed
def test_a_memory_hog_and_a_fork_bomb_are_stopped(tmp_path):
    """256 MB and 32 processes: the hog is refused its memory (``setrlimit``) or killed (a cgroup); the fork bomb
    stops near 32 processes (in a rootless sandbox, its user namespace counts its own processes only)."""
    lines, report = _in_sandbox(tmp_path, LIMITS, Limits(memory_mb=256, processes=32))
    assert 20 <= lines[0]["forked"] < 32, lines
    if len(lines) == 2:
        assert lines[1]["hog"] == "MemoryError"
    else:  # the cgroup's OOM killer ended the kernel
        assert report["oom_kills"] > 0, report


# --- the attacks, as an ordinary user --------------------------------------------------------------------------


def _why_not_as_an_ordinary_user() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux only"
    if os.geteuid() != 0:
        return "creates a throwaway user: run as root (the sandbox under test then runs as that user)"
    for tool in ("useradd", "userdel", "setpriv", "unshare"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian's passwd and util-linux)"
    if off := sandbox._user_namespaces_off():
        return f"unprivileged user namespaces are off here ({off})"
    return None


@contextlib.contextmanager
def _throwaway_user() -> Iterator[pwd.struct_passwd]:
    name = f"vcnn-rootless-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        user = pwd.getpwnam(name)
        for _ in range(50):  # what it started: grading leaves nothing behind, so normally nothing
            left = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == user.pw_uid]
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        subprocess.run(["userdel", name], check=True)


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _unreachable() -> dict[str, list[str]]:
    """The folders an ordinary user cannot enter (``/root`` where pyenv installed Python), each with the paths
    under it that the tests need: the course, its virtual environment and the Python it was made from."""
    needed = {os.path.realpath(p) for p in (ROOT, sys.prefix, sys.base_prefix, sys.exec_prefix)}
    hidden: dict[str, list[str]] = {}
    for path in sorted(needed):
        parts = Path(path).parts
        for depth in range(2, len(parts)):
            folder = str(Path(*parts[:depth]))
            if not os.stat(folder).st_mode & 0o001:
                hidden.setdefault(folder, []).append(str(Path(*parts[:depth + 1])))
                break
    return {folder: sorted(set(paths)) for folder, paths in hidden.items()}


def _as_user(user: pwd.struct_passwd, aside: Path, argv: list[str], env: dict[str, str]) -> str:
    """Run ``argv`` in the course's folder as ``user``, in a mount namespace of its own where the folders it
    could not enter hold only what the tests need (the host's permissions stay as they are); its output."""
    script = ["set -e"]
    for i, (folder, paths) in enumerate(_unreachable().items()):
        for j, path in enumerate(paths):
            script += [f"mkdir -p {aside}/{i}-{j}", f"mount --bind {shlex.quote(path)} {aside}/{i}-{j}"]
        script.append(f"mount -t tmpfs -o mode=0755,size=1m tmpfs {shlex.quote(folder)}")
        for j, path in enumerate(paths):
            script += [f"mkdir -p {shlex.quote(path)}", f"mount --bind {aside}/{i}-{j} {shlex.quote(path)}"]
    variables = " ".join(shlex.quote(f"{key}={value}") for key, value in env.items())
    script.append(f"exec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups -- "
                  f"env -i {variables} \"$@\"")
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script), "sh",
                             *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=1800, check=False)
    return result.stdout


@pytest.mark.skipif(bool(_why_not_as_an_ordinary_user()), reason=str(_why_not_as_an_ordinary_user()))
def test_the_attacks_fail_against_the_rootless_sandbox_as_under_root(tmp_path):
    with _throwaway_user() as user:
        home = Path(tempfile.mkdtemp(prefix="rootless-home-"))
        try:
            (home / "tmp").mkdir()
            for path in (home, home / "tmp"):
                os.chown(path, user.pw_uid, user.pw_gid)
            env = {"HOME": str(home), "TMPDIR": str(home / "tmp"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
                   "PYTHONDONTWRITEBYTECODE": "1", ROOTLESS_RUN: "1",
                   **{key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ}}
            argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA",
                    f"--basetemp={home / 'tests'}", f"--junitxml={home / 'results.xml'}", *KERNEL_RIGHTS, *ATTACKS]
            output = _as_user(user, tmp_path, argv, env)
            assert (home / "results.xml").exists(), output[-5000:]
            outcomes = _outcomes(home / "results.xml")
            assert outcomes == dict.fromkeys(KERNEL_RIGHTS + ATTACKS, "passed"), output[-5000:]
            states = list((home / "tests").rglob("state.json"))
            assert len(states) == 2, states  # the two attack suites' gradings
            sandboxes = [entry["sandbox"] for state in states for entry in json.loads(state.read_text()).values()]
            assert len(sandboxes) >= 19 and all(s["on"] and s["mode"] == "rootless" for s in sandboxes), sandboxes
            assert {s["limits"] for s in sandboxes} <= {"cgroup", "setrlimit"}
        finally:
            shutil.rmtree(home, ignore_errors=True)


def _outcomes(junit: Path) -> dict[str, str]:
    """``{"path::test": "passed" | "failed" | "error" | "skipped"}`` from pytest's JUnit report."""
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/") + ".py"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[f"{path}::{case.get('name')}"] = kinds[0].replace("failure", "failed") if kinds else "passed"
    return outcomes
