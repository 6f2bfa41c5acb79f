"""The sandbox of a grading kernel (Linux, as root or as an ordinary user): what the student's code can see, reach
and use.

The fork server (:mod:`grader_tests.engine.forkserver`) forks one process per kernel, and that process builds
the sandbox around the kernel before any student code runs; nothing is exec'd, so the warm imports survive:

* **its own namespaces**: PID (it sees its own processes only; when its first process dies, every process it
  started dies too), network (no interface but a loopback that is down: no network at all), IPC, UTS and mount;
* **its own file system**: a fresh root that holds, read-only, the system (``/usr``, the few files of ``/etc``
  that programs read), Python and its packages, and the course's runtime: ``helpers`` and
  ``grader_tests/kernel`` (the probes), nothing else of the course. It cannot see ``solutions/``, the judges,
  the grading folder, the gradebooks or any other submission. It can write only to size-capped scratch space in
  memory: a copy of this submission's folder (its working directory, under ``/home/student``), ``/tmp`` and
  ``/dev/shm``, and its own socket folder, through which it talks to the grader (Unix sockets);
* **an unprivileged user** with no capabilities and ``no_new_privs``, so it cannot undo any of this: as root, a
  uid of its own; as an ordinary user, uid 1000 of a user namespace of its own;
* **a seccomp filter** (:mod:`grader_tests.engine.syscalls`): no socket but Unix sockets, no namespaces, mounts,
  tracing, eBPF, perf events, keyrings or io_uring;
* **limits** (a cgroup, v1 or v2): memory, including its scratch files, the number of processes and threads, and
  CPU time (one core by default, so that a kernel cannot slow the kernels graded beside it).
  Wall time is the grader's: a cell past its timeout is interrupted, and the kernel is killed at the end.

Two modes (:func:`mode`), one construction; only who owns the namespaces and how the kernel drops its rights differ:

* **root**: the namespaces belong to the host; the kernel drops to ``UID_BASE + pid``; its cgroup is the host's.
* **rootless** (grading as an ordinary user, where the system allows unprivileged user namespaces): the keeper
  first enters a user namespace in which the grader's uid is root, and builds everything there, owned by that
  namespace; the kernel then enters a second user namespace of its own, as uid 1000 (the grader's uid outside),
  and drops every capability, so that it holds none over the namespaces above it and cannot undo a mount. Its
  socket folder is a capped file system inside the sandbox, which the grader reaches through links to
  ``/proc/<pid>/root``. Limits come from a cgroup where one is delegated to the user (cgroup v2 under
  ``user@<uid>.service``), else from ``setrlimit``: memory per process, processes per kernel (each kernel's user
  namespace counts its own), no CPU quota.

Where the sandbox cannot be built (not Linux, no namespaces for this user), :func:`unavailable` says why; grading
then runs unsandboxed and says so loudly (docs/honest-grading.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import resource
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import syscalls

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 36, 38
PR_SET_THP_DISABLE, PR_CAP_AMBIENT = 41, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
MADV_COLLAPSE = 25  # back a range with 2 MB pages now, its 4 kB pages copied into them (Linux 6.1 and later)
CAPABILITY_VERSION_3 = 0x20080522
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}

UID_BASE = 2_000_000
"""Sandboxed kernels run as ``UID_BASE + pid`` of their sandbox: a uid of their own, owned by nobody else (root)."""

INNER_UID = 1000
"""Rootless: the kernel's uid in its own user namespace (the grader's uid outside it, and no capabilities)."""

HOME = "/home/student"
MAX_FILE_BYTES = 64 << 20
ROOT = Path(__file__).resolve().parents[2]
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("passwd", "group", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts",
       "mime.types", "os-release")
DEVICES = ("null", "zero", "full", "random", "urandom")
ENVIRONMENT = ("NBGRADER_EXECUTION", "MPLBACKEND", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "PYDEVD_DISABLE_FILE_VALIDATION", "PYTHONHASHSEED", "LANG", "LC_ALL", "TZ")
"""The variables of the grader's environment a kernel keeps; everything else is dropped."""

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """What one sandboxed kernel may use."""

    memory_mb: int = 3072  # resident memory, scratch files included (the 06_gradcam kernel needs about 1.5 GB)
    processes: int = 256  # processes and threads
    scratch_mb: int = 512  # each of /home/student, /tmp and /dev/shm (counted in memory_mb as they fill)
    cpus: float = 1.0  # CPU time per wall-clock second, all its processes together: no kernel slows its neighbours


# --- system calls ----------------------------------------------------------------------------------------------


def _ok(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _ok(_libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
                    data.encode() if data else None), f"mount {source} on {target}")


def _prctl(option: int, value: int) -> None:
    _ok(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def adopt_orphans() -> None:
    """This process (the fork server) becomes the parent of its descendants' orphans. A kernel's sandbox ends with
    its keeper killed (the grader kills the keeper's process group) and its first process dying with it: that
    process then passes to this server, which reaps it at once (it ignores SIGCHLD), instead of to the system's
    init, under which it would stay a zombie of the sandbox's user, after grading, until that init reaps it.
    Nothing where the call is unknown (Linux before 3.4)."""
    with contextlib.suppress(OSError):
        _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> None:
    """SIGKILL this process when the thread that forked it ends; exit now if that has already happened."""
    parent = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def small_pages() -> None:
    """This process and its children fault their new memory in 4 kB pages, whatever the fork server's malloc asks
    for (``forkserver.HUGE_PAGES``). A kernel's large tensors would otherwise ask for 2 MB pages, and where the
    system compacts memory to find one (``defrag`` of ``madvise``, the default), a kernel that fills 100 MB stalls now
    and then for 0.4-0.9 s of CPU time; with 4 kB pages the course's notebooks cost their kernels 1-6% less CPU time
    (three runs side by side). Nothing where the call is unknown (Linux before 3.15)."""
    with contextlib.suppress(OSError):
        _prctl(PR_SET_THP_DISABLE, 1)


def collapse_into_huge_pages() -> None:
    """The fork server, once warm: back its anonymous writable memory with 2 MB pages wherever the system can
    (``MADV_COLLAPSE``).

    A fork copies one entry per page of the server's page tables, and the child's exit releases each again: with
    its 600 MB of warm memory (half of it outside malloc's heap, in 4 kB pages: Python's arenas, torch's own
    allocations), forking a child that exits at once cost the server and the child 25 ms of CPU; collapsed, 9 ms.
    Each kernel is three forks (its keeper, the sandbox's first process and the kernel). Nothing where the call is
    unknown or a range cannot be collapsed (``EINVAL``, ``ENOMEM``, ``EAGAIN``): those pages stay as they are."""
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    huge = 2 << 20
    with open("/proc/self/maps") as maps:
        ranges = [line.split() for line in maps]
    for fields in ranges:
        if fields[1] != "rw-p" or (len(fields) > 5 and fields[5] != "[heap]"):
            continue  # files' pages, the stack and the kernel's special mappings stay
        low, high = (int(address, 16) for address in fields[0].split("-"))
        start, end = -(-low // huge) * huge, high // huge * huge
        if end > start:
            _libc.madvise(start, end - start, MADV_COLLAPSE)


# --- limits: cgroups v2 or v1 ----------------------------------------------------------------------------------


CPU_PERIOD_US = 100_000
"""The scheduler period of a kernel's CPU quota (``cpu.max``, ``cpu.cfs_quota_us``): 0.1 s, the kernel default."""


class Cgroup:
    """One kernel's cgroup (memory, pids and, where offered, cpu controllers), v2 where the host has it, else v1."""

    def __init__(self, paths: dict[str, Path], v2: bool) -> None:
        self.paths, self.v2 = paths, v2
        self.cpu_limited = False  # whether its CPU quota is set (the host may not offer the controller)

    @classmethod
    def create(cls, name: str, limits: Limits) -> Cgroup | None:
        """A new cgroup ``visualizing-cnns/<name>`` under this process's own (v2: or, for an ordinary user, under
        the cgroup its systemd manager delegates to it, ``user@<uid>.service``), or None where none can be made."""
        try:
            if _is_cgroup2("/sys/fs/cgroup"):
                for parent in _v2_parents():
                    with contextlib.suppress(OSError):
                        return cls._create_v2(parent / "visualizing-cnns", name, limits)
                return None
            paths = {c: _own_cgroup(f"/sys/fs/cgroup/{c}", c) / "visualizing-cnns" / name for c in ("memory", "pids")}
            for path in paths.values():
                path.mkdir(parents=True)
            group = cls(paths, False)
            group._write("memory", "memory.limit_in_bytes", str(limits.memory_mb << 20))
            with_swap = paths["memory"] / "memory.memsw.limit_in_bytes"
            if with_swap.exists():
                with_swap.write_text(str(limits.memory_mb << 20))
            group._write("pids", "pids.max", str(limits.processes))
            with contextlib.suppress(OSError):  # v1's cpu controller, where the host mounts it
                cpu = _own_cgroup("/sys/fs/cgroup/cpu", "cpu") / "visualizing-cnns" / name
                cpu.mkdir(parents=True)
                group.paths["cpu"] = cpu
                group._write("cpu", "cpu.cfs_period_us", str(CPU_PERIOD_US))
                group._write("cpu", "cpu.cfs_quota_us", str(round(limits.cpus * CPU_PERIOD_US)))
                group.cpu_limited = True
                _weigh(cpu.parent, "cpu.shares", 1024)
            return group
        except OSError:
            return None

    @classmethod
    def _create_v2(cls, path: Path, name: str, limits: Limits) -> Cgroup:
        path.mkdir(exist_ok=True)
        (path / "cgroup.subtree_control").write_text("+memory +pids")
        with contextlib.suppress(OSError):  # the CPU controller may not be delegated here
            (path / "cgroup.subtree_control").write_text("+cpu")
        group = cls({"unified": path / name}, True)
        group.paths["unified"].mkdir()
        try:
            group._write("unified", "memory.max", str(limits.memory_mb << 20))
            group._write("unified", "memory.swap.max", "0")
            group._write("unified", "pids.max", str(limits.processes))
        except OSError:
            group.remove()
            raise
        with contextlib.suppress(OSError):
            group._write("unified", "cpu.max", f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
            group.cpu_limited = True
            _weigh(path, "cpu.weight", 100)
        return group

    @classmethod
    def available(cls) -> bool:
        """Whether this process can give kernels cgroups (else their limits fall back to ``setrlimit``)."""
        group = cls.create(f"probe-{os.getpid()}", Limits())
        return group is not None and group.remove()

    def _write(self, controller: str, name: str, value: str) -> None:
        (self.paths[controller] / name).write_text(value)

    def add(self, pid: int) -> None:
        for path in self.paths.values():
            (path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many of its processes the kernel's OOM killer ended."""
        events = "memory.events" if self.v2 else "memory.oom_control"
        try:
            text = (self.paths["unified" if self.v2 else "memory"] / events).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> bool:
        """Remove the cgroup once its processes are gone; whether it is gone."""
        for path in self.paths.values():
            try:
                path.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                return False
        if self.cpu_limited:
            with contextlib.suppress(OSError):
                cpu = self.paths["unified" if self.v2 else "cpu"].parent
                _weigh(cpu, "cpu.weight" if self.v2 else "cpu.shares", 100 if self.v2 else 1024)
        return True


def _weigh(parent: Path, name: str, default: int) -> None:
    """Give the kernels' common parent cgroup the CPU weight of as many processes as it holds kernels (at least
    one): the scheduler weighs a cgroup as one process against its siblings, so on a busy machine the kernels
    together would otherwise get one process's share, and each kernel graded beside another only half of it."""
    kernels = sum(1 for child in parent.iterdir() if child.is_dir())
    (parent / name).write_text(str(min(default * max(1, kernels), 10_000 if name == "cpu.weight" else 262_144)))


def _is_cgroup2(path: str) -> bool:
    try:
        return os.statvfs(path) is not None and Path(path, "cgroup.controllers").exists()
    except OSError:
        return False


def _v2_parents() -> list[Path]:
    """Where kernels' cgroups may go (v2): under this process's own cgroup; for an ordinary user, also under the
    subtree its systemd manager owns and delegates to it, when this process runs in it (a desktop session's
    terminal, ``systemd-run --user``): moving a process there needs write access to the two cgroups' common
    ancestor, which a login over SSH (``session-N.scope``) lacks."""
    own = _own_cgroup("/sys/fs/cgroup", "")
    parents = [own]
    uid = os.geteuid()
    manager = Path(f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service")
    if uid != 0 and manager in own.parents:
        parents.append(manager)
    return parents


def _own_cgroup(mount: str, controller: str) -> Path:
    """The cgroup folder of this process in the hierarchy mounted at ``mount``."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller == "" and controllers == "") or controller in controllers.split(","):
            return Path(mount) / path.lstrip("/")
    raise OSError(f"no {controller or 'unified'} cgroup")


# --- the kernel's own folder: its connection file and sockets ------------------------------------------------------


FOLDER_BYTES = 1 << 20


def cap_folder(folder: str) -> None:
    """As root: put a 1 MB file system in memory under ``folder`` (keeping its files), so that a kernel, which can
    write there, cannot fill the host's disk through it. The fork server does this before it forks the kernel.
    Rootless, this does nothing: the sandbox caps its own copy of the folder (:func:`_build_root`)."""
    if mode() == "root":
        _capped_copy(folder, folder, 0)


def _capped_copy(source: str, target: str, uid: int) -> None:
    """A 1 MB file system in memory at ``target``, owned by ``uid``, holding the files of ``source`` (not its links:
    rootless, the keeper links the sockets there meanwhile)."""
    kept = {path.name: path.read_bytes() for path in Path(source).iterdir() if not path.is_symlink()}
    _mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
           f"size={FOLDER_BYTES},nr_inodes=64,mode=0700,uid={uid},gid={uid}")
    for name, data in kept.items():
        path = Path(target, name)
        path.write_bytes(data)
        path.chmod(0o600)


def release_folder(folder: str) -> None:
    """Undo :func:`cap_folder` (its content goes with it)."""
    _libc.umount2(folder.encode(), MNT_DETACH)


SOCKET_PORTS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def _link_sockets(folder: str, init: int) -> None:
    """Rootless: link each socket path of the kernel's connection file in ``folder`` to the same path inside the
    sandbox, through ``/proc/<init>/root``, where the kernel binds it in its capped copy of the folder. The grader
    (this user, owner of the sandbox's user namespace) can follow the links; the kernel holds no capability in that
    namespace and cannot."""
    try:
        info = json.loads(Path(folder, "kernel.json").read_text())
    except (OSError, ValueError):
        return
    if info.get("transport") != "ipc" or os.path.dirname(str(info.get("ip", ""))) != folder:
        return
    for key in SOCKET_PORTS:
        path = f"{info['ip']}-{int(info[key])}"
        os.symlink(f"/proc/{init}/root{path}", path)


# --- is a sandbox possible here, and which? ------------------------------------------------------------------------


def mode() -> str:
    """``"root"``: grading runs as root, the sandbox is built with the host's namespaces and cgroups; ``"rootless"``:
    grading runs as an ordinary user, the sandbox is built in user namespaces (:func:`unavailable` says whether)."""
    return "root" if os.geteuid() == 0 else "rootless"


def unavailable() -> str | None:
    """Why kernels cannot be sandboxed on this machine, as this user, or None if they can (tried in a throwaway
    child, step by step as :func:`enter` builds a sandbox)."""
    if not sys.platform.startswith("linux"):
        return f"kernels are sandboxed on Linux only, not on {sys.platform}"
    if platform.machine() not in SYS_PIVOT_ROOT:
        return f"no pivot_root system call known for {platform.machine()}"
    error = _probe()
    if error is None:
        return None
    if mode() == "root":
        return f"this system does not allow new mount, PID and network namespaces (a container without them?): {error}"
    return (f"grading runs as an ordinary user, and this system does not let one build the sandbox in user "
            f"namespaces ({_user_namespaces_off() or error}): allow unprivileged user namespaces, or grade as root")


USER_NAMESPACE_SWITCHES = (
    ("user/max_user_namespaces", "0"),  # the kernel's own switch
    ("kernel/unprivileged_userns_clone", "0"),  # Debian's older kernels
    ("kernel/apparmor_restrict_unprivileged_userns", "1"),  # Ubuntu 23.10 and later
)
"""Settings (``sysctl``) that deny ordinary users the user namespaces of a rootless sandbox, with the denying value."""


def _user_namespaces_off() -> str | None:
    """The setting that turns unprivileged user namespaces off here, if one does."""
    for name, off in USER_NAMESPACE_SWITCHES:
        try:
            value = Path("/proc/sys", name).read_text().strip()
        except OSError:
            continue
        if value == off:
            return f"sysctl {name.replace('/', '.')} = {value}"
    return None


def report(why_not: str | None) -> dict[str, Any]:
    """What a grading result records of its kernels' sandbox: ``{"on", "why", "mode", "limits"}``; ``mode``:
    ``"root"`` or ``"rootless"`` (:func:`mode`), ``limits``: ``"cgroup"`` or ``"setrlimit"``."""
    if why_not is not None:
        return {"on": False, "why": why_not, "mode": None, "limits": None}
    return {"on": True, "why": None, "mode": mode(), "limits": "cgroup" if Cgroup.available() else "setrlimit"}


def _probe() -> str | None:
    """Build a sandbox's namespaces, mounts and user in throwaway children; what failed, or None."""
    rootless = mode() == "rootless"
    scratch = tempfile.mkdtemp(prefix="sandbox-probe-")

    def build() -> None:
        if rootless:
            _own_user_namespace(0, os.geteuid(), os.getegid())
        _ok(_libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
        if (error := _in_child(mounts)) is not None:
            raise OSError(error)

    def mounts() -> None:  # PID 1 of the new PID namespace
        _ok(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        _bind(scratch, "/usr", read_only=True)
        os.mkdir(scratch + "/proc")
        _mount("proc", scratch + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        if rootless:
            _own_user_namespace(INNER_UID, 0, 0)
            _drop_capabilities()

    try:
        return _in_child(build)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _in_child(step: Callable[[], None]) -> str | None:
    """Run ``step`` in a forked child; what it raised, or None if it returned."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code = 0
        try:
            step()
        except BaseException as error:  # noqa: BLE001 - any failure means no sandbox
            os.write(write, str(error).encode()[:2000])
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else message or f"exit status {code}"


# --- the sandbox ---------------------------------------------------------------------------------------------------


def enter(folder: str, workdir: str, env: dict[str, str], limits: Limits, cgroup: Cgroup | None) -> None:
    """In a freshly forked, single-threaded child of the fork server: become the kernel's sandbox.

    This process (the *keeper*) stays outside the new PID namespace, with the host's file system: it waits for
    the sandbox's first process and then reports how it ended in :func:`exit_report_path` (outside the folder
    the kernel can write to). Only the kernel returns from this call: inside the sandbox, as an unprivileged
    user, in a copy of ``workdir``, with ``env`` filtered. ``folder`` holds the kernel's connection file and
    sockets (the same path inside and out).

    As root, the namespaces belong to the host and the kernel's uid is ``UID_BASE + pid``. Rootless, the keeper
    first enters a user namespace in which this user is root (uid 0 there), and the sandbox's namespaces, mounts
    and files belong to it; the kernel leaves it for one of its own (:func:`_become_user`).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel through the process group
    die_with_parent()
    if cgroup is not None:
        cgroup.add(os.getpid())
    log = os.open(log_path(folder), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.dup2(log, 1)  # what the kernel itself prints (not its cells' output): for the instructor, outside its view
    os.dup2(log, 2)
    os.close(log)
    rootless = mode() == "rootless"
    if rootless:
        _own_user_namespace(0, os.geteuid(), os.getegid())
        uid = 0  # the owner of the sandbox's files, in that namespace: this user outside it
    else:
        uid = UID_BASE + os.getpid()
        for path in (folder, *(str(p) for p in Path(folder).iterdir())):
            os.chown(path, uid, uid)
    _ok(_libc.unshare(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    init = os.fork()
    if init == 0:
        _init(folder, workdir, uid, limits, rootless)  # returns in the kernel only
        _become_user(uid, env, workdir, None if cgroup is not None else limits, rootless)
        return
    if rootless:
        _link_sockets(folder, init)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _, status = os.waitpid(init, 0)
    report = {"exit": os.waitstatus_to_exitcode(status), "oom_kills": cgroup.oom_kills() if cgroup else 0,
              "memory_mb": limits.memory_mb}
    Path(exit_report_path(folder)).write_text(json.dumps(report))
    os._exit(0)


def _init(folder: str, workdir: str, uid: int, limits: Limits, rootless: bool) -> None:
    """PID 1 of the sandbox: build the file system, start the kernel (the only return), reap until it ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()
    if rootless:  # the grader reaches the kernel's sockets through /proc/<this pid>/root (see _link_sockets)
        _prctl(PR_SET_DUMPABLE, 1)
    _ok(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    new_root = f"{folder}.root"
    os.makedirs(new_root, exist_ok=True)
    _build_root(new_root, folder, workdir, uid, limits, rootless)
    kernel = os.fork()
    if kernel == 0:
        die_with_parent()
        return
    os.closerange(3, 1 << 16)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:  # the kernel's orphans come here too; the sandbox ends with the kernel
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _build_root(new_root: str, folder: str, workdir: str, uid: int, limits: Limits, rootless: bool) -> None:
    """Mount the sandbox's file system at ``new_root`` and make it the root of this mount namespace; ``uid`` owns
    what the kernel may write."""
    _mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,mode=0755")
    scratch = f"size={limits.scratch_mb}m,mode=0755,uid={uid},gid={uid}"
    for path in (HOME, "/tmp", "/dev/shm"):  # first: a course installed under /tmp is bound on top, not hidden
        os.makedirs(new_root + path, mode=0o755, exist_ok=True)
        _mount("tmpfs", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV, scratch)
    os.chmod(new_root + "/tmp", 0o1777)
    read_only = [p for p in SYSTEM if os.path.exists(p)] + [f"/etc/{n}" for n in ETC if os.path.exists(f"/etc/{n}")]
    read_only += _python_paths() + _runtime_paths()
    for path in read_only:
        _bind(new_root, path, read_only=True)
    for device in DEVICES:
        _bind(new_root, f"/dev/{device}", read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new_root}/dev/{name}")
    if rootless:  # its own capped copy: the host's folder is not this user's to mount on (see _link_sockets)
        os.makedirs(new_root + folder, mode=0o700)
        _capped_copy(folder, new_root + folder, uid)
    else:  # capped on the host (cap_folder)
        _bind(new_root, folder, read_only=False)
    work = new_root + sandbox_workdir(workdir)
    shutil.copytree(workdir, work, symlinks=True, dirs_exist_ok=True)
    for path in [work, *(os.path.join(d, n) for d, ds, fs in os.walk(work) for n in ds + fs)]:
        os.lchown(path, uid, uid)
    os.makedirs(new_root + "/proc", exist_ok=True)
    # before the old root goes: in a user namespace, a proc mounts only where another is fully visible
    _mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(new_root)
    os.makedirs(".old", exist_ok=True)
    _ok(_libc.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b".old"), "pivot_root")
    os.chdir("/")
    _ok(_libc.umount2(b"/.old", MNT_DETACH), "umount the old root")
    os.rmdir("/.old")
    _mount("none", "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _processes_counted_per_user_namespace() -> bool:
    """Whether ``RLIMIT_NPROC`` counts a user's processes per user namespace (Linux 5.14 and later): rootless, the
    kernel's own namespace then counts its processes only; before, it counted every process of the grading user,
    and a kernel gets no process limit rather than one that its grader's processes use up."""
    release = tuple(int(part) for part in re.findall(r"\d+", platform.release())[:2])
    return release >= (5, 14)


def _vm_data_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    return 0


def exit_report_path(folder: str) -> str:
    """How the sandbox of the kernel whose files are in ``folder`` ended (written by root, beside ``folder``)."""
    return f"{folder}.exit.json"


def log_path(folder: str) -> str:
    """The kernel process's own output (ipykernel's messages, a crash's traceback), beside ``folder``."""
    return f"{folder}.log"


def sandbox_workdir(workdir: str) -> str:
    """Where the copy of the submission's folder lies inside the sandbox."""
    return f"{HOME}/{Path(workdir).name}"


def _python_paths() -> list[str]:
    """Python, its standard library and packages; never the course's root (the editable install maps into it)."""
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    root = str(ROOT)
    kept = sorted(p for p in paths if p != root and not root.startswith(p + os.sep) and
                  (not p.startswith(root + os.sep) or p.startswith(os.path.realpath(sys.prefix))))
    return [p for p in kept if not any(p.startswith(q + os.sep) for q in kept)]


def _runtime_paths() -> list[str]:
    """The course's runtime a kernel may see: ``helpers`` and the probes, not the rest of ``grader_tests``."""
    import helpers

    package = Path(__file__).resolve().parents[1]
    return [str(Path(helpers.__file__).resolve().parent), str(package / "__init__.py"), str(package / "kernel")]


def _bind(new_root: str, path: str, read_only: bool) -> None:
    """``path`` of the host at the same path in the sandbox (a symlink stays a symlink); the host's own ``ro``,
    ``nosuid``, ``nodev`` and ``noexec`` flags are kept (a user namespace may not clear them)."""
    target = new_root + path
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if os.path.islink(path):
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        Path(target).touch()
    _mount(path, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (MS_RDONLY | MS_NODEV if read_only else 0)
    flags |= os.statvfs(path).f_flag & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("none", target, None, flags)


def _own_user_namespace(inner: int, outer_uid: int, outer_gid: int) -> None:
    """Enter a new user namespace in which this process is uid and gid ``inner``: ``outer_uid`` and ``outer_gid``
    of the namespace it leaves, its own, the one id an ordinary user may map. It holds every capability there until
    it drops them."""
    _ok(_libc.unshare(CLONE_NEWUSER), "unshare user namespace")
    Path("/proc/self/setgroups").write_text("deny")  # the groups it has stay as they are: none can be dropped
    Path("/proc/self/uid_map").write_text(f"{inner} {outer_uid} 1")
    Path("/proc/self/gid_map").write_text(f"{inner} {outer_gid} 1")


def _drop_capabilities() -> None:
    """Give up every capability for good: the bounding and ambient sets, then the effective, permitted and
    inheritable ones."""
    _drop_bounding_set()
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    _ok(_libc.capset(header, (ctypes.c_uint32 * 6)()), "capset")


def _drop_bounding_set() -> None:
    """Empty the bounding and ambient capability sets: no program run later can gain a capability."""
    for capability in range(int(Path("/proc/sys/kernel/cap_last_cap").read_text()) + 1):
        _prctl(PR_CAPBSET_DROP, capability)
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def _become_user(uid: int, env: dict[str, str], workdir: str, rlimits: Limits | None, rootless: bool) -> None:
    """The kernel, inside the sandbox: drop its rights for good, in its folder, with a clean environment.

    As root: uid ``uid`` of its own. Rootless: uid ``INNER_UID`` of a user namespace of its own (``uid``, the
    set-up's root, outside it), with no capability left: it holds none over the namespaces of the set-up, which
    own its mounts. ``rlimits``: the limits to set with ``setrlimit``, where no cgroup holds them (coarser: memory
    is then the address space each process may add; processes, those of its uid, or rootless, of its user
    namespace)."""
    if rlimits is not None:
        data = _vm_data_bytes() + (rlimits.memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_DATA, (data, data))
        if not rootless or _processes_counted_per_user_namespace():
            resource.setrlimit(resource.RLIMIT_NPROC, (rlimits.processes, rlimits.processes))
    if rootless:
        _own_user_namespace(INNER_UID, uid, uid)
        Path("/proc/sys/user/max_user_namespaces").write_text("0")  # none below its own, filter or not
        _drop_capabilities()
    else:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        _drop_bounding_set()
        os.setresuid(uid, uid, uid)  # from root to another uid: its other capabilities go
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))  # its log, above all
    if syscalls.available() is None:  # else the grader has said so (grade.py): the namespaces still hold
        syscalls.restrict()
    os.chdir(sandbox_workdir(workdir))
    kept = {key: value for key, value in env.items() if key in ENVIRONMENT}
    os.environ.clear()
    os.environ.update(kept, PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", HOME=HOME,
                      USER="student", LOGNAME="student", TMPDIR="/tmp", MPLCONFIGDIR="/tmp/matplotlib")
