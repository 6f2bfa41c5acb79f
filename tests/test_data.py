import pytest
import torch

import helpers.data
from helpers.data import CLASSES, IMAGE_SIZE, _draw, _generator, _sample_scene, load_demo, make_dataset
from helpers.images import MEAN, STD, denormalize, image_tensor_to_numpy, normalize, numpy_to_image_tensor


def test_shapes_and_dtypes():
    images, labels, masks = make_dataset(5, seed=3, size=64)
    assert images.shape == (5, 3, 64, 64) and images.dtype == torch.float32
    assert labels.shape == (5,) and labels.dtype == torch.int64
    assert masks.shape == (5, 64, 64) and masks.dtype == torch.bool
    assert labels.min() >= 0 and labels.max() < len(CLASSES)
    assert len(CLASSES) >= 6


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = make_dataset(4, 7, 48)
    _draw.cache_clear()  # drawn again, not the kept render
    b, c = make_dataset(4, 7, 48), make_dataset(4, 8, 48)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a.images, c.images)


def _counting_renders(monkeypatch):
    calls = []
    render = helpers.data._render
    monkeypatch.setattr(helpers.data, "_render", lambda *args, **kwargs: calls.append(1) or render(*args, **kwargs))
    _draw.cache_clear()
    return calls


def test_a_set_drawn_again_is_the_kept_render_and_each_caller_gets_its_own_copy(monkeypatch):
    calls = _counting_renders(monkeypatch)
    first = make_dataset(3, 21, 40)
    drawn = len(calls)
    first.images.zero_()  # a caller changes its copy
    second, third = make_dataset(3, 21, 40), load_demo(40)
    assert len(calls) == drawn + 1  # the second set was not drawn again; the demo set was
    _draw.cache_clear()
    fresh = make_dataset(3, 21, 40)
    for kept, drawn_again in zip(second, fresh):
        assert torch.equal(kept, drawn_again)
    assert second.images.data_ptr() != make_dataset(3, 21, 40).images.data_ptr()
    assert type(second) is type(fresh) and third.images.shape == (len(CLASSES), 3, 40, 40)


def test_sets_larger_than_the_budget_are_drawn_each_time(monkeypatch):
    calls = _counting_renders(monkeypatch)
    monkeypatch.setattr(helpers.data, "_KEPT_BYTES", 1000)  # under one 16 x 16 image
    make_dataset(1, 3, 16)
    make_dataset(1, 3, 16)
    assert len(calls) == 2


def test_image_depends_only_on_seed_and_index():
    whole = make_dataset(6, 11, 40)
    tail = make_dataset(2, 11, 40, start=4)
    for x, y in zip(whole, tail):
        assert torch.equal(x[4:], y)


def test_masks_are_exactly_the_pixels_drawn_in_the_object_colour():
    images, _, masks = make_dataset(12, 5, 96, noise=0.0)
    for i in range(12):
        colour = _sample_scene(_generator(5, i), 96)["colour"]
        pixels = denormalize(images[i])
        drawn = (pixels - colour.view(3, 1, 1)).abs().amax(0) < 1e-5
        assert masks[i].any()
        assert torch.equal(drawn, masks[i])


def test_normalised_like_imagenet_inputs():
    images = make_dataset(32, 2, 64).images
    assert images.mean().abs() < 1.0
    assert torch.allclose(normalize(denormalize(images)), images, atol=1e-5)


def test_all_classes_appear_and_objects_are_a_small_part_of_the_image():
    _, labels, masks = make_dataset(240, 9, 64)
    assert set(labels.tolist()) == set(range(len(CLASSES)))
    share = masks.float().mean((1, 2))
    assert 0.005 < share.min() and share.max() < 0.35


def test_demo_set_has_one_image_per_class():
    demo = load_demo()
    assert demo.labels.tolist() == list(range(len(CLASSES)))
    assert demo.images.shape == (len(CLASSES), 3, IMAGE_SIZE, IMAGE_SIZE)


def test_numpy_round_trip():
    image = make_dataset(1, 0, 32).images[0]
    array = image_tensor_to_numpy(image.requires_grad_())
    assert array.shape == (32, 32, 3) and array.min() >= 0 and array.max() <= 1
    assert torch.allclose(numpy_to_image_tensor(array), image.detach(), atol=1e-5)
    assert torch.allclose(numpy_to_image_tensor((array * 255).round().astype("uint8")), image.detach(), atol=0.02)


def test_normalize_constants_and_bad_shapes():
    grey = torch.tensor(MEAN).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(normalize(grey), torch.zeros(3, 2, 2))
    assert torch.allclose(denormalize(torch.ones(3, 1, 1))[:, 0, 0], (torch.tensor(MEAN) + torch.tensor(STD)).clamp(0, 1))
    with pytest.raises(ValueError, match="shape"):
        normalize(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="n >= 0"):
        make_dataset(-1, 0)


def test_crops_are_windows_of_the_full_scenes_holding_the_whole_object():
    full, crops = make_dataset(24, 4, 160), make_dataset(24, 4, 160, crop=96)
    assert crops.images.shape == (24, 3, 96, 96)
    torch.testing.assert_close(crops.masks.sum((1, 2)), full.masks.sum((1, 2)))  # whole object inside
    for i in range(24):
        ox, oy = _sample_scene(_generator(4, i), 160, 96)["offset"].tolist()
        assert torch.equal(crops.masks[i], full.masks[i, oy : oy + 96, ox : ox + 96])
        torch.testing.assert_close(crops.images[i], full.images[i, :, oy : oy + 96, ox : ox + 96], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="crop"):
        make_dataset(1, 0, 160, crop=40)


def test_dilate_grows_a_point_into_a_square_and_pointing_game_uses_it():
    from helpers.metrics import dilate, pointing_game

    masks = torch.zeros(1, 9, 9, dtype=torch.bool)
    masks[0, 4, 4] = True
    grown = dilate(masks, 2)
    assert grown.sum() == 25 and grown[0, 2:7, 2:7].all()
    heat = torch.zeros(1, 9, 9)
    heat[0, 1, 4] = 1.0  # three pixels above the object
    assert not pointing_game(heat, masks, tolerance=2).item()
    assert pointing_game(heat, masks, tolerance=3).item()


def test_energy_in_mask_is_the_share_of_positive_heat_on_the_object():
    from helpers.metrics import energy_in_mask

    masks = torch.zeros(3, 2, 2, dtype=torch.bool)
    masks[:, 0, 0] = True
    heat = torch.tensor([[[3.0, 1.0], [0.0, 0.0]], [[-5.0, 1.0], [1.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(energy_in_mask(heat, masks), torch.tensor([0.75, 0.0, 0.0]))


# --- concept masks (notebook 08_dissection) ------------------------------------------------------------------

# sha256 (first 32 hex digits) of images, labels and masks, computed before make_concept_dataset was added: adding the
# concept masks must leave every output of make_dataset as it was, bit for bit.
OUTPUTS_BEFORE_CONCEPTS = {
    "make_dataset(10, 0)": "0be6a9933768c2e7cb0e3e8a8bbcc221",
    "make_dataset(6, 707, start=40)": "215e810b6637752a705e09706f3b4ce7",
    "make_dataset(9, 3, 96, noise=0.0)": "5e1eb252a0a4d9b0592117bd42508ba5",
    "make_dataset(8, 5, 160, crop=96)": "7bc0913333920da1d0dcb7895f31f14b",
    "make_dataset(4, 90210, 64)": "ea7114eb6868b0800e8934176d8343bd",
    "make_dataset(3, -17, 48, noise=0.1)": "5855bc68d0fb8a5576c4cd3a20b71749",
    "load_demo()": "737c475b9616a981edbfc2529edaf34a",
}
HASHED_WITH_TORCH = "2.14"


def _digest(batch) -> str:
    import hashlib

    digest = hashlib.sha256()
    for tensor in batch:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


@pytest.mark.skipif(not torch.__version__.startswith(HASHED_WITH_TORCH),
                    reason=f"the hashes were computed with torch {HASHED_WITH_TORCH} (float rounding may differ)")
@pytest.mark.parametrize("expression", list(OUTPUTS_BEFORE_CONCEPTS))
def test_outputs_are_those_from_before_the_concept_masks(expression):
    batch = eval(expression, {"make_dataset": make_dataset, "load_demo": load_demo})
    assert type(batch).__name__ == "ShapesBatch" and len(batch) == 3
    assert _digest(batch) == OUTPUTS_BEFORE_CONCEPTS[expression]


@pytest.mark.parametrize(("n", "seed", "size", "start", "noise"),
                         [(9, 0, 224, 0, 0.03), (5, 808, 96, 3, 0.0), (4, -2, 48, 11, 0.1)])
def test_concept_dataset_holds_the_same_images_labels_and_masks(n, seed, size, start, noise):
    from helpers.data import make_concept_dataset

    plain = make_dataset(n, seed, size, start=start, noise=noise)
    rich = make_concept_dataset(n, seed, size, start=start, noise=noise)
    for x, y in zip(plain, rich[:3]):
        assert torch.equal(x, y)


def test_concept_masks_partition_the_pixels_and_match_what_was_drawn():
    from helpers.data import CONCEPTS, N_BLOBS, N_LINES, SCENE_PARTS, make_concept_dataset

    n, size = 12, 96
    data = make_concept_dataset(n, 21, size, noise=0.0)
    assert data.concepts.shape == (n, len(CONCEPTS), size, size) and data.concepts.dtype == torch.bool
    assert CONCEPTS == CLASSES + SCENE_PARTS
    assert (data.concepts.sum(dim=1) == 1).all(), "every pixel belongs to exactly one concept"
    for i in range(n):
        label = int(data.labels[i])
        assert torch.equal(data.concepts[i, label], data.masks[i])
        assert not data.concepts[i, [c for c in range(len(CLASSES)) if c != label]].any()
        scene = _sample_scene(_generator(21, i), size)
        pixels = denormalize(data.images[i])
        for part, colours in (("line", scene["line_colours"]), ("blob", scene["blob_colours"])):
            mask = data.concepts[i, CONCEPTS.index(part)]
            if mask.any():  # each pixel of the part shows one of that part's colours, exactly (no noise)
                distance = (pixels[:, mask].T[:, None, :] - colours[None]).abs().amax(dim=2).amin(dim=1)
                assert distance.max() < 1e-5, part
    assert N_LINES > 0 and N_BLOBS > 0
    shares = data.concepts.float().mean(dim=(0, 2, 3))
    assert shares[CONCEPTS.index("background")] > 0.8 and shares[CONCEPTS.index("line")] > 0.005
