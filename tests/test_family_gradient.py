"""Gradient-only families (StudentT, Gamma, VonMises): densities, sampling, fits, bad input.

No closed form is registered for these families, so every fit here runs the
gradient M-step. Each density is checked against scipy.stats; each fit
against the generating parameters and a SciPy BFGS maximisation of the same
float64 mixture objective written with scipy.stats, started from the fit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import jaxem as em
from jaxem import priors
from jaxem.families.base import closed_form_for
from jaxem.families.gamma import Gamma, GammaParams
from jaxem.families.studentt import StudentT, StudentTParams
from jaxem.families.vonmises import (
    VonMises,
    VonMisesParams,
    circular,
    sample_von_mises,
    wrap_angle,
)

N = 300

# The generating mixtures. StudentT tails are heavy (df 2 and 3) so that the
# ML df is finite on these samples; VonMises puts one component at 2.9, near
# the ±π seam, so that its data wrap around.
T_TRUTH = em.MixtureParams(
    np.array([0.6, 0.4]),
    StudentTParams(loc=np.array([-4.0, 4.0]), scale=np.array([1.0, 0.7]), df=np.array([2.0, 3.0])),
)
G_TRUTH = em.MixtureParams(
    np.array([0.5, 0.5]),
    GammaParams(concentration=np.array([2.0, 20.0]), rate=np.array([2.0, 2.0])),
)
V_TRUTH = em.MixtureParams(
    np.array([0.3, 0.4, 0.3]),
    VonMisesParams(loc=np.array([-2.0, 0.3, 2.9]), concentration=np.array([8.0, 5.0, 20.0])),
)
DF_PRIOR = (2.0, 0.1)  # priors.Gamma(concentration, rate) on df (Juárez & Steel 2010)


# -- float64 references, written with scipy.stats only -----------------------------------------


def t_logpdf(x, p):
    loc, scale, df = p
    return stats.t.logpdf(x[:, None], df, loc, scale)


def gamma_logpdf(x, p):
    conc, rate = p
    return stats.gamma.logpdf(x[:, None], conc, scale=1.0 / rate)


def vonmises_logpdf(x, p):
    loc, kappa = p
    return stats.vonmises.logpdf(x[:, None], kappa, loc=loc)


def mixture_objective(x, weights, comp_logpdf, fields, log_prior=0.0):
    """log p(x | θ) + log prior in float64; ``fields`` are (K,) arrays."""
    ll = logsumexp(np.log(weights)[None, :] + comp_logpdf(x, fields), axis=1).sum()
    return ll + log_prior


def scipy_improvement(x, weights, fields, positive, comp_logpdf, field_prior=None):
    """How much BFGS, started at ``(weights, fields)``, raises the float64 objective.

    Coordinates: weights by additive log-ratio, positive fields by log.
    ``field_prior(fields) -> log prior``. Returns ``(improvement, optimised fields)``.
    """
    k = len(weights)
    w = np.asarray(weights, np.float64)
    w = w / w.sum()

    def unpack(z):
        alr = np.append(z[: k - 1], 0.0)
        wt = np.exp(alr - logsumexp(alr))
        parts = z[k - 1 :].reshape(len(fields), k)
        fs = [np.exp(p) if pos else p for p, pos in zip(parts, positive, strict=True)]
        return wt, fs

    def neg(z):
        wt, fs = unpack(z)
        lp = 0.0 if field_prior is None else field_prior(fs)
        return -mixture_objective(x, wt, comp_logpdf, fs, lp)

    z0 = np.concatenate(
        [np.log(w[:-1]) - np.log(w[-1])]
        + [np.log(f) if pos else f for f, pos in zip(fields, positive, strict=True)]
    )
    start = -neg(z0)
    opt = optimize.minimize(neg, z0, method="BFGS", options={"gtol": 1e-7, "maxiter": 2000})
    return -opt.fun - start, unpack(opt.x)


def np_fields(params, names):
    comps = params.components
    return [np.asarray(getattr(comps, f), np.float64) for f in names]


def assert_monotone(history, rel):
    history = np.asarray(history, np.float64)
    assert np.all(np.isfinite(history)) and len(history) >= 2
    drops = np.diff(history)
    assert np.all(drops >= -(rel * np.abs(history[1:]) + 1e-12)), (drops.min(), history)


def truth_as(params, dtype):
    return jax.tree.map(lambda a: jnp.asarray(a, dtype), params)


def simulate(truth, seed=0):
    """N draws from the mixture ``truth`` with NumPy's generators (independent of jaxem).

    jaxem's own samplers are checked against scipy above; simulating the fit
    data with NumPy keeps the fits' reference independent and saves compiling
    the samplers again.
    """
    rng = np.random.default_rng(100 + seed)
    z = rng.choice(len(truth.weights), size=N, p=truth.weights)
    c = truth.components
    if isinstance(c, StudentTParams):
        x = c.loc[z] + c.scale[z] * rng.standard_t(c.df[z])
    elif isinstance(c, GammaParams):
        x = rng.gamma(c.concentration[z], 1 / c.rate[z])
    else:
        x = rng.vonmises(c.loc[z], c.concentration[z])  # in [-π, π]
    return x, z


# Normal-looking data: the ML df of a Student-t mixture is infinite here.
NORMAL_X = np.concatenate(
    [np.random.default_rng(11).normal(-4, 1, 180), np.random.default_rng(12).normal(4, 0.7, 120)]
)


def fit_mixture(family, x, n_components, *, x64, seed=0, restarts=4):
    """Fit with restarts in the given dtype; params come back as float64 NumPy."""
    with jax.enable_x64(x64):
        model = em.Mixture(family, n_components=n_components)
        # A straggling restart stuck between two optima holds up the vmapped
        # batch: cap the iterations and check that the best one converged.
        res = em.fit(model, x, key=jax.random.key(seed), restarts=restarts, max_iter=150)
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), res.params)
    assert res.converged
    return model, x, res, params


# -- densities -------------------------------------------------------------------------------


def _random_params(rng, family, shape):
    if isinstance(family, StudentT):
        return StudentTParams(
            rng.normal(0, 2, shape), rng.uniform(0.3, 3, shape), rng.uniform(0.5, 40, shape)
        )
    if isinstance(family, Gamma):
        return GammaParams(rng.uniform(0.3, 30, shape), rng.uniform(0.1, 5, shape))
    return VonMisesParams(rng.uniform(-np.pi, np.pi, shape), rng.uniform(0.01, 50, shape))


def _scipy_logpdf(family, p, x):
    if isinstance(family, StudentT):
        return stats.t.logpdf(x, p.df, p.loc, p.scale)
    if isinstance(family, Gamma):
        return stats.gamma.logpdf(x, p.concentration, scale=1.0 / p.rate)
    return stats.vonmises.logpdf(x, p.concentration, loc=p.loc)


def _random_data(rng, family, shape):
    if isinstance(family, Gamma):
        return rng.gamma(2.0, 3.0, shape)
    if isinstance(family, VonMises):
        return rng.uniform(-3 * np.pi, 3 * np.pi, shape)  # any real angle
    return rng.standard_t(2.0, shape) * 3


FAMILIES = [StudentT(), Gamma(), VonMises()]


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: type(f).__name__)
def test_log_prob_matches_scipy(family):
    """Random parameters, (N,) data and (N, D) independent features (summed), in float64."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        log_prob = jax.jit(family.log_prob)
        for shape, data_shape in [((), (40,)), ((3,), (40, 3))]:
            for _ in range(5):
                p = _random_params(rng, family, shape)
                x = _random_data(rng, family, data_shape)
                got = log_prob(jax.tree.map(jnp.asarray, p), jnp.asarray(x))
                ref = _scipy_logpdf(family, p, x)
                ref = ref if ref.ndim == 1 else ref.sum(-1)
                assert got.shape == (40,)
                np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-10, atol=1e-10)


def test_log_prob_extremes_stay_accurate_in_float32():
    """Large df (the normal limit) and large κ: no cancellation, no overflow."""
    x = np.linspace(-3, 3, 13)
    for df in [1e3, 1e6, 1e9]:
        p = StudentTParams(jnp.float32(0.5), jnp.float32(1.5), jnp.float32(df))
        got = StudentT().log_prob(p, jnp.asarray(x, jnp.float32))
        np.testing.assert_allclose(got, stats.t.logpdf(x, df, 0.5, 1.5), atol=2e-5)
    ang = np.linspace(-0.05, 0.05, 11)
    for kappa in [1e2, 1e4, 1e6]:
        p = VonMisesParams(jnp.float32(0.0), jnp.float32(kappa))
        got = VonMises().log_prob(p, jnp.asarray(ang, jnp.float32))
        ref = stats.vonmises.logpdf(ang, kappa)
        assert np.all(np.isfinite(np.asarray(got)))
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_von_mises_is_periodic_in_x_and_loc():
    with jax.enable_x64(True):
        fam = VonMises()
        x = jnp.linspace(-3, 3, 7)
        p = VonMisesParams(jnp.asarray(2.5), jnp.asarray(3.0))
        shifted = VonMisesParams(jnp.asarray(2.5 - 4 * np.pi), jnp.asarray(3.0))
        base = fam.log_prob(p, x)
        np.testing.assert_allclose(fam.log_prob(p, x + 2 * np.pi), base, atol=1e-12)
        np.testing.assert_allclose(fam.log_prob(shifted, x), base, atol=1e-12)


def test_wrap_angle_and_circular_constraint():
    a = np.array([-3 * np.pi, -np.pi, -0.5, 0.0, np.pi, 3.5, 7.0, 100.0])
    with jax.enable_x64(True):
        w = np.asarray(wrap_angle(jnp.asarray(a)))
        assert np.all((w > -np.pi) & (w <= np.pi))
        np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
        np.testing.assert_allclose(np.sin(w), np.sin(a), atol=1e-12)
        g = jax.vmap(jax.grad(circular.to_constrained))(jnp.asarray(a))
        np.testing.assert_allclose(g, 1.0)
    assert circular.check(np.array([10.0])) and not circular.check(np.array([np.nan]))


# -- sampling --------------------------------------------------------------------------------


def test_samples_match_scipy_distributions():
    """KS tests of each family's ``sample`` (two components each, drawn in one jitted call)."""
    n = 4000
    t = StudentTParams(jnp.asarray([1.0, -2.0]), jnp.asarray([2.0, 0.5]), jnp.asarray([3.0, 30.0]))
    g = GammaParams(jnp.asarray([0.5, 20.0]), jnp.asarray([2.0, 0.5]))
    v = VonMisesParams(jnp.asarray([3.0, -1.0]), jnp.asarray([10.0, 2.0]))

    @jax.jit
    def draw(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return StudentT().sample(k1, t, n), Gamma().sample(k2, g, n), VonMises().sample(k3, v, n)

    dt, dg, dv = (np.asarray(a, np.float64) for a in draw(jax.random.key(3)))
    assert dt.shape == dg.shape == dv.shape == (n, 2)
    assert np.all(dg > 0)
    assert np.all((dv > -np.pi) & (dv <= np.float32(np.pi)))
    assert dv[:, 0].min() < -np.pi + 0.3  # the component at 3.0 wraps past π
    for j in range(2):
        ref = stats.t(float(t.df[j]), float(t.loc[j]), float(t.scale[j])).cdf
        assert stats.kstest(dt[:, j], ref).pvalue > 1e-3
        ref = stats.gamma(float(g.concentration[j]), scale=1 / float(g.rate[j])).cdf
        assert stats.kstest(dg[:, j], ref).pvalue > 1e-3
        # scipy's von Mises is supported on [loc - π, loc + π]: compare centred draws.
        centred = np.angle(np.exp(1j * (dv[:, j] - float(v.loc[j]))))
        assert stats.kstest(centred, stats.vonmises(float(v.concentration[j])).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    "x64", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["float32", "float64"]
)
def test_von_mises_sampler_across_concentrations(x64):
    """Best–Fisher rejection: uniform at κ = 0, N(0, 1/κ) at large κ, KS against scipy between."""
    kappas = [0.0, 1e-3, 0.7, 4.0, 60.0, 1e5]
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        conc = jnp.repeat(jnp.asarray(kappas, dtype)[None, :], 4000, axis=0)
        draws = sample_von_mises(jax.random.key(5), conc)
        assert draws.dtype == dtype
        draws = np.asarray(draws, np.float64)
    assert np.all(np.abs(draws) <= np.float32(np.pi))  # float32 π rounds up
    for j, kappa in enumerate(kappas):
        if kappa == 0.0:
            ref = stats.uniform(-np.pi, 2 * np.pi).cdf
        elif kappa >= 1e4:  # scipy's cdf series is slow there; the normal limit is exact enough
            ref = stats.norm(0, 1 / np.sqrt(kappa)).cdf
        else:
            ref = stats.vonmises(kappa).cdf
        assert stats.kstest(draws[:, j], ref).pvalue > 1e-3, kappa
    # The mean resultant length E cos θ = I₁(κ)/I₀(κ).
    from scipy.special import i0e, i1e

    for j, kappa in enumerate(kappas[1:], start=1):
        m, se = np.cos(draws[:, j]).mean(), np.cos(draws[:, j]).std() / np.sqrt(len(draws))
        assert abs(m - i1e(kappa) / i0e(kappa)) < 4 * se + 1e-6, kappa


# -- random starts ---------------------------------------------------------------------------


@pytest.mark.slow
def test_init_shapes_support_and_vmap():
    """(N, D) starts of every family under jit and vmap (the fits exercise (N,) data)."""
    rng = np.random.default_rng(1)
    data = [jnp.asarray(_random_data(rng, fam, (50, 2)), jnp.float32) for fam in FAMILIES]

    @jax.jit
    def starts(keys):
        return [
            jax.vmap(fam.init, in_axes=(0, None, None))(keys, x, 4)
            for fam, x in zip(FAMILIES, data, strict=True)
        ]

    for fam, x, st in zip(
        FAMILIES, data, starts(jax.random.split(jax.random.key(0), 3)), strict=True
    ):
        for field, leaf in st._asdict().items():
            assert leaf.shape == (3, 4, 2), field
            assert np.all(np.isfinite(np.asarray(leaf)))
            if fam.constraints.get(field) is em.constraints.positive:
                assert np.all(np.asarray(leaf) > 0), field
        if isinstance(fam, VonMises):
            loc = np.asarray(st.loc)
            assert np.all((loc > -np.pi) & (loc <= np.float32(np.pi)))
        lp = jax.vmap(fam.log_prob, in_axes=(0, None))(jax.tree.map(lambda a: a[0], st), x)
        assert np.all(np.isfinite(np.asarray(lp)))


def test_no_closed_form_is_registered():
    for family in FAMILIES:
        assert closed_form_for(family) is None


# -- fits ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t_data():
    return simulate(T_TRUTH)[0]


@pytest.fixture(scope="module")
def studentt_ml_float32(t_data):
    return fit_mixture(StudentT(), t_data, 2, x64=False)


@pytest.fixture(scope="module")
def studentt_df_prior_float64():
    """The documented remedy for a runaway df: a df prior, on the normal-looking data."""
    return fit_mixture(StudentT(df_prior=priors.Gamma(*DF_PRIOR)), NORMAL_X, 2, x64=True)


@pytest.fixture(scope="module")
def gamma_ml_float32():
    return fit_mixture(Gamma(), simulate(G_TRUTH)[0], 2, x64=False)


@pytest.fixture(scope="module")
def vonmises_ml_float64():
    return fit_mixture(VonMises(), simulate(V_TRUTH)[0], 3, x64=True)


def _check_maximum(fit, truth, comp_logpdf, names, positive, rel, field_prior=None):
    """The fit beats the truth, equals the scipy objective and SciPy cannot improve it."""
    model, x, res, params = fit
    w = params.weights / params.weights.sum()
    fields = np_fields(params, names)
    lp = 0.0 if field_prior is None else field_prior(fields)
    ours = mixture_objective(x, w, comp_logpdf, fields, lp)
    np.testing.assert_allclose(res.objective, ours, rtol=2e-6)
    if truth is not None:
        true_fields = np_fields(truth, names)
        lp_true = 0.0 if field_prior is None else field_prior(true_fields)
        assert ours >= mixture_objective(x, truth.weights, comp_logpdf, true_fields, lp_true)
    gain, _ = scipy_improvement(x, w, fields, positive, comp_logpdf, field_prior)
    assert gain <= rel * abs(ours), (gain, ours)
    return w, fields


def _ordered(w, fields, key_field=0):
    order = np.argsort(fields[key_field])
    return w[order], [f[order] for f in fields]


@pytest.mark.slow
def test_studentt_ml_fit_is_a_maximum_and_recovers_truth(studentt_ml_float32):
    w, (loc, scale, df) = _ordered(
        *_check_maximum(
            studentt_ml_float32,
            T_TRUTH,
            t_logpdf,
            ["loc", "scale", "df"],
            [False, True, True],
            1e-5,
        )
    )
    np.testing.assert_allclose(w, [0.6, 0.4], atol=0.08)
    np.testing.assert_allclose(loc, [-4.0, 4.0], atol=0.3)
    np.testing.assert_allclose(scale, [1.0, 0.7], rtol=0.35)
    assert np.all((df > 1) & (df < 10)), df  # a finite ML df on these heavy-tailed samples
    assert_monotone(studentt_ml_float32[2].history, 2e-6)  # float32


@pytest.mark.slow
def test_studentt_df_runs_off_on_normal_data_without_a_prior(studentt_ml_float32):
    """Light tails: the likelihood increases towards df = ∞; the fit stays finite, df large."""
    model = studentt_ml_float32[0]  # same model, same shapes: no recompilation
    res = em.fit(model, NORMAL_X, key=jax.random.key(0), restarts=4, max_iter=150)
    df = np.asarray(res.params.components.df)
    assert np.isfinite(res.objective) and np.all(np.isfinite(df))
    assert df.max() > 50, df
    assert_monotone(res.history, 2e-6)
    # Its log-likelihood is at least that of the normal mixture fitted to the
    # two halves (df = ∞ is the supremum, which contains it).
    z = (NORMAL_X > 0).astype(int)
    normal = sum(
        stats.norm.logpdf(NORMAL_X[z == j], NORMAL_X[z == j].mean(), NORMAL_X[z == j].std()).sum()
        + (z == j).sum() * np.log((z == j).mean())
        for j in range(2)
    )
    assert res.log_likelihood >= normal - 1e-3 * abs(normal)


def test_studentt_df_prior_gives_a_finite_map_on_normal_data(studentt_df_prior_float64):
    a, b = DF_PRIOR

    def df_prior(fields):
        return stats.gamma.logpdf(fields[2], a, scale=1 / b).sum()

    w, (loc, scale, df) = _ordered(
        *_check_maximum(
            studentt_df_prior_float64,
            None,
            t_logpdf,
            ["loc", "scale", "df"],
            [False, True, True],
            1e-8,
            field_prior=df_prior,
        )
    )
    np.testing.assert_allclose(loc, [-4.0, 4.0], atol=0.2)
    np.testing.assert_allclose(w, [0.6, 0.4], atol=0.01)
    assert np.all((df > 5) & (df < 300)), df  # finite: the prior's tail beats the flat likelihood
    assert_monotone(studentt_df_prior_float64[2].history, 1e-12)  # float64


def test_gamma_ml_fit_is_a_maximum_and_recovers_truth(gamma_ml_float32):
    def mean_first(w, fields):
        conc, rate = fields
        order = np.argsort(conc / rate)
        return w[order], conc[order], rate[order]

    w, fields = _check_maximum(
        gamma_ml_float32, G_TRUTH, gamma_logpdf, ["concentration", "rate"], [True, True], 1e-6
    )
    w, conc, rate = mean_first(w, fields)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=0.08)
    np.testing.assert_allclose(conc / rate, [1.0, 10.0], rtol=0.15)
    np.testing.assert_allclose(conc, [2.0, 20.0], rtol=0.4)
    assert_monotone(gamma_ml_float32[2].history, 2e-6)  # float32


@pytest.mark.slow
def test_vonmises_ml_fit_is_a_maximum_wrapped_and_recovers_truth(vonmises_ml_float64):
    w, fields = _check_maximum(
        vonmises_ml_float64, V_TRUTH, vonmises_logpdf, ["loc", "concentration"], [False, True], 1e-8
    )
    loc, kappa = fields
    assert np.all((loc > -np.pi) & (loc <= np.pi))  # reported wrapped
    w, (loc, kappa) = _ordered(w, [loc, kappa])
    np.testing.assert_allclose(w, [0.3, 0.4, 0.3], atol=0.08)
    np.testing.assert_allclose(loc, [-2.0, 0.3, 2.9], atol=0.15)
    # κ from ~100 points per component: within a factor 2.
    np.testing.assert_allclose(np.log(kappa), np.log([8.0, 5.0, 20.0]), atol=np.log(2))
    assert_monotone(vonmises_ml_float64[2].history, 1e-12)


def test_vonmises_m_step_is_scipy_mle_and_returns_loc_wrapped():
    """One component's gradient M-step is the ML fit (scipy's), found across the ±π seam.

    Started at loc = 3 + 2π, the search moves continuously in the unconstrained
    coordinate; the result comes back in (-π, π].
    """
    from jaxem.mstep import maximize

    fam = VonMises()
    x = np.random.default_rng(2).vonmises(3.05, 30.0, 200)
    kappa_ref, loc_ref, _ = stats.vonmises.fit(x, fscale=1)
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        start = VonMisesParams(jnp.asarray(3.0 + 2 * np.pi), jnp.asarray(5.0))

        def objective(p):
            return jnp.mean(fam.log_prob(p, xj))

        leaves = VonMisesParams(circular, em.constraints.positive)
        out = jax.jit(lambda p: maximize(objective, p, leaves))(start)
        assert float(objective(out)) >= float(objective(start))
    loc = float(out.loc)
    assert -np.pi < loc <= np.pi
    assert abs(np.angle(np.exp(1j * (loc - loc_ref)))) < 1e-6
    np.testing.assert_allclose(float(out.concentration), kappa_ref, rtol=1e-5)


@pytest.mark.slow
def test_vonmises_loc_across_the_seam_is_wrapped_after_fitting():
    """A start unwrapped by 2π (loc + 2π) converges to the same, wrapped, answer."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.vonmises(3.05, 30.0, 150), rng.vonmises(0.0, 3.0, 150)])
    model = em.Mixture(VonMises(), n_components=2)
    start = em.MixtureParams(
        np.array([0.5, 0.5]), VonMisesParams(np.array([3.0 + 2 * np.pi, 0.2]), np.array([5.0, 5.0]))
    )
    res = em.fit(model, x, init=start)
    loc = np.asarray(res.params.components.loc)
    assert np.all((loc > -np.pi) & (loc <= np.float32(np.pi))), loc
    assert abs(np.angle(np.exp(1j * (loc[0] - 3.05)))) < 0.05
    assert_monotone(res.history, 2e-6)


# -- bad input -------------------------------------------------------------------------------


def test_gamma_rejects_non_positive_data():
    model = em.Mixture(Gamma(), n_components=2)
    with pytest.raises(ValueError, match=r"Gamma: x must be > 0.*-1\.0"):
        em.fit(model, np.array([1.0, -1.0, 2.0, 3.0]), key=0)
    with pytest.raises(ValueError, match=r"Gamma: x must be > 0.*0\.0"):
        em.fit(model, np.array([[1.0, 0.0], [2.0, 3.0]]), key=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StudentT(df_prior=2.0),
        lambda: StudentT(loc_prior="flat"),
        lambda: Gamma(rate_prior=1.0),
        lambda: VonMises(concentration_prior=(1.0, 2.0)),
    ],
)
def test_bad_priors_are_rejected(make):
    with pytest.raises(TypeError, match="_prior must be a jaxem.priors object or a function"):
        make()


def test_priors_reach_the_objective():
    """A field prior (object or function) is added to the objective the fit reports."""
    fam = Gamma(concentration_prior=priors.Gamma(2.0, 0.5), rate_prior=lambda r: -r)
    p = GammaParams(jnp.asarray([2.0, 3.0]), jnp.asarray([1.0, 4.0]))
    expected = stats.gamma.logpdf([2.0, 3.0], 2.0, scale=2.0).sum() - 5.0
    np.testing.assert_allclose(float(fam.log_prior(p)), expected, rtol=1e-6)


# -- slow: (N, D) fits, float32/float64 monotonicity for every family ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "family, truth",
    [
        (StudentT(df_prior=priors.Gamma(*DF_PRIOR)), T_TRUTH),
        (StudentT(), T_TRUTH),
        (Gamma(), G_TRUTH),
        (VonMises(), V_TRUTH),
    ],
    ids=["StudentT-df-prior", "StudentT", "Gamma", "VonMises"],
)
def test_history_is_monotone_for_every_family(family, truth, x64):
    """Default tests: StudentT (df prior) in float64 and Gamma in float32."""
    for seed in range(2):
        x = simulate(truth, seed)[0]
        _, _, res, _ = fit_mixture(family, x, len(truth.weights), x64=x64, seed=seed)
        assert_monotone(res.history, 1e-12 if x64 else 2e-6)
        with jax.enable_x64(x64):
            model = em.Mixture(family, n_components=len(truth.weights))
            dtype = jnp.float64 if x64 else jnp.float32
            truth_obj = float(em.log_likelihood(model, truth_as(truth, dtype), x))
            truth_obj += float(model.log_prior(truth_as(truth, dtype)))
        assert res.objective >= truth_obj - 1e-6 * abs(truth_obj)


@pytest.mark.slow
def test_independent_features_fit_recovers_both_features():
    """(N, D) data: each feature its own parameters; the fit is a maximum of the summed density."""
    rng = np.random.default_rng(4)
    z = rng.integers(0, 2, N)
    x = np.stack(
        [rng.gamma(np.where(z, 20.0, 2.0), 1 / 2.0), rng.gamma(np.where(z, 3.0, 30.0), 1 / 3.0)],
        axis=1,
    )
    with jax.enable_x64(True):
        model = em.Mixture(Gamma(), n_components=2)
        res = em.fit(model, x, key=jax.random.key(0), restarts=4)
    conc = np.asarray(res.params.components.concentration)
    rate = np.asarray(res.params.components.rate)
    assert conc.shape == rate.shape == (2, 2)
    order = np.argsort(conc[:, 0] / rate[:, 0])
    np.testing.assert_allclose((conc / rate)[order], [[1.0, 10.0], [10.0, 1.0]], rtol=0.15)
    assert_monotone(res.history, 1e-12)

    def comp(xx, fields):
        c, r = fields
        return stats.gamma.logpdf(xx[:, None, :], c.reshape(2, 2), scale=1 / r.reshape(2, 2)).sum(
            -1
        )

    w = np.asarray(res.params.weights, np.float64)
    fields = [conc.ravel(), rate.ravel()]

    def neg(zz):
        alr = np.array([zz[0], 0.0])
        wt = np.exp(alr - logsumexp(alr))
        return -mixture_objective(x, wt, comp, [np.exp(zz[1:5]), np.exp(zz[5:])])

    z0 = np.concatenate([[np.log(w[0] / w[1])], np.log(fields[0]), np.log(fields[1])])
    opt = optimize.minimize(neg, z0, method="BFGS", options={"gtol": 1e-7})
    assert -opt.fun - (-neg(z0)) <= 1e-8 * abs(opt.fun)
