"""Exponential mixtures: densities vs scipy.stats, the closed-form MAP vs autodiff and vs SciPy.

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
from jaxem.families.exponential import Exponential, ExponentialParams

A, B, ALPHA = 2.0, 1.0, 1.5  # Gamma(concentration, rate) on each rate; Dirichlet on weights
TRUE_W = np.array([0.6, 0.4])
TRUE_RATE = np.array([4.0, 0.25])

rng = np.random.default_rng(5)
X1 = rng.exponential(1 / np.repeat(TRUE_RATE, [120, 80]))  # (200,)
X2 = rng.exponential(1 / np.repeat([[3.0, 0.5, 1.0], [0.3, 2.0, 1.0]], 80, axis=0))  # (160, 3)
WEIGHTS = rng.uniform(0.2, 2.0, size=200)


# -- float64 references -------------------------------------------------------------
def ref_component_log_prob(x, rate):
    """(N, K) exponential log density, summed over features for (N, D) data."""
    if x.ndim == 1:
        return stats.expon.logpdf(x[:, None], scale=1 / rate[None, :])
    return stats.expon.logpdf(x[:, None, :], scale=1 / rate[None, :, :]).sum(-1)


def ref_log_posterior(x, w, rate):
    """log p(x | θ) + Gamma(A, B) on the rates + Dirichlet(ALPHA) on the weights."""
    ll = logsumexp(ref_component_log_prob(x, rate) + np.log(w), axis=1).sum()
    lp = stats.gamma.logpdf(rate, A, scale=1 / B).sum()
    return ll + lp + stats.dirichlet.logpdf(w, np.full(len(w), ALPHA))


def ref_responsibilities(x, w, rate):
    lj = ref_component_log_prob(x, rate) + np.log(w)
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def random_params(k, event_shape, seed):
    """A point to step from: random weights and rates (float64)."""
    r = np.random.default_rng(seed)
    w = r.dirichlet(np.full(k, 3.0))
    return em.MixtureParams(w, ExponentialParams(r.uniform(0.1, 5.0, size=(k,) + event_shape)))


# -- densities --------------------------------------------------------------------------
def test_log_prob_matches_scipy():
    fam = Exponential()
    with jax.enable_x64(True):
        x1 = np.concatenate([X1, [0.0]])  # the density at 0 is the rate
        for rate in (0.02, 1.3, 50.0):
            got = fam.log_prob(ExponentialParams(jnp.asarray(rate)), jnp.asarray(x1))
            np.testing.assert_allclose(got, stats.expon.logpdf(x1, scale=1 / rate), rtol=1e-12)
        rate2 = np.array([0.3, 2.5, 11.0])
        got = fam.log_prob(ExponentialParams(jnp.asarray(rate2)), jnp.asarray(X2))
        ref = stats.expon.logpdf(X2, scale=1 / rate2).sum(-1)
        np.testing.assert_allclose(got, ref, rtol=1e-12)


# -- closed-form M-step ------------------------------------------------------------
CHECKED = [
    pytest.param(lambda: em.Mixture(Exponential(), 2), X2, id="ml-2d"),
    pytest.param(
        lambda: em.Mixture(
            Exponential(rate_prior=priors.Gamma(A, B)), 3, weights_prior=priors.Dirichlet(ALPHA)
        ),
        X1,
        id="gamma-dirichlet-1d",
    ),
    pytest.param(lambda: em.Mixture(Exponential(), 3), X1, id="ml-1d", marks=pytest.mark.slow),
    pytest.param(
        lambda: em.Mixture(Exponential(rate_prior=priors.Gamma(1.0, 0.5)), 2),
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
    """(Σ w r + a - 1) / (Σ w r x + b) from responsibilities computed with scipy."""
    fam = Exponential(rate_prior=priors.Gamma(A, B))
    cf = closed_form_for(fam)
    w, rate = np.array([0.5, 0.2, 0.3]), np.array([3.0, 1.0, 0.2])
    r = ref_responsibilities(X1, w, rate)
    with jax.enable_x64(True):
        params = ExponentialParams(jnp.asarray(rate))
        stats_ = cf.sufficient_stats(fam, params, jnp.asarray(X1), jnp.asarray(r), WEIGHTS)
        new = cf.update(fam, params, stats_)
    wr = r * WEIGHTS[:, None]
    np.testing.assert_allclose(new.rate, (wr.sum(0) + A - 1) / (wr.T @ X1 + B), rtol=1e-12)


def test_degenerate_components():
    """No maximiser (ML, Σ w r x = 0): keep the rate; sup at 0 (a = 1, empty): tiny floor."""
    x = jnp.asarray([0.0, 0.0, 3.0, 5.0])
    resp = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    old = ExponentialParams(jnp.asarray([2.0, 7.0, 1.0]))
    fam = Exponential()
    cf = closed_form_for(fam)
    rate = np.asarray(cf.update(fam, old, cf.sufficient_stats(fam, old, x, resp, jnp.ones(4))).rate)
    np.testing.assert_allclose(rate, [2.0, 7.0, 0.25])  # only zeros; empty; 2 / 8
    fam = Exponential(rate_prior=priors.Gamma(1.0, 2.0))
    cf = closed_form_for(fam)
    rate = np.asarray(cf.update(fam, old, cf.sufficient_stats(fam, old, x, resp, jnp.ones(4))).rate)
    assert rate[0] == pytest.approx(2.0 / 2.0)  # (2 + 1 - 1) / (0 + 2)
    assert 0 < rate[1] < 1e-15
    assert rate[2] == pytest.approx(2.0 / 10.0)


class _WrongExponential(Exponential):
    """Inverts the wrong mean (forgets the weights on x): the checker must notice."""


def _wrong_update(fam, params, s):
    return ExponentialParams(s.n / (s.sx + 0.1 * s.n))


register_m_step(
    _WrongExponential,
    _wrong_update,
    sufficient_stats=closed_form_for(Exponential()).sufficient_stats,
)


@pytest.mark.slow
def test_checker_catches_a_wrong_update():
    with jax.enable_x64(True):
        model = em.Mixture(_WrongExponential(), 3)
        report = check_m_step(model, X1, random_params(3, (), seed=1))
    assert not report.ok
    assert [p.ok for p in report.pieces] == [True, False]


def test_closed_form_only_for_gamma_priors():
    assert closed_form_for(Exponential()) is not None
    assert closed_form_for(Exponential(rate_prior=priors.Gamma(2.0, 1.0))) is not None
    for prior in (priors.InverseGamma(2.0, 1.0), lambda v: -v):
        assert closed_form_for(Exponential(rate_prior=prior)) is None


# -- fits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated():
    model = em.Mixture(
        Exponential(rate_prior=priors.Gamma(A, B)), 2, weights_prior=priors.Dirichlet(ALPHA)
    )
    truth = em.MixtureParams(jnp.asarray(TRUE_W), ExponentialParams(jnp.asarray(TRUE_RATE)))
    x, labels = model.sample(jax.random.key(7), truth, 1000)
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
    x, _, _, res = simulated
    assert res.converged
    history = np.asarray(res.history, np.float64)
    assert np.all(np.diff(history) >= -2e-6 * np.abs(history[1:]))  # EM never goes down
    w = np.asarray(res.params.weights, np.float64)
    w = w / w.sum()
    rate = np.asarray(res.params.components.rate, np.float64)
    ours = ref_log_posterior(x, w, rate)
    np.testing.assert_allclose(res.objective, ours, rtol=1e-6)
    assert ours >= ref_log_posterior(x, TRUE_W, TRUE_RATE)
    best, w_s, rate_s = scipy_polish(x, w, rate)
    assert best - ours < 1e-4 * abs(ours)
    assert best - ours < 2e-3
    # EM's stopping rule (per-sample gain < tol) leaves flat directions a little short.
    np.testing.assert_allclose(rate, rate_s, rtol=5e-3)
    np.testing.assert_allclose(w, w_s, atol=2e-3)
    order = np.argsort(-rate)
    np.testing.assert_allclose(rate[order], TRUE_RATE, rtol=0.2)
    np.testing.assert_allclose(w[order], TRUE_W, atol=0.08)


@pytest.mark.slow
def test_gradient_path_reaches_the_same_map(simulated):
    """The Gamma prior as a plain function forces the gradient M-step: same MAP."""
    x, _, _, cf = simulated
    gamma = priors.Gamma(A, B)
    model = em.Mixture(
        Exponential(rate_prior=lambda v: gamma.log_prob(v)),
        2,
        weights_prior=priors.Dirichlet(ALPHA),
    )
    assert closed_form_for(model.family) is None
    start = cf.params._replace(
        components=ExponentialParams(cf.params.components.rate * jnp.asarray([1.05, 0.95]))
    )
    res = em.fit(model, x, init=start)
    assert res.converged
    np.testing.assert_allclose(res.params.components.rate, cf.params.components.rate, rtol=1e-3)
    np.testing.assert_allclose(res.params.weights, cf.params.weights, rtol=1e-3)
    np.testing.assert_allclose(res.objective, cf.objective, rtol=1e-6)


# -- sampling -------------------------------------------------------------------------
def test_sample_follows_the_exponential(simulated):
    """Many draws through the mixture's sampler: KS test per label, label shares."""
    _, _, model, _ = simulated
    truth = em.MixtureParams(jnp.asarray(TRUE_W), ExponentialParams(jnp.asarray(TRUE_RATE)))
    # Same shapes as the fixture's draw: reuses its compiled sampler.
    draws = [model.sample(jax.random.key(100 + i), truth, 1000) for i in range(20)]
    x = np.concatenate([np.asarray(d[0], np.float64) for d in draws])
    labels = np.concatenate([np.asarray(d[1]) for d in draws])
    n = len(x)
    assert np.all(x >= 0)
    share = np.bincount(labels, minlength=2) / n
    assert np.all(np.abs(share - TRUE_W) < 4 * np.sqrt(TRUE_W * (1 - TRUE_W) / n))
    for k, lam in enumerate(TRUE_RATE):
        xs = x[labels == k]
        assert stats.kstest(xs, stats.expon(scale=1 / lam).cdf).pvalue > 1e-3
        assert abs(xs.mean() - 1 / lam) < 4 / lam / np.sqrt(len(xs))


@pytest.mark.slow
def test_sample_shapes_for_independent_features():
    rate = np.array([0.5, 4.0])
    draws = np.asarray(
        Exponential().sample(jax.random.key(0), ExponentialParams(jnp.asarray(rate)), 20_000)
    )
    assert draws.shape == (20_000, 2)
    for j, lam in enumerate(rate):
        assert stats.kstest(draws[:, j], stats.expon(scale=1 / lam).cdf).pvalue > 1e-3


# -- bad input --------------------------------------------------------------------------
def test_bad_input_is_rejected():
    model = em.Mixture(Exponential(), 2)
    with pytest.raises(ValueError, match=r"Exponential: x must be >= 0.*\[-0.5\]"):
        em.fit(model, np.array([1.0, -0.5, 3.0]), key=0)
    with pytest.raises(ValueError, match="concentration >= 1"):
        Exponential(rate_prior=priors.Gamma(0.9, 1.0))
    with pytest.raises(TypeError, match="rate_prior must be"):
        Exponential(rate_prior="gamma")
