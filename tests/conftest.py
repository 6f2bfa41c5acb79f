import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def pretrained():
    from helpers.pretrained import load_pretrained

    return load_pretrained()


@pytest.fixture(scope="session")
def small_model():
    """A tiny random VGG11GAP in eval mode: fast, for mechanics that do not need training."""
    from helpers.models import VGG11GAP

    torch.manual_seed(0)
    return VGG11GAP(6, width=1 / 16).eval()
