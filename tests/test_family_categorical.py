"""Categorical mixtures (latent class analysis): densities, closed-form MAP, fits, sampling.

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
from jaxem.families.categorical import Categorical, CategoricalParams

C = 3
ALPHA_P, ALPHA_W = 1.5, 1.5  # Dirichlet on each probability vector; Dirichlet on weights
TRUE_W = np.array([0.55, 0.45])
TRUE_PROBS = np.array(
    [
        [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.25, 0.25]],
        [[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1], [0.25, 0.5, 0.25]],
    ]
)  # (K, D, C)

rng = np.random.default_rng(11)


def draw_codes(probs, labels, r):
    """(N, D) codes: row i, feature d drawn from probs[labels[i], d] by inverse CDF."""
    cdf = np.cumsum(probs[labels], axis=-1)
    u = r.uniform(size=cdf.shape[:-1] + (1,))
    return np.minimum((u > cdf).sum(-1), probs.shape[-1] - 1).astype(float)


X2 = draw_codes(TRUE_PROBS, np.repeat([0, 1], [90, 70]), rng)  # (160, 4)
X1 = rng.choice(4, size=200, p=[0.1, 0.4, 0.2, 0.3]).astype(float)  # (200,), C = 4
WEIGHTS = rng.uniform(0.2, 2.0, size=200)


# -- float64 references -------------------------------------------------------------
def ref_log_prob(x, probs):
    """log pmf of one component via scipy's multinomial with one trial, summed over features."""
    n_cat = probs.shape[-1]
    onehot = np.eye(n_cat)[x.astype(int)]
    if x.ndim == 1:
        return stats.multinomial(1, probs).logpmf(onehot)
    return sum(stats.multinomial(1, probs[d]).logpmf(onehot[:, d]) for d in range(x.shape[1]))


def ref_component_log_prob(x, probs):
    """(N, K) log densities by direct indexing (x: (N, D) codes, probs: (K, D, C))."""
    d = np.arange(x.shape[1])
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    return logp[:, d[None, :], x.astype(int)].sum(-1).T


def ref_log_posterior(x, w, probs):
    """log p(x | θ) + Dirichlet(ALPHA_P) on every probs[k, d] + Dirichlet(ALPHA_W) on weights."""
    ll = logsumexp(ref_component_log_prob(x, probs) + np.log(w), axis=1).sum()
    alpha = np.full(probs.shape[-1], ALPHA_P)
    lp = sum(stats.dirichlet.logpdf(p, alpha) for p in probs.reshape(-1, probs.shape[-1]))
    return ll + lp + stats.dirichlet.logpdf(w, np.full(len(w), ALPHA_W))


def random_params(k, event_shape, seed):
    """A point to step from: random weights and probability vectors (float64)."""
    r = np.random.default_rng(seed)
    w = r.dirichlet(np.full(k, 3.0))
    probs = r.dirichlet(np.full(event_shape[-1], 2.0), size=(k,) + event_shape[:-1])
    return em.MixtureParams(w, CategoricalParams(probs))


# -- densities --------------------------------------------------------------------------
def test_log_prob_matches_scipy_multinomial():
    fam4, fam3 = Categorical(4), Categorical(3)
    with jax.enable_x64(True):
        p1 = np.array([0.05, 0.5, 0.15, 0.3])
        got = fam4.log_prob(CategoricalParams(jnp.asarray(p1)), jnp.asarray(X1))
        np.testing.assert_allclose(got, ref_log_prob(X1, p1), rtol=1e-12)
        p2 = rng.dirichlet(np.ones(C), size=4)  # (D, C)
        got = fam3.log_prob(CategoricalParams(jnp.asarray(p2)), jnp.asarray(X2))
        np.testing.assert_allclose(got, ref_log_prob(X2, p2), rtol=1e-12)
        # A category with probability 0 has log density -inf, as in scipy.
        p0 = np.array([0.0, 0.5, 0.25, 0.25])
        got = np.asarray(fam4.log_prob(CategoricalParams(jnp.asarray(p0)), jnp.asarray(X1)))
        np.testing.assert_array_equal(got, ref_log_prob(X1, p0))
        assert np.isneginf(got[X1 == 0]).all()
        comps = CategoricalParams(jnp.asarray(TRUE_PROBS))
        got = fam3.log_prob_components(comps, jnp.asarray(X2))
        np.testing.assert_allclose(got, ref_component_log_prob(X2, TRUE_PROBS), rtol=1e-12)


# -- closed-form M-step ------------------------------------------------------------
CHECKED = [
    pytest.param(lambda: em.Mixture(Categorical(4), 3), X1, id="ml-1d"),
    pytest.param(
        lambda: em.Mixture(
            Categorical(C, probs_prior=priors.Dirichlet([1.0, 2.0, 1.5])),
            2,
            weights_prior=priors.Dirichlet(ALPHA_W),
        ),
        X2,
        id="dirichlet-vector-2d",
    ),
    pytest.param(lambda: em.Mixture(Categorical(C), 3), X2, id="ml-2d", marks=pytest.mark.slow),
    pytest.param(
        lambda: em.Mixture(Categorical(4, probs_prior=priors.Dirichlet(ALPHA_P)), 2),
        X1,
        id="dirichlet-scalar-1d",
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize(("make", "x"), CHECKED)
def test_closed_form_passes_the_autodiff_check(make, x):
    with jax.enable_x64(True):
        model = make()
        assert closed_form_for(model.family) is not None
        event = x.shape[1:] + (model.family.n_categories,)
        params = random_params(model.n_components, event, seed=x.ndim)
        for sample_weight in (None, WEIGHTS[: len(x)]):
            report = check_m_step(model, x, params, sample_weight=sample_weight)
            assert report.ok, report
            assert len(report.pieces) == 2


def test_one_step_is_the_posterior_mode_formula():
    """probs ∝ Σ w r 1[x = c] + α - 1, from responsibilities computed with NumPy."""
    alpha = np.array([1.0, 2.0, 1.5])
    fam = Categorical(C, probs_prior=priors.Dirichlet(alpha))
    cf = closed_form_for(fam)
    w, probs = np.array([0.3, 0.7]), TRUE_PROBS[::-1]
    lj = ref_component_log_prob(X2, probs) + np.log(w)
    r = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    sw = WEIGHTS[: len(X2)]
    with jax.enable_x64(True):
        params = CategoricalParams(jnp.asarray(probs))
        s = cf.sufficient_stats(fam, params, jnp.asarray(X2), jnp.asarray(r), jnp.asarray(sw))
        new = np.asarray(cf.update(fam, params, s).probs)
    counts = np.zeros(probs.shape)
    for i, row in enumerate(X2.astype(int)):
        for d, c in enumerate(row):
            counts[:, d, c] += sw[i] * r[i]
    num = counts + alpha - 1
    np.testing.assert_allclose(new, num / num.sum(-1, keepdims=True), rtol=1e-12)


def test_degenerate_components():
    """Unseen category under ML: probability 0 exactly; empty component: kept (ML) or mode."""
    x = jnp.asarray([0.0, 0.0, 1.0, 2.0])
    resp = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    old = CategoricalParams(jnp.asarray([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]]))
    fam = Categorical(3)
    cf = closed_form_for(fam)
    probs = np.asarray(
        cf.update(fam, old, cf.sufficient_stats(fam, old, x, resp, jnp.ones(4))).probs
    )
    expected = [[1.0, 0.0, 0.0], [0.6, 0.3, 0.1], [0.0, 0.5, 0.5]]  # seen 0, 0; empty; seen 1, 2
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert probs[0, 1] == 0.0 and probs[2, 0] == 0.0  # exactly: unseen categories
    fam = Categorical(3, probs_prior=priors.Dirichlet([2.0, 1.0, 3.0]))
    cf = closed_form_for(fam)
    probs = np.asarray(
        cf.update(fam, old, cf.sufficient_stats(fam, old, x, resp, jnp.ones(4))).probs
    )
    np.testing.assert_allclose(probs[1], [1 / 3, 0.0, 2 / 3])  # empty: the prior's mode


class _WrongCategorical(Categorical):
    """Adds α instead of α - 1: the checker must notice."""


def _wrong_update(fam, params, s):
    num = s.counts + jnp.asarray(fam.priors["probs"].concentration, s.counts.dtype)
    return CategoricalParams(num / num.sum(-1, keepdims=True))


register_m_step(
    _WrongCategorical,
    _wrong_update,
    sufficient_stats=closed_form_for(Categorical(2)).sufficient_stats,
)


@pytest.mark.slow
def test_checker_catches_a_wrong_update():
    with jax.enable_x64(True):
        model = em.Mixture(_WrongCategorical(4, probs_prior=priors.Dirichlet(2.0)), 3)
        report = check_m_step(model, X1, random_params(3, (4,), seed=1))
    assert not report.ok
    assert [p.ok for p in report.pieces] == [True, False]


def test_closed_form_only_for_dirichlet_priors():
    assert closed_form_for(Categorical(3)) is not None
    assert closed_form_for(Categorical(3, probs_prior=priors.Dirichlet(2.0))) is not None
    for prior in (priors.Beta(2.0, 2.0), lambda p: jnp.sum(jnp.log(p), -1)):
        assert closed_form_for(Categorical(3, probs_prior=prior)) is None


def test_init_is_inside_the_simplex_and_vmaps():
    fam = Categorical(C)
    keys = jax.random.split(jax.random.key(0), 4)
    probs = jax.jit(jax.vmap(lambda k: fam.init(k, jnp.asarray(X2), 3).probs))(keys)
    assert probs.shape == (4, 3, 4, C)
    assert np.all(np.asarray(probs) > 0)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert not np.allclose(probs[0], probs[1])  # the starts differ


# -- fits ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def simulated():
    model = em.Mixture(
        Categorical(C, probs_prior=priors.Dirichlet(ALPHA_P)),
        2,
        weights_prior=priors.Dirichlet(ALPHA_W),
    )
    truth = em.MixtureParams(jnp.asarray(TRUE_W), CategoricalParams(jnp.asarray(TRUE_PROBS)))
    x, labels = model.sample(jax.random.key(3), truth, 800)
    res = em.fit(model, x, key=jax.random.key(0), restarts=8)
    return np.asarray(x, np.float64), np.asarray(labels), model, res


def as_numpy(params):
    w = np.asarray(params.weights, np.float64)
    probs = np.asarray(params.components.probs, np.float64)
    return w / w.sum(), probs / probs.sum(-1, keepdims=True)


def scipy_polish(x, w, probs):
    """BFGS on the float64 log posterior in log-ratio coordinates, from (w, probs)."""
    k, shape = len(w), probs.shape
    n_p = probs[..., :-1].size

    def softmax0(z):  # additive log-ratio inverse: last entry is the reference
        z = np.concatenate([z, np.zeros(z.shape[:-1] + (1,))], axis=-1)
        return np.exp(z - logsumexp(z, axis=-1, keepdims=True))

    def unpack(z):
        return softmax0(z[n_p:]), softmax0(z[:n_p].reshape(shape[:-1] + (shape[-1] - 1,)))

    def neg(z):
        return -ref_log_posterior(x, *unpack(z))

    z0 = np.concatenate(
        [np.log(probs[..., :-1] / probs[..., -1:]).ravel(), np.log(w[: k - 1] / w[-1])]
    )
    opt = optimize.minimize(neg, z0, method="BFGS", options={"gtol": 1e-9})
    return -opt.fun, *unpack(opt.x)


def test_fit_is_the_map_and_recovers_the_classes(simulated):
    x, _, _, res = simulated
    assert res.converged
    history = np.asarray(res.history, np.float64)
    assert np.all(np.diff(history) >= -2e-6 * np.abs(history[1:]))  # EM never goes down
    assert res.params.components.probs.shape == (2, 4, C)
    w, probs = as_numpy(res.params)
    ours = ref_log_posterior(x, w, probs)
    np.testing.assert_allclose(res.objective, ours, rtol=1e-6)
    assert ours >= ref_log_posterior(x, TRUE_W, TRUE_PROBS)
    best, w_s, probs_s = scipy_polish(x, w, probs)
    assert best - ours < 1e-4 * abs(ours)
    assert best - ours < 2e-3
    np.testing.assert_allclose(probs, probs_s, atol=2e-3)
    np.testing.assert_allclose(w, w_s, atol=2e-3)
    order = np.argsort(-probs[:, 0, 0])  # class 0 answers 0 to the first item
    np.testing.assert_allclose(probs[order], TRUE_PROBS, atol=0.08)
    np.testing.assert_allclose(w[order], TRUE_W, atol=0.06)


@pytest.mark.slow
def test_gradient_path_reaches_the_same_map(simulated):
    """The Dirichlet prior as a plain function forces the gradient M-step: same MAP."""
    x, _, _, cf = simulated
    dirichlet = priors.Dirichlet(ALPHA_P)
    model = em.Mixture(
        Categorical(C, probs_prior=lambda p: dirichlet.log_prob(p)),
        2,
        weights_prior=priors.Dirichlet(ALPHA_W),
    )
    assert closed_form_for(model.family) is None
    w, probs = as_numpy(cf.params)
    nudged = probs * np.exp(0.1 * np.random.default_rng(0).normal(size=probs.shape))
    start = em.MixtureParams(w, CategoricalParams(nudged / nudged.sum(-1, keepdims=True)))
    res = em.fit(model, x, init=start)
    assert res.converged
    # float32: the objectives agree to 1e-6 (the sharp check); along the flat direction
    # of the posterior the probabilities agree to ~5e-3 (seen once rows are padded).
    np.testing.assert_allclose(res.objective, cf.objective, rtol=1e-6)
    np.testing.assert_allclose(res.params.components.probs, probs, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(res.params.weights, w, rtol=1e-2)


# -- sampling -------------------------------------------------------------------------
def test_sample_frequencies(simulated):
    """Many draws through the mixture's sampler: per-label, per-item answer frequencies."""
    _, _, model, _ = simulated
    truth = em.MixtureParams(jnp.asarray(TRUE_W), CategoricalParams(jnp.asarray(TRUE_PROBS)))
    # Same shapes as the fixture's draw: reuses its compiled sampler.
    draws = [model.sample(jax.random.key(100 + i), truth, 800) for i in range(20)]
    x = np.concatenate([np.asarray(d[0]) for d in draws])
    labels = np.concatenate([np.asarray(d[1]) for d in draws])
    assert x.shape == (16_000, 4)
    assert set(np.unique(x)) <= {0.0, 1.0, 2.0}
    for k in range(2):
        xs = x[labels == k].astype(int)
        for d in range(4):
            freq = np.bincount(xs[:, d], minlength=C)
            p = TRUE_PROBS[k, d]
            assert stats.chisquare(freq, len(xs) * p).pvalue > 1e-4
            assert np.all(np.abs(freq / len(xs) - p) < 4 * np.sqrt(p * (1 - p) / len(xs)))


@pytest.mark.slow
def test_sample_one_component():
    probs = TRUE_PROBS[0]  # (D, C)
    n = 20_000
    draws = np.asarray(
        Categorical(C).sample(jax.random.key(0), CategoricalParams(jnp.asarray(probs)), n)
    )
    assert draws.shape == (n, 4)
    for d in range(4):
        freq = np.bincount(draws[:, d].astype(int), minlength=C)
        assert stats.chisquare(freq, n * probs[d]).pvalue > 1e-3


# -- bad input --------------------------------------------------------------------------
def test_bad_input_is_rejected():
    model = em.Mixture(Categorical(3), 2)
    for bad in ([0.0, 3.0, 1.0], [0.0, 1.5, 1.0], [[0.0, -1.0], [1.0, 2.0]]):
        with pytest.raises(ValueError, match=r"Categorical: x must hold integer category codes"):
            em.fit(model, np.array(bad), key=0)
    for n_cat in (1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="n_categories must be an integer >= 2"):
            Categorical(n_cat)
    with pytest.raises(ValueError, match="has 2 concentrations but n_categories=3"):
        Categorical(3, probs_prior=priors.Dirichlet([2.0, 2.0]))
    with pytest.raises(ValueError, match="concentration >= 1"):
        Categorical(3, probs_prior=priors.Dirichlet(0.5))
    wrong = em.MixtureParams(np.array([0.5, 0.5]), CategoricalParams(np.full((2, 2, 4), 0.25)))
    with pytest.raises(
        ValueError, match=r"components\.probs has shape \(2, 2, 4\).* uses \(2, 2, 3\)"
    ):
        em.fit(model, np.array([[0.0, 1.0], [2.0, 1.0], [1.0, 1.0]]), init=wrong)
