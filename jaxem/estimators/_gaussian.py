"""Gaussian helpers of ``GaussianMixture``.

Starting points drawn in JAX inside the fit program (``init_params``), and the
float64 NumPy scoring and precision conversions that follow scikit-learn's
conventions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.mvn import MultivariateNormal, MultivariateNormalParams
from jaxem.mixture import Mixture, MixtureParams

# -- starting points for GaussianMixture ----------------------------------------------


def _lloyd_resp(key, x, k: int, max_iter: int = 100):
    """k-means: Lloyd iterations from k-means++ centres; one-hot ``(N, K)`` assignments."""
    xc = x - jnp.mean(x, axis=0)
    _, centres = kmeans_plus_plus(key, xc, k)
    sq = jnp.sum(xc * xc, axis=1)[:, None]

    def labels_of(c):
        return jnp.argmin(sq - 2 * xc @ c.T + jnp.sum(c * c, axis=1)[None, :], axis=1)

    def body(state):
        i, c, labels, _ = state
        onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
        counts = jnp.sum(onehot, axis=0)
        c = jnp.where((counts > 0)[:, None], (onehot.T @ xc) / jnp.maximum(counts, 1)[:, None], c)
        new = labels_of(c)
        return i + 1, c, new, jnp.any(new != labels)

    def cond(state):
        return (state[0] < max_iter) & state[3]

    state = (jnp.zeros((), jnp.int32), centres, labels_of(centres), jnp.ones((), bool))
    labels = jax.lax.while_loop(cond, body, state)[2]
    return jax.nn.one_hot(labels, k, dtype=x.dtype)


def _random_resp(key, x, k: int):
    """scikit-learn's ``random``: uniform random responsibilities, rows normalised."""
    r = jax.random.uniform(key, (x.shape[0], k), x.dtype)
    return r / jnp.sum(r, axis=1, keepdims=True)


def _from_data_resp(key, x, k: int):
    """``random_from_data``: K rows chosen uniformly, never two with the same values.

    One-hot at the chosen rows only (scikit-learn's responsibilities), so each
    component starts at a data point with covariance ``reg_covar``.
    """
    n = x.shape[0]

    def pick(i, carry):
        idx, free = carry  # free: rows whose values differ from every chosen row
        count = jnp.sum(free)
        p = jnp.where(count > 0, free / jnp.maximum(count, 1), 1.0 / n).astype(x.dtype)
        new = jax.random.choice(jax.random.fold_in(key, i), n, p=p)
        free = free & jnp.any(x != x[new], axis=-1)
        return idx.at[i].set(new.astype(jnp.int32)), free

    start = (jnp.zeros(k, jnp.int32), jnp.ones(n, bool))
    idx, _ = jax.lax.fori_loop(0, k, pick, start)
    return jnp.zeros((n, k), x.dtype).at[idx, jnp.arange(k)].set(1)


def _gaussian_parameters(x, resp, covariance_type: str, reg_covar: float):
    """scikit-learn's ``_estimate_gaussian_parameters`` from responsibilities.

    Returns ``(weights (K,), means (K, D), cov)``; the weights are normalised.
    """
    dtype = x.dtype
    centre = jnp.mean(x, axis=0)
    xc = x - centre
    nk = jnp.sum(resp, axis=0) + 10 * jnp.finfo(dtype).eps
    means = resp.T @ xc / nk[:, None]
    diff = xc[None, :, :] - means[:, None, :]  # (K, N, D)
    d = x.shape[1]
    eye = jnp.eye(d, dtype=dtype)
    if covariance_type in ("full", "tied"):
        scatter = jnp.einsum("nk,knd,kne->kde", resp, diff, diff)
        if covariance_type == "full":
            cov = scatter / nk[:, None, None] + reg_covar * eye
        else:
            cov = jnp.sum(scatter, axis=0) / jnp.sum(nk) + reg_covar * eye
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    else:
        cov = jnp.einsum("nk,knd->kd", resp, diff * diff) / nk[:, None] + reg_covar
        if covariance_type == "spherical":
            cov = jnp.mean(cov, axis=1)
    return nk / jnp.sum(nk), means + centre, cov


_RESPONSIBILITIES = {
    "kmeans": _lloyd_resp,
    "random": _random_resp,
    "random_from_data": _from_data_resp,
}
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


class _GaussianStarts(Mixture):
    """A Gaussian mixture whose random starts follow ``init_params`` (drawn in the fit program).

    ``k-means++`` is ``MultivariateNormal.init`` (k-means++ clusters, covariances
    shrunk to the data's); the others build scikit-learn's responsibilities and
    take one M-step from them.
    """

    def __init__(self, covariance_type: str, reg_covar: float, n_components: int, init_params):
        super().__init__(MultivariateNormal(covariance_type, reg_covar=reg_covar), n_components)
        self.init_params = init_params

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, init_params={self.init_params!r})"

    def _draw(self, key, x):
        if self.init_params == "k-means++":
            return super()._draw(key, x)
        resp = _RESPONSIBILITIES[self.init_params](key, x, self.n_components)
        fam = self.family
        w, means, cov = _gaussian_parameters(x, resp, fam.covariance_type, fam.reg_covar)
        return MixtureParams(w, MultivariateNormalParams(means, cov))


# -- precisions (float64 NumPy, scikit-learn's conventions) ---------------------------

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def _precisions_cholesky(cov: np.ndarray, covariance_type: str) -> np.ndarray:
    """``precisions_cholesky_``: upper-triangular ``U`` with ``U Uᵀ = Σ⁻¹`` (or ``1/√var``)."""
    if covariance_type in ("full", "tied"):
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(_ILL_DEFINED) from None
        eye = np.broadcast_to(np.eye(cov.shape[-1]), cov.shape)
        return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)
    if np.any(cov <= 0):
        raise ValueError(_ILL_DEFINED)
    return 1.0 / np.sqrt(cov)


def _covariances_from_precisions(prec: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        chol = np.linalg.cholesky(prec)
        eye = np.broadcast_to(np.eye(prec.shape[-1]), prec.shape)
        inv_chol = np.linalg.solve(chol, eye)  # L⁻¹; Σ = P⁻¹ = L⁻ᵀ L⁻¹
        cov = np.swapaxes(inv_chol, -1, -2) @ inv_chol
        return 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return 1.0 / prec


def _gaussian_log_prob(X, means, prec_chol, covariance_type: str) -> np.ndarray:
    """``(N, K)`` log densities, scikit-learn's ``_estimate_log_gaussian_prob`` in float64."""
    n, d = X.shape
    k = means.shape[0]
    out = np.empty((n, k))
    for j in range(k):  # one component at a time: no (N, K, D) temporaries
        if covariance_type == "full":
            u = prec_chol[j]
            y = X @ u - means[j] @ u
            log_det = np.sum(np.log(np.diag(u)))
        elif covariance_type == "tied":
            y = X @ prec_chol - means[j] @ prec_chol
            log_det = np.sum(np.log(np.diag(prec_chol)))
        elif covariance_type == "diag":
            y = (X - means[j]) * prec_chol[j]
            log_det = np.sum(np.log(prec_chol[j]))
        else:
            y = (X - means[j]) * prec_chol[j]
            log_det = d * np.log(prec_chol[j])
        out[:, j] = -0.5 * (d * np.log(2 * np.pi) + np.sum(y * y, axis=1)) + log_det
    return out


def _missingness_patterns(observed: np.ndarray):
    """Yield ``(pattern (D,) bool, rows)`` for each distinct row of ``observed``.

    Rows are grouped by sorting (``O(N log N)``), so the work per pattern runs
    once for all the rows that share it.
    """
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.reshape(inverse, -1)
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=len(patterns)))
    starts = ends - np.bincount(inverse, minlength=len(patterns))
    for pattern, start, end in zip(patterns, starts, ends, strict=True):
        yield pattern, order[start:end]


def _gaussian_log_prob_missing(X, means, cov, prec_chol, covariance_type: str) -> np.ndarray:
    """``(N, K)`` log densities of the observed entries of each row (NaN = missing).

    Each row's density is the marginal normal of its observed block: mean
    ``μ_o``, covariance ``Σ_oo`` (whose Cholesky factor is computed once per
    missingness pattern). Complete rows use ``precisions_cholesky_`` as
    :func:`_gaussian_log_prob` does (scikit-learn's values); a row with nothing
    observed has density 1 (log 0).
    """
    nan = np.isnan(X)
    if not nan.any():
        return _gaussian_log_prob(X, means, prec_chol, covariance_type)
    out = np.zeros((X.shape[0], means.shape[0]))
    for obs, rows in _missingness_patterns(~nan):
        if not obs.any():
            continue  # nothing observed: log density 0 for every component
        if obs.all():
            out[rows] = _gaussian_log_prob(X[rows], means, prec_chol, covariance_type)
            continue
        xo = X[np.ix_(rows, obs)]
        if covariance_type == "full":
            sub = _precisions_cholesky(cov[:, obs][:, :, obs], "full")
        elif covariance_type == "tied":
            sub = _precisions_cholesky(cov[np.ix_(obs, obs)], "tied")
        elif covariance_type == "diag":
            sub = prec_chol[:, obs]
        else:  # spherical: the same 1/σ on every observed feature
            sub = prec_chol
        out[rows] = _gaussian_log_prob(xo, means[:, obs], sub, covariance_type)
    return out
