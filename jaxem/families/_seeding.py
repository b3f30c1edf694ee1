"""Random starts shared by the built-in families: k-means++ seeding."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def as_rows(x):
    """View ``(N,)`` data as ``(N, 1)`` so that seeding works on rows."""
    return x[:, None] if x.ndim == 1 else x


def kmeans_plus_plus(key, x, n_components: int):
    """k-means++ seeding (Arthur & Vassilvitskii 2007).

    Args:
        key: PRNG key.
        x: ``(N,)`` or ``(N, D)`` data.
        n_components: K, the number of centres.

    Returns:
        ``(resp, centres)``: a hard assignment of each row to its nearest
        centre, one-hot ``(N, K)``, and the centres ``(K,) + x.shape[1:]``.
    """
    rows = as_rows(x)
    n = rows.shape[0]
    key_first, key_rest = jax.random.split(key)
    first = jax.random.randint(key_first, (), 0, n, dtype=jnp.int32)
    d2 = jnp.sum((rows - rows[first]) ** 2, axis=-1)
    idx = jnp.zeros(n_components, jnp.int32).at[0].set(first)

    def add_centre(k, carry):
        idx, d2 = carry
        total = jnp.sum(d2)
        # All rows already on a centre (e.g. duplicates): fall back to uniform.
        p = jnp.where(total > 0, d2 / jnp.where(total > 0, total, 1), 1.0 / n)
        new = jax.random.choice(jax.random.fold_in(key_rest, k), n, p=p)
        d2 = jnp.minimum(d2, jnp.sum((rows - rows[new]) ** 2, axis=-1))
        return idx.at[k].set(new.astype(idx.dtype)), d2

    idx, _ = jax.lax.fori_loop(1, n_components, add_centre, (idx, d2))
    centres = rows[idx]
    dist = jnp.sum((rows[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    resp = jax.nn.one_hot(jnp.argmin(dist, axis=1), n_components, dtype=rows.dtype)
    return resp, x[idx]
