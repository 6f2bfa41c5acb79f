"""A real browser for the tests: Debian's Chromium driven by Playwright, and a throw-away JupyterLab server.

Playwright cannot download its own browsers here, so it drives the system's Chromium (``/usr/bin/chromium``,
``make browser`` or ``apt-get install chromium``). :func:`why_no_browser` says why the browser tests cannot run,
for a skip message. :class:`JupyterLab` serves a folder on a free local port with a token, its configuration,
settings, workspaces and runtime files in a scratch folder, no network calls (no news, no update check, no
extension manager), and ends with every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("VISUALIZING_CNNS_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "build" / "test-screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # root in a container: Chromium's own sandbox needs user namespaces it may not get
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def why_no_browser() -> str | None:
    """None when Playwright and Chromium are there; otherwise what is missing and how to get it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: `make env` (or `pip install -e '.[dev]'`) installs it"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"no Chromium at {CHROMIUM}: `make browser` as root, or `sudo apt-get install chromium`, "
                "enables the browser tests")
    return None


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright ``Browser``) with a fresh profile of its own."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def screenshot_on_failure(page, name: str, focus: str | None = None) -> Iterator[None]:
    """On an exception, save the page as ``build/test-screenshots/<name>.png`` (and its HTML), then re-raise;
    ``focus``: a selector to scroll into view first where it matches (JupyterLab scrolls inside the page)."""
    try:
        yield
    except BaseException:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        if focus:
            with contextlib.suppress(Exception):
                page.locator(focus).first.scroll_into_view_if_needed(timeout=2_000)
        with contextlib.suppress(Exception):
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True, timeout=10_000)
            (SCREENSHOTS / f"{name}.html").write_text(page.content())
        raise


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` of this environment serving ``root_dir`` on a free local port; a context manager.

    ``url(path)`` is the address of ``/lab/tree/<path>`` with the token. Everything JupyterLab would write
    outside ``root_dir`` (configuration, settings, workspaces, runtime files, IPython's history) goes to
    ``state_dir``. Notebooks render all their cells (``windowingMode: none``) so a test sees every cell.
    """

    def __init__(self, root_dir: Path, state_dir: Path, start_timeout: float = 60) -> None:
        self.root_dir, self.state_dir, self.start_timeout = Path(root_dir), Path(state_dir), start_timeout
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.log_path = self.state_dir / "jupyterlab.log"

    def url(self, notebook: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}"

    def _environment(self) -> dict[str, str]:
        config, settings = self.state_dir / "config", self.state_dir / "settings"
        (config / "labconfig").mkdir(parents=True, exist_ok=True)
        (config / "jupyter_server_config.json").write_text(json.dumps({
            "LabApp": {
                "news_url": None,
                "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
                "extension_manager": "readonly",
            },
        }))
        # No "would you like news?" prompt in the page.
        (config / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
        tracker = settings / "@jupyterlab" / "notebook-extension"
        tracker.mkdir(parents=True, exist_ok=True)
        (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
        env.update(
            JUPYTER_CONFIG_DIR=str(config),
            JUPYTER_RUNTIME_DIR=str(self.state_dir / "runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(settings),
            JUPYTERLAB_WORKSPACES_DIR=str(self.state_dir / "workspaces"),
            IPYTHONDIR=str(self.state_dir / "ipython"),
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        return env

    def __enter__(self) -> JupyterLab:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        jupyter_lab = Path(sys.executable).parent / "jupyter-lab"
        command = [
            str(jupyter_lab) if jupyter_lab.exists() else shutil.which("jupyter-lab") or "jupyter-lab",
            "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root_dir}",
        ]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._environment(),
                                            cwd=self.root_dir, start_new_session=True)
        try:
            self._wait_until_up()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_until_up(self) -> None:
        status = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.process.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(status, timeout=2) as answer:
                    if answer.status == 200:
                        return
            time.sleep(0.2)
        raise TimeoutError(f"jupyter lab did not answer within {self.start_timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:] if self.log_path.exists() else ""

    def __exit__(self, *exc_info) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # the server shuts its kernels down
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # whatever of its session is left (a kernel that hung)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
