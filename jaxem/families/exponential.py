"""Exponential components: density ``rate · exp(-rate · x)`` on ``x >= 0``.

``(N,)`` data gives a scalar ``rate`` per component; ``(N, D)`` data is treated
as D independent features (``rate`` of shape ``(D,)`` per component).

Closed-form MAP with ``rate_prior=priors.Gamma(a, b)`` (concentration ``a >= 1``,
rate ``b``) or none: ``rate = (Σ w r + a - 1) / (Σ w r x + b)``; maximum
likelihood ``rate = Σ w r / Σ w r x``. Both are the exact maximisers of
``Q + log prior`` where they exist:

* maximum likelihood with ``Σ w r x = 0`` (an empty component, or one that
  sees only zeros, whose likelihood grows without bound as rate → ∞): no
  maximiser, the current rate is kept;
* ``a = 1`` and an empty component: the supremum is at rate → 0; the update
  returns a tiny positive floor.

Any other prior uses the gradient M-step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints, priors
from jaxem.families._seeding import as_rows, kmeans_plus_plus
from jaxem.families.base import Family, check_prior, register_m_step

__all__ = ["Exponential", "ExponentialParams"]


def _floor(dtype) -> jax.Array:
    # sqrt(tiny): positive, and its log round-trips through exp without underflow.
    return jnp.sqrt(jnp.finfo(dtype).tiny)


class ExponentialParams(NamedTuple):
    """Per-component ``rate`` (1 / mean).

    ``(K,)`` for ``(N,)`` data, ``(K, D)`` for ``(N, D)`` data.
    """

    rate: jax.Array


class Exponential(Family):
    """Exponential(rate) component density on ``x >= 0``.

    Args:
        rate_prior: prior on each rate: ``priors.Gamma(concentration, rate)``
            with concentration >= 1 (closed form), any other prior or a
            function ``rate -> log density`` (gradient M-step).

    Example:
        >>> model = em.Mixture(em.Exponential(rate_prior=priors.Gamma(2.0, 1.0)), n_components=2)
        >>> res = em.fit(model, waiting_times, key=jax.random.key(0), restarts=16)
        >>> 1 / res.params.components.rate             # (2,) component means
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"rate": constraints.positive}

    name = "exponential"
    hyperparameters = ()
    params_type = ExponentialParams

    def __init__(self, *, rate_prior=None):
        self.priors = {"rate": check_prior(type(self).__name__, "rate", rate_prior)}
        prior = self.priors["rate"]
        if isinstance(prior, priors.Gamma) and np.any(prior.concentration < 1):
            # With a < 1 the posterior of a component with less than 1 - a
            # units of weight is unbounded at rate = 0: no mode exists.
            raise ValueError(
                f"{type(self).__name__}: rate_prior=priors.Gamma(concentration, rate) needs "
                f"concentration >= 1 for the posterior mode to exist; got "
                f"concentration={prior.concentration}."
            )

    def validate_data(self, x):
        if not np.all(x >= 0):
            bad = x[~(x >= 0)].ravel()[:3]
            raise ValueError(
                f"{type(self).__name__}: x must be >= 0 (the exponential density's support); "
                f"found e.g. {bad.tolist()}. Shift the data or use a family on the real line."
            )

    def log_prob(self, params, x):
        rate = params.rate
        lp = jnp.log(rate) - rate * x
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        rate = jnp.asarray(params.rate)
        return jax.random.exponential(key, (n,) + rate.shape, rate.dtype) / rate

    def init(self, key, x, n_components):
        """k-means++ clusters; their means shrunk towards the overall mean, inverted."""
        resp, _ = kmeans_plus_plus(key, x, n_components)
        rows = as_rows(x)
        counts = resp.sum(0)[:, None]
        mean = (resp.T @ rows + rows.mean(0)) / (counts + 1)
        # Zero only for a feature that is zero everywhere; keep the rate finite.
        rate = 1 / jnp.maximum(mean, _floor(x.dtype))
        return ExponentialParams(rate=rate.reshape((n_components,) + x.shape[1:]))

    def location(self, components):
        return 1.0 / np.asarray(components.rate, dtype=np.float64)  # the mean


class ExponentialStats(NamedTuple):
    n: jax.Array  # (K,)      Σ w r
    sx: jax.Array  # (K, ...)  Σ w r x


def _stats(family, params, x, resp, sample_weight):
    wr = resp * sample_weight[:, None]
    sx = jnp.matmul(wr.T, as_rows(x), precision=jax.lax.Precision.HIGHEST)
    return ExponentialStats(n=wr.sum(0), sx=sx.reshape(params.rate.shape))


def _update(family, params, stats):
    n = stats.n.reshape(stats.n.shape + (1,) * (params.rate.ndim - 1))
    prior = family.priors["rate"]
    if prior is None:
        num, den = n, stats.sx
    else:
        a = jnp.asarray(prior.concentration, stats.sx.dtype)
        b = jnp.asarray(prior.rate, stats.sx.dtype)
        num, den = n + a - 1, stats.sx + b
    # den == 0: maximum likelihood with no positive data in the component, where
    # the objective has no maximiser (it grows with the rate, or is flat).
    rate = num / jnp.where(den > 0, den, 1)
    rate = jnp.where((den > 0) & jnp.isfinite(rate), rate, params.rate)
    # num == 0 (a = 1, empty component): the supremum is at rate -> 0.
    return ExponentialParams(rate=jnp.maximum(rate, _floor(rate.dtype)))


def _applies(family):
    prior = family.priors["rate"]
    return prior is None or type(prior) is priors.Gamma


register_m_step(Exponential, _update, sufficient_stats=_stats, applies=_applies)
