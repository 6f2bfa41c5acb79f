"""Kernels forked from a warm process: grading starts a kernel per notebook in milliseconds instead of seconds.

A fresh ``ipykernel`` spends about 0.6 s starting and the notebook's first cell 1.8 s importing torch,
torchvision and matplotlib; the first meta-tensor or autograd call imports another few hundred modules. Fourteen
notebooks a student, that would be most of the grading time. Instead each grading process starts one *fork server*
(``python -m grader_tests.engine.forkserver``) that imports all of it once and warms it up, without running any
student code (it also draws the data sets the graded cells draw: :func:`graded_draws`), and forks one child per
kernel. The child builds the kernel's sandbox (:mod:`grader_tests.engine.sandbox`) and becomes a fresh
``ipykernel`` in it, with its own process group, working folder and environment, like one ``jupyter_client`` would
start; only the module imports are shared (copy-on-write). The server never imports the judges: a kernel inherits
its memory. It starts with a minimal environment (:data:`SERVER_ENVIRONMENT`), so that what libraries read at
import (``OMP_NUM_THREADS`` ...) agrees with the kernels' and nothing else of the grader's environment is in a
kernel's memory.

:class:`ForkingKernelManager` (``nbgrader_config.py`` sets it as the ``Execute`` kernel manager) launches the
standard Python kernel this way on Linux and any other kernel, or on any other system, the usual way.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import gc
import importlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Type

from . import sandbox, syscalls
from .sandbox import Limits

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""ipykernel's matplotlib backend, unless ``MPLBACKEND`` says otherwise."""

IPYKERNEL = ["-m", "ipykernel_launcher"]

PRELOADED = (
    # what a kernel imports as it starts, its debugger included
    "IPython", "IPython.core.completerlib", "IPython.extensions.storemagic", "ipykernel.debugger",
    "ipykernel.kernelapp", "psutil", "sqlite3", "tornado.platform.asyncio", "tornado.queues",
    "IPython.core.debugger", "IPython.core.oinspect",
    # what the notebooks import; not matplotlib's inline backend, which hooks into the shell that imports it
    "matplotlib.pyplot", "torch", "torchvision", "captum.attr", "helpers", "helpers.environment",
    # the probes of the hidden checks (never the judges)
    "grader_tests.kernel.record", "grader_tests.kernel.inputs", "grader_tests.kernel.facts",
    *(f"grader_tests.kernel.{topic}" for topic in ("autograd", "parameters", "filters", "activations", "saliency",
                                                   "gradcam", "patches", "dissection", "embeddings",
                                                   "class_visualization", "occlusion", "attributions",
                                                   "sanity_checks", "shortcut")),
)

SERVER_ENVIRONMENT = (*sandbox.ENVIRONMENT, "PYTHONPATH", "VISUALIZING_CNNS_NO_SANDBOX")
"""What the fork server keeps of the grading process's environment: what a sandboxed kernel keeps, and where
Python finds the course. A kernel inherits the server's memory, its initial environment block included
(``/proc/self/environ``), so nothing else of the grader's environment may ever be in it."""


HUGE_PAGES = "glibc.malloc.hugetlb=1"
"""The server's ``GLIBC_TUNABLES``: malloc asks for transparent huge pages for its large blocks (glibc 2.35 and
later, where the system offers them on request). Half of the server's 600 MB of heap is then mapped in 2 MB pages,
and a fork copies a page table half as large: each fork costs half the CPU time (about 20 ms instead of 40, three
forks a kernel). Once warm, the server collapses the rest of its memory into 2 MB pages too
(:func:`sandbox.collapse_into_huge_pages`). A kernel's pages still copy 4 kB at a time as it writes, and it takes
new memory in 4 kB pages (:func:`sandbox.small_pages`)."""


def forkable(cmd: list[str]) -> bool:
    """Whether ``cmd`` starts the Python kernel of this interpreter, on a system where forking it is safe."""
    same_python = bool(cmd) and os.path.realpath(cmd[0]) == os.path.realpath(sys.executable)
    return sys.platform.startswith("linux") and same_python and cmd[1:3] == IPYKERNEL


# --- the grading process's side ---------------------------------------------------------------------------------


class ForkServer:
    """The fork server of this process: started on first use, stopped (with its kernels) when this process ends."""

    _instance: ForkServer | None = None

    def __init__(self, sandboxed: bool = True) -> None:
        """``sandboxed=False``: never sandbox this server's kernels (the tests of the unsandboxed fallback)."""
        self.folder = tempfile.mkdtemp(prefix="kernels-")  # the kernels' connection files and sockets
        env = {key: value for key, value in os.environ.items() if key in SERVER_ENVIRONMENT}
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
        if not sandboxed:
            env["VISUALIZING_CNNS_NO_SANDBOX"] = "1"
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # thread pools and fork: no
        env["GLIBC_TUNABLES"] = HUGE_PAGES
        self.process = subprocess.Popen(
            [sys.executable, "-m", "grader_tests.engine.forkserver", self.folder],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env, cwd=self.folder,
        )
        self._sandbox: dict[str, Any] | None = None
        atexit.register(self.close)

    @property
    def sandbox(self) -> dict[str, Any]:
        """``{"on": bool, "why": reason if off, "mode": "root" or "rootless", "limits": "cgroup" or "setrlimit",
        "seccomp": reason if no filter}``: whether and how this server's kernels are sandboxed (its first reply)."""
        if self._sandbox is None:
            self._sandbox = json.loads(self._reply())
        return self._sandbox

    def _reply(self) -> str:
        assert self.process.stdout
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the kernel fork server exited (code {self.process.wait()})")
        return reply

    def new_kernel_folder(self) -> str:
        """A private folder for one kernel's connection file and sockets (short: Unix socket paths are limited)."""
        folder = os.path.join(self.folder, f"k-{uuid.uuid4().hex[:12]}")
        os.mkdir(folder, 0o700)
        return folder

    @classmethod
    def get(cls) -> ForkServer:
        if cls._instance is None or cls._instance.process.poll() is not None:
            cls._instance = cls()
        return cls._instance

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, folder: str, limits: Limits | None = None) -> int:
        """Fork a kernel running ``argv[3:]`` (the arguments after ``python -m ipykernel_launcher``), sandboxed
        where possible, with its files in ``folder`` (:meth:`new_kernel_folder`); its pid.

        A sandboxed kernel gets only the sandbox's variables of ``env`` and a copy of ``cwd`` made here, beside
        ``folder``: neither the grader's environment nor the path of the grading folder ever reaches the server,
        whose memory every kernel inherits."""
        assert self.process.stdin
        if self.sandbox["on"]:
            env = {key: value for key, value in env.items() if key in sandbox.ENVIRONMENT}
            work = os.path.join(f"{folder}.work", os.path.basename(cwd))
            shutil.copytree(cwd, work, symlinks=True)
            cwd = work
        request = {"args": argv[3:], "env": env, "cwd": cwd, "folder": folder, "limits": asdict(limits or Limits())}
        self.process.stdin.write(json.dumps(request) + "\n")
        return int(json.loads(self._reply())["pid"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the server kills its kernels and exits
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_early() -> None:
    """Start this process's fork server now, where kernels are forked, so that it loads while this process does."""
    if sys.platform.startswith("linux"):
        ForkServer.get()


class ForkedKernel:
    """What ``LocalProvisioner`` needs of a ``Popen`` for a kernel forked by the server (not our child)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        """None while the kernel runs; the server reaps it when it ends, so its exit code is not known here."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return -1
        return None

    def wait(self) -> int | None:
        return self.poll()

    def send_signal(self, signum: int) -> None:
        """Signal the kernel; one that has already ended needs none (as ``Popen.send_signal``)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkingProvisioner(LocalProvisioner):
    """``LocalProvisioner`` that forks the Python kernel from the fork server (see :func:`forkable`)."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if not forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        cwd = os.path.abspath(str(kwargs.get("cwd") or os.getcwd()))  # the server runs elsewhere
        folder = os.path.dirname(self.parent.connection_file)
        limits = getattr(self.parent, "limits", None)
        pid = ForkServer.get().spawn(cmd, dict(kwargs.get("env") or os.environ), cwd, folder, limits)
        self.process = ForkedKernel(pid)  # type: ignore[assignment]
        self.pid = self.pgid = pid  # the kernel leads its own process group: interrupts and kills reach it all
        self.cwd = cwd
        return self.connection_info


class ReadyKernelClient(AsyncKernelClient):
    """jupyter_client's client, ready as soon as the kernel answers ``kernel_info`` and its IOPub channel is
    connected: without the 0.2 s of IOPub silence the standard one waits for at the end. What a late IOPub message
    belongs to is told by its parent header, as nbclient does with every message."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except queue.Empty:
                reply = None
            if reply is not None and reply["msg_type"] == "kernel_info_reply":
                try:
                    await self.iopub_channel.get_msg(timeout=0.2)  # IOPub connected: it carried a message
                except queue.Empty:
                    pass
                else:
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")


class ForkingKernelManager(AsyncKernelManager):
    """nbclient's kernel manager with :class:`ForkingProvisioner`.

    On Linux its kernels talk over Unix sockets at a path of their own, not over TCP ports: graders side by side
    cannot pick the same free port for two kernels (jupyter_client checks a port is free before the kernel
    binds it), and nothing is sent in plain text over the network stack.
    """

    limits: Limits | None = None  # the sandbox's limits (GuardedExecute sets them); None: the defaults
    client_factory = Type(ReadyKernelClient, klass=AsyncKernelClient)

    async def _async_pre_start_kernel(self, **kw: Any) -> tuple[list[str], dict[str, Any]]:
        if sys.platform.startswith("linux") and not self.has_kernel:
            folder = ForkServer.get().new_kernel_folder()
            self.transport, self.ip = "ipc", os.path.join(folder, "k")  # sockets: <ip>-<port>
            self.connection_file = os.path.join(folder, "kernel.json")
        if self.provisioner is None:
            self.provisioner = ForkingProvisioner(kernel_id=kw.get("kernel_id") or self.kernel_id or "",
                                                  kernel_spec=self.kernel_spec, parent=self)
        return await super()._async_pre_start_kernel(**kw)

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Until the kernel has ended, polling every 5 ms instead of 100: a killed kernel ends in milliseconds, and
        grading waits for one at the end of every notebook."""
        await super()._async_wait(pollinterval=min(pollinterval, 0.005))


# --- the fork server ----------------------------------------------------------------------------------------------


def preload() -> None:
    """Import and warm up what the notebooks use, without choosing matplotlib's backend or starting a thread."""
    os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # as ipykernel's kernel specs do
    for name in PRELOADED:
        importlib.import_module(name)
    import torch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import helpers

    x = torch.zeros(1, 3, helpers.IMAGE_SIZE, helpers.IMAGE_SIZE, requires_grad=True)
    helpers.load_pretrained()(x).sum().backward()  # autograd, convolution and batch-norm kernels
    for variant in helpers.pretrained.VARIANTS:
        helpers.load_pretrained(variant=variant)  # each checkpoint unpickled once, for every kernel
    with torch.device("meta"):
        torch.nn.Conv2d(3, 8, 3)(torch.zeros(1, 3, 8, 8))  # the meta-tensor machinery
    for name in PRELOADED:  # the hidden inputs of the probes (kernel.inputs.warm), and each notebook's own
        if name.startswith("grader_tests.kernel.") and hasattr(module := sys.modules[name], "warm"):
            module.warm()
    for function, args, kwargs in graded_draws():
        getattr(helpers, function)(*args, **kwargs)  # helpers keeps its latest renders: kernels start with them
    fig = Figure()
    fig.add_subplot().imshow([[0.0, 1.0]])
    with open(os.devnull, "wb") as sink:
        FigureCanvasAgg(fig).print_png(sink)  # fonts and the PNG writer


SERVER_MODULES: list[str] = []
"""The modules of the server's own code (``grader_tests.engine``), listed once before the first fork: each kernel
forgets them, and walking ``sys.modules`` in every kernel would copy the pages of its 2,000 names."""


DATASETS = frozenset({"load_demo", "make_dataset", "make_concept_dataset", "make_shortcut_dataset"})
"""The functions of ``helpers`` that draw the notebooks' images."""


Draw = tuple[str, tuple[Any, ...], dict[str, Any]]
"""A call of :data:`DATASETS`: ``(function, args, kwargs)``."""


COURSE = Path(__file__).resolve().parents[2]
"""The course's folder (``solutions/`` ...)."""


def graded_draws(root: Path = COURSE) -> list[Draw]:
    """Each data set that the course's graded runs draw with literal arguments, once: the calls of ``helpers.<one
    of DATASETS>`` in the cells of ``root/solutions`` that grading runs (:mod:`grader_tests.engine.dependencies`)."""
    draws: dict[str, Draw] = {}
    for path in sorted(root.glob("solutions/*/*.ipynb")):
        for source in _graded_sources(json.loads(path.read_text())):
            draws.update((repr(draw), draw) for draw in _literal_draws(source))
    return list(draws.values())


def _graded_sources(nb: dict[str, Any]) -> list[str]:
    """The sources of a solved notebook's code cells that grading runs: the tests and solution cells, and the
    cells before the last of them that these depend on."""
    from .dependencies import needed_cells

    sources = ["".join(cell["source"]) if cell["cell_type"] == "code" else None for cell in nb["cells"]]
    graded = {index for index, cell in enumerate(nb["cells"]) if sources[index] is not None
              and {"grade", "solution"} & {k for k, v in cell["metadata"].get("nbgrader", {}).items() if v is True}}
    if not graded:
        return []
    sources = [source if index <= max(graded) else None for index, source in enumerate(sources)]
    return [sources[index] for index in sorted(needed_cells(sources, graded))]  # type: ignore[misc]


def _literal_draws(source: str) -> list[Draw]:
    """The calls ``helpers.<one of DATASETS>(...)`` in ``source`` whose arguments are all literals."""
    draws = []
    with contextlib.suppress(SyntaxError):
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in DATASETS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "helpers"):
                with contextlib.suppress(ValueError):
                    args = tuple(ast.literal_eval(arg) for arg in node.args)
                    kwargs = {keyword.arg: ast.literal_eval(keyword.value) for keyword in node.keywords if keyword.arg}
                    draws.append((node.func.attr, args, kwargs))
    return draws


def serve(folder: str) -> dict[str, Any] | None:
    """Say first whether and how kernels are sandboxed here (``{"on", "why", "mode", "limits", "seccomp"}``),
    then answer each request line ``{"args", "env", "cwd", "folder", "limits"}`` on stdin with ``{"pid"}``; at end
    of input, kill the kernels still running, remove ``folder`` (their connection files and sockets) and return
    None.

    In each forked child this returns instead, with what the child is to become (:func:`become_kernel`): the
    kernel then starts from the module's top, on a clean stack, with no frame of this loop above it."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # what the kernels print goes where this server's errors go, never into the replies
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the grading process: it closes our input
    why_not = "turned off (VISUALIZING_CNNS_NO_SANDBOX)" if os.environ.get("VISUALIZING_CNNS_NO_SANDBOX") else None
    why_not = why_not or sandbox.unavailable()
    preload()
    SERVER_MODULES.extend(name for name in sys.modules if name.startswith("grader_tests.engine"))
    gc.freeze()  # the kernels' collector then never walks (and so copies) the preloaded objects' pages
    sandbox.collapse_into_huge_pages()
    seccomp = None if why_not else syscalls.available()
    replies.write(json.dumps({**sandbox.report(why_not), "seccomp": seccomp}) + "\n")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # kernels are reaped as they end
    sandbox.adopt_orphans()  # and so are their sandboxes' last processes
    kernels: list[tuple[int, sandbox.Cgroup | None, str]] = []
    for line in sys.stdin:
        request = json.loads(line)
        limits = sandbox.Limits(**request["limits"])
        cgroup = None
        if why_not is None:
            cgroup = sandbox.Cgroup.create(os.path.basename(request["folder"]), limits)
            sandbox.cap_folder(request["folder"])
        pid = os.fork()
        if pid == 0:
            replies.close()
            return {"request": request, "limits": None if why_not else limits, "cgroup": cgroup}
        try:
            os.setpgid(pid, pid)  # here too, so that no signal can reach the kernel before it leads its group
        except OSError:
            pass  # the child did it first, or already ended
        kernels = [*_forget_ended(kernels), (pid, cgroup, request["folder"])]
        replies.write(json.dumps({"pid": pid}) + "\n")
    for pid, _, _ in kernels:
        if _running_child(pid):
            os.killpg(pid, signal.SIGKILL)
    for _ in range(50):  # until the kernels' processes are gone and their cgroups can go too
        if not (kernels := _forget_ended(kernels)):
            break
        time.sleep(0.1)
    for _, _, kernel_folder in kernels:
        sandbox.release_folder(kernel_folder)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _forget_ended(kernels: list[tuple[int, Any, str]]) -> list[tuple[int, Any, str]]:
    """The kernels still running, or whose cgroup cannot be removed yet (its last processes are dying); the files
    of the others are removed."""
    running = []
    for pid, cgroup, folder in kernels:
        if _running_child(pid) or (cgroup is not None and not cgroup.remove()):
            running.append((pid, cgroup, folder))
            continue
        sandbox.release_folder(folder)  # where it was capped; harmless elsewhere
        for directory in (folder, f"{folder}.root", f"{folder}.work"):
            shutil.rmtree(directory, ignore_errors=True)
        for file in (sandbox.log_path(folder), sandbox.exit_report_path(folder)):
            Path(file).unlink(missing_ok=True)
    return running


def _running_child(pid: int) -> bool:
    """Whether ``pid`` is still a kernel of this server (a pid that ended may belong to another process by now)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # the field after the state: ppid
    except (OSError, ValueError, IndexError):
        return False


def grading_kernel_app() -> type:
    """In the forked child: ipykernel's kernel application as grading starts it, which differs from the standard
    one in what grading never uses.

    - Its kernel has no debugger. Grading never debugs, and a kernel that takes no debug requests is one way in
      fewer. Without a debugger the kernel also skips the list of every loaded module's file that ipykernel makes
      for it (``IPythonKernel._kernel_modules``, "just my code"): the kernel shares the fork server's 3,000 module
      objects, and walking them copies the 6,000 pages they lie in, 20 ms of CPU a kernel. ``sys``, as
      ``ipykernel.ipkernel`` sees it while the kernel is made, has no modules; everything else of ``sys`` is the
      real one's.
    - The standard command line, ``-f <connection file>``, is read as the option it is, without building
      traitlets' parser of every option of every class (a few ms a kernel). Any other is parsed."""
    from ipykernel import debugger, ipkernel, kernelapp
    from traitlets.config import Config

    debugger._is_debugpy_available = False  # read where the kernel makes its debugger and answers debug requests

    class GradingKernel(ipkernel.IPythonKernel):
        def __init__(self, **kwargs: Any) -> None:
            if getattr(ipkernel, "sys", None) is not sys:  # another ipykernel: make it as it is
                super().__init__(**kwargs)
                return
            ipkernel.sys = _WithoutModules()  # type: ignore[assignment]
            try:
                super().__init__(**kwargs)
            finally:
                ipkernel.sys = sys

    class GradingKernelApp(kernelapp.IPKernelApp):
        kernel_class = Type(GradingKernel, klass=ipkernel.IPythonKernel)

        def parse_command_line(self, argv: list[str] | None = None) -> None:
            if argv is None or len(argv) != 2 or argv[0] != "-f":
                super().parse_command_line(argv)
                return
            self.argv, self.extra_args = list(argv), []
            self.cli_config = Config({"IPKernelApp": {"connection_file": argv[1]}})  # what parsing -f gives
            self.update_config(self.cli_config)

    return GradingKernelApp


class _WithoutModules:
    """``sys`` with an empty ``modules``: see :func:`grading_kernel_app`."""

    @property
    def modules(self) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(sys, name)


def become_kernel(request: dict[str, Any], limits: sandbox.Limits | None, cgroup: sandbox.Cgroup | None) -> None:
    """In the forked child: become ``python -m ipykernel_launcher *args`` started in ``cwd`` with ``env``, in a
    sandbox unless ``limits`` is None. Never returns."""
    code = 1
    args, env, cwd, folder = request["args"], request["env"], request["cwd"], request["folder"]
    del request
    try:
        sandbox.small_pages()
        os.setpgid(0, 0)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.closerange(3, 1 << 16)  # the server's pipes and files: nothing of them for the kernel
        sys.stdin = open(os.devnull)  # noqa: SIM115 - for the life of the kernel
        if limits is not None:
            sandbox.enter(folder, cwd, env, limits, cgroup)  # returns in the kernel, in its sandbox
        else:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            os.environ["JPY_PARENT_PID"] = str(os.getppid())
            args = [*args, f"--IPKernelApp.parent_handle={os.getppid()}"]
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for name in SERVER_MODULES:
            sys.modules.pop(name, None)  # the server's own code: not the kernel's business
        os.environ.setdefault("MPLBACKEND", INLINE_BACKEND)
        import random

        import matplotlib

        matplotlib.rcParams["backend"] = os.environ["MPLBACKEND"]  # read at import, in the server
        random.seed()  # a fresh interpreter's seed, not the server's
        sys.argv = ["ipykernel_launcher", *args]
        # the kernel exits when its parent does: by its sandbox's death signal, or by ipykernel's parent poller
        grading_kernel_app().launch_instance(argv=args)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - report it and end the child, never return into the server's loop
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    if sys.path and os.path.abspath(sys.path[0]) == os.getcwd():
        del sys.path[0]  # as ipykernel_launcher does; the kernel's shell puts its own folder back
    if (_child := serve(sys.argv[1])) is not None:
        become_kernel(**globals().pop("_child"))
