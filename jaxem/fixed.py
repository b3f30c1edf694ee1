"""Parameters held fixed during EM: ``em.fit(..., fixed=...)``.

``fixed`` names the parameters that keep their starting values: a set of field
names (``{"weights"}``, ``{"mean"}``: every leaf whose path has that name), or
a pytree prefix of the parameters whose leaves are booleans or boolean arrays
(``MixtureParams(weights=True, components=False)``,
``{"b": np.array([True, False])}``). A boolean array covers the leading axes
of its leaf (one flag per component, say) and broadcasts over the rest.

It is resolved once, on the host, into *masks*: one boolean array per leaf of
the parameters, of the leaf's number of dimensions (size-1 axes broadcast).
The engine then (1) lets each M-step maximise over the free entries only,
which keeps the update a conditional maximiser (ECM) so EM stays monotone,
and (2) restores the fixed entries after every update and extrapolation, so
they keep their starting values to the last bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _prefix
from jaxem import constraints as _constraints

__all__ = ["resolve", "restore", "freeze", "cache_key", "n_free", "event_ndim"]


def event_ndim(constraint) -> int:
    """Trailing axes a constraint ties together (a simplex's last, a covariance's two)."""
    if constraint is _constraints.simplex:
        return 1
    if constraint is _constraints.positive_definite:
        return 2
    return 0


def _names(path) -> set[str]:
    out = set()
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            out.add(str(entry.key))
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            out.add(entry.name)
    return out


def _is_spec_leaf(node) -> bool:
    return isinstance(node, (bool, np.bool_, np.ndarray, jax.Array))


def _broadcast(spec, params):
    """``spec`` (a prefix of ``params`` with boolean leaves) expanded to every leaf."""
    if not (spec is None or _is_spec_leaf(spec) or isinstance(spec, (dict, tuple, list))):
        raise TypeError(
            "fixed must be a set of parameter names or a pytree prefix of the parameters "
            f"with booleans (or boolean arrays) as leaves; got {spec!r}."
        )
    try:
        return _prefix.expand(spec, params, _is_spec_leaf, False, "fixed")
    except _prefix.PrefixError as err:
        raise ValueError(str(err)) from None


def resolve(
    fixed, params, constraints, event_masks_ok=lambda path: False, shared=lambda path: False
):
    """Masks for ``fixed`` on parameters shaped like ``params`` (``None`` if nothing is fixed).

    Args:
        fixed: ``None``, a collection of names, or a boolean pytree prefix.
        params: parameters (arrays or ``ShapeDtypeStruct``) with the start's shapes.
        constraints: the model's constraint pytree.
        event_masks_ok: whether the leaf at a path may fix single entries of a
            constrained vector (the mixture weights: the rest are rescaled).
        shared: whether the leaf at a path is shared by all components (a tied
            covariance): per-component flags that cover it must agree.

    Raises:
        TypeError / ValueError: naming the part of ``fixed`` that does not fit.
    """
    if fixed is None:
        return None
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if isinstance(fixed, (set, frozenset)) or (
        isinstance(fixed, (list, tuple)) and fixed and all(isinstance(f, str) for f in fixed)
    ):
        wanted = set(fixed)
        known = set().union(*(_names(path) for path, _ in flat))
        unknown = wanted - known
        if unknown:
            raise ValueError(
                f"fixed names {sorted(unknown)}, which are not parameter names; the names "
                f"are {sorted(known)}."
            )
        specs = [bool(_names(path) & wanted) for path, _ in flat]
    else:
        specs = jax.tree.leaves(_broadcast(fixed, params), is_leaf=_is_spec_leaf)
    leaves = _constraints.broadcast(constraints, params)
    cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
    masks = []
    for (path, leaf), spec, con in zip(flat, specs, cons, strict=True):
        where = f"fixed{jax.tree_util.keystr(path)}"
        shape = tuple(np.shape(leaf))
        mask = np.asarray(spec)
        if mask.dtype != np.bool_:
            raise TypeError(f"{where} must be booleans, got dtype {mask.dtype}.")
        if mask.ndim and shared(path) and mask.shape != shape[: mask.ndim]:
            # Per-component flags given above a leaf that every component shares.
            if mask.any() != mask.all():
                raise ValueError(
                    f"{where}: this parameter is shared by all components (e.g. a tied "
                    "covariance), so per-component flags that fix some components but not "
                    "others cannot apply to it; give it its own True or False (for example "
                    "{'components': {'mean': flags}})."
                )
            mask = np.asarray(bool(mask.all()))
        if mask.shape != shape[: mask.ndim]:
            raise ValueError(
                f"{where} has shape {mask.shape}; it must be a bool or cover the leading axes "
                f"of the parameter, whose shape is {shape}."
            )
        mask = mask.reshape(mask.shape + (1,) * (len(shape) - mask.ndim))
        tied = event_ndim(con)
        custom = not tied and type(con).n_free is not _constraints.Constraint.n_free
        if custom:
            tied = len(shape)  # a custom constraint's entries may be tied: fix it whole
        if tied and mask.ndim and not event_masks_ok(path):
            event = mask.reshape(mask.shape[: len(shape) - tied] + (-1,))
            if np.any(event.any(axis=-1) != event.all(axis=-1)):
                raise ValueError(
                    f"{where} fixes some entries of a {con!r} value but not others; fix each "
                    "vector or matrix whole (flags over the leading axes only)."
                )
        if custom and mask.any() and not mask.all():
            raise ValueError(f"{where}: a {con!r} parameter can only be fixed whole (True).")
        masks.append(mask)
    if not any(m.any() for m in masks):
        return None
    return jax.tree_util.tree_unflatten(jax.tree.structure(params), masks)


def restore(masks, new, old, constraint_leaves=None):
    """``new`` with the fixed entries taken from ``old`` (``masks`` None: ``new``).

    With ``constraint_leaves`` (one constraint per leaf), a simplex with some
    entries fixed has its free entries rescaled to what the fixed ones leave:
    an extrapolated point (SQUAREM moves every log-ratio coordinate) stays on
    the simplex.
    """
    if masks is None:
        return new
    if constraint_leaves is None:
        cons = [None] * len(jax.tree.leaves(masks))
    else:
        cons = jax.tree.leaves(
            constraint_leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint)
        )
    flat_m, tree = jax.tree.flatten(masks)
    out = []
    for m, a, b, con in zip(flat_m, jax.tree.leaves(new), jax.tree.leaves(old), cons, strict=True):
        if not m.any():
            out.append(a)
            continue
        held = jnp.where(m, b, a)
        if con is _constraints.simplex and not m.all():
            m = np.broadcast_to(m, np.shape(a))
            left = 1 - jnp.sum(jnp.where(m, b, 0), axis=-1, keepdims=True)
            free = jnp.sum(jnp.where(m, 0, a), axis=-1, keepdims=True)
            held = jnp.where(m, b, a * left / jnp.where(free > 0, free, 1))
        out.append(held)
    return jax.tree.unflatten(tree, out)


def freeze(masks, theta, old):
    """``theta`` with the fixed entries replaced by ``old``'s, which carry no gradient.

    Inside a gradient M-step's objective: the maximiser then moves only the
    free entries (their gradient is the conditional one).
    """
    if masks is None:
        return theta
    return jax.tree.map(
        lambda m, a, b: jnp.where(m, jax.lax.stop_gradient(b), a) if m.any() else a,
        masks,
        theta,
        old,
    )


def cache_key(masks):
    """A hashable summary of ``masks`` (part of a compiled program's key)."""
    if masks is None:
        return None
    return tuple((m.shape, m.tobytes()) for m in jax.tree.leaves(masks))


def n_free(constraint, shape: tuple, mask) -> int:
    """Free dimensions of a leaf of ``shape`` under ``constraint`` with ``mask`` fixed."""
    full = constraint.n_free(shape)
    if mask is None or not np.any(mask):
        return full
    if np.all(mask):
        return 0
    tied = event_ndim(constraint)
    flags = np.broadcast_to(mask, shape)
    if not tied:
        return int(np.sum(~flags))
    per = flags.reshape(shape[: len(shape) - tied] + (-1,))
    if constraint is _constraints.simplex:
        # Each vector's free entries share what the fixed ones leave: one fewer.
        return int(np.sum(np.maximum(np.sum(~per, axis=-1) - 1, 0)))
    free_batches = int(np.sum(~per.all(axis=-1)))
    return full // max(int(np.prod(per.shape[:-1], dtype=np.int64)), 1) * free_batches
