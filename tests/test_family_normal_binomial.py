"""Normal, Binomial and Bernoulli families: densities vs scipy, sampling, and the update checker."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem as em
from jaxem import priors
from jaxem.families.base import register_m_step

rng = np.random.default_rng(11)


def test_normal_log_prob_matches_scipy():
    with jax.enable_x64(True):
        fam = em.Normal()
        x = rng.normal(size=50) * 3
        for mean, var in [(0.0, 1.0), (-2.5, 0.01), (40.0, 9.0)]:
            got = fam.log_prob(em.NormalParams(jnp.asarray(mean), jnp.asarray(var)), jnp.asarray(x))
            np.testing.assert_allclose(got, stats.norm.logpdf(x, mean, np.sqrt(var)), rtol=1e-12)
        xd = rng.normal(size=(40, 3))
        mean, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
        got = fam.log_prob(em.NormalParams(jnp.asarray(mean), jnp.asarray(var)), jnp.asarray(xd))
        ref = stats.norm.logpdf(xd, mean, np.sqrt(var)).sum(1)
        np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("n_trials", [1, 7])
def test_binomial_log_prob_matches_scipy(n_trials):
    with jax.enable_x64(True):
        fam = em.Binomial(n_trials)
        x = rng.integers(0, n_trials + 1, size=(60, 2)).astype(float)
        p = np.array([0.2, 0.93])
        got = fam.log_prob(em.BinomialParams(jnp.asarray(p)), jnp.asarray(x))
        np.testing.assert_allclose(got, stats.binom.logpmf(x, n_trials, p).sum(1), rtol=1e-12)
        # The boundary: p = 0 gives log 1 for x = 0 and -inf otherwise, as scipy.
        edge = fam.log_prob(em.BinomialParams(jnp.asarray(0.0)), jnp.asarray([0.0, 1.0]))
        np.testing.assert_array_equal(edge, stats.binom.logpmf([0, 1], n_trials, 0.0))


def test_mixture_sample_moments():
    model = em.Mixture(em.Normal(), 2)
    params = em.MixtureParams(
        jnp.array([0.3, 0.7]), em.NormalParams(jnp.array([0.0, 5.0]), jnp.array([1.0, 4.0]))
    )
    x, z = model.sample(jax.random.key(0), params, 20_000)
    x, z = np.asarray(x), np.asarray(z)
    assert abs(z.mean() - 0.7) < 4 * np.sqrt(0.21 / 20_000)
    for k, (m, v) in enumerate([(0.0, 1.0), (5.0, 4.0)]):
        assert stats.kstest(x[z == k], stats.norm(m, np.sqrt(v)).cdf).pvalue > 1e-3
    counts_model = em.Mixture(em.Binomial(10), 2)
    cp = em.MixtureParams(jnp.array([0.5, 0.5]), em.BinomialParams(jnp.array([0.2, 0.7])))
    xc, zc = counts_model.sample(jax.random.key(1), cp, 20_000)
    for k, p in enumerate([0.2, 0.7]):
        draws = np.asarray(xc)[np.asarray(zc) == k]
        assert abs(draws.mean() - 10 * p) < 5 * np.sqrt(10 * p * (1 - p) / len(draws))


CHECKED = {
    "normal-ml": (lambda: em.Mixture(em.Normal(), 3), "normal"),
    "normal-mean-prior": (
        lambda: em.Mixture(em.Normal(mean_prior=priors.Normal(0.0, 2.0)), 3),
        "normal",
    ),
    "normal-var-prior": (
        lambda: em.Mixture(
            em.Normal(var_prior=priors.InverseGamma(3.0, 2.0)),
            3,
            weights_prior=priors.Dirichlet(2.0),
        ),
        "normal",
    ),
    "normal-both-priors-2d": (
        lambda: em.Mixture(
            em.Normal(mean_prior=priors.Normal(1.0, 0.5), var_prior=priors.InverseGamma(2.0, 1.0)),
            2,
        ),
        "normal2d",
    ),
    "binomial-ml": (lambda: em.Mixture(em.Binomial(9), 2), "counts"),
    "binomial-beta": (
        lambda: em.Mixture(em.Binomial(9, p_prior=priors.Beta(2.0, 5.0)), 2),
        "counts",
    ),
    "bernoulli-beta": (lambda: em.Mixture(em.Bernoulli(p_prior=priors.Beta(1.0, 3.0)), 3), "bin"),
    "heterogeneous": (
        lambda: em.Mixture([em.Normal(), em.Normal(var_prior=priors.InverseGamma(2.0, 1.0))]),
        "normal",
    ),
}
DATA = {
    "normal": np.concatenate([rng.normal(-2, 1, 100), rng.normal(3, 0.5, 80)]),
    "normal2d": rng.normal(size=(120, 2)) + np.repeat([[0, 0], [3, 1]], 60, axis=0),
    "counts": rng.binomial(9, np.repeat([0.2, 0.7], 50)).astype(float),
    "bin": (rng.uniform(size=(90, 4)) < 0.4).astype(float),
}


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_closed_forms_pass_the_autodiff_checker(name):
    make, data = CHECKED[name]
    model = make()
    with jax.enable_x64(True):
        for seed in range(3):
            report = em.check_m_step(model, DATA[data], key=seed)
            assert report.ok, report
            for piece in report.pieces:
                assert piece.objective_after >= piece.objective_before
                if piece.exact:
                    assert piece.grad_after < 1e-7 * max(piece.grad_before, 1.0), piece


class _WrongNormal(em.Normal):
    """A Normal whose registered 'closed form' uses the biased n+1 divisor: not the maximiser."""


def _wrong_update(family, params, stats):
    n = stats.n
    mean = params.mean + stats.s1 / n
    ss = stats.s2 - stats.s1**2 / n
    return em.NormalParams(mean, ss / (n + 1))


register_m_step(
    _WrongNormal,
    _wrong_update,
    sufficient_stats=em.families.base._REGISTRY[em.Normal].sufficient_stats,
)


def test_checker_catches_a_wrong_update():
    with jax.enable_x64(True):
        report = em.check_m_step(em.Mixture(_WrongNormal(), 2), DATA["normal"], key=0)
    assert not report.ok
    with pytest.raises(AssertionError, match="FAILED"):
        report.raise_if_failed()


def test_checker_on_a_user_m_step():
    from jaxem import demos

    def m_step(params, x, resp, w):
        wr = resp * w[:, None]
        return {"p": (wr * x[:, None]).sum(0) / (10 * wr.sum(0))}

    model = em.Model(
        demos.coin_log_joint, constraints={"p": em.constraints.unit_interval}, m_step=m_step
    )
    with jax.enable_x64(True):
        report = em.check_m_step(model, demos.COIN_HEADS, params={"p": np.array([0.6, 0.5])})
    assert report.ok, report
    with pytest.raises(ValueError, match="no m_step"):
        em.check_m_step(demos.coin_model(), demos.COIN_HEADS, params={"p": np.array([0.6, 0.5])})


@pytest.mark.slow
def test_heterogeneous_mixture_fits_like_the_homogeneous_one():
    """[Normal(), Normal()] is the same model as Normal() with K=2: the same optimum."""
    x = DATA["normal"]
    homo = em.fit(em.Mixture(em.Normal(), 2), x, key=jax.random.key(0), restarts=4)
    order = np.argsort(np.asarray(homo.params.components.mean))
    comps = tuple(
        em.NormalParams(homo.params.components.mean[i] + 0.3, homo.params.components.var[i])
        for i in order
    )
    init = em.MixtureParams(np.asarray(homo.params.weights)[order], comps)
    hetero = em.fit(em.Mixture([em.Normal(), em.Normal()]), x, init=init)
    assert isinstance(hetero.params.components, tuple) and len(hetero.params.components) == 2
    assert hetero.params.components[0].mean.shape == ()
    np.testing.assert_allclose(hetero.objective, homo.objective, rtol=1e-6)
    got = [float(c.mean) for c in hetero.params.components]
    np.testing.assert_allclose(got, np.sort(np.asarray(homo.params.components.mean)), atol=1e-3)
