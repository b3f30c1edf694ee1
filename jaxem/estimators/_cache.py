"""The module-level model cache, and the row padding that lets fits share compiled programs.

XLA compiles one program per model and data shape. Models are cached by their
settings (an estimator holds none, so it pickles), and the rows handed to
``em.fit`` are padded to a bucket size.
"""

from __future__ import annotations

import collections

import jax
import numpy as np

from jaxem import _buckets
from jaxem.mixture import Mixture


def _pad_rows(x: np.ndarray, w: np.ndarray):
    """Repeat rows up to the bucket size (at least 64), splitting each row's weight among
    its copies (:mod:`jaxem._buckets`): fits on different numbers of rows share a program.
    """
    pad = _buckets.index(x.shape[0], floor=64)
    if pad is None:
        return x, w
    idx, share = pad
    return x[idx], w[idx] * share


class _Entry:
    """A cached model and the small jitted helpers built around it."""

    def __init__(self, model: Mixture):
        self.model = model
        self._draw = None
        self._log_joint = None
        self._sample = None

    def draw(self, keys, x):
        """``R`` random starts, one per key (one compiled program)."""
        if self._draw is None:
            self._draw = jax.jit(jax.vmap(self.model._draw, in_axes=(0, None)))
        return self._draw(keys, x)

    def log_joint(self, params, x, observed=None):
        if self._log_joint is None:
            self._log_joint = jax.jit(self.model.log_joint)
        return self._log_joint(params, x, observed)

    def sample(self, key, params, n: int):
        if self._sample is None:  # eager, sampling dispatches hundreds of small ops
            self._sample = jax.jit(self.model.sample, static_argnums=2)
        return self._sample(key, params, n)


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


def _cached(key, build) -> _Entry:
    """The model for these settings, built once (its compiled programs live on it)."""
    entry = _CACHE.get(key)
    if entry is None:
        entry = _Entry(build())
        _CACHE[key] = entry
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return entry
