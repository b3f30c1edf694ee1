"""SQUAREM: same fixed point as plain EM, monotone objective, honest evaluation counts."""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxem as em
from jaxem import accelerate, demos, priors

rng = np.random.default_rng(5)
OVERLAP = np.concatenate([rng.normal(0, 1, 400), rng.normal(1, 1, 400)])
COUNTS = rng.binomial(15, np.repeat([0.3, 0.45], 150)).astype(float)

CASES = {
    "normal-map": (demos.three_normals_model, demos.three_normals()),
    "normal-overlap-ml": (lambda: em.Mixture(em.Normal(), 2), OVERLAP),
    "binomial-beta": (
        lambda: em.Mixture(em.Binomial(15, p_prior=priors.Beta(2.0, 2.0)), 2),
        COUNTS,
    ),
    "normal-gradient": (
        lambda: em.Mixture(em.Normal(var_prior=priors.Gamma(2.0, 1.0)), 2),
        OVERLAP,
    ),
}


@pytest.mark.parametrize(
    "name",
    [n if n != "normal-gradient" else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_same_fixed_point_as_plain_em(name):
    make, x = CASES[name]
    model = make()
    with jax.enable_x64(True):
        plain = em.fit(model, x, key=jax.random.key(0), restarts=2, tol=1e-12, max_iter=20_000)
        start = jax.tree.map(lambda a: np.asarray(a), plain.params)
        sq = em.fit(
            model, x, init=_perturb(start), accelerate="squarem", tol=1e-12, max_iter=20_000
        )
        assert sq.converged and plain.converged
        assert sq.objective == pytest.approx(plain.objective, rel=1e-9)
        assert np.all(np.diff(sq.history) >= -1e-9 * np.abs(sq.history[1:]))
        # On the overlapping data the likelihood is flat along a ridge: plain EM
        # creeps along it, so parameters agree less tightly than objectives.
        atol = 2e-3 if x is OVERLAP else 2e-4
        for u, v in zip(_sorted(plain.params), _sorted(sq.params), strict=True):
            np.testing.assert_allclose(u, v, rtol=2e-3, atol=atol)


def _perturb(params):
    w = params.weights * 0.9 + 0.1 / len(params.weights)
    comps = jax.tree.map(lambda a: a * 1.05, params.components)
    return em.MixtureParams(w, comps)


def _sorted(params):
    leaves = jax.tree.leaves(params.components)
    order = np.argsort(np.asarray(leaves[0]))
    return [np.asarray(params.weights)[order]] + [np.asarray(a)[order] for a in leaves]


def test_evaluation_count_is_reported():
    model = em.Mixture(em.Normal(), 2)
    plain = em.fit(model, OVERLAP, key=jax.random.key(0), restarts=1, max_iter=5, tol=0.0)
    sq = em.fit(model, OVERLAP, key=jax.random.key(0), max_iter=5, tol=0.0, accelerate="squarem")
    assert plain.n_evals == plain.n_iter + 1
    assert sq.n_evals == 3 * sq.n_iter + 1


def test_fewer_evaluations_on_an_overlapping_mixture():
    """Slow linear EM (heavy overlap) is where extrapolation pays; count E-steps, not time."""
    model = em.Mixture(em.Normal(), 2)
    with jax.enable_x64(True):
        init = em.MixtureParams(
            np.array([0.5, 0.5]), em.NormalParams(np.array([-1.0, 2.0]), np.array([1.0, 1.0]))
        )
        plain = em.fit(model, OVERLAP, init=init, tol=1e-10, max_iter=50_000)
        sq = em.fit(model, OVERLAP, init=init, tol=1e-10, max_iter=50_000, accelerate="squarem")
    assert sq.objective >= plain.objective - 1e-6 * len(OVERLAP)
    assert sq.n_evals * 2 < plain.n_evals, (sq.n_evals, plain.n_evals)


def test_bad_accelerate_value():
    with pytest.raises(ValueError, match="accelerate must be"):
        em.fit(em.Mixture(em.Normal(), 2), OVERLAP, key=0, accelerate="anderson")


# A one-dimensional EM map with a known fixed point, where an unguarded
# extrapolation overshoots: the safeguard must keep the objective monotone.
def _toy_point(theta, objective):
    return accelerate.Point(theta, objective, objective, objective[None], objective * 0, None)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.floats(0.05, 0.99),
    start=st.floats(-5.0, 5.0),
    curvature=st.floats(0.1, 10.0),
    skew=st.floats(0.0, 3.0),
)
def test_squarem_step_never_decreases_the_objective(rate, start, curvature, skew):
    """Objective -c·d² - s·d⁴ around 0 with a contracting map; big steps overshoot."""
    import jax.numpy as jnp

    def objective(theta):
        d = theta["t"]
        return -curvature * d**2 - skew * d**4

    def evaluate(params):
        return _toy_point(params, objective(params))

    def em_map(point):
        t = point.params["t"]
        return evaluate({"t": rate * t + skew * 0.01 * t**3 * (1 - rate)})

    leaves = {"t": em.constraints.real}
    point = evaluate({"t": jnp.asarray(start)})
    step_max = jnp.asarray(64.0)  # allow wild extrapolations
    for _ in range(6):
        new, evals, step_max = accelerate.squarem_step(em_map, evaluate, leaves, point, step_max)
        plain = em_map(em_map(point))
        assert evals == 3
        assert float(new.objective) >= float(plain.objective) - 1e-6 * abs(float(plain.objective))
        assert float(new.objective) >= float(point.objective) - 1e-6 * abs(float(point.objective))
        point = new


FAMILY_CASES = {
    "poisson": (lambda: em.Mixture(em.Poisson(rate_prior=priors.Gamma(2.0, 1.0)), 2), "counts"),
    "exponential": (lambda: em.Mixture(em.Exponential(), 2), "positive"),
    "categorical": (lambda: em.Mixture(em.Categorical(4), 2), "codes"),
    "bernoulli": (lambda: em.Mixture(em.Bernoulli(), 2), "binary"),
    "heterogeneous": (
        lambda: em.Mixture([em.Normal(var_prior=priors.InverseGamma(2.0, 1.0)), em.Exponential()]),
        "normal+exponential",
    ),
}
FAMILY_DATA = {
    "counts": rng.poisson(np.repeat([2.0, 6.0], 100)).astype(float),
    "positive": np.concatenate([rng.exponential(1.0, 100), rng.exponential(4.0, 100)]),
    "normal+exponential": np.concatenate([rng.normal(5, 1, 100), rng.exponential(1.0, 100)]),
    "codes": np.concatenate([rng.choice(4, 100, p=[0.7, 0.1, 0.1, 0.1]), rng.choice(4, 100)]),
    "binary": (
        rng.uniform(size=(200, 3)) < np.repeat([[0.8, 0.2, 0.5], [0.3, 0.7, 0.5]], 100, 0)
    ).astype(float),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMILY_CASES))
def test_same_fixed_point_on_other_families(name):
    make, data = FAMILY_CASES[name]
    model, x = make(), FAMILY_DATA[data]
    with jax.enable_x64(True):
        start = em.fit(model, x, key=jax.random.key(3), max_iter=0).params
        plain = em.fit(model, x, init=start, tol=1e-13, max_iter=20_000)
        sq = em.fit(model, x, init=start, tol=1e-13, max_iter=20_000, accelerate="squarem")
    assert sq.objective == pytest.approx(plain.objective, rel=1e-9, abs=1e-9)
    assert np.all(np.diff(sq.history) >= -1e-9 * np.abs(sq.history[1:]))
    # A fit EM finishes in a few iterations can cost SQUAREM a few more E-steps (3 per
    # outer iteration); never many more.
    assert sq.n_evals <= plain.n_evals + 6


_HYP_MODEL = em.Mixture(em.Normal(), 3)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), spread=st.floats(0.0, 4.0))
def test_squarem_fit_is_monotone_on_random_mixtures(seed, spread):
    """Random 3-component data, from barely separated to well separated, float32."""
    r = np.random.default_rng(seed)
    x = r.normal(size=90) + spread * np.repeat([-1.0, 0.0, 1.0], 30) * r.uniform(0.2, 1.0)
    res = em.fit(
        _HYP_MODEL,
        x,
        key=jax.random.key(seed % 1000),
        restarts=2,
        max_iter=40,
        tol=0.0,
        accelerate="squarem",
    )
    h = np.asarray(res.history, np.float64)
    assert np.all(np.isfinite(h))
    assert np.all(np.diff(h) >= -2e-6 * np.abs(h[1:]))
