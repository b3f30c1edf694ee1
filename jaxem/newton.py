"""Damped Newton ascent for batches of small concave problems (the GLM and gating M-steps),
and the symmetric positive-definite solve it and the least-squares updates share.

Each of ``B`` independent problems has a parameter vector of ``P`` entries.
A step solves ``information · δ = gradient`` (Cholesky, regularised where
singular), then halves ``δ`` until the objective does not decrease, so every
accepted step is an ascent step (to rounding) and a stopped solver still gives
a generalised EM step. A problem stops when its Newton decrement per unit of
weight falls below the dtype's resolution or stops shrinking, when no step
helps, or after ``max_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ascend", "spd_solve"]


def spd_solve(matrix, rhs):
    """Solve ``matrix @ out = rhs`` for symmetric positive (semi-)definite ``matrix`` (batched).

    Cholesky; where it fails (a singular or empty system) the matrix is
    regularised by ``1e-8`` (float64) or ``1e-5`` (float32) of its mean
    diagonal and solved again. ``rhs`` is ``(..., P)``.
    """
    eye = jnp.eye(matrix.shape[-1], dtype=matrix.dtype)

    def solve(m):
        chol = jnp.linalg.cholesky(m)
        return jax.scipy.linalg.cho_solve((chol, True), rhs[..., None])[..., 0]

    first = solve(matrix)
    eps = 1e-8 if jnp.finfo(matrix.dtype).bits >= 64 else 1e-5
    diag = jnp.mean(jnp.diagonal(matrix, axis1=-2, axis2=-1), axis=-1)
    ridge = (eps * diag + jnp.finfo(matrix.dtype).tiny * 1e3)[..., None, None] * eye
    second = solve(matrix + ridge)
    ok = jnp.all(jnp.isfinite(first), axis=-1, keepdims=True)
    return jnp.where(ok, first, jnp.where(jnp.isfinite(second), second, 0))


class _Carry(NamedTuple):
    beta: jax.Array  # (B, P)
    value: jax.Array  # (B,)
    active: jax.Array  # (B,) still improving
    decrement: jax.Array  # (B,) the last Newton decrement
    step: jax.Array


def ascend(
    objective: Callable,
    derivatives: Callable,
    beta0: jax.Array,
    active: jax.Array,
    max_steps: int,
) -> jax.Array:
    """Maximise each row's concave objective from ``beta0`` by damped Newton steps.

    Far from the optimum a step is halved until the objective does not
    decrease. Near it, where the predicted gain (half the Newton decrement
    ``gᵀH⁻¹g``) is within the objective's rounding noise, values cannot rank
    steps any more: full Newton steps are taken (they converge quadratically
    there) until the decrement is below the dtype's resolution or stops
    shrinking (the gradient is at its rounding noise).

    Args:
        objective: ``beta (B, P) -> (B,)`` values, scaled per unit of weight.
        derivatives: ``beta -> (gradient (B, P), information (B, P, P))`` of the
            same objective (information: minus the Hessian, positive semi-definite).
        beta0: ``(B, P)`` starting points (θt).
        active: ``(B,)`` which problems to solve (others keep ``beta0``).
        max_steps: the most Newton steps.

    Returns:
        ``(B, P)`` points whose objective is at least ``objective(beta0)``, up
        to its rounding noise.
    """
    dtype = beta0.dtype
    eps = jnp.finfo(dtype).eps
    tol = eps * eps  # the decrement is ~|gradient|²: nothing below this is resolved

    def cond(c):
        return jnp.any(c.active) & (c.step < max_steps)

    def body(c):
        grad, info = derivatives(c.beta)
        direction = spd_solve(info, grad)
        decrement = jnp.sum(grad * direction, axis=1)
        noise = 8 * eps * (jnp.abs(c.value) + 1)
        near = decrement <= 4 * noise  # the gain is within the rounding noise
        stalled = near & (decrement > 0.25 * c.decrement)  # no quadratic progress
        active = c.active & (decrement > tol) & ~stalled & jnp.all(jnp.isfinite(direction), axis=1)

        def worse(value):
            return active & ~near & ~(value >= c.value)

        def bt_cond(s):
            return jnp.any(worse(s[1])) & (s[2] < 30)

        def bt_body(s):
            t, value, tries = s
            t = jnp.where(worse(value), t / 2, t)
            return t, objective(c.beta + t[:, None] * direction), tries + 1

        first = (jnp.ones_like(c.value), objective(c.beta + direction), jnp.zeros((), jnp.int32))
        t, value, _ = jax.lax.while_loop(bt_cond, bt_body, first)
        moved = active & (near | (value >= c.value)) & jnp.isfinite(value)
        beta = jnp.where(moved[:, None], c.beta + t[:, None] * direction, c.beta)
        value = jnp.where(moved, value, c.value)
        return _Carry(beta, value, moved, decrement, c.step + 1)

    inf = jnp.full(beta0.shape[:1], jnp.inf, dtype)
    start = _Carry(beta0, objective(beta0), active, inf, jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(cond, body, start).beta
