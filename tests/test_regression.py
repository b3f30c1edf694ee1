"""Mixtures of regressions and mixtures of experts against float64 NumPy/SciPy EM.

The families (``em.LinearRegression`` with and without priors,
``em.PoissonRegression``, ``em.LogisticRegression`` binary and with trials)
and the softmax gating (``em.SoftmaxGating``) are compared with an
independent reference EM (tests/scripts/numpy_regression.py: ``scipy.stats``
densities, ``lstsq`` and ``scipy.optimize`` M-steps) run from the same start
for the same number of iterations. The NPreg example of FlexMix (Leisch 2004)
checks that restarts find the maximum-likelihood fit.
"""

import functools
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem as em
from jaxem import priors

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import numpy_regression as ref  # noqa: E402

sys.path.pop(0)

N_ITER = 8
COEF_PRIOR = (1.0, 4.0)  # Normal(loc, scale) on the coefficients
VAR_PRIOR = (3.0, 10.0)  # InverseGamma(a, b) on the variances


# -- data --------------------------------------------------------------------------------------
def npreg(seed=0, n=100):
    """NPreg (Leisch 2004): y = 5x + e and y = 15 + 10x - x² + e, e ~ N(0, 3²), x ~ U[0, 10]."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, 2 * n)
    z = np.repeat([0, 1], n)
    y = np.where(z == 0, 5 * x, 15 + 10 * x - x**2) + rng.normal(0, 3, 2 * n)
    return {"x": np.column_stack([x, x**2]), "y": y}


NPREG_TRUTH = {  # component 0: y = 5x, component 1: y = 15 + 10x - x²
    "weights": np.array([0.5, 0.5]),
    "coef": np.array([[5.0, 0.0], [10.0, -1.0]]),
    "intercept": np.array([0.0, 15.0]),
    "var": np.array([9.0, 9.0]),
}


def poisson_data(seed=1, n=300):
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.uniform(-1, 1, n), rng.normal(0, 1, n)])
    z = rng.random(n) < 0.4
    eta = np.where(z, 1.0 + 1.0 * x[:, 0] - 0.5 * x[:, 1], 2.5 - 0.8 * x[:, 0] + 0.3 * x[:, 1])
    return {"x": x, "y": rng.poisson(np.exp(eta)).astype(float)}


def logistic_data(seed=2, n=400, trials=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 2))
    z = rng.random(n) < 0.5
    eta = np.where(z, -1.0 + 2.0 * x[:, 0], 1.5 - 1.0 * x[:, 0] + 2.0 * x[:, 1])
    if not trials:
        return {"x": x, "y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)}
    t = rng.integers(1, 13, n).astype(float)
    return {"x": x, "y": rng.binomial(t.astype(int), 1 / (1 + np.exp(-eta))).astype(float), "n": t}


def gating_data(seed=3, n=300):
    """Three experts y = a_k + b_k x + N(0, 1), chosen by softmax(w·Γ + γ), w (N, 2)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n)
    w = rng.normal(0, 1, (n, 2))
    logits = w @ np.array([[0, 0], [2.0, -1.0], [-1.0, -2.0]]).T + np.array([0, 0.3, -0.2])
    u = rng.random(n)[:, None]
    z = (u > np.cumsum(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 1)).sum(1)
    y = np.array([1.0, 10.0, 3.0])[z] + np.array([2.0, -1.0, 0.5])[z] * x + rng.normal(0, 1, n)
    return {"x": x[:, None], "y": y, "w": w}


# -- the cases: model, data, start -------------------------------------------------------------
def _perturbed(seed, coef, intercept):
    rng = np.random.default_rng(seed)
    coef = np.asarray(coef, float)
    intercept = np.asarray(intercept, float)
    return (
        coef + rng.normal(0, 0.3, coef.shape) * (1 + np.abs(coef)),
        intercept + rng.normal(0, 0.5, intercept.shape),
    )


def _linear_start(seed, data, coef, intercept, weights=(0.4, 0.6)):
    coef, intercept = _perturbed(seed, coef, intercept)
    k = len(intercept)
    return {
        "weights": np.asarray(weights, float),
        "coef": coef,
        "intercept": intercept,
        "var": np.full(k, np.var(data["y"])),
    }


def _glm_start(seed, coef, intercept):
    coef, intercept = _perturbed(seed, coef, intercept)
    return {"weights": np.array([0.55, 0.45]), "coef": coef, "intercept": intercept}


def _gating_start(data):
    start = _linear_start(13, data, [[2.0], [-1.0], [0.5]], [1.0, 10.0, 3.0], weights=None)
    del start["weights"]
    rng = np.random.default_rng(14)
    start["gate_coef"] = np.vstack([np.zeros(2), rng.normal(0, 0.5, (2, 2))])
    start["gate_intercept"] = np.concatenate([[0.0], rng.normal(0, 0.5, 2)])
    return start


LIN_DATA = npreg()
POIS_DATA = poisson_data()
LOGIT_DATA = logistic_data()
TRIALS_DATA = logistic_data(trials=True)
GATE_DATA = gating_data()

MODELS = {
    "linear": em.Mixture(em.LinearRegression(), 2),
    "linear-map": em.Mixture(
        em.LinearRegression(
            coef_prior=priors.Normal(*COEF_PRIOR), var_prior=priors.InverseGamma(*VAR_PRIOR)
        ),
        2,
    ),
    "poisson": em.Mixture(em.PoissonRegression(), 2),
    "logistic": em.Mixture(em.LogisticRegression(), 2),
    "logistic-trials": em.Mixture(em.LogisticRegression(trials="n"), 2),
    "gating": em.Mixture(em.LinearRegression(), 3, gating=em.SoftmaxGating("w")),
}

CASES = {  # name: (reference family, data, start, reference keywords)
    "linear": (
        "linear",
        LIN_DATA,
        _linear_start(10, LIN_DATA, NPREG_TRUTH["coef"], NPREG_TRUTH["intercept"]),
        {},
    ),
    "linear-map": (
        "linear",
        LIN_DATA,
        _linear_start(10, LIN_DATA, NPREG_TRUTH["coef"], NPREG_TRUTH["intercept"]),
        {"coef_prior": COEF_PRIOR, "var_prior": VAR_PRIOR},
    ),
    "poisson": ("poisson", POIS_DATA, _glm_start(11, [[1.0, -0.5], [-0.8, 0.3]], [1.0, 2.5]), {}),
    "logistic": ("logistic", LOGIT_DATA, _glm_start(12, [[2.0, 0.0], [-1.0, 2.0]], [-1, 1.5]), {}),
    "logistic-trials": (
        "logistic",
        TRIALS_DATA,
        _glm_start(12, [[2.0, 0.0], [-1.0, 2.0]], [-1.0, 1.5]),
        {},
    ),
    "gating": ("linear", GATE_DATA, _gating_start(GATE_DATA), {}),
}


# -- conversions -------------------------------------------------------------------------------
def to_jaxem(name, p):
    """A reference parameter dict as an em.MixtureParams for MODELS[name]."""
    if "gate_coef" in p:
        weights = em.GatingParams(p["gate_coef"], p["gate_intercept"])
    else:
        weights = p["weights"]
    if "var" in p:
        comps = em.LinearRegressionParams(p["coef"], p["intercept"], p["var"])
    elif name == "poisson":
        comps = em.PoissonRegressionParams(p["coef"], p["intercept"])
    else:
        comps = em.LogisticRegressionParams(p["coef"], p["intercept"])
    return em.MixtureParams(weights, comps)


def to_ref(params):
    """An em.MixtureParams as a dict of float64 arrays in the reference's layout."""
    c = params.components
    out = {"coef": np.asarray(c.coef, np.float64), "intercept": np.asarray(c.intercept, np.float64)}
    if hasattr(c, "var"):
        out["var"] = np.asarray(c.var, np.float64)
    if isinstance(params.weights, em.GatingParams):
        out["gate_coef"] = np.asarray(params.weights.gate_coef, np.float64)
        out["gate_intercept"] = np.asarray(params.weights.gate_intercept, np.float64)
    else:
        out["weights"] = np.asarray(params.weights, np.float64)
    return out


def assert_params_close(params, expected, rtol, atol=0.0):
    got = to_ref(params)
    assert set(got) == set(expected)
    for name in sorted(expected):
        scale = np.max(np.abs(expected[name]))  # entries near 0 are measured on their leaf's scale
        np.testing.assert_allclose(
            got[name], expected[name], rtol=rtol, atol=atol + rtol * scale, err_msg=name
        )


def assert_monotone(history, rel):
    history = np.asarray(history, np.float64)
    assert np.all(np.isfinite(history))
    drops = np.diff(history)
    assert np.all(drops >= -(rel * np.abs(history[1:]) + 1e-12)), (drops.min(), history)


@functools.cache
def fitted(name):
    """jaxem's and the reference's N_ITER EM iterations from the same start (float64)."""
    family, data, start, kw = CASES[name]
    with jax.enable_x64(True):
        res = em.fit(MODELS[name], data, init=to_jaxem(name, start), max_iter=N_ITER, tol=0.0)
    return res, ref.em(family, data, start, N_ITER, **kw)


# -- equal to the reference --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_em_equals_float64_reference_from_the_same_start(name):
    res, (params, lls, objectives) = fitted(name)
    assert res.n_iter == N_ITER
    assert_params_close(res.params, params, rtol=1e-6)
    assert res.log_likelihood == pytest.approx(lls[-1], rel=1e-9)
    np.testing.assert_allclose(res.history, objectives, rtol=1e-9)
    assert objectives[-1] > objectives[0] + 1.0  # the start was not already the fixed point


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_objective_never_decreases(name):
    res, _ = fitted(name)
    assert res.n_iter == N_ITER  # fit stops at a step that would lower the objective
    assert_monotone(res.history, 1e-12)


FLOAT32 = ["gating", "logistic-trials", "poisson"]


@pytest.mark.parametrize(
    "name",
    FLOAT32 + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(set(CASES) - set(FLOAT32))],
)
def test_float32_objective_never_decreases_and_reaches_the_float64_fixed_point(name):
    # fit refuses a step that lowers the objective (it stops there, with a
    # RuntimeWarning beyond rounding), so a monotone history alone proves
    # little: the float32 run must also follow float64 EM all the way.
    family, data, start, kw = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = em.fit(MODELS[name], data, init=to_jaxem(name, start), max_iter=400, tol=1e-7)
    assert res.converged
    assert_monotone(res.history, 2e-6)
    # The float32 Newton M-steps (GLMs, gating) stop at a Newton decrement of
    # ~10 eps, their coefficients ~3e-4 off the exact maximiser: the path
    # drifts by ~1e-5 of the objective (1e-7 for the closed forms).
    _, _, objectives = ref.em(family, data, start, res.n_iter, **kw)
    np.testing.assert_allclose(res.history, objectives, rtol=1e-4)
    if name != "logistic":  # (a flat likelihood: EM crawls for thousands of iterations)
        _, best = ref.em_to_convergence(family, data, start, **kw)
        assert res.objective == pytest.approx(best, rel=1e-5)


# -- NPreg (Leisch 2004) -----------------------------------------------------------------------
def test_npreg_restarts_find_the_maximum_likelihood_fit():
    with jax.enable_x64(True):
        res = em.fit(MODELS["linear"], LIN_DATA, key=jax.random.key(0), restarts=8, tol=1e-12)
    assert res.converged
    # The reference EM started at the truth, run to its fixed point.
    best, best_ll = ref.em_to_convergence("linear", LIN_DATA, NPREG_TRUTH)
    order = np.argsort(np.asarray(res.params.components.intercept))  # the line through 0 first
    got = to_ref(res.params)
    got = {k: v[order] for k, v in got.items()}
    assert res.log_likelihood >= best_ll - 1e-8 * abs(best_ll)
    for k in best:
        np.testing.assert_allclose(got[k], best[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # The estimates lie within 3 standard errors of the truth (the weighted
    # least-squares errors var (Aᵀ R A)⁻¹ at the fit).
    a = np.column_stack([np.ones(len(LIN_DATA["y"])), LIN_DATA["x"]])
    r = ref.posterior("linear", LIN_DATA, best)
    for k in range(2):
        cov = best["var"][k] * np.linalg.inv((a * r[:, k : k + 1]).T @ a)
        est = np.concatenate([[got["intercept"][k]], got["coef"][k]])
        truth = np.concatenate([[NPREG_TRUTH["intercept"][k]], NPREG_TRUTH["coef"][k]])
        z = (est - truth) / np.sqrt(np.diag(cov))
        assert np.all(np.abs(z) < 3), z
    assert np.all(np.abs(got["var"] - 9.0) < 3 * 9.0 * np.sqrt(2 / 100))
    assert np.all(np.abs(got["weights"] - 0.5) < 3 * np.sqrt(0.25 / 200))


# -- chunks and weights ------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gating", pytest.param("poisson", marks=pytest.mark.slow)])
def test_chunked_equals_unchunked(name):
    res, _ = fitted(name)
    _, data, start, _ = CASES[name]
    with jax.enable_x64(True):
        chunked = em.fit(
            MODELS[name], data, init=to_jaxem(name, start), max_iter=N_ITER, tol=0.0,
            chunk_size=64,
        )  # fmt: skip
    assert chunked.n_iter == N_ITER
    # Summation order moves where the Newton M-steps stop (a gradient of
    # ~1e-10 per unit of weight): up to 1e-11 of the objective.
    np.testing.assert_allclose(chunked.history, res.history, rtol=1e-10)
    assert_params_close(chunked.params, to_ref(res.params), rtol=1e-8)


def test_integer_sample_weight_equals_repeated_rows():
    _, data, start, _ = CASES["logistic-trials"]
    counts = np.random.default_rng(7).integers(0, 3, len(data["y"]))  # zeros drop rows
    repeated = {k: np.repeat(v, counts, axis=0) for k, v in data.items()}
    model = MODELS["logistic-trials"]
    init = to_jaxem("logistic-trials", start)
    with jax.enable_x64(True):
        weighted = em.fit(model, data, init=init, max_iter=N_ITER, tol=0.0, sample_weight=counts)
        rows = em.fit(model, repeated, init=init, max_iter=N_ITER, tol=0.0)
    assert weighted.n_iter == rows.n_iter == N_ITER
    np.testing.assert_allclose(weighted.history, rows.history, rtol=1e-10)
    assert_params_close(weighted.params, to_ref(rows.params), rtol=1e-8)
    expected, lls, _ = ref.em("logistic", data, start, N_ITER, sample_weight=counts)
    assert_params_close(weighted.params, expected, rtol=1e-6)
    assert weighted.log_likelihood == pytest.approx(lls[-1], rel=1e-9)


# -- the M-steps reach the maximiser -----------------------------------------------------------
CHECKED = ["linear-map", "logistic-trials", "gating"]


@pytest.mark.parametrize(
    "name",
    CHECKED + [pytest.param(n, marks=pytest.mark.slow) for n in sorted(set(CASES) - set(CHECKED))],
)
def test_check_m_step(name):
    _, data, start, _ = CASES[name]
    weights = np.random.default_rng(8).uniform(0.5, 2.0, len(data["y"]))
    with jax.enable_x64(True):
        report = em.check_m_step(
            MODELS[name], data, params=to_jaxem(name, start), sample_weight=weights
        )
    assert report.ok, report


# -- scoring -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_mean_matches_numpy(name):
    family, data, _, _ = CASES[name]
    res, _ = fitted(name)
    with jax.enable_x64(True):
        got = np.asarray(MODELS[name].predict_mean(res.params, data))
    expected = ref.predict_mean(family, data, to_ref(res.params))
    assert got.shape == (len(data["y"]),)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("name", ["gating", "logistic-trials"])
def test_responsibilities_and_scores_match_the_reference(name):
    family, data, _, _ = CASES[name]
    res, _ = fitted(name)
    model = MODELS[name]
    p = to_ref(res.params)
    with jax.enable_x64(True):
        resp = np.asarray(em.responsibilities(model, res.params, data))
        labels = np.asarray(em.predict(model, res.params, data))
        ll = float(em.log_likelihood(model, res.params, data))
        bic = em.bic(model, res.params, data)
    expected = ref.posterior(family, data, p)
    np.testing.assert_allclose(resp, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(labels, np.argmax(expected, axis=1))
    ref_ll = ref.em(family, data, p, 0)[1][0]
    assert ll == pytest.approx(ref_ll, rel=1e-10)
    n_par = em.n_parameters(model, res.params)
    assert bic == pytest.approx(-2 * ref_ll + n_par * np.log(len(data["y"])), rel=1e-10)


# -- parameter counts --------------------------------------------------------------------------
def _counted(name, fit_intercept=True):
    start = CASES[name][2]
    k, p = start["coef"].shape
    per = p + fit_intercept + ("var" in start)
    weights = k - 1 if "weights" in start else (k - 1) * (start["gate_coef"].shape[1] + 1)
    return k * per + weights


@pytest.mark.parametrize("name", sorted(CASES))
def test_n_parameters(name):
    _, _, start, _ = CASES[name]
    assert em.n_parameters(MODELS[name], to_jaxem(name, start)) == _counted(name)


def test_n_parameters_of_the_examples():
    # Linear, K = 2, P = 2: 2 (2 coef + intercept + var) + 1 weight.
    assert em.n_parameters(MODELS["linear"], to_jaxem("linear", CASES["linear"][2])) == 9
    # Gating, K = 3, P = 1, Q = 2: 3 (1 + 1 + 1) + (3 - 1)(2 + 1), no weights.
    assert em.n_parameters(MODELS["gating"], to_jaxem("gating", CASES["gating"][2])) == 15
    # Without intercepts: the (held) intercepts are not parameters.
    no_icpt = em.Mixture(em.LinearRegression(fit_intercept=False), 2)
    start = dict(CASES["linear"][2], intercept=np.zeros(2))
    assert em.n_parameters(no_icpt, to_jaxem("linear", start)) == 9 - 2


def test_fixed_gating_entries_are_held_and_counted_once():
    """fixed= on the gating: held entries keep their start, the others move, and the
    reference row is subtracted once whether or not fixed= covers it."""
    _, data, start, _ = CASES["gating"]
    model, init = MODELS["gating"], to_jaxem("gating", start)
    coef_mask = np.array([[True, True], [False, False], [False, False]])
    mask = em.MixtureParams(em.GatingParams(coef_mask, np.array([True, True, False])), False)
    res = em.fit(model, data, init=init, max_iter=5, tol=0.0, fixed=mask)
    g = res.params.weights
    assert float(g.gate_intercept[1]) == np.float32(start["gate_intercept"][1])  # held
    assert float(g.gate_intercept[2]) != start["gate_intercept"][2]  # free
    assert not np.allclose(np.asarray(g.gate_coef[1:]), start["gate_coef"][1:])
    np.testing.assert_array_equal(np.asarray(g.gate_coef[0]), 0.0)
    # 9 component entries + gating rows 1-2 (4 coefficients) + intercept 2.
    assert em.n_parameters(model, res.params, fixed=mask) == 9 + 4 + 1
    # Holding the variances: 3 fewer.
    assert em.n_parameters(model, res.params, fixed={"var"}) == 15 - 3


# -- clear errors ------------------------------------------------------------------------------
def _bad_start_gating():
    start = dict(CASES["gating"][2])
    start["gate_coef"] = start["gate_coef"] + 1.0  # row 0 no longer the reference
    return to_jaxem("gating", start)


ERRORS = {
    "missing response": (
        "linear",
        {"x": LIN_DATA["x"]},
        False,
        ValueError,
        r"no field 'y'",
    ),
    "missing covariates": ("poisson", {"y": POIS_DATA["y"]}, False, ValueError, r"no field 'x'"),
    "missing trials": (
        "logistic-trials",
        {"x": TRIALS_DATA["x"], "y": TRIALS_DATA["y"]},
        False,
        ValueError,
        r"no field 'n'",
    ),
    "array data": (
        "linear",
        LIN_DATA["y"],
        False,
        TypeError,
        r"LinearRegression read.*dict of arrays",
    ),
    "negative counts": (
        "poisson",
        dict(POIS_DATA, y=np.where(np.arange(300) == 3, -1.0, POIS_DATA["y"])),
        False,
        ValueError,
        "counts",
    ),
    "fractional counts": (
        "poisson",
        dict(POIS_DATA, y=POIS_DATA["y"] + 0.5),
        False,
        ValueError,
        "counts",
    ),
    "binary response not 0/1": (
        "logistic",
        dict(LOGIT_DATA, y=LOGIT_DATA["y"] * 2),
        False,
        ValueError,
        "0 or 1",
    ),
    "successes above trials": (
        "logistic-trials",
        dict(TRIALS_DATA, y=TRIALS_DATA["n"] + 1),
        False,
        ValueError,
        r"between 0 and data\['n'\]",
    ),
    "gating field missing": (
        "gating",
        {"x": GATE_DATA["x"], "y": GATE_DATA["y"]},
        False,
        ValueError,
        r"SoftmaxGating: the data has no field 'w'",
    ),
    "gating reference row": (
        "gating",
        GATE_DATA,
        True,
        ValueError,
        "reference",
    ),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_clear_errors(case):
    name, data, bad_init, error, message = ERRORS[case]
    kw = {"init": _bad_start_gating()} if bad_init else {"key": 0}
    with pytest.raises(error, match=message):
        em.fit(MODELS[name], data, **kw)


def test_gating_and_weights_prior_are_exclusive():
    with pytest.raises(ValueError, match="weights_prior"):
        em.Mixture(
            em.LinearRegression(),
            2,
            gating=em.SoftmaxGating("w"),
            weights_prior=priors.Dirichlet(2.0),
        )


def test_gating_needs_regression_families_and_priors_fit_the_covariates():
    with pytest.raises(TypeError, match="gating= needs regression families"):
        em.Mixture(em.Normal(), 2, gating=em.SoftmaxGating("w"))
    wrong = em.Mixture(em.LinearRegression(coef_prior=priors.Normal(0.0, np.ones((2, 2)))), 2)
    with pytest.raises(ValueError, match="coef_prior's scale"):
        em.fit(wrong, LIN_DATA, key=0)
    no_icpt = em.Mixture(em.LinearRegression(fit_intercept=False), 2)
    with pytest.raises(ValueError, match="intercepts must be 0"):
        em.fit(no_icpt, LIN_DATA, init=to_jaxem("linear", CASES["linear"][2]))
    with pytest.raises(TypeError, match="fit_stream"):
        em.fit_stream(MODELS["linear"], LIN_DATA, batch_size=50, key=0)


def test_glm_coefficient_prior_equals_the_reference():
    """A Normal prior on the Poisson coefficients (not the intercepts): the Newton M-step
    against SciPy's optimiser of the same penalised objective, one EM step at a time."""
    _, data, start, _ = CASES["poisson"]
    prior = (0.5, 0.7)
    with jax.enable_x64(True):
        model = em.Mixture(em.PoissonRegression(coef_prior=priors.Normal(*prior)), 2)
        res = em.fit(model, data, init=to_jaxem("poisson", start), max_iter=N_ITER, tol=0.0)
    params, _, objectives = ref.em("poisson", data, start, N_ITER, coef_prior=prior)
    assert_params_close(res.params, params, rtol=1e-6)
    np.testing.assert_allclose(res.history, objectives, rtol=1e-9)


def test_newton_update_ignores_units_of_zero_weight_that_overflow():
    """A unit far out (exp(η) overflows float32) with zero responsibility must not stop
    the component's Newton update: the update equals SciPy's weighted fit without it."""
    from jaxem.families.base import closed_form_for

    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(0, 1, 50), [100.0]])[:, None]
    y = np.concatenate([rng.poisson(np.exp(0.5 + 0.3 * x[:50, 0])), [1.0]])
    data = {"x": x.astype(np.float32), "y": y.astype(np.float32)}
    resp = np.ones((51, 2), np.float32) * 0.5
    resp[-1] = [0.0, 1.0]
    family = em.PoissonRegression()
    start = em.PoissonRegressionParams(
        np.array([[1.0], [0.5]], np.float32), np.zeros(2, np.float32)
    )
    new = closed_form_for(family).update(family, start, data, resp, np.ones(51, np.float32))
    wr = resp.astype(np.float64)
    expected = ref.glm_m_step(
        "poisson",
        {"x": x, "y": y},
        wr,
        {"coef": np.array([[1.0], [0.5]]), "intercept": np.zeros(2)},
    )
    np.testing.assert_allclose(np.asarray(new.coef)[0], expected["coef"][0], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(new.intercept)[0], expected["intercept"][0], atol=1e-4)


def test_an_empty_component_keeps_its_parameters():
    """Responsibilities 0 for a component: its closed-form update is defined (no NaN)."""
    from jaxem.families.base import closed_form_for

    family = em.LinearRegression()
    data = {k: np.asarray(v, np.float32) for k, v in LIN_DATA.items()}
    start = to_jaxem("linear", CASES["linear"][2]).components
    start = jax.tree.map(lambda a: np.asarray(a, np.float32), start)
    resp = np.zeros((len(data["y"]), 2), np.float32)
    resp[:, 1] = 1.0
    cf = closed_form_for(family)
    w = np.ones(len(data["y"]), np.float32)
    new = cf.update(family, start, cf.sufficient_stats(family, start, data, resp, w))
    np.testing.assert_array_equal(np.asarray(new.coef)[0], start.coef[0])
    assert np.all(np.isfinite(np.asarray(new.coef))) and np.all(np.asarray(new.var) > 0)


class _Gauss(NamedTuple):
    coef: jax.Array
    intercept: jax.Array
    var: jax.Array


class _CustomGaussianRegression(em.RegressionFamily):
    """Normal regression written by a user: no closed form, so the gradient M-step."""

    constraints = {"var": em.constraints.positive}

    def log_prob_eta(self, components, eta, data):
        y = self.response_values(data)[:, None]
        return jax.scipy.stats.norm.logpdf(y, eta, jnp.sqrt(components.var))

    def mean_from_eta(self, components, eta, data):
        return eta


def test_custom_regression_family_reaches_the_closed_form_fit():
    """A custom em.RegressionFamily (gradient M-step by autodiff and L-BFGS) and
    em.LinearRegression (closed form) find the same maximum from the same start."""
    _, data, start, _ = CASES["linear"]
    with jax.enable_x64(True):
        closed = em.fit(MODELS["linear"], data, init=to_jaxem("linear", start), tol=1e-12)
        custom = em.Mixture(_CustomGaussianRegression(), 2)
        init = em.MixtureParams(
            start["weights"], _Gauss(start["coef"], start["intercept"], start["var"])
        )
        res = em.fit(custom, data, init=init, tol=1e-12)
    assert res.objective == pytest.approx(closed.objective, rel=1e-9)
    for field in ("coef", "intercept", "var"):  # EM stops on the objective: 1e-5 here
        np.testing.assert_allclose(
            getattr(res.params.components, field),
            getattr(closed.params.components, field),
            rtol=1e-4,
            atol=2e-5,
        )
