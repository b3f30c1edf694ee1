"""Partial labels (semi-supervised EM), sample weights, stacked starts and progress.

The reference for labels is a float64 NumPy EM whose labelled rows have their
responsibilities fixed to the label.
"""

import jax
import numpy as np
import pytest
from scipy import stats

import jaxem as em


def numpy_semi_supervised_em(x, labels, w, mu, var, n_iter):
    """Float64 EM for a 1-D normal mixture (ML) with some rows' states known."""
    w, mu, var = (np.array(a, np.float64) for a in (w, mu, var))
    for _ in range(n_iter):
        dens = w * stats.norm(mu, np.sqrt(var)).pdf(x[:, None])
        r = dens / dens.sum(1, keepdims=True)
        known = labels >= 0
        r[known] = np.eye(len(w))[labels[known]]
        n = r.sum(0)
        w = n / n.sum()
        mu = (r * x[:, None]).sum(0) / n
        var = (r * (x[:, None] - mu) ** 2).sum(0) / n
    dens = w * stats.norm(mu, np.sqrt(var)).pdf(x[:, None])
    known = labels >= 0
    row = np.where(known, dens[np.arange(len(x)), np.maximum(labels, 0)], dens.sum(1))
    return w, mu, var, np.log(row).sum()


def _data(seed=0):
    r = np.random.default_rng(seed)
    x = np.concatenate([r.normal(-2.0, 1.0, 150), r.normal(2.0, 1.0, 150)])
    labels = np.full(300, -1)
    labels[:10] = 1  # the left cluster is called state 1
    labels[150:160] = 0
    return x, labels


def test_labels_match_numpy_semi_supervised_em():
    x, labels = _data()
    start = em.MixtureParams(
        np.array([0.5, 0.5]), em.NormalParams(np.array([-1.0, 1.0]), np.ones(2))
    )
    model = em.Mixture(em.Normal(min_var=0.0), 2)
    with jax.enable_x64(True):
        res = em.fit(model, x, init=start, labels=labels, max_iter=25, tol=0.0)
    w, mu, var, objective = numpy_semi_supervised_em(x, labels, [0.5, 0.5], [-1, 1], [1, 1], 25)
    np.testing.assert_allclose(np.asarray(res.params.weights), w, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.params.components.mean), mu, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.params.components.var), var, rtol=1e-10)
    assert res.objective == pytest.approx(objective, rel=1e-12)
    assert np.all(np.diff(res.history) >= -1e-9 * np.abs(res.history[1:]))


def test_labels_fix_the_component_order_from_random_starts():
    x, labels = _data(seed=1)
    model = em.Mixture(em.Normal(), 2)
    for seed in range(3):
        res = em.fit(model, x, key=jax.random.key(seed), restarts=4, labels=labels)
        mean = np.asarray(res.params.components.mean)
        assert mean[0] > 1.5 and mean[1] < -1.5
        r = np.asarray(em.responsibilities(model, res.params, x))
        assert np.all(r[labels == 1].argmax(1) == 1)


def test_labels_with_a_custom_model():
    """em.Model: the state count comes from log_joint; labels pin rows there too."""
    heads = np.array([5.0, 9.0, 8.0, 4.0, 7.0])

    def log_joint(params, x):
        return stats_binom_logpmf(x[:, None], params["p"]) + np.log(0.5)

    model = em.Model(log_joint, constraints={"p": em.constraints.unit_interval})
    res = em.fit(model, heads, init={"p": np.array([0.6, 0.5])}, labels=[0, 1, 0, 1, 0])
    # Fully labelled: the ML estimate of each coin from its own sets.
    np.testing.assert_allclose(np.asarray(res.params["p"]), [20 / 30, 13 / 20], atol=2e-5)


def stats_binom_logpmf(k, p):
    return jax.scipy.stats.binom.logpmf(k, 10, p)


def test_bad_labels():
    x, labels = _data()
    model = em.Mixture(em.Normal(), 2)
    with pytest.raises(ValueError, match=r"labels must have shape \(300,\)"):
        em.fit(model, x, key=0, labels=labels[:-1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        em.fit(model, x, key=0, labels=np.where(labels == 1, 2, labels))
    with pytest.raises(ValueError, match="whole numbers"):
        em.fit(model, x, key=0, labels=labels + 0.5)
    with pytest.raises(TypeError, match="labels must be integers"):
        em.fit(model, x, key=0, labels=np.array(["a"] * 300))


def test_integer_weights_repeat_rows_and_zero_weights_drop_them():
    r = np.random.default_rng(3)
    x = np.concatenate([r.normal(-2.0, 1.0, 60), r.normal(3.0, 0.5, 40)])
    weights = r.integers(0, 4, size=100).astype(float)
    start = em.MixtureParams(
        np.array([0.5, 0.5]), em.NormalParams(np.array([-1.0, 1.0]), np.ones(2))
    )
    model = em.Mixture(em.Normal(), 2)
    with jax.enable_x64(True):
        a = em.fit(model, x, init=start, sample_weight=weights, tol=1e-12)
        b = em.fit(model, np.repeat(x, weights.astype(int)), init=start, tol=1e-12)
    assert a.objective == pytest.approx(b.objective, rel=1e-10)
    np.testing.assert_allclose(
        np.asarray(a.params.components.mean), np.asarray(b.params.components.mean), rtol=1e-8
    )
    # A zero-weight row may be anything in the support, even far away: it is dropped.
    x_far = x.copy()
    x_far[weights == 0] = 1e4
    with jax.enable_x64(True):
        c = em.fit(model, x_far, init=start, sample_weight=weights, tol=1e-12)
    assert c.objective == pytest.approx(a.objective, rel=1e-10)


def test_stacked_starts_run_as_restarts():
    x, _ = _data(seed=4)
    model = em.Mixture(em.Normal(), 2)
    keys = jax.random.split(jax.random.key(0), 3)
    starts = jax.vmap(model.init, in_axes=(0, None))(keys, jax.numpy.asarray(x, "float32"))
    batch = em.fit(model, x, init=starts, restarts=3)
    singles = [em.fit(model, x, init=jax.tree.map(lambda a, i=i: a[i], starts)) for i in range(3)]
    np.testing.assert_allclose(batch.restart_objectives, [s.objective for s in singles], rtol=1e-6)
    with pytest.raises(ValueError, match="init must then hold 4 starts"):
        em.fit(model, x, init=starts, restarts=4)
    # Only the first start is traced against log_joint; every start's values are checked.
    bad = jax.tree.map(np.array, starts)
    bad.components.var[2, 1] = -1.0
    with pytest.raises(ValueError, match="outside its support"):
        em.fit(model, x, init=bad, restarts=3)
    bad = jax.tree.map(np.array, starts)
    bad.weights[1] = [0.9, 0.3]
    with pytest.raises(ValueError, match="init weights must be non-negative and sum to 1"):
        em.fit(model, x, init=bad, restarts=3)


def test_progress_reports_from_the_compiled_loop(capfd):
    x, _ = _data(seed=5)
    model = em.Mixture(em.Normal(), 2)
    res = em.fit(model, x, key=jax.random.key(0), restarts=2, progress=2)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("jaxem: iteration")]
    assert len(lines) == res.n_iter // 2 + (res.n_iter % 2 > 0) or len(lines) >= res.n_iter // 2
    last = float(lines[-1].split("best objective")[1].split()[0])
    assert last == pytest.approx(res.objective, rel=1e-6)
    assert "(0/2 restarts running)" in lines[-1]
    em.fit(model, x, key=jax.random.key(0), restarts=2)  # progress off: silent
    assert "jaxem: iteration" not in capfd.readouterr().err
    with pytest.raises(ValueError, match="progress must be >= 0"):
        em.fit(model, x, key=0, progress=-1)


def test_parameters_that_do_not_fit_the_data_are_rejected_before_tracing():
    x2 = np.random.default_rng(6).normal(size=(50, 2))
    x3 = np.random.default_rng(6).normal(size=(50, 3))
    mvn = em.Mixture(em.MultivariateNormal("full"), 2)
    res = em.fit(mvn, x2, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*uses \(2, 3\)"):
        em.predict(mvn, res.params, x3)
    # A gradient-only family would broadcast (K,) parameters over 3 features silently.
    student = em.Mixture(em.StudentT(), 2)
    start = em.MixtureParams(
        np.array([0.5, 0.5]), em.StudentTParams(np.zeros(2), np.ones(2), np.full(2, 5.0))
    )
    with pytest.raises(ValueError, match=r"components\.loc has shape \(2,\).*uses \(2, 3\)"):
        em.fit(student, x3, init=start)


def test_gradient_restarts_run_in_turn_on_a_cpu():
    """On a CPU, restarts (here with a gradient M-step) run one after the other
    (lax.map), each to its own convergence, reaching what separate fits reach."""
    import importlib

    fit_module = importlib.import_module("jaxem.fit")
    x, _ = _data(seed=6)
    x = np.abs(x) + 0.1
    model = em.Mixture(em.Gamma(), 2)  # gradient-only family
    keys = jax.random.split(jax.random.key(0), 3)
    starts = jax.vmap(model.init, in_axes=(0, None))(keys, jax.numpy.asarray(x, "float32"))
    assert fit_module._in_turn("cpu", 0, 3)
    assert fit_module._in_turn("gpu", 0, 1)  # one restart: never a batch of one
    assert not fit_module._in_turn("cpu", 5, 3)  # progress: stepped together
    assert not fit_module._in_turn("gpu", 0, 3)
    batch = em.fit(model, x, init=starts, restarts=3, max_iter=30)
    singles = [
        em.fit(model, x, init=jax.tree.map(lambda a, i=i: a[i], starts), max_iter=30)
        for i in range(3)
    ]
    # float32 gradient M-steps: a one-restart program rounds differently (1e-5 here)
    np.testing.assert_allclose(batch.restart_objectives, [s.objective for s in singles], rtol=1e-4)
