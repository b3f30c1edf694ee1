"""Multivariate normal components: ``mean`` and ``cov``, with scikit-learn's covariance types.

``MultivariateNormal(covariance_type)`` follows ``sklearn.mixture.GaussianMixture``:
the same four covariance types, the same parameter shapes and the same
``reg_covar``, so that a jaxem fit and a scikit-learn fit from the same start
agree to rounding. Parameters (``MultivariateNormalParams``) in a mixture of K
components on ``(N, D)`` data:

=============  ============  ==============================================
type           ``mean``      ``cov``
=============  ============  ==============================================
``full``       ``(K, D)``    ``(K, D, D)``: one covariance per component
``diag``       ``(K, D)``    ``(K, D)``: the variances (diagonal)
``spherical``  ``(K, D)``    ``(K,)``: one variance per component
``tied``       ``(K, D)``    ``(D, D)``: one covariance shared by all
=============  ============  ==============================================

``tied``'s ``cov`` has *no* component axis. One component (``log_prob``,
``sample``) is ``mean (D,)`` with ``cov`` ``(D, D)``, ``(D,)`` or ``()``; a
tied component is a full one whose covariance happens to be shared.

Closed-form M-step (from additive sufficient statistics):

* maximum likelihood: weighted means and (pooled, for ``tied``) scatter
  matrices, scikit-learn's update;
* MAP with ``cov_prior``: ``priors.InverseWishart(df, Ψ)`` on each covariance
  (``full``; once on the shared one for ``tied``) gives
  ``(S + Ψ) / (n + df + D + 1)``; ``priors.InverseGamma(a, b)`` on each variance
  (``diag``, ``spherical``) gives ``(ss + 2b) / (m + 2a + 2)`` with ``m = n``
  (diag) or ``n·D`` (spherical);
* with ``mean_prior=priors.Normal(loc, scale)`` (independent on each mean
  coordinate) the update is ECM: mean given covariance, then covariance given
  mean, ``ecm_sweeps`` times. Each is an exact conditional maximiser, so the
  objective never decreases (Meng & Rubin 1993), but the result is not the
  joint maximiser.

``reg_covar`` (default 1e-6, as scikit-learn) is added to the covariance
diagonal *after* each closed-form update, exactly where scikit-learn adds it:
the update is the ML/MAP estimate shifted by ``reg_covar · I``. It keeps
covariances positive definite when a component collapses, but it is not a
prior: the shifted update is not the maximiser of ``Q + log prior`` (the
closed form reports ``exact=False`` unless ``reg_covar == 0``), the fixed point
is scikit-learn's regularised estimate, and the gradient M-step (used for any
other prior) ignores ``reg_covar``. Use ``reg_covar=0`` for the exact ML/MAP
estimate, and a prior (e.g. ``InverseWishart``) for principled regularisation.

Log densities go through Cholesky factors, never an inverted covariance: each
factor ``L_k`` is inverted by a small triangular solve and the Mahalanobis
terms of all components come from one matrix product ``X @ [A_1ᵀ | … | A_Kᵀ]``
with ``A_k = L_k⁻¹``. Second moments are K GEMMs (one batched matmul) of
``√(w r)·(X - c_k)``. Both run over row chunks of a size chosen from K and D
(:func:`jaxem.chunks.map_rows` / :func:`jaxem.chunks.sum_rows`, the engine's
chunk loop and size rule) so that the temporaries stay in cache.

``diag`` and ``spherical`` take scikit-learn's expanded forms, one
GEMM each for the densities (``[x², x] @ [p; -2pm]ᵀ``) and the statistics
(``(w r)ᵀ [x, x²]``), rows centred at their mean, while the dtype keeps them
accurate: the densities when ``eps · max (x - c)²/σ²`` (over features, with
each feature's widest row) is under ``EXPANSION_TOL · √eps`` (1e-4 in float32,
4.5e-9 in float64), the statistics when the re-centring loses less than that;
otherwise the exact centred passes (``lax.cond``; under ``vmap`` one decision
for the whole batch). The bound is per feature and per term, so the loss in a
row's log density is at most about ``D`` times it.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching
from jax.scipy.linalg import solve_triangular

from jaxem import chunks as _chunks
from jaxem import constraints, priors
from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.base import Family, check_prior, host_component, register_m_step

__all__ = ["MultivariateNormal", "MultivariateNormalParams", "MultivariateNormalStats"]

_LOG_2PI = math.log(2 * math.pi)
# Full float32 products on every backend: GPUs would otherwise use TF32 (10-bit
# mantissa) for float32 matmuls, far from float32 EM. Costs nothing on CPU.
_HI = jax.lax.Precision.HIGHEST
COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")


class MultivariateNormalParams(NamedTuple):
    """Per-component parameters.

    Attributes:
        mean: ``(K, D)`` component means.
        cov: ``full``: ``(K, D, D)`` covariances; ``diag``: ``(K, D)`` variances;
            ``spherical``: ``(K,)`` variances; ``tied``: ``(D, D)``, one
            covariance shared by every component (no K axis).
    """

    mean: jax.Array
    cov: jax.Array


class MultivariateNormal(Family):
    """Multivariate normal component density N(mean, cov) on ``(N, D)`` data.

    Args:
        covariance_type: ``"full"``, ``"diag"``, ``"spherical"`` or ``"tied"``
            (scikit-learn's meanings and shapes; see the module docstring).
        reg_covar: non-negative number added to the covariance diagonal after
            each closed-form update, as scikit-learn does. With ``reg_covar > 0``
            the update is the ML/MAP estimate shifted by ``reg_covar · I``, not
            the exact maximiser; ``reg_covar=0`` gives the exact one.
        mean_prior: prior on each mean coordinate: ``priors.Normal(loc, scale)``
            (closed form; ``loc``/``scale`` scalars or ``(D,)``), any other
            ``priors`` object or a function ``mean -> log density``.
        cov_prior: prior on the covariance: ``priors.InverseWishart(df, scale)``
            on each ``(D, D)`` covariance for ``full``/``tied``,
            ``priors.InverseGamma(a, b)`` on each variance for ``diag``/
            ``spherical`` (closed forms); any other prior or function uses the
            gradient M-step.
        ecm_sweeps: coordinate-ascent sweeps of the closed form when there is a
            mean prior.

    Example:
        >>> fam = em.MultivariateNormal("full", cov_prior=priors.InverseWishart(4.0, jnp.eye(2)))
        >>> res = em.fit(em.Mixture(fam, n_components=2), x, key=jax.random.key(0), restarts=8)
        >>> res.params.components.mean.shape, res.params.components.cov.shape   # (2, 2), (2, 2, 2)
    """

    name = "mvn"
    hyperparameters = ("covariance_type", "reg_covar", "ecm_sweeps")
    params_type = MultivariateNormalParams

    def __init__(
        self,
        covariance_type: str = "full",
        *,
        reg_covar: float = 1e-6,
        mean_prior=None,
        cov_prior=None,
        ecm_sweeps: int = 20,
    ):
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(
                f"MultivariateNormal: covariance_type must be one of {COVARIANCE_TYPES}, "
                f"got {covariance_type!r}."
            )
        if (
            isinstance(reg_covar, bool)
            or not isinstance(reg_covar, numbers.Real)
            or not np.isfinite(reg_covar)
            or reg_covar < 0
        ):
            raise ValueError(
                f"MultivariateNormal: reg_covar must be a finite number >= 0, got {reg_covar!r}."
            )
        if isinstance(ecm_sweeps, bool) or not isinstance(ecm_sweeps, int) or ecm_sweeps < 1:
            raise ValueError(
                f"MultivariateNormal: ecm_sweeps must be an integer >= 1, got {ecm_sweeps!r}."
            )
        matrix = covariance_type in ("full", "tied")
        if matrix and isinstance(cov_prior, priors.InverseGamma):
            raise ValueError(
                f"MultivariateNormal: cov_prior=priors.InverseGamma is a prior on a variance; "
                f"covariance_type={covariance_type!r} has (D, D) covariances: use "
                "priors.InverseWishart(df, scale)."
            )
        if not matrix and isinstance(cov_prior, priors.InverseWishart):
            raise ValueError(
                f"MultivariateNormal: cov_prior=priors.InverseWishart is a prior on a (D, D) "
                f"matrix; covariance_type={covariance_type!r} has variances: use "
                "priors.InverseGamma(a, b) on each variance."
            )
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)
        self.ecm_sweeps = ecm_sweeps
        self.priors = {
            "mean": check_prior("MultivariateNormal", "mean", mean_prior),
            "cov": check_prior("MultivariateNormal", "cov", cov_prior),
        }
        self.constraints = {
            "mean": constraints.real,
            "cov": constraints.positive_definite if matrix else constraints.positive,
        }

    def gemm_row_floats(self, d: int, k: int) -> int | None:
        """Floats per row of the expanded forms' features when densities and
        statistics are GEMMs over the rows (:func:`jaxem.chunks.plan`), else ``None``."""
        matrix = self.covariance_type in ("full", "tied")
        return _n_features(d, matrix) if _expands(d, k, matrix) else None

    def __repr__(self) -> str:
        fp = "".join(f", {k}_prior={v!r}" for k, v in self.field_priors.items())
        return f"MultivariateNormal({self.covariance_type!r}, reg_covar={self.reg_covar}{fp})"

    # -- densities ---------------------------------------------------------------
    def log_prob_components(self, components, x) -> jax.Array:
        """``(N, K)`` log densities of every row under every component."""
        mean, cov = components.mean, components.cov
        n, d = x.shape
        k = mean.shape[0]
        # Centre once at the data's mean: the products below then cancel little
        # in float32 even when the data sit far from the origin.
        centre = jnp.mean(x, axis=0)
        xc, mc = x - centre, mean - centre
        kind = self.covariance_type
        if kind in ("full", "tied"):
            chol = jnp.linalg.cholesky(cov)  # (K, D, D) or (D, D)
            eye = jnp.broadcast_to(jnp.eye(d, dtype=cov.dtype), cov.shape)
            inv_chol = solve_triangular(chol, eye, lower=True)  # A = L⁻¹: small solves
            log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
            if kind == "full":
                # One GEMM for every component: X (N, D) @ [A_1ᵀ | … | A_Kᵀ] (D, K·D).
                factor = jnp.swapaxes(inv_chol, -1, -2).transpose(1, 0, 2).reshape(d, k * d)
                shift = jnp.einsum("kij,kj->ki", inv_chol, mc, precision=_HI).reshape(k * d)
            else:
                factor = inv_chol.T  # (D, D)
                shift = jnp.matmul(mc, factor, precision=_HI)  # (K, D): A m_k

            def maha(rows):
                y = jnp.matmul(rows, factor, precision=_HI)
                if kind == "full":
                    y = y - shift
                    return jnp.sum((y * y).reshape(rows.shape[0], k, d), axis=-1)
                return jnp.sum((y[:, None, :] - shift) ** 2, axis=-1)

        elif kind == "diag":
            inv_sd = jax.lax.rsqrt(cov)
            log_det = jnp.sum(jnp.log(cov), axis=-1)

            def maha(rows):
                z = (rows[:, None, :] - mc) * inv_sd
                return jnp.sum(z * z, axis=-1)

        else:  # spherical
            log_det = d * jnp.log(cov)

            def maha(rows):
                return jnp.sum((rows[:, None, :] - mc) ** 2, axis=-1) / cov

        matrix = kind in ("full", "tied")
        if not _expansion_fits(n, d, k, matrix):
            m = _chunks.map_rows(maha, xc, k)
        else:
            # Σ p (x - m)(x - m) expanded, scikit-learn's form: one GEMM of the
            # rows' features ([x², x] diagonal, [x_i x_j (i <= j), x] full)
            # against every component's coefficients, when float32 keeps it
            # accurate; else the exact centred passes above.
            if matrix:
                prec = jnp.matmul(jnp.swapaxes(inv_chol, -1, -2), inv_chol, precision=_HI)
                prec = jnp.broadcast_to(prec, (k, d, d))
                iu, ju = np.triu_indices(d)
                twice = np.where(iu == ju, 1.0, 2.0).astype(prec.dtype)
                lin = jnp.einsum("kij,kj->ki", prec, mc, precision=_HI)
                coef = jnp.concatenate([twice * prec[:, iu, ju], -2 * lin], axis=1).T
                const = jnp.sum(jnp.square(shift).reshape(k, d), axis=1)
            else:
                prec = jnp.broadcast_to(1 / (cov if kind == "diag" else cov[:, None]), (k, d))
                coef = jnp.concatenate([prec, -2 * prec * mc], axis=1).T  # (2D, K)
                const = jnp.sum(prec * mc * mc, axis=1)
            feats = _features(xc, matrix)  # outside the cond: hoisted out of EM's loop
            m = jax.lax.cond(
                _expansion_accurate(xc, mc, prec),
                lambda: jnp.maximum(jnp.matmul(feats, coef, precision=_HI) + const, 0),
                lambda: _chunks.map_rows(maha, xc, k),
            )
        return -0.5 * (d * _LOG_2PI + log_det + m)

    def _full_covs(self, components, k: int, d: int):
        """Every component's covariance as a ``(K, D, D)`` matrix."""
        cov = components.cov
        if self.covariance_type == "full":
            return cov
        if self.covariance_type == "tied":
            return jnp.broadcast_to(cov, (k, d, d))
        var = cov if self.covariance_type == "diag" else jnp.broadcast_to(cov[:, None], (k, d))
        return var[:, :, None] * jnp.eye(d, dtype=var.dtype)

    def _observed_solve(self, components, x, observed):
        """Per row and component: the observed block's Cholesky factor and solve.

        With ``m`` the row's observed mask, ``A = (m mᵀ) ∘ Σ + diag(1 - m)`` is
        ``Σ_oo`` on the observed entries and the identity on the missing ones,
        so ``log det A = log det Σ_oo`` and, for ``z = m ∘ (x - μ)``, ``v = A⁻¹ z``
        is ``Σ_oo⁻¹ (x_o - μ_o)`` on the observed entries and 0 elsewhere: the
        marginal density without gathering a different sub-matrix per row.
        Returns ``(chol (N,K,D,D), v (N,K,D), z (N,K,D))``.
        """
        mean = components.mean
        k, d = mean.shape
        m = observed.astype(x.dtype)  # (N, D)
        sigma = self._full_covs(components, k, d)  # (K, D, D)
        eye = jnp.eye(d, dtype=x.dtype)
        a = (m[:, None, :, None] * m[:, None, None, :]) * sigma[None] + eye * (1 - m)[
            :, None, None, :
        ]
        chol = jnp.linalg.cholesky(a)
        z = m[:, None, :] * (x[:, None, :] - mean[None])
        v = jax.scipy.linalg.cho_solve((chol, True), z[..., None])[..., 0]
        return chol, v, z

    def log_prob_components_missing(self, components, x, observed) -> jax.Array:
        """``(N, K)`` log densities of each row's observed entries (the marginal normal)."""
        m = observed.astype(x.dtype)
        d_obs = jnp.sum(m, axis=1)  # (N,)
        if self.covariance_type in ("diag", "spherical"):
            k, d = components.mean.shape
            var = self._full_covs(components, k, d)
            var = jnp.diagonal(var, axis1=-2, axis2=-1)  # (K, D)
            diff = x[:, None, :] - components.mean[None]
            terms = jnp.log(var)[None] + diff * diff / var[None]  # (N, K, D)
            return -0.5 * (d_obs[:, None] * _LOG_2PI + jnp.sum(m[:, None, :] * terms, axis=-1))
        chol, v, z = self._observed_solve(components, x, observed)
        log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        maha = jnp.sum(z * v, axis=-1)
        return -0.5 * (d_obs[:, None] * _LOG_2PI + log_det + maha)

    def missing_sufficient_stats(self, components, x, resp, sample_weight, observed):
        """The closed form's statistics, with each missing entry's conditional moments.

        Exact EM for incomplete normal data (Ghahramani & Jordan 1994): given
        component k and the observed entries, the missing ones are normal with
        mean ``μ_m + Σ_mo Σ_oo⁻¹ (x_o - μ_o)`` and covariance
        ``Σ_mm - Σ_mo Σ_oo⁻¹ Σ_om``; the statistics are their expectations, centred
        at the current means as :class:`MultivariateNormalStats` are.
        """
        wr = resp * sample_weight[:, None]  # (N, K)
        mean = components.mean
        k, d = mean.shape
        m = observed.astype(x.dtype)
        n = jnp.sum(wr, axis=0)
        hi = _HI
        if self.covariance_type in ("diag", "spherical"):
            var = jnp.diagonal(self._full_covs(components, k, d), axis1=-2, axis2=-1)  # (K, D)
            diff = m[:, None, :] * (x[:, None, :] - mean[None])  # missing: E[x] - μ = 0
            s1 = jnp.einsum("nk,nkd->kd", wr, diff, precision=hi)
            s2 = jnp.einsum("nk,nkd->kd", wr, diff * diff, precision=hi)
            s2 = s2 + var * jnp.einsum("nk,nd->kd", wr, 1 - m, precision=hi)
            return MultivariateNormalStats(n, s1, s2)
        sigma = self._full_covs(components, k, d)
        chol, v, _ = self._observed_solve(components, x, observed)
        eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), chol.shape)
        a_inv = jax.scipy.linalg.cho_solve((chol, True), eye)  # (N, K, D, D)
        p = (m[:, None, :, None] * m[:, None, None, :]) * a_inv  # Σ_oo⁻¹, embedded
        # E[x - μ | x_o] = Σ v and E[(x - μ)(x - μ)ᵀ | x_o] = Σ (v vᵀ - P) Σ + Σ, so
        # Σ_i w r (…) = Σ G Σ + n Σ with G = Σ_i w r (v vᵀ - P).
        g = jnp.einsum("nk,nkd,nke->kde", wr, v, v, precision=hi)
        g = g - jnp.einsum("nk,nkde->kde", wr, p, precision=hi)
        s1 = jnp.einsum("kde,ke->kd", sigma, jnp.einsum("nk,nkd->kd", wr, v, precision=hi))
        s2 = sigma @ g @ sigma + n[:, None, None] * sigma
        return MultivariateNormalStats(n, s1, 0.5 * (s2 + jnp.swapaxes(s2, 1, 2)))

    def log_prob(self, params, x):
        """``(N,)`` log densities of one component (``mean (D,)``; ``cov`` without K axis).

        For ``tied`` one component is ``mean (D,)`` with its ``(D, D)`` covariance:
        the same density as ``full``.
        """
        if self.covariance_type == "tied":
            one = params._replace(mean=params.mean[None])
        else:
            one = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
        return self.log_prob_components(one, x)[:, 0]

    def sample(self, key, params, n):
        """``(n, D)`` draws from one component (``tied``: its shared ``(D, D)`` covariance)."""
        mean = jnp.asarray(params.mean)
        cov = jnp.asarray(params.cov, mean.dtype)
        z = jax.random.normal(key, (n,) + mean.shape, mean.dtype)
        if self.covariance_type in ("full", "tied"):
            return mean + z @ jnp.linalg.cholesky(cov).T
        return mean + z * jnp.sqrt(cov)

    def component_axes(self, components):
        """The component axis of each leaf (0, or ``None`` for the shared tied covariance).

        Suited to ``jax.vmap(..., in_axes=...)`` over the components.
        """
        return MultivariateNormalParams(0, None if self.covariance_type == "tied" else 0)

    def condition_number(self, components) -> float | None:
        """Largest 2-norm condition number of the full or tied covariances (else ``None``)."""
        if self.covariance_type not in ("full", "tied"):
            return None  # elementwise variances: no linear system to lose digits in
        cov = np.asarray(components.cov, np.float64)
        with np.errstate(all="ignore"):
            cond = np.linalg.cond(cov.reshape((-1,) + cov.shape[-2:]))
        return float(np.max(np.where(np.isfinite(cond), cond, np.inf)))

    # -- data and starts -----------------------------------------------------------
    def validate_data(self, x) -> None:
        if x.ndim != 2:
            raise ValueError(
                f"MultivariateNormal needs (N, D) data, one row per sample; got shape {x.shape}. "
                "Reshape one feature with x.reshape(-1, 1), or use em.Normal."
            )
        d = x.shape[1]
        mp, cp = self.priors["mean"], self.priors["cov"]
        if isinstance(mp, priors.Normal):
            for name, h in (("loc", mp.loc), ("scale", mp.scale)):
                if h.ndim > 1 or h.size not in (1, d):
                    raise ValueError(
                        f"MultivariateNormal: mean_prior {name} must be a scalar or have shape "
                        f"({d},) for D={d} features, got shape {h.shape}."
                    )
        if isinstance(cp, priors.InverseWishart) and cp.scale.shape != (d, d):
            raise ValueError(
                f"MultivariateNormal: cov_prior=priors.InverseWishart has a {cp.scale.shape} "
                f"scale but the data have D={d} features: use a ({d}, {d}) scale."
            )
        if self.covariance_type == "diag" and isinstance(cp, priors.InverseGamma):
            for name, h in (("concentration", cp.concentration), ("scale", cp.scale)):
                if h.ndim > 1 or h.size not in (1, d):
                    raise ValueError(
                        f"MultivariateNormal: cov_prior {name} must be a scalar or have shape "
                        f"({d},) for D={d} features, got shape {h.shape}."
                    )

    def init(self, key, x, n_components):
        """k-means++ clusters: their means, and their covariances shrunk to the data's.

        Each cluster's scatter gets one pseudo-observation of the global
        covariance, plus ``reg_covar`` and a tiny ridge: positive definite
        even for a one-point cluster or rank-deficient data.
        """
        resp, centres = kmeans_plus_plus(key, x, n_components)
        d = x.shape[1]
        stats = _stats(self, MultivariateNormalParams(centres, None), x, resp, None)
        n = stats.n
        n_safe = jnp.where(n > 0, n, 1)
        mean = jnp.where((n > 0)[:, None], centres + stats.s1 / n_safe[:, None], centres)
        xc = x - jnp.mean(x, axis=0)
        glob = jnp.matmul(xc.T, xc, precision=_HI) / x.shape[0]
        scale = jnp.mean(jnp.diagonal(glob))
        ridge = 10 * jnp.finfo(x.dtype).eps * jnp.where(scale > 0, scale, 1) + self.reg_covar
        eye = jnp.eye(d, dtype=x.dtype)
        if self.covariance_type in ("full", "tied"):
            scatter = stats.s2 - stats.s1[:, :, None] * stats.s1[:, None, :] / n_safe[:, None, None]
            if self.covariance_type == "tied":
                cov = (jnp.sum(scatter, axis=0) + glob) / (jnp.sum(n) + 1) + ridge * eye
            else:
                cov = (scatter + glob) / (n + 1)[:, None, None] + ridge * eye
            cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        else:
            ss = jnp.maximum(stats.s2 - stats.s1**2 / n_safe[:, None], 0)
            cov = (ss + jnp.diagonal(glob)) / (n + 1)[:, None] + ridge
            if self.covariance_type == "spherical":
                cov = jnp.mean(cov, axis=-1)
        return MultivariateNormalParams(mean=mean, cov=cov)

    def gaussian_marginal(self, components, index, dims):
        dims = list(dims)
        mean = host_component(components.mean, index)[dims]
        kind = self.covariance_type
        if kind == "tied":  # one covariance, no component axis
            cov = host_component(components.cov, None)[np.ix_(dims, dims)]
        elif kind == "full":
            cov = host_component(components.cov, index)[np.ix_(dims, dims)]
        elif kind == "diag":
            cov = np.diag(host_component(components.cov, index)[dims])
        else:  # spherical
            cov = float(host_component(components.cov, index)) * np.eye(len(dims))
        return mean, cov


class MultivariateNormalStats(NamedTuple):
    """Row sums per component, centred at the current means ``c`` (float32 accuracy).

    ``n (K,)``: Σ w r; ``s1 (K, D)``: Σ w r (x - c); ``s2``: Σ w r (x - c)(x - c)ᵀ,
    ``(K, D, D)`` for ``full``/``tied``, its diagonal ``(K, D)`` for
    ``diag``/``spherical``.
    """

    n: jax.Array
    s1: jax.Array
    s2: jax.Array


#: the expanded (GEMM) forms are used while ``eps · max (x - c)²/σ²`` stays below
#: this times ``√eps`` (1e-4 in float32, 4.5e-9 in float64)
EXPANSION_TOL = 0.3


#: the most ``rows × features`` the expanded forms build in one piece (2^26
#: floats, 256 MiB in float32: what jaxem.chunks.plan lets a GEMM pass hold);
#: beyond it the exact passes run chunk by chunk
_FEATURES_BUDGET = 1 << 26


def _n_features(d: int, matrix: bool) -> int:
    return d * (d + 1) // 2 + d if matrix else 2 * d


def _features(xc, matrix: bool):
    """The rows' side of the expanded forms: ``(N, 2D)`` ``[x², x]`` (diagonal)
    or ``(N, D(D+1)/2 + D)`` ``[x_i x_j for i <= j, x]`` (full, tied).

    A function of the data alone, computed on all rows at once, so that XLA
    hoists it out of EM's loop: every iteration is then two GEMMs.
    """
    if not matrix:
        return jnp.concatenate([xc * xc, xc], axis=1)
    iu, ju = np.triu_indices(xc.shape[1])
    return jnp.concatenate([xc[:, iu] * xc[:, ju], xc], axis=1)


def _symmetric_index(d: int) -> np.ndarray:
    """``(D, D)``: the column of entry ``(i, j)`` (or ``(j, i)``) among ``x_i x_j, i <= j``."""
    iu, ju = np.triu_indices(d)
    index = np.zeros((d, d), np.int32)
    index[iu, ju] = index[ju, iu] = np.arange(len(iu))
    return index


def _expands(d: int, k: int, matrix: bool) -> bool:
    """Whether the expanded forms pay for ``d`` features and ``k`` components.

    Full and tied covariances: while the ``D(D+1)/2 + D`` features of a row are
    no wider than the ``2·K·D`` temporaries of the exact passes (``D <= 4K - 3``);
    wider, the GEMMs' reads of the features cost more than they save.
    """
    return not matrix or _n_features(d, matrix) <= 2 * k * d


#: full and tied covariances use the expanded forms from this many rows: below
#: it their few extra small ops outweigh the GEMMs' gain (~50 µs per iteration
#: at 150 rows; on par at 1000; 2.5x faster at 4000, (D, K) = (16, 8), a CPU)
_EXPANSION_MIN_ROWS = 1024


def _expansion_fits(n: int, d: int, k: int, matrix: bool) -> bool:
    """Whether ``n`` rows use the expanded forms: they pay (:func:`_expands`),
    and their features fit :data:`_FEATURES_BUDGET` (a static decision)."""
    if matrix and n < _EXPANSION_MIN_ROWS:
        return False
    return _expands(d, k, matrix) and n * _n_features(d, matrix) <= _FEATURES_BUDGET


def _limit(dtype):
    eps = jnp.finfo(dtype).eps
    return EXPANSION_TOL * float(np.sqrt(eps)), eps


@custom_batching.custom_vmap
def _for_all(accurate):
    """``accurate``, and under ``vmap`` (restarts stepped together, bootstrap
    replicates) whether it holds for every member: one unbatched predicate, so
    ``lax.cond`` stays a branch rather than a select that runs both sides."""
    return accurate


@_for_all.def_vmap
def _for_all_batched(axis_size, in_batched, accurate):
    return (jnp.all(accurate) if in_batched[0] else accurate), False


def _expansion_accurate(xc, mc, prec):
    """Whether the expanded forms lose less than ``EXPANSION_TOL · √eps``.

    ``x²p - 2xmp + m²p`` loses ``eps · ((x - c)² + (m - c)²) · p`` to
    cancellation, with ``c`` the centring point (``xc = x - c``, ``mc = m - c``);
    bounded over the rows with each feature's largest ``(x - c)²`` (per term:
    diagonal). With a precision matrix ``P`` (``prec`` ``(K, D, D)``) the
    ``D(D+1)/2 + D`` terms' losses, independent, add up in root-sum-square:
    :func:`_quadratic_bound`, with ``s² = max (x - c)² + (m - c)²``.
    """
    xc, mc, prec = jax.lax.stop_gradient((xc, mc, prec))  # a decision, not a value
    spread = jnp.max(xc * xc, axis=0)  # (D,)
    if prec.ndim == 3:
        kappa = jnp.max(_quadratic_bound(prec, spread + mc * mc))
    else:
        kappa = jnp.max((spread + mc * mc) * prec)
    limit, eps = _limit(prec.dtype)
    return _for_all(eps * kappa < limit)


def _quadratic_bound(prec, size_sq):
    """``(K,)`` ``‖diag(s_k) |P_k| diag(s_k)‖_F`` with ``s = √size_sq`` (``(K, D)``).

    Terms ``P_ij x_i x_j`` with ``|x_i| <= s_i`` each carry a rounding error up
    to ``eps · |P_ij| s_i s_j``; independent, they add up like the root of the
    sum of their squares (on (1e5, 16, 8) data, float32: eps times this bound
    4.2e-5, the largest error seen 3.8e-5, where the plain sum, 3.9e-4, was ten
    times too pessimistic). Not finite where ``P`` is not (a singular matrix).
    """
    s = jnp.sqrt(size_sq)
    scaled = jnp.abs(prec) * s[:, :, None] * s[:, None, :]
    return jnp.sqrt(jnp.sum(scaled * scaled, axis=(1, 2)))


def _stats(family, params, x, resp, sample_weight):
    wr = resp if sample_weight is None else resp * sample_weight[:, None]  # (N, K)
    mean = params.mean
    n, d = x.shape
    k = mean.shape[0]
    matrix = family.covariance_type in ("full", "tied")

    def rows_stats(x_rows, wr_rows):
        diff = x_rows[None, :, :] - mean[:, None, :]  # (K, rows, D)
        s1 = jnp.einsum("nk,knd->kd", wr_rows, diff, precision=_HI)
        if matrix:
            # K GEMMs (one batched matmul) of (√(w r)·(x - c))ᵀ(√(w r)·(x - c)):
            # much faster than einsum('nk,nd,ne->kde').
            z = jnp.sqrt(wr_rows).T[:, :, None] * diff
            s2 = jnp.matmul(jnp.swapaxes(z, 1, 2), z, precision=_HI)
        else:
            s2 = jnp.einsum("nk,knd->kd", wr_rows, diff * diff, precision=_HI)
        return MultivariateNormalStats(jnp.sum(wr_rows, axis=0), s1, s2)

    def exact():
        return _chunks.sum_rows(rows_stats, x, wr, k)

    if not _expansion_fits(n, d, k, matrix):
        return exact()
    return _stats_expanded(params, x, wr, matrix, exact)


def _stats_expanded(params, x, wr, matrix: bool, exact):
    """The statistics as one GEMM, ``(w r)ᵀ`` times the rows' :func:`_features`, when accurate.

    Centred at the rows' mean ``g``, then re-centred at the component means
    (the statistics' convention). The re-centring ``Σ(x - m)² = Σx² - 2mΣx +
    n m²`` cancels: when it loses more than ``EXPANSION_TOL · √eps`` of a
    variance (off-diagonal entries lose at most the geometric mean of their
    two variances' loss), ``exact()`` (the centred sums) is used instead.
    """
    k, d = params.mean.shape
    centre = jnp.mean(x, axis=0)
    xc, mc = x - centre, params.mean - centre
    n = jnp.sum(wr, axis=0)
    sums = jnp.matmul(wr.T, _features(xc, matrix), precision=_HI)
    sx = sums[:, -d:]
    tiny = jnp.finfo(sums.dtype).tiny
    limit, eps = _limit(sums.dtype)
    if matrix:
        sxx = sums[:, _symmetric_index(d)]  # (K, D, D) from the upper triangle: a gather
        outer = mc[:, :, None] * sx[:, None, :]
        centre_sq = n[:, None, None] * mc[:, :, None] * mc[:, None, :]
        s2 = sxx - outer - jnp.swapaxes(outer, 1, 2) + centre_sq
        # Entry (i, j) loses up to eps·s_i·s_j (s² = Σx_i² + n m_i², what cancels).
        # What matters is that loss relative to s2 along its narrowest direction
        # (correlated features: not only its diagonal), i.e. against s2⁻¹.
        size = jnp.diagonal(sxx, axis1=1, axis2=2) + n[:, None] * mc * mc
        held, size, counts = jax.lax.stop_gradient((s2, size, n))
        ratio = _quadratic_bound(jnp.linalg.inv(held), size)
        loss = eps * jnp.max(jnp.where(counts > 0, ratio, 0))  # nan (singular): exact
    else:
        square = sums[:, :d]
        s2 = square - 2 * mc * sx + n[:, None] * mc * mc
        size = square + n[:, None] * mc * mc  # what cancels
        loss = eps * jnp.max(jax.lax.stop_gradient(size / jnp.maximum(s2, tiny)))
    stats = MultivariateNormalStats(n, sx - n[:, None] * mc, s2 if matrix else jnp.maximum(s2, 0))
    return jax.lax.cond(_for_all(loss < limit), lambda: stats, exact)


def _update(family, params, stats):
    kind = family.covariance_type
    n, s1, s2 = stats.n, stats.s1, stats.s2
    d = s1.shape[-1]
    dtype = s1.dtype
    has_data = n > 0
    n_safe = jnp.where(has_data, n, 1)
    centre = params.mean  # the point the statistics are centred at
    reg = jnp.asarray(family.reg_covar, dtype)
    mp, cp = family.priors["mean"], family.priors["cov"]
    eye = jnp.eye(d, dtype=dtype)

    def mean_given_cov(cov):
        if mp is None:
            return jnp.where(has_data[:, None], centre + s1 / n_safe[:, None], centre)
        loc = jnp.broadcast_to(jnp.asarray(mp.loc, dtype), (d,))
        sd = jnp.broadcast_to(jnp.asarray(mp.scale, dtype), (d,))
        rhs = n[:, None] * (centre - loc) + s1  # Σ w r (x - loc)
        if kind in ("full", "tied"):
            # (n Σ⁻¹ + T⁻²) m = Σ⁻¹ Σ w r x + T⁻² loc with T = diag(sd), solved as
            # (n I + T⁻¹ Σ T⁻¹) T⁻¹ (m - loc) = T⁻¹ rhs: symmetric positive definite.
            covs = jnp.broadcast_to(cov, (n.shape[0], d, d))
            a = n[:, None, None] * eye + covs / (sd[:, None] * sd[None, :])
            chol = jnp.linalg.cholesky(a)
            y = jax.scipy.linalg.cho_solve((chol, True), (rhs / sd)[..., None])[..., 0]
            return loc + sd * y
        var = cov if kind == "diag" else cov[:, None]
        return loc + rhs / (n[:, None] + var / sd**2)

    def cov_given_mean(mean, cov_old):
        delta = mean - centre  # (K, D)
        if kind in ("full", "tied"):
            outer = delta[:, :, None] * s1[:, None, :]
            scatter = s2 - outer - jnp.swapaxes(outer, 1, 2)
            scatter = scatter + n[:, None, None] * delta[:, :, None] * delta[:, None, :]
            scatter = 0.5 * (scatter + jnp.swapaxes(scatter, 1, 2))  # Σ w r (x - m)(x - m)ᵀ
            if kind == "tied":
                scatter, count = jnp.sum(scatter, axis=0), jnp.sum(n)
            else:
                count = n[:, None, None]
            if cp is None:
                cov = scatter / jnp.where(count > 0, count, 1)
            else:
                df = jnp.asarray(cp.df, dtype)
                cov = (scatter + jnp.asarray(cp.scale, dtype)) / (count + df + d + 1)
            cov = cov + reg * eye
            if kind == "full" and cp is None:
                cov = jnp.where(has_data[:, None, None], cov, cov_old)
            return cov
        ss = jnp.maximum(s2 - 2 * delta * s1 + n[:, None] * delta**2, 0)  # (K, D)
        count = n[:, None]
        if kind == "spherical":
            ss, count = jnp.sum(ss, axis=-1), n * d
        if cp is None:
            cov = jnp.where(count > 0, ss / jnp.where(count > 0, count, 1) + reg, cov_old)
        else:
            a = jnp.asarray(cp.concentration, dtype)
            b = jnp.asarray(cp.scale, dtype)
            cov = (ss + 2 * b) / (count + 2 * a + 2) + reg
        return cov

    def sweep(_, p):
        mean = mean_given_cov(p.cov)
        return MultivariateNormalParams(mean, cov_given_mean(mean, p.cov))

    # Without a mean prior the mean update ignores the covariance: one sweep
    # is the joint maximiser (shifted by reg_covar).
    sweeps = family.ecm_sweeps if mp is not None else 1
    return jax.lax.fori_loop(0, sweeps, sweep, params)


def _applies(family):
    mp, cp = family.priors["mean"], family.priors["cov"]
    matrix = family.covariance_type in ("full", "tied")
    conj = priors.InverseWishart if matrix else priors.InverseGamma
    return (mp is None or type(mp) is priors.Normal) and (cp is None or type(cp) is conj)


def _exact(family):
    # reg_covar shifts the maximiser; a mean prior makes the update ECM.
    return family.reg_covar == 0 and family.priors["mean"] is None


register_m_step(
    MultivariateNormal, _update, sufficient_stats=_stats, applies=_applies, exact=_exact
)
