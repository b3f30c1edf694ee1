"""One compiled program per covariance model for a whole grid of K × restarts.

``em.select_model`` fits every number of components K of its grid, with
``n_init`` restarts each, in a single program: every run has ``K_max``
components, those past its own K are masked (weight 0, frozen). A run stops on
its own (scikit-learn's rule: the per-sample log-likelihood changed by less
than ``tol``). On a CPU the runs go one after the other (``lax.map``), each to
its own convergence; elsewhere under ``vmap``, where a finished run no longer
changes while the others go on. So a grid costs one compilation per covariance
model however many K and restarts it has.

Starts are k-means (k-means++ seeding, then Lloyd) per run, the first K of the
``K_max`` k-means++ centres (a draw for K alone); the first M-step from the
k-means labels gives the start, as scikit-learn's ``init_params="kmeans"``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.mvn import MultivariateNormalParams, _stats
from jaxem.families.parsimonious import ParsimoniousGaussian, _update

_HI = jax.lax.Precision.HIGHEST


class GridRuns(NamedTuple):
    """Every run of one covariance model: leading axis R = len(ks) × n_init."""

    log_likelihood: jax.Array  # (R,) summed over rows, at the returned parameters
    log_map: jax.Array  # (R,) Σ_i log max_k r_ik (ICL's classification term)
    n_iter: jax.Array  # (R,)
    converged: jax.Array  # (R,)
    weights: jax.Array  # (R, K_max)
    mean: jax.Array  # (R, K_max, D)
    cov: jax.Array  # (R, K_max, D, D)


def _kmeans_resp(key, x, k_max: int, active, max_iter: int = 100):
    """One-hot ``(N, K_max)`` k-means labels using only the ``active`` centres."""
    xc = x - jnp.mean(x, axis=0)
    _, centres = kmeans_plus_plus(key, xc, k_max)
    sq = jnp.sum(xc * xc, axis=1)[:, None]

    def labels_of(c):
        dist = sq - 2 * jnp.matmul(xc, c.T, precision=_HI) + jnp.sum(c * c, axis=1)[None, :]
        return jnp.argmin(jnp.where(active[None, :], dist, jnp.inf), axis=1)

    def body(state):
        i, c, labels, _ = state
        onehot = jax.nn.one_hot(labels, k_max, dtype=x.dtype)
        counts = jnp.sum(onehot, axis=0)
        mean = jnp.matmul(onehot.T, xc, precision=_HI) / jnp.maximum(counts, 1)[:, None]
        c = jnp.where((counts > 0)[:, None], mean, c)
        new = labels_of(c)
        return i + 1, c, new, jnp.any(new != labels)

    def cond(state):
        return (state[0] < max_iter) & state[3]

    state = (jnp.zeros((), jnp.int32), centres, labels_of(centres), jnp.ones((), bool))
    return jax.nn.one_hot(jax.lax.while_loop(cond, body, state)[2], k_max, dtype=x.dtype)


@functools.lru_cache(maxsize=64)
def program(
    model: str,
    k_max: int,
    max_iter: int,
    tol: float,
    reg_covar: float,
    sweeps: int,
    in_turn: bool = False,
):
    """The jitted ``(x (N, D), keys (R,), ks (R,)) -> GridRuns`` of one covariance model.

    ``in_turn``: the runs one after the other (``lax.map``, as ``em.fit`` runs
    restarts on a CPU), each to its own convergence; otherwise stepped together.
    """
    family = ParsimoniousGaussian(model, reg_covar=reg_covar, sweeps=sweeps)

    def m_step(x, resp, active, centre, cov_old):
        stats = _stats(family, MultivariateNormalParams(centre, None), x, resp, None)
        params = _update(family, MultivariateNormalParams(centre, cov_old), stats)
        # scikit-learn's weights: n_k + 10 eps, normalised; masked components 0.
        n = jnp.where(active, stats.n + 10 * jnp.finfo(x.dtype).eps, 0)
        return n / jnp.sum(n), params

    def e_step(x, weights, params, active):
        log_w = jnp.where(
            active & (weights > 0), jnp.log(jnp.where(weights > 0, weights, 1)), -jnp.inf
        )
        joint = family.log_prob_components(params, x) + log_w[None, :]
        joint = jnp.where(active[None, :], joint, -jnp.inf)
        norm = jax.nn.logsumexp(joint, axis=1)
        return jnp.exp(joint - norm[:, None]), jnp.sum(norm)

    def one(x, key, k):
        n, d = x.shape
        active = jnp.arange(k_max) < k
        resp = _kmeans_resp(key, x, k_max, active)
        centre = jnp.broadcast_to(jnp.mean(x, axis=0), (k_max, d))
        xc = x - centre[0]
        glob = jnp.matmul(xc.T, xc, precision=_HI) / n
        cov0 = jnp.broadcast_to(
            glob + jnp.eye(d, dtype=x.dtype) * jnp.trace(glob) / d, (k_max, d, d)
        )
        weights, params = m_step(x, resp, active, centre, cov0)

        def body(state):
            i, weights, params, prev, _ = state
            resp, ll = e_step(x, weights, params, active)
            weights, params = m_step(x, resp, active, params.mean, params.cov)
            done = jnp.abs(ll - prev) / n < tol
            return i + 1, weights, params, ll, done

        def cond(state):
            i, _, _, ll, done = state
            return (i < max_iter) & ~done & ~jnp.isnan(ll)

        inf = jnp.asarray(-jnp.inf, x.dtype)
        state = (jnp.zeros((), jnp.int32), weights, params, inf, jnp.zeros((), bool))
        i, weights, params, _, done = jax.lax.while_loop(cond, body, state)
        resp, ll = e_step(x, weights, params, active)
        log_map = jnp.sum(jnp.log(jnp.max(resp, axis=1)))
        return GridRuns(ll, log_map, i, done, weights, params.mean, params.cov)

    if in_turn:
        return jax.jit(lambda x, keys, ks: jax.lax.map(lambda run: one(x, *run), (keys, ks)))
    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))
