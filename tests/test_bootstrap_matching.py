"""The bootstrap's label matching for HMMs and mixtures of experts.

A permutation of an HMM's states, or of a gated mixture's components, is the
same model: the likelihood is unchanged and the posteriors' columns are
permuted (checked here against the unpermuted fit, with the library's own
likelihood). Replicates handed over in a deliberately permuted order must
come back in the fit's order; and em.bootstrap on a well-separated HMM must
give every replicate the fit's labels, with standard errors near the
observed information's.
"""

import jax
import numpy as np
import pytest
from conftest import gaussian_hmm_sequences

import jaxem as em
from jaxem import _validation
from jaxem.bootstrap import _match_components, _matches_components, _permute

PERMS = [np.array(p) for p in ((1, 2, 0), (2, 1, 0), (0, 2, 1), (0, 1, 2))]


def stacked(trees):
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *trees)


def prepared(model, raw, params, lengths=None):
    """The data and parameters as em.bootstrap holds them (float64 on the device)."""
    data = _validation.prepare_data(model, model._as_units(raw, lengths))
    return data, jax.tree.map(np.asarray, model._check_params(params, data))


def assert_trees_close(a, b, **kwargs):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, **kwargs)


# -- HMMs ----------------------------------------------------------------------------------------
def hmm_data(seed=0):
    """Three well-separated Gaussian states; eight sequences of 30–60 steps."""
    rng = np.random.default_rng(seed)
    trans = np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    lengths = rng.integers(30, 60, 8)
    x = gaussian_hmm_sequences(rng, trans, [-4.0, 0.0, 4.0], np.ones(3), lengths)
    params = em.HMMParams(
        np.array([0.2, 0.3, 0.5]),
        trans,
        em.NormalParams(np.array([-4.0, 0.0, 4.0]), np.array([1.0, 0.8, 1.2])),
    )
    return x, lengths, params


def test_hmm_permutation_is_the_same_model_and_matching_undoes_it():
    x, lengths, params = hmm_data()
    hmm = em.HMM(em.Normal(), 3)
    with jax.enable_x64(True):
        data, params = prepared(hmm, x, params, lengths)
        ll = float(em.log_likelihood(hmm, params, x, lengths=lengths))
        post = np.asarray(em.responsibilities(hmm, params, x, lengths=lengths))
        replicates = []
        for perm in PERMS:
            p = _permute(hmm, params, perm)
            np.testing.assert_array_equal(p.initial, params.initial[perm])
            np.testing.assert_array_equal(p.transition[1], params.transition[perm[1], perm])
            np.testing.assert_array_equal(p.emissions.var, params.emissions.var[perm])
            # The same model: the likelihood is unchanged, the posteriors' columns permuted.
            assert float(em.log_likelihood(hmm, p, x, lengths=lengths)) == pytest.approx(ll)
            got = np.asarray(em.responsibilities(hmm, p, x, lengths=lengths))
            np.testing.assert_allclose(got, post[:, perm], atol=1e-10)
            replicates.append(p)
        matched = _match_components(hmm, params, data, stacked(replicates))
    assert_trees_close(matched, stacked([params] * len(PERMS)), rtol=1e-12)


# -- mixtures of experts -------------------------------------------------------------------------
def experts_data(seed=1, n=300):
    """Three linear regressions, weights softmax(w·Γ + γ) of two covariates."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    w = rng.normal(size=(n, 2))
    coef = np.array([[0.0, 0.0], [1.5, -1.0], [-1.0, 2.0]])
    icpt = np.array([0.0, 0.3, -0.2])
    logits = w @ coef.T + icpt
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    z = np.array([rng.choice(3, p=p) for p in prob])
    slope, inter = np.array([2.0, -1.0, 0.5]), np.array([-5.0, 0.0, 6.0])
    y = inter[z] + slope[z] * x + rng.normal(0, 0.5, n)
    params = em.MixtureParams(
        em.GatingParams(coef, icpt),
        em.LinearRegressionParams(slope[:, None], inter, np.full(3, 0.25)),
    )
    return {"x": x, "y": y, "w": w}, params


def test_gated_permutation_keeps_the_reference_and_matching_undoes_it():
    raw, params = experts_data()
    model = em.Mixture(em.LinearRegression(), 3, gating=em.SoftmaxGating("w"))
    with jax.enable_x64(True):
        data, params = prepared(model, raw, params)
        ll = float(em.log_likelihood(model, params, raw))
        post = np.asarray(em.responsibilities(model, params, raw))
        weights = np.asarray(model.gating.weights(params.weights, data))  # (N, K)
        replicates = []
        for perm in PERMS:
            p = _permute(model, params, perm)
            # Component 0 is the reference again (em.fit's check would refuse it otherwise).
            assert not np.any(p.weights.gate_coef[0]) and p.weights.gate_intercept[0] == 0
            model._check_params(p, data)
            np.testing.assert_array_equal(p.components.coef, params.components.coef[perm])
            got_w = np.asarray(model.gating.weights(p.weights, data))
            np.testing.assert_allclose(got_w, weights[:, perm], rtol=1e-12)
            assert float(em.log_likelihood(model, p, raw)) == pytest.approx(ll, rel=1e-12)
            got = np.asarray(em.responsibilities(model, p, raw))
            np.testing.assert_allclose(got, post[:, perm], atol=1e-12)
            replicates.append(p)
        matched = _match_components(model, params, data, stacked(replicates))
    assert_trees_close(matched, stacked([params] * len(PERMS)), rtol=1e-12, atol=1e-12)


def test_which_models_are_matched():
    assert _matches_components(em.Mixture(em.Normal(), 2))
    assert _matches_components(em.HMM(em.Poisson(), 2))
    assert _matches_components(em.Mixture(em.LinearRegression(), 2, gating=em.SoftmaxGating()))
    assert not _matches_components(em.Mixture([em.Normal(), em.Exponential()]))


# -- end to end ----------------------------------------------------------------------------------
def two_state_sequences(seed=4, n_seq=40):
    """Forty sequences (30–70 steps) of a 2-state HMM with means -2 and 2."""
    rng = np.random.default_rng(seed)
    trans, mu, sd = np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([-2.0, 2.0]), np.array([1, 0.7])
    lengths = rng.integers(30, 70, n_seq)
    return gaussian_hmm_sequences(rng, trans, mu, sd, lengths), lengths


@pytest.mark.slow
def test_hmm_bootstrap_keeps_the_states_and_agrees_with_the_hessian():
    """Resampling whole sequences: no replicate swaps the states, and the bootstrap standard
    errors are within 30% of the observed information's (0.86–1.16 times them seen with 200
    replicates and keys 2, 3, 4)."""
    x, lengths = two_state_sequences()
    hmm = em.HMM(em.Normal(), 2)
    start = em.HMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.9, 0.1], [0.2, 0.8]]),
        em.NormalParams(np.array([-2.0, 2.0]), np.array([1.0, 0.5])),
    )
    with jax.enable_x64(True):
        res = em.fit(hmm, x, lengths=lengths, init=start, tol=1e-12, max_iter=2000)
        params = jax.tree.map(np.asarray, res.params)
        se = em.standard_errors(hmm, params, x, lengths=lengths)
        boot = em.bootstrap(hmm, x, params, 200, key=2, tol=1e-10, lengths=lengths)
    assert boot.converged.all() and boot.samples.transition.shape == (200, 2, 2)
    means = boot.samples.emissions.mean
    assert np.all(np.abs(means - params.emissions.mean) < 0.3)  # the states are 4 apart
    for got, want in zip(jax.tree.leaves(boot.standard_errors), jax.tree.leaves(se), strict=True):
        np.testing.assert_allclose(got, want, rtol=0.3)
    lower, upper = boot.intervals(0.9)
    assert np.all(lower.transition <= params.transition)
    assert np.all(params.transition <= upper.transition)


@pytest.mark.slow
def test_gated_bootstrap_returns_matched_replicates_with_the_reference_row():
    raw, truth = experts_data(n=400)
    model = em.Mixture(em.LinearRegression(), 3, gating=em.SoftmaxGating("w"))
    with jax.enable_x64(True):
        params = jax.tree.map(np.asarray, em.fit(model, raw, init=truth, tol=1e-10).params)
        boot = em.bootstrap(model, raw, params, 30, key=0, tol=1e-8)
    assert np.all(boot.samples.weights.gate_coef[:, 0] == 0)
    assert np.all(boot.samples.weights.gate_intercept[:, 0] == 0)
    # The intercepts are -5, 0, 6 (noise sd 0.5): every replicate keeps the fit's order.
    icpt = boot.samples.components.intercept
    assert np.all(np.abs(icpt - params.components.intercept) < 1.0)
    se = boot.standard_errors.weights
    assert np.all(se.gate_coef[0] == 0) and np.all(np.isfinite(se.gate_coef))
