import matplotlib.pyplot as plt
import pytest
import torch

from helpers.plotting import normalize_map, overlay_heatmap, plot_activations, plot_filters, show_images


def test_normalize_map_range_and_degenerate_maps():
    m = normalize_map(torch.tensor([[1.0, 3.0], [2.0, 5.0]]))
    assert m.min() == 0 and m.max() == 1
    for degenerate in (torch.zeros(4, 4), torch.full((4, 4), 7.0)):
        out = normalize_map(degenerate)
        assert torch.equal(out, torch.zeros(4, 4))


def test_normalize_map_per_slice():
    x = torch.stack([torch.arange(4.0), torch.full((4,), 2.0), 10 * torch.arange(4.0)])
    out = normalize_map(x, dims=(1,))
    torch.testing.assert_close(out[0], out[2])
    assert torch.equal(out[1], torch.zeros(4))


def test_filter_grid_per_filter_and_joint():
    w = torch.randn(10, 3, 3, 3)
    w[3] = 0  # a dead filter must not produce NaNs
    for per_filter in (True, False):
        fig = plot_filters(w, "conv1", per_filter=per_filter, ncols=8)
        shown = [ax.images[0].get_array() for ax in fig.axes if ax.images]
        assert len(shown) == 10 and all(a.shape == (3, 3, 3) for a in shown)
        assert all(a.min() >= 0 and a.max() <= 1 for a in shown)
        plt.close(fig)
    with pytest.raises(ValueError, match="RGB"):
        plot_filters(torch.randn(4, 8, 3, 3))


def test_activation_grid_and_overlay():
    fig = plot_activations(torch.randn(1, 40, 8, 8), "bn4_1", max_channels=16)
    assert sum(bool(ax.images) for ax in fig.axes) == 16
    plt.close(fig)
    ax = overlay_heatmap(torch.zeros(3, 32, 32), torch.rand(4, 4))
    assert ax.images[1].get_array().shape == (32, 32)
    plt.close("all")
    fig = show_images(torch.zeros(3, 3, 16, 16), ["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a", "b", "c"]
    plt.close(fig)
