"""``em.check_m_step``: verify closed-form M-steps against autodiff of the declared objective.

A registered (or user-supplied) update promises two things about
``Q(θ|θt) + log prior``, the objective the M-step must maximise:

1. it never decreases it (the ascent property EM's monotonicity rests on);
2. where it claims to be exact, it is the maximiser: the gradient of the
   objective at its output, in the unconstrained coordinates, vanishes.

``check_m_step`` evaluates both with ``jax.grad`` on the declared densities and
priors, independently of the update's algebra. Run it in float64
(``with jax.enable_x64(True):``) for a sharp verdict.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem import constraints as _constraints
from jaxem.estep import e_step
from jaxem.families.base import closed_form_for, component_constraints
from jaxem.mixture import Mixture
from jaxem.model import Model

__all__ = ["check_m_step", "MStepCheck", "PieceCheck"]


@dataclasses.dataclass(frozen=True)
class PieceCheck:
    """The verdict on one piece of an M-step (the weights, a family's components, a model)."""

    name: str
    kind: str  # "closed form", "ECM (ascent)" or "user m_step"
    objective_before: float
    objective_after: float
    grad_before: float  # max |∂ objective / ∂u| at θt, per unit of sample weight
    grad_after: float  # the same at the update
    exact: bool
    in_support: bool
    ok: bool


@dataclasses.dataclass(frozen=True)
class MStepCheck:
    """All pieces checked by :func:`check_m_step`; ``ok`` when every piece passed."""

    pieces: tuple
    ok: bool

    def __repr__(self) -> str:
        head = f"{'piece':<28} {'kind':<14} {'Δ objective':>13} {'|grad| before':>14} "
        head += f"{'|grad| after':>13}  verdict"
        rows = [head]
        for p in self.pieces:
            rows.append(
                f"{p.name:<28} {p.kind:<14} {p.objective_after - p.objective_before:>13.4g} "
                f"{p.grad_before:>14.3g} {p.grad_after:>13.3g}  {'ok' if p.ok else 'FAILED'}"
            )
        return "\n".join(rows)

    def raise_if_failed(self) -> None:
        """Raise ``AssertionError`` listing the pieces that failed."""
        if not self.ok:
            raise AssertionError(f"M-step check failed:\n{self!r}")


def _grad_max(objective, params, leaves) -> float:
    u = _constraints.to_unconstrained(leaves, params)
    g = jax.grad(lambda v: objective(_constraints.to_constrained(leaves, v)))(u)
    return float(max((jnp.max(jnp.abs(a)) for a in jax.tree.leaves(g)), default=0.0))


def _supported(leaves, params) -> bool:
    flat = jax.tree.leaves(params)
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    return all(c.check(np.asarray(p)) for c, p in zip(cons, flat, strict=True))


def _piece(name, kind, objective, before, after, leaves, exact, rtol, atol) -> PieceCheck:
    f_before, f_after = float(objective(before)), float(objective(after))
    g_before = _grad_max(objective, before, leaves)
    g_after = _grad_max(objective, after, leaves)
    in_support = _supported(leaves, after)
    scale = max(abs(f_before), abs(f_after), 1.0)
    ascent = f_after >= f_before - rtol * scale
    stationary = (not exact) or g_after <= max(atol, rtol * g_before)
    ok = bool(ascent and stationary and in_support and np.isfinite(f_after))
    return PieceCheck(name, kind, f_before, f_after, g_before, g_after, exact, in_support, ok)


def check_m_step(
    model: Model,
    x,
    params=None,
    *,
    key=None,
    sample_weight=None,
    rtol: float | None = None,
    atol: float | None = None,
) -> MStepCheck:
    """Check a model's closed-form M-step(s) against autodiff of ``Q + log prior``.

    Args:
        model: an ``em.Mixture`` (every piece with a closed form is checked)
            or an ``em.Model`` with an ``m_step``.
        x: data, ``(N,)`` or ``(N, D)``.
        params: the point θt to step from; drawn with ``model.init`` and
            ``key`` (default ``jax.random.key(0)``) when omitted.
        sample_weight: optional ``(N,)`` row weights (checked too).
        rtol, atol: tolerances; an exact update must shrink the largest
            gradient entry to ``max(atol, rtol * gradient at θt)``, and no update
            may lower the objective by more than ``rtol`` relative.
            Defaults: 1e-7/1e-9 in float64, 1e-3/1e-5 in float32.

    Returns:
        An :class:`MStepCheck`; ``print`` it for a table, ``.ok`` for the verdict.

    Example:
        >>> with jax.enable_x64(True):
        ...     report = em.check_m_step(em.Mixture(em.Normal(), 3), x)
        >>> report.ok
        True
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    xd = _validation.prepare_data(model, x)
    w = _validation.prepare_sample_weight(sample_weight, xd.shape[0])
    f64 = xd.dtype == jnp.float64
    rtol = rtol if rtol is not None else (1e-7 if f64 else 1e-3)
    atol = atol if atol is not None else (1e-9 if f64 else 1e-5)
    if params is None:
        if not model._can_draw():
            raise ValueError("check_m_step: pass params=, or give the model an init.")
        key = _validation.as_key(key if key is not None else 0)
        params = model._draw(key, xd)
    else:
        params = model._check_params(params, xd)
    resp, _ = e_step(model.log_joint(params, xd))
    total = jnp.sum(w)
    wr = resp * w[:, None]

    if isinstance(model, Mixture):
        pieces = _check_mixture(model, xd, w, params, resp, wr, total, rtol, atol)
    else:
        if model.m_step is None:
            raise ValueError(
                "check_m_step: this model has no m_step to check (its M-step is the gradient one)."
            )

        def objective(theta):
            lj = model.log_joint(theta, xd)
            return (jnp.sum(jnp.where(wr > 0, wr * lj, 0)) + model.log_prior(theta)) / total

        new = model.m_step(params, xd, resp, w)
        leaves = _constraints.broadcast(model.constraints, params)
        pieces = [_piece("model", "user m_step", objective, params, new, leaves, True, rtol, atol)]
    if not pieces:
        raise ValueError("check_m_step: no piece of this model's M-step has a closed form.")
    return MStepCheck(tuple(pieces), all(p.ok for p in pieces))


def _check_mixture(model, x, w, params, resp, wr, total, rtol, atol):
    pieces = []
    counts = jnp.sum(wr, axis=0)
    prior = model.weights_prior
    from jaxem import priors as _priors

    if prior is None or isinstance(prior, _priors.Dirichlet):

        def weights_objective(weights):
            ll = jnp.sum(jnp.where(counts > 0, counts * jnp.log(weights), 0))
            lp = 0.0 if prior is None else jnp.sum(prior(weights))
            return (ll + lp) / total

        new_w = model._update_weights(params.weights, counts)
        leaves = _constraints.broadcast(_constraints.simplex, params.weights)
        pieces.append(
            _piece(
                "weights",
                "closed form",
                weights_objective,
                params.weights,
                new_w,
                leaves,
                True,
                rtol,
                atol,
            )
        )
    blocks = model._to_blocks(params.components)
    for i, ((family, sl), block) in enumerate(zip(model._slices(), blocks, strict=True)):
        cf = closed_form_for(family)
        if cf is None:
            continue
        wr_b = wr[:, sl]

        def objective(theta, family=family, wr_b=wr_b):
            lp = family.log_prob_components(theta, x)
            return (jnp.sum(jnp.where(wr_b > 0, wr_b * lp, 0)) + family.log_prior(theta)) / total

        if cf.sufficient_stats is not None:
            stats = cf.sufficient_stats(family, block, x, resp[:, sl], w)
            new = cf.update(family, block, stats)
        else:
            new = cf.update(family, block, x, resp[:, sl], w)
        exact = bool(cf.exact(family))
        name = f"{type(family).__name__} components" + (
            f" [{i}]" if model.families is not None else ""
        )
        kind = "closed form" if exact else "ECM (ascent)"
        leaves = component_constraints(family, block)
        pieces.append(_piece(name, kind, objective, block, new, leaves, exact, rtol, atol))
    return pieces
