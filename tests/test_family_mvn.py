"""MultivariateNormal mixtures (full / diag / spherical / tied) and the InverseWishart prior.

References: scipy.stats (densities, priors), naive float64 NumPy (explicit inverses
and determinants), scikit-learn's ``GaussianMixture`` (the same EM from the same
start), jax.grad of the declared objective (``check_m_step``) and L-BFGS-B on a
float64 SciPy implementation of the log posterior. No jaxem code is a reference.

The ``tied`` covariance has no component axis (``MultivariateNormal.component_axes``
says so); the tests at the end check that ``init=``, the helpers and ``sample`` handle it.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import jaxem as em
from jaxem import _buckets, priors
from jaxem.check import check_m_step
from jaxem.families.base import closed_form_for, register_m_step
from jaxem.families.mvn import (
    MultivariateNormal,
    MultivariateNormalParams,
    _stats,
    _update,
)

TYPES = ("full", "diag", "spherical", "tied")
# Default runs keep the full type; the other three run with -m slow (time budget).
FULL_THEN_SLOW = ["full", *(pytest.param(t, marks=pytest.mark.slow) for t in TYPES[1:])]
TRUE_W = np.array([0.5, 0.3, 0.2])
TRUE_MEAN = np.array([[0.0, 0.0], [5.0, 1.0], [1.0, 6.0]])
TRUE_FULL = np.array(
    [[[1.0, 0.5], [0.5, 1.5]], [[0.6, -0.2], [-0.2, 0.4]], [[2.0, 0.0], [0.0, 0.5]]]
)


def true_cov(kind):
    """The generating covariances in ``kind``'s parametrisation."""
    if kind == "full":
        return TRUE_FULL
    if kind == "tied":
        return TRUE_FULL[0]
    diag = np.diagonal(TRUE_FULL, axis1=1, axis2=2)
    return diag if kind == "diag" else diag.mean(1)


def full_covs(kind, cov, k, d):
    """``(K, D, D)`` covariance matrices from any parametrisation (float64)."""
    cov = np.asarray(cov, np.float64)
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if kind == "diag":
        return np.stack([np.diag(c) for c in cov])
    return cov[:, None, None] * np.eye(d)


def random_params(rng, kind, k, d):
    mean = rng.normal(0, 3, (k, d))
    if kind in ("full", "tied"):
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
        cov = cov[0] if kind == "tied" else cov
    elif kind == "diag":
        cov = rng.uniform(0.3, 3.0, (k, d))
    else:
        cov = rng.uniform(0.3, 3.0, k)
    return MultivariateNormalParams(mean, cov)


def simulate(kind, n, seed):
    """Draws from the true mixture (by hand for tied: Mixture.sample needs a K axis)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n, p=TRUE_W)
    covs = full_covs(kind, true_cov(kind), 3, 2)
    return np.stack([rng.multivariate_normal(TRUE_MEAN[j], covs[j]) for j in z])


def as_np(params):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), params)


# ------------------------------------------------------------------ float64 references
def ref_log_prob_components(kind, params, x):
    """Naive float64: explicit inverse and determinant of every covariance."""
    mean = np.asarray(params.mean, np.float64)
    k, d = mean.shape
    out = np.empty((len(x), k))
    for j, cov in enumerate(full_covs(kind, params.cov, k, d)):
        diff = x - mean[j]
        maha = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
        out[:, j] = -0.5 * (d * np.log(2 * np.pi) + np.log(np.linalg.det(cov)) + maha)
    return out


def ref_log_posterior(x, kind, w, mean, cov, mean_prior=None, cov_prior=None, alpha=None):
    """log p(x | θ) + log p(θ) with scipy.stats, float64."""
    k, d = mean.shape
    covs = full_covs(kind, cov, k, d)
    comp = np.stack(
        [stats.multivariate_normal(mean[j], covs[j]).logpdf(x) for j in range(k)], axis=1
    )
    total = logsumexp(comp + np.log(w), axis=1).sum()
    if mean_prior is not None:
        total += stats.norm.logpdf(mean, *mean_prior).sum()
    if cov_prior is not None:
        if kind == "full":
            total += sum(stats.invwishart.logpdf(c, *cov_prior) for c in covs)
        elif kind == "tied":
            total += stats.invwishart.logpdf(cov, *cov_prior)
        else:
            total += stats.invgamma.logpdf(cov, cov_prior[0], scale=cov_prior[1]).sum()
    if alpha is not None:
        total += stats.dirichlet.logpdf(w, np.full(k, alpha))
    return total


def pack(kind, w, mean, cov):
    """Unconstrained float64 coordinates: alr weights, means, log-Cholesky / log variances."""
    parts = [np.log(w[:-1]) - np.log(w[-1]), mean.ravel()]
    if kind in ("full", "tied"):
        d = mean.shape[1]
        rows, cols = np.tril_indices(d)
        for c in np.reshape(cov, (-1, d, d)):
            low = np.linalg.cholesky(c)
            low[np.diag_indices(d)] = np.log(np.diag(low))
            parts.append(low[rows, cols])
    else:
        parts.append(np.log(np.ravel(cov)))
    return np.concatenate(parts)


def unpack(kind, z, k, d):
    alr = np.append(z[: k - 1], 0.0)
    w = np.exp(alr - logsumexp(alr))
    mean = z[k - 1 : k - 1 + k * d].reshape(k, d)
    rest = z[k - 1 + k * d :]
    if kind in ("full", "tied"):
        rows, cols = np.tril_indices(d)
        m = d * (d + 1) // 2
        covs = []
        for j in range(len(rest) // m):
            low = np.zeros((d, d))
            low[rows, cols] = rest[j * m : (j + 1) * m]
            low[np.diag_indices(d)] = np.exp(np.diag(low))
            covs.append(low @ low.T)
        cov = np.stack(covs) if kind == "full" else covs[0]
    else:
        cov = np.exp(rest).reshape((k, d) if kind == "diag" else (k,))
    return w, mean, cov


# ------------------------------------------------------------------ InverseWishart prior
@pytest.mark.parametrize("d", [1, 3])
def test_inverse_wishart_matches_scipy(d):
    rng = np.random.default_rng(d)
    with jax.enable_x64(True):
        for _ in range(4):
            a = rng.normal(size=(d, d))
            scale = a @ a.T + 0.3 * np.eye(d)
            df = d - 1 + rng.uniform(0.2, 6.0)
            ref = stats.invwishart(df, scale)
            values = np.stack([np.atleast_2d(ref.rvs(random_state=rng)) for _ in range(5)])
            prior = priors.InverseWishart(df, scale)
            got = np.asarray(prior.log_prob(values))
            assert got.shape == (5,)
            np.testing.assert_allclose(got, [ref.logpdf(v) for v in values], rtol=1e-10)
            assert float(prior(values[0])) == pytest.approx(ref.logpdf(values[0]), rel=1e-10)
    # float32: same values to single precision.
    got32 = prior.log_prob(values.astype(np.float32))
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(got32), [ref.logpdf(v) for v in values], rtol=1e-4, atol=1e-4
    )


def test_inverse_wishart_support_and_validation():
    prior = priors.InverseWishart(3.0, np.eye(2))
    not_pd = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert float(prior.log_prob(not_pd)) == -np.inf
    assert np.isfinite(float(prior.log_prob(np.eye(2))))
    assert prior.support is em.constraints.positive_definite
    with pytest.raises(ValueError, match="df must be > D - 1 = 2"):
        priors.InverseWishart(2.0, np.eye(3))
    with pytest.raises(ValueError, match="df must be > 0"):
        priors.InverseWishart(-1.0, np.eye(1))
    with pytest.raises(ValueError, match="df must be finite"):
        priors.InverseWishart(np.nan, np.eye(2))
    with pytest.raises(ValueError, match="scale must be positive definite"):
        priors.InverseWishart(5.0, not_pd)
    with pytest.raises(ValueError, match="scale must be symmetric"):
        priors.InverseWishart(5.0, np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"scale must be a square \(D, D\)"):
        priors.InverseWishart(5.0, np.ones(3))
    with pytest.raises(ValueError, match=r"values must be \(2, 2\) matrices"):
        prior.log_prob(np.eye(3))


@pytest.fixture(params=["expanded", "exact"])
def path(request, monkeypatch):
    """Densities and statistics by the expanded GEMM forms (at any row count) or
    by the exact centred passes (the expanded ones turned off)."""
    from jaxem.families import mvn

    if request.param == "expanded":
        monkeypatch.setattr(mvn, "_EXPANSION_MIN_ROWS", 0)
    else:
        monkeypatch.setattr(mvn, "_FEATURES_BUDGET", 0)
    return request.param


# ------------------------------------------------------------------ densities
@pytest.mark.parametrize("kind", TYPES)
def test_log_prob_components_matches_naive_and_scipy(kind, path):
    rng = np.random.default_rng(11)
    k, d = 4, 3
    params = random_params(rng, kind, k, d)
    x = rng.normal(0, 4, (60, d))
    fam = MultivariateNormal(kind)
    log_prob_components, log_prob = jax.jit(fam.log_prob_components), jax.jit(fam.log_prob)
    ref = ref_log_prob_components(kind, params, x)
    covs = full_covs(kind, params.cov, k, d)
    with jax.enable_x64(True):
        got = np.asarray(log_prob_components(jax.tree.map(jnp.asarray, params), x))
        assert got.shape == (60, k)
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
        for j in range(k):
            one = MultivariateNormalParams(
                params.mean[j], params.cov if kind == "tied" else params.cov[j]
            )
            scipy_ref = stats.multivariate_normal(params.mean[j], covs[j]).logpdf(x)
            got = log_prob(jax.tree.map(jnp.asarray, one), x)
            np.testing.assert_allclose(np.asarray(got), scipy_ref, rtol=1e-11)
    # float32 close to the float64 reference.
    got32 = log_prob_components(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), x)
    assert got32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got32), ref, rtol=2e-5, atol=2e-4)


@pytest.mark.parametrize(
    "kind", ["full", "diag", "spherical", pytest.param("tied", marks=pytest.mark.slow)]
)
def test_float32_log_prob_far_from_the_origin(kind):
    """Data at 1e4 with unit spread: centring keeps float32 log densities accurate."""
    rng = np.random.default_rng(2)
    params = random_params(rng, kind, 3, 3)
    params = params._replace(mean=(1e4 + params.mean).astype(np.float32))
    x = (1e4 + rng.normal(0, 3, (200, 3))).astype(np.float32)  # exactly representable inputs
    ref = ref_log_prob_components(kind, as_np(params), x.astype(np.float64))
    got = MultivariateNormal(kind).log_prob_components(
        jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), jnp.asarray(x)
    )
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", TYPES)
def test_float32_expanded_forms_fall_back_where_they_would_cancel(kind, monkeypatch):
    """Tight components far apart: the one-GEMM forms (x² - 2xm + m², or
    xᵀPx - 2mᵀPx + mᵀPm) would lose float32 digits, so densities and statistics
    come from the exact centred passes; with the guard turned off the same
    numbers are visibly worse."""
    from jaxem.families import mvn

    monkeypatch.setattr(mvn, "_EXPANSION_MIN_ROWS", 0)

    rng = np.random.default_rng(4)
    k, d, n = 3, 4, 300
    mean = rng.normal(0, 50, (k, d))
    var = {
        "full": np.broadcast_to(1e-2 * np.eye(d), (k, d, d)),
        "tied": 1e-2 * np.eye(d),
        "diag": np.full((k, d), 1e-2),
        "spherical": np.full(k, 1e-2),
    }[kind]
    labels = rng.integers(0, k, n)
    x = (mean[labels] + 0.1 * rng.normal(size=(n, d))).astype(np.float32)
    params = MultivariateNormalParams(mean.astype(np.float32), var.astype(np.float32))
    resp = np.eye(k, dtype=np.float32)[labels]  # each row with its own component
    fam = MultivariateNormal(kind)
    ref_lp = ref_log_prob_components(kind, as_np(params), x.astype(np.float64))
    diff = x.astype(np.float64)[None] - mean[:, None]
    ref_s2 = np.einsum("nk,knd,kne->kde", resp, diff, diff)
    if kind in ("diag", "spherical"):
        ref_s2 = np.diagonal(ref_s2, axis1=1, axis2=2)
    # off-diagonal sums are ~0: errors are measured against each component's variances
    scale = np.max(np.abs(ref_s2).reshape(k, -1), axis=1).reshape((k,) + (1,) * (ref_s2.ndim - 1))

    def evaluate():
        p32 = jax.tree.map(jnp.asarray, params)
        return fam.log_prob_components(p32, jnp.asarray(x)), _stats(fam, p32, x, resp, None).s2

    lp, s2 = evaluate()
    np.testing.assert_allclose(np.asarray(lp), ref_lp, rtol=1e-5, atol=1e-4)
    assert np.max(np.abs(np.asarray(s2) - ref_s2) / scale) < 1e-4
    monkeypatch.setattr(mvn, "EXPANSION_TOL", np.inf)
    lp_bad, s2_bad = evaluate()
    near = ref_lp > -50  # the entries that carry responsibility
    error, error_bad = (np.max(np.abs(np.asarray(a) - ref_lp)[near]) for a in (lp, lp_bad))
    assert error_bad > 10 * error
    assert np.max(np.abs(np.asarray(s2_bad) - ref_s2) / scale) > 1e-3


@pytest.mark.parametrize(("rho", "rtol"), [(0.99, 2e-3), (0.9999, 2e-2)])
def test_float32_expanded_statistics_guard_correlated_features(rho, rtol):
    """Strongly correlated clusters away from the data's centre: re-centring the
    expanded sums loses the covariance's narrow direction (not its diagonal) in
    float32, so the statistics must come from the exact pass. Checked on the
    smallest eigenvalue of each component's scatter matrix against float64 (the
    exact pass is within 0.01% and 0.8%; the expanded sums were 0.4% and 160% off)."""
    rng = np.random.default_rng(7)
    n, sep = 4096, 20.0
    labels = rng.integers(0, 2, n)
    noise = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    x = (np.array([[sep, sep], [-sep, -sep]])[labels] + noise).astype(np.float32)
    resp = np.eye(2)[labels]
    mean = np.stack([x[labels == j].mean(0) for j in range(2)])
    fam = MultivariateNormal("full")
    params = MultivariateNormalParams(mean.astype(np.float32), np.tile(np.eye(2), (2, 1, 1)))
    got = np.asarray(jax.jit(lambda p: _stats(fam, p, jnp.asarray(x), resp, None))(params).s2)
    diff = x.astype(np.float64)[None] - mean[:, None]
    ref = np.einsum("nk,knd,kne->kde", resp, diff, diff)
    np.testing.assert_allclose(np.linalg.eigvalsh(got)[:, 0], np.linalg.eigvalsh(ref)[:, 0],
                               rtol=rtol)  # fmt: skip


def test_vmapped_expanded_forms_decide_once_for_the_batch():
    """Under vmap (restarts stepped together) the accuracy test is one decision for
    the batch: lax.cond stays a branch, not a select that runs both passes, and
    one member that would cancel sends the whole batch to the exact pass."""
    rng = np.random.default_rng(6)
    x = rng.normal(0, 1, (200, 3)).astype(np.float32)
    fam = MultivariateNormal("diag")
    wide = MultivariateNormalParams(rng.normal(0, 1, (2, 3)), np.ones((2, 3)))
    tight = MultivariateNormalParams(rng.normal(0, 1, (2, 3)), np.full((2, 3), 1e-6))
    batch = jax.tree.map(lambda a, b: jnp.asarray(np.stack([a, b]), jnp.float32), wide, tight)
    fn = jax.vmap(fam.log_prob_components, in_axes=(0, None))
    jaxpr = str(jax.make_jaxpr(fn)(batch, x))
    assert " cond[" in jaxpr
    got = np.asarray(fn(batch, x))
    for i, p in enumerate((wide, tight)):
        ref = ref_log_prob_components("diag", p, x.astype(np.float64))
        np.testing.assert_allclose(got[i], ref, rtol=1e-5, atol=1e-3)


# ------------------------------------------------------------------ sufficient statistics
@pytest.mark.parametrize("kind", TYPES)
def test_sufficient_stats_are_additive_and_exact(kind, path):
    rng = np.random.default_rng(5)
    k, d, n = 3, 4, 90
    params = random_params(rng, kind, k, d)
    x = rng.normal(size=(n, d))
    resp = rng.dirichlet(np.ones(k), size=n)
    sw = rng.uniform(0.5, 2.0, n)
    fam = MultivariateNormal(kind)
    stats_fn = jax.jit(lambda *a: _stats(fam, *a))
    with jax.enable_x64(True):
        whole = as_np(stats_fn(jax.tree.map(jnp.asarray, params), x, resp, sw))
        parts = [
            as_np(stats_fn(jax.tree.map(jnp.asarray, params), x[s], resp[s], sw[s]))
            for s in (slice(0, 37), slice(37, n))
        ]
    for a, b, c in zip(whole, *parts, strict=True):
        np.testing.assert_allclose(a, b + c, rtol=1e-12, atol=1e-12)
    wr = resp * sw[:, None]
    diff = x[None] - params.mean[:, None]  # (K, N, D)
    np.testing.assert_allclose(whole.n, wr.sum(0), rtol=1e-12)
    np.testing.assert_allclose(whole.s1, np.einsum("nk,knd->kd", wr, diff), rtol=1e-12)
    s2 = np.einsum("nk,knd,kne->kde", wr, diff, diff)
    if kind in ("diag", "spherical"):
        s2 = np.diagonal(s2, axis1=1, axis2=2)
    np.testing.assert_allclose(whole.s2, s2, rtol=1e-12)


@pytest.mark.parametrize("kind", FULL_THEN_SLOW)
def test_row_chunking_changes_nothing(kind, monkeypatch):
    """Large N is processed in row chunks (zero-padded): same densities, stats, gradients."""
    from jaxem import chunks
    from jaxem.families import mvn

    rng = np.random.default_rng(8)
    k, d, n = 3, 3, 203  # 203 = 4 chunks of 56 rows minus 21 padding rows
    params = random_params(rng, kind, k, d)
    x = rng.normal(0, 3, (n, d))
    resp = rng.dirichlet(np.ones(k), size=n)
    sw = rng.uniform(0.5, 2.0, n)
    fam = MultivariateNormal(kind)

    def evaluate():
        p64 = jax.tree.map(jnp.asarray, params)
        lp = fam.log_prob_components(p64, x)
        grad = jax.grad(lambda c: jnp.sum(fam.log_prob_components(c, x)))(p64)
        return lp, grad, _stats(fam, p64, x, resp, sw)

    with jax.enable_x64(True):
        assert chunks.plan(n, k, d, None) is None
        monkeypatch.setattr(mvn, "_EXPANSION_MIN_ROWS", 0)
        one_pass = jax.jit(evaluate)()  # the expanded (GEMM) forms, all rows at once
        monkeypatch.setattr(chunks, "plan", lambda n_, k_, d_, size: chunks.Chunking(56, 4, False))
        monkeypatch.setattr(mvn, "_FEATURES_BUDGET", 0)  # the exact passes, chunk by chunk
        chunked = jax.jit(evaluate)()
    np.testing.assert_allclose(one_pass[0], ref_log_prob_components(kind, params, x), rtol=1e-11)
    for a, b in zip(jax.tree.leaves(one_pass), jax.tree.leaves(chunked), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-11, atol=1e-11)


def test_chunk_size_policy():
    from jaxem import chunks

    assert chunks.plan(272, 3, 2, None) is None  # small problems: one pass
    size = chunks.plan(100_000, 8, 16, None, backend="cpu").size
    chunks = -(-100_000 // size)
    assert 4_000 <= size <= 10_000 and size % 8 == 0 and chunks * size - 100_000 < 8 * chunks


# ------------------------------------------------------------------ the M-step, by autodiff
def _covered_priors(kind, d=2):
    if kind in ("full", "tied"):
        return priors.InverseWishart(d + 2.0, 0.5 * np.eye(d))
    return priors.InverseGamma(2.0, 0.5)


FAITHFUL = em.datasets.load_faithful()


@pytest.mark.parametrize("kind", FULL_THEN_SLOW)
@pytest.mark.parametrize(
    "combo",
    [
        "ml",
        pytest.param("cov-prior", marks=pytest.mark.slow),
        pytest.param("mean-prior", marks=pytest.mark.slow),
        pytest.param("both+dirichlet", marks=pytest.mark.slow),
    ],
)
def test_check_m_step_float64(kind, combo):
    """reg_covar=0: ML and the covered priors are exact; a mean prior makes an ECM ascent."""
    with_mean = "mean" in combo or "both" in combo
    mean_prior = priors.Normal([3.0, 70.0], [2.0, 15.0]) if with_mean else None
    cov_prior = _covered_priors(kind) if ("cov" in combo or "both" in combo) else None
    fam = MultivariateNormal(kind, reg_covar=0.0, mean_prior=mean_prior, cov_prior=cov_prior)
    model = em.Mixture(
        fam, 3, weights_prior=priors.Dirichlet(1.5) if "dirichlet" in combo else None
    )
    assert closed_form_for(fam) is not None
    with jax.enable_x64(True):
        report = check_m_step(model, FAITHFUL, key=jax.random.key(3))
    assert report.ok, report
    piece = report.pieces[-1]
    assert piece.exact == (mean_prior is None)
    assert piece.objective_after > piece.objective_before


@pytest.mark.slow
@pytest.mark.parametrize("kind", TYPES)
def test_reg_covar_update_is_an_ascent_in_practice(kind):
    """reg_covar > 0 shifts the maximiser: not exact, but the objective still rises."""
    fam = MultivariateNormal(kind, reg_covar=1e-3)
    assert not closed_form_for(fam).exact(fam)
    with jax.enable_x64(True):
        report = check_m_step(em.Mixture(fam, 3), FAITHFUL, key=jax.random.key(3))
    assert report.ok, report
    piece = report.pieces[-1]
    assert piece.kind == "ascent step" and piece.objective_after > piece.objective_before
    # The shift leaves a gradient behind (it is not the maximiser).
    assert piece.grad_after > 1e-9


class _BrokenMVN(MultivariateNormal):
    """A throwaway subclass whose 'closed form' inflates the covariances by 5%."""


def _broken_update(family, params, stats):
    new = _update(family, params, stats)
    return new._replace(cov=1.05 * new.cov)


register_m_step(_BrokenMVN, _broken_update, sufficient_stats=_stats)


def test_check_m_step_catches_a_wrong_update():
    with jax.enable_x64(True):
        report = check_m_step(
            em.Mixture(_BrokenMVN("full", reg_covar=0.0), 3), FAITHFUL, key=jax.random.key(3)
        )
    assert not report.ok
    assert not report.pieces[-1].ok and report.pieces[0].ok  # the weights are fine


def test_closed_form_covers_exactly_its_priors():
    iw, ig = priors.InverseWishart(4.0, np.eye(2)), priors.InverseGamma(2.0, 1.0)
    for kind in TYPES:
        conj = iw if kind in ("full", "tied") else ig
        assert closed_form_for(MultivariateNormal(kind)) is not None
        assert closed_form_for(MultivariateNormal(kind, cov_prior=conj)) is not None
        assert closed_form_for(MultivariateNormal(kind, mean_prior=priors.Normal(0, 1))) is not None
        for other in (
            MultivariateNormal(kind, cov_prior=conj.log_prob),
            MultivariateNormal(kind, mean_prior=priors.Gamma(2.0, 1.0)),
            MultivariateNormal(kind, mean_prior=lambda m: -jnp.sum(m**2)),
        ):
            assert closed_form_for(other) is None
    assert closed_form_for(MultivariateNormal("diag", cov_prior=priors.Gamma(2.0, 1.0))) is None
    exact = closed_form_for(MultivariateNormal("full")).exact
    assert not exact(MultivariateNormal("full"))  # reg_covar = 1e-6 by default
    assert exact(MultivariateNormal("full", reg_covar=0.0))
    assert not exact(MultivariateNormal("full", reg_covar=0.0, mean_prior=priors.Normal(0, 1)))


# ------------------------------------------------------------------ scikit-learn parity
def sklearn_from(kind, start, reg_covar, **kwargs):
    w, mean, cov = as_np(start.weights), as_np(start.components.mean), as_np(start.components.cov)
    if kind in ("full", "tied"):
        prec = np.linalg.inv(cov)
        prec = 0.5 * (prec + np.swapaxes(prec, -1, -2))
    else:
        prec = 1.0 / cov
    return GaussianMixture(
        len(w),
        covariance_type=kind,
        reg_covar=reg_covar,
        weights_init=w / w.sum(),
        means_init=mean,
        precisions_init=prec,
        **kwargs,
    )


def fit_both(kind, x, reg_covar, max_iter, seed=0):
    """jaxem and sklearn from the same start (jaxem's k-means++ draw), tol=0."""
    model = em.Mixture(MultivariateNormal(kind, reg_covar=reg_covar), 3)
    key = jax.random.key(seed)
    # The start that fit(key=key, restarts=1) draws, from its rows padded to the
    # bucket size; tied cannot pass it as init= yet (Mixture._check_params wants a
    # K axis on cov), so every type uses key=.
    pad = _buckets.index(len(x))
    rows = x if pad is None else np.asarray(x)[pad[0]]
    start = model.init(jax.random.split(key)[0], jnp.asarray(rows, jnp.result_type(float)))
    res = em.fit(model, x, key=key, restarts=1, max_iter=max_iter, tol=0.0)
    gm = sklearn_from(kind, start, reg_covar, tol=0.0, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(np.asarray(x, np.float64))
    return res, gm


PARITY_X = np.random.default_rng(4).normal(size=(400, 4)) * [1.0, 2.0, 0.5, 1.0] + np.repeat(
    [[0.0, 0.0, 0.0, 0.0], [2.5, 1.0, 0.5, -1.0], [-1.0, 3.0, 1.0, 2.0]], [160, 140, 100], axis=0
)


def assert_same_as_sklearn(res, gm, x, rtol, kind):
    params = res.params
    np.testing.assert_allclose(as_np(params.weights), gm.weights_, rtol=rtol)
    np.testing.assert_allclose(as_np(params.components.mean), gm.means_, rtol=rtol, atol=rtol)
    cov = as_np(params.components.cov)
    assert cov.shape == gm.covariances_.shape
    np.testing.assert_allclose(cov, gm.covariances_, rtol=rtol, atol=rtol * np.abs(cov).max())
    assert res.log_likelihood / len(x) == pytest.approx(gm.score(x), rel=rtol)


@pytest.mark.parametrize("kind", FULL_THEN_SLOW)
@pytest.mark.parametrize("reg_covar", [1e-6, pytest.param(0.05, marks=pytest.mark.slow)])
def test_same_em_as_sklearn_float64(kind, reg_covar):
    with jax.enable_x64(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res, gm = fit_both(kind, PARITY_X, reg_covar, max_iter=30)
        if res.n_iter < 30:
            # reg_covar shifts the update off the likelihood's maximiser, so the
            # likelihood may drop: jaxem stops there and says why; compare scikit-learn
            # after as many iterations.
            assert reg_covar > 0 and not res.converged
            assert any("reg_covar" in str(w.message) for w in caught)
            res, gm = fit_both(kind, PARITY_X, reg_covar, max_iter=res.n_iter)
    assert res.n_iter == gm.n_iter_
    assert_same_as_sklearn(res, gm, PARITY_X, 1e-8, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", TYPES)
def test_same_em_as_sklearn_float32(kind):
    res, gm = fit_both(kind, PARITY_X, 1e-6, max_iter=30)
    assert res.params.components.cov.dtype == jnp.float32
    assert_same_as_sklearn(res, gm, PARITY_X, 2e-4, kind)


def sort_by_first_mean(weights, mean, cov):
    order = np.argsort(mean[:, 0])
    return weights[order], mean[order], cov[order]


_SKLEARN_FAITHFUL = {}


def sklearn_faithful(k):
    """sklearn's best full-covariance fit: 50 k-means++ starts, then refined to tol=1e-12.

    (Its default k-means start, even with n_init=50, stops at a lower optimum for
    K=3: -4.1148 per sample against -4.0972.)
    """
    if k not in _SKLEARN_FAITHFUL:
        search = GaussianMixture(
            k, covariance_type="full", n_init=50, init_params="k-means++", random_state=0
        ).fit(FAITHFUL)
        refined = GaussianMixture(
            k,
            covariance_type="full",
            tol=1e-12,
            max_iter=20_000,
            weights_init=search.weights_,
            means_init=search.means_,
            precisions_init=search.precisions_,
        ).fit(FAITHFUL)
        assert refined.converged_
        _SKLEARN_FAITHFUL[k] = refined
    return _SKLEARN_FAITHFUL[k]


@pytest.mark.slow
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("k", [2, 3])
def test_old_faithful_reaches_sklearn_optimum(k, x64):
    x = FAITHFUL
    gm = sklearn_faithful(k)
    with jax.enable_x64(x64):
        model = em.Mixture(MultivariateNormal("full"), k)
        res = em.fit(model, x, key=jax.random.key(0), restarts=64, tol=1e-12, max_iter=5000)
    assert res.converged
    assert res.log_likelihood / len(x) == pytest.approx(gm.score(x), rel=1e-9 if x64 else 1e-6)
    w, mean, cov = sort_by_first_mean(
        *(as_np(a) for a in (res.params.weights, *res.params.components))
    )
    w_s, mean_s, cov_s = sort_by_first_mean(gm.weights_, gm.means_, gm.covariances_)
    # Scale-free errors: means in standard deviations, covariances relative to
    # sd_i sd_j. float32 stops on a flat ridge of the K=3 likelihood (the
    # log-likelihood agrees to 5e-8; the parameters to ~1e-3).
    sd = np.sqrt(np.diagonal(cov_s, axis1=1, axis2=2))
    tol = 1e-5 if x64 else 1e-2
    assert np.abs(w - w_s).max() < tol / 5
    assert (np.abs(mean - mean_s) / sd).max() < tol
    assert (np.abs(cov - cov_s) / (sd[:, :, None] * sd[:, None, :])).max() < tol


# ------------------------------------------------------------------ fits are maxima
MEAN_PRIOR = (2.0, 5.0)  # loc, scale on every mean coordinate
IG_PRIOR = (2.0, 0.5)
ALPHA = 1.5


def ref_priors(kind):
    cov_prior = (4.0, 0.5 * np.eye(2)) if kind in ("full", "tied") else IG_PRIOR
    return MEAN_PRIOR, cov_prior


def map_family(kind, *, as_functions=False):
    mp = priors.Normal(*MEAN_PRIOR)
    cp = (
        priors.InverseWishart(4.0, 0.5 * np.eye(2))
        if kind in ("full", "tied")
        else priors.InverseGamma(*IG_PRIOR)
    )
    if as_functions:  # the same densities as plain functions: the gradient M-step
        return MultivariateNormal(kind, reg_covar=0.0, mean_prior=mp, cov_prior=cp.log_prob)
    return MultivariateNormal(kind, reg_covar=0.0, mean_prior=mp, cov_prior=cp)


_MAP_FITS = {}


def map_fit(kind):
    """Closed-form MAP fit on simulated data (cached: one compile per type)."""
    if kind not in _MAP_FITS:
        x = simulate(kind, 600, seed=1)
        model = em.Mixture(map_family(kind), 3, weights_prior=priors.Dirichlet(ALPHA))
        _MAP_FITS[kind] = (x, model, em.fit(model, x, key=jax.random.key(0), restarts=8))
    return _MAP_FITS[kind]


def posterior_at(kind, x, params):
    w = as_np(params.weights)
    return ref_log_posterior(
        x, kind, w / w.sum(), as_np(params.components.mean), as_np(params.components.cov),
        *ref_priors(kind), ALPHA,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("kind", TYPES)
def test_map_fit_is_the_maximum(kind):
    x, model, res = map_fit(kind)
    assert res.converged
    ours = posterior_at(kind, x, res.params)
    assert res.objective == pytest.approx(ours, rel=1e-5)
    truth = ref_log_posterior(x, kind, TRUE_W, TRUE_MEAN, true_cov(kind), *ref_priors(kind), ALPHA)
    assert ours >= truth
    # L-BFGS-B on the float64 log posterior, started at the fit, cannot improve it.
    w0, m0, c0 = (as_np(a) for a in (res.params.weights, *res.params.components))
    z0 = pack(kind, w0 / w0.sum(), m0, c0)
    opt = optimize.minimize(
        lambda z: -ref_log_posterior(x, kind, *unpack(kind, z, 3, 2), *ref_priors(kind), ALPHA),
        z0,
        method="L-BFGS-B",
        options={"ftol": 1e-15, "gtol": 1e-8, "maxiter": 5000},
    )
    assert -opt.fun - ours <= 1e-6 * abs(ours), (-opt.fun, ours)
    # Recovered near the truth (components matched by their first mean coordinate).
    order = np.argsort(m0[:, 0])
    np.testing.assert_allclose(m0[order], TRUE_MEAN[np.argsort(TRUE_MEAN[:, 0])], atol=0.35)
    np.testing.assert_allclose(
        (w0 / w0.sum())[order], TRUE_W[np.argsort(TRUE_MEAN[:, 0])], atol=0.06
    )


@pytest.mark.slow
@pytest.mark.parametrize("kind", TYPES)
def test_gradient_m_step_reaches_the_closed_form_map(kind):
    """The same priors as plain functions: gradient M-step, same MAP to ~1e-3."""
    x, _, cf = map_fit(kind)
    model = em.Mixture(
        map_family(kind, as_functions=True),
        3,
        weights_prior=lambda w: priors.Dirichlet(ALPHA).log_prob(w),
    )
    assert closed_form_for(model.family) is None
    if kind == "tied":
        # Start from the same k-means++ draws as the closed-form fit.
        res = em.fit(model, x, key=jax.random.key(0), restarts=8)
    else:
        comps = cf.params.components
        start = cf.params._replace(
            components=comps._replace(mean=comps.mean + 0.1, cov=comps.cov * 1.1)
        )
        res = em.fit(model, x, init=start)
    assert res.objective == pytest.approx(cf.objective, rel=1e-6)
    # the same optimum, its components possibly in another order (restarts tie)
    order, cf_order = (np.argsort(as_np(p.components.mean)[:, 0]) for p in (res.params, cf.params))
    got, want = res.params.components, cf.params.components
    np.testing.assert_allclose(
        as_np(got.mean)[order], as_np(want.mean)[cf_order], rtol=1e-3, atol=1e-3
    )
    cov, cf_cov = as_np(got.cov), as_np(want.cov)
    if kind != "tied":  # a tied covariance has no component axis
        cov, cf_cov = cov[order], cf_cov[cf_order]
    np.testing.assert_allclose(cov, cf_cov, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        as_np(res.params.weights)[order], as_np(cf.params.weights)[cf_order], atol=1e-4
    )


# ------------------------------------------------------------------ sampling
@pytest.mark.parametrize("kind", TYPES)
def test_sample_moments_and_distribution(kind):
    rng = np.random.default_rng(9)
    params = random_params(rng, kind, 1, 3)
    one = MultivariateNormalParams(params.mean[0], params.cov if kind == "tied" else params.cov[0])
    n = 20_000
    draws = np.asarray(MultivariateNormal(kind).sample(jax.random.key(1), one, n), np.float64)
    assert draws.shape == (n, 3)
    cov = full_covs(kind, params.cov if kind == "tied" else params.cov[:1], 1, 3)[0]
    se = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(draws.mean(0) - one.mean) < 4 * se)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(draws.T) - cov) < 5 * se_cov)
    # Squared Mahalanobis distances are chi-square with D degrees of freedom.
    diff = draws - one.mean
    maha = np.einsum("nd,de,ne->n", diff, np.linalg.inv(cov), diff)
    assert stats.kstest(maha, "chi2", args=(3,)).pvalue > 1e-3


@pytest.mark.slow
def test_mixture_sample_full():
    model = em.Mixture(MultivariateNormal("full"), 3)
    params = em.MixtureParams(jnp.asarray(TRUE_W), MultivariateNormalParams(TRUE_MEAN, TRUE_FULL))
    x, z = model.sample(jax.random.key(0), jax.tree.map(jnp.asarray, params), 30_000)
    x, z = np.asarray(x, np.float64), np.asarray(z)
    np.testing.assert_allclose(np.bincount(z) / len(z), TRUE_W, atol=0.015)
    for j in range(3):
        np.testing.assert_allclose(x[z == j].mean(0), TRUE_MEAN[j], atol=0.06)
        np.testing.assert_allclose(np.cov(x[z == j].T), TRUE_FULL[j], atol=0.1)


# ------------------------------------------------------------------ bad input
def test_invalid_arguments_and_data():
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        MultivariateNormal("banana")
    with pytest.raises(ValueError, match="reg_covar must be a finite number >= 0"):
        MultivariateNormal("full", reg_covar=-1e-3)
    with pytest.raises(ValueError, match="ecm_sweeps must be an integer >= 1"):
        MultivariateNormal("full", ecm_sweeps=0)
    with pytest.raises(ValueError, match="use priors.InverseWishart"):
        MultivariateNormal("full", cov_prior=priors.InverseGamma(2.0, 1.0))
    with pytest.raises(ValueError, match="use priors.InverseGamma"):
        MultivariateNormal("diag", cov_prior=priors.InverseWishart(3.0, np.eye(2)))
    with pytest.raises(TypeError, match="cov_prior must be a jaxem.priors object"):
        MultivariateNormal("full", cov_prior=3.0)
    model = em.Mixture(MultivariateNormal("full"), 2)
    with pytest.raises(ValueError, match=r"needs \(N, D\) data"):
        em.fit(model, np.arange(10.0), key=0)
    with pytest.raises(ValueError, match="D=2 features: use a"):
        em.fit(
            em.Mixture(MultivariateNormal(cov_prior=priors.InverseWishart(5.0, np.eye(3))), 2),
            FAITHFUL,
            key=0,
        )
    with pytest.raises(ValueError, match=r"mean_prior loc must be a scalar or have shape \(2,\)"):
        em.fit(
            em.Mixture(MultivariateNormal(mean_prior=priors.Normal(np.zeros(3), 1.0)), 2),
            FAITHFUL,
            key=0,
        )
    bad = em.MixtureParams(
        np.array([0.5, 0.5]),
        MultivariateNormalParams(np.zeros((2, 2)), np.array([np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])),
    )
    with pytest.raises(ValueError, match="outside its support"):
        em.fit(model, FAITHFUL, init=bad)


# ------------------------------------------------------------------ tied: a shared leaf


def test_tied_init_and_helpers():
    model = em.Mixture(MultivariateNormal("tied"), 3)
    params = em.MixtureParams(
        jnp.asarray(TRUE_W), MultivariateNormalParams(TRUE_MEAN, TRUE_FULL[0])
    )
    x = simulate("tied", 300, seed=0)
    ll = float(em.log_likelihood(model, params, x))
    assert ll == pytest.approx(ref_log_posterior(x, "tied", TRUE_W, TRUE_MEAN, TRUE_FULL[0]))
    res = em.fit(model, x, init=params, max_iter=5, tol=0.0)
    assert res.history[-1] >= res.history[0]
    # A tied component in a list of families is one component: its (D, D) covariance.
    both = em.Mixture([MultivariateNormal("tied"), MultivariateNormal("diag")])
    two = em.MixtureParams(
        jnp.asarray([0.6, 0.4]),
        (
            MultivariateNormalParams(TRUE_MEAN[0], TRUE_FULL[0]),
            MultivariateNormalParams(TRUE_MEAN[1], np.diag(TRUE_FULL[1])),
        ),
    )
    ll = float(em.log_likelihood(both, two, x))
    covs = np.stack([TRUE_FULL[0], np.diag(np.diag(TRUE_FULL[1]))])
    assert ll == pytest.approx(ref_log_posterior(x, "full", [0.6, 0.4], TRUE_MEAN[:2], covs))


def test_tied_mixture_sample():
    model = em.Mixture(MultivariateNormal("tied"), 3)
    params = em.MixtureParams(
        jnp.asarray(TRUE_W), MultivariateNormalParams(TRUE_MEAN, TRUE_FULL[0])
    )
    x, z = model.sample(jax.random.key(0), params, 20_000)
    x, z = np.asarray(x, np.float64), np.asarray(z)
    for j in range(3):
        np.testing.assert_allclose(x[z == j].mean(0), TRUE_MEAN[j], atol=0.06)
        np.testing.assert_allclose(np.cov(x[z == j].T), TRUE_FULL[0], atol=0.1)
