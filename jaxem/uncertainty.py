"""Standard errors, covariance and Wald intervals from the observed information.

The observed information is minus the Hessian of the observed-data
log-likelihood ``Σ_i w_i log p(x_i | θ)`` (plus the log prior for a MAP fit:
the Laplace approximation of the posterior), by autodiff, at the fitted
parameters. It is taken in the unconstrained coordinates of the model's
constraints (a simplex of K weights has K - 1 of them, a covariance matrix
its lower triangle), inverted there, and carried to the natural parameters by
the delta method, so every weight and every covariance entry gets a standard
error. At a maximum (the gradient vanishes) this equals inverting the Hessian
in the natural coordinates directly. The log-likelihood is the model's own
per unit (``model.unit_log_likelihood``): an HMM's forward log-likelihood of
each sequence (``lengths=``), a mixture's marginal density of the observed
entries with ``missing="marginalize"``.

Entries held by ``fixed=``, and entries the model itself holds (a gating's
reference row, intercepts without ``fit_intercept``) are not parameters: they
get no standard error (NaN). Directions of (numerically) zero information,
e.g. two identical components or a component with no data, are reported with
a warning, and the parameters that move along them get NaN, never a number.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxem import _programs, _validation
from jaxem import chunks as _chunks
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem.model import Model

__all__ = ["standard_errors", "covariance", "wald_intervals", "Covariance"]


class Covariance(NamedTuple):
    """The covariance of the estimates (observed-information inverse).

    Attributes:
        matrix: ``(P, P)`` float64 covariance, in the order of ``names``.
        names: one label per coordinate, e.g. ``".components.mean[1]"``.
        coordinates: ``"natural"`` (every entry of every parameter, e.g. all
            K weights, both triangles of a covariance matrix) or
            ``"unconstrained"`` (the coordinates the information was taken in).
    """

    matrix: np.ndarray
    names: tuple
    coordinates: str


class _Info(NamedTuple):
    cov_u: np.ndarray  # (F, F) on the free unconstrained coordinates, NaN where unidentified
    free: np.ndarray  # (U,) bool over the flattened unconstrained coordinates
    bad: np.ndarray  # (U,) bool: free coordinates without information
    jac: np.ndarray  # (M, U) d natural / d unconstrained
    natural_free: np.ndarray  # (M,) bool: natural entries that are parameters
    depends: np.ndarray  # (M, U) bool: natural entry m is a function of coordinate u
    u_names: tuple
    n_names: tuple
    params: Any  # the validated parameters (the float dtype)


def _labels(tree) -> tuple:
    """One label per scalar entry of ``tree``, in ``ravel_pytree`` order."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        base = jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        if shape == ():
            out.append(base)
        else:
            out.extend(f"{base}[{', '.join(map(str, i))}]" for i in np.ndindex(*shape))
    return tuple(out)


def _used_coordinates(constraint, u_leaf) -> np.ndarray:
    """The unconstrained entries a constraint reads (a Cholesky factor's lower triangle)."""
    shape = np.shape(u_leaf)
    if constraint is _constraints.positive_definite:
        d = shape[-1]
        return np.broadcast_to(np.tril(np.ones((d, d), bool)), shape).copy()
    return np.ones(shape, bool)


def _dependence(leaves, u, params) -> np.ndarray:
    """``(M, U)``: which unconstrained coordinates each natural entry is a function of.

    From the constraints' structure, not from the Jacobian's values: at a
    boundary (an HMM's initial probabilities from one sequence) a softmax's
    derivative underflows to exactly 0, yet the entry still moves with the
    coordinate. Entries of one probability vector (or one matrix) depend on
    all of its coordinates; elementwise constraints on their own.
    """
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    blocks = []
    for con, ul, nl in zip(cons, jax.tree.leaves(u), jax.tree.leaves(params), strict=True):
        su, sn = np.shape(ul), np.shape(nl)
        size_u, size_n = int(np.prod(su, dtype=np.int64)), int(np.prod(sn, dtype=np.int64))
        if _elementwise(con):
            block = np.eye(size_n, dtype=bool)
        elif con is _constraints.simplex and len(su) >= 1:
            lead = int(np.prod(sn[:-1], dtype=np.int64))
            block = np.kron(np.eye(lead, dtype=bool), np.ones((sn[-1], su[-1]), bool))
        elif con is _constraints.positive_definite and len(su) >= 2:
            lead = int(np.prod(sn[:-2], dtype=np.int64))
            cell = np.ones((sn[-2] * sn[-1], su[-2] * su[-1]), bool)
            block = np.kron(np.eye(lead, dtype=bool), cell)
        else:  # a constraint of the user's: every entry of the leaf on every coordinate
            block = np.ones((size_n, size_u), bool)
        blocks.append(block.astype(bool))
    m = sum(b.shape[0] for b in blocks)
    total_u = sum(b.shape[1] for b in blocks)
    out = np.zeros((m, total_u), bool)
    r = c = 0
    for b in blocks:
        out[r : r + b.shape[0], c : c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def _elementwise(constraint) -> bool:
    return constraint in (_constraints.real, _constraints.positive, _constraints.unit_interval)


def _free_unconstrained(leaves, u, masks) -> np.ndarray:
    """Per unconstrained coordinate: whether it is a free parameter."""
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    u_leaves = jax.tree.leaves(u)
    mask_leaves = [None] * len(u_leaves) if masks is None else jax.tree.leaves(masks)
    out = []
    for con, ul, m in zip(cons, u_leaves, mask_leaves, strict=True):
        used = _used_coordinates(con, ul)
        if m is not None:
            m = np.asarray(m, bool)
            if _elementwise(con):
                used &= ~np.broadcast_to(m, used.shape)
            elif m.all():
                used[...] = False
            elif m.any():
                raise ValueError(
                    f"standard_errors: single entries of a {con!r} parameter are held fixed; "
                    "its free entries have no coordinates of their own. Fix the whole "
                    "parameter, or none of it."
                )
        out.append(used.reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, bool)


def _natural_free(params, masks) -> np.ndarray:
    leaves = jax.tree.leaves(params)
    mask_leaves = [None] * len(leaves) if masks is None else jax.tree.leaves(masks)
    out = []
    for leaf, m in zip(leaves, mask_leaves, strict=True):
        shape = np.shape(leaf)
        free = np.ones(shape, bool) if m is None else ~np.broadcast_to(np.asarray(m, bool), shape)
        out.append(free.reshape(-1))
    return np.concatenate(out) if out else np.zeros(0, bool)


def _merge(a, b):
    """Union of two mask pytrees (either may be ``None``)."""
    if a is None:
        return b
    if b is None:
        return a
    return jax.tree.map(lambda x, y: np.logical_or(np.asarray(x), np.asarray(y)), a, b)


def _families_of(model) -> list:
    """The component (or emission) families of a mixture or HMM; ``[]`` for a plain model."""
    fams = getattr(model, "families", None) or [getattr(model, "family", None)]
    emission = getattr(model, "emission", None)
    return [f for f in [*fams, emission] if f is not None]


def _prepare(model, params, x, sample_weight, lengths, missing):
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    _validation.check_missing(missing)
    for family in _families_of(model):
        if getattr(family, "tied_coordinates", False):
            raise ValueError(
                f"standard_errors: {family!r} ties the entries of its covariances "
                "(mclust's structured models), which the information matrix here does not "
                "follow; use em.bootstrap(...) for its uncertainty, or model 'VVV'."
            )
    units = model._as_units(x, lengths, missing)
    if missing == "marginalize":
        data, observed = _validation.prepare_data(model, units, missing, fitting=False)
    else:
        data, observed = _validation.prepare_data(model, units, missing, fitting=False), None
    params = model._check_params(params, data)
    n = _validation.n_units(data)
    w = _validation.prepare_sample_weight(sample_weight, n, like=_validation.first_leaf(data))
    return data, observed, params, w


def _information(model, params, x, sample_weight, fixed, lengths, missing, chunk_size) -> _Info:
    data, observed, params, w = _prepare(model, params, x, sample_weight, lengths, missing)
    if chunk_size is not None:
        chunk_size = _validation.check_int("chunk_size", chunk_size, 1)
    n = _validation.n_units(data)
    k = int(getattr(model, "n_components", 1))
    chunking = _chunks.plan(n, k, _validation.unit_size(data), chunk_size)
    if chunking is not None:
        data = _chunks.pad_units(data, chunking)
        w = _chunks.pad_rows(w, chunking, 0)
        if observed is not None:
            observed = _chunks.pad_rows(observed, chunking, True)
    masks = _fixed.resolve(
        fixed, params, model.constraints, model._event_masks_ok, model._shared_leaf
    )
    held = model._held_entries(params)
    leaves = _constraints.broadcast(model.constraints, params)
    u = _constraints.to_unconstrained(leaves, params)
    flat_u, unravel = ravel_pytree(u)
    free = _free_unconstrained(leaves, u, _merge(masks, held))
    natural_free = _natural_free(params, _merge(masks, held))

    shapes = tuple((np.shape(a), str(jnp.asarray(a).dtype)) for a in jax.tree.leaves(params))
    key = ("information", jax.tree.structure(params), shapes, chunking, observed is None)
    program = _programs.get(model, key, lambda: _program(model, leaves, unravel, chunking))
    hessian, jac = program(flat_u, data, w, observed)
    info = -np.asarray(hessian, np.float64)[np.ix_(free, free)]
    jac = np.asarray(jac, np.float64)
    cov, bad_free = _invert(info, jnp.finfo(flat_u.dtype).eps)
    bad = np.zeros_like(free)
    bad[np.flatnonzero(free)[bad_free]] = True
    depends = _dependence(leaves, u, params)
    return _Info(cov, free, bad, jac, natural_free, depends, _labels(u), _labels(params), params)


def log_posterior(model, leaves, unravel, chunking):
    """``objective(flat_u, data, w, observed)``: ``Σ_i w_i log p(x_i | θ) + log prior(θ)``.

    ``θ`` is ``unravel(flat_u)`` mapped from the unconstrained coordinates of
    ``leaves`` (the model's constraints broadcast to the parameters); rows in
    ``chunking``'s chunks, each recomputed in the backward pass (bounded memory).
    """

    def objective(flat, data, w, observed):
        theta = _constraints.to_constrained(leaves, unravel(flat))

        def rows(xb, wb, ob):
            ll = model.unit_log_likelihood(theta, xb, ob)
            return jnp.sum(jnp.where(wb > 0, wb * ll, 0)), None

        total, _ = _chunks.rows_sum(rows, chunking, data, w, observed, checkpoint=True)
        return total + model.log_prior(theta)

    return objective


def _program(model, leaves, unravel, chunking):
    """The compiled ``(Hessian of the log posterior, d natural / d unconstrained)``."""
    objective = log_posterior(model, leaves, unravel, chunking)

    def natural(flat):
        return ravel_pytree(_constraints.to_constrained(leaves, unravel(flat)))[0]

    def run(flat_u, data, w, observed):
        return jax.hessian(objective)(flat_u, data, w, observed), jax.jacfwd(natural)(flat_u)

    return jax.jit(run)


def _invert(info: np.ndarray, eps: float):
    """``(covariance, unidentified)`` of a symmetric information matrix.

    Coordinates that load on eigenvalues at or below the matrix's resolution
    (or on negative ones: not a maximum), or whose entries are not finite, are
    unidentified: NaN rows and columns; the rest is the inverse of the
    information restricted to them.
    """
    p = info.shape[0]
    bad = np.zeros(p, bool)
    if p == 0:
        return np.zeros((0, 0)), bad
    finite = np.isfinite(info)
    if not finite.all():
        # A coordinate whose second derivatives are not finite is unidentified, the rest
        # keep theirs: at a boundary (an HMM's initial probability ~1e-200, from one
        # sequence) the Hessian of log(softmax(u)) is 0/0 along that coordinate only,
        # and its cross-information with the others underflows to 0 anyway.
        broken = np.zeros(p, bool)
        while True:  # drop the coordinate in the most non-finite entries, until none are left
            keep = np.flatnonzero(~broken)
            nonfinite = ~finite[np.ix_(keep, keep)]
            if not nonfinite.any():
                break
            broken[keep[np.argmax(nonfinite.sum(axis=0) + nonfinite.sum(axis=1))]] = True
        if broken.all():
            return np.full((p, p), np.nan), np.ones(p, bool)
        sub_cov, sub_bad = _invert(info[np.ix_(keep, keep)], eps)
        cov = np.full((p, p), np.nan)
        cov[np.ix_(keep, keep)] = sub_cov
        bad = broken.copy()
        bad[keep[sub_bad]] = True
        return cov, bad
    sym = 0.5 * (info + info.T)
    vals, vecs = np.linalg.eigh(sym)
    top = max(float(np.max(np.abs(vals))), np.finfo(np.float64).tiny)
    small = vals <= top * max(p, 1) * 100 * eps
    if small.any():
        bad = np.any(np.abs(vecs[:, small]) > 1e-3, axis=1)
    cov = np.full((p, p), np.nan)
    good = ~bad
    if good.any():
        cov[np.ix_(good, good)] = np.linalg.inv(sym[np.ix_(good, good)])
    return cov, bad


def _warn_unidentified(info: _Info) -> None:
    if info.bad.any():
        names = [info.u_names[i] for i in np.flatnonzero(info.bad)]
        shown = ", ".join(names[:6]) + (" …" if len(names) > 6 else "")
        warnings.warn(
            f"the observed information is singular or not positive definite along {len(names)} "
            f"coordinate(s) ({shown}): the parameters moving along them are not identified "
            "(e.g. identical components, an empty component, a boundary) or this is not a "
            "maximum; their standard errors are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )


def _natural_covariance(info: _Info) -> np.ndarray:
    idx = np.flatnonzero(info.free)
    jac = info.jac[:, idx]  # (M, F)
    good = ~info.bad[idx]
    cov = jac[:, good] @ info.cov_u[np.ix_(good, good)] @ jac[:, good].T
    # A natural entry that moves along an unidentified direction has no standard error.
    touched = np.any(info.depends[:, idx[~good]], axis=1) if (~good).any() else None
    nan = ~info.natural_free if touched is None else (~info.natural_free | touched)
    cov[nan, :] = np.nan
    cov[:, nan] = np.nan
    return cov


def covariance(
    model: Model,
    params,
    x,
    *,
    coordinates: str = "natural",
    sample_weight=None,
    fixed=None,
    chunk_size: int | None = None,
    lengths=None,
    missing: str | None = None,
) -> Covariance:
    """The covariance of the estimates: the inverse observed information (+ log prior).

    Args:
        model: the fitted model.
        params: its estimates (e.g. ``FitResult.params``): a maximum of the
            log-likelihood (plus the log prior for MAP).
        x: the data it was fitted to (an array or a pytree of units).
        coordinates: ``"natural"`` (the delta method to every entry of
            ``params``) or ``"unconstrained"`` (where the information is taken).
        sample_weight, fixed, lengths, missing: as given to ``em.fit``.
        chunk_size: rows per chunk for the Hessian (as ``em.fit``'s; bounded memory).

    Returns:
        A :class:`Covariance`. Entries that are not parameters, or that move
        along unidentified directions, are NaN (with a ``RuntimeWarning``).

    Example:
        >>> with jax.enable_x64(True):
        ...     cov = em.covariance(model, res.params, x)
        >>> cov.names[:3], cov.matrix.shape
    """
    if coordinates not in ("natural", "unconstrained"):
        raise ValueError(f"coordinates must be 'natural' or 'unconstrained', got {coordinates!r}.")
    info = _information(model, params, x, sample_weight, fixed, lengths, missing, chunk_size)
    _warn_unidentified(info)
    if coordinates == "natural":
        return Covariance(_natural_covariance(info), info.n_names, "natural")
    idx = np.flatnonzero(info.free)
    names = tuple(info.u_names[i] for i in idx)
    return Covariance(info.cov_u, names, "unconstrained")


def _unflatten_like(params, flat: np.ndarray):
    leaves, treedef = jax.tree.flatten(params)
    out, start = [], 0
    for leaf in leaves:
        size = int(np.size(leaf))
        out.append(flat[start : start + size].reshape(np.shape(leaf)))
        start += size
    return jax.tree.unflatten(treedef, out)


def standard_errors(
    model: Model,
    params,
    x,
    *,
    sample_weight=None,
    fixed=None,
    chunk_size: int | None = None,
    lengths=None,
    missing: str | None = None,
) -> Any:
    """Standard errors of the estimates: a pytree shaped like ``params`` (float64 NumPy).

    The square roots of the diagonal of :func:`covariance` in natural
    coordinates. NaN marks an entry that is not a parameter (held by
    ``fixed=`` or by the model) or is not identified (with a warning).

    Compute in float64 (``with jax.enable_x64(True):``) for numbers to trust:
    a float32 Hessian carries float32's rounding in every entry.

    Args:
        model, params, x: as for :func:`covariance`.
        sample_weight, fixed, lengths, missing: as given to ``em.fit``.
        chunk_size: rows per chunk for the Hessian.

    Example:
        >>> with jax.enable_x64(True):
        ...     se = em.standard_errors(model, res.params, x)
        ...     se_hmm = em.standard_errors(hmm, res_hmm.params, x, lengths=lengths)
        >>> se.components.mean        # (K,)
        >>> se_hmm.transition         # (K, K); se_hmm.initial (K,), se_hmm.emissions
    """
    info = _information(model, params, x, sample_weight, fixed, lengths, missing, chunk_size)
    _warn_unidentified(info)
    cov = _natural_covariance(info)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diagonal(cov))
    return _unflatten_like(params, se)


def wald_intervals(
    model: Model,
    params,
    x,
    level: float = 0.95,
    *,
    scale: str = "unconstrained",
    sample_weight=None,
    fixed=None,
    chunk_size: int | None = None,
    lengths=None,
    missing: str | None = None,
):
    """Wald confidence intervals ``(lower, upper)``, two pytrees shaped like ``params``.

    ``scale="unconstrained"`` (default): ``u ± z·se(u)`` in each elementwise
    parameter's unconstrained coordinate, mapped back, so a variance's
    interval stays positive and a probability's inside ``[0, 1]``; parameters
    on a simplex or positive-definite matrices (not elementwise) get the
    natural interval. ``scale="natural"``: ``θ ± z·se(θ)`` for every entry.

    Example:
        >>> lower, upper = em.wald_intervals(model, res.params, x, 0.95)
    """
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}.")
    if scale not in ("natural", "unconstrained"):
        raise ValueError(f"scale must be 'natural' or 'unconstrained', got {scale!r}.")
    info = _information(model, params, x, sample_weight, fixed, lengths, missing, chunk_size)
    _warn_unidentified(info)
    z = math.sqrt(2) * _erfinv(level)
    checked = info.params
    flat = np.asarray(ravel_pytree(checked)[0], np.float64)
    with np.errstate(invalid="ignore"):
        se = np.sqrt(np.diagonal(_natural_covariance(info)))
    lower, upper = flat - z * se, flat + z * se
    if scale == "unconstrained":
        leaves = _constraints.broadcast(model.constraints, checked)
        cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
        u = _constraints.to_unconstrained(leaves, checked)
        u_leaves = jax.tree.leaves(u)
        se_u = np.full(info.free.shape, np.nan)
        idx = np.flatnonzero(info.free)
        with np.errstate(invalid="ignore"):
            se_u[idx] = np.sqrt(np.diagonal(info.cov_u))
        start_u = start_n = 0
        for con, ul in zip(cons, u_leaves, strict=True):
            size_u = int(np.size(ul))
            if _elementwise(con):
                uv = np.asarray(ul, np.float64).reshape(-1)
                s = se_u[start_u : start_u + size_u]
                lo = np.asarray(con.to_constrained(jnp.asarray(uv - z * s)), np.float64)
                hi = np.asarray(con.to_constrained(jnp.asarray(uv + z * s)), np.float64)
                keep = np.isfinite(se[start_n : start_n + size_u])
                lower[start_n : start_n + size_u] = np.where(keep, np.minimum(lo, hi), np.nan)
                upper[start_n : start_n + size_u] = np.where(keep, np.maximum(lo, hi), np.nan)
                start_n += size_u
            else:
                start_n += int(np.size(con.to_constrained(jnp.asarray(ul))))
            start_u += size_u
    return _unflatten_like(checked, lower), _unflatten_like(checked, upper)


def _erfinv(level: float) -> float:
    """``erfinv(level)`` by Newton's method on ``math.erf`` (no SciPy at runtime)."""
    y = 0.0
    for _ in range(60):
        err = math.erf(y) - level
        y -= err / (2 / math.sqrt(math.pi) * math.exp(-y * y))
        if abs(err) < 1e-16:
            break
    return y
