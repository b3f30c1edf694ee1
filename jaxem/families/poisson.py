"""Poisson components: the ``rate`` of counts.

``(N,)`` counts give a scalar ``rate`` per component; ``(N, D)`` data is treated
as D independent count features (``rate`` of shape ``(D,)`` per component).

Closed-form MAP with ``rate_prior=priors.Gamma(a, b)`` (concentration ``a >= 1``,
rate ``b``) or none: ``rate = (Σ w r x + a - 1) / (Σ w r + b)``; maximum
likelihood ``rate = Σ w r x / Σ w r``. Both are the exact maximisers of
``Q + log prior``. Where the maximiser sits on the boundary ``rate = 0`` (a
component that saw only zeros under maximum likelihood or a = 1) the update
returns a tiny positive floor, whose objective is within ``floor · Σ w r`` of
the supremum; where it is undefined (an empty component under maximum
likelihood) the current rate is kept. Any other prior uses the gradient M-step.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from jaxem import constraints, priors
from jaxem.families._seeding import as_rows, kmeans_plus_plus
from jaxem.families.base import Family, check_prior, register_m_step

__all__ = ["Poisson", "PoissonParams"]


def _floor(dtype) -> jax.Array:
    # sqrt(tiny): positive, and its log round-trips through exp without underflow.
    return jnp.sqrt(jnp.finfo(dtype).tiny)


class PoissonParams(NamedTuple):
    """Per-component ``rate`` (the mean count).

    ``(K,)`` for ``(N,)`` data, ``(K, D)`` for ``(N, D)`` data.
    """

    rate: jax.Array


class Poisson(Family):
    """Poisson(rate) component density over counts 0, 1, 2, ...

    Args:
        rate_prior: prior on each rate: ``priors.Gamma(concentration, rate)``
            with concentration >= 1 (closed form), any other prior or a
            function ``rate -> log density`` (gradient M-step).

    Example:
        >>> model = em.Mixture(em.Poisson(rate_prior=priors.Gamma(2.0, 0.1)), n_components=3)
        >>> res = em.fit(model, counts, key=jax.random.key(0), restarts=16)
        >>> res.params.components.rate                 # (3,)
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"rate": constraints.positive}

    name = "poisson"
    hyperparameters = ()
    params_type = PoissonParams
    support_kind = "counts"

    def __init__(self, *, rate_prior=None):
        self.priors = {"rate": check_prior(type(self).__name__, "rate", rate_prior)}
        prior = self.priors["rate"]
        if isinstance(prior, priors.Gamma) and np.any(prior.concentration < 1):
            # With a < 1 the posterior is unbounded at rate = 0 for a component
            # whose counts are all zero: no mode exists.
            raise ValueError(
                f"{type(self).__name__}: rate_prior=priors.Gamma(concentration, rate) needs "
                f"concentration >= 1 for the posterior mode to exist; got "
                f"concentration={prior.concentration}."
            )

    def validate_data(self, x):
        ok = (x == np.round(x)) & (x >= 0)
        if not np.all(ok):
            bad = x[~ok].ravel()[:3]
            raise ValueError(
                f"{type(self).__name__}: x must hold non-negative integer counts; found e.g. "
                f"{bad.tolist()}. Round or drop those entries, or use a continuous family."
            )

    def log_prob(self, params, x):
        rate = params.rate
        lp = xlogy(x, rate) - rate - gammaln(x + 1.0)
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        rate = jnp.asarray(params.rate)
        draws = jax.random.poisson(key, rate, shape=(n,) + rate.shape)
        return draws.astype(rate.dtype)

    def init(self, key, x, n_components):
        """k-means++ clusters; their mean counts shrunk towards the overall mean."""
        resp, _ = kmeans_plus_plus(key, x, n_components)
        rows = as_rows(x)
        counts = resp.sum(0)[:, None]
        rate = (resp.T @ rows + rows.mean(0)) / (counts + 1)
        # Zero only for a feature that is zero everywhere; stay inside the support.
        rate = jnp.maximum(rate, _floor(x.dtype))
        return PoissonParams(rate=rate.reshape((n_components,) + x.shape[1:]))


class PoissonStats(NamedTuple):
    n: jax.Array  # (K,)      Σ w r
    sx: jax.Array  # (K, ...)  Σ w r x


def _stats(family, params, x, resp, sample_weight):
    wr = resp * sample_weight[:, None]
    sx = jnp.matmul(wr.T, as_rows(x), precision=jax.lax.Precision.HIGHEST)
    return PoissonStats(n=wr.sum(0), sx=sx.reshape(params.rate.shape))


def _update(family, params, stats):
    n = stats.n.reshape(stats.n.shape + (1,) * (params.rate.ndim - 1))
    prior = family.priors["rate"]
    if prior is None:
        num, den = stats.sx, n
    else:
        a = jnp.asarray(prior.concentration, stats.sx.dtype)
        b = jnp.asarray(prior.rate, stats.sx.dtype)
        num, den = stats.sx + a - 1, n + b
    # den == 0 only for an empty component under maximum likelihood: every rate
    # is then a maximiser, and we keep the current one.
    rate = num / jnp.where(den > 0, den, 1)
    rate = jnp.where((den > 0) & jnp.isfinite(rate), rate, params.rate)
    # num == 0 puts the maximiser on the boundary rate = 0 (all counts zero).
    return PoissonParams(rate=jnp.maximum(rate, _floor(rate.dtype)))


def _applies(family):
    prior = family.priors["rate"]
    return prior is None or type(prior) is priors.Gamma


register_m_step(Poisson, _update, sufficient_stats=_stats, applies=_applies)
