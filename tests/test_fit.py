"""The fit loop: restarts, results, helpers, starting points, dtypes and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp, softmax

import jaxem as em
from jaxem import _programs, priors

X = np.random.default_rng(3).normal(size=300) * np.repeat([1.0, 0.5], 150) + np.repeat([0, 4], 150)


@pytest.fixture(scope="module")
def ml_model():
    return em.Mixture(em.Normal(), n_components=2)


@pytest.fixture(scope="module")
def ml_fit(ml_model):
    return em.fit(ml_model, X, key=jax.random.key(0), restarts=8)


def scipy_log_joint(params, x):
    w = np.asarray(params.weights, np.float64)
    mu = np.asarray(params.components.mean, np.float64)
    sd = np.sqrt(np.asarray(params.components.var, np.float64))
    return np.log(w) + stats.norm.logpdf(np.asarray(x, np.float64)[:, None], mu, sd)


def test_best_restart_is_returned(ml_fit):
    assert ml_fit.restart_objectives.shape == (8,)
    assert ml_fit.objective == pytest.approx(np.max(ml_fit.restart_objectives), rel=0, abs=0)
    assert ml_fit.history[-1] == pytest.approx(ml_fit.objective, rel=1e-7)
    assert len(ml_fit.history) == ml_fit.n_iter + 1
    assert ml_fit.converged


def test_result_matches_an_independent_evaluation(ml_model, ml_fit):
    """objective/log_likelihood/responsibilities/predict against scipy at the fitted params."""
    lj = scipy_log_joint(ml_fit.params, X)
    ll = logsumexp(lj, axis=1).sum()
    assert ml_fit.log_likelihood == pytest.approx(ll, rel=1e-6)
    assert ml_fit.objective == pytest.approx(ll, rel=1e-6)  # maximum likelihood: no prior
    resp = np.asarray(em.responsibilities(ml_model, ml_fit.params, X))
    np.testing.assert_allclose(resp, softmax(lj, axis=1), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(em.predict(ml_model, ml_fit.params, X)), lj.argmax(1))
    assert float(em.log_likelihood(ml_model, ml_fit.params, X)) == pytest.approx(ll, rel=1e-6)


def test_fit_is_an_ml_optimum(ml_fit):
    """The gradient of the scipy log-likelihood vanishes at the fit (float64 finite differences)."""
    from scipy.optimize import approx_fprime

    w = np.asarray(ml_fit.params.weights, np.float64)
    mu = np.asarray(ml_fit.params.components.mean, np.float64)
    var = np.asarray(ml_fit.params.components.var, np.float64)

    def ll(z):
        ww = np.array([z[0], 1 - z[0]])
        return logsumexp(
            np.log(ww) + stats.norm.logpdf(X[:, None], z[1:3], np.sqrt(z[3:])), axis=1
        ).sum()

    g = approx_fprime(np.concatenate([[w[0]], mu, var]), ll, 1e-7)
    assert np.max(np.abs(g)) < 0.05, g  # vs O(100) away from the optimum


def test_restarts_draw_different_starts_and_same_key_repeats(ml_model):
    a = em.fit(ml_model, X, key=jax.random.key(1), restarts=6, max_iter=0)
    b = em.fit(ml_model, X, key=jax.random.key(2), restarts=6, max_iter=0)
    c = em.fit(ml_model, X, key=jax.random.key(1), restarts=6, max_iter=0)
    assert len(np.unique(a.restart_objectives)) > 1  # restarts differ within a fit
    assert not np.array_equal(a.restart_objectives, b.restart_objectives)  # keys differ
    np.testing.assert_array_equal(a.restart_objectives, c.restart_objectives)  # determinism
    assert a.n_iter == 0 and not a.converged


def test_int_seed_and_legacy_key_are_keys(ml_model):
    a = em.fit(ml_model, X, key=5, restarts=3, max_iter=0)
    b = em.fit(ml_model, X, key=jax.random.key(5), restarts=3, max_iter=0)
    np.testing.assert_array_equal(a.restart_objectives, b.restart_objectives)
    c = em.fit(ml_model, X, key=jax.random.PRNGKey(5), restarts=3, max_iter=0)
    assert np.all(np.isfinite(c.restart_objectives))


def test_init_from_arrays(ml_model):
    """A mixture start built from plain arrays; max_iter=0 evaluates exactly that start."""
    init = em.MixtureParams(
        weights=np.array([0.3, 0.7]),
        components=em.NormalParams(mean=np.array([-1.0, 3.0]), var=np.array([2.0, 1.0])),
    )
    res = em.fit(ml_model, X, init=init, max_iter=0)
    ref = logsumexp(scipy_log_joint(init, X), axis=1).sum()
    assert res.objective == pytest.approx(ref, rel=1e-6)
    as_dict = {"weights": init.weights, "components": init.components}
    res2 = em.fit(ml_model, X, init=as_dict, max_iter=0)
    assert res2.objective == res.objective
    full = em.fit(ml_model, X, init=init)
    assert full.objective > res.objective


def test_sample_weight_equals_repeated_rows(ml_model):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=X.shape[0])
    init = em.MixtureParams(
        np.array([0.5, 0.5]), em.NormalParams(np.array([0.0, 3.0]), np.array([1.0, 1.0]))
    )
    a = em.fit(ml_model, X, init=init, sample_weight=counts, max_iter=200, tol=0.0)
    b = em.fit(ml_model, np.repeat(X, counts), init=init, max_iter=200, tol=0.0)
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=2e-4, atol=2e-4)
    assert a.log_likelihood == pytest.approx(b.log_likelihood, rel=1e-5)


def test_convergence_warning_when_max_iter_is_hit(ml_model):
    with pytest.warns(em.ConvergenceWarning, match="max_iter=2"):
        res = em.fit(ml_model, X, key=jax.random.key(0), restarts=2, max_iter=2)
    assert not res.converged and res.n_iter == 2


def test_float32_default_and_float64_under_x64(ml_model):
    res = em.fit(ml_model, X, key=jax.random.key(0), restarts=2)
    assert res.params.weights.dtype == jnp.float32
    with jax.enable_x64(True):
        res64 = em.fit(ml_model, X, key=jax.random.key(0), restarts=2)
        assert res64.params.components.mean.dtype == jnp.float64
    # float32 converges to the float64 optimum's digits (the default tol is tight enough).
    for u, v in zip(jax.tree.leaves(res.params), jax.tree.leaves(res64.params), strict=True):
        np.testing.assert_allclose(
            np.sort(np.asarray(u)), np.sort(np.asarray(v)), rtol=2e-4, atol=1e-4
        )


# ---- bad input: errors before tracing, naming the argument -------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=np.array([1.0, np.nan, 2.0])), ValueError, "1 NaN"),
        (dict(x=np.array([1.0, np.inf, 2.0])), ValueError, "infinite"),
        (dict(x=np.zeros((3, 2, 2))), ValueError, "ndim=3"),
        (dict(x=np.zeros(0)), ValueError, "empty"),
        (dict(x=["a", "b"]), TypeError, "numbers"),
        (dict(x=np.array([1.0])), ValueError, "n_components=2 is larger"),
        (dict(restarts=0), ValueError, "restarts must be >= 1"),
        (dict(restarts=2.5), TypeError, "restarts must be an integer"),
        (dict(tol=-1.0), ValueError, "tol must be"),
        (dict(tol=float("nan")), ValueError, "tol must be"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(key=None), ValueError, "key="),
        (dict(key="seed"), TypeError, "key must be"),
        (dict(sample_weight=np.ones(3)), ValueError, "sample_weight must have shape"),
        (dict(sample_weight=-np.ones(300)), ValueError, "sample_weight must be finite and >= 0"),
    ],
)
def test_bad_input_is_rejected_before_tracing(ml_model, kwargs, error, match):
    args = dict(x=X, key=jax.random.key(0), restarts=2)
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(error, match=match):
        em.fit(ml_model, x, **args)


def test_bad_init_is_rejected(ml_model):
    good = em.MixtureParams(
        np.array([0.5, 0.5]), em.NormalParams(np.array([0.0, 1.0]), np.array([1.0, 1.0]))
    )
    with pytest.raises(ValueError, match="restarts=3 with init"):
        em.fit(ml_model, X, init=good, restarts=3)
    with pytest.raises(ValueError, match="not both"):
        em.fit(ml_model, X, init=good, key=jax.random.key(0))
    with pytest.raises(ValueError, match="sum to 1"):
        em.fit(ml_model, X, init=good._replace(weights=np.array([0.5, 0.6])))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        em.fit(ml_model, X, init=good._replace(weights=np.array([1.0])))
    bad_var = good._replace(components=em.NormalParams(np.zeros(2), np.array([1.0, -1.0])))
    with pytest.raises(ValueError, match="outside its support"):
        em.fit(ml_model, X, init=bad_var)
    short = good._replace(components=em.NormalParams(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError, match="leading axis of n_components=2"):
        em.fit(ml_model, X, init=short)


def test_bad_model_arguments():
    with pytest.raises(TypeError, match="instance"):
        em.Mixture(em.Normal, n_components=2)
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        em.Mixture(em.Normal(), n_components=0)
    with pytest.raises(ValueError, match="concentration >= 1"):
        em.Mixture(em.Normal(), n_components=2, weights_prior=priors.Dirichlet(0.5))
    with pytest.raises(ValueError, match="3 concentrations but n_components=2"):
        em.Mixture(em.Normal(), n_components=2, weights_prior=priors.Dirichlet([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="mean_prior must be"):
        em.Normal(mean_prior=3.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        priors.InverseGamma(2.0, -1.0)
    with pytest.raises(TypeError, match="log_joint must be callable"):
        em.Model("not a function")
    with pytest.raises(TypeError, match="em.Model or em.Mixture"):
        em.fit(lambda p, x: x, X, key=0)


def test_custom_model_errors():
    model = em.Model(lambda p, x: x[:, None] * p["a"])  # no init
    with pytest.raises(ValueError, match="no init"):
        em.fit(model, X, key=jax.random.key(0), restarts=2)
    with pytest.raises(ValueError, match=r"must return shape \(N, K\)"):
        em.fit(em.Model(lambda p, x: x * p["a"]), X, init={"a": np.array(1.0)})
    with pytest.raises(ValueError, match="not parameters"):
        em.fit(
            em.Model(lambda p, x: x[:, None] * p["a"], constraints={"b": em.constraints.real}),
            X,
            init={"a": np.array([1.0])},
        )


def test_zero_weight_rows_are_dropped_even_where_no_component_can_explain_them():
    """A zero-weight row with density 0 everywhere must not turn the fit into nan."""
    x = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 2.0])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    model = em.Mixture(em.Categorical(3), 2)
    init = em.MixtureParams(
        np.array([0.5, 0.5]), em.CategoricalParams(np.array([[0.6, 0.4, 0.0], [0.3, 0.7, 0.0]]))
    )
    weighted = em.fit(model, x, init=init, sample_weight=w)
    dropped = em.fit(model, x[:-1], init=init)
    assert np.isfinite(weighted.objective)
    assert weighted.objective == pytest.approx(dropped.objective, rel=1e-6)
    np.testing.assert_allclose(
        np.asarray(weighted.params.components.probs),
        np.asarray(dropped.params.components.probs),
        atol=1e-5,
    )


def test_zero_weight_rows_do_not_seed_random_starts(ml_model):
    """Rows with weight 0 far away must neither seed nor capture a component."""
    far = np.full(150, 1000.0)
    x = np.concatenate([X, far])
    w = np.concatenate([np.ones_like(X), np.zeros_like(far)])
    weighted = em.fit(ml_model, x, key=jax.random.key(0), restarts=4, sample_weight=w)
    dropped = em.fit(ml_model, X, key=jax.random.key(0), restarts=4)
    assert weighted.objective == pytest.approx(dropped.objective, rel=1e-5)
    assert np.all(np.asarray(weighted.params.components.mean) < 100)


def test_a_decreasing_m_step_is_caught_not_called_converged():
    from jaxem import demos

    def bad_m_step(params, x, resp, w):  # ignores the data: lowers the objective
        return {"p": jnp.array([0.1, 0.9])}

    model = em.Model(
        demos.coin_log_joint, constraints={"p": em.constraints.unit_interval}, m_step=bad_m_step
    )
    with pytest.warns(RuntimeWarning, match="lowered the objective"):
        res = em.fit(model, demos.COIN_HEADS, init={"p": [0.6, 0.5]})
    assert not res.converged and res.n_iter == 0
    np.testing.assert_allclose(np.asarray(res.params["p"]), [0.6, 0.5])


def test_an_equal_new_model_reuses_the_compiled_program():
    """Programs are keyed by the model's value: an equal new em.Mixture finds
    the program an earlier one built; a different setting builds its own."""
    first = em.fit(em.Mixture(em.Normal(), 2), X, key=jax.random.key(3), max_iter=7)
    before = dict(_programs._PROGRAMS)
    again = em.fit(em.Mixture(em.Normal(), 2), X, key=jax.random.key(3), max_iter=7)
    assert dict(_programs._PROGRAMS).keys() == before.keys()
    assert again.objective == first.objective
    em.fit(em.Mixture(em.Normal(min_var=1e-3), 2), X, key=jax.random.key(3), max_iter=7)
    assert len(_programs._PROGRAMS.keys() - before.keys()) == 1


def test_init_fits_check_shapes_once_and_keep_the_models_value():
    """em.fit(init=) validates init against log_joint once per shape signature
    (a per-instance cache): the model's value key, which equal models share
    programs by, is the same after such a fit, and a wrong init still fails."""
    model = em.Mixture(em.Normal(), 2)
    key = _programs.value_key(model)
    start = em.fit(model, X, key=jax.random.key(0), max_iter=3).params
    em.fit(model, X, init=start, max_iter=3)
    em.fit(model, X, init=start, max_iter=3)
    assert _programs.value_key(model) == key == _programs.value_key(em.Mixture(em.Normal(), 2))
    three = em.MixtureParams(np.full(3, 1 / 3), em.NormalParams(np.zeros(3), np.ones(3)))
    with pytest.raises(ValueError):
        em.fit(model, X, init=three._replace(weights=np.full(2, 0.5)), max_iter=3)


def test_value_keys_tell_custom_functions_and_settings_apart():
    def log_prob_a(params, x):
        return -0.5 * (x[:, None] - params["loc"]) ** 2

    def log_prob_b(params, x):
        return -0.5 * (x[:, None] - params["loc"]) ** 2

    key = _programs.value_key
    assert key(em.MultivariateNormal("full")) == key(em.MultivariateNormal("full"))
    assert key(em.MultivariateNormal("full")) != key(em.MultivariateNormal("diag"))
    assert key(em.Mixture(em.Normal(), 2)) != key(em.Mixture(em.Normal(), 3))
    assert key(priors.Dirichlet(2.0)) != key(priors.Dirichlet(3.0))
    assert key(np.arange(3.0)) != key(np.arange(3.0) + 1)
    assert key(jnp.ones(2)) == key(jnp.ones(2)) != key(np.ones(2, "f4"))
    assert key(0.0) != key(-0.0) and key(float("nan")) == key(float("nan"))
    assert key(log_prob_a) == key(log_prob_a) and key(log_prob_a) != key(log_prob_b)
    # a user's function may read globals: models holding one are keyed per instance
    one, two = (em.Model(log_prob_a, init=lambda k, x: {"loc": jnp.zeros(2)}) for _ in range(2))
    assert key(one) == key(one) != key(two)


def test_a_model_changed_after_its_fit_never_serves_an_equal_model():
    """The cached program traces its own model again for new shapes: once that
    model has changed, an equal-to-its-old-self model must not get its program."""
    a = em.Mixture(em.Normal(), 2)
    em.fit(a, X[:150], key=jax.random.key(0), max_iter=30)
    a.weights_prior = priors.Dirichlet(500.0)
    b = em.fit(em.Mixture(em.Normal(), 2), X[:100], key=jax.random.key(0), max_iter=30)
    _programs.clear()
    fresh = em.fit(em.Mixture(em.Normal(), 2), X[:100], key=jax.random.key(0), max_iter=30)
    assert b.objective == fresh.objective


def test_user_functions_reading_globals_are_not_shared_across_models():
    def log_joint(params, x):
        return -0.5 * (x[:, None] - params["loc"]) ** 2

    def log_prior(params):
        return -0.5 * SCALE[0] * jnp.sum(params["loc"] ** 2)

    SCALE = [0.01]
    start = {"loc": jnp.array([-1.0, 3.0])}
    x = X[:100]
    first = em.fit(em.Model(log_joint, log_prior=log_prior), x, init=start, max_iter=50)
    SCALE[0] = 100.0
    second = em.fit(em.Model(log_joint, log_prior=log_prior), x, init=start, max_iter=50)
    assert np.max(np.abs(np.asarray(second.params["loc"]))) < 0.5 * np.max(
        np.abs(np.asarray(first.params["loc"]))
    )


def test_the_program_cache_is_bounded(monkeypatch):
    """Least recently used programs go first; a hit moves a program to the back."""
    monkeypatch.setattr(_programs, "_PROGRAMS", type(_programs._PROGRAMS)())
    monkeypatch.setattr(_programs, "MAX_PROGRAMS", 2)
    built = []

    def get(k):
        return _programs.get(em.Mixture(em.Normal(), k), (), lambda: built.append(k) or k)

    assert [get(2), get(3), get(2), get(4), get(2), get(3)] == [2, 3, 2, 4, 2, 3]
    assert built == [2, 3, 4, 3]  # 3 was evicted by 4 (2 had just been used)
    assert len(_programs._PROGRAMS) == 2


def _numpy_normal_em(x, w, mean, var, weights, n_iter):
    """Weighted EM for a 1-D normal mixture in float64 NumPy (the reference)."""
    for _ in range(n_iter):
        log_joint = np.log(weights) + stats.norm.logpdf(x[:, None], mean, np.sqrt(var))
        resp = softmax(log_joint, axis=1) * w[:, None]
        nk = resp.sum(0)
        weights, mean = nk / w.sum(), resp.T @ x / nk
        var = (resp * (x[:, None] - mean) ** 2).sum(0) / nk
    return mean, var, weights


def test_padded_units_leave_the_fit_unchanged():
    """301 rows run padded to 320 (19 rows twice, at half weight): the fit is
    the float64 reference EM's on the 301 rows, with and without weights."""
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0, 1, 150), rng.normal(3, 0.7, 151)])
    w = rng.uniform(0.2, 2.0, x.size)
    start = em.MixtureParams(
        jnp.array([0.5, 0.5]), em.NormalParams(jnp.array([-0.5, 2.0]), jnp.array([1.0, 1.0]))
    )
    model = em.Mixture(em.Normal(), 2)
    for weights in (None, w):
        res = em.fit(model, x, init=start, sample_weight=weights, max_iter=25, tol=0.0)
        ref = _numpy_normal_em(
            x, np.ones_like(x) if weights is None else w, np.array([-0.5, 2.0]),
            np.ones(2), np.full(2, 0.5), 25,
        )  # fmt: skip
        got = res.params.components
        np.testing.assert_allclose(got.mean, ref[0], rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(got.var, ref[1], rtol=2e-5)
        np.testing.assert_allclose(res.params.weights, ref[2], rtol=2e-5)


def test_nearby_row_counts_share_one_compiled_program():
    model = em.Mixture(em.Normal(min_var=2e-6), 2)  # a setting of its own: a fresh program
    em.fit(model, X[:201], key=jax.random.key(0), max_iter=3)
    (entry,) = [e for key, e in _programs._PROGRAMS.items() if e[0] is model]
    compiled = entry[1]._cache_size()
    for n in (205, 210, 224):  # the same bucket: 224 rows
        em.fit(model, X[:n], key=jax.random.key(0), max_iter=3)
    assert entry[1]._cache_size() == compiled
    em.fit(model, X[:225], key=jax.random.key(0), max_iter=3)  # the next bucket (256)
    assert entry[1]._cache_size() == compiled + 1


def test_only_jaxem_code_sees_padded_units():
    def update(params, x, resp, sample_weight):
        return params

    def log_joint(params, x):
        return -0.5 * (x[:, None] - params["loc"]) ** 2

    def init(key, x):
        return {"loc": jnp.array([0.0, 1.0])}

    assert em.Mixture(em.Normal(), 2)._pads_units(from_keys=True)
    assert em.Mixture(em.MultivariateNormal("full"), 2)._pads_units(from_keys=True)
    assert not em.HMM(em.Normal(), 2)._pads_units(from_keys=False)
    assert em.Model(log_joint, init=init)._pads_units(from_keys=False)
    assert not em.Model(log_joint, init=init)._pads_units(from_keys=True)  # a user's init
    assert not em.Model(log_joint, init=init, m_step=update)._pads_units(from_keys=False)


def test_changing_a_prior_after_a_fit_recompiles():
    model = em.Mixture(em.Normal(), 2)
    em.fit(model, X, key=jax.random.key(1))
    model.weights_prior = priors.Dirichlet(200.0)
    changed = em.fit(model, X, key=jax.random.key(1))
    fresh = em.fit(
        em.Mixture(em.Normal(), 2, weights_prior=priors.Dirichlet(200.0)), X, key=jax.random.key(1)
    )
    assert changed.objective == pytest.approx(fresh.objective, rel=1e-6)
