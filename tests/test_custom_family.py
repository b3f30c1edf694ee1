"""Custom families: the Weibull, Laplace and heterogeneous mixtures of examples/custom_density.py.

Each is checked against an independent float64 reference: scipy.stats
densities and SciPy maximisation of the same mixture objective, a NumPy
weighted median, and the gradient M-step as a second route to the same
maximum. Mis-specified families must fail with a message that names the fix.
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import jaxem as em
from jaxem import constraints
from jaxem.check import check_m_step

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "custom_density.py"
_spec = importlib.util.spec_from_file_location("custom_density_example", _PATH)
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)  # defines the families and registers the Laplace update
Weibull, Laplace, LaplaceParams = example.Weibull, example.Laplace, example.LaplaceParams

RNG = np.random.default_rng(0)
# Well separated: P(Weibull(5, 1) > 2.5) ~ 1e-43, P(Weibull(8, 6) < 2.5) ~ 1e-3.
WEIBULL_X = np.concatenate([RNG.weibull(5.0, 200) * 1.0, RNG.weibull(8.0, 150) * 6.0])
LAPLACE_X = np.concatenate([RNG.laplace(-2.0, 0.5, 150), RNG.laplace(3.0, 1.0, 150)])
HETERO_Z = RNG.uniform(size=400) < 0.4  # True: the Laplace component
HETERO_X = np.where(HETERO_Z, RNG.laplace(-3.0, 1.0, 400), RNG.normal(3.0, np.sqrt(1.5), 400))


def improvement(neg, z0, method="BFGS"):
    """How much a SciPy minimiser started at z0 lowers ``neg`` (float64)."""
    options = {"gtol": 1e-8} if method == "BFGS" else {"xtol": 1e-10, "ftol": 1e-14}
    opt = optimize.minimize(neg, z0, method=method, options=options)
    return neg(z0) - opt.fun, opt.x


def weights_from(alr):
    a = np.append(alr, 0.0)
    return np.exp(a - logsumexp(a))


# -- (a) Weibull: a density and an init, nothing else -------------------------------------------


def weibull_objective(x, w, shape, scale):
    comp = stats.weibull_min.logpdf(x[:, None], shape, scale=scale)
    return logsumexp(np.log(w) + comp, axis=1).sum()


def test_weibull_mixture_is_the_scipy_maximum():
    model = em.Mixture(Weibull(), n_components=2)
    res = em.fit(model, WEIBULL_X, key=jax.random.key(0), restarts=4)
    assert res.converged and res.params.components["shape"].shape == (2,)
    comps = jax.tree.map(lambda a: np.asarray(a, np.float64), res.params.components)
    order = np.argsort(comps["scale"])
    w = np.asarray(res.params.weights, np.float64)[order]
    w = w / w.sum()
    shape, scale = comps["shape"][order], comps["scale"][order]

    ours = weibull_objective(WEIBULL_X, w, shape, scale)
    np.testing.assert_allclose(res.objective, ours, rtol=2e-6)
    assert ours >= weibull_objective(WEIBULL_X, np.array([4, 3]) / 7, [5.0, 8.0], [1.0, 6.0])

    def neg(z):
        return -weibull_objective(WEIBULL_X, weights_from(z[:1]), np.exp(z[1:3]), np.exp(z[3:]))

    z0 = np.concatenate([[np.log(w[0] / w[1])], np.log(shape), np.log(scale)])
    gain, z = improvement(neg, z0)
    assert gain <= 1e-6 * abs(ours), gain  # a float32 fit, checked in float64
    np.testing.assert_allclose(np.exp(z[1:]), np.concatenate([shape, scale]), rtol=2e-3)

    # Separated components (a gap from 1.43 to 2.31 in this sample): each is, to
    # ~1e-3, scipy's own Weibull fit of its cluster.
    for j, part in enumerate([WEIBULL_X[WEIBULL_X < 2.0], WEIBULL_X[WEIBULL_X >= 2.0]]):
        k, _, lam = stats.weibull_min.fit(part, floc=0)
        np.testing.assert_allclose([shape[j], scale[j]], [k, lam], rtol=5e-3)
    np.testing.assert_allclose(shape, [5.0, 8.0], rtol=0.2)
    np.testing.assert_allclose(scale, [1.0, 6.0], rtol=0.05)


# -- (b) Laplace: a registered closed form -------------------------------------------------------


def numpy_laplace_update(x, resp, weight):
    """Weighted median and mean absolute deviation per component, by brute force."""
    locs, scales = [], []
    for k in range(resp.shape[1]):
        wk = resp[:, k] * weight
        # The median minimises Σ w |x - m|, a convex piecewise-linear function
        # whose minimum is at a data point: try them all.
        cost = np.abs(x[:, None] - x[None, :]) @ wk
        m = x[np.argmin(cost)]
        locs.append(m)
        scales.append(np.sum(wk * np.abs(x - m)) / wk.sum())
    return np.array(locs), np.array(scales)


@pytest.fixture(scope="module")
def laplace_model():
    return em.Mixture(Laplace(), n_components=2)


def test_laplace_closed_form_passes_check_m_step(laplace_model):
    weights = np.random.default_rng(1).uniform(0.2, 3.0, len(LAPLACE_X))
    with jax.enable_x64(True):
        for key in range(2):
            for sample_weight in (None, weights):
                report = check_m_step(
                    laplace_model, LAPLACE_X, key=key, sample_weight=sample_weight
                )
                assert report.ok, report
                piece = report.pieces[1]
                assert piece.name == "Laplace components" and not piece.exact
                assert piece.objective_after > piece.objective_before


def test_laplace_update_is_the_exact_weighted_median(laplace_model):
    """The update equals a brute-force maximiser, and no direction from it ascends."""
    rng = np.random.default_rng(2)
    # Responsibilities of a rough start, computed with scipy.
    lj = np.log(0.5) + stats.laplace.logpdf(LAPLACE_X[:, None], [-1.0, 2.0], [1.0, 2.0])
    resp = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
    weight = rng.uniform(0.2, 3.0, len(LAPLACE_X))
    update = jax.jit(example.laplace_update, static_argnums=0)
    with jax.enable_x64(True):
        current = LaplaceParams(jnp.asarray([-1.0, 2.0]), jnp.asarray([1.0, 2.0]))
        args = (jnp.asarray(LAPLACE_X), jnp.asarray(resp), jnp.asarray(weight))
        new = update(laplace_model.family, current, *args)
        # A tie: half the weight on each side of the gap between 1 and 2.
        tie = update(
            laplace_model.family,
            LaplaceParams(jnp.asarray([0.0]), jnp.asarray([1.0])),
            jnp.asarray([0.0, 1.0, 2.0, 3.0]),
            jnp.ones((4, 1)),
            jnp.ones(4),
        )
    loc_ref, scale_ref = numpy_laplace_update(LAPLACE_X, resp, weight)
    np.testing.assert_allclose(np.asarray(new.loc), loc_ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(new.scale), scale_ref, rtol=1e-10)
    # Every point of [1, 2] is a median; the update takes the midpoint, and the
    # spread (the same anywhere in [1, 2]) is that of the brute-force answer.
    np.testing.assert_allclose([float(tie.loc[0]), float(tie.scale[0])], [1.5, 1.0])

    def q(loc, scale, k):  # the component's part of Q, in float64 with scipy
        return np.sum(resp[:, k] * weight * stats.laplace.logpdf(LAPLACE_X, loc, scale))

    for k in range(2):
        best = q(loc_ref[k], scale_ref[k], k)
        moves = [(1e-6, 1), (-1e-6, 1), (1e-3, 1), (-1e-3, 1), (0, 1.001), (0, 0.999)]
        for d_loc, f_scale in moves:
            assert q(loc_ref[k] + d_loc, scale_ref[k] * f_scale, k) < best


def test_a_broken_update_fails_the_check():
    class BrokenLaplace(Laplace):
        pass

    @em.register_m_step(BrokenLaplace, exact=lambda family: False)
    def too_wide(family, params, x, resp, sample_weight):
        good = example.laplace_update(family, params, x, resp, sample_weight)
        return good._replace(scale=3 * good.scale)  # lowers Q: not an ascent step

    with jax.enable_x64(True):
        report = check_m_step(em.Mixture(BrokenLaplace(), 2), LAPLACE_X)
    assert not report.ok and not report.pieces[1].ok
    with pytest.raises(AssertionError, match="FAILED"):
        report.raise_if_failed()


def laplace_objective(x, w, loc, scale):
    comp = stats.laplace.logpdf(x[:, None], loc, scale)
    return logsumexp(np.log(w) + comp, axis=1).sum()


# The weighted median moves between data points in jumps, so EM's gain per
# iteration can be tiny just before a jump: these fits run to EM's fixed point
# (tol=0: stop when an iteration gains nothing), which the closed forms make cheap.
EXACT = {"tol": 0.0, "max_iter": 500}


@pytest.fixture(scope="module")
def laplace_fit(laplace_model):
    with jax.enable_x64(True):
        return em.fit(laplace_model, LAPLACE_X, key=jax.random.key(0), restarts=4, **EXACT)


@pytest.mark.slow
def test_laplace_fit_is_the_maximum(laplace_fit):
    p = laplace_fit.params
    w, loc, scale = (np.asarray(a) for a in (p.weights, p.components.loc, p.components.scale))
    ours = laplace_objective(LAPLACE_X, w, loc, scale)
    np.testing.assert_allclose(laplace_fit.objective, ours, rtol=1e-12)

    def neg(z):
        return -laplace_objective(LAPLACE_X, weights_from(z[:1]), z[1:3], np.exp(z[3:]))

    z0 = np.concatenate([[np.log(w[0] / w[1])], loc, np.log(scale)])
    gain, _ = improvement(neg, z0, method="Powell")  # derivative-free: kinks in loc
    assert gain <= 1e-10 * abs(ours), gain
    order = np.argsort(loc)
    np.testing.assert_allclose(loc[order], [-2.0, 3.0], atol=0.2)
    np.testing.assert_allclose(scale[order], [0.5, 1.0], rtol=0.25)


@pytest.mark.slow
def test_laplace_closed_form_and_the_gradient_path_agree(laplace_fit):
    """The same density without the closed form, started near the maximum.

    log f is not differentiable in loc at the data points, and the maximum
    sits on one. L-BFGS stalls on such a kink (every step along its search
    direction crosses it and loses), so the gradient path stops close to, not
    at, the maximum; the closed form is never worse.
    """

    class GradientLaplace(Laplace):  # registration is per class: no closed form here
        pass

    p = laplace_fit.params
    with jax.enable_x64(True):
        start = p._replace(
            components=LaplaceParams(p.components.loc + 0.05, p.components.scale * 1.05)
        )
        grad = em.fit(em.Mixture(GradientLaplace(), 2), LAPLACE_X, init=start, **EXACT)
    assert grad.objective <= laplace_fit.objective + 1e-9 * abs(laplace_fit.objective)
    np.testing.assert_allclose(grad.objective, laplace_fit.objective, rtol=2e-5)
    np.testing.assert_allclose(grad.params.components.loc, p.components.loc, rtol=1e-3)
    np.testing.assert_allclose(grad.params.components.scale, p.components.scale, rtol=1e-2)
    np.testing.assert_allclose(grad.params.weights, p.weights, atol=1e-3)


# -- (c) a heterogeneous mixture -----------------------------------------------------------------


def hetero_objective(x, w, lap_loc, lap_scale, mean, var):
    comp = np.stack(
        [stats.laplace.logpdf(x, lap_loc, lap_scale), stats.norm.logpdf(x, mean, np.sqrt(var))],
        axis=1,
    )
    return logsumexp(np.log(w) + comp, axis=1).sum()


def test_heterogeneous_mixture_recovers_truth_and_is_a_maximum():
    model = em.Mixture([Laplace(), em.Normal()])
    with jax.enable_x64(True):
        res = em.fit(model, HETERO_X, key=jax.random.key(0), restarts=8, **EXACT)
    lap, nor = res.params.components
    assert isinstance(res.params.components, tuple) and len(res.params.components) == 2
    assert isinstance(lap, LaplaceParams) and isinstance(nor, em.NormalParams)
    assert lap.loc.shape == lap.scale.shape == nor.mean.shape == nor.var.shape == ()
    w = np.asarray(res.params.weights)
    fields = [float(lap.loc), float(lap.scale), float(nor.mean), float(nor.var)]
    # Near each component's own ML estimate from the points it generated.
    lap_x, nor_x = HETERO_X[HETERO_Z], HETERO_X[~HETERO_Z]
    med = np.median(lap_x)
    own = [med, np.mean(np.abs(lap_x - med)), nor_x.mean(), nor_x.var()]
    np.testing.assert_allclose(w, [HETERO_Z.mean(), 1 - HETERO_Z.mean()], atol=0.03)
    np.testing.assert_allclose(fields, own, rtol=0.1, atol=0.1)
    np.testing.assert_allclose(fields, [-3.0, 1.0, 3.0, 1.5], rtol=0.25)

    ours = hetero_objective(HETERO_X, w, *fields)
    np.testing.assert_allclose(res.objective, ours, rtol=1e-12)
    assert ours >= hetero_objective(HETERO_X, np.array([0.4, 0.6]), -3.0, 1.0, 3.0, 1.5)

    def neg(z):
        return -hetero_objective(
            HETERO_X, weights_from(z[:1]), z[1], np.exp(z[2]), z[3], np.exp(z[4])
        )

    z0 = np.array([np.log(w[0] / w[1]), fields[0], np.log(fields[1]), fields[2], np.log(fields[3])])
    # Derivative-free: the objective has kinks at the data points in the Laplace loc.
    gain, _ = improvement(neg, z0, method="Powell")
    assert gain <= 1e-9 * abs(ours), gain


@pytest.mark.slow
def test_heterogeneous_sample_draws_each_component():
    model = em.Mixture([Laplace(), em.Normal()])
    truth = em.MixtureParams(
        jnp.array([0.3, 0.7]),
        (
            LaplaceParams(jnp.array(-3.0), jnp.array(1.0)),
            em.NormalParams(jnp.array(3.0), jnp.array(2.0)),
        ),
    )
    x, z = model.sample(jax.random.key(0), truth, 4000)
    x, z = np.asarray(x, np.float64), np.asarray(z)
    assert abs(z.mean() - 0.7) < 4 * np.sqrt(0.21 / 4000)
    assert stats.kstest(x[z == 0], stats.laplace(-3.0, 1.0).cdf).pvalue > 1e-3
    assert stats.kstest(x[z == 1], stats.norm(3.0, np.sqrt(2.0)).cdf).pvalue > 1e-3


# -- mis-specified custom families ----------------------------------------------------------------


class _WeibullDensity(em.Family):
    constraints = {"shape": constraints.positive, "scale": constraints.positive}

    def log_prob(self, params, x):
        k, lam = params["shape"], params["scale"]
        return jnp.log(k / lam) + (k - 1) * jnp.log(x / lam) - (x / lam) ** k


class NoInit(_WeibullDensity):
    pass


START = em.MixtureParams(
    np.array([0.5, 0.5]), {"shape": np.array([1.0, 2.0]), "scale": np.array([1.0, 5.0])}
)


def test_a_family_without_init_needs_a_start():
    model = em.Mixture(NoInit(), n_components=2)
    with pytest.raises(NotImplementedError, match=r"must define init\(key, x, n_components\)"):
        em.fit(model, WEIBULL_X, key=jax.random.key(0))
    # Given parameters, everything but drawing starts works.
    ll = em.log_likelihood(model, START, WEIBULL_X)
    w, shape, scale = START.weights, START.components["shape"], START.components["scale"]
    np.testing.assert_allclose(ll, weibull_objective(WEIBULL_X, w, shape, scale), rtol=1e-5)


@pytest.mark.slow
def test_a_family_without_init_fits_from_a_start():
    res = em.fit(em.Mixture(NoInit(), n_components=2), WEIBULL_X, init=START)
    assert res.converged and np.isfinite(res.objective)


class SummedLogProb(Weibull):
    def log_prob(self, params, x):  # the total, not one value per row
        return jnp.sum(super().log_prob(params, x))


class ColumnLogProb(Weibull):
    def log_prob(self, params, x):  # (N, 1) instead of (N,)
        return super().log_prob(params, x)[:, None]


@pytest.mark.parametrize("family", [SummedLogProb, ColumnLogProb])
@pytest.mark.parametrize("start", ["key", "init"])
def test_a_wrong_shaped_log_prob_is_named(family, start):
    model = em.Mixture(family(), n_components=2)
    kwargs = {"key": jax.random.key(0)} if start == "key" else {"init": START}
    with pytest.raises(ValueError, match=r"log_prob\(params, x\) must return .*\(350,\)"):
        em.fit(model, WEIBULL_X, max_iter=2, **kwargs)
