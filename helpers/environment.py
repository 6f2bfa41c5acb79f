"""Check that the course can run here: ``python -m helpers.environment`` (the notebooks call :func:`check`)."""

from __future__ import annotations

import platform
import sys

import torch

from .pretrained import CHECKPOINT, CHECKPOINT_SHA256, sha256

MIN_PYTHON = (3, 10)


def check() -> str:
    """Verify Python, PyTorch and the embedded checkpoint; return a one-line report, raise with the fix."""
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"Python {platform.python_version()} is too old; the course needs >= 3.10")
    if not CHECKPOINT.is_file():
        raise RuntimeError(f"the embedded checkpoint {CHECKPOINT} is missing: reinstall with `pip install -e .`")
    if sha256(CHECKPOINT) != CHECKPOINT_SHA256:
        raise RuntimeError(
            f"the embedded checkpoint {CHECKPOINT} is corrupt: copy helpers/weights/ again from the course zip "
            "(in a clone of the repository: `git checkout -- helpers/weights`)"
        )
    device = "CUDA available" if torch.cuda.is_available() else "CPU only"
    return (
        f"ok: Python {platform.python_version()}, torch {torch.__version__} ({device}, "
        f"{torch.get_num_threads()} threads), embedded checkpoint verified"
    )


if __name__ == "__main__":
    print(check())
