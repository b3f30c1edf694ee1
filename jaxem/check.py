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
from jaxem import priors as _priors
from jaxem.estep import e_step
from jaxem.families.base import closed_form_for, component_constraints
from jaxem.mixture import Mixture
from jaxem.model import Model
from jaxem.mstep import expected_log_joint

__all__ = ["check_m_step", "MStepCheck", "PieceCheck"]


@dataclasses.dataclass(frozen=True)
class PieceCheck:
    """The verdict on one piece of an M-step (the weights, a family's components, a model)."""

    name: str
    kind: str  # "closed form", "Newton" (the gating), "ascent step" (not exact) or "user m_step"
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


def _grad_max(objective, params, leaves):
    u = _constraints.to_unconstrained(leaves, params)
    g = jax.grad(lambda v: objective(_constraints.to_constrained(leaves, v)))(u)
    return jnp.max(jnp.stack([jnp.max(jnp.abs(a)) for a in jax.tree.leaves(g)]))


def _measure(objective, before, after, leaves) -> dict:
    """Traced: the numbers a verdict needs, for one piece."""
    return {
        "before": objective(before),
        "after": objective(after),
        "g_before": _grad_max(objective, before, leaves),
        "g_after": _grad_max(objective, after, leaves),
        "new": after,
    }


def _supported(leaves, params) -> bool:
    flat = jax.tree.leaves(params)
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    return all(c.check(np.asarray(p)) for c, p in zip(cons, flat, strict=True))


def _verdict(name, kind, m, leaves, exact, rtol, atol) -> PieceCheck:
    f_before, f_after = float(m["before"]), float(m["after"])
    g_before, g_after = float(m["g_before"]), float(m["g_after"])
    in_support = _supported(leaves, m["new"])
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
    w = _validation.prepare_sample_weight(sample_weight, _validation.n_units(xd))
    f64 = _validation.float_dtype() == jnp.float64
    rtol = rtol if rtol is not None else (1e-7 if f64 else 1e-3)
    atol = atol if atol is not None else (1e-9 if f64 else 1e-5)
    if params is None:
        if not model._can_draw():
            raise ValueError("check_m_step: pass params=, or give the model an init.")
        key = _validation.as_key(key if key is not None else 0)
        params = _cached(model, "draw", lambda m, k, x: m._draw(k, x))(key, xd)
    else:
        params = model._check_params(params, xd)
    # One compiled program per check: eager op-by-op dispatch is several times slower.
    if isinstance(model, Mixture):
        measured = _cached(model, "check", _measure_mixture)(xd, w, params)
        described = _mixture_pieces(model, params)
        pieces = [
            _verdict(name, kind, m, leaves, exact, rtol, atol)
            for (name, kind, leaves, exact), m in zip(described, measured, strict=True)
        ]
    else:
        if model.m_step is None:
            raise ValueError(
                "check_m_step: this model has no m_step to check (its M-step is the gradient one)."
            )
        measured = _cached(model, "check", _measure_model)(xd, w, params)
        leaves = _constraints.broadcast(model.constraints, params)
        pieces = [_verdict("model", "user m_step", measured, leaves, True, rtol, atol)]
    if not pieces:
        raise ValueError("check_m_step: no piece of this model's M-step has a closed form.")
    return MStepCheck(tuple(pieces), all(p.ok for p in pieces))


def _cached(model, name, fn):
    """``jit(fn)`` bound to ``model``, compiled once per model value (and shapes)."""
    from jaxem import _programs

    return _programs.get(model, (name,), lambda: jax.jit(lambda *args: fn(model, *args)))


def _q_objective(log_density, log_prior, wr, total):
    """``(Σ_ik w_i r_ik log f_k(x_i | θ) + log prior(θ)) / Σ w``, as a function of θ."""

    def objective(theta):
        return (expected_log_joint(log_density(theta), wr) + log_prior(theta)) / total

    return objective


def _measure_model(model, x, w, params):
    resp, _ = e_step(model.log_joint(params, x))
    resp = jnp.where(w[:, None] > 0, resp, 0)
    objective = _q_objective(
        lambda t: model.log_joint(t, x), model.log_prior, resp * w[:, None], jnp.sum(w)
    )
    new = model.m_step(params, x, resp, w)
    return _measure(objective, params, new, _constraints.broadcast(model.constraints, params))


def _weights_checked(model) -> bool:
    if model.gating is not None:
        return True  # the gating's Newton M-step
    return model.weights_prior is None or isinstance(model.weights_prior, _priors.Dirichlet)


def _closed_blocks(model, params):
    for i, (family, sl, block) in enumerate(model.blocks(params.components)):
        cf = closed_form_for(family)
        if cf is not None:
            yield i, family, sl, block, cf


def _mixture_pieces(model, params):
    """Host-side description of the pieces, in the order _measure_mixture returns them."""
    out = []
    if model.gating is not None:
        leaves = _constraints.broadcast(model.gating.constraints, params.weights)
        out.append(("gating", "Newton", leaves, True))
    elif _weights_checked(model):
        leaves = _constraints.broadcast(_constraints.simplex, params.weights)
        out.append(("weights", "closed form", leaves, True))
    for i, family, _, block, cf in _closed_blocks(model, params):
        exact = bool(cf.exact(family))
        suffix = f" [{i}]" if model.families is not None else ""
        name = f"{type(family).__name__} components{suffix}"
        kind = getattr(family, "m_step_kind", "closed form") if exact else "ascent step"
        out.append((name, kind, component_constraints(family, block), exact))
    return out


def _measure_mixture(model, x, w, params):
    resp, _ = e_step(model.log_joint(params, x))
    resp = jnp.where(w[:, None] > 0, resp, 0)
    wr, total = resp * w[:, None], jnp.sum(w)
    counts = jnp.sum(wr, axis=0)
    measured = []
    if model.gating is not None:
        gating = model.gating

        def gating_objective(g):
            # The reference row is not a parameter: its entries carry no gradient.
            g = type(g)(g.gate_coef.at[0].set(0), g.gate_intercept.at[0].set(0))
            ll = jnp.sum(jnp.where(wr > 0, wr * gating.log_weights(g, x), 0))
            return (ll + gating.log_prior(g)) / total

        new_g = gating.update(params.weights, x, resp, w)
        leaves = _constraints.broadcast(gating.constraints, params.weights)
        measured.append(_measure(gating_objective, params.weights, new_g, leaves))
    elif _weights_checked(model):
        prior = model.weights_prior

        def weights_objective(weights):
            ll = jnp.sum(jnp.where(counts > 0, counts * jnp.log(weights), 0))
            lp = 0.0 if prior is None else jnp.sum(prior(weights))
            return (ll + lp) / total

        new_w = model.update_weights(params.weights, counts)
        leaves = _constraints.broadcast(_constraints.simplex, params.weights)
        measured.append(_measure(weights_objective, params.weights, new_w, leaves))
    for _, family, sl, block, cf in _closed_blocks(model, params):
        objective = _q_objective(
            lambda t, f=family: f.log_prob_components(t, x), family.log_prior, wr[:, sl], total
        )
        if cf.sufficient_stats is not None:
            new = cf.update(family, block, cf.sufficient_stats(family, block, x, resp[:, sl], w))
        else:
            new = cf.update(family, block, x, resp[:, sl], w)
        measured.append(_measure(objective, block, new, component_constraints(family, block)))
    return measured
