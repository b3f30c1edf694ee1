"""mclust's 14 covariance models (em.ParsimoniousGaussian), checked by autodiff in float64.

Independent of the updates' algebra, each model is written as a map from
unconstrained coordinates (log volumes, log shapes summing to zero, rotation
generators) to its covariances, ``Σ_k = λ_k D_k A_k D_kᵀ`` with each factor
shared (E), per component (V) or absent (I), charted around any point of the
model. Then:

- the rank of the map's Jacobian is the free-parameter count (mclust's);
- after an M-step, the gradient of ``Q`` in those coordinates vanishes (the
  update is the maximiser within the model), and ``Q`` has not decreased;
- the four models scikit-learn has agree with its fits.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm
from scipy.stats import multivariate_normal
from sklearn.datasets import load_iris

import jaxem as em
from jaxem.families.mvn import MultivariateNormalParams, _stats
from jaxem.families.parsimonious import (
    MCLUST_MODELS,
    SKLEARN_EQUIVALENT,
    _update,
    covariance_update,
    n_covariance_parameters,
)
from jaxem.mixture import MixtureParams

K = 3


def _skew(v, d):
    s = np.zeros((d, d))
    s[np.triu_indices(d, 1)] = v
    return s - s.T


def _sizes(model, d, k):
    vol, shape, orient = model
    n_vol = {"E": 1, "V": k}[vol]
    n_shape = {"I": 0, "E": d, "V": k * d}[shape]
    n_rot = {"I": 0, "E": d * (d - 1) // 2, "V": k * d * (d - 1) // 2}[orient]
    return n_vol, n_shape, n_rot


def _factors(model, cov):
    """Volumes (K,), orientations (K, D, D) and shapes (K, D) with Σ_k = λ_k U_k diag(a_k) U_kᵀ."""
    cov = np.asarray(cov, np.float64)
    k, d = cov.shape[:2]
    vol = np.linalg.det(cov) ** (1 / d)
    if model[2] == "I":
        orient = np.broadcast_to(np.eye(d), (k, d, d))
    elif model[2] == "E":
        combo = np.einsum("k,kij->ij", 1 / (1 + 0.7 * np.arange(k)), cov)
        orient = np.broadcast_to(np.linalg.eigh(combo)[1], (k, d, d))
    else:
        orient = np.linalg.eigh(cov)[1]
    shape = np.einsum("kji,kjl,kli->ki", orient, cov, orient) / vol[:, None]
    return vol, np.array(orient), shape


def _chart(model, cov):
    """``u -> (K, D, D)`` covariances of ``model`` with ``u = 0`` at ``cov``."""
    k, d = cov.shape[:2]
    vol, orient, shape = _factors(model, cov)
    n_vol, n_shape, n_rot = _sizes(model, d, k)

    def covs(u):
        a = u[:n_vol]
        t = u[n_vol : n_vol + n_shape].reshape(-1, d) if n_shape else np.zeros((1, d))
        s = u[n_vol + n_shape :].reshape(-1, d * (d - 1) // 2) if n_rot else None
        t = t - np.mean(t, axis=1, keepdims=True)
        out = []
        for j in range(k):
            lam = vol[j] * np.exp(a[0 if n_vol == 1 else j])
            shp = shape[j] * np.exp(t[0 if t.shape[0] == 1 else j])
            rot = orient[j]
            if s is not None:
                rot = rot @ expm(_skew(s[0 if s.shape[0] == 1 else j], d))
            out.append(lam * (rot * shp) @ rot.T)
        return np.stack(out)

    return covs, n_vol + n_shape + n_rot


def _random_member(model, d, k, rng):
    """A generic point of ``model``: random factors, shared where the model says E."""

    def draw(letter, fn):
        one = fn()
        return [one] * k if letter == "E" else [fn() for _ in range(k)]

    vols = draw(model[0], lambda: np.exp(rng.normal()))
    shapes = draw(model[1], lambda: np.exp(rng.normal(size=d))) if model[1] != "I" else None
    rots = (
        draw(model[2], lambda: np.linalg.qr(rng.normal(size=(d, d)))[0])
        if model[2] != "I"
        else None
    )
    out = []
    for j in range(k):
        a = np.ones(d) if shapes is None else shapes[j] / np.prod(shapes[j]) ** (1 / d)
        r = np.eye(d) if rots is None else rots[j]
        out.append(vols[j] * (r * a) @ r.T)
    return np.stack(out)


@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_free_parameters_are_the_rank_of_the_model(model):
    d = 3
    cov = _random_member(model, d, K, np.random.default_rng(1))
    covs, n_coords = _chart(model, cov)
    np.testing.assert_allclose(covs(np.zeros(n_coords)), cov, rtol=1e-10, atol=1e-12)
    jac = np.stack([(covs(e * 1e-6) - covs(-e * 1e-6)).ravel() / 2e-6 for e in np.eye(n_coords)])
    rank = np.linalg.matrix_rank(jac, tol=1e-5 * np.abs(jac).max())
    assert rank == n_covariance_parameters(model, d, K)
    params = MixtureParams(np.full(K, 1 / K), MultivariateNormalParams(np.zeros((K, d)), cov))
    mixture = em.Mixture(em.ParsimoniousGaussian(model), K)
    assert em.n_parameters(mixture, params) == (K - 1) + K * d + rank


@functools.lru_cache(maxsize=1)
def _iris_step_inputs():
    x = load_iris().data.astype(np.float64)
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.full(K, 0.5), size=len(x))
    weight = rng.uniform(0.5, 1.5, len(x))
    return x, resp, weight


def _q(x, resp, weight, mean, cov):
    """Σ_i w_i Σ_k r_ik log N(x_i | μ_k, Σ_k), by scipy."""
    mean, cov = np.asarray(mean), np.asarray(cov)
    lp = np.stack(
        [multivariate_normal(m, c).logpdf(x) for m, c in zip(mean, cov, strict=True)], axis=1
    )
    return float(np.sum(weight[:, None] * resp * lp))


def _grad(f, n, h=1e-5):
    """Central differences of ``f`` at ``0`` in ``n`` coordinates."""
    return np.array([(f(e * h) - f(-e * h)) / (2 * h) for e in np.eye(n)])


@functools.cache
def _step(model, sweeps=300, k=K, key=0):
    """One M-step of ``model`` from its k-means++ start on iris, in float64 (jitted once)."""
    x, resp, weight = _iris_step_inputs()
    if k > K:
        resp = np.concatenate([resp, np.zeros((len(x), k - K))], axis=1)
    family = em.ParsimoniousGaussian(model, reg_covar=0.0, sweeps=sweeps)
    with jax.enable_x64(True):

        @jax.jit
        def run(xj, rj, wj):
            start = family.init(jax.random.key(key), xj, k)
            return start, _update(family, start, _stats(family, start, xj, rj, wj))

        start, new = run(jnp.asarray(x), jnp.asarray(resp), jnp.asarray(weight))
    return jax.tree.map(np.asarray, start), jax.tree.map(np.asarray, new), resp


# The M-step of every model is checked in the slow pass; these six cover each kind of
# update (closed form, volumes-given-shape ECM, Jacobi rotations, eigenvectors).
_QUICK = ("EII", "VEI", "EVE", "EEV", "VEV", "VVV")
_ALL = [m if m in _QUICK else pytest.param(m, marks=pytest.mark.slow) for m in MCLUST_MODELS]


@pytest.mark.parametrize("model", _ALL)
def test_m_step_maximises_q_within_the_model(model):
    """The gradient of Q in the model's own coordinates vanishes at the update.

    A fourth component has no weight (n_k = 0, as the grid's padding): it must
    keep its mean and stay a positive definite member of the model.
    """
    x, resp, weight = _iris_step_inputs()
    d = x.shape[1]
    start, new, resp = _step(model, k=K + 1)
    # the means are the weighted means whatever the covariances; the empty one stays
    wr = resp[:, :K] * weight[:, None]
    np.testing.assert_allclose(new.mean[:K], wr.T @ x / wr.sum(0)[:, None], rtol=1e-12)
    np.testing.assert_allclose(new.mean[K], start.mean[K])
    q_new = _q(x, resp, weight, new.mean, new.cov)
    assert q_new >= _q(x, resp, weight, new.mean, start.cov)
    covs, n_coords = _chart(model, new.cov)  # raises nothing: new.cov is in the model
    np.testing.assert_allclose(covs(np.zeros(n_coords)), new.cov, rtol=1e-8, atol=1e-10)
    grad = _grad(lambda u: _q(x, resp, weight, new.mean, covs(u)), n_coords)
    # the same gradient at the start, charted there: what "not stationary" looks like
    covs0, _ = _chart(model, start.cov)
    grad0 = _grad(lambda u: _q(x, resp, weight, new.mean, covs0(u)), n_coords)
    assert np.max(np.abs(grad)) <= 1e-6 * np.max(np.abs(grad0)), (model, grad, grad0)
    assert np.all(np.linalg.eigvalsh(new.cov) > 0)
    assert new.cov.shape == (K + 1, d, d)


def test_shared_factors_are_shared():
    """E letters: the volumes / shapes / orientations of fitted covariances are equal."""
    for model in ("EII", "EVE", "EEV", "VEV"):
        vol, orient, shape = _factors(model, _step(model, k=K + 1)[1].cov)
        if model[0] == "E":
            np.testing.assert_allclose(vol, vol[0], rtol=1e-9, err_msg=model)
        if model[1] == "E":
            np.testing.assert_allclose(
                np.sort(shape, axis=1), np.sort(shape[:1], axis=1).repeat(K + 1, 0), rtol=1e-8
            )


@pytest.mark.parametrize(
    "kind",
    ["tied"] + [pytest.param(k, marks=pytest.mark.slow) for k in ("diag", "full", "spherical")],
)
def test_the_four_sklearn_models_fit_as_sklearn(kind):
    """VVV/EEE/VVI/VII from the same start: scikit-learn's GaussianMixture, same iterations."""
    from sklearn.mixture import GaussianMixture as SkGM

    x = load_iris().data.astype(np.float64)
    model = SKLEARN_EQUIVALENT[kind]
    with jax.enable_x64(True):
        family = em.ParsimoniousGaussian(model)  # reg_covar=1e-6, as scikit-learn
        start = family.init(jax.random.key(3), jnp.asarray(x), K)
        init = MixtureParams(jnp.full(K, 1 / K), start)
        res = em.fit(em.Mixture(family, K), x, init=init, max_iter=30, tol=0.0)
    cov = np.asarray(start.cov)
    prec = {
        "full": np.linalg.inv(cov),
        "tied": np.linalg.inv(cov[0]),
        "diag": 1 / np.diagonal(cov, axis1=1, axis2=2),
        "spherical": 1 / cov[:, 0, 0],
    }[kind]
    sk = SkGM(
        K,
        covariance_type=kind,
        weights_init=np.full(K, 1 / K),
        means_init=np.asarray(start.mean),
        precisions_init=prec,
        max_iter=30,
        tol=0.0,
    )
    with pytest.warns(Warning):  # it does not converge at tol=0
        sk.fit(x)
    np.testing.assert_allclose(res.log_likelihood, sk.score(x) * len(x), rtol=1e-9)
    np.testing.assert_allclose(res.params.components.mean, sk.means_, rtol=1e-7, atol=1e-9)


def test_covariance_update_rejects_nothing_silently():
    with pytest.raises(ValueError, match="model must be one of mclust's names"):
        em.ParsimoniousGaussian("VVX")
    with pytest.raises(ValueError, match="sweeps must be an integer"):
        em.ParsimoniousGaussian("VEV", sweeps=0)
    with pytest.raises(ValueError, match="reg_covar must be a finite number"):
        em.ParsimoniousGaussian("VEV", reg_covar=-1.0)
    assert em.ParsimoniousGaussian("vev").model == "VEV"
    # the update of a shared model with all weight on one component still has the shared form
    scatter = jnp.stack([jnp.eye(2) * 4.0, jnp.zeros((2, 2))])
    cov = covariance_update("EII", scatter, jnp.array([2.0, 0.0]), jnp.stack([jnp.eye(2)] * 2))
    np.testing.assert_allclose(cov, jnp.stack([2 * jnp.eye(2)] * 2))  # tr(W) / (n d)


@pytest.mark.slow
@pytest.mark.parametrize("model", MCLUST_MODELS)
def test_em_climbs_to_a_stationary_point_of_the_likelihood(model):
    """em.fit in float64: the log-likelihood never decreases, and where it stops its
    gradient in the model's coordinates (means and weights held) is ~0."""
    x = load_iris().data.astype(np.float64)
    with jax.enable_x64(True):
        mixture = em.Mixture(em.ParsimoniousGaussian(model, reg_covar=0.0), K)
        res = em.fit(mixture, x, key=jax.random.key(0), restarts=4, max_iter=3000, tol=1e-12)
    h = np.asarray(res.history)
    h = h[np.isfinite(h)]
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:])), model
    w = np.asarray(res.params.weights)
    mean, cov = np.asarray(res.params.components.mean), np.asarray(res.params.components.cov)

    def loglik(c):
        lp = np.stack([multivariate_normal(m, s).logpdf(x) for m, s in zip(mean, c, strict=True)])
        return float(np.sum(np.log(w @ np.exp(lp))))

    np.testing.assert_allclose(loglik(cov), res.log_likelihood, rtol=1e-10)
    covs, n_coords = _chart(model, cov)
    grad = _grad(lambda u: loglik(covs(u)), n_coords)
    assert np.max(np.abs(grad)) <= 1e-3, (model, grad)


def test_standard_errors_refuse_tied_models_and_point_to_the_bootstrap():
    """The observed information in free (D, D) coordinates is not the model's: refused."""
    x = load_iris().data.astype(np.float32)
    family = em.ParsimoniousGaussian("EEE")
    params = MixtureParams(jnp.full(K, 1 / K), family.init(jax.random.key(0), jnp.asarray(x), K))
    with pytest.raises(ValueError, match="use em.bootstrap"):
        em.standard_errors(em.Mixture(family, K), params, x)
    assert not em.ParsimoniousGaussian("VVV").tied_coordinates
