"""Expand a pytree *prefix* (constraints, ``fixed`` flags) to one entry per parameter leaf."""

from __future__ import annotations

from collections.abc import Callable

import jax


class PrefixError(ValueError):
    """A prefix whose structure does not match the parameters' (message names where)."""


def expand(spec, params, is_leaf: Callable, default, where: str):
    """``spec`` (a prefix of ``params``) expanded to a pytree shaped like ``params``.

    A leaf of ``spec`` (``is_leaf``) covers the whole subtree below it;
    ``None`` stands for ``default``; a dict may omit keys (``default``) and may
    name the fields of a NamedTuple; a tuple or list matches entry by entry.

    Raises:
        PrefixError: naming ``where`` in the prefix the structures part.
    """
    if spec is None:
        return jax.tree.map(lambda _: default, params)
    if is_leaf(spec):
        return jax.tree.map(lambda _: spec, params)
    fields = getattr(type(params), "_fields", None)
    if isinstance(spec, dict):
        names = list(params) if isinstance(params, dict) else fields
        if names is None:
            raise PrefixError(f"{where} is a dict, but the parameters here are not named.")
        unknown = set(spec) - set(names)
        if unknown:
            raise PrefixError(
                f"{where} names {sorted(unknown)}, which are not parameters; the parameters "
                f"are {sorted(names)}."
            )
        if isinstance(params, dict):
            return {
                k: expand(spec.get(k), v, is_leaf, default, f"{where}[{k!r}]")
                for k, v in params.items()
            }
        return type(params)(
            *(
                expand(spec.get(f), getattr(params, f), is_leaf, default, f"{where}.{f}")
                for f in fields
            )
        )
    if isinstance(spec, (tuple, list)) and isinstance(params, (tuple, list)):
        if len(spec) != len(params):
            raise PrefixError(f"{where} has {len(spec)} entries, the parameters {len(params)}.")
        parts = [
            expand(s, p, is_leaf, default, f"{where}[{i}]")
            for i, (s, p) in enumerate(zip(spec, params, strict=True))
        ]
        return type(params)(*parts) if fields is not None else type(params)(parts)
    raise PrefixError(
        f"{where} must be a pytree prefix of the parameters; got {spec!r} where the "
        f"parameters have structure {jax.tree.structure(params)}."
    )
