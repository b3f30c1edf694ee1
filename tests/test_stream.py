"""Streaming from the host: exact passes reproduce in-memory EM; online EM gets near it.

The reference is ``em.fit`` on the same data held in memory, from the same start.
"""

import jax
import numpy as np
import pytest

import jaxem as em
from jaxem import priors


def _data():
    r = np.random.default_rng(0)
    x = np.concatenate([r.normal(size=(3000, 2)), r.normal(size=(2000, 2)) * 0.5 + 3])
    r.shuffle(x)
    return x


X = _data()
MODEL = em.Mixture(em.MultivariateNormal("full"), 2, weights_prior=priors.Dirichlet(2.0))


def test_exact_stream_reproduces_in_memory_em(tmp_path):
    with jax.enable_x64(True):
        start = em.fit(MODEL, X, key=jax.random.key(0), max_iter=0).params
        ref = em.fit(MODEL, X, init=start, tol=1e-10)
        path = tmp_path / "x.npy"
        np.save(path, X)
        mm = np.load(path, mmap_mode="r")  # a memmap: rows read batch by batch
        res = em.fit_stream(MODEL, mm, batch_size=1200, init=start, tol=1e-10, max_iter=200)
        # A function returning an iterable of batches (e.g. files) works the same way.
        gen = em.fit_stream(
            MODEL, lambda: iter(np.array_split(X, 7)), init=start, tol=1e-10, max_iter=200
        )
    for r in (res, gen):
        assert r.objective == pytest.approx(ref.objective, rel=1e-12)
        assert r.n_iter == ref.n_iter and r.converged and r.n_samples == len(X)
        np.testing.assert_allclose(r.history, ref.history, rtol=1e-12)
        for u, v in zip(jax.tree.leaves(ref.params), jax.tree.leaves(r.params), strict=True):
            np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_online_em_gets_near_the_batch_optimum():
    start = em.fit(MODEL, X, key=jax.random.key(0), max_iter=0).params
    best = em.fit(MODEL, X, init=start)
    online = em.fit_stream(MODEL, X, batch_size=250, init=start, method="online", epochs=2)
    assert online.n_iter == 2 * 20
    gap = (best.log_likelihood - float(em.log_likelihood(MODEL, online.params, X))) / len(X)
    assert 0 <= gap < 2e-3
    np.testing.assert_allclose(
        np.sort(np.asarray(online.params.components.mean), axis=0),
        np.sort(np.asarray(best.params.components.mean), axis=0),
        atol=0.05,
    )


def test_stream_bad_inputs():
    with pytest.raises(ValueError, match="no closed-form M-step from sufficient statistics"):
        em.fit_stream(em.Mixture(em.StudentT(), 2), X[:, 0], batch_size=100, key=0)
    with pytest.raises(ValueError, match="method must be 'exact' or 'online'"):
        em.fit_stream(MODEL, X, batch_size=100, key=0, method="sgd")
    with pytest.raises(ValueError, match=r"decay must lie in \(0.5, 1\]"):
        em.fit_stream(MODEL, X, batch_size=100, key=0, method="online", decay=0.4)
    with pytest.raises(ValueError, match="pass batch_size"):
        em.fit_stream(MODEL, X, key=0)
    with pytest.raises(ValueError, match="yielded no batch"):
        em.fit_stream(MODEL, lambda: iter([]), key=0)
    with pytest.raises(TypeError, match="needs an em.Mixture"):
        em.fit_stream(em.Model(lambda p, x: x[:, None] * p), X, batch_size=10, key=0)
