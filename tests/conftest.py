import contextlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pytest
import torch
from script_loader import load_script

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def pretrained():
    from helpers.pretrained import load_pretrained

    return load_pretrained()


@pytest.fixture(scope="session")
def measure_model():
    """scripts/measure_model.py (the README's model figures)."""
    return load_script("measure_model")


@pytest.fixture(scope="session")
def small_model():
    """A tiny random VGG11GAP in eval mode: fast, for mechanics that do not need training."""
    from helpers.models import VGG11GAP

    torch.manual_seed(0)
    return VGG11GAP(6, width=1 / 16).eval()


@contextlib.contextmanager
def grading_in(folder: Path) -> Iterator[Path]:
    """Point the grader at a scratch folder (nbgrader_config.py and the workers read the variable)."""
    from grader_tests.engine import grade

    patch = pytest.MonkeyPatch()
    patch.setenv("VISUALIZING_CNNS_GRADING", str(folder))
    patch.setattr(grade, "GRADING", folder)
    patch.setattr(grade, "MAIN_DB", folder / "gradebook.db")
    try:
        yield folder
    finally:
        patch.undo()
