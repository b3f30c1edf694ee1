"""Student-t components: ``loc``, ``scale`` and degrees of freedom ``df``.

``(N,)`` data gives scalar parameters per component; ``(N, D)`` data is
treated as D independent Student-t features (each parameter ``(D,)`` per
component). Robust to outliers where a normal mixture is not.

No closed form is registered (the ML update of ``df`` has none), so the
M-step is the gradient one on ``Q + log prior`` in ``(loc, log scale, log df)``.

The degrees of freedom may run off to infinity. On data whose tails are no
heavier than a normal's, the likelihood keeps increasing in ``df`` towards the
normal limit and has no finite maximiser. The gradient M-step then raises
``df`` until the objective is flat in it to working precision (seen: ~1e5 in
float32, ~1e13 in float64): the component is, numerically, a normal one, and
the fitted ``df`` means "large", not a value to read. Nothing breaks: the
density stays exact and finite at any ``df`` (its normaliser avoids the
cancellation of two large log-gammas) and EM stays monotone.

To get a finite estimate, put a prior on it, e.g.
``df_prior=priors.Gamma(2.0, 0.1)`` (the weakly informative prior of Juárez
& Steel 2010, with mean 20), which makes the posterior mode finite.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln

from jaxem import constraints
from jaxem.families._seeding import as_rows, kmeans_plus_plus
from jaxem.families.base import Family, check_prior

__all__ = ["StudentT", "StudentTParams"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# Below this, log Γ(x + ½) - log Γ(x) directly; above, Stirling's series.
_SERIES_FROM = 10.0


def _stirling_correction(y):
    """log Γ(y) - [(y - ½) log y - y + ½ log 2π], to ~1e-14 absolute for y >= 10."""
    r = 1 / (y * y)
    return (1 / 12 - r * (1 / 360 - r * (1 / 1260 - r * (1 / 1680 - r / 1188)))) / y


def _log_gamma_ratio(x):
    """``log Γ(x + ½) - log Γ(x) - ½ log x`` for x > 0; tends to -1/(8x) as x grows.

    The direct difference of log-gammas loses their magnitude (~x log x)
    times the epsilon at large x; Stirling's series takes the difference
    analytically. (``jax.scipy.special.betaln`` is stable but only ~1e-7
    accurate in float64 for arguments near 8 to 20.)
    """
    small = x < _SERIES_FROM
    xd = jnp.where(small, x, 1.0)
    direct = gammaln(xd + 0.5) - gammaln(xd) - 0.5 * jnp.log(xd)
    xs = jnp.where(small, _SERIES_FROM, x)
    series = (
        xs * jnp.log1p(0.5 / xs) - 0.5 + _stirling_correction(xs + 0.5) - _stirling_correction(xs)
    )
    return jnp.where(small, direct, series)


class StudentTParams(NamedTuple):
    """Per-component parameters, each ``(K,)`` for ``(N,)`` data or ``(K, D)`` for ``(N, D)``.

    Attributes:
        loc: centre (the median; the mean when ``df > 1``).
        scale: scale (the standard deviation is ``scale * sqrt(df / (df - 2))`` for ``df > 2``).
        df: degrees of freedom.
    """

    loc: jax.Array
    scale: jax.Array
    df: jax.Array


class StudentT(Family):
    """Student-t component density with location, scale and degrees of freedom.

    ``log f(x) = log Γ((ν+1)/2) - log Γ(ν/2) - ½ log(νπ) - log σ
    - (ν+1)/2 · log(1 + ((x - μ)/σ)² / ν)``.

    Args:
        loc_prior, scale_prior, df_prior: priors on each field: any
            ``priors`` object or a function ``value -> log density`` (all use
            the gradient M-step). Without ``df_prior`` the ML ``df`` can be
            infinite (see the module docstring); ``priors.Gamma(2.0, 0.1)``
            keeps it finite.

    Example:
        >>> fam = em.StudentT(df_prior=priors.Gamma(2.0, 0.1))
        >>> res = em.fit(em.Mixture(fam, n_components=2), x, key=jax.random.key(0), restarts=4)
        >>> res.params.components.df                  # (2,)
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "df": constraints.positive,
    }

    name = "studentt"
    hyperparameters = ()
    params_type = StudentTParams

    def __init__(self, *, loc_prior=None, scale_prior=None, df_prior=None):
        name = type(self).__name__
        self.priors = {
            "loc": check_prior(name, "loc", loc_prior),
            "scale": check_prior(name, "scale", scale_prior),
            "df": check_prior(name, "df", df_prior),
        }

    def log_prob(self, params, x):
        df, scale = params.df, params.scale
        z = (x - params.loc) / scale
        # log Γ((ν+1)/2) - log Γ(ν/2) - ½ log(νπ) = ratio(ν/2) - ½ log 2π, exactly.
        lp = (
            _log_gamma_ratio(0.5 * df)
            - _HALF_LOG_2PI
            - jnp.log(scale)
            - 0.5 * (df + 1) * jnp.log1p(z * z / df)
        )
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        loc = jnp.asarray(params.loc)
        shape = (n,) + loc.shape
        t = jax.random.t(key, jnp.asarray(params.df, loc.dtype), shape, loc.dtype)
        return loc + params.scale * t

    def init(self, key, x, n_components):
        """k-means++ centres; within-cluster sds shrunk to the data's; df log-uniform in [2, 30]."""
        key_seed, key_df = jax.random.split(key)
        resp, centres = kmeans_plus_plus(key_seed, x, n_components)
        rows = as_rows(x)
        c = centres.reshape(n_components, -1)  # (K, D)
        counts = resp.sum(0)[:, None]  # (K, 1)
        sq = jnp.einsum("nk,nkd->kd", resp, (rows[:, None, :] - c[None]) ** 2)
        global_var = jnp.var(rows, axis=0)
        var = (sq + global_var) / (counts + 1)
        floor = 10 * jnp.finfo(x.dtype).eps * (1 + global_var)
        scale = jnp.sqrt(jnp.maximum(var, floor))
        shape = (n_components,) + x.shape[1:]
        # Random tails as well as random centres, so that restarts explore both.
        log_df = jax.random.uniform(
            key_df, shape, x.dtype, minval=math.log(2.0), maxval=math.log(30.0)
        )
        return StudentTParams(loc=centres, scale=scale.reshape(shape), df=jnp.exp(log_df))
