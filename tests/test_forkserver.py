"""Kernels forked from the warm fork server behave like fresh ones: their own folder, environment, process group
and matplotlib backend; interrupts, deaths and the server's end reach them."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from grader_tests.engine.forkserver import DATASETS, ForkingKernelManager, ForkServer, forkable, graded_draws
from grader_tests.engine.nbgrader_plugins import FIGURELESS_BACKEND
from grader_tests.engine.sandbox import unavailable

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernels are forked on Linux only")


def run(tmp_path, *sources: str, timeout: int = 60, env: dict | None = None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                            kernel_manager_class=ForkingKernelManager, resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel(**({"env": env} if env else {})):
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    return nb


def text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.outputs if out.output_type == "stream")


def test_only_the_python_kernel_of_this_interpreter_is_forked(tmp_path):
    assert forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"])
    assert not forkable([sys.executable, "-m", "other_kernel", "-f", "c.json"])
    other = tmp_path / "python3"  # another environment's Python: its kernel must run its own packages
    other.symlink_to("/bin/sh")
    assert not forkable([str(other), "-m", "ipykernel_launcher", "-f", "c.json"])


@pytest.fixture(scope="module", params=["sandboxed", "unsandboxed"])
def server(request):
    """This process's fork server, sandboxing its kernels where this machine allows (as root, or rootless in user
    namespaces), or not at all."""
    if request.param == "sandboxed" and unavailable():
        pytest.skip(f"no sandbox here: {unavailable()}")
    saved = ForkServer._instance
    ForkServer._instance = ForkServer(sandboxed=request.param == "sandboxed")
    yield ForkServer._instance
    ForkServer._instance.close()
    ForkServer._instance = saved


def test_a_forked_kernel_is_a_fresh_kernel_in_its_own_folder_group_and_environment(tmp_path, server):
    (tmp_path / "mine.py").write_text("VALUE = 42\n")
    env = {**os.environ, "NBGRADER_EXECUTION": "autograde", "COURSE_SECRET": "of the grader"}
    nb = run(tmp_path,
             "import os, sys\nprint(os.path.basename(os.getcwd()), os.environ.get('NBGRADER_EXECUTION'), "
             "'COURSE_SECRET' in os.environ, 'torch' in sys.modules)",
             "import mine\nprint(mine.VALUE, __name__)",
             "import matplotlib.pyplot as plt\nplt.plot([0, 1])\nprint(plt.get_backend())",
             env=env)
    sandboxed = server.sandbox["on"]
    # its own copy of the notebook's folder (importable), the grader's variables only where they are the kernel's
    assert text(nb.cells[0]).split() == [tmp_path.name, "autograde", str(not sandboxed), "True"]
    assert text(nb.cells[1]).split() == ["42", "__main__"]
    assert "inline" in text(nb.cells[2])
    assert any("image/png" in out.get("data", {}) for out in nb.cells[2].outputs)  # the inline figure


def test_each_kernel_starts_clean(tmp_path, server):
    first = run(tmp_path, "import torch\ntorch.nn.Linear.forward = None\nleft_over = 1")
    second = run(tmp_path, "import torch\nprint(torch.nn.Linear.forward is None, 'left_over' in globals())")
    assert first.cells[0].outputs == []
    assert text(second.cells[0]).split() == ["False", "False"]


def test_an_interrupt_stops_the_cell_and_the_kernel_goes_on(tmp_path, server):
    nb = run(tmp_path, "while True:\n    pass", "print('after')", timeout=3)
    assert [out.ename for out in nb.cells[0].outputs if out.output_type == "error"] == ["KeyboardInterrupt"]
    assert text(nb.cells[1]) == "after\n"


def test_a_dead_kernel_is_seen_as_dead(tmp_path, server):
    with pytest.raises(DeadKernelError):
        run(tmp_path, "import os\nos._exit(3)", "print('never')")


def test_the_figureless_backend_draws_nothing_and_closes_each_cells_figures(tmp_path):
    nb = run(tmp_path,
             "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1])\nfig.canvas.draw()\n"
             "print(fig.canvas.buffer_rgba().shape[-1])",
             "print(plt.get_fignums())\nplt.figure()\nplt.show()\nprint(plt.get_fignums())",
             env={**os.environ, "MPLBACKEND": FIGURELESS_BACKEND})
    assert text(nb.cells[0]) == "4\n"  # a figure the code draws itself is drawn
    assert text(nb.cells[1]) == "[]\n[]\n"
    assert not [out for cell in nb.cells for out in cell.outputs if out.output_type != "stream"]


def test_the_server_takes_its_kernels_with_it(tmp_path, server):
    km = ForkingKernelManager()
    asyncio.run(km.start_kernel(cwd=str(tmp_path)))
    pid = km.provisioner.pid
    os.kill(pid, 0)  # running
    assert km.transport == "ipc" and os.path.isabs(km.ip)  # Unix sockets of its own: no port to share
    ForkServer.get().close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the kernel outlived its fork server")


def _kernel_at_least(major: int, minor: int) -> bool:
    return tuple(int(part) for part in os.uname().release.split(".")[:2]) >= (major, minor)


@pytest.mark.skipif(not (_kernel_at_least(6, 1) and os.path.exists("/sys/kernel/mm/transparent_hugepage")),
                    reason="MADV_COLLAPSE needs Linux 6.1 with transparent huge pages")
def test_the_servers_warm_memory_lies_in_huge_pages():
    """Three forks a kernel copy the server's page tables: its anonymous memory is collapsed into 2 MB pages (most
    of it; malloc's heap alone is about half)."""
    server = ForkServer(sandboxed=False)
    try:
        assert server.sandbox  # the first reply comes after the warm-up
        with open(f"/proc/{server.process.pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup.read().splitlines()[1:])
    finally:
        server.close()
    anonymous, huge = (int(fields[key].split()[0]) for key in ("Anonymous", "AnonHugePages"))
    assert anonymous > 300_000 and huge / anonymous > 0.7, (anonymous, huge)


def test_the_course_configuration_grades_in_forked_figureless_kernels(tmp_path):
    """nbgrader's Execute rebuilds itself from the configuration on each notebook: the fork server and the
    figureless backend must come from nbgrader_config.py, and they do."""
    from grader_tests.engine.course import nbgrader_api
    from grader_tests.engine.nbgrader_plugins import GuardedExecute

    execute = GuardedExecute(config=nbgrader_api().config)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, matplotlib\n"
        "print(any(m.startswith(('grader_tests.engine', 'grader_tests.judges')) for m in sys.modules), "
        "matplotlib.get_backend())")])
    before = ForkServer.get().process.pid
    execute.preprocess(nb, {"metadata": {"path": str(tmp_path)}})
    assert ForkServer.get().process.pid == before  # forked by this process's server (which imported the engine
    # but never the judges: neither is in the kernel)
    assert text(nb.cells[0]).split() == ["False", FIGURELESS_BACKEND]


def test_the_server_draws_the_data_sets_that_graded_runs_draw():
    """What the cells grading runs draw with literal arguments (helpers keeps the renders: kernels start with
    them); not what only skipped cells draw (notebook 9's 120 crops feed figures, no test)."""
    draws = graded_draws()
    assert ("load_demo", (), {}) in draws
    assert ("make_shortcut_dataset", (120,), {"seed": 1401}) in draws
    assert ("make_shortcut_dataset", (120,), {"seed": 1401, "kind": "random"}) in draws
    assert not [draw for draw in draws if draw[2].get("crop") == 112 and draw[1] == (120,)]
    assert all(function in DATASETS for function, _, _ in draws)


def test_a_grading_kernel_has_no_debugger_and_lists_no_modules_for_one(tmp_path, server):
    nb = run(tmp_path, "import sys\nimport ipykernel.ipkernel, ipykernel.kernelapp\nkernel = get_ipython().kernel\n"
                       "app = ipykernel.kernelapp.IPKernelApp.instance()\n"
                       "print(type(kernel).__name__, isinstance(kernel, ipykernel.ipkernel.IPythonKernel), "
                       "hasattr(kernel, 'debugger'), kernel._kernel_modules, ipykernel.ipkernel.sys is sys, "
                       "'torch' in sys.modules, type(app).__name__, app.connection_file.endswith('kernel.json'))")
    assert text(nb.cells[0]).split() == ["GradingKernel", "True", "False", "[]", "True", "True", "GradingKernelApp",
                                         "True"]
