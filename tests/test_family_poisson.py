"""Poisson mixtures: densities vs scipy.stats, the closed-form MAP vs autodiff and vs SciPy.

Every reference here is float64 NumPy/SciPy; the only jaxem code exercised is
the thing under test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import jaxem as em
from jaxem import priors
from jaxem.check import check_m_step
from jaxem.families.base import closed_form_for, register_m_step
from jaxem.families.categorical import Categorical
from jaxem.families.poisson import Poisson, PoissonParams

A, B, ALPHA = 2.0, 0.5, 2.0  # Gamma(concentration, rate) on each rate; Dirichlet on weights
TRUE_W = np.array([0.3, 0.45, 0.25])
TRUE_RATE = np.array([1.0, 6.0, 15.0])

rng = np.random.default_rng(3)
X1 = rng.poisson(np.repeat(TRUE_RATE, [60, 90, 50])).astype(float)  # (200,)
X2 = rng.poisson(np.repeat([[0.5, 8.0, 3.0], [5.0, 1.0, 3.0]], 80, axis=0)).astype(float)
WEIGHTS = rng.uniform(0.2, 2.0, size=200)


# -- float64 references -------------------------------------------------------------
def ref_component_log_prob(x, rate):
    """(N, K) Poisson log pmf, summed over features for (N, D) data."""
    if x.ndim == 1:
        return stats.poisson.logpmf(x[:, None], rate[None, :])
    return stats.poisson.logpmf(x[:, None, :], rate[None, :, :]).sum(-1)


def ref_log_posterior(x, w, rate):
    """log p(x | θ) + Gamma(A, B) on the rates + Dirichlet(ALPHA) on the weights."""
    ll = logsumexp(ref_component_log_prob(x, rate) + np.log(w), axis=1).sum()
    lp = stats.gamma.logpdf(rate, A, scale=1 / B).sum()
    return ll + lp + stats.dirichlet.logpdf(w, np.full(len(w), ALPHA))


def ref_responsibilities(x, w, rate):
    lj = ref_component_log_prob(x, rate) + np.log(w)
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def as_numpy(params):
    w = np.asarray(params.weights, np.float64)
    return w / w.sum(), np.asarray(params.components.rate, np.float64)


# -- densities --------------------------------------------------------------------------
def test_log_prob_matches_scipy():
    fam = Poisson()
    with jax.enable_x64(True):
        for rate in (3.7, 0.01, 40.0):
            got = fam.log_prob(PoissonParams(jnp.asarray(rate)), jnp.asarray(X1))
            np.testing.assert_allclose(got, stats.poisson.logpmf(X1, rate), rtol=1e-12)
        rate2 = np.array([0.3, 2.5, 11.0])
        got = fam.log_prob(PoissonParams(jnp.asarray(rate2)), jnp.asarray(X2))
        ref = stats.poisson.logpmf(X2, rate2).sum(-1)
        np.testing.assert_allclose(got, ref, rtol=1e-12)
        # The mixture's (N, K) component densities agree too.
        comps = PoissonParams(jnp.asarray([[0.3, 2.5, 11.0], [4.0, 4.0, 0.2]]))
        got = fam.log_prob_components(comps, jnp.asarray(X2))
        np.testing.assert_allclose(got, ref_component_log_prob(X2, np.asarray(comps.rate)))


# -- closed-form M-step ------------------------------------------------------------
def random_params(k, event_shape, seed):
    """A point to step from: random weights and rates (float64)."""
    r = np.random.default_rng(seed)
    w = r.dirichlet(np.full(k, 3.0))
    return em.MixtureParams(w, PoissonParams(r.uniform(0.5, 12.0, size=(k,) + event_shape)))


# Each model compiles its check once; the slow ones add the remaining combinations.
CHECKED = [
    pytest.param(lambda: em.Mixture(Poisson(), 2), X2, id="ml-2d"),
    pytest.param(
        lambda: em.Mixture(
            Poisson(rate_prior=priors.Gamma(A, B)), 3, weights_prior=priors.Dirichlet(ALPHA)
        ),
        X1,
        id="gamma-dirichlet-1d",
    ),
    pytest.param(lambda: em.Mixture(Poisson(), 3), X1, id="ml-1d", marks=pytest.mark.slow),
    pytest.param(
        lambda: em.Mixture(Poisson(rate_prior=priors.Gamma(1.0, 2.0)), 2),
        X2,
        id="gamma1-2d",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("make", "x"), CHECKED)
def test_closed_form_passes_the_autodiff_check(make, x):
    with jax.enable_x64(True):
        model = make()
        assert closed_form_for(model.family) is not None
        params = random_params(model.n_components, x.shape[1:], seed=x.ndim)
        for sample_weight in (None, WEIGHTS[: len(x)]):
            report = check_m_step(model, x, params, sample_weight=sample_weight)
            assert report.ok, report
            assert len(report.pieces) == 2


def test_one_step_is_the_posterior_mode_formula():
    """(Σ w r x + a - 1) / (Σ w r + b) from responsibilities computed with scipy."""
    fam = Poisson(rate_prior=priors.Gamma(A, B))
    cf = closed_form_for(fam)
    w, rate = np.array([0.5, 0.2, 0.3]), np.array([2.0, 5.0, 9.0])
    r = ref_responsibilities(X1, w, rate)
    with jax.enable_x64(True):
        params = PoissonParams(jnp.asarray(rate))
        stats_ = cf.sufficient_stats(fam, params, jnp.asarray(X1), jnp.asarray(r), WEIGHTS)
        new = cf.update(fam, params, stats_)
    wr = r * WEIGHTS[:, None]
    np.testing.assert_allclose(new.rate, (wr.T @ X1 + A - 1) / (wr.sum(0) + B), rtol=1e-12)


def test_degenerate_components():
    """Empty under ML: keep the rate; all-zero counts: a tiny positive floor (the sup is 0)."""
    x = jnp.asarray([0.0, 0.0, 3.0, 4.0])
    resp = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    old = PoissonParams(jnp.asarray([2.0, 7.0, 1.0]))
    for fam in (Poisson(), Poisson(rate_prior=priors.Gamma(1.0, 3.0))):
        cf = closed_form_for(fam)
        new = cf.update(fam, old, cf.sufficient_stats(fam, old, x, resp, jnp.ones(4)))
        rate = np.asarray(new.rate)
        assert 0 < rate[0] < 1e-15  # component 0 saw only zeros
        if fam.priors["rate"] is None:
            assert rate[1] == 7.0  # empty: every rate is a maximiser
            assert rate[2] == pytest.approx(3.5)
        else:
            assert 0 < rate[1] < 1e-15  # empty under Gamma(1, b): sup at 0
            assert rate[2] == pytest.approx(7.0 / 5.0)


class _WrongPoisson(Poisson):
    """Forgets the prior in the update: the checker must notice."""


register_m_step(
    _WrongPoisson,
    lambda fam, params, s: PoissonParams(s.sx / s.n),
    sufficient_stats=closed_form_for(Poisson()).sufficient_stats,
)


def test_checker_catches_a_wrong_update():
    with jax.enable_x64(True):
        model = em.Mixture(_WrongPoisson(rate_prior=priors.Gamma(A, B)), 3)
        report = check_m_step(model, X1, random_params(3, (), seed=1))
    assert not report.ok
    assert [p.ok for p in report.pieces] == [True, False]


def test_closed_form_only_for_gamma_priors():
    assert closed_form_for(Poisson()) is not None
    assert closed_form_for(Poisson(rate_prior=priors.Gamma(2.0, 1.0))) is not None

    class MyGamma(priors.Gamma):
        pass

    for prior in (priors.InverseGamma(2.0, 1.0), MyGamma(2.0, 1.0), lambda v: -v):
        assert closed_form_for(Poisson(rate_prior=prior)) is None


@pytest.mark.slow
def test_heterogeneous_mixture_with_categorical_passes_the_check():
    x = np.concatenate([rng.poisson(0.7, 100), rng.integers(0, 4, 100)]).astype(float)
    with jax.enable_x64(True):
        model = em.Mixture(
            [
                Poisson(rate_prior=priors.Gamma(A, B)),
                Categorical(4, probs_prior=priors.Dirichlet(2.0)),
            ],
            weights_prior=priors.Dirichlet(ALPHA),
        )
        report = check_m_step(model, x, key=jax.random.key(2))
    assert report.ok, report
    assert len(report.pieces) == 3


# -- fits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated():
    model = em.Mixture(
        Poisson(rate_prior=priors.Gamma(A, B)), 3, weights_prior=priors.Dirichlet(ALPHA)
    )
    truth = em.MixtureParams(jnp.asarray(TRUE_W), PoissonParams(jnp.asarray(TRUE_RATE)))
    x, labels = model.sample(jax.random.key(42), truth, 600)
    res = em.fit(model, x, key=jax.random.key(0), restarts=8)
    return np.asarray(x, np.float64), np.asarray(labels), model, res


def scipy_polish(x, w, rate):
    """BFGS on the float64 log posterior in (log rate, log-ratio weights), from (w, rate)."""
    k = len(rate)

    def unpack(z):
        alr = np.append(z[k:], 0.0)
        return np.exp(alr - logsumexp(alr)), np.exp(z[:k])

    def neg(z):
        return -ref_log_posterior(x, *unpack(z))

    z0 = np.concatenate([np.log(rate), np.log(w[:-1] / w[-1])])
    opt = optimize.minimize(neg, z0, method="BFGS", options={"gtol": 1e-9})
    return -opt.fun, *unpack(opt.x)


def test_fit_is_the_map_and_recovers_the_truth(simulated):
    x, labels, _, res = simulated
    assert res.converged
    history = np.asarray(res.history, np.float64)
    assert np.all(np.diff(history) >= -2e-6 * np.abs(history[1:]))  # EM never goes down
    assert np.all(np.isin(x, np.arange(200)))
    w, rate = as_numpy(res.params)
    ours = ref_log_posterior(x, w, rate)
    np.testing.assert_allclose(res.objective, ours, rtol=1e-6)
    # A maximum: at least as good as the generating parameters ...
    assert ours >= ref_log_posterior(x, TRUE_W, TRUE_RATE)
    # ... and BFGS started at the fit cannot improve it.
    best, w_s, rate_s = scipy_polish(x, w, rate)
    assert best - ours < 1e-4 * abs(ours)
    assert best - ours < 2e-3
    # EM's stopping rule (per-sample gain < tol) leaves flat directions a little short.
    np.testing.assert_allclose(rate, rate_s, rtol=5e-3)
    np.testing.assert_allclose(w, w_s, atol=2e-3)
    order = np.argsort(rate)
    np.testing.assert_allclose(rate[order], TRUE_RATE, rtol=0.15)
    np.testing.assert_allclose(w[order], TRUE_W, atol=0.06)


@pytest.mark.slow
def test_gradient_path_reaches_the_same_map(simulated):
    """The Gamma prior as a plain function forces the gradient M-step: same MAP."""
    x, _, closed, cf = simulated
    gamma = priors.Gamma(A, B)
    model = em.Mixture(
        Poisson(rate_prior=lambda v: gamma.log_prob(v)), 3, weights_prior=priors.Dirichlet(ALPHA)
    )
    assert closed_form_for(model.family) is None
    start = cf.params._replace(components=PoissonParams(cf.params.components.rate * 1.05))
    res = em.fit(model, x, init=start)
    assert res.converged
    # float32: the objectives agree to 1e-6 (the sharp check); along the flat direction
    # of the posterior the parameters agree to ~1e-3 (1.4e-3 seen for the smallest rate).
    np.testing.assert_allclose(res.objective, cf.objective, rtol=1e-6)
    np.testing.assert_allclose(res.params.components.rate, cf.params.components.rate, rtol=3e-3)
    np.testing.assert_allclose(res.params.weights, cf.params.weights, rtol=3e-3)


# -- sampling -------------------------------------------------------------------------
def test_sample_moments(simulated):
    """Many draws through the mixture's sampler: per-label means and variances, label shares."""
    _, _, model, _ = simulated
    truth = em.MixtureParams(jnp.asarray(TRUE_W), PoissonParams(jnp.asarray(TRUE_RATE)))
    # Same shapes as the fixture's draw: reuses its compiled sampler.
    draws = [model.sample(jax.random.key(100 + i), truth, 600) for i in range(40)]
    x = np.concatenate([np.asarray(d[0], np.float64) for d in draws])
    labels = np.concatenate([np.asarray(d[1]) for d in draws])
    n = len(x)
    assert np.all(x == np.round(x)) and np.all(x >= 0)
    share = np.bincount(labels, minlength=3) / n
    assert np.all(np.abs(share - TRUE_W) < 4 * np.sqrt(TRUE_W * (1 - TRUE_W) / n))
    for k, rate in enumerate(TRUE_RATE):
        xs = x[labels == k]
        # Var(s²) for the Poisson: (μ4 - σ⁴) / n = (rate + 2 rate²) / n.
        assert abs(xs.mean() - rate) < 4 * np.sqrt(rate / len(xs))
        assert abs(xs.var() - rate) < 4 * np.sqrt((rate + 2 * rate**2) / len(xs))


@pytest.mark.slow
def test_sample_shapes_for_independent_features():
    rate = np.array([0.5, 4.0, 30.0])
    params = PoissonParams(jnp.asarray(rate))
    draws = np.asarray(Poisson().sample(jax.random.key(0), params, 40_000))
    assert draws.shape == (40_000, 3)
    assert np.all(np.abs(draws.mean(0) - rate) < 4 * np.sqrt(rate / 40_000))


# -- bad input --------------------------------------------------------------------------
def test_bad_input_is_rejected():
    model = em.Mixture(Poisson(), 2)
    with pytest.raises(ValueError, match="Poisson: x must hold non-negative integer counts"):
        em.fit(model, np.array([1.0, 2.5, 3.0]), key=0)
    with pytest.raises(ValueError, match=r"found e.g. \[-1.0\]"):
        em.fit(model, np.array([[1.0, -1.0], [3.0, 0.0]]), key=0)
    with pytest.raises(ValueError, match="concentration >= 1"):
        Poisson(rate_prior=priors.Gamma(0.5, 1.0))
    with pytest.raises(TypeError, match="rate_prior must be"):
        Poisson(rate_prior=3.0)
