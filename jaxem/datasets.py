"""Small real data sets shipped with jaxem."""

from __future__ import annotations

import csv
from importlib import resources

import numpy as np

__all__ = ["load_faithful"]


def load_faithful() -> np.ndarray:
    """Old Faithful geyser eruptions: ``(272, 2)`` float64, columns (duration min, waiting min).

    Example:
        >>> x = em.datasets.load_faithful()
        >>> x.shape
        (272, 2)
    """
    with resources.files("jaxem").joinpath("data/faithful.csv").open() as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(r["duration"]), float(r["waiting"])] for r in rows])
