"""Information criteria: free-parameter counts, BIC and AIC for any model.

The number of free parameters is the dimension of the unconstrained space
the model's constraints define (the space the gradient M-step works in): a
``(K,)`` simplex has ``K - 1``, a ``(D, D)`` covariance ``D (D + 1) / 2``, a
covariance shared by every component (``tied``) is counted once. For the
Gaussian mixtures this is scikit-learn's ``GaussianMixture._n_parameters``.
"""

from __future__ import annotations

import math

import jax
import numpy as np

from jaxem import _validation
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem.estep import log_likelihood
from jaxem.model import Model

__all__ = ["n_parameters", "bic", "aic"]


def n_parameters(model: Model, params, *, fixed=None) -> int:
    """Number of free parameters of ``model`` at ``params`` (shapes only).

    Args:
        model: an ``em.Model`` or ``em.Mixture``.
        params: a parameter pytree of the model (e.g. ``FitResult.params``).
        fixed: what ``em.fit(..., fixed=...)`` held fixed: not counted. With
            some mixture weights fixed, the free ones share what those leave,
            so they count one fewer than there are.

    Example:
        >>> em.n_parameters(em.Mixture(em.Normal(), 3), res.params)   # 2 + 3 + 3 = 8
        >>> em.n_parameters(model, res.params, fixed={"weights"})     # 6
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    leaves = _constraints.broadcast(model.constraints, params)
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    values = jax.tree.leaves(params)
    masks = _fixed.resolve(
        fixed, params, model.constraints, model._event_masks_ok, model._shared_leaf
    )
    flags = [None] * len(values) if masks is None else jax.tree.leaves(masks)
    free = sum(
        _fixed.n_free(c, tuple(np.shape(v)), m) for c, v, m in zip(cons, values, flags, strict=True)
    )
    return free - model._structural_zeros(params, masks)


def bic(model: Model, params, x, *, fixed=None, lengths=None) -> float:
    """Bayesian information criterion ``-2 log L + p log N`` (lower is better).

    Args:
        model: an ``em.Model`` or ``em.Mixture``.
        params: its parameters (e.g. ``FitResult.params``).
        x: ``(N,)`` or ``(N, D)`` data, or a pytree of arrays of N units;
            ``log L`` is summed over its rows (units).
        fixed: the ``fixed=`` of the fit: fixed parameters are not counted.
        lengths: for an ``em.HMM``, the sequence lengths (``N`` is then the
            number of observations, all steps of all sequences, as hmmlearn's).

    Example:
        >>> em.bic(model, res.params, x)
    """
    ll = float(log_likelihood(model, params, x, lengths=lengths))  # validates x first
    units = model._as_units(x, lengths)
    n = (
        model._n_observations(units)
        if _validation.is_unit_tree(units)
        else _validation.as_float_array(units).shape[0]
    )
    return -2.0 * ll + n_parameters(model, params, fixed=fixed) * math.log(n)


def aic(model: Model, params, x, *, fixed=None, lengths=None) -> float:
    """Akaike information criterion ``-2 log L + 2 p`` (lower is better).

    Example:
        >>> em.aic(model, res.params, x)
    """
    ll = float(log_likelihood(model, params, x, lengths=lengths))
    return -2.0 * ll + 2.0 * n_parameters(model, params, fixed=fixed)
