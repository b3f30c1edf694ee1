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


def test_factory_batches_are_all_used_once_per_pass():
    # Peeking at the first batch (for shapes and dtype) must not lose it, and the
    # factory is called once per pass: the peeked iterator starts the first pass.
    calls = []

    def make_batches():  # uneven batches, the first the largest
        calls.append(1)
        yield from np.array_split(X, 6)

    with jax.enable_x64(True):
        start = em.fit(MODEL, X, key=jax.random.key(0), max_iter=0).params
        ref = em.fit_stream(MODEL, X, batch_size=len(X), init=start, tol=0.0, max_iter=3)
        res = em.fit_stream(MODEL, make_batches, init=start, tol=0.0, max_iter=3)
    assert res.n_samples == len(X) and res.n_iter == ref.n_iter == 3
    assert len(calls) == res.n_iter + 1  # the first pass, then one per iteration
    np.testing.assert_allclose(res.history, ref.history, rtol=1e-12)
    for u, v in zip(jax.tree.leaves(ref.params), jax.tree.leaves(res.params), strict=True):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-9, atol=1e-12)

    # One online pass calls the function once, so a one-shot generator streams
    # every batch, the peeked one included.
    gen = (X[i : i + 1000] for i in range(0, len(X), 1000))
    one_shot = em.fit_stream(MODEL, lambda: gen, init=start, method="online")
    online = em.fit_stream(MODEL, X, batch_size=1000, init=start, method="online")
    assert one_shot.n_iter == online.n_iter == 5 and one_shot.n_samples == len(X)
    for u, v in zip(jax.tree.leaves(online.params), jax.tree.leaves(one_shot.params), strict=True):
        np.testing.assert_array_equal(np.asarray(v), np.asarray(u))


@pytest.mark.slow
def test_factory_must_create_a_fresh_iterable_each_pass():
    def make_batches():
        return (X[i : i + 1000] for i in range(0, len(X), 1000))

    gen = make_batches()  # the same generator handed back on the second pass
    with pytest.raises(ValueError, match=r"same iterator.*`lambda: make_batches\(\)`"):
        em.fit_stream(MODEL, lambda: gen, key=0, max_iter=2)
    gen = make_batches()
    with pytest.raises(ValueError, match="same iterator"):
        em.fit_stream(MODEL, lambda: gen, key=0, method="online", epochs=2)
    it = iter(list(make_batches()))
    with pytest.raises(ValueError, match="same iterator"):  # iter() of an iterator is itself
        em.fit_stream(MODEL, lambda: iter(it), key=0)

    # New iterables, but the second pass is empty or short.
    passes = []

    def empty_after_one():
        passes.append(1)
        return make_batches() if len(passes) == 1 else iter([])

    with pytest.raises(ValueError, match=r"pass 2 over the data yielded no batch.*fresh"):
        em.fit_stream(MODEL, empty_after_one, key=0)
    passes.clear()

    def short_after_one():
        passes.append(1)
        return make_batches() if len(passes) == 1 else iter([X[:1000]])

    with pytest.raises(ValueError, match=r"pass 2 over the data yielded 1000 rows, the first 5000"):
        em.fit_stream(MODEL, short_after_one, key=0)
    with pytest.raises(TypeError, match="returned an array.*batch_size="):
        em.fit_stream(MODEL, lambda: X, key=0)
    with pytest.raises(TypeError, match="must return an iterable of batches, got NoneType"):
        em.fit_stream(MODEL, lambda: None, key=0)


def test_stream_rejects_one_shot_data_and_misplaced_batch_size():
    def make_batches():
        return (X[i : i + 1000] for i in range(0, len(X), 1000))

    fresh = r"callable that creates a fresh iterable.*`lambda: make_batches\(\)`"
    with pytest.raises(ValueError, match=r"data is a generator, which can be read only once.*"):
        em.fit_stream(MODEL, make_batches(), key=0)
    with pytest.raises(ValueError, match=fresh):
        em.fit_stream(MODEL, iter(np.array_split(X, 5)), key=0, method="online")
    with pytest.raises(ValueError, match=fresh + r".*batch_size= is not needed"):
        em.fit_stream(MODEL, make_batches(), batch_size=100, key=0)  # was an IndexError
    with pytest.raises(ValueError, match="batch_size= slices the rows.*drop batch_size="):
        em.fit_stream(MODEL, make_batches, batch_size=100, key=0)
    # A list of arrays: batch_size= used to give a misleading message about ndim.
    batches = np.array_split(X, 5)
    with pytest.raises(
        ValueError, match=r"batch_size= slices.*list of 5 arrays.*already define their size"
    ):
        em.fit_stream(MODEL, batches, batch_size=100, key=0)
    with pytest.raises(ValueError, match=r"list of 5 arrays: pass `lambda: data`"):
        em.fit_stream(MODEL, batches, key=0)
    with pytest.raises(TypeError, match="data must be an .* array or memmap"):
        em.fit_stream(MODEL, 3.0, batch_size=100, key=0)
    # The suggested forms work.
    res = em.fit_stream(MODEL, lambda: batches, key=0, max_iter=2)
    assert res.n_samples == len(X)


def test_a_last_batch_shorter_than_n_components_is_used():
    # 5000 rows in batches of 998: the last batch has 10 rows; with K=12 > 10 it
    # must still be scored (a fit needs K rows in total, not per batch).
    model = em.Mixture(em.Normal(), 12)
    x = X[:, 0]
    with jax.enable_x64(True):
        start = em.fit(model, x, key=jax.random.key(1), max_iter=0).params
        ref = em.fit(model, x, init=start, max_iter=5, tol=0.0)
        res = em.fit_stream(model, x, batch_size=998, init=start, max_iter=5, tol=0.0)
    assert res.n_samples == len(x)
    np.testing.assert_allclose(res.history, ref.history, rtol=1e-12)
