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
from jaxem.estep import log_likelihood
from jaxem.model import Model

__all__ = ["n_parameters", "bic", "aic"]


def n_parameters(model: Model, params) -> int:
    """Number of free parameters of ``model`` at ``params`` (shapes only).

    Args:
        model: an ``em.Model`` or ``em.Mixture``.
        params: a parameter pytree of the model (e.g. ``FitResult.params``).

    Example:
        >>> em.n_parameters(em.Mixture(em.Normal(), 3), res.params)   # 2 + 3 + 3 = 8
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    leaves = _constraints.broadcast(model.constraints, params)
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    values = jax.tree.leaves(params)
    return sum(c.n_free(tuple(np.shape(v))) for c, v in zip(cons, values, strict=True))


def bic(model: Model, params, x) -> float:
    """Bayesian information criterion ``-2 log L + p log N`` (lower is better).

    Args:
        model: an ``em.Model`` or ``em.Mixture``.
        params: its parameters (e.g. ``FitResult.params``).
        x: ``(N,)`` or ``(N, D)`` data; ``log L`` is summed over its rows.

    Example:
        >>> em.bic(model, res.params, x)
    """
    n = _validation.as_float_array(x).shape[0]
    ll = float(log_likelihood(model, params, x))
    return -2.0 * ll + n_parameters(model, params) * math.log(n)


def aic(model: Model, params, x) -> float:
    """Akaike information criterion ``-2 log L + 2 p`` (lower is better).

    Example:
        >>> em.aic(model, res.params, x)
    """
    ll = float(log_likelihood(model, params, x))
    return -2.0 * ll + 2.0 * n_parameters(model, params)
