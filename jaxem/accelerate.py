"""EM steps: the plain EM map, and SQUAREM extrapolation with a monotone safeguard.

A *point* is a parameter value together with its E-step (objective, row
log-likelihoods, and what the next M-step consumes). ``em_map(point)`` is one
EM-map evaluation: an M-step from ``point`` followed by the E-step at the
result. Every strategy here returns a point whose objective is at least that
of the point it started from (up to rounding), so EM stays monotone.

SQUAREM (Varadhan & Roland 2008, scheme S3) takes two EM steps
θ1 = F(θ0), θ2 = F(θ1) in the unconstrained coordinates of the parameters,
forms r = θ1 - θ0 and v = θ2 - 2θ1 + θ0, and jumps to
θ' = θ0 + 2a·r + a²·v with a = ‖r‖/‖v‖ clipped to [1, a_max] (a = 1 is θ2
itself). If θ' is not at least as good as θ2 (or not finite), θ2 is kept; so
it is if the jump shrinks a probability vector's entry (mixture weights) more
than 100-fold below θ2's, since extrapolating log-ratios can otherwise kill a
component on the way to a better objective and end on a boundary point.
a_max starts at 1 and grows ×4 each time a full-length jump is accepted, and
shrinks ×4 after a rejected one (the step-length adaptation of the SQUAREM
R package), so a bad extrapolation costs one extra E-step, never a decrease.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxem import constraints as _constraints

__all__ = ["Point", "plain_step", "squarem_step", "ACCELERATORS"]


class Point(NamedTuple):
    params: Any
    objective: jax.Array
    log_likelihood: jax.Array
    row_ll: jax.Array  # (N,) log p(x_i | params)
    log_prior: jax.Array
    m_input: Any


def plain_step(em_map: Callable, evaluate: Callable, leaves, point: Point, step_max):
    """One EM iteration: ``(new_point, n_evals=1, step_max)``."""
    del evaluate, leaves
    return em_map(point), 1, step_max


def _sq_norm(tree):
    return sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree))


def _keeps_probabilities(leaves, jumped, plain, factor=1e-2):
    """No probability vector (e.g. mixture weights) shrinks 100x below the plain step's.

    Extrapolating log-ratios can push a component's weight to ~0 in one jump
    while the objective still rises; EM can hardly revive it, and the fit ends
    on a boundary point plain EM would not reach from the same start.
    """
    ok = jnp.ones((), bool)
    flat_c = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    for con, a, b in zip(flat_c, jax.tree.leaves(jumped), jax.tree.leaves(plain), strict=True):
        if con is _constraints.simplex:
            ok = ok & jnp.all(a >= factor * b)
    return ok


def squarem_step(em_map: Callable, evaluate: Callable, leaves, point: Point, step_max):
    """One SQUAREM iteration: two EM maps, one extrapolation, one safeguard E-step.

    Returns ``(new_point, n_evals=3, new_step_max)``.
    """
    p1 = em_map(point)
    p2 = em_map(p1)
    u0 = _constraints.to_unconstrained(leaves, point.params)
    u1 = _constraints.to_unconstrained(leaves, p1.params)
    u2 = _constraints.to_unconstrained(leaves, p2.params)
    r = jax.tree.map(lambda a, b: b - a, u0, u1)
    v = jax.tree.map(lambda a, b, c: c - 2 * b + a, u0, u1, u2)
    rr, vv = _sq_norm(r), _sq_norm(v)
    raw = jnp.sqrt(rr / jnp.where(vv > 0, vv, 1))
    a = jnp.clip(jnp.where((vv > 0) & jnp.isfinite(raw), raw, 1.0), 1.0, step_max)
    u_new = jax.tree.map(lambda u, rr_, vv_: u + 2 * a * rr_ + a * a * vv_, u0, r, v)
    jumped = evaluate(_constraints.to_constrained(leaves, u_new))
    accept = (
        jnp.isfinite(jumped.objective)
        & (jumped.objective >= p2.objective)
        & _keeps_probabilities(leaves, jumped.params, p2.params)
    )
    new = jax.tree.map(lambda j, b: jnp.where(accept, j, b), jumped, p2)
    step_max = jnp.where(
        accept,
        jnp.where(a >= step_max, 4 * step_max, step_max),
        jnp.maximum(1.0, step_max / 4),
    )
    return new, 3, step_max


ACCELERATORS = {None: plain_step, "none": plain_step, "squarem": squarem_step}
