"""Standard errors from the observed information, against central finite differences.

The reference Hessians are finite differences of the observed log-likelihood
(plus the log prior) written with ``scipy.stats`` in the natural coordinates
(the last weight is one minus the others): no jaxem code. At a maximum the
inverse Hessian there equals jaxem's unconstrained inverse carried over by the
delta method, so the two must agree.
"""

import functools
import importlib
import warnings

import jax
import numpy as np
import pytest
from conftest import gaussian_hmm_sequences
from scipy import stats
from scipy.special import logsumexp, softmax

import jaxem as em
from jaxem import priors

N = 2000


def two_normals(seed=0, n=N):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.35
    return np.where(z, rng.normal(-1, 0.8, n), rng.normal(2, 1.3, n))


X = two_normals()
TRUTH = (0.35, -1.0, 2.0, 0.64, 1.69)  # w1, m1, m2, v1, v2
PRIORS = dict(dirichlet=2.0, mean=(0.0, 3.0), var=(2.0, 1.0))


def log_posterior(t, x, map_priors=False):
    """Observed log-likelihood (+ log prior) at t = (w1, m1, m2, v1, v2), float64 SciPy."""
    w1, m1, m2, v1, v2 = t
    lj = np.stack(
        [
            np.log(w1) + stats.norm.logpdf(x, m1, np.sqrt(v1)),
            np.log(1 - w1) + stats.norm.logpdf(x, m2, np.sqrt(v2)),
        ],
        axis=1,
    )
    value = logsumexp(lj, axis=1).sum()
    if map_priors:
        value += stats.dirichlet.logpdf([w1, 1 - w1], [PRIORS["dirichlet"]] * 2)
        value += stats.norm.logpdf([m1, m2], *PRIORS["mean"]).sum()
        value += stats.invgamma.logpdf([v1, v2], PRIORS["var"][0], scale=PRIORS["var"][1]).sum()
    return value


def fd_hessian(f, t0, rel=1e-4, floor=1e-2):
    """Central differences, steps ``rel·max(|t|, floor)``."""
    t0 = np.asarray(t0, np.float64)
    h = rel * np.maximum(np.abs(t0), floor)
    p = len(t0)
    hess = np.zeros((p, p))
    for i in range(p):
        for j in range(i, p):  # symmetric

            def at(a, b, i=i, j=j):
                t = t0.copy()
                t[i] += a * h[i]
                t[j] += b * h[j]
                return f(t)

            value = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / (4 * h[i] * h[j])
            hess[i, j] = hess[j, i] = value
    return hess


def as_vector(params):
    w, c = params.weights, params.components
    return np.array([w[0], c.mean[0], c.mean[1], c.var[0], c.var[1]], np.float64)


@functools.lru_cache(maxsize=2)
def fitted(map_priors):
    """The fit (compiled once per setting), its parameters as float64 NumPy arrays."""
    with jax.enable_x64(True):
        return _fitted(map_priors)


def _fitted(map_priors):
    fam = em.Normal(
        mean_prior=priors.Normal(*PRIORS["mean"]) if map_priors else None,
        var_prior=priors.InverseGamma(*PRIORS["var"]) if map_priors else None,
    )
    wp = priors.Dirichlet(PRIORS["dirichlet"]) if map_priors else None
    model = em.Mixture(fam, 2, weights_prior=wp)
    start = em.MixtureParams(
        np.array([0.35, 0.65]), em.NormalParams(np.array([-1.0, 2.0]), np.array([0.64, 1.69]))
    )
    res = em.fit(model, X, init=start, tol=1e-15, max_iter=5000)
    return model, jax.tree.map(np.asarray, res.params)


@pytest.mark.parametrize("map_priors", [False, True])
def test_standard_errors_equal_finite_differences(map_priors):
    with jax.enable_x64(True):
        model, params = fitted(map_priors)
        se = em.standard_errors(model, params, X)
        cov = em.covariance(model, params, X)
    t0 = as_vector(params)
    hess = fd_hessian(lambda t: log_posterior(t, X, map_priors), t0)
    expected = np.sqrt(np.diag(np.linalg.inv(-hess)))
    got = np.array([se.weights[0], *se.components.mean, *se.components.var])
    np.testing.assert_allclose(got, expected, rtol=1e-3)
    assert se.weights[1] == pytest.approx(se.weights[0], rel=1e-9)  # w2 = 1 - w1
    # The covariance's natural coordinates are every entry, in the params' order.
    assert cov.names[:2] == (".weights[0]", ".weights[1]")
    assert cov.matrix[0, 1] == pytest.approx(-cov.matrix[0, 0], rel=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(cov.matrix))[2:], got[1:], rtol=1e-12)


def test_fixed_parameters_get_no_standard_error_and_the_rest_are_conditional():
    with jax.enable_x64(True):
        model, params = fitted(False)
        se = em.standard_errors(model, params, X, fixed={"var"})
    assert np.all(np.isnan(se.components.var))
    t0 = as_vector(params)
    hess = fd_hessian(lambda t: log_posterior(t, X), t0)[:3, :3]  # the variances held
    expected = np.sqrt(np.diag(np.linalg.inv(-hess)))
    np.testing.assert_allclose([se.weights[0], *se.components.mean], expected, rtol=1e-3)


def test_unidentified_components_warn_and_give_nan():
    model = em.Mixture(em.Normal(), 2)
    same = em.MixtureParams(
        np.array([0.5, 0.5]), em.NormalParams(np.array([0.9, 0.9]), np.array([3.0, 3.0]))
    )
    with jax.enable_x64(True), pytest.warns(RuntimeWarning, match="not identified"):
        se = em.standard_errors(model, same, X)
    assert np.isnan(se.components.mean).all()


def test_wald_intervals_natural_and_unconstrained():
    x = two_normals(seed=3, n=60)  # few rows: wide intervals
    with jax.enable_x64(True):
        model = em.Mixture(em.Normal(), 2)
        params = em.fit(model, x, key=0, restarts=8, tol=1e-14).params
        params = jax.tree.map(np.asarray, params)  # float64 on the host
        se = em.standard_errors(model, params, x)
        nat = em.wald_intervals(model, params, x, 0.9, scale="natural")
        unc = em.wald_intervals(model, params, x, 0.9)
    z = stats.norm.ppf(0.95)
    var = np.asarray(params.components.var)
    np.testing.assert_allclose(nat[0].components.var, var - z * se.components.var, rtol=1e-12)
    np.testing.assert_allclose(
        nat[1].components.mean, params.components.mean + z * se.components.mean
    )
    # On the log scale (delta method: se(log v) = se(v) / v), mapped back: positive.
    np.testing.assert_allclose(
        unc[0].components.var, var * np.exp(-z * se.components.var / var), rtol=1e-9
    )
    assert np.all(unc[0].components.var > 0)
    # The weights (a simplex) get the natural interval.
    np.testing.assert_allclose(unc[0].weights, nat[0].weights)


@pytest.mark.slow
def test_regression_mixture_and_gating_reference_row():
    """A mixture of experts: the gating's reference row is not a parameter (NaN), and the
    number of finite standard errors is the number of free parameters."""
    rng = np.random.default_rng(2)
    n = 400
    x = rng.uniform(0, 10, n)
    w = rng.normal(size=n)
    z = rng.random(n) < 1 / (1 + np.exp(-2 * w))
    y = np.where(z, 1 + 2 * x, 12 - x) + rng.normal(0, 1, n)
    data = {"x": x, "y": y, "w": w}
    model = em.Mixture(em.LinearRegression(), 2, gating=em.SoftmaxGating("w"))
    with jax.enable_x64(True):
        res = em.fit(model, data, key=0, restarts=8, tol=1e-14)
        se = em.standard_errors(model, res.params, data)
    assert np.isnan(se.weights.gate_coef[0]).all() and np.isnan(se.weights.gate_intercept[0])
    finite = sum(int(np.isfinite(a).sum()) for a in jax.tree.leaves(se))
    assert finite == em.n_parameters(model, res.params)

    # The component coefficients against finite differences of the SciPy likelihood.
    p = res.params

    def loglik(t):
        b1, b2, a1, a2, v1, v2, g1, h1 = t
        eta1, eta2 = a1 + b1 * x, a2 + b2 * x
        logit = g1 * w + h1
        lw = np.stack([-np.logaddexp(0, logit), logit - np.logaddexp(0, logit)], axis=1)
        comp = np.stack(
            [stats.norm.logpdf(y, eta1, np.sqrt(v1)), stats.norm.logpdf(y, eta2, np.sqrt(v2))],
            axis=1,
        )
        return logsumexp(lw + comp, axis=1).sum()

    c = p.components
    t0 = [
        c.coef[0, 0],
        c.coef[1, 0],
        c.intercept[0],
        c.intercept[1],
        c.var[0],
        c.var[1],
        p.weights.gate_coef[1, 0],
        p.weights.gate_intercept[1],
    ]
    expected = np.sqrt(np.diag(np.linalg.inv(-fd_hessian(loglik, t0))))
    got = [
        se.components.coef[0, 0],
        se.components.coef[1, 0],
        se.components.intercept[0],
        se.components.intercept[1],
        se.components.var[0],
        se.components.var[1],
        se.weights.gate_coef[1, 0],
        se.weights.gate_intercept[1],
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_bad_arguments():
    model = em.Mixture(em.Normal(), 2)
    params = em.MixtureParams(
        np.array([0.35, 0.65]), em.NormalParams(np.array([-1.0, 2.0]), np.array([0.64, 1.69]))
    )
    with pytest.raises(ValueError, match="coordinates"):
        em.covariance(model, params, X, coordinates="polar")
    with pytest.raises(ValueError, match="level"):
        em.wald_intervals(model, params, X, 1.5)
    with pytest.raises(ValueError, match="single entries"):
        em.standard_errors(model, params, X, fixed=em.MixtureParams(np.array([True, False]), False))


@pytest.mark.slow
def test_wald_intervals_cover_the_truth_95_percent_of_the_time():
    """100 simulated data sets of N = 2000: each 95% interval covers its parameter in
    92–98% of them (a binomial(100, 0.95) lies there with probability ~0.93 per
    parameter; the mean over the five parameters is tighter)."""
    model = em.Mixture(em.Normal(), 2)
    covered = []
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for seed in range(100):
            x = two_normals(seed=1000 + seed)
            start = em.MixtureParams(
                np.array([0.35, 0.65]),
                em.NormalParams(np.array([-1.0, 2.0]), np.array([0.64, 1.69])),
            )
            params = em.fit(model, x, init=start, tol=1e-12).params
            lower, upper = em.wald_intervals(model, params, x, 0.95, scale="natural")
            lo, hi = as_vector(lower), as_vector(upper)
            covered.append((lo <= TRUTH) & (np.asarray(TRUTH) <= hi))
    rate = np.mean(covered, axis=0)
    print("coverage per parameter (w1, m1, m2, v1, v2):", rate)
    assert 0.92 <= rate.mean() <= 0.98
    assert np.all(rate >= 0.88)


# -- HMMs and missing data: the unconstrained coordinates, at any point --------------------------
# The references below are written in jaxem's unconstrained coordinates (constraints.py: a
# simplex is softmax([u, 0]), the last entry the reference; positive is exp; a covariance is
# L L' with L's diagonal exp(u)), so they are comparable at any point, not only at a maximum:
# the information matrix against central differences of a SciPy log-likelihood, and the
# natural standard errors against the delta method with a finite-difference Jacobian.


def fd_jacobian(f, u0, h=1e-6):
    u0 = np.asarray(u0, np.float64)
    cols = []
    for i in range(len(u0)):
        e = np.zeros_like(u0)
        e[i] = h
        cols.append((f(u0 + e) - f(u0 - e)) / (2 * h))
    return np.stack(cols, axis=1)


def simplex(u):
    return softmax(np.append(u, 0.0))


def check_against_reference(cov, se, loglik, natural, u0, names):
    """jaxem's unconstrained covariance and natural standard errors against the reference."""
    assert cov.names == names
    expected = np.linalg.inv(-fd_hessian(loglik, u0, floor=1.0))
    scale = np.sqrt(np.outer(np.diag(expected), np.diag(expected)))
    np.testing.assert_allclose(cov.matrix / scale, expected / scale, atol=1e-4)
    jac = fd_jacobian(lambda u: np.concatenate([np.ravel(a) for a in natural(u)]), u0)
    want = np.sqrt(np.diag(jac @ expected @ jac.T))
    got = np.concatenate([np.ravel(a) for a in jax.tree.leaves(se)])
    np.testing.assert_allclose(got, want, rtol=1e-4)


def hmm_sequences(seed=0):
    """Twelve sequences (40–90 steps) of a 2-state Gaussian HMM, each starting at random."""
    rng = np.random.default_rng(seed)
    trans, mu, sd = np.array([[0.85, 0.15], [0.25, 0.75]]), np.array([-1.0, 1.5]), [1.0, 0.8]
    lengths = rng.integers(40, 90, 12)
    return gaussian_hmm_sequences(rng, trans, mu, sd, lengths), lengths


def hmm_natural(u):
    """u = (initial (1,), transition rows (2 × 1), means (2,), log variances (2,))."""
    return simplex(u[0:1]), np.stack([simplex(u[1:2]), simplex(u[2:3])]), u[3:5], np.exp(u[5:7])


def hmm_log_likelihood(u, x, lengths):
    """The scaled forward recursion, sequence by sequence, float64 NumPy."""
    initial, trans, mean, var = hmm_natural(u)
    dens = stats.norm.pdf(x[:, None], mean, np.sqrt(var))  # (ΣT, 2)
    total = 0.0
    for d in np.split(dens, np.cumsum(lengths)[:-1]):
        alpha = initial * d[0]
        for t in range(1, len(d) + 1):
            c = alpha.sum()
            total += np.log(c)
            if t < len(d):
                alpha = (alpha / c) @ trans * d[t]
    return total


def test_hmm_standard_errors_equal_finite_differences_of_the_forward_algorithm():
    x, lengths = hmm_sequences()
    hmm = em.HMM(em.Normal(), 2)
    params = em.HMMParams(  # near the maximum (negative definite there), not at it
        np.array([0.45, 0.55]),
        np.array([[0.85, 0.15], [0.25, 0.75]]),
        em.NormalParams(np.array([-1.0, 1.5]), np.array([1.0, 0.64])),
    )
    with jax.enable_x64(True):
        cov = em.covariance(hmm, params, x, lengths=lengths, coordinates="unconstrained")
        se = em.standard_errors(hmm, params, x, lengths=lengths)
    a = params.transition
    u0 = np.array(
        [
            np.log(params.initial[0] / params.initial[1]),
            np.log(a[0, 0] / a[0, 1]),
            np.log(a[1, 0] / a[1, 1]),
            *params.emissions.mean,
            *np.log(params.emissions.var),
        ]
    )
    names = (
        ".initial[0]",
        ".transition[0, 0]",
        ".transition[1, 0]",
        ".emissions.mean[0]",
        ".emissions.mean[1]",
        ".emissions.var[0]",
        ".emissions.var[1]",
    )
    loglik = functools.partial(hmm_log_likelihood, x=x, lengths=lengths)
    check_against_reference(cov, se, loglik, hmm_natural, u0, names)


@pytest.mark.parametrize("tail", [1e-50, 0.0])
def test_hmm_initial_probabilities_on_the_boundary_have_no_standard_error(tail):
    """One sequence: the initial probabilities' maximum is a vertex of the simplex (EM
    leaves ~1e-50 there, or 0). Both get NaN with a warning, though the softmax's derivative
    underflows to exactly 0 (1e-50) or its Hessian is 0/0 (0); the rest keep theirs."""
    x, lengths = hmm_sequences()
    hmm = em.HMM(em.Normal(), 2)
    params = em.HMMParams(
        np.array([1.0 - tail, tail]),
        np.array([[0.85, 0.15], [0.25, 0.75]]),
        em.NormalParams(np.array([-1.0, 1.5]), np.array([1.0, 0.64])),
    )
    with jax.enable_x64(True), pytest.warns(RuntimeWarning, match="initial"):
        se = em.standard_errors(hmm, params, x[: lengths[0]])
    assert np.isnan(se.initial).all()
    assert np.isfinite(se.transition).all() and np.isfinite(se.emissions.mean).all()
    assert np.isfinite(se.emissions.var).all()


def mvn_with_missing(seed=1, n=400):
    """Two bivariate normals; 20% of the entries NaN (some rows wholly)."""
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.4
    x = np.where(
        z[:, None],
        rng.multivariate_normal([-1, 0.5], [[1, 0.5], [0.5, 1.5]], n),
        rng.multivariate_normal([2, -1], [[0.8, -0.3], [-0.3, 0.6]], n),
    )
    x[rng.random((n, 2)) < 0.2] = np.nan
    return x


def mvn_natural(u):
    """u = (weights (1,), means (2 × 2), per component (log L00, L10, log L11))."""
    covs = []
    for k in range(2):
        a, b, c = u[5 + 3 * k : 8 + 3 * k]
        chol = np.array([[np.exp(a), 0.0], [b, np.exp(c)]])
        covs.append(chol @ chol.T)
    return simplex(u[0:1]), u[1:5].reshape(2, 2), np.stack(covs)


def mvn_observed_log_likelihood(u, x):
    """Σ_i log Σ_k w_k N(x_i,obs | μ_k,obs, Σ_k,obs,obs), pattern by pattern (SciPy)."""
    w, mean, covs = mvn_natural(u)
    observed = ~np.isnan(x)
    total = 0.0
    for pattern in ([True, True], [True, False], [False, True]):  # all-NaN rows add log 1
        rows = np.all(observed == pattern, axis=1)
        idx = np.flatnonzero(pattern)
        xo = x[np.ix_(rows, idx)]
        lj = [
            np.log(w[k])
            + stats.multivariate_normal.logpdf(xo, mean[k, idx], covs[k][np.ix_(idx, idx)])
            for k in range(2)
        ]
        total += logsumexp(np.stack([np.reshape(v, -1) for v in lj], axis=1), axis=1).sum()
    return total


def test_standard_errors_with_missing_values_marginalized_equal_finite_differences():
    x = mvn_with_missing()
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    covs = np.array([[[1, 0.5], [0.5, 1.5]], [[0.8, -0.3], [-0.3, 0.6]]])
    params = em.MixtureParams(
        np.array([0.4, 0.6]), em.MultivariateNormalParams(np.array([[-1, 0.5], [2, -1.0]]), covs)
    )
    with jax.enable_x64(True):
        cov = em.covariance(model, params, x, coordinates="unconstrained", missing="marginalize")
        se = em.standard_errors(model, params, x, missing="marginalize")
    u0 = [np.log(0.4 / 0.6), *params.components.mean.ravel()]
    for k in range(2):
        chol = np.linalg.cholesky(covs[k])
        u0 += [np.log(chol[0, 0]), chol[1, 0], np.log(chol[1, 1])]
    names = (
        ".weights[0]",
        *(f".components.mean[{k}, {j}]" for k in range(2) for j in range(2)),
        *(f".components.cov[{k}, {i}, {j}]" for k in range(2) for i, j in ((0, 0), (1, 0), (1, 1))),
    )
    loglik = functools.partial(mvn_observed_log_likelihood, x=x)
    check_against_reference(cov, se, loglik, mvn_natural, np.array(u0), names)


# -- the bootstrap -------------------------------------------------------------------------------
@pytest.mark.slow
def test_bootstrap_replicates_are_em_fits_and_agree_with_the_hessian():
    """Started at the fit, each replicate equals em.fit on its multinomial weights from
    the same start (each replicate passes over only its resampled rows, em.fit over all);
    the bootstrap standard errors are within 20% of the observed-information ones."""
    from jaxem.bootstrap import _weights

    with jax.enable_x64(True):
        model, params = fitted(False)
        boot = em.bootstrap(model, X, params, 100, key=7, tol=1e-10, start="fit")
        se = em.standard_errors(model, params, X)
        weights = np.asarray(_weights(jax.random.key(7), np.ones(N), 100))
        for b in (0, 41):
            one = em.fit(model, X, init=params, sample_weight=weights[b], tol=1e-10).params
            np.testing.assert_allclose(boot.samples.components.mean[b], one.components.mean)
            np.testing.assert_allclose(boot.samples.components.var[b], one.components.var)
    assert boot.converged.all() and boot.samples.weights.shape == (100, 2)
    for got, want in zip(jax.tree.leaves(boot.standard_errors), jax.tree.leaves(se), strict=True):
        np.testing.assert_allclose(got, want, rtol=0.2)
    lower, upper = boot.intervals(0.9)
    assert np.all(lower.components.mean < params.components.mean)
    assert np.all(params.components.mean < upper.components.mean)


def test_newton_started_replicates_are_the_em_fits_in_fewer_iterations():
    """start="newton" (the default) changes where EM starts, not where it ends: every
    replicate equals em.fit from the fit on its weights (both to a tight tol), after a
    fraction of the iterations."""
    from jaxem.bootstrap import _weights

    with jax.enable_x64(True):
        model, params = fitted(False)
        newton = em.bootstrap(model, X, params, 12, key=7, tol=1e-13, max_iter=5000)
        plain = em.bootstrap(model, X, params, 12, key=7, tol=1e-13, max_iter=5000, start="fit")
        weights = np.asarray(_weights(jax.random.key(7), np.ones(N), 12))
        for b in (0, 5, 11):
            one = em.fit(model, X, init=params, sample_weight=weights[b], tol=1e-13, max_iter=5000)
            for got, want in zip(
                jax.tree.leaves(jax.tree.map(lambda a, b=b: a[b], newton.samples)),
                jax.tree.leaves(one.params),
                strict=True,
            ):
                np.testing.assert_allclose(got, want, rtol=2e-5)
    assert newton.start == "newton" and plain.start == "fit"
    assert newton.converged.all() and newton.n_iter.sum() < plain.n_iter.sum() / 4
    with pytest.raises(ValueError, match="start"):
        em.bootstrap(model, X, params, 10, key=0, start="random")


@pytest.mark.slow
def test_batched_replicates_equal_the_replicates_in_turn():
    """The accelerators' path (all replicates stepped together under vmap, every unit
    weighted), forced on the CPU, gives the replicates of the CPU's path (one after the
    other, each over its resampled units only), with and without the Newton steps."""
    boot_module = importlib.import_module("jaxem.bootstrap")  # (em.bootstrap is the function)
    with jax.enable_x64(True):
        model, params = fitted(False)
        runs = {}
        for start in ("newton", "fit"):
            runs[start, True] = em.bootstrap(model, X, params, 12, key=7, tol=1e-13, start=start)
            original = boot_module._in_turn
            boot_module._in_turn = lambda *args: False
            try:
                runs[start, False] = em.bootstrap(
                    model, X, params, 12, key=7, tol=1e-13, start=start
                )
            finally:
                boot_module._in_turn = original
    for start in ("newton", "fit"):
        turn, together = runs[start, True], runs[start, False]
        assert turn.start == together.start == start and together.converged.all()
        for got, want in zip(
            jax.tree.leaves(together.samples), jax.tree.leaves(turn.samples), strict=True
        ):
            np.testing.assert_allclose(got, want, rtol=2e-5)


def test_newton_start_holds_fixed_entries_and_falls_back_where_it_cannot_step():
    """fixed= entries stay exactly at the fit through the Newton steps. Every replicate
    starts EM at the fit where the steps cannot be taken: a null direction of the
    information (two identical components), a single weight held fixed, a covariance
    ridge (reg_covar: EM's fixed point is not the objective's maximum). Behind that
    screen, EM itself rejects a Newton point that is not its fixed point (forced here by
    hiding the ridge from the screen): those replicates restart at the fit, and the
    result is start="fit"'s."""
    boot_module = importlib.import_module("jaxem.bootstrap")  # (em.bootstrap is the function)
    with jax.enable_x64(True):
        model, params = fitted(False)
        held = em.bootstrap(model, X, params, 8, key=1, fixed={"weights"})
        same = em.MixtureParams(
            np.array([0.5, 0.5]), em.NormalParams(np.array([0.5, 0.5]), np.array([2.0, 2.0]))
        )
        flat = em.bootstrap(model, X, same, 4, key=1, max_iter=3)
        one_weight = em.MixtureParams(np.array([True, False]), False)
        single = em.bootstrap(model, X, params, 4, key=1, fixed=one_weight, max_iter=3)
        ridge = em.Mixture(em.MultivariateNormal("full", reg_covar=1e-3), 2)
        rows = np.stack([X, np.roll(X, 7)], axis=1)
        fit = em.fit(ridge, rows, key=0, tol=1e-12, max_iter=500).params
        kw = dict(key=1, tol=1e-12, max_iter=5000)
        screened = em.bootstrap(ridge, rows, fit, 6, **kw)
        original = boot_module._uncertainty._families_of
        boot_module._uncertainty._families_of = lambda model: []  # the screen sees no ridge
        try:
            unscreened = em.bootstrap(ridge, rows, fit, 6, **kw)
        finally:
            boot_module._uncertainty._families_of = original
    assert held.start == "newton"
    np.testing.assert_array_equal(held.samples.weights, np.broadcast_to(params.weights, (8, 2)))
    assert np.all(held.standard_errors.components.mean > 0)
    assert flat.start == single.start == screened.start == "fit"
    np.testing.assert_array_equal(single.samples.weights[:, 0], params.weights[0])
    assert unscreened.start == "newton" and unscreened.converged.all()
    for got, want in zip(
        jax.tree.leaves(unscreened.samples), jax.tree.leaves(screened.samples), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-7)


def test_bootstrap_undoes_label_switching():
    """Replicates started from the fit with its components swapped come back matched."""
    with jax.enable_x64(True):
        model, params = fitted(False)
        swapped = em.MixtureParams(
            params.weights[::-1],
            em.NormalParams(params.components.mean[::-1], params.components.var[::-1]),
        )
        boot = em.bootstrap(model, X, swapped, 20, key=3, tol=1e-10)
        direct = em.bootstrap(model, X, params, 20, key=3, tol=1e-10)
    # Matched to the (swapped) reference, every replicate keeps its order.
    assert boot.start == direct.start == "newton"
    assert np.all(boot.samples.components.mean[:, 0] > boot.samples.components.mean[:, 1])
    np.testing.assert_allclose(
        boot.samples.components.mean[:, ::-1], direct.samples.components.mean, rtol=1e-9
    )


@pytest.mark.slow
def test_parametric_bootstrap_and_errors():
    with jax.enable_x64(True):
        model, params = fitted(False)
        boot = em.bootstrap(model, X, params, 100, key=5, kind="parametric", tol=1e-10)
        se = em.standard_errors(model, params, X)
    assert boot.start == "newton" and boot.converged.all()
    np.testing.assert_allclose(boot.standard_errors.components.mean, se.components.mean, rtol=0.25)
    with pytest.raises(ValueError, match="kind"):
        em.bootstrap(model, X, params, 10, key=0, kind="jackknife")
    with pytest.raises(ValueError, match="key"):
        em.bootstrap(model, X, params, 10)
    regression = em.Mixture(em.LinearRegression(), 2)
    data = {"x": X, "y": X}
    start = em.MixtureParams(
        np.array([0.5, 0.5]),
        em.LinearRegressionParams(np.ones((2, 1)), np.zeros(2), np.ones(2)),
    )
    with pytest.raises(TypeError, match="parametric"):
        em.bootstrap(regression, data, start, 10, key=0, kind="parametric")


def test_bootstrap_with_squarem_reaches_the_same_replicates():
    """accelerate="squarem" changes the path, not the fixed points: every replicate
    ends where plain EM's does (both to a tight tol), in fewer iterations."""
    with jax.enable_x64(True):
        model, params = fitted(False)
        plain = em.bootstrap(model, X, params, 20, key=3, tol=1e-12)
        fast = em.bootstrap(model, X, params, 20, key=3, tol=1e-12, accelerate="squarem")
    np.testing.assert_allclose(fast.samples.components.mean, plain.samples.components.mean,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert fast.converged.all() and plain.converged.all()
    assert fast.n_iter.sum() < plain.n_iter.sum()
    with pytest.raises(ValueError, match="accelerate"):
        em.bootstrap(model, X, params, 10, key=0, accelerate="anderson")


def test_fit_result_standard_errors_is_the_function():
    model, params = fitted(False)
    with jax.enable_x64(True):
        res = em.fit(model, X, init=params, tol=1e-15, max_iter=5000)
        a = res.standard_errors(model, X)
        b = em.standard_errors(model, res.params, X)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(u, v)


def test_cli_se_is_the_library_at_the_printed_estimates(tmp_path, capsys):
    """`jaxem fit --se`: the JSON's standard errors are em.standard_errors (float64) at the
    JSON's estimates, and the table prints them."""
    import json

    from jaxem import cli

    path = tmp_path / "x.csv"
    np.savetxt(path, X[:300], header="x", comments="")
    out = tmp_path / "fit.json"
    assert cli.main(["fit", str(path), "-k", "2", "--se", "--out", str(out)]) == 0
    assert "standard errors (observed information, float64)" in capsys.readouterr().out
    record = json.loads(out.read_text())
    p = record["params"]
    params = em.MixtureParams(
        np.asarray(p["weights"]), em.NormalParams(np.asarray(p["mean"]), np.asarray(p["var"]))
    )
    with jax.enable_x64(True):
        se = em.standard_errors(em.Mixture(em.Normal(), 2), params, X[:300])
    got = record["standard_errors"]
    np.testing.assert_allclose(got["mean"], se.components.mean, rtol=1e-6)
    np.testing.assert_allclose(got["var"], se.components.var, rtol=1e-6)
    np.testing.assert_allclose(got["weights"], se.weights, rtol=1e-6)


@pytest.mark.slow
def test_cli_se_for_an_hmm_is_the_library_at_the_printed_estimates(tmp_path, capsys):
    """`jaxem fit --model hmm --sequence-column id --se`: the JSON's standard errors are
    em.standard_errors with the fit's lengths, at the JSON's estimates; both tables print."""
    import json

    from jaxem import cli

    x, lengths = hmm_sequences()
    ids = np.repeat(np.arange(len(lengths)), lengths)
    path, out = tmp_path / "seqs.csv", tmp_path / "hmm.json"
    path.write_text("id,x\n" + "".join(f"s{i},{v:.17g}\n" for i, v in zip(ids, x, strict=True)))
    argv = ["fit", str(path), "--model", "hmm", "-k", "2", "--sequence-column", "id", "--se",
            "--restarts", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "se initial" in printed and "standard errors of the transition probabilities" in printed
    record = json.loads(out.read_text())
    p = record["params"]
    params = em.HMMParams(
        np.asarray(p["initial"]),
        np.asarray(p["transition"]),
        em.NormalParams(np.asarray(p["mean"]), np.asarray(p["var"])),
    )
    with jax.enable_x64(True):
        se = em.standard_errors(em.HMM(em.Normal(), 2), params, x, lengths=lengths)
    got = record["standard_errors"]
    assert set(got) == {"initial", "transition", "mean", "var"}
    np.testing.assert_allclose(got["initial"], se.initial, rtol=1e-6)
    np.testing.assert_allclose(got["transition"], se.transition, rtol=1e-6)
    np.testing.assert_allclose(got["mean"], se.emissions.mean, rtol=1e-6)
    np.testing.assert_allclose(got["var"], se.emissions.var, rtol=1e-6)


@pytest.mark.slow
def test_cli_se_with_missing_values_is_the_librarys_marginal_one(tmp_path, capsys):
    """`jaxem fit --missing marginalize --se`: em.standard_errors(missing="marginalize")."""
    import json

    from jaxem import cli

    x = mvn_with_missing()
    path, out = tmp_path / "gaps.csv", tmp_path / "fit.json"
    np.savetxt(path, x, delimiter=",", header="a,b", comments="")
    argv = ["fit", str(path), "-k", "2", "--missing", "marginalize", "--se", "--restarts", "2",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "se mean a" in capsys.readouterr().out
    record = json.loads(out.read_text())
    p = record["params"]
    params = em.MixtureParams(
        np.asarray(p["weights"]),
        em.MultivariateNormalParams(np.asarray(p["mean"]), np.asarray(p["cov"])),
    )
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    with jax.enable_x64(True):
        se = em.standard_errors(model, params, x, missing="marginalize")
    got = record["standard_errors"]
    np.testing.assert_allclose(got["weights"], se.weights, rtol=1e-6)
    np.testing.assert_allclose(got["mean"], se.components.mean, rtol=1e-6)
    np.testing.assert_allclose(got["cov"], se.components.cov, rtol=1e-6)


def test_cli_se_of_an_hmm_prints_and_records_every_piece(capsys):
    """The HMM's --se table and JSON (the end-to-end run is in the slow pass): the
    library's numbers with the fit's lengths, per state, and the K×K transition block."""
    import types

    from jaxem import cli

    x, lengths = hmm_sequences()
    hmm = em.HMM(em.Normal(), 2)
    params = em.HMMParams(
        np.array([0.45, 0.55]),
        np.array([[0.85, 0.15], [0.25, 0.75]]),
        em.NormalParams(np.array([-1.0, 1.5]), np.array([1.0, 0.64])),
    )
    args = types.SimpleNamespace(se=True, out=None, _se_names=["x"])
    se = cli._standard_errors(args, hmm, params, x, lengths=lengths, missing=None)
    with jax.enable_x64(True):
        want = em.standard_errors(hmm, params, x, lengths=lengths)
    for got, expected in zip(jax.tree.leaves(se), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(got, expected)
    printed = capsys.readouterr().out
    assert "state  se initial   se mean    se var" in printed
    assert "standard errors of the transition probabilities (row: from, column: to)" in printed
    assert f"{want.transition[1, 0]:.5g}" in printed
    record = cli._se_record(se)["standard_errors"]
    assert list(record) == ["initial", "transition", "mean", "var"]
    np.testing.assert_array_equal(record["transition"], want.transition)


@pytest.mark.slow
def test_estimators_standard_errors_are_the_librarys():
    faithful = em.datasets.load_faithful()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = em.GaussianMixture(2, random_state=0).fit(faithful)
    se = gm.standard_errors(faithful)
    with jax.enable_x64(True):
        model = em.Mixture(em.MultivariateNormal("full"), 2)
        params = em.MixtureParams(
            gm.weights_, em.MultivariateNormalParams(gm.means_, gm.covariances_)
        )
        expected = em.standard_errors(model, params, faithful)
    for got, want in zip(jax.tree.leaves(se), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    x = np.column_stack([X[:400], X[:400] ** 2])
    y = 2 * X[:400] + np.random.default_rng(0).normal(0, 1, 400)
    est = em.MixtureRegressor("linear", 2, n_init=4, random_state=0).fit(x, y)
    got = est.standard_errors(x, y)
    with jax.enable_x64(True):
        params = em.MixtureParams(
            est.weights_, em.LinearRegressionParams(est.coef_, est.intercept_, est.var_)
        )
        want = em.standard_errors(em.Mixture(em.LinearRegression(), 2), params, {"x": x, "y": y})
    np.testing.assert_allclose(got["coef_"], want.components.coef, rtol=1e-9)
    np.testing.assert_allclose(got["var_"], want.components.var, rtol=1e-9)


def louis_information(x, t):
    """Louis (1982): observed information = E[complete information] − Var[complete score],
    both under the posterior of each row's component; natural coordinates
    (w1, m1, m2, v1, v2) of a two-normal mixture, float64 NumPy."""
    w1, m1, m2, v1, v2 = t
    w = np.array([w1, 1 - w1])
    m = np.array([m1, m2])
    v = np.array([v1, v2])
    lj = np.log(w) + stats.norm.logpdf(x[:, None], m, np.sqrt(v))
    r = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))  # (N, 2)
    n = len(x)
    # Complete-data score of row i if it is in component k: s[i, k, :] over the 5 parameters.
    s = np.zeros((n, 2, 5))
    s[:, 0, 0], s[:, 1, 0] = 1 / w1, -1 / (1 - w1)
    for k in range(2):
        d = x - m[k]
        s[:, k, 1 + k] = d / v[k]
        s[:, k, 3 + k] = -0.5 / v[k] + 0.5 * d**2 / v[k] ** 2
    # Minus the complete-data Hessian of row i in component k.
    b = np.zeros((n, 2, 5, 5))
    b[:, 0, 0, 0], b[:, 1, 0, 0] = 1 / w1**2, 1 / (1 - w1) ** 2
    for k in range(2):
        d = x - m[k]
        b[:, k, 1 + k, 1 + k] = 1 / v[k]
        b[:, k, 1 + k, 3 + k] = b[:, k, 3 + k, 1 + k] = d / v[k] ** 2
        b[:, k, 3 + k, 3 + k] = -0.5 / v[k] ** 2 + d**2 / v[k] ** 3
    expected_b = np.einsum("nk,nkab->ab", r, b)
    mean_s = np.einsum("nk,nka->na", r, s)
    second = np.einsum("nk,nka,nkb->ab", r, s, s)
    return expected_b - (second - mean_s.T @ mean_s)


def test_observed_information_equals_louis_complete_minus_missing():
    model, params = fitted(False)
    with jax.enable_x64(True):
        se = em.standard_errors(model, params, X)
    info = louis_information(X, as_vector(params))
    expected = np.sqrt(np.diag(np.linalg.inv(info)))
    got = np.array([se.weights[0], *se.components.mean, *se.components.var])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
