"""Prior densities on parameters, each with a normalised ``log_prob``.

A prior is attached to a family's field (``em.Normal(mean_prior=priors.Normal(0, 10))``)
or to a mixture's weights (``weights_prior=priors.Dirichlet(1.5)``). Families use
their closed-form M-step when the priors are ones that closed form covers
(``Normal`` on a mean, ``InverseGamma`` on a variance, ``Beta`` on a probability,
``Dirichlet`` on weights); any other prior, or any plain function
``value -> log density``, is honoured through the gradient M-step.

Hyper-parameters are validated when a prior is constructed.

Example:
    >>> from jaxem import priors
    >>> float(priors.Normal(0.0, 1.0).log_prob(0.0))  # -log(sqrt(2 pi))
    -0.9189385...
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import gammaln, xlogy

from jaxem import constraints

__all__ = ["Prior", "Normal", "Gamma", "InverseGamma", "Beta", "Dirichlet"]

_HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


def _hyper(name: str, value, *, positive: bool, owner: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}.")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}.")
    return arr


def _outside(mask, lp):
    """-inf where the value is outside the support (as scipy.stats does), not nan."""
    return jnp.where(mask, -jnp.inf, lp)


class Prior:
    """Base class: a log density over a parameter value.

    ``log_prob(value)`` returns elementwise log densities (summed over the
    last axis for the vector-valued ``Dirichlet``), ``-inf`` outside the
    support; a family sums them.
    ``support`` is the constraint of the values the prior is defined on.
    """

    support: constraints.Constraint = constraints.real

    def log_prob(self, value):
        raise NotImplementedError  # abstract

    def __call__(self, value):
        return self.log_prob(value)

    def _cast(self, value, *hypers):
        value = jnp.asarray(value)
        dtype = value.dtype if jnp.issubdtype(value.dtype, jnp.floating) else jnp.result_type(float)
        return (value.astype(dtype), *(jnp.asarray(h, dtype) for h in hypers))


class Normal(Prior):
    """Normal(loc, scale): ``scale`` is the standard deviation.

    Conjugate (closed-form MAP) for a normal component's ``mean``.
    """

    support = constraints.real

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = _hyper("loc", loc, positive=False, owner="priors.Normal")
        self.scale = _hyper("scale", scale, positive=True, owner="priors.Normal")

    def log_prob(self, value):
        value, loc, scale = self._cast(value, self.loc, self.scale)
        z = (value - loc) / scale
        return -0.5 * z * z - jnp.log(scale) - _HALF_LOG_2PI

    def __repr__(self):
        return f"priors.Normal(loc={self.loc}, scale={self.scale})"


class Gamma(Prior):
    """Gamma(concentration, rate): density ∝ v^(a-1) exp(-rate·v) on v > 0."""

    support = constraints.positive

    def __init__(self, concentration, rate):
        self.concentration = _hyper(
            "concentration", concentration, positive=True, owner="priors.Gamma"
        )
        self.rate = _hyper("rate", rate, positive=True, owner="priors.Gamma")

    def log_prob(self, value):
        value, a, b = self._cast(value, self.concentration, self.rate)
        lp = xlogy(a - 1, value) - b * value + a * jnp.log(b) - gammaln(a)
        return _outside(value < 0, lp)

    def __repr__(self):
        return f"priors.Gamma(concentration={self.concentration}, rate={self.rate})"


class InverseGamma(Prior):
    """InverseGamma(concentration, scale): density ∝ v^(-a-1) exp(-scale/v) on v > 0.

    Conjugate (closed-form MAP) for a normal component's ``var``.
    """

    support = constraints.positive

    def __init__(self, concentration, scale):
        self.concentration = _hyper(
            "concentration", concentration, positive=True, owner="priors.InverseGamma"
        )
        self.scale = _hyper("scale", scale, positive=True, owner="priors.InverseGamma")

    def log_prob(self, value):
        value, a, b = self._cast(value, self.concentration, self.scale)
        safe = jnp.where(value > 0, value, 1)
        lp = -(a + 1) * jnp.log(safe) - b / safe + a * jnp.log(b) - gammaln(a)
        return _outside(value <= 0, lp)

    def __repr__(self):
        return f"priors.InverseGamma(concentration={self.concentration}, scale={self.scale})"


class Beta(Prior):
    """Beta(a, b) on [0, 1]. Conjugate for Bernoulli and Binomial ``p``."""

    support = constraints.unit_interval

    def __init__(self, a, b):
        self.a = _hyper("a", a, positive=True, owner="priors.Beta")
        self.b = _hyper("b", b, positive=True, owner="priors.Beta")

    def log_prob(self, value):
        value, a, b = self._cast(value, self.a, self.b)
        log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
        lp = xlogy(a - 1, value) + xlogy(b - 1, 1 - value) - log_beta
        return _outside((value < 0) | (value > 1), lp)

    def __repr__(self):
        return f"priors.Beta(a={self.a}, b={self.b})"


class Dirichlet(Prior):
    """Dirichlet(concentration) over probability vectors (the last axis).

    A scalar ``concentration`` is shared by every entry, whatever their
    number; a vector fixes the number of entries. Conjugate for mixture weights.
    """

    support = constraints.simplex

    def __init__(self, concentration):
        self.concentration = _hyper(
            "concentration", concentration, positive=True, owner="priors.Dirichlet"
        )
        if self.concentration.ndim > 1:
            raise ValueError(
                "priors.Dirichlet: concentration must be a scalar or a vector, got shape "
                f"{self.concentration.shape}."
            )

    def log_prob(self, value):
        value, alpha = self._cast(value, self.concentration)
        alpha = jnp.broadcast_to(alpha, value.shape[-1:])
        log_norm = jnp.sum(gammaln(alpha)) - gammaln(jnp.sum(alpha))
        lp = jnp.sum(xlogy(alpha - 1, value), axis=-1) - log_norm
        return _outside(jnp.any(value < 0, axis=-1), lp)

    def __repr__(self):
        return f"priors.Dirichlet(concentration={self.concentration})"


__all__ += ["InverseWishart"]


class InverseWishart(Prior):
    """InverseWishart(df, scale) over ``(D, D)`` symmetric positive-definite matrices.

    Density ``∝ |Σ|^(-(df + D + 1)/2) exp(-tr(scale Σ⁻¹) / 2)``, normalised
    (the parametrisation of ``scipy.stats.invwishart``); ``log_prob`` reduces the
    last two axes, so ``(K, D, D)`` values give ``(K,)``. Values that are not
    positive definite get ``-inf``. Conjugate (closed-form MAP) for a
    ``MultivariateNormal`` covariance (``full`` or ``tied``): its mode is
    ``scale / (df + D + 1)``.

    Args:
        df: degrees of freedom, a scalar ``> D - 1``.
        scale: ``(D, D)`` symmetric positive-definite scale matrix Ψ.

    Example:
        >>> iw = priors.InverseWishart(df=5.0, scale=jnp.eye(2))
        >>> iw.log_prob(jnp.eye(2))   # scalar
    """

    support = constraints.positive_definite

    def __init__(self, df, scale):
        owner = "priors.InverseWishart"
        scale = _hyper("scale", scale, positive=False, owner=owner)
        if scale.ndim != 2 or scale.shape[0] != scale.shape[1] or scale.shape[0] == 0:
            raise ValueError(
                f"{owner}: scale must be a square (D, D) matrix, got shape {scale.shape}."
            )
        if not np.allclose(scale, scale.T, rtol=1e-10, atol=1e-12 * np.abs(scale).max()):
            raise ValueError(f"{owner}: scale must be symmetric, got {scale.tolist()}.")
        try:
            chol = np.linalg.cholesky(scale)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{owner}: scale must be positive definite, got {scale.tolist()}."
            ) from None
        d = scale.shape[0]
        df = _hyper("df", df, positive=True, owner=owner)
        if df.ndim != 0:
            raise ValueError(f"{owner}: df must be a scalar, got shape {df.shape}.")
        if not df > d - 1:
            raise ValueError(f"{owner}: df must be > D - 1 = {d - 1} for D={d}, got {float(df)}.")
        self.df, self.scale, self._chol = float(df), scale, chol
        log_det_scale = 2.0 * float(np.sum(np.log(np.diag(chol))))
        # log Γ_D(df/2), the multivariate gamma function.
        log_mgamma = 0.25 * d * (d - 1) * np.log(np.pi) + sum(
            math.lgamma(0.5 * (self.df - j)) for j in range(d)
        )
        self._log_norm = 0.5 * self.df * (log_det_scale - d * np.log(2.0)) - log_mgamma

    def log_prob(self, value):
        value, chol_scale = self._cast(value, self._chol)
        d = chol_scale.shape[0]
        if value.ndim < 2 or value.shape[-2:] != (d, d):
            raise ValueError(
                f"priors.InverseWishart: values must be ({d}, {d}) matrices (the scale's shape), "
                f"got shape {value.shape}."
            )
        chol = jnp.linalg.cholesky(value)
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        # tr(Ψ Σ⁻¹) = ‖L⁻¹ C‖²_F with Σ = L Lᵀ and Ψ = C Cᵀ: no explicit inverse.
        m = solve_triangular(chol, jnp.broadcast_to(chol_scale, value.shape), lower=True)
        trace = jnp.sum(m * m, axis=(-2, -1))
        lp = self._log_norm - 0.5 * (self.df + d + 1) * log_det - 0.5 * trace
        # A failed Cholesky (not positive definite) leaves nan: outside the support.
        return _outside(~jnp.isfinite(log_det) | ~jnp.isfinite(trace), lp.astype(value.dtype))

    def __repr__(self):
        return f"priors.InverseWishart(df={self.df}, scale={self.scale.tolist()})"
