"""Normal components: ``mean`` and ``var`` (the variance).

``(N,)`` data gives scalar parameters per component; ``(N, D)`` data is
treated as D independent normal features (parameters ``(D,)`` per component).

Closed-form MAP (ECM): with ``mean_prior`` a ``priors.Normal`` (or none) and
``var_prior`` a ``priors.InverseGamma`` (or none), the M-step maximises
``Q + log prior`` by coordinate ascent, mean given variance, then variance given
mean, repeated ``ecm_sweeps`` times. Without a mean prior one sweep is exact.
Each coordinate update is an exact conditional maximiser, so the objective
never decreases (Meng & Rubin 1993). Any other prior uses the gradient M-step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints, priors
from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.base import Family, check_prior, host_component, register_m_step

__all__ = ["Normal", "NormalParams"]

_LOG_2PI = math.log(2 * math.pi)


class NormalParams(NamedTuple):
    """Per-component parameters: ``mean`` and ``var``, each ``(K,)`` or ``(K, D)``."""

    mean: jax.Array
    var: jax.Array


class Normal(Family):
    """Normal component density N(mean, var).

    Args:
        mean_prior: prior on each mean: ``priors.Normal`` (closed form), any
            other ``priors`` object or a function ``mean -> log density``.
        var_prior: prior on each variance: ``priors.InverseGamma`` (closed
            form), any other prior or function.
        ecm_sweeps: coordinate-ascent sweeps of the closed-form M-step.
        min_var: floor of the closed-form variance update (default ``1e-6``,
            scikit-learn's ``reg_covar``, but as a floor, not an addition: the
            update is the maximiser over ``var >= min_var``, identical to the
            unconstrained one unless a component collapses onto one value,
            where the likelihood is unbounded). ``0`` disables it.

    Example:
        >>> fam = em.Normal(mean_prior=priors.Normal(30.0, 5.0 ** 0.5),
        ...                 var_prior=priors.InverseGamma(5.0, 1.0))
        >>> model = em.Mixture(fam, n_components=3, weights_prior=priors.Dirichlet(1.5))
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"mean": constraints.real, "var": constraints.positive}

    name = "normal"
    hyperparameters = ("ecm_sweeps", "min_var")
    params_type = NormalParams

    def __init__(
        self, *, mean_prior=None, var_prior=None, ecm_sweeps: int = 20, min_var: float = 1e-6
    ):
        self.priors = {
            "mean": check_prior("Normal", "mean", mean_prior),
            "var": check_prior("Normal", "var", var_prior),
        }
        if not isinstance(ecm_sweeps, int) or ecm_sweeps < 1:
            raise ValueError(f"Normal: ecm_sweeps must be an integer >= 1, got {ecm_sweeps!r}.")
        self.ecm_sweeps = ecm_sweeps
        if (
            isinstance(min_var, bool)
            or not isinstance(min_var, (int, float))
            or not (np.isfinite(min_var) and min_var >= 0)
        ):
            raise ValueError(f"Normal: min_var must be a finite number >= 0, got {min_var!r}.")
        self.min_var = float(min_var)

    def __repr__(self) -> str:
        base = super().__repr__()
        if self.min_var == 1e-6:
            return base
        sep = "" if base.endswith("()") else ", "
        return f"{base[:-1]}{sep}min_var={self.min_var:g})"

    def log_prob(self, params, x):
        z = x - params.mean
        lp = -0.5 * (_LOG_2PI + jnp.log(params.var) + z * z / params.var)
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        shape = (n,) + jnp.shape(params.mean)
        return params.mean + jnp.sqrt(params.var) * jax.random.normal(key, shape, params.mean.dtype)

    def init(self, key, x, n_components):
        """k-means++ centres as means; within-cluster variances shrunk to the data's."""
        resp, centres = kmeans_plus_plus(key, x, n_components)
        rows = x if x.ndim == 2 else x[:, None]
        shape = (n_components,) + x.shape[1:]
        counts = resp.sum(0)[:, None]
        sq = resp.T @ (rows * rows) - 2 * centres.reshape(n_components, -1) * (resp.T @ rows)
        sq = sq + counts * centres.reshape(n_components, -1) ** 2
        global_var = jnp.var(rows, axis=0)
        var = (jnp.maximum(sq, 0) + global_var) / (counts + 1)
        floor = 10 * jnp.finfo(x.dtype).eps * (1 + global_var)
        var = jnp.maximum(var, floor)
        return NormalParams(mean=centres, var=var.reshape(shape))

    def gaussian_marginal(self, components, index, dims):
        dims = list(dims)
        mean = host_component(components.mean, index)[dims]
        return mean, np.diag(host_component(components.var, index)[dims])


class NormalStats(NamedTuple):
    """Row sums per component, centred at the current means for float32 accuracy."""

    n: jax.Array  # (K,) or (K, 1)  Σ w r
    s1: jax.Array  # (K, ...)  Σ w r (x - mean_old)
    s2: jax.Array  # (K, ...)  Σ w r (x - mean_old)^2


def _stats(family, params, x, resp, sample_weight):
    wr = resp * sample_weight[:, None]  # (N, K)
    rows = x if x.ndim == 2 else x[:, None]  # (N, D)
    mean = params.mean.reshape(params.mean.shape[0], -1)  # (K, D)
    # Centred at the current means, not expanded as Σx² - 2mΣx + m²Σ1: in
    # float32 the expansion loses the variance of a tight component far from 0.
    d = rows[:, None, :] - mean[None, :, :]  # (N, K, D), fused into the sums
    hi = jax.lax.Precision.HIGHEST  # no TF32 on GPUs
    s1 = jnp.einsum("nk,nkd->kd", wr, d, precision=hi)
    s2 = jnp.einsum("nk,nkd->kd", wr, d * d, precision=hi)
    shape = params.mean.shape
    return NormalStats(n=wr.sum(0), s1=s1.reshape(shape), s2=s2.reshape(shape))


def _update(family, params, stats):
    n = stats.n.reshape(stats.n.shape + (1,) * (params.mean.ndim - 1))
    has_data = n > 0
    n_safe = jnp.where(has_data, n, 1)
    mp, vp = family.priors["mean"], family.priors["var"]
    m_old = params.mean

    def mean_given_var(var):
        # argmax_m  -Σ wr (x - m)^2 / (2 var) + log N(m | mu0, s0^2)
        if mp is None:
            return jnp.where(has_data, m_old + stats.s1 / n_safe, m_old)
        prec0 = 1.0 / jnp.asarray(mp.scale, var.dtype) ** 2
        mu0 = jnp.asarray(mp.loc, var.dtype)
        return ((n * m_old + stats.s1) / var + prec0 * mu0) / (n / var + prec0)

    def var_given_mean(mean, var_old):
        # argmax_v  -(n/2) log v - Σ wr (x - mean)^2 / (2v) + log InvGamma(v | a, b),
        # over v >= min_var (the objective is unimodal in v: clip the maximiser).
        d = mean - m_old
        ss = jnp.maximum(stats.s2 - 2 * d * stats.s1 + n * d * d, 0)  # Σ wr (x - mean)^2
        if vp is None:
            var = jnp.where(has_data, ss / n_safe, var_old)
        else:
            a = jnp.asarray(vp.concentration, ss.dtype)
            b = jnp.asarray(vp.scale, ss.dtype)
            var = (ss + 2 * b) / (n + 2 * a + 2)
        return jnp.maximum(var, jnp.asarray(family.min_var, ss.dtype))

    def sweep(_, p):
        mean = mean_given_var(p.var)
        return NormalParams(mean, var_given_mean(mean, p.var))

    # Without a mean prior the mean update does not depend on the variance:
    # one sweep is the exact joint maximiser.
    sweeps = family.ecm_sweeps if mp is not None else 1
    return jax.lax.fori_loop(0, sweeps, sweep, params)


def _applies(family):
    mp, vp = family.priors["mean"], family.priors["var"]
    return (mp is None or type(mp) is priors.Normal) and (
        vp is None or type(vp) is priors.InverseGamma
    )


def _exact(family):
    # With a mean prior the sweeps are coordinate ascent: close, not exact.
    return family.priors["mean"] is None


register_m_step(Normal, _update, sufficient_stats=_stats, applies=_applies, exact=_exact)
