"""A bounded cache of compiled EM programs, keyed by what the model *is*.

``em.fit`` builds one jitted program per model and settings. Keying it on the
model's value rather than on the object lets a new ``em.Mixture(em.Normal(), 3)``
reuse the program an equal one compiled (no retrace, no recompile), and the
least recently used programs are dropped, so a long session's memory levels off.

A model's value key walks its attributes: numbers, strings, tuples, lists,
dicts, NumPy and JAX arrays and jaxem's own objects (families, priors, constraints)
by value; anything else (a user's function, a custom object) by identity. A
cached program holds its model, so an identity in a live key is never reused
for another object.
"""

from __future__ import annotations

import collections
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

#: compiled programs kept; each may hold executables for a few data shapes
MAX_PROGRAMS = 32

_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_SKIP = frozenset({"_compiled"})  # per-instance caches: not part of what the model is
_MAX_DEPTH = 12
_MAX_ARRAY = 1 << 16  # larger arrays are keyed by identity


def value_key(obj: Any, depth: int = 0, _owners: tuple = ()):
    """A hashable key equal for models that trace to the same program."""
    if isinstance(obj, types.MethodType):  # e.g. ``init = self._draw``: its function and owner
        owner = obj.__self__
        for level, seen in enumerate(_owners):
            if seen is owner:
                return ("method", obj.__func__, "owner", level)
        return ("method", obj.__func__, value_key(owner, depth + 1, _owners))
    if depth > _MAX_DEPTH:
        return ("id", id(obj))
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, type)):
        return (type(obj), obj)
    if isinstance(obj, (tuple, list)):
        return (type(obj), tuple(value_key(o, depth + 1, _owners) for o in obj))
    if isinstance(obj, dict):
        try:
            items = sorted(obj.items())
        except TypeError:  # keys that do not sort: the identity is still correct
            return ("id", id(obj))
        return (dict, tuple((k, value_key(v, depth + 1, _owners)) for k, v in items))
    if isinstance(obj, (np.ndarray, np.generic)) and obj.size <= _MAX_ARRAY:
        return ("array", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
    if isinstance(obj, jax.Array) and not isinstance(obj, jax.core.Tracer):
        if obj.size <= _MAX_ARRAY and obj.is_fully_addressable:
            return value_key(np.asarray(obj), depth, _owners)
    if type(obj).__module__.startswith("jaxem.") and hasattr(obj, "__dict__"):
        state = {k: v for k, v in vars(obj).items() if k not in _SKIP}
        return (type(obj), value_key(state, depth + 1, (*_owners, obj)))
    return ("id", id(obj))


def get(model, settings, build: Callable[[], Callable]) -> Callable:
    """The program for ``model`` with ``settings`` (hashable), built on a miss."""
    key = (value_key(model), settings)
    entry = _PROGRAMS.get(key)
    if entry is None:
        # the model rides along: the ids in its key stay taken while the entry lives
        entry = _PROGRAMS[key] = (model, build())
        while len(_PROGRAMS) > MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    else:
        _PROGRAMS.move_to_end(key)
    return entry[1]


def clear() -> None:
    """Drop every cached program (their compiled executables go with them)."""
    _PROGRAMS.clear()
