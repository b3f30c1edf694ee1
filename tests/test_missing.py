"""Missing values (NaN) integrated out by ``missing="marginalize"``.

References: the observed-data log-likelihood computed row by row with scipy's
marginal densities (a normal's marginal is the sub-vector / sub-matrix of its
parameters; independent features drop the missing factors), scipy.optimize
started from the fit, and the complete-data clustering of Old Faithful.
"""

import jax
import numpy as np
import pytest
from scipy import optimize, stats

import jaxem as em
from jaxem import priors

COV_TYPES = ["full", "diag", "spherical", "tied"]


def _two_clusters(seed=0, n=(120, 80)):
    r = np.random.default_rng(seed)
    a = r.multivariate_normal([0.0, 0.0, 0.0], [[1, 0.6, 0.2], [0.6, 1, 0.3], [0.2, 0.3, 1]], n[0])
    b = r.multivariate_normal([3.0, 2.5, -2.0], 0.5 * np.eye(3), n[1])
    return np.concatenate([a, b])


def _mcar(x, fraction, seed):
    r = np.random.default_rng(seed)
    out = np.array(x, dtype=float)
    out[r.random(out.shape) < fraction] = np.nan
    return out


def _full_cov(cov, kind, k, d):
    cov = np.asarray(cov, np.float64)
    if kind == "full":
        return cov[k]
    if kind == "tied":
        return cov
    if kind == "diag":
        return np.diag(cov[k])
    return cov[k] * np.eye(d)


def scipy_mvn_observed_ll(x, weights, means, covs):
    """Σ_i log Σ_k w_k N(x_i,o | μ_k,o, Σ_k,oo), rows with nothing observed add 0."""
    total = 0.0
    for row in x:
        o = ~np.isnan(row)
        if not o.any():
            continue
        dens = [
            w * stats.multivariate_normal(m[o], c[np.ix_(o, o)]).pdf(row[o])
            for w, m, c in zip(weights, means, covs, strict=True)
        ]
        total += np.log(np.sum(dens))
    return total


@pytest.mark.parametrize("kind", COV_TYPES)
def test_mvn_observed_loglik_matches_scipy_marginals(kind):
    x = _mcar(_two_clusters(), 0.2, seed=1)
    x[3] = np.nan  # a row with nothing observed
    with jax.enable_x64(True):
        model = em.Mixture(em.MultivariateNormal(kind, reg_covar=0.0), 2)
        res = em.fit(model, x, key=jax.random.key(0), restarts=3, missing="marginalize")
    p = res.params
    covs = [_full_cov(p.components.cov, kind, k, 3) for k in range(2)]
    want = scipy_mvn_observed_ll(x, np.asarray(p.weights), np.asarray(p.components.mean), covs)
    assert res.log_likelihood == pytest.approx(want, rel=1e-10)
    assert res.converged
    h = res.history
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    # The row with nothing observed gets the weights as responsibilities.
    with jax.enable_x64(True):
        r = em.responsibilities(model, p, x, missing="marginalize")
    np.testing.assert_allclose(np.asarray(r[3]), np.asarray(p.weights), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(r).sum(1), 1.0, rtol=1e-12)


def test_mvn_fit_is_a_maximum_of_the_observed_likelihood():
    """scipy's optimiser, started at the fit, cannot raise the observed log-likelihood."""
    x = _mcar(_two_clusters(seed=2, n=(60, 40))[:, :2], 0.25, seed=3)
    with jax.enable_x64(True):
        model = em.Mixture(em.MultivariateNormal("full", reg_covar=0.0), 2)
        res = em.fit(model, x, key=jax.random.key(1), restarts=3, tol=1e-12, missing="marginalize")
    p = res.params

    def unpack(theta):
        w = np.exp(np.append(theta[0], 0.0))
        w /= w.sum()
        means = theta[1:5].reshape(2, 2)
        covs = []
        for k in range(2):
            a, b, c = theta[5 + 3 * k : 8 + 3 * k]
            chol = np.array([[np.exp(a), 0.0], [b, np.exp(c)]])
            covs.append(chol @ chol.T)
        return w, means, covs

    w0 = np.asarray(p.weights)
    theta0 = [np.log(w0[0] / w0[1])] + list(np.asarray(p.components.mean).ravel())
    for cov in np.asarray(p.components.cov):
        chol = np.linalg.cholesky(cov)
        theta0 += [np.log(chol[0, 0]), chol[1, 0], np.log(chol[1, 1])]
    theta0 = np.array(theta0)

    def neg(theta):
        return -scipy_mvn_observed_ll(x, *unpack(theta))

    best = optimize.minimize(neg, theta0, method="Nelder-Mead", options={"maxiter": 3000})
    assert -neg(theta0) == pytest.approx(res.log_likelihood, rel=1e-10)
    assert -best.fun <= res.log_likelihood + 1e-6 * abs(res.log_likelihood)


def test_independent_features_drop_missing_terms():
    """Poisson counts: each observed count's pmf, nothing for the missing ones (scipy)."""
    r = np.random.default_rng(4)
    y = np.concatenate([r.poisson([2.0, 6.0], (150, 2)), r.poisson([9.0, 1.0], (100, 2))])
    x = _mcar(y, 0.2, seed=5)
    with jax.enable_x64(True):
        res = em.fit(
            em.Mixture(em.Poisson(), 2), x, key=jax.random.key(0), restarts=3, missing="marginalize"
        )
    w, rate = np.asarray(res.params.weights), np.asarray(res.params.components.rate)
    want = 0.0
    for row in x:
        o = ~np.isnan(row)
        want += np.log(sum(w[k] * np.prod(stats.poisson(rate[k][o]).pmf(row[o])) for k in range(2)))
    assert res.log_likelihood == pytest.approx(want, rel=1e-10)
    assert np.all(np.diff(res.history) >= -1e-9 * np.abs(res.history[1:]))


def test_gradient_path_with_missing_matches_the_closed_form():
    """Normal features with a mean prior given as a function (gradient M-step) and as
    priors.Normal (closed form, per feature): the same MAP with missing entries."""
    x = _mcar(_two_clusters(seed=6)[:, :2], 0.2, seed=7)
    prior = priors.Normal(0.0, 3.0)
    closed = em.Mixture(em.Normal(mean_prior=prior), 2)
    grad = em.Mixture(em.Normal(mean_prior=prior.log_prob), 2)
    with jax.enable_x64(True):
        a = em.fit(closed, x, key=jax.random.key(2), restarts=2, tol=1e-12, missing="marginalize")
        b = em.fit(grad, x, init=a.params, tol=1e-12, missing="marginalize")
    assert b.objective == pytest.approx(a.objective, rel=1e-9)
    np.testing.assert_allclose(
        np.asarray(b.params.components.mean), np.asarray(a.params.components.mean), atol=1e-5
    )
    # The objective includes the prior: check it against scipy at the fit.
    p = a.params
    w, mean, var = (np.asarray(a) for a in (p.weights, p.components.mean, p.components.var))
    ll = 0.0
    for row in x:
        o = ~np.isnan(row)
        ll += np.log(
            sum(
                w[k] * np.prod(stats.norm(mean[k][o], np.sqrt(var[k][o])).pdf(row[o]))
                for k in range(2)
            )
        )
    assert a.objective == pytest.approx(ll + stats.norm(0, 3).logpdf(mean).sum(), rel=1e-10)


def test_mcar_on_old_faithful_recovers_the_complete_data_clustering():
    x = em.datasets.load_faithful()
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    full = em.fit(model, x, key=jax.random.key(0), restarts=4)
    holes = _mcar(x, 0.15, seed=8)
    part = em.fit(model, holes, key=jax.random.key(0), restarts=4, missing="marginalize")
    a = np.asarray(em.predict(model, full.params, x))
    b = np.asarray(em.predict(model, part.params, x))
    agree = max(np.mean(a == b), np.mean(a != b))  # up to label switching
    assert agree >= 0.97
    np.testing.assert_allclose(
        np.sort(np.asarray(part.params.components.mean), axis=0),
        np.sort(np.asarray(full.params.components.mean), axis=0),
        rtol=0.05,
    )


def test_nan_without_opt_in_raises_and_says_what_to_do():
    x = _mcar(_two_clusters(), 0.1, seed=9)
    n_nan = int(np.isnan(x).sum())
    with pytest.raises(ValueError, match=rf"{n_nan} NaN entries.*missing='marginalize'"):
        em.fit(em.Mixture(em.MultivariateNormal(), 2), x, key=0)


def test_missing_bad_inputs():
    x = _mcar(_two_clusters(), 0.1, seed=10)
    model = em.Mixture(em.MultivariateNormal(), 2)
    with pytest.raises(ValueError, match="missing must be None, 'raise' or 'marginalize'"):
        em.fit(model, x, key=0, missing="drop")
    x_col = x.copy()
    x_col[:, 1] = np.nan
    with pytest.raises(ValueError, match="column 1 has no observed value"):
        em.fit(model, x_col, key=0, missing="marginalize")
    x_inf = x.copy()
    x_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="1 infinite entries"):
        em.fit(model, x_inf, key=0, missing="marginalize")
    custom = em.Model(lambda p, x: x[:, :1] * p["a"], init=lambda k, x: {"a": 1.0})
    with pytest.raises(ValueError, match="an em.Mixture of built-in families"):
        em.fit(custom, x, key=0, missing="marginalize")
    # Support checks still apply to the observed entries.
    counts = np.array([[1.0, np.nan], [-2.0, 3.0], [4.0, 5.0]])
    with pytest.raises(ValueError, match="non-negative integer counts"):
        em.fit(em.Mixture(em.Poisson(), 2), counts, key=0, missing="marginalize")
