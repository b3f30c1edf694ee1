"""A bounded cache of compiled EM programs, keyed by what the model *is*.

``em.fit`` builds one jitted program per model and settings. Keying it on the
model's value rather than on the object lets a new ``em.Mixture(em.Normal(), 3)``
reuse the program an equal one compiled (no retrace, no recompile), and the
least recently used programs are dropped (at most ``MAX_PROGRAMS``).

A model's value key walks its attributes: numbers, strings, tuples, lists,
dicts, NumPy and JAX arrays and jaxem's own objects (families, priors,
constraints) by value, jaxem's own functions and classes by identity. Anything
of the user's (a function, which may read globals or closures; a custom class
or object) makes the key the model *instance*'s: equal user models then compile
their own programs, as before, so nothing stale is shared between them.

A cached program holds its model and traces it again for each new input shape;
on every hit the model's current value is checked against the key, so a model
changed after its fit (``model.weights_prior = ...``) never serves an equal
model's fit with its new settings.
"""

from __future__ import annotations

import collections
import threading
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxem.model import is_jaxem_code

#: compiled programs kept; each may hold executables for a few data shapes
MAX_PROGRAMS = 32

_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()
_SKIP = frozenset({"_compiled"})  # per-instance caches: not part of what the model is
_MAX_DEPTH = 12
_MAX_ARRAY = 1 << 16  # larger arrays are keyed by identity


class _Walk:
    """One key computation: remembers whether anything was keyed by identity."""

    def __init__(self):
        self.by_identity = False

    def identity(self, obj):
        self.by_identity = True
        return ("id", id(obj))

    def key(self, obj: Any, depth: int = 0, owners: tuple = ()):
        if isinstance(obj, types.MethodType):  # e.g. ``init = self._draw``
            func, owner = obj.__func__, obj.__self__
            for level, seen in enumerate(owners):
                if seen is owner:
                    return ("method", self.key(func, depth + 1), "owner", level)
            return ("method", self.key(func, depth + 1), self.key(owner, depth + 1, owners))
        if depth > _MAX_DEPTH:
            return self.identity(obj)
        if obj is None or isinstance(obj, (bool, int, str, bytes)):
            return (type(obj), obj)
        if isinstance(obj, float):  # hex: -0.0 and 0.0 differ, NaN equals NaN
            return (float, obj.hex())
        if isinstance(obj, complex):
            return (complex, obj.real.hex(), obj.imag.hex())
        if isinstance(obj, (types.FunctionType, type)):
            return ("code", obj) if is_jaxem_code(obj) else self.identity(obj)
        if isinstance(obj, (tuple, list)):
            return (type(obj), tuple(self.key(o, depth + 1, owners) for o in obj))
        if isinstance(obj, dict):
            items = tuple((k, self.key(v, depth + 1, owners)) for k, v in obj.items())
            return (type(obj), items)  # insertion order kept: it may matter
        if isinstance(obj, jax.Array) and not isinstance(obj, jax.core.Tracer):
            if obj.size <= _MAX_ARRAY and obj.is_fully_addressable:
                try:
                    host = np.asarray(obj)
                except TypeError:  # e.g. typed PRNG keys
                    return self.identity(obj)
                return ("jax", obj.dtype.name, bool(getattr(obj, "weak_type", False)),
                        self.key(host, depth, owners))  # fmt: skip
            return self.identity(obj)
        if isinstance(obj, (np.ndarray, np.generic)) and obj.size <= _MAX_ARRAY:
            if obj.dtype.hasobject:
                return self.identity(obj)
            return ("array", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
        if is_jaxem_code(type(obj)) and hasattr(obj, "__dict__"):
            state = {k: v for k, v in vars(obj).items() if k not in _SKIP}
            return (type(obj), self.key(state, depth + 1, (*owners, obj)))
        return self.identity(obj)


def value_key(obj: Any):
    """A hashable key equal for models that trace to the same program.

    Holds the model instance's id when anything in it is the user's (see the
    module docstring).
    """
    walk = _Walk()
    key = walk.key(obj)
    return ("instance", id(obj), key) if walk.by_identity else key


def get(model, settings, build: Callable[[], Callable]) -> Callable:
    """The program for ``model`` with ``settings`` (hashable), built on a miss."""
    key = (value_key(model), settings)
    with _LOCK:
        entry = _PROGRAMS.get(key)
        if entry is not None and value_key(entry[0]) != key[0]:
            del _PROGRAMS[key]  # its model changed since: it would trace the new settings
            entry = None
        if entry is not None:
            _PROGRAMS.move_to_end(key)
            return entry[1]
    # the model rides along: the ids in its key stay taken while the entry lives
    entry = (model, build())
    with _LOCK:
        _PROGRAMS[key] = entry
        while len(_PROGRAMS) > MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    return entry[1]


def clear() -> None:
    """Drop every cached program (their compiled executables go with them)."""
    with _LOCK:
        _PROGRAMS.clear()
