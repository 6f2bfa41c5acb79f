"""Helpers for the "Visualizing CNNs" course: the embedded model, the synthetic-shapes data, hooks, plots."""
