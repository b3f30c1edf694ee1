"""Categorical components: ``probs`` over ``n_categories`` outcomes 0..C-1.

``(N,)`` integer data gives ``probs`` of shape ``(C,)`` per component; ``(N, D)``
data is D independent categorical features (latent class analysis), ``probs``
of shape ``(D, C)`` per component. Data are stored as floats holding integers.

Closed-form MAP with ``probs_prior=priors.Dirichlet(α)`` (α >= 1, a scalar or a
length-C vector, shared by every component and feature) or none:
``probs[c] ∝ Σ w r 1[x = c] + α_c - 1``, the exact maximiser of ``Q + log prior``
on the closed simplex (a category a component never sees gets probability 0
under maximum likelihood). An empty component under a flat prior (every
``probs`` is a maximiser) keeps its current ``probs``. Any other prior uses the
gradient M-step.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints, priors
from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.base import Family, check_prior, register_m_step

__all__ = ["Categorical", "CategoricalParams"]


class CategoricalParams(NamedTuple):
    """Per-component ``probs`` (simplex over the last axis).

    ``(K, C)`` for ``(N,)`` data, ``(K, D, C)`` for ``(N, D)`` data.
    """

    probs: jax.Array


def _safe_log(p):
    # log(0) = -inf exactly, with a zero (not NaN) gradient there, so that the
    # gradient M-step and em.check_m_step can differentiate at the boundary.
    positive = p > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, p, 1)), -jnp.inf)


def _one_hot(x, n_categories):
    """``(N, C)`` or ``(N, D, C)`` indicators of the (float-stored) integer data."""
    return jax.nn.one_hot(x.astype(jnp.int32), n_categories, dtype=x.dtype)


class Categorical(Family):
    """Categorical(probs) component density over the integers 0..n_categories-1.

    Args:
        n_categories: C, the number of categories (an integer >= 2).
        probs_prior: prior on each probability vector: ``priors.Dirichlet(α)``
            with α >= 1, a scalar or a length-C vector (closed form), any other
            prior or a function ``probs -> log density`` (summed by the family;
            it receives ``(K, C)`` or ``(K, D, C)`` and should reduce only the
            last axis, as ``priors.Dirichlet.log_prob`` does).

    Example:
        >>> # latent class analysis: 500 respondents, 6 questions with 4 answers each
        >>> model = em.Mixture(em.Categorical(4, probs_prior=priors.Dirichlet(1.5)), 3)
        >>> res = em.fit(model, answers, key=jax.random.key(0), restarts=32)
        >>> res.params.components.probs               # (3, 6, 4)
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"probs": constraints.simplex}

    name = "categorical"
    hyperparameters = ("n_categories",)
    params_type = CategoricalParams
    support_kind = "categories"

    def __init__(self, n_categories: int, *, probs_prior=None):
        name = type(self).__name__
        if (
            isinstance(n_categories, bool)
            or not isinstance(n_categories, numbers.Integral)
            or n_categories < 2
        ):
            raise ValueError(f"{name}: n_categories must be an integer >= 2, got {n_categories!r}.")
        self.n_categories = int(n_categories)
        self.priors = {"probs": check_prior(name, "probs", probs_prior)}
        prior = self.priors["probs"]
        if isinstance(prior, priors.Dirichlet):
            alpha = prior.concentration
            if alpha.ndim == 1 and alpha.shape[0] != self.n_categories:
                raise ValueError(
                    f"{name}: probs_prior has {alpha.shape[0]} concentrations but "
                    f"n_categories={self.n_categories}; give a scalar or one per category."
                )
            if np.any(alpha < 1):
                # Below 1 the posterior is unbounded where a category that a
                # component never sees has probability 0.
                raise ValueError(
                    f"{name}: probs_prior=priors.Dirichlet(concentration) needs concentration "
                    f">= 1 for the posterior mode to exist; got {prior.concentration}."
                )

    def __repr__(self):
        prior = self.priors["probs"]
        extra = "" if prior is None else f", probs_prior={prior!r}"
        return f"{type(self).__name__}({self.n_categories}{extra})"

    def validate_data(self, x):
        c = self.n_categories
        ok = (x == np.round(x)) & (x >= 0) & (x <= c - 1)
        if not np.all(ok):
            bad = x[~ok].ravel()[:3]
            raise ValueError(
                f"{type(self).__name__}: x must hold integer category codes in [0, {c - 1}] "
                f"(n_categories={c}); found e.g. {bad.tolist()}. Encode the categories as "
                "0..C-1 (e.g. with numpy.unique(..., return_inverse=True))."
            )

    def _check_shapes(self, probs, x):
        c = self.n_categories
        if probs.shape[-1:] != (c,) or probs.ndim != x.ndim:
            want = f"({c},)" if x.ndim == 1 else f"({x.shape[1]}, {c})"
            raise ValueError(
                f"{type(self).__name__}: each component's probs must have shape {want} for data "
                f"of shape {x.shape}, got {probs.shape}."
            )

    def log_prob(self, params, x):
        probs = params.probs
        self._check_shapes(probs, x)
        logp = _safe_log(probs)
        idx = x.astype(jnp.int32)
        if x.ndim == 1:
            return logp[idx]
        return jnp.sum(logp[jnp.arange(x.shape[1])[None, :], idx], axis=-1)

    def sample(self, key, params, n):
        probs = jnp.asarray(params.probs)
        codes = jax.random.categorical(key, _safe_log(probs), shape=(n,) + probs.shape[:-1])
        return codes.astype(probs.dtype)

    def init(self, key, x, n_components):
        """k-means++ on the one-hot codes; cluster frequencies shrunk to smoothed overall ones.

        With a single categorical feature, k-means++ clusters are single
        categories and every start would sit in a corner of the simplex (and a
        mixture of one categorical feature is not identifiable anyway): the
        components are then drawn from a Dirichlet around the overall
        frequencies (concentration ``10·C``), which lets the latent structure
        of an HMM emerge (the casino: every restart found the optimum, against
        one in 32 from the corners).
        """
        onehot = _one_hot(x, self.n_categories)  # (N, [D,] C)
        # Laplace-smoothed overall frequencies: strictly positive, summing to 1.
        overall = (onehot.sum(0) + 1) / (x.shape[0] + self.n_categories)
        if x.ndim == 1 or x.shape[1] == 1:
            conc = 10.0 * self.n_categories * overall
            probs = jax.random.dirichlet(key, conc, (n_components,) + conc.shape[:-1])
            return CategoricalParams(probs=jnp.maximum(probs, jnp.finfo(x.dtype).tiny))
        flat = onehot.reshape(x.shape[0], -1)
        resp, _ = kmeans_plus_plus(key, flat, n_components)
        counts = (resp.T @ flat).reshape((n_components,) + onehot.shape[1:])
        n_k = resp.sum(0).reshape((n_components,) + (1,) * (onehot.ndim - 1))
        return CategoricalParams(probs=(counts + overall) / (n_k + 1))

    def support_top(self, x):
        return self.n_categories - 1

    def location(self, components):
        probs = np.asarray(components.probs, dtype=np.float64)
        return probs @ np.arange(probs.shape[-1])  # the expected code


class CategoricalStats(NamedTuple):
    counts: jax.Array  # (K, [D,] C)  Σ w r 1[x = c]


def _stats(family, params, x, resp, sample_weight):
    wr = resp * sample_weight[:, None]
    onehot = _one_hot(x, family.n_categories)
    counts = jnp.einsum("nk,n...->k...", wr, onehot, precision=jax.lax.Precision.HIGHEST)
    return CategoricalStats(counts=counts)


def _update(family, params, stats):
    prior = family.priors["probs"]
    num = stats.counts
    if prior is not None:
        num = num + jnp.asarray(prior.concentration, num.dtype) - 1
    den = jnp.sum(num, axis=-1, keepdims=True)
    # den == 0 only for an empty component under a flat prior (or α = 1).
    probs = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), params.probs)
    return CategoricalParams(probs=probs)


def _applies(family):
    prior = family.priors["probs"]
    return prior is None or type(prior) is priors.Dirichlet


register_m_step(Categorical, _update, sufficient_stats=_stats, applies=_applies)
