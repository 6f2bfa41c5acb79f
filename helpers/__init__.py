"""Helpers for the "Visualizing CNNs" course: the embedded model, the synthetic-shapes data, hooks, plots.

Nothing here solves a graded task; the notebooks import what they need::

    import helpers
    model = helpers.load_pretrained()
    images, labels, masks = helpers.load_demo()
"""

from .data import (
    CLASSES,
    CONCEPTS,
    IMAGE_SIZE,
    ConceptBatch,
    ShapesBatch,
    ShortcutBatch,
    load_demo,
    make_concept_dataset,
    make_dataset,
    make_shortcut_dataset,
)
from .environment import limit_threads
from .hooks import capture_activations
from .images import denormalize, gaussian_blur, image_tensor_to_numpy, normalize, numpy_to_image_tensor
from .inference import accuracy, evaluating, predict
from .metrics import dilate, energy_in_mask, on_object_ratio, pointing_game
from .models import VGG11GAP, VGG11Backbone, VGG11Classification
from .plotting import normalize_map, overlay_heatmap, plot_activations, plot_filters, show_images
from .pretrained import load_imagenet_vgg11, load_pretrained
from .tables import load_attribution_table

limit_threads()  # torch's threads: the CPU this process may really use (affinity, cgroup quota), not every core

__all__ = [
    "CLASSES", "CONCEPTS", "ConceptBatch", "IMAGE_SIZE", "ShapesBatch", "ShortcutBatch", "VGG11Backbone",
    "VGG11Classification", "VGG11GAP", "accuracy", "capture_activations", "denormalize", "dilate", "energy_in_mask",
    "evaluating", "gaussian_blur", "image_tensor_to_numpy", "load_attribution_table", "load_demo",
    "load_imagenet_vgg11", "load_pretrained", "make_concept_dataset", "make_dataset", "make_shortcut_dataset",
    "normalize", "normalize_map", "numpy_to_image_tensor", "on_object_ratio", "overlay_heatmap", "plot_activations",
    "plot_filters", "pointing_game", "predict", "show_images",
]
