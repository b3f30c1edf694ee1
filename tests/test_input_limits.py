"""Inputs at the edges of what the float dtype and the API take: clear errors, never NaN.

Each case came from an adversarial probe of the public functions: scoring fewer
rows than components, data or weights beyond float32's range, seeds beyond
int64, and float32 conditioning (duplicate columns) mistaken for a broken
M-step. The references are scipy's densities and the float64 fit.
"""

import warnings

import jax
import numpy as np
import pytest
from scipy import stats

import jaxem as em

RNG = np.random.default_rng(0)
X2 = np.concatenate([RNG.normal(size=(150, 2)), RNG.normal(size=(150, 2)) + 4])
MVN = em.Mixture(em.MultivariateNormal(), 2)


def _fitted():
    return em.fit(MVN, X2, key=jax.random.key(0), restarts=2).params


def _mixture_logpdf(params, x):
    w = np.asarray(params.weights, np.float64)
    mean = np.asarray(params.components.mean, np.float64)
    cov = np.asarray(params.components.cov, np.float64)
    dens = [
        w[k] * np.reshape(stats.multivariate_normal(mean[k], cov[k]).pdf(x), -1)
        for k in range(len(w))
    ]
    return np.log(np.sum(dens, axis=0))


def test_scoring_one_row_with_fitted_parameters():
    params = _fitted()
    one = X2[:1]
    ref = _mixture_logpdf(params, one)
    assert float(em.log_likelihood(MVN, params, one)) == pytest.approx(ref.sum(), rel=1e-5)
    r = np.asarray(em.responsibilities(MVN, params, one))
    assert r.shape == (1, 2) and r.sum() == pytest.approx(1.0, rel=1e-6)
    assert int(em.predict(MVN, params, one)[0]) == int(np.argmax(r[0]))
    assert em.bic(MVN, params, one) == pytest.approx(-2 * ref.sum(), rel=1e-5)  # log 1 = 0
    # Fitting still needs at least K rows.
    with pytest.raises(ValueError, match="n_components=2 is larger than the number of samples"):
        em.fit(MVN, one, key=0)


@pytest.mark.parametrize("scale", [1e19, 1e40])
def test_data_beyond_float32_statistics_is_refused_before_compiling(scale):
    with pytest.raises(ValueError, match=r"float32.*rescale.*float64") as err:
        em.fit(MVN, X2 * scale, key=0)
    assert "infinite" not in str(err.value)  # 1e40 is a finite number the user wrote


def test_large_data_fits_in_float64_where_float32_refuses():
    with jax.enable_x64(True):
        res = em.fit(MVN, X2 * 1e19, key=jax.random.key(0), restarts=2)
        ref = em.fit(MVN, X2, key=jax.random.key(0), restarts=2)
    means = np.sort(np.asarray(res.params.components.mean)[:, 0]) / 1e19
    np.testing.assert_allclose(means, np.sort(np.asarray(ref.params.components.mean)[:, 0]), 1e-6)


def test_weights_below_float32_range_are_refused_by_fit_and_rescaled_by_the_estimator():
    w = np.full(len(X2), 1e-40)
    with pytest.raises(ValueError, match=r"sample_weight.*rescale"):
        em.fit(MVN, X2, key=0, sample_weight=w)
    with pytest.raises(ValueError, match=r"sample_weight.*rescale"):
        em.fit(MVN, X2, key=0, sample_weight=np.full(len(X2), 1e37))
    # Maximum likelihood depends on the weights' ratios: the estimator rescales them,
    # in float32 as in float64, and gets the unweighted fit.
    x32 = X2.astype(np.float32)
    kw = dict(n_components=2, random_state=0, tol=1e-6)
    tiny = em.GaussianMixture(**kw).fit(x32, sample_weight=w)
    ref = em.GaussianMixture(**kw).fit(x32)
    assert tiny.converged_ and np.all(np.isfinite(tiny.weights_))
    np.testing.assert_allclose(tiny.means_, ref.means_, rtol=1e-4, atol=1e-4)
    assert tiny.lower_bound_ == pytest.approx(ref.lower_bound_, rel=1e-4)


@pytest.mark.parametrize("key", [2**63, 2**70, -(2**63) - 1])
def test_seed_out_of_range_names_the_argument(key):
    with pytest.raises(ValueError, match=r"key: an int seed must lie in"):
        em.fit(MVN, X2, key=key)


def test_more_restarts_include_the_first_start():
    # Restart i draws from fold_in(key, i): restarts=8 runs restarts=1's start.
    one = em.fit(MVN, X2, key=jax.random.key(3), restarts=1, max_iter=0)
    many = em.fit(MVN, X2, key=jax.random.key(3), restarts=8, max_iter=0)
    # one restart runs unbatched, eight in turn: two programs, same start (float32 rounding)
    assert many.restart_objectives[0] == pytest.approx(one.objective, rel=1e-6)
    assert many.objective >= one.objective


@pytest.mark.slow
def test_duplicate_columns_in_float32_blame_conditioning_first():
    from sklearn.datasets import load_iris

    x = load_iris().data
    xd = np.column_stack([x, x[:, 0]]).astype(np.float32)  # a duplicated column
    model = em.Mixture(em.MultivariateNormal("full"), 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em.fit(model, xd, key=jax.random.key(0), restarts=8)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert messages, "the float32 fit of rank-deficient data should stop with a warning"
    assert all(m.startswith("float32 cannot resolve this problem") for m in messages)
    assert "condition number" in messages[0] and "float64" in messages[0]
    # In float64 the same fit runs without it.
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        em.fit(model, xd.astype(np.float64), key=jax.random.key(0), restarts=8)


def test_a_broken_m_step_on_well_conditioned_data_is_still_called_broken():
    def m_step(params, x, resp, w):  # moves away from the maximiser: lowers Q
        return {"mu": params["mu"] + 1.0}

    def log_joint(p, x):
        return jax.scipy.stats.norm.logpdf(x[:, None], p["mu"], 1.0) + np.log(0.5)

    model = em.Model(log_joint, m_step=m_step)
    with pytest.warns(RuntimeWarning, match=r"^an M-step lowered the objective.*M-step is wrong"):
        em.fit(model, X2[:, 0], init={"mu": np.array([0.0, 4.0])}, max_iter=5)
