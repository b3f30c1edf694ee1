"""Binomial and Bernoulli mixtures: closed-form MAP vs SciPy and vs the gradient M-step."""

import jax
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import expit, logsumexp

import jaxem as em
from jaxem import priors

rng = np.random.default_rng(7)
COUNTS = rng.binomial(20, np.repeat([0.2, 0.5, 0.85], [100, 80, 60])).astype(float)
BINARY = rng.uniform(size=(300, 6)) < np.repeat(
    [[0.9, 0.8, 0.1, 0.2, 0.7, 0.5], [0.1, 0.3, 0.8, 0.9, 0.6, 0.5]], 150, axis=0
)
BINARY = BINARY.astype(float)
A, B, ALPHA = 2.0, 3.0, 1.5


def binomial_log_posterior(x, w, p):
    lj = np.log(w) + stats.binom.logpmf(x[:, None], 20, p)
    return (
        logsumexp(lj, axis=1).sum()
        + stats.beta.logpdf(p, A, B).sum()
        + stats.dirichlet.logpdf(w / w.sum(), np.full(len(w), ALPHA))
    )


def test_binomial_closed_form_is_the_scipy_map():
    model = em.Mixture(
        em.Binomial(20, p_prior=priors.Beta(A, B)),
        n_components=3,
        weights_prior=priors.Dirichlet(ALPHA),
    )
    res = em.fit(model, COUNTS, key=jax.random.key(0), restarts=8)
    w = np.asarray(res.params.weights, np.float64)
    p = np.asarray(res.params.components.p, np.float64)
    ours = binomial_log_posterior(COUNTS, w, p)
    assert res.objective == pytest.approx(ours, rel=1e-6)

    def neg(z):
        ww = np.exp(np.append(z[3:], 0.0) - logsumexp(np.append(z[3:], 0.0)))
        return -binomial_log_posterior(COUNTS, ww, expit(z[:3]))

    z0 = np.concatenate([np.log(p / (1 - p)), np.log(w[:2] / w[2])])
    opt = optimize.minimize(neg, z0, method="BFGS", options={"gtol": 1e-8})
    assert -opt.fun - ours < 1e-4
    np.testing.assert_allclose(expit(opt.x[:3]), p, atol=2e-4)
    np.testing.assert_allclose(np.sort(p), [0.2, 0.5, 0.85], atol=0.05)


@pytest.mark.slow
def test_bernoulli_latent_classes_closed_form_equals_gradient_path():
    """(N, D) binary items; Beta prior as an object (closed form) and as a function."""
    beta = priors.Beta(1.5, 1.5)
    closed = em.Mixture(em.Bernoulli(p_prior=beta), n_components=2)
    grad = em.Mixture(em.Bernoulli(p_prior=lambda p: beta.log_prob(p)), n_components=2)
    a = em.fit(closed, BINARY, key=jax.random.key(0), restarts=4)
    b = em.fit(
        grad,
        BINARY,
        init=a.params._replace(
            components=em.BinomialParams(np.clip(np.asarray(a.params.components.p) + 0.05, 0, 1))
        ),
    )
    assert a.params.components.p.shape == (2, 6)
    np.testing.assert_allclose(
        np.asarray(b.params.components.p), np.asarray(a.params.components.p), atol=5e-4
    )
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    # One closed-form step is the posterior-mode frequency (Σ r x + a - 1) / (Σ r + a + b - 2).
    step = em.fit(closed, BINARY, init=a.params, max_iter=1, tol=0.0)
    r = np.asarray(em.responsibilities(closed, a.params, BINARY), np.float64)
    p_ref = (r.T @ BINARY + 0.5) / (r.sum(0)[:, None] + 1.0)
    np.testing.assert_allclose(np.asarray(step.params.components.p), p_ref, atol=2e-6)


def test_bernoulli_recovers_the_classes():
    res = em.fit(
        em.Mixture(em.Bernoulli(), n_components=2), BINARY, key=jax.random.key(1), restarts=8
    )
    labels = np.asarray(res.params.components.p)[:, 0] > 0.5
    p = np.asarray(res.params.components.p)[np.argsort(~labels)]
    np.testing.assert_allclose(
        p, [[0.9, 0.8, 0.1, 0.2, 0.7, 0.5], [0.1, 0.3, 0.8, 0.9, 0.6, 0.5]], atol=0.1
    )


def test_support_violations_are_rejected():
    with pytest.raises(ValueError, match=r"integers in \[0, 20\]"):
        em.fit(em.Mixture(em.Binomial(20), 2), np.array([1.0, 2.5, 3.0]), key=0)
    with pytest.raises(ValueError, match=r"integers in \[0, 20\]"):
        em.fit(em.Mixture(em.Binomial(20), 2), np.array([1.0, 21.0, 3.0]), key=0)
    with pytest.raises(ValueError, match=r"integers in \[0, 1\]"):
        em.fit(em.Mixture(em.Bernoulli(), 2), np.array([0.0, 1.0, 2.0]), key=0)
    with pytest.raises(ValueError, match="n_trials must be a positive integer"):
        em.Binomial(0)
    with pytest.raises(ValueError, match="a >= 1 and b >= 1"):
        em.Bernoulli(p_prior=priors.Beta(0.5, 2.0))
