"""``fixed=``: parameters held at their starting values on every M-step path.

References: a float64 NumPy EM for a 1-D normal mixture whose M-step is the
conditional maximiser given the fixed values (weights in proportion to the
counts of what the fixed ones leave; variances about the fixed means).
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem as em
from jaxem import priors

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from regression_model import MODEL as REGRESSION  # noqa: E402
from regression_model import data  # noqa: E402

sys.path.pop(0)

RNG = np.random.default_rng(0)
X = np.concatenate([RNG.normal(0, 1, 300), RNG.normal(4, 0.5, 200)])
NORMAL = em.Mixture(em.Normal(), 2)
START = em.MixtureParams(
    np.array([0.3, 0.7]), em.NormalParams(mean=np.array([-1.0, 3.0]), var=np.array([1.0, 1.0]))
)


def numpy_em(x, start, n_iter, fix_weights=(False, False), fix_mean=False, fix_var=(False, False)):
    w = np.array(start.weights, float)
    mu = np.array(start.components.mean, float)
    var = np.array(start.components.var, float)
    fw, fv = np.array(fix_weights), np.array(fix_var)
    for _ in range(n_iter):
        lj = np.log(w) - 0.5 * np.log(2 * np.pi * var) - 0.5 * (x[:, None] - mu) ** 2 / var
        r = np.exp(lj - lj.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        n = r.sum(0)
        if not fw.all():
            left = 1 - w[fw].sum()
            w = np.where(fw, w, n * left / n[~fw].sum())
        if not fix_mean:
            mu = (r * x[:, None]).sum(0) / n
        var = np.where(fv, var, (r * (x[:, None] - mu) ** 2).sum(0) / n)
    return w, mu, var


def _params(res):
    p = res.params
    return [np.asarray(a) for a in (p.weights, p.components.mean, p.components.var)]


CASES = {
    "weights by name (closed form)": ({"weights"}, dict(fix_weights=(True, True))),
    "one weight (closed form)": (
        em.MixtureParams(weights=np.array([True, False]), components=False),
        dict(fix_weights=(True, False)),
    ),
    "means by name (gradient)": ({"mean"}, dict(fix_mean=True)),
    "one variance (gradient)": (
        {"components": {"var": np.array([False, True])}},
        dict(fix_var=(False, True)),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_fixed_fit_equals_the_conditional_numpy_em(case):
    fixed, ref_kw = CASES[case]
    with jax.enable_x64(True):
        res = em.fit(NORMAL, X, init=START, fixed=fixed, max_iter=25, tol=0.0)
    ref = numpy_em(X, START, 25, **ref_kw)
    for ours, theirs in zip(_params(res), ref, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)
    assert np.all(np.diff(res.history) >= -1e-12 * abs(res.history[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("accelerate", [None, "squarem"])
@pytest.mark.parametrize("chunk_size", [None, 64])
def test_fixed_entries_stay_exact_under_squarem_chunks_and_restarts(accelerate, chunk_size):
    fixed = {"weights": np.array([True, False]), "components": {"var": np.array([False, True])}}
    stacked = jax.tree.map(lambda a: np.stack([a, a * 1.1 if a.ndim else a]), START)
    stacked = stacked._replace(weights=np.array([[0.3, 0.7], [0.4, 0.6]]))
    res = em.fit(
        NORMAL,
        X,
        init=stacked,
        restarts=2,
        fixed=fixed,
        accelerate=accelerate,
        chunk_size=chunk_size,
        max_iter=300,
    )
    w, _, var = _params(res)
    best = int(np.argmax(res.restart_objectives))
    assert w[0] == np.float32(stacked.weights[best, 0])  # to the last bit
    assert var[1] == np.float32(stacked.components.var[best, 1])
    assert abs(w.sum() - 1) < 1e-6 and res.converged
    assert np.all(np.diff(res.history) >= -1e-5 * abs(res.history[-1]))


def test_random_starts_keep_their_drawn_values():
    # A mixture's random starts have equal weights: fixed, they stay 1/K.
    res = em.fit(
        em.Mixture(em.Normal(), 3), X, key=jax.random.key(0), restarts=4, fixed={"weights"}
    )
    np.testing.assert_array_equal(np.asarray(res.params.weights), np.full(3, np.float32(1 / 3)))


def test_a_reference_component_of_a_gaussian_mixture():
    x2 = np.column_stack([X, RNG.normal(size=X.size)])
    model = em.Mixture(em.MultivariateNormal("full"), 2, weights_prior=priors.Dirichlet(2.0))
    start = em.fit(model, x2, key=jax.random.key(1), max_iter=0).params
    keep = np.array([True, False])
    fixed = {"components": em.MultivariateNormalParams(mean=keep, cov=keep)}
    res = em.fit(model, x2, init=start, fixed=fixed, max_iter=50)
    np.testing.assert_array_equal(res.params.components.mean[0], start.components.mean[0])
    np.testing.assert_array_equal(res.params.components.cov[0], start.components.cov[0])
    assert not np.allclose(res.params.components.mean[1], start.components.mean[1])
    assert np.all(np.diff(res.history) >= -1e-5 * abs(res.history[-1]))
    # 2 components × (2 means + 3 covariance entries) + 1 weight, less component 0's 5.
    assert em.n_parameters(model, res.params) == 11
    assert em.n_parameters(model, res.params, fixed=fixed) == 6


@pytest.mark.slow
def test_a_custom_model_with_a_fixed_coefficient():
    d = data(800, seed=5)
    start = em.fit(REGRESSION, d, key=jax.random.key(0), max_iter=0).params
    fixed = {"b1": np.array([True, False]), "mismatch": True}
    res = em.fit(REGRESSION, d, init=start, fixed=fixed, max_iter=20, tol=0.0)
    assert res.params["b1"][0] == start["b1"][0]
    assert res.params["b1"][1] != start["b1"][1]
    assert np.all(np.diff(res.history) >= -1e-5 * abs(res.history[-1]))
    full = em.n_parameters(REGRESSION, start)
    assert em.n_parameters(REGRESSION, start, fixed=fixed) == full - 2


def test_counts_of_free_parameters():
    model = em.Mixture(em.Normal(), 3)
    p = em.fit(model, X, key=jax.random.key(0), max_iter=0).params
    count = lambda fixed: em.n_parameters(model, p, fixed=fixed)  # noqa: E731
    assert count(None) == 8
    assert count({"weights"}) == 6
    assert count(em.MixtureParams(np.array([True, False, False]), False)) == 7
    assert count(em.MixtureParams(np.array([True, True, False]), False)) == 6
    assert count({"mean"}) == 5
    assert count({"components": {"var": np.array([True, False, False])}}) == 7
    ll = float(em.log_likelihood(model, p, X))
    assert em.bic(model, p, X, fixed={"mean"}) == pytest.approx(-2 * ll + 5 * np.log(X.size))
    assert em.aic(model, p, X, fixed={"mean"}) == pytest.approx(-2 * ll + 10)


BAD = [
    ({"means"}, ValueError, r"fixed names \['means'\], which are not parameter names"),
    ({"components": {"var": np.array([True, False, True])}}, ValueError, "leading axes"),
    (
        {"components": {"sd": True}},
        ValueError,
        r"fixed.components names \['sd'\], which are not parameters",
    ),
    ({"weights": np.array([1, 0])}, TypeError, "must be booleans"),
    (42, TypeError, "set of parameter names or a pytree prefix"),
]


@pytest.mark.parametrize("fixed, error, message", BAD)
def test_bad_fixed_specs_are_refused_before_tracing(fixed, error, message):
    with pytest.raises(error, match=message):
        em.fit(NORMAL, X, init=START, fixed=fixed)


def test_part_of_a_covariance_cannot_be_fixed():
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    x2 = np.column_stack([X, X])
    start = em.fit(model, x2, key=jax.random.key(0), max_iter=0).params
    inside = np.zeros((2, 2, 2), bool)
    inside[0, 0, 1] = True
    with pytest.raises(ValueError, match="fix each vector or matrix whole"):
        em.fit(model, x2, init=start, fixed={"components": {"cov": inside}})


def test_flags_per_component_over_a_tied_covariance():
    """A tied covariance is every component's: per-component flags must agree on it."""
    model = em.Mixture(em.MultivariateNormal("tied"), 3)
    x2 = np.column_stack([X, 0.5 * X + RNG.normal(0, 1, X.size)])
    start = em.fit(model, x2, key=jax.random.key(0), max_iter=0).params
    some = {"components": np.array([True, False, False])}
    with pytest.raises(ValueError, match=r"components.cov: this parameter is shared"):
        em.fit(model, x2, init=start, fixed=some)
    # All components fixed: the tied covariance is fixed too (only weights move).
    every = {"components": np.array([True, True, True])}
    res = em.fit(model, x2, init=start, fixed=every, max_iter=5, tol=0.0)
    np.testing.assert_array_equal(res.params.components.cov, start.components.cov)
    np.testing.assert_array_equal(res.params.components.mean, start.components.mean)
    assert em.n_parameters(model, start, fixed=every) == 2
    # The means of one component fixed, the covariance free: counts 2 + 2·2 + 3.
    one_mean = {"components": {"mean": np.array([True, False, False])}}
    assert em.n_parameters(model, start, fixed=one_mean) == 2 + 4 + 3


START3 = em.MixtureParams(
    np.array([0.2, 0.3, 0.5]),
    em.NormalParams(mean=np.array([-1.0, 1.0, 3.0]), var=np.array([1.0, 1.0, 1.0])),
)
FIX_FIRST = em.MixtureParams(weights=np.array([True, False, False]), components=False)


def test_one_of_three_weights_fixed_equals_the_conditional_numpy_em():
    # With K = 3 the two free weights must share 0.8 in proportion to their counts.
    with jax.enable_x64(True):
        res = em.fit(
            em.Mixture(em.Normal(), 3), X, init=START3, fixed=FIX_FIRST, max_iter=25, tol=0
        )
    ref = numpy_em(X, START3, 25, fix_weights=(True, False, False), fix_var=(False,) * 3)
    for ours, theirs in zip(_params(res), ref, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)


def test_squarem_jumps_keep_partly_fixed_weights_on_the_simplex():
    # SQUAREM moves every log-ratio coordinate of the weights; the free ones are
    # rescaled after each jump, so the weights sum to 1 and EM stays monotone.
    model = em.Mixture(em.Normal(), 3)
    for max_iter in range(1, 6):
        res = em.fit(
            model, X, init=START3, fixed=FIX_FIRST, accelerate="squarem", max_iter=max_iter, tol=0
        )
        w = np.asarray(res.params.weights, np.float64)
        assert abs(w.sum() - 1) < 1e-6 and w[0] == np.float32(0.2)
        assert np.all(np.diff(res.history) >= -1e-6 * abs(res.history[-1]))


def _one_step_at_a_time(model, x, start, n, reset):
    """The reference for a fixed part that does not enter the other updates: n one-iteration
    fits, each from the previous result with the fixed part put back (no fixed= involved)."""
    params = start
    for _ in range(n):
        params = reset(em.fit(model, x, init=params, max_iter=1, tol=0.0).params)
    return params


def test_fixed_weights_on_the_ecm_path():
    # MultivariateNormal with a mean prior updates by ECM sweeps (mean given cov, cov given mean).
    x2 = np.column_stack([X, RNG.normal(size=X.size)])
    family = em.MultivariateNormal("full", mean_prior=priors.Normal(0.0, 3.0))
    model = em.Mixture(family, 2)
    with jax.enable_x64(True):
        start = em.fit(model, x2, key=jax.random.key(2), max_iter=0).params
        start = start._replace(weights=np.array([0.25, 0.75]))
        res = em.fit(model, x2, init=start, fixed={"weights"}, max_iter=6, tol=0.0)
        ref = _one_step_at_a_time(model, x2, start, 6, lambda p: p._replace(weights=start.weights))
    np.testing.assert_array_equal(np.asarray(res.params.weights), start.weights)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_fixed_weights_with_a_custom_m_step():
    def m_step(p, d, resp, w):  # weighted least squares; w, b and v updates are separable
        wr = resp * w[:, None]
        design = jnp.stack([jnp.ones_like(d["u"]), d["u"]], axis=1)
        gram = jnp.einsum("nk,ni,nj->kij", wr, design, design)
        rhs = jnp.einsum("nk,ni,n->ki", wr, design, d["y"])
        coef = jnp.linalg.solve(gram, rhs[..., None])[..., 0]
        resid = d["y"][:, None] - design @ coef.T
        new = {"w": wr.sum(0) / wr.sum(), "b0": coef[:, 0], "b1": coef[:, 1]}
        return {**p, **new, "v": (wr * resid**2).sum(0) / wr.sum(0)}

    model = em.Model(
        REGRESSION._log_joint,
        m_step=m_step,
        init=REGRESSION.init,
        constraints=REGRESSION.constraints,
    )
    d = data(600, seed=7)
    with jax.enable_x64(True):
        start = em.fit(model, d, key=jax.random.key(0), max_iter=0).params
        start = {**start, "w": np.array([0.3, 0.7])}
        res = em.fit(model, d, init=start, fixed={"w"}, max_iter=5, tol=0.0)
        ref = _one_step_at_a_time(model, d, start, 5, lambda p: {**p, "w": start["w"]})
    np.testing.assert_array_equal(np.asarray(res.params["w"]), start["w"])
    for name in ("b0", "b1", "v"):
        np.testing.assert_allclose(np.asarray(res.params[name]), np.asarray(ref[name]), rtol=1e-10)
