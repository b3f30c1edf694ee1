"""The Gaussian emissions of hmmlearn's ``GaussianHMM``, as an ``em.Family`` with its MAP update.

hmmlearn's M-step (Huang, Acero & Hon 2001, pp. 443-445) is

    means  = (w μ0 + Σ γ x) / (w + Σ γ)
    covars = (c + w (m - μ0)(m - μ0)ᵀ + Σ γ (x - m)(x - m)ᵀ) / (a + Σ γ)

with ``w = means_weight``, ``μ0 = means_prior``, ``c = covars_prior`` and
``a = max(covars_weight - 1, 0)`` for diagonal and spherical covariances
(``max(covars_weight - D, 0)`` for full and tied; spherical averages the
diagonal result over features; tied sums over states). It is the exact
joint maximiser of ``Q + log p`` for the (possibly improper) prior

    log p = Σ_k [ -a/2 log|Σ_k| - 1/2 tr(Σ_k⁻¹ (c + w (m_k - μ0)(m_k - μ0)ᵀ)) ]

(per feature for diagonal covariances; once for the tied one), so declaring
that prior keeps jaxem's objective the one EM increases, and the fit
reproduces hmmlearn's iterates. With the defaults ``c = 0.01``, ``w = 0``,
``covars_weight = 1`` the prior only keeps variances away from 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxem.families.base import register_m_step
from jaxem.families.mvn import MultivariateNormal, MultivariateNormalParams, _stats


class HMMLearnGaussian(MultivariateNormal):
    """``em.MultivariateNormal`` with hmmlearn's means/covars priors (scalars)."""

    name = "hmmlearn-gaussian"

    def __init__(
        self,
        covariance_type: str,
        means_prior: float = 0.0,
        means_weight: float = 0.0,
        covars_prior: float = 1e-2,
        covars_weight: float = 1.0,
    ):
        super().__init__(covariance_type, reg_covar=0.0)
        self.means_prior = float(means_prior)
        self.means_weight = float(means_weight)
        self.covars_prior = float(covars_prior)
        self.covars_weight = float(covars_weight)

    def __repr__(self) -> str:
        return (
            f"HMMLearnGaussian({self.covariance_type!r}, means_prior={self.means_prior}, "
            f"means_weight={self.means_weight}, covars_prior={self.covars_prior}, "
            f"covars_weight={self.covars_weight})"
        )

    def _a(self, d: int) -> float:
        if self.covariance_type in ("diag", "spherical"):
            return max(self.covars_weight - 1.0, 0.0)
        return max(self.covars_weight - d, 0.0)

    def log_prior(self, params) -> jnp.ndarray:
        mean, cov = params.mean, params.cov
        k, d = mean.shape
        a = self._a(d)
        diff = mean - self.means_prior  # (K, D)
        if self.covariance_type in ("diag", "spherical"):
            var = cov if self.covariance_type == "diag" else cov[:, None] * jnp.ones((1, d))
            b = self.covars_prior + self.means_weight * diff**2
            return jnp.sum(-0.5 * a * jnp.log(var) - 0.5 * b / var)
        outer = self.means_weight * diff[:, :, None] * diff[:, None, :]  # (K, D, D)
        covs = cov if self.covariance_type == "full" else cov[None]
        scatter = outer if self.covariance_type == "full" else jnp.sum(outer, axis=0)[None]
        b = self.covars_prior + scatter
        chol = jnp.linalg.cholesky(covs)
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
        trace = jnp.trace(jnp.linalg.solve(covs, b), axis1=1, axis2=2)
        return jnp.sum(-0.5 * a * log_det - 0.5 * trace)


def _update(family: HMMLearnGaussian, params, stats):
    n, s1, s2 = stats.n, stats.s1, stats.s2  # centred at params.mean
    kind = family.covariance_type
    d = s1.shape[-1]
    centre = params.mean
    w, mu0, c = family.means_weight, family.means_prior, family.covars_prior
    obs = s1 + n[:, None] * centre  # Σ γ x
    mean = (w * mu0 + obs) / (w + n)[:, None]
    delta = mean - centre
    diff = mean - mu0
    a = family._a(d)
    if kind in ("diag", "spherical"):
        scatter = s2 - 2 * delta * s1 + n[:, None] * delta**2  # Σ γ (x - m)²
        var = (c + w * diff**2 + scatter) / jnp.maximum(a + n, 1e-5)[:, None]
        cov = var if kind == "diag" else jnp.mean(var, axis=1)
        return _keep_dead(params, n, mean, cov, kind)
    outer = delta[:, :, None] * s1[:, None, :]
    scatter = (
        s2
        - outer
        - jnp.swapaxes(outer, 1, 2)
        + n[:, None, None] * (delta[:, :, None] * delta[:, None, :])
    )
    c_n = w * diff[:, :, None] * diff[:, None, :] + scatter
    if kind == "full":
        cov = (c + c_n) / (a + n)[:, None, None]
    else:
        cov = (c + jnp.sum(c_n, axis=0)) / (a + jnp.sum(n))
    return _keep_dead(params, n, mean, 0.5 * (cov + jnp.swapaxes(cov, -1, -2)), kind)


def _keep_dead(params, n, mean, cov, kind):
    """A state with no posterior mass keeps its parameters (hmmlearn would divide by 0)."""
    alive = n > 0
    mean = jnp.where(alive[:, None], mean, params.mean)
    if kind == "tied":
        cov = jnp.where(jnp.any(alive), cov, params.cov)
    else:
        cov = jnp.where(alive.reshape((-1,) + (1,) * (cov.ndim - 1)), cov, params.cov)
    return MultivariateNormalParams(mean, cov)


register_m_step(HMMLearnGaussian, _update, sufficient_stats=_stats, exact=lambda family: True)


def distribute_covariance(cv: np.ndarray, covariance_type: str, k: int) -> np.ndarray:
    """hmmlearn's start: the data's covariance ``cv`` (D, D) in the shape of ``covariance_type``."""
    if covariance_type == "full":
        return np.tile(cv, (k, 1, 1))
    if covariance_type == "tied":
        return cv
    if covariance_type == "diag":
        return np.tile(np.diag(cv), (k, 1))
    return np.full(k, np.mean(cv))  # hmmlearn: the mean of every entry of cv


def full_covariances(cov: np.ndarray, covariance_type: str, k: int, d: int) -> np.ndarray:
    """hmmlearn's ``covars_``: ``(K, D, D)`` matrices whatever the covariance type."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.tile(cov, (k, 1, 1))
    var = cov if covariance_type == "diag" else np.tile(cov[:, None], (1, d))
    return var[:, :, None] * np.eye(d)
