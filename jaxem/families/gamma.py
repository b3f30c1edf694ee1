"""Gamma components over positive data: ``concentration`` and ``rate``.

``(N,)`` data gives scalar parameters per component; ``(N, D)`` data is
treated as D independent gamma features (parameters ``(D,)`` per component).

No closed form is registered (the ML concentration solves
``log a - ψ(a) = log mean - mean log``, which has none), so the M-step is the
gradient one on ``Q + log prior`` in ``(log concentration, log rate)``.

This is the family ``jaxem.families.gamma.Gamma``; the prior of the same name
is ``jaxem.priors.Gamma``. Both are parametrised the same way (shape
``concentration``, inverse scale ``rate``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from jaxem import constraints
from jaxem.families._seeding import as_rows, kmeans_plus_plus
from jaxem.families.base import Family, check_prior

__all__ = ["Gamma", "GammaParams"]


class GammaParams(NamedTuple):
    """Per-component ``concentration`` and ``rate``: ``(K,)`` or ``(K, D)``.

    The mean is ``concentration / rate``, the variance ``concentration / rate**2``.
    """

    concentration: jax.Array
    rate: jax.Array


class Gamma(Family):
    """Gamma(concentration, rate) component density on x > 0.

    ``log f(x) = a log b + (a - 1) log x - b x - log Γ(a)``.

    Args:
        concentration_prior, rate_prior: priors on each field: any
            ``priors`` object or a function ``value -> log density`` (both use
            the gradient M-step).

    Example:
        >>> from jaxem.families.gamma import Gamma      # em.Gamma; not priors.Gamma
        >>> res = em.fit(em.Mixture(Gamma(), n_components=2), x, key=jax.random.key(0), restarts=4)
        >>> res.params.components.concentration, res.params.components.rate   # (2,), (2,)
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"concentration": constraints.positive, "rate": constraints.positive}

    name = "gamma"
    hyperparameters = ()
    params_type = GammaParams

    def __init__(self, *, concentration_prior=None, rate_prior=None):
        name = type(self).__name__
        self.priors = {
            "concentration": check_prior(name, "concentration", concentration_prior),
            "rate": check_prior(name, "rate", rate_prior),
        }

    def validate_data(self, x):
        if not np.all(x > 0):
            bad = x[~(x > 0)].ravel()[:3]
            raise ValueError(
                f"{type(self).__name__}: x must be > 0 (the gamma density lives on the positive "
                f"half-line); found e.g. {bad.tolist()}. Drop or shift those entries, or use a "
                "family on the real line."
            )

    def log_prob(self, params, x):
        a, b = params.concentration, params.rate
        lp = xlogy(a, b) + xlogy(a - 1, x) - b * x - gammaln(a)
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        a = jnp.asarray(params.concentration)
        draws = jax.random.gamma(key, a, (n,) + a.shape, a.dtype)
        return draws / params.rate

    def init(self, key, x, n_components):
        """k-means++ on log x; moment estimates per cluster shrunk to the data's."""
        # Gamma data are skewed: cluster on the log scale, where spreads are comparable.
        resp, _ = kmeans_plus_plus(key, jnp.log(x), n_components)
        rows = as_rows(x)
        counts = resp.sum(0)[:, None]  # (K, 1)
        global_mean = jnp.mean(rows, axis=0)
        global_var = jnp.var(rows, axis=0)
        mean = (resp.T @ rows + global_mean) / (counts + 1)
        sq = jnp.einsum("nk,nkd->kd", resp, (rows[:, None, :] - mean[None]) ** 2)
        var = (sq + global_var) / (counts + 1)
        tiny = jnp.finfo(x.dtype).tiny
        var = jnp.maximum(var, 10 * jnp.finfo(x.dtype).eps * mean * mean + tiny)
        # Method of moments: mean = a / b, var = a / b².
        conc = jnp.clip(mean * mean / var, 1e-2, 1e4)
        rate = conc / mean
        shape = (n_components,) + x.shape[1:]
        return GammaParams(concentration=conc.reshape(shape), rate=rate.reshape(shape))

    def location(self, components):
        concentration = np.asarray(components.concentration, dtype=np.float64)
        return concentration / np.asarray(components.rate, dtype=np.float64)  # the mean
