"""Passes over the data in row chunks, inside the compiled program.

A pass over ``N`` rows that builds ``(N, K)`` (or ``(N, K, D)``) temporaries is
split into ``count`` chunks of ``size`` rows, looped with ``lax.fori_loop``:
sums are accumulated in the loop carry and per-row outputs written into an
``(N,)`` array, so peak memory is the data plus ``O(size · K · D)``. Padded
rows (up to ``size - 1`` of them) carry zero weight.

Two layouts: *contiguous* chunks (rows ``b·size … (b+1)·size - 1``: the best
cache locality on one device) and *strided* chunks (rows ``b, b + count,
b + 2·count, …``) for row-sharded data: every chunk then holds rows of every
device, so each device keeps working on its own shard.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Chunking",
    "plan",
    "take",
    "rows_sum",
    "map_rows",
    "sum_rows",
    "pad_rows",
    "pad_units",
    "target_floats",
]

#: floats of (rows, K · D) work per chunk on a CPU: ~2^20 kept chunk
#: temporaries in cache and was 2-3x faster than one pass at (N, D, K) =
#: (1e5, 16, 8) on a 2-core Zen 4 (see PERF_NOTES); at D = 2 one pass and
#: chunks were on par.
_TARGET_FLOATS = 1 << 20
#: On a GPU or TPU each chunk costs ~10 kernel launches (microseconds each)
#: and caches do not matter: chunks of 2^25 floats (128 MiB in float32, shared
#: by the vmapped restarts) keep launches rare and memory bounded.
_ACCELERATOR_FLOATS = 1 << 25


def target_floats(backend: str | None = None, restarts: int = 1) -> int:
    """Floats of ``(rows, K·D)`` work per chunk on ``backend`` (default: JAX's).

    On a CPU, ``2^20`` (cache-sized, measured); on an accelerator ``2^25``
    split among ``restarts`` vmapped restarts (at least ``2^20``).
    """
    backend = jax.default_backend() if backend is None else backend
    if backend == "cpu":
        return _TARGET_FLOATS
    return max(_TARGET_FLOATS, _ACCELERATOR_FLOATS // max(restarts, 1))


class Chunking(NamedTuple):
    """Static description of the chunks (hashable: part of the compiled program)."""

    size: int  # rows per chunk
    count: int  # number of chunks
    strided: bool  # chunk b holds rows b, b + count, ... (row-sharded data)

    @property
    def rows(self) -> int:
        """Rows after padding: ``size · count``."""
        return self.size * self.count


def plan(
    n: int,
    k: int,
    d: int,
    chunk_size,
    n_devices: int = 1,
    backend: str | None = None,
    restarts: int = 1,
    gemm_width: int | None = None,
) -> Chunking | None:
    """Chunks for ``n`` rows of ``d`` features and ``k`` states, or ``None`` for one pass.

    ``chunk_size=None`` chooses: one pass when the problem is small (at most
    ``2 · target`` rows, ``target = max(1024, target_floats(backend, restarts) /
    (K·D))``), else chunks of about ``target`` rows. An integer asks for that
    many rows per chunk (one pass if ``>= n``). With several devices the chunks
    are strided and their size a multiple of the device count.

    ``gemm_width``: the model's passes over the rows are matrix products of
    this many floats per row (no ``(rows, K, D)`` temporaries), which caches
    do not favour chunking: chunks then only bound memory, at the
    accelerators' ``2^25`` floats on a CPU too.
    """
    d = max(d, 1)
    if chunk_size is None:
        if gemm_width:
            floats = max(target_floats(backend, restarts), _ACCELERATOR_FLOATS // max(restarts, 1))
            target = max(1024, floats // gemm_width)
        else:
            target = max(1024, target_floats(backend, restarts) // (k * d))
        if n <= 2 * target:
            return None
        size = math.ceil(n / math.ceil(n / target))
    else:
        if chunk_size >= n:
            return None
        size = chunk_size
    quantum = 8 * n_devices
    size = quantum * math.ceil(size / quantum)
    # Prefer a size that divides n (no padded copy of the data), within 2x below.
    for candidate in range(size, max(quantum, size // 2) - 1, -quantum):
        if n % candidate == 0:
            size = candidate
            break
    count = math.ceil(n / size)
    if count == 1:
        return None
    return Chunking(size, count, n_devices > 1)


def pad_units(data, chunking: Chunking):
    """Each array of the pytree ``data`` padded to ``chunking.rows`` units (copies of its first).

    Padding units repeat unit 0 (inside the model's support); the caller gives
    them zero weight.
    """
    return jax.tree.map(lambda a: pad_rows(a, chunking, a[0]), data)


def pad_rows(arr, chunking: Chunking, fill):
    """``arr`` with rows appended up to ``chunking.rows`` (each a copy of ``fill``)."""
    extra = chunking.rows - arr.shape[0]
    if extra == 0:
        return arr
    pad = jnp.broadcast_to(jnp.asarray(fill, arr.dtype), (extra,) + arr.shape[1:])
    return jnp.concatenate([arr, pad], axis=0)


def take(arr, b, chunking: Chunking):
    """Chunk ``b`` (traced) of the rows of ``arr``, an array or a pytree of arrays (or None)."""
    if arr is None:
        return None
    if not isinstance(arr, jax.Array):  # a pytree of units: the same rows of every array
        return jax.tree.map(lambda a: _take(a, b, chunking), arr)
    return _take(arr, b, chunking)


def _take(arr, b, chunking: Chunking):
    if chunking.strided:
        view = arr.reshape((chunking.size, chunking.count) + arr.shape[1:])
        return jax.lax.dynamic_index_in_dim(view, b, axis=1, keepdims=False)
    return jax.lax.dynamic_slice_in_dim(arr, b * chunking.size, chunking.size, axis=0)


def rows_sum(fn, chunking: Chunking | None, *arrays, checkpoint: bool = False):
    """Sum ``fn`` over the chunks of ``arrays`` (all with the same rows).

    ``chunking=None`` is one pass: ``fn(*arrays)`` itself.

    ``fn(*chunk_arrays) -> (total, row_values)``: a pytree summed over chunks,
    and a pytree of per-row values (each ``(size, ...)``, or ``None``),
    returned as ``(rows, ...)`` in the original row order: what the E-step
    carries to the M-step (row log-likelihoods, responsibilities).
    ``checkpoint=True`` recomputes each chunk in the backward pass of
    ``jax.grad`` instead of storing its temporaries.
    """
    if chunking is None:
        return fn(*arrays)
    body_fn = jax.checkpoint(fn) if checkpoint else fn
    first = [take(a, 0, chunking) for a in arrays]
    total_shape, row_shape = jax.eval_shape(fn, *first)
    total0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), total_shape)
    axis = 1 if chunking.strided else 0
    lead = (chunking.size, chunking.count) if chunking.strided else (chunking.count, chunking.size)
    rows0 = jax.tree.map(lambda s: jnp.zeros(lead + s.shape[1:], s.dtype), row_shape)

    def body(b, carry):
        total, rows = carry
        part, values = body_fn(*[take(a, b, chunking) for a in arrays])
        total = jax.tree.map(jnp.add, total, part)
        rows = jax.tree.map(
            lambda r, v: jax.lax.dynamic_update_index_in_dim(r, v, b, axis=axis), rows, values
        )
        return total, rows

    total, rows = jax.lax.fori_loop(0, chunking.count, body, (total0, rows0))
    return total, jax.tree.map(lambda r: r.reshape((chunking.rows,) + r.shape[2:]), rows)


def map_rows(fn, x, k: int):
    """``fn(x)`` for a row-wise ``fn``, computed over cache-sized row chunks.

    For a family's own passes over data it was handed whole (a fit with
    ``chunk_size`` at least ``N``, scoring many rows): :func:`plan` with
    ``chunk_size=None`` picks the chunks (none for a small problem) and
    :func:`rows_sum` loops over them. ``x`` is ``(N, D)``; ``fn`` maps
    ``(rows, D)`` to ``(rows, ...)``; ``k`` sizes the work per row (``K·D``).
    """
    n, d = x.shape
    chunking = plan(n, k, d, None)
    if chunking is None:
        return fn(x)
    _, out = rows_sum(lambda rows: ((), fn(rows)), chunking, pad_units(x, chunking))
    return out[:n]


def sum_rows(fn, x, weights, k: int):
    """``fn(x, weights)`` for an ``fn`` that sums over rows, over cache-sized row chunks.

    ``weights`` is ``(N, ...)`` (padding rows get weight 0, so ``fn`` must
    give them no share); see :func:`map_rows` for the chunks.
    """
    n, d = x.shape
    chunking = plan(n, k, d, None)
    if chunking is None:
        return fn(x, weights)
    total, _ = rows_sum(
        lambda xb, wb: (fn(xb, wb), None),
        chunking,
        pad_units(x, chunking),
        pad_rows(weights, chunking, 0),
    )
    return total
