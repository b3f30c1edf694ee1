"""Row chunks: the chunked passes give the unchunked fit (float64, same start).

Chunked, no (N, K) array is formed: the E-step and sufficient statistics are
summed chunk by chunk and the gradient M-step recomputes responsibilities per
chunk. The reference is the one-pass fit of the same model from the same start.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem as em
from jaxem import chunks, priors


def _data():
    r = np.random.default_rng(0)
    x2 = np.concatenate([r.normal(size=(503, 2)), r.normal(size=(497, 2)) + 3])
    x1 = np.concatenate([r.standard_t(4, 503), r.standard_t(4, 497) + 6])
    holes = np.where(r.random(x2.shape) < 0.1, np.nan, x2)
    labels = np.r_[np.zeros(10, int), -np.ones(990, int)]
    return x1, x2, holes, labels


X1, X2, HOLES, LABELS = _data()
CASES = {
    "closed form": (lambda: em.Mixture(em.MultivariateNormal("full"), 2), X2, {}),
    "gradient": (lambda: em.Mixture(em.StudentT(df_prior=priors.Gamma(2.0, 0.1)), 2), X1, {}),
    "missing": (
        lambda: em.Mixture(em.MultivariateNormal("diag"), 2),
        HOLES,
        {"missing": "marginalize"},
    ),
    "labels": (lambda: em.Mixture(em.Normal(), 2), X1, {"labels": LABELS}),
}


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c == "gradient" else c for c in sorted(CASES)],
)
def test_chunked_equals_one_pass(case):
    make, x, kw = CASES[case]
    model = make()
    with jax.enable_x64(True):
        a = em.fit(model, x, key=jax.random.key(0), restarts=2, **kw)
        b = em.fit(model, x, key=jax.random.key(0), restarts=2, chunk_size=96, **kw)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    assert b.n_iter == a.n_iter
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_chunked_custom_model_gradient_and_m_step():
    def log_joint(p, x):
        return jax.scipy.stats.norm.logpdf(x[:, None], p["m"], 1.0) + jnp.log(0.5)

    def m_step(p, x, resp, w):
        wr = resp * w[:, None]
        return {"m": (wr * x[:, None]).sum(0) / wr.sum(0)}

    start = {"m": np.array([0.0, 1.0])}
    with jax.enable_x64(True):
        for model in (em.Model(log_joint), em.Model(log_joint, m_step=m_step)):
            a = em.fit(model, X1, init=start)
            b = em.fit(model, X1, init=start, chunk_size=128)
            assert b.objective == pytest.approx(a.objective, rel=1e-12)
            np.testing.assert_allclose(np.asarray(b.params["m"]), np.asarray(a.params["m"]))


def test_plan():
    # Small problems run in one pass; large ones in chunks of ~2^20 / (K D) rows.
    assert chunks.plan(10_000, 3, 2, None) is None
    plan = chunks.plan(5 * 10**7, 8, 2, None)
    assert plan.rows == 5 * 10**7  # a size dividing N: no padded copy of the data
    assert 2**15 <= plan.size <= 2**16 and not plan.strided
    plan = chunks.plan(1001, 2, 1, 100)
    assert plan.size % 8 == 0 and plan.rows >= 1001 and plan.count == -(-1001 // plan.size)
    assert chunks.plan(1001, 2, 1, 5000) is None
    assert chunks.plan(4096, 2, 1, 100, n_devices=8).strided
    # An accelerator takes 32x larger chunks (fewer kernel launches), shared by
    # the vmapped restarts but never below the CPU's size.
    cpu, gpu = chunks.plan(10**6, 8, 16, None), chunks.plan(10**6, 8, 16, None, backend="gpu")
    assert gpu.size >= 16 * cpu.size and gpu.rows >= 10**6
    assert chunks.plan(10**6, 8, 16, None, backend="gpu", restarts=10**4) == cpu
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        em.fit(em.Mixture(em.Normal(), 2), X1, key=0, chunk_size=0)
