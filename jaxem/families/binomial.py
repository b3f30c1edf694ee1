"""Binomial(n_trials) and Bernoulli components: success probability ``p``.

``(N,)`` counts give a scalar ``p`` per component; ``(N, D)`` data gives D
independent features (``p`` of shape ``(D,)`` per component; for Bernoulli
this is latent class analysis of binary items).

Closed-form MAP with ``p_prior=priors.Beta(a, b)`` (or none):
``p = (Σ w r x + a - 1) / (n Σ w r + a + b - 2)``, the exact maximiser.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlog1py, xlogy

from jaxem import constraints, priors
from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.base import Family, check_prior, register_m_step

__all__ = ["Binomial", "Bernoulli", "BinomialParams"]


class BinomialParams(NamedTuple):
    """Per-component success probability ``p``: ``(K,)`` or ``(K, D)``."""

    p: jax.Array


class Binomial(Family):
    """Binomial(n_trials, p) component density over counts 0..n_trials.

    Args:
        n_trials: number of trials per observation (a positive integer).
        p_prior: prior on ``p``: ``priors.Beta(a, b)`` with a, b >= 1 (closed
            form), any other prior or a function ``p -> log density``.

    Example:
        >>> model = em.Mixture(em.Binomial(10, p_prior=priors.Beta(2, 2)), n_components=2)
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"p": constraints.unit_interval}

    name = "binomial"
    hyperparameters = ("n_trials",)
    params_type = BinomialParams
    support_kind = "counts"

    def __init__(self, n_trials: int, *, p_prior=None):
        if (
            isinstance(n_trials, bool)
            or not isinstance(n_trials, (int, np.integer))
            or n_trials < 1
        ):
            raise ValueError(f"Binomial: n_trials must be a positive integer, got {n_trials!r}.")
        self.n_trials = int(n_trials)
        self.priors = {"p": check_prior(type(self).__name__, "p", p_prior)}
        prior = self.priors["p"]
        if isinstance(prior, priors.Beta) and (np.any(prior.a < 1) or np.any(prior.b < 1)):
            # With a or b below 1 the posterior is unbounded at p = 0 or 1
            # whenever a component sees only failures (or only successes).
            raise ValueError(
                f"{type(self).__name__}: p_prior=priors.Beta(a, b) needs a >= 1 and b >= 1 for the "
                f"posterior mode to exist; got a={prior.a}, b={prior.b}."
            )

    def validate_data(self, x):
        n = self.n_trials
        if not np.all((x == np.round(x)) & (x >= 0) & (x <= n)):
            bad = x[~((x == np.round(x)) & (x >= 0) & (x <= n))].ravel()[:3]
            raise ValueError(
                f"{type(self).__name__}: x must hold integers in [0, {n}] (successes out of "
                f"n_trials={n}); found e.g. {bad.tolist()}."
            )

    def log_prob(self, params, x):
        n = self.n_trials
        p = params.p
        log_choose = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
        lp = log_choose + xlogy(x, p) + xlog1py(n - x, -p)
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        p = jnp.asarray(params.p)
        draws = jax.random.binomial(key, self.n_trials, p, shape=(n,) + p.shape)
        return draws.astype(p.dtype)

    def init(self, key, x, n_components):
        """k-means++ on the success fractions; cluster means shrunk to the global one."""
        frac = x / self.n_trials
        resp, _ = kmeans_plus_plus(key, frac, n_components)
        rows = frac if frac.ndim == 2 else frac[:, None]
        counts = resp.sum(0)[:, None]
        p = (resp.T @ rows + rows.mean(0)) / (counts + 1)
        # Keep starts off the boundary, where a single contrary row has density 0.
        p = jnp.clip(p, 0.01, 0.99)
        return BinomialParams(p=p.reshape((n_components,) + x.shape[1:]))

    def support_top(self, x):
        return self.n_trials


class Bernoulli(Binomial):
    """Bernoulli(p) component density over 0/1 data (one trial).

    Example:
        >>> model = em.Mixture(em.Bernoulli(p_prior=priors.Beta(1.5, 1.5)), n_components=3)
    """

    name = "bernoulli"
    hyperparameters = ()

    def __init__(self, *, p_prior=None):
        super().__init__(1, p_prior=p_prior)

    def __repr__(self):
        prior = self.priors["p"]
        return "Bernoulli()" if prior is None else f"Bernoulli(p_prior={prior!r})"


class BinomialStats(NamedTuple):
    n: jax.Array  # (K,)    Σ w r
    sx: jax.Array  # (K, ...) Σ w r x


def _stats(family, params, x, resp, sample_weight):
    wr = resp * sample_weight[:, None]
    rows = x if x.ndim == 2 else x[:, None]
    return BinomialStats(n=wr.sum(0), sx=(wr.T @ rows).reshape(params.p.shape))


def _update(family, params, stats):
    n = stats.n.reshape(stats.n.shape + (1,) * (params.p.ndim - 1))
    trials = family.n_trials
    prior = family.priors["p"]
    if prior is None:
        num, den = stats.sx, trials * n
    else:
        a = jnp.asarray(prior.a, stats.sx.dtype)
        b = jnp.asarray(prior.b, stats.sx.dtype)
        num, den = stats.sx + a - 1, trials * n + a + b - 2
    # den == 0 only for an empty component under a flat (or Beta(1, 1)) prior:
    # every p is then a maximiser, and we keep the current one.
    p = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), params.p)
    return BinomialParams(p=jnp.clip(p, 0, 1))


def _applies(family):
    prior = family.priors["p"]
    return prior is None or type(prior) is priors.Beta


register_m_step(Binomial, _update, sufficient_stats=_stats, applies=_applies)
register_m_step(Bernoulli, _update, sufficient_stats=_stats, applies=_applies)
