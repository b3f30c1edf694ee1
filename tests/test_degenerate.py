"""Degenerate data: every fit ends finite, with a monotone history, and no silent NaN.

What keeps each case finite (documented in the README):
* ``Normal``: ``min_var`` (1e-6) floors the closed-form variance;
* ``MultivariateNormal``: ``reg_covar`` (1e-6) is added to the covariance
  diagonal, as scikit-learn does;
* a component that loses every point keeps its parameters (frozen) and its
  weight goes to 0;
* both families centre their statistics at the current means, so data with a
  large offset keeps its spread in float32;
* float32 cannot resolve a covariance with condition number ~1e6 (rank
  deficient data + reg_covar): the fit stops at its best point and warns that
  float32 may be the cause, rather than reporting a wrong "convergence".
Property tests (hypothesis) check monotonicity and that responsibilities sum
to 1 on random small problems, closed-form and gradient M-steps.
"""

import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxem as em
from jaxem import priors

NORMAL = em.Mixture(em.Normal(), 3)
MVN = em.Mixture(em.MultivariateNormal("full"), 3)


def _check(res):
    h = np.asarray(res.history, np.float64)
    assert np.isfinite(res.objective)
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(res.params))
    assert np.all(np.diff(h) >= -1e-6 * np.abs(h[1:]) - 1e-6)


def _fit(model, x, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # A non-finite objective warns: here that is a failure. (float32 may stop a
        # near-singular covariance early, saying it cannot resolve it: allowed.)
        warnings.filterwarnings("error", message=".*(non-finite|not finite).*")
        res = em.fit(model, x, key=jax.random.key(0), restarts=4, **kw)
    for w in caught:
        assert "float32 cannot resolve" in str(w.message), str(w.message)
    return res


CASES_1D = {
    "identical": lambda r: np.full(50, 3.0),
    "duplicated": lambda r: np.repeat(r.normal(size=5), 20),
    "far outlier": lambda r: np.append(r.normal(size=99), 1e6),
    "k equals n": lambda r: r.normal(size=3),
    "large offset": lambda r: 1e6 + r.normal(size=200) * [1.0, 0.01][0],
}


@pytest.mark.parametrize("case", sorted(CASES_1D))
def test_normal_mixture_on_degenerate_data(case):
    x = CASES_1D[case](np.random.default_rng(0))
    res = _fit(NORMAL, x, max_iter=200)
    _check(res)
    assert np.all(np.asarray(res.params.components.var) >= 1e-6 * (1 - 1e-6))
    if case == "large offset":
        # float32 keeps the spread: the fitted sd is the data's (one wide component
        # or a few summing to it), not rounding noise.
        mean = np.sum(np.asarray(res.params.weights) * np.asarray(res.params.components.mean))
        assert mean == pytest.approx(np.mean(x), abs=0.2)
        sd = np.sqrt(np.sum(np.asarray(res.params.weights) * np.asarray(res.params.components.var)))
        assert 0.3 < sd < 1.5


CASES_2D = {
    "identical": lambda r: np.ones((40, 2)),
    "rank deficient": lambda r: np.outer(r.normal(size=60), [1.0, 2.0]),
    "duplicated": lambda r: np.repeat(r.normal(size=(4, 2)), 15, axis=0),
    "k equals n": lambda r: r.normal(size=(3, 2)),
    "large offset": lambda r: 1e5 + r.normal(size=(200, 2)),
}


@pytest.mark.parametrize("case", sorted(CASES_2D))
def test_mvn_mixture_on_degenerate_data(case):
    x = CASES_2D[case](np.random.default_rng(1))
    res = _fit(MVN, x, max_iter=200)
    _check(res)
    eig = np.linalg.eigvalsh(np.asarray(res.params.components.cov, np.float64))
    assert np.all(eig > 0)


def test_a_component_that_loses_its_points_is_frozen():
    x = np.random.default_rng(2).normal(size=100)
    start = em.MixtureParams(
        np.array([0.5, 0.25, 0.25]), em.NormalParams(np.array([0.0, 0.5, 1e4]), np.ones(3))
    )
    res = em.fit(NORMAL, x, init=start, max_iter=50)
    _check(res)
    assert float(res.params.weights[2]) == 0.0
    assert float(res.params.components.mean[2]) == 1e4  # kept, not nan
    assert float(res.params.components.var[2]) == 1.0


def test_non_finite_objective_is_reported_not_silent():
    """A gradient-only family on data where its likelihood is unbounded: warned, flagged."""
    x = np.full(30, 2.0)
    model = em.Mixture(em.Normal(min_var=0.0), 1)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        res = em.fit(model, x, key=jax.random.key(0), max_iter=20)
    assert not res.converged
    assert np.isfinite(res.objective)


def test_same_key_same_result():
    x = np.random.default_rng(3).normal(size=(300, 2)) * [1, 3]
    a = em.fit(MVN, x, key=jax.random.key(7), restarts=4)
    b = em.fit(MVN, x, key=jax.random.key(7), restarts=4)
    np.testing.assert_array_equal(a.restart_objectives, b.restart_objectives)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


_PROPERTY_MODELS = {
    "closed form": em.Mixture(
        em.Normal(var_prior=priors.InverseGamma(2.0, 0.5)), 2, weights_prior=priors.Dirichlet(2.0)
    ),
    "gradient": em.Mixture(em.StudentT(df_prior=priors.Gamma(2.0, 0.1)), 2),
}


@pytest.mark.parametrize("path", sorted(_PROPERTY_MODELS))
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.0, 5.0),
    scale=st.floats(0.05, 20.0),
)
def test_property_monotone_and_responsibilities_sum_to_one(path, seed, spread, scale):
    model = _PROPERTY_MODELS[path]
    r = np.random.default_rng(seed)
    x = scale * (r.normal(size=40) + spread * np.repeat([-1.0, 1.0], 20))
    res = em.fit(model, x, key=jax.random.key(seed % 97), restarts=2, max_iter=30, tol=0.0)
    h = np.asarray(res.history, np.float64)
    assert np.all(np.isfinite(h))
    assert np.all(np.diff(h) >= -2e-6 * np.abs(h[1:]))
    resp = np.asarray(em.responsibilities(model, res.params, x), np.float64)
    np.testing.assert_allclose(resp.sum(1), 1.0, rtol=1e-5)
    assert np.all(resp >= 0)
