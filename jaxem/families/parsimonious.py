"""mclust's fourteen Gaussian covariance models (Celeux & Govaert 1995).

Each component covariance is factored as ``Σ_k = λ_k D_k A_k D_kᵀ``: a volume
``λ_k`` (a scalar), a shape ``A_k`` (diagonal, determinant 1) and an
orientation ``D_k`` (orthogonal). A model's three letters say, in that order,
whether volume, shape and orientation are **E**\\ qual across components,
**V**\\ arying, or the **I**\\ dentity:

======  ===========================  ==========================  ===================
model   ``Σ_k``                      scikit-learn                free ``Σ`` entries
======  ===========================  ==========================  ===================
EII     ``λ I``                                                  ``1``
VII     ``λ_k I``                    ``spherical``               ``K``
EEI     ``λ A``                                                  ``D``
VEI     ``λ_k A``                                                ``K + D - 1``
EVI     ``λ A_k``                                                ``1 + K (D - 1)``
VVI     ``λ_k A_k``                  ``diag``                    ``K D``
EEE     ``λ D A Dᵀ``                 ``tied``                    ``D (D + 1) / 2``
VEE     ``λ_k D A Dᵀ``                                           ``K + D (D + 1) / 2 - 1``
EVE     ``λ D A_k Dᵀ``                                           ``1 + K (D - 1) + D (D - 1) / 2``
VVE     ``λ_k D A_k Dᵀ``                                         ``K D + D (D - 1) / 2``
EEV     ``λ D_k A D_kᵀ``                                         ``D + K D (D - 1) / 2``
VEV     ``λ_k D_k A D_kᵀ``                                       ``K + D - 1 + K D (D - 1) / 2``
EVV     ``λ C_k`` (``|C_k| = 1``)                                ``1 + K (D (D + 1) / 2 - 1)``
VVV     ``Σ_k``                      ``full``                    ``K D (D + 1) / 2``
======  ===========================  ==========================  ===================

The parameters are always ``MultivariateNormalParams(mean (K, D), cov (K, D, D))``
(a shared covariance is repeated per component), so the E-step is the full
covariance one. The M-step is the maximiser of ``Q`` within the model, from the
weighted scatter matrices ``W_k = Σ_i w_i r_ik (x_i - μ_k)(x_i - μ_k)ᵀ``:

- in closed form for EII, VII, EEI, EVI, VVI, EEE, EEV, EVV and VVV;
- by conditional maximisation (ECM: each step maximises ``Q`` over some factors
  given the others, so ``Q`` never decreases) for VEI, VEE and VEV (volumes given
  the shared shape/orientation, then those given the volumes), and for EVE and
  VVE (shapes given the common orientation ``D``, then ``D`` given the shapes by
  a sweep of Jacobi plane rotations, each the exact minimiser in its plane).

``reg_covar`` adds ``n_k · reg_covar · I`` to each scatter matrix before the
update: for VVV, EEE, VVI, VII and EII this is scikit-learn's ``reg_covar``
(``reg_covar · I`` added to the covariance); for the other models it keeps the
structure. With ``reg_covar=0`` the closed forms are the exact maximisers.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.families.base import register_m_step
from jaxem.families.mvn import (
    MultivariateNormal,
    MultivariateNormalParams,
    MultivariateNormalStats,
    _stats,
)

__all__ = [
    "ParsimoniousGaussian",
    "MCLUST_MODELS",
    "SKLEARN_EQUIVALENT",
    "n_covariance_parameters",
    "covariance_update",
]

#: mclust's model names, in mclust's order.
MCLUST_MODELS = (
    "EII",
    "VII",
    "EEI",
    "VEI",
    "EVI",
    "VVI",
    "EEE",
    "VEE",
    "EVE",
    "VVE",
    "EEV",
    "VEV",
    "EVV",
    "VVV",
)
#: The mclust model that each scikit-learn ``covariance_type`` is.
SKLEARN_EQUIVALENT = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}


def n_covariance_parameters(model: str, d: int, k: int) -> int:
    """Free parameters of the K covariances of ``model`` in ``d`` dimensions (mclust's count).

    Example:
        >>> n_covariance_parameters("VEV", 2, 3)   # 3 volumes + 1 shape + 3 angles
        7
    """
    model = _check_model(model, "n_covariance_parameters")
    tri, rot = d * (d + 1) // 2, d * (d - 1) // 2
    return {
        "EII": 1,
        "VII": k,
        "EEI": d,
        "VEI": k + d - 1,
        "EVI": 1 + k * (d - 1),
        "VVI": k * d,
        "EEE": tri,
        "VEE": k + tri - 1,
        "EVE": 1 + k * (d - 1) + rot,
        "VVE": k * d + rot,
        "EEV": d + k * rot,
        "VEV": k + d - 1 + k * rot,
        "EVV": 1 + k * (tri - 1),
        "VVV": k * tri,
    }[model]


def _check_model(model, where: str) -> str:
    if not isinstance(model, str) or model.upper() not in MCLUST_MODELS:
        raise ValueError(
            f"{where}: model must be one of mclust's names {MCLUST_MODELS}; got {model!r}. "
            "scikit-learn's covariance types are "
            + ", ".join(f"{k!r} = {v!r}" for k, v in SKLEARN_EQUIVALENT.items())
            + "."
        )
    return model.upper()


# -- the covariance updates ------------------------------------------------------------


def _geomean(v, axis=-1):
    """``(Π v)^{1/d}`` along ``axis`` in log space (0 where any entry is 0)."""
    return jnp.exp(jnp.mean(jnp.log(v), axis=axis))


def _det_root(m):
    """``|m|^{1/d}`` of symmetric positive definite ``(..., d, d)`` matrices."""
    d = m.shape[-1]
    chol = jnp.linalg.cholesky(m)
    return jnp.exp(2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1) / d)


def _diag(v):
    """``(..., d)`` -> ``(..., d, d)`` diagonal matrices."""
    return v[..., :, None] * jnp.eye(v.shape[-1], dtype=v.dtype)


def _rotate(orient, shape):
    """``D diag(shape) Dᵀ`` for ``(..., d, d)`` orientations and ``(..., d)`` shapes."""
    return jnp.matmul(orient * shape[..., None, :], jnp.swapaxes(orient, -1, -2))


def _eigh_desc(m):
    """Eigenvalues (descending, floored at 0) and eigenvectors of symmetric ``m``."""
    w, v = jnp.linalg.eigh(m)
    return jnp.maximum(w[..., ::-1], 0), v[..., ::-1]


def _common_orientation(cov_old, has):
    """An orthogonal ``D`` that diagonalises every ``Σ_k`` sharing one orientation.

    A generic positive combination of the ``Σ_k`` has distinct eigenvalues, and
    its eigenvectors diagonalise each of them when they share ``D``.
    """
    k = cov_old.shape[0]
    c = jnp.where(has, 1.0 / (1.0 + jnp.arange(k, dtype=cov_old.dtype) * 0.61803), 0)
    c = jnp.where(jnp.any(has), c, 1.0)
    return jnp.linalg.eigh(jnp.einsum("k,kij->ij", c, cov_old))[1]


def _jacobi_sweep(orient, scatter, inv_shapes, has):
    """One sweep of plane rotations of ``D`` lowering ``f(D) = Σ_k tr(Dᵀ W_k D diag(b_k))``.

    Rotating columns ``i, j`` of ``D`` by ``θ`` changes ``f`` by
    ``α cos 2θ + β sin 2θ + const`` with ``α = ½ Σ_k (b_ki - b_kj)(p_k - q_k)``,
    ``β = Σ_k (b_ki - b_kj) r_k`` (``p, q, r``: the ``ii, jj, ij`` entries of
    ``Dᵀ W_k D``), so each rotation is the exact minimiser in its plane and ``f``
    never increases (Jacobi's method, as Flury & Gautschi's for common principal
    components). ``O(K D)`` per rotation: only two rows and columns change.
    """
    d = orient.shape[-1]
    hasf = has.astype(scatter.dtype)
    m = jnp.einsum("ji,kjl,lm->kim", orient, scatter, orient) * hasf[:, None, None]
    first, second = np.triu_indices(d, 1)
    first, second = jnp.asarray(first), jnp.asarray(second)

    def rotate(t, carry):
        orient, m = carry
        i, j = first[t], second[t]
        p, q, r = m[:, i, i], m[:, j, j], m[:, i, j]
        db = (inv_shapes[:, i] - inv_shapes[:, j]) * hasf
        alpha, beta = 0.5 * jnp.sum(db * (p - q)), jnp.sum(db * r)
        theta = 0.5 * jnp.arctan2(-beta, -alpha)
        theta = jnp.where(jnp.hypot(alpha, beta) > 0, theta, 0)
        c, s = jnp.cos(theta), jnp.sin(theta)
        ci, cj = orient[:, i], orient[:, j]
        orient = orient.at[:, i].set(c * ci + s * cj).at[:, j].set(c * cj - s * ci)
        ri, rj = m[:, i, :], m[:, j, :]
        m = m.at[:, i, :].set(c * ri + s * rj).at[:, j, :].set(c * rj - s * ri)
        ki, kj = m[:, :, i], m[:, :, j]
        m = m.at[:, :, i].set(c * ki + s * kj).at[:, :, j].set(c * kj - s * ki)
        return orient, m

    return jax.lax.fori_loop(0, first.shape[0], rotate, (orient, m))[0]


def covariance_update(model: str, scatter, n, cov_old, *, sweeps: int = 10):
    """The covariances of ``model`` that maximise ``Q`` given the scatter matrices.

    Args:
        model: one of :data:`MCLUST_MODELS`.
        scatter: ``(K, D, D)`` weighted scatter matrices ``W_k`` about the new means.
        n: ``(K,)`` weighted counts ``n_k``; components with ``n_k = 0`` (empty or
            masked) keep what they had where the model lets them and take the
            shared factors where it does not.
        cov_old: ``(K, D, D)`` the current covariances: where ECM starts.
        sweeps: conditional-maximisation sweeps of the iterative models.

    Returns:
        ``(K, D, D)`` covariances.
    """
    k, d = n.shape[0], scatter.shape[-1]
    dtype = scatter.dtype
    has = n > 0
    n_safe = jnp.where(has, n, 1)
    total = jnp.sum(n)
    eye = jnp.eye(d, dtype=dtype)
    pooled = jnp.sum(scatter, axis=0)

    def keep(new):  # empty components keep their covariance (models with V everywhere)
        return jnp.where(has[:, None, None], new, cov_old)

    def shared(mat):
        return jnp.broadcast_to(mat, (k, d, d))

    def volumes_given(inner_inv_trace):  # λ_k = tr(W_k S⁻¹) / (d n_k)
        return inner_inv_trace / (d * n_safe)

    old_volume = _det_root(cov_old)  # (K,)
    dg = jnp.diagonal(scatter, axis1=-2, axis2=-1)  # (K, D)
    if model == "VVV":
        return keep(scatter / n_safe[:, None, None])
    if model == "EEE":
        return shared(pooled / total)
    if model == "EII":
        return shared(jnp.trace(pooled) / (total * d) * eye)
    if model == "VII":
        return keep(
            jnp.trace(scatter, axis1=-2, axis2=-1)[:, None, None]
            / (d * n_safe)[:, None, None]
            * eye
        )
    if model == "EEI":
        return shared(_diag(jnp.diagonal(pooled) / total))
    if model == "VVI":
        return keep(_diag(dg / n_safe[:, None]))
    if model in ("EVI", "EVV"):
        root = _geomean(dg) if model == "EVI" else _det_root(scatter + (~has)[:, None, None] * eye)
        root = jnp.where(has, root, 0)
        lam = jnp.sum(root) / total
        unit = scatter / jnp.where(has, root, 1)[:, None, None]
        if model == "EVI":
            unit = _diag(jnp.diagonal(unit, axis1=-2, axis2=-1))
        old_unit = cov_old / old_volume[:, None, None]
        return lam * jnp.where(has[:, None, None], unit, old_unit)
    if model == "EEV":
        omega, orient = _eigh_desc(scatter)  # (K, D), (K, D, D)
        big = jnp.sum(omega, axis=0)  # Σ_k Ω_k, descending
        g = _geomean(big)
        return (g / total) * _rotate(orient, big / g)
    if model in ("VEI", "VEE", "VEV"):
        if model == "VEV":
            omega, orient = _eigh_desc(scatter)
            inner = omega  # (K, D): W_k in its own eigenbasis
            old_shape = _eigh_desc(cov_old[jnp.argmax(has)])[0]
            start = old_shape / _geomean(old_shape)
        elif model == "VEI":
            inner = dg
            start = jnp.diagonal(cov_old[jnp.argmax(has)])
            start = start / _geomean(start)
        else:
            inner = scatter
            start = cov_old[jnp.argmax(has)]
            start = start / _det_root(start)

        def volumes(shape):
            if model == "VEE":
                tr = jnp.einsum("kij,ji->k", scatter, jnp.linalg.inv(shape))
            else:
                tr = jnp.sum(inner / shape, axis=-1)
            return jnp.where(has, volumes_given(tr), 1)

        def sweep(_, shape):
            lam = volumes(shape)
            s = jnp.einsum("k,k...->...", jnp.where(has, 1 / lam, 0), inner)
            return s / (_det_root(s) if model == "VEE" else _geomean(s))

        shape = jax.lax.fori_loop(0, sweeps, sweep, start)
        lam = jnp.where(has, volumes(shape), old_volume)
        if model == "VEV":
            old_orient = _eigh_desc(cov_old)[1]
            orient = jnp.where(has[:, None, None], orient, old_orient)
            return lam[:, None, None] * _rotate(orient, jnp.broadcast_to(shape, (k, d)))
        unit = _diag(shape) if model == "VEI" else shape
        return lam[:, None, None] * shared(unit)
    # EVE and VVE: a common orientation D, shapes (and volumes) per component.
    old_in_basis = lambda orient: jnp.diagonal(  # noqa: E731
        jnp.swapaxes(orient, -1, -2) @ cov_old @ orient, axis1=-2, axis2=-1
    )

    def shapes_given(orient):  # (K, D): λ_k A_k (VVE) or λ A_k (EVE), the CM step given D
        p = jnp.diagonal(jnp.swapaxes(orient, -1, -2) @ scatter @ orient, axis1=-2, axis2=-1)
        p = jnp.maximum(p, jnp.finfo(dtype).tiny)
        if model == "VVE":
            fresh = p / n_safe[:, None]
        else:
            root = _geomean(p)
            lam = jnp.sum(jnp.where(has, root, 0)) / total
            fresh = lam * p / root[:, None]
        old = old_in_basis(orient)
        if model == "EVE":
            old = lam * old / _geomean(old)[:, None]
        return jnp.where(has[:, None], fresh, old)

    def sweep(_, orient):
        return _jacobi_sweep(orient, scatter, 1 / shapes_given(orient), has)

    orient = jax.lax.fori_loop(0, sweeps, sweep, _common_orientation(cov_old, has))
    return _rotate(orient, shapes_given(orient))


# -- the family --------------------------------------------------------------------------


class ParsimoniousGaussian(MultivariateNormal):
    """Gaussian components with one of mclust's 14 covariance models.

    ``Σ_k = λ_k D_k A_k D_kᵀ`` with volume, shape and orientation each equal
    across components (E), varying (V) or the identity (I); see
    :mod:`jaxem.families.parsimonious` for the table. Parameters are
    ``MultivariateNormalParams(mean (K, D), cov (K, D, D))`` for every model.

    Args:
        model: mclust's name, e.g. ``"VEV"``. ``"VVV"`` is scikit-learn's
            ``full``, ``"EEE"`` ``tied``, ``"VVI"`` ``diag``, ``"VII"``
            ``spherical`` (with full ``(K, D, D)`` matrices here).
        reg_covar: ``n_k · reg_covar · I`` is added to each scatter matrix
            before the update (scikit-learn's ``reg_covar`` for the models it
            has; structure-preserving for the others). ``0``: the exact maximum
            likelihood update.
        sweeps: conditional-maximisation sweeps per M-step of the iterative
            models (VEI, VEE, EVE, VVE, VEV); each sweep never decreases ``Q``.

    Example:
        >>> fam = em.ParsimoniousGaussian("VEV")
        >>> res = em.fit(em.Mixture(fam, 3), x, key=jax.random.key(0), restarts=16)
        >>> em.n_parameters(em.Mixture(fam, 3), res.params)   # mclust's count
    """

    name = "mclust"
    hyperparameters = ("model", "reg_covar", "sweeps")
    params_type = MultivariateNormalParams

    def __init__(self, model: str = "VVV", *, reg_covar: float = 1e-6, sweeps: int = 10):
        model = _check_model(model, "ParsimoniousGaussian")
        if isinstance(sweeps, bool) or not isinstance(sweeps, numbers.Integral) or sweeps < 1:
            raise ValueError(
                f"ParsimoniousGaussian: sweeps must be an integer >= 1, got {sweeps!r}."
            )
        super().__init__("full", reg_covar=reg_covar)
        self.model = model
        self.sweeps = int(sweeps)

    def __repr__(self) -> str:
        return f"ParsimoniousGaussian({self.model!r}, reg_covar={self.reg_covar})"

    @property
    def tied_coordinates(self) -> bool:
        """Whether the model ties covariance entries (all but VVV): no Hessian standard errors."""
        return self.model != "VVV"

    def init(self, key, x, n_components):
        """k-means++ clusters: their means, and their covariances projected onto the model."""
        start = super().init(key, x, n_components)
        k = start.cov.shape[0]
        ones = jnp.ones(k, start.cov.dtype)
        cov = covariance_update(self.model, start.cov, ones, start.cov, sweeps=self.sweeps)
        return MultivariateNormalParams(start.mean, cov)

    def n_fixed(self, block, mask=None) -> int:
        """Covariance entries the model ties (counted free by ``positive_definite``)."""
        k, d = np.shape(block.cov)[:2]
        if mask is not None and np.any(mask.cov):
            if np.all(mask.cov):
                return 0
            raise ValueError(
                "ParsimoniousGaussian: fixed= may hold the whole cov leaf or none of it."
            )
        return k * d * (d + 1) // 2 - n_covariance_parameters(self.model, d, k)


def _update(family, params, stats: MultivariateNormalStats):
    n, s1, s2 = stats.n, stats.s1, stats.s2
    d = s1.shape[-1]
    has = n > 0
    n_safe = jnp.where(has, n, 1)
    mean = jnp.where(has[:, None], params.mean + s1 / n_safe[:, None], params.mean)
    # Σ w r (x - m)(x - m)ᵀ from sums centred at the old means c: s2 - s1 s1ᵀ / n.
    scatter = s2 - s1[:, :, None] * s1[:, None, :] / n_safe[:, None, None]
    scatter = 0.5 * (scatter + jnp.swapaxes(scatter, 1, 2))
    scatter = scatter + (family.reg_covar * n)[:, None, None] * jnp.eye(d, dtype=s2.dtype)
    cov = covariance_update(family.model, scatter, n, params.cov, sweeps=family.sweeps)
    return MultivariateNormalParams(mean, cov)


def _exact(family):
    # em.check_m_step measures stationarity in the coordinates of the family's
    # constraints: each (D, D) covariance free. Only VVV is free there; the other
    # models tie entries, so their updates are reported as ascent steps (their
    # stationarity within the model is tested in tests/test_parsimonious.py).
    return family.reg_covar == 0 and family.model == "VVV"


register_m_step(
    ParsimoniousGaussian,
    _update,
    sufficient_stats=_stats,
    applies=lambda family: True,
    exact=_exact,
)
