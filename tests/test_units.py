"""Data as a pytree of units: covariates travel with their rows through every path of fit.

The model is a mixture of two linear regressions written as a plain ``em.Model``
on ``{"y": (N,), "u": (N,)}`` (tests/scripts/regression_model.py). The reference
is a float64 NumPy EM with the closed-form M-step (weighted least squares) from
the same start; jaxem's gradient M-step must reach the same maximiser.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp, softmax

import jaxem as em
from jaxem import chunks

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from regression_model import MODEL, data, log_joint, numpy_em  # noqa: E402

sys.path.pop(0)

D = data(2000)


def _start(d, key=0):
    return em.fit(MODEL, d, key=jax.random.key(key), max_iter=0).params


def _close(params, ref, rtol):
    for name in ("w", "b0", "b1", "v"):
        np.testing.assert_allclose(np.asarray(params[name]), ref[name], rtol=rtol, err_msg=name)


def test_covariate_model_equals_float64_numpy_em_from_the_same_start():
    w = np.random.default_rng(1).integers(0, 3, len(D["y"])).astype(float)
    with jax.enable_x64(True):
        start = _start(D)
        res = em.fit(MODEL, D, init=start, max_iter=12, tol=0.0)
        weighted = em.fit(MODEL, D, init=start, max_iter=12, tol=0.0, sample_weight=w)
    _close(res.params, numpy_em(D, start, 12), rtol=1e-7)
    _close(weighted.params, numpy_em(D, start, 12, weights=w), rtol=1e-7)
    assert np.all(np.diff(res.history) >= -1e-9 * abs(res.history[-1]))


@pytest.mark.slow
def test_chunked_equals_unchunked_with_weights_and_labels():
    w = np.random.default_rng(2).uniform(0.5, 2.0, len(D["y"]))
    labels = np.full(len(D["y"]), -1)
    labels[:20] = 0
    with jax.enable_x64(True):
        start = _start(D)
        kw = dict(init=start, max_iter=8, tol=0.0, sample_weight=w, labels=labels)
        one = em.fit(MODEL, D, **kw)
        many = em.fit(MODEL, D, chunk_size=64, **kw)  # 2000 = 31 chunks of 64 + padding
    assert many.objective == pytest.approx(one.objective, rel=1e-12)
    _close(many.params, {k: np.asarray(v) for k, v in one.params.items()}, rtol=1e-8)


@pytest.mark.slow
def test_restarts_draw_from_every_array_of_the_data():
    # y == 2u + 1 row by row: a start drawn from y and u of different rows would see a
    # mismatch. 70000 units > the 65536-unit draw subset; zero weights drop some.
    u = np.random.default_rng(3).uniform(0, 10, 70_000)
    d = {"y": 2 * u + 1, "u": u}
    w = np.ones(len(u))
    w[::3] = 0
    for weights in (None, w):
        res = em.fit(MODEL, d, key=jax.random.key(0), restarts=3, max_iter=0, sample_weight=weights)
        assert float(res.params["mismatch"]) < 1e-4


@pytest.mark.slow
def test_a_million_units_under_the_default_chunking():
    big = data(1_000_000, seed=4)
    assert chunks.plan(1_000_000, 2, 2, None) is not None  # the default chunks this size
    with jax.enable_x64(True):
        start = _start(big)
        auto = em.fit(MODEL, big, init=start, max_iter=2, tol=0.0)
        one_pass = em.fit(MODEL, big, init=start, max_iter=2, tol=0.0, chunk_size=10**7)
    assert auto.objective == pytest.approx(one_pass.objective, rel=1e-12)
    _close(auto.params, numpy_em(big, start, 2), rtol=1e-6)


@pytest.mark.slow
def test_scoring_functions_take_the_pytree():
    params = em.fit(MODEL, D, key=jax.random.key(0), restarts=4).params
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    lj = np.asarray(log_joint(p64, {k: np.asarray(v) for k, v in D.items()}))
    r = np.asarray(em.responsibilities(MODEL, params, D))
    np.testing.assert_allclose(r, softmax(lj, axis=1), atol=1e-5)
    np.testing.assert_array_equal(em.predict(MODEL, params, D), np.argmax(r, axis=1))
    ll = logsumexp(lj, axis=1).sum()
    assert float(em.log_likelihood(MODEL, params, D)) == pytest.approx(ll, rel=1e-5)
    p = em.n_parameters(MODEL, params)
    assert em.bic(MODEL, params, D) == pytest.approx(-2 * ll + p * np.log(2000), rel=1e-5)
    one = {k: v[:1] for k, v in D.items()}  # one unit scores fine
    assert em.responsibilities(MODEL, params, one).shape == (1, 2)


@pytest.mark.slow
def test_tuples_and_namedtuples_are_data_too():
    from typing import NamedTuple

    class Rows(NamedTuple):
        y: np.ndarray
        u: np.ndarray

    def as_dict(d):
        return {"y": d.y, "u": d.u} if isinstance(d, Rows) else {"y": d[0], "u": d[1]}

    def lj(p, d):
        return log_joint(p, as_dict(d))

    def init(key, d):
        return {k: v for k, v in MODEL.init(key, as_dict(d)).items() if k != "mismatch"}

    model = em.Model(lj, init=init, constraints=MODEL.constraints)
    ref = em.fit(model, (D["y"], D["u"]), key=jax.random.key(0), restarts=2)
    res = em.fit(model, Rows(D["y"], D["u"]), key=jax.random.key(0), restarts=2)
    assert res.objective == ref.objective


BAD = [
    ({"y": D["y"], "u": D["u"][:-1]}, ValueError, r"share their leading axis.*\['y'\] has 2000"),
    ({"y": D["y"], "u": 3.0}, ValueError, r"x\['u'\] is a scalar"),
    ({"y": D["y"], "u": np.where(np.arange(2000) == 5, np.nan, D["u"])}, ValueError, "NaN"),
    ({"y": D["y"], "u": D["u"].astype(str)}, TypeError, r"x\['u'\] must hold numbers"),
    ({"y": D["y"][:0], "u": D["u"][:0]}, ValueError, "no units"),
    ({}, ValueError, "empty pytree"),
]


@pytest.mark.parametrize("d, error, message", BAD)
def test_bad_pytrees_are_refused_before_tracing(d, error, message):
    with pytest.raises(error, match=message):
        em.fit(MODEL, d, key=0)


def test_weights_labels_and_missing_follow_the_units():
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(2000,\)"):
        em.fit(MODEL, D, key=0, sample_weight=np.ones(1999))
    with pytest.raises(ValueError, match=r"labels must have shape \(2000,\)"):
        em.fit(MODEL, D, key=0, labels=np.zeros(3))
    with pytest.raises(ValueError, match="pytree"):
        em.fit(MODEL, D, key=0, missing="marginalize")


def test_a_mixture_of_families_asks_for_an_array():
    with pytest.raises(TypeError, match=r"em.Mixture's families read an \(N,\) or \(N, D\) array"):
        em.fit(em.Mixture(em.Normal(), 2), D, key=0)


def test_lists_none_and_tuples_of_numbers_in_data():
    listed = em.fit(MODEL, {"y": list(D["y"]), "u": D["u"]}, key=0, max_iter=0)  # a list: one array
    assert listed.objective == em.fit(MODEL, D, key=0, max_iter=0).objective
    with pytest.raises(TypeError, match=r"x\['u'\] must be an array of numbers, got NoneType"):
        em.fit(MODEL, {"y": D["y"], "u": None}, key=0)
    with pytest.raises(TypeError, match="x is a tuple of numbers"):
        em.fit(MODEL, (1.0, 2.0, 3.0), key=0)


def test_check_m_step_takes_the_pytree():
    # A user m_step for the regression mixture: weighted least squares per component.
    def m_step(p, d, resp, w):
        wr = resp * w[:, None]
        design = jnp.stack([jnp.ones_like(d["u"]), d["u"]], axis=1)
        gram = jnp.einsum("nk,ni,nj->kij", wr, design, design)
        rhs = jnp.einsum("nk,ni,n->ki", wr, design, d["y"])
        coef = jnp.linalg.solve(gram, rhs[..., None])[..., 0]  # (K, 2): b0, b1
        resid = d["y"][:, None] - design @ coef.T
        return {
            **p,
            "w": wr.sum(0) / wr.sum(),
            "b0": coef[:, 0],
            "b1": coef[:, 1],
            "v": (wr * resid**2).sum(0) / wr.sum(0),
        }

    model = em.Model(
        MODEL._log_joint, m_step=m_step, init=MODEL.init, constraints=MODEL.constraints
    )
    with jax.enable_x64(True):
        report = em.check_m_step(model, D)
    assert report.ok, report


def test_inference_is_the_models():
    """Posterior marginals are the gradient of log Z in the log potentials (Eisner 2016).

    For independent units that gradient is the softmax; em.responsibilities,
    em.predict and em.log_likelihood ask the model, so a model with structure
    between units (a chain) can answer with its own inference.
    """
    params = em.fit(MODEL, D, key=jax.random.key(0), max_iter=3, tol=0.0).params
    x = {k: jnp.asarray(v, jnp.float32) for k, v in D.items()}
    potentials = MODEL.log_joint(params, x)
    grad = jax.grad(lambda lj: jnp.sum(jax.scipy.special.logsumexp(lj, axis=-1)))(potentials)
    r = np.asarray(em.responsibilities(MODEL, params, D))
    np.testing.assert_allclose(r, np.asarray(grad), atol=1e-6)
    np.testing.assert_allclose(r, softmax(np.asarray(potentials, np.float64), axis=1), atol=1e-6)

    class Reversed(em.Model):  # a model that answers differently: the public functions follow
        def posterior(self, params, x, observed=None):
            return super().posterior(params, x, observed)[:, ::-1]

        def decode(self, params, x, observed=None):
            return 1 - super().decode(params, x, observed)

        def unit_log_likelihood(self, params, x, observed=None):
            return 2 * super().unit_log_likelihood(params, x, observed)

    rev = Reversed(MODEL._log_joint, init=MODEL.init, constraints=MODEL.constraints)
    np.testing.assert_allclose(np.asarray(em.responsibilities(rev, params, D)), r[:, ::-1])
    np.testing.assert_array_equal(em.predict(rev, params, D), 1 - em.predict(MODEL, params, D))
    assert float(em.log_likelihood(rev, params, D)) == pytest.approx(
        2 * float(em.log_likelihood(MODEL, params, D)), rel=1e-6
    )


def _protocol_model():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "regression_protocol.py"
    spec = importlib.util.spec_from_file_location("regression_protocol", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RegressionMixture(2)


def test_a_model_with_its_own_statistics_equals_the_numpy_em_chunked_or_not():
    """The public protocol: expect -> additive statistics -> maximize (an example's model)."""
    model = _protocol_model()
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(D["y"]))
    with jax.enable_x64(True):
        start = {k: v for k, v in _start(D).items() if k != "mismatch"}
        kw = dict(init=start, max_iter=10, tol=0.0, sample_weight=w)
        one = em.fit(model, D, **kw)
        many = em.fit(model, D, chunk_size=96, **kw)  # 21 chunks of 96 + padding
        expectation = model.expect(start, jax.tree.map(jnp.asarray, D), jnp.asarray(w))
        lj = np.asarray(log_joint(start, D))
    ref = numpy_em(D, start, 10, weights=w)
    _close(one.params, ref, rtol=1e-9)
    _close(many.params, ref, rtol=1e-9)
    # The statistics are sums over units: the E-step's counts are Σ w r.
    np.testing.assert_allclose(expectation.stats.n, (w[:, None] * softmax(lj, axis=1)).sum(0))
    np.testing.assert_allclose(expectation.unit_ll, logsumexp(lj, axis=1), rtol=1e-12)
    assert np.all(np.diff(one.history) >= -1e-9 * abs(one.history[-1]))
