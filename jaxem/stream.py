"""EM over data that stays on the host: exact passes over batches, or online EM.

``em.fit`` needs the data in device memory. ``em.fit_stream`` takes a NumPy
array or memmap (sliced into ``batch_size`` rows) or a function returning an
iterable of batches, and fits an ``em.Mixture`` whose M-step works from
sufficient statistics (the closed forms of the built-in families):

* ``method="exact"``: every iteration is one pass over the batches; each
  batch's E-step statistics are computed on the device by one compiled
  program and summed there, then one M-step. The iterates are those of
  in-memory EM (up to summation order), and the objective never decreases.
* ``method="online"``: stepwise EM (Cappé & Moulines 2009). After each batch
  the running per-sample statistics move towards the batch's,
  ``s ← (1 − γ_t) s + γ_t ŝ_batch`` with ``γ_t = (t + 2)^(−decay)``
  (``0.5 < decay ≤ 1``; the schedule satisfies Σγ = ∞, Σγ² < ∞), and the
  parameters are the M-step of ``N · s``. One pass (``epochs=1``) gets near the
  batch optimum on large data; more epochs refine it.

The batches are visited by a Python loop: the data live on the host, so each
batch is one transfer and one call of a compiled program (the only place
jaxem loops in Python over data, by necessity).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem.block_updates import FROM_STATS
from jaxem.mixture import Mixture, MixtureStats
from jaxem.model import NO_EXTRA

__all__ = ["fit_stream", "StreamResult"]


@dataclasses.dataclass(frozen=True)
class StreamResult:
    """What ``em.fit_stream`` returns.

    Attributes:
        params: the fitted parameters.
        objective: log-likelihood + log prior of the last full pass (``exact``),
            or ``nan`` for ``online`` (which never evaluates a full pass).
        n_iter: passes (``exact``) or batches (``online``) used.
        converged: ``exact``: whether the per-sample gain fell below ``tol``.
        history: ``exact``: the objective after every pass (non-decreasing).
        n_samples: rows seen in one pass.
    """

    params: Any
    objective: float
    n_iter: int
    converged: bool
    history: np.ndarray
    n_samples: int


_FRESH = (
    "pass a callable that creates a fresh iterable of batches on every call, e.g. "
    "`lambda: make_batches()` or `lambda: iter(list_of_batches)`, not `lambda: gen` with an "
    "existing generator `gen = make_batches()`, which is used up after one pass"
)


def _is_batch_list(data) -> bool:
    """A list or tuple of arrays: batches, not the rows of one array."""
    return (
        isinstance(data, (list, tuple))
        and len(data) > 0
        and all(hasattr(b, "shape") and np.ndim(b) >= 1 for b in data)
    )


def _batches(data, batch_size) -> Callable[[], Iterable]:
    """A function returning the batches of one pass, from any accepted ``data``."""
    if callable(data):
        if batch_size is not None:
            raise ValueError(
                "fit_stream: batch_size= slices the rows of an array or memmap; data is a "
                "callable whose batches already define their size: drop batch_size=."
            )
        return data
    if isinstance(data, Iterator):  # generators included: they can be read only once
        raise ValueError(
            f"fit_stream: data is a {type(data).__name__}, which can be read only once, but "
            f"exact EM makes one pass over the data per iteration: {_FRESH}."
            + (" batch_size= is not needed: the batches define their size." if batch_size else "")
        )
    if _is_batch_list(data):
        how = (
            f"batch_size= slices the rows of one array or memmap, but data is a "
            f"{type(data).__name__} of {len(data)} arrays, whose batches already define their "
            "size: drop batch_size= and pass `lambda: data` to stream them as batches"
            if batch_size is not None
            else f"data is a {type(data).__name__} of {len(data)} arrays: pass `lambda: data` to "
            "stream them as batches"
        )
        raise ValueError(
            f"fit_stream: {how}, or np.concatenate(data) with batch_size= to slice one array."
        )
    if np.ndim(data) == 0:
        raise TypeError(
            "fit_stream: data must be an (N,)/(N, D) array or memmap (with batch_size=), or a "
            f"callable returning a fresh iterable of batches; got {type(data).__name__}."
        )
    if batch_size is None:
        raise ValueError("fit_stream: pass batch_size= with an array or memmap.")
    batch_size = _validation.check_int("batch_size", batch_size, 1)
    n = np.shape(data)[0]
    return lambda: (data[i : i + batch_size] for i in range(0, n, batch_size))


class _Passes:
    """Hands out the batches of one pass per call, checking that passes agree.

    The first batch is read once, to learn shapes and dtype (``first``), and
    the first pass goes on from it with the same iterator, so no batch is lost
    and the factory is called once per pass. Each later pass calls the factory
    again; getting the same iterator back, no batch, or a different number of
    rows means the factory does not create a fresh iterable each time.
    """

    def __init__(self, factory: Callable[[], Iterable]):
        self._factory = factory
        self._iterator = None
        self._passes = 0
        self.n_rows: int | None = None  # rows of the first pass, once it has ended
        self._started = self._fresh()
        self.first = next(self._started, None)
        if self.first is None:
            raise ValueError("fit_stream: the data yielded no batch.")

    def _fresh(self) -> Iterator:
        batches = self._factory()
        if hasattr(batches, "shape"):
            raise TypeError(
                "fit_stream: the callable passed as data returned an array; it must return an "
                "iterable of batches (e.g. `lambda: [x]`), or pass the array itself with "
                "batch_size=."
            )
        if not isinstance(batches, Iterable):
            raise TypeError(
                "fit_stream: the callable passed as data must return an iterable of batches, "
                f"got {type(batches).__name__}."
            )
        iterator = iter(batches)
        if iterator is self._iterator:
            raise ValueError(
                "fit_stream: the callable passed as data returned the same iterator again "
                f"(used up by the previous pass): {_FRESH}."
            )
        self._iterator = iterator
        return iterator

    def __call__(self) -> Iterator:
        """An iterator over the (raw) batches of the next pass."""
        if self._started is not None:
            batches, self._started = itertools.chain([self.first], self._started), None
        else:
            batches = self._fresh()
        self._passes += 1
        return self._checked(batches, self._passes)

    def _checked(self, batches, k):
        rows = 0
        for batch in batches:
            yield batch
            rows += np.shape(batch)[0]
        if rows == 0:
            raise ValueError(
                f"fit_stream: pass {k} over the data yielded no batch (the first did): {_FRESH}."
            )
        if self.n_rows is None:
            self.n_rows = rows
        elif rows != self.n_rows:
            raise ValueError(
                f"fit_stream: pass {k} over the data yielded {rows} rows, the first "
                f"{self.n_rows}: {_FRESH}, with the same batches every time."
            )


def _check_model(model) -> None:
    if not isinstance(model, Mixture):
        raise TypeError("fit_stream needs an em.Mixture (its M-step works from statistics).")
    if model._reads_units():
        raise TypeError(
            "fit_stream takes batches of arrays; a mixture of regressions (or with gating) "
            "reads a data pytree: fit it with em.fit and chunk_size= instead."
        )
    families = model.families or [model.family]
    for family, update in zip(families, model.updates(2, False), strict=True):
        if update is not FROM_STATS:
            raise ValueError(
                f"fit_stream: {family!r} has no closed-form M-step from sufficient statistics "
                "(a gradient-only family, or priors its closed form does not cover); fit it "
                "with em.fit and chunk_size= instead."
            )


def _recentre(stats, old_centre, new_centre):
    """Move statistics centred at ``old_centre`` (Normal/MVN: ``n, s1, s2``) to ``new_centre``.

    ``Σ r (x − c')`` and ``Σ r (x − c')(x − c')ᵀ`` from the sums about ``c``;
    statistics of other families are raw sums and pass through.
    """
    fields = getattr(stats, "_fields", ())
    if not {"n", "s1", "s2"} <= set(fields):
        return stats
    d = old_centre - new_centre  # (K, ...)
    n = stats.n.reshape(stats.n.shape + (1,) * (stats.s1.ndim - stats.n.ndim))
    s1 = stats.s1 + n * d
    if stats.s2.ndim == stats.s1.ndim + 1:  # full matrices (K, D, D)
        outer = stats.s1[:, :, None] * d[:, None, :]
        s2 = stats.s2 + outer + jnp.swapaxes(outer, 1, 2)
        s2 = s2 + n[..., None] * d[:, :, None] * d[:, None, :]
    else:
        s2 = stats.s2 + 2 * d * stats.s1 + n * d * d
    return stats._replace(s1=s1, s2=s2)


def fit_stream(
    model: Mixture,
    data,
    *,
    batch_size: int | None = None,
    init=None,
    key=None,
    method: str = "exact",
    max_iter: int = 100,
    tol: float = 1e-8,
    epochs: int = 1,
    decay: float = 0.6,
) -> StreamResult:
    """Fit an ``em.Mixture`` to data streamed from the host in batches.

    Args:
        model: an ``em.Mixture`` whose families all have closed-form M-steps
            from sufficient statistics.
        data: an ``(N,)``/``(N, D)`` NumPy array or ``np.memmap`` (with
            ``batch_size``), or a function returning a fresh iterable of batches
            (arrays with the same trailing shape, none longer than the first)
            each time it is called, e.g. ``lambda: make_batches()`` or
            ``lambda: iter(list_of_arrays)``. It is called once per pass and
            every pass must yield the same rows; returning the same, used-up
            generator again raises ``ValueError``. A generator or iterator
            itself is refused, since it can be read only once and exact EM
            makes one pass per iteration (``method="online"`` with
            ``epochs=1`` makes a single pass and calls the function once, so
            there ``lambda: gen`` streams a one-shot source). A list of arrays
            is refused too: pass ``lambda: arrays`` to use them as batches.
        batch_size: rows per batch when ``data`` is an array or memmap; an error
            with a function (its batches already define their size).
        init: the start (``em.MixtureParams``); or ``key`` to draw one from the
            first batch with the model's ``init``.
        method: ``"exact"`` (one pass per EM iteration) or ``"online"``
            (stepwise EM, Cappé & Moulines 2009).
        max_iter: ``exact``: the most passes.
        tol: ``exact``: stop when the objective gains no more than ``tol`` per sample.
        epochs: ``online``: passes over the data.
        decay: ``online``: step sizes ``γ_t = (t + 2)^(−decay)``, ``0.5 < decay ≤ 1``.

    Example:
        >>> x = np.load("big.npy", mmap_mode="r")
        >>> res = em.fit_stream(em.Mixture(em.MultivariateNormal("diag"), 8), x,
        ...                     batch_size=1_000_000, key=jax.random.key(0))
    """
    _check_model(model)
    if method not in ("exact", "online"):
        raise ValueError(f"method must be 'exact' or 'online', got {method!r}.")
    max_iter = _validation.check_int("max_iter", max_iter, 1)
    epochs = _validation.check_int("epochs", epochs, 1)
    tol = _validation.check_tol(tol)
    if not 0.5 < float(decay) <= 1.0:
        raise ValueError(f"decay must lie in (0.5, 1] (Cappé & Moulines), got {decay}.")
    batches = _Passes(_batches(data, batch_size))
    first = _validation.prepare_data(model, batches.first)
    size = first.shape[0]
    if init is not None:
        params = model._check_params(init, first)
    elif key is not None:
        params = jax.jit(model._draw)(_validation.as_key(key), first)
    else:
        raise ValueError("fit_stream needs init= (a start) or key= to draw one.")

    estep = _compiled_estep(model)

    def padded(batch):
        x = _validation.prepare_data(model, batch, fitting=False)  # a last batch may be short
        if x.shape[1:] != first.shape[1:]:
            raise ValueError(
                f"batches must all have trailing shape {first.shape[1:]}, got {x.shape[1:]}."
            )
        n = x.shape[0]
        if n > size:
            raise ValueError(f"batches may not grow: the first had {size} rows, one has {n}.")
        w = jnp.concatenate([jnp.ones(n, x.dtype), jnp.zeros(size - n, x.dtype)])
        x = jnp.concatenate([x, jnp.broadcast_to(x[:1], (size - n,) + x.shape[1:])])
        return x, w, n

    if method == "exact":
        return _exact(model, batches, params, estep, padded, first, max_iter, tol)
    return _online(model, batches, params, estep, padded, first, epochs, float(decay))


def _compiled_estep(model: Mixture):
    key = ("stream estep",)
    fn = model._compiled.get(key)
    if fn is None:

        def estep(params, x, w):
            stats, row_ll = model.sufficient_statistics(params, x, w)
            ll = jnp.sum(jnp.where(w > 0, w * row_ll, 0))
            return stats.counts, stats.stats, ll

        fn = model._compiled[key] = jax.jit(estep)
    return fn


def _m_step(model, params, counts, stats, template):
    return model.maximize(params, template, None, MixtureStats(counts, stats), NO_EXTRA)


def _exact(model, batches, params, estep, padded, first, max_iter, tol):
    m_step = jax.jit(lambda p, c, s: _m_step(model, p, c, s, first))
    log_prior = jax.jit(model.log_prior)

    def one_pass(p):
        total, n = None, 0
        for batch in batches():
            x, w, rows = padded(batch)
            part = estep(p, x, w)
            total = part if total is None else jax.tree.map(jnp.add, total, part)
            n += rows
        counts, stats, ll = total
        return counts, stats, float(ll) + float(log_prior(p)), n

    counts, stats, objective, n = one_pass(params)
    history, converged = [objective], False
    for _ in range(max_iter):  # one pass over the host's batches per iteration
        candidate = m_step(params, counts, stats)
        c2, s2, obj2, _ = one_pass(candidate)
        if not np.isfinite(obj2) or obj2 < objective - 8 * np.finfo(np.float32).eps * abs(
            objective
        ):
            break  # never hand back a worse point
        gain = obj2 - objective
        params, counts, stats, objective = candidate, c2, s2, obj2
        history.append(objective)
        if gain <= tol * n:
            converged = True
            break
    return StreamResult(params, objective, len(history) - 1, converged, np.array(history), n)


def _online(model, batches, params, estep, padded, first, epochs, decay):
    # Per-sample running statistics, kept as raw sums about 0 so that batches
    # whose statistics were centred at different means can be averaged.
    @jax.jit
    def update(params, running, x, w, gamma, n_total):
        counts, stats, _ = estep(params, x, w)
        rows = jnp.sum(w)
        centres = [getattr(b.params, "mean", None) for b in model.blocks(params.components)]
        raw = tuple(
            st if c is None else _recentre(st, c, jnp.zeros_like(c))
            for st, c in zip(stats, centres, strict=True)
        )
        batch = jax.tree.map(lambda a: a / rows, (counts, raw))
        running = (
            batch
            if running is None
            else jax.tree.map(lambda r, b: (1 - gamma) * r + gamma * b, running, batch)
        )
        counts_n, raw_n = jax.tree.map(lambda a: a * n_total, running)
        centred = tuple(
            st if c is None else _recentre(st, jnp.zeros_like(c), c)
            for st, c in zip(raw_n, centres, strict=True)
        )
        return _m_step(model, params, counts_n, centred, first), running

    n_total = None
    running, t = None, 0
    for _ in range(epochs):
        seen = 0
        for batch in batches():
            x, w, rows = padded(batch)
            seen += rows
            # Before the first pass ends, N is the rows seen so far.
            n = float(n_total if n_total is not None else seen)
            gamma = 1.0 if running is None else (t + 2.0) ** -decay
            params, running = update(params, running, x, w, gamma, n)
            t += 1
        n_total = seen
    return StreamResult(params, float("nan"), t, False, np.array([]), n_total)
