"""The built-in families by name, and families and priors described by name and rebuilt.

:data:`FAMILIES` maps each built-in family's ``name`` to its class; the command
line and ``em.save``/``em.load`` find the families there, and what they need to
know about one (like the plots and the estimators) in the class's own
attributes, instead of keeping tables. ``describe_family`` /
``describe_prior`` turn a built-in family or prior into a JSON-able
``{name, args}`` dict; ``build_family`` / ``build_prior`` rebuild it from one,
constructing only built-in classes (so a saved file never runs code).
Imported by ``jaxem.io`` and ``jaxem.estimators``; imports neither.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any

import numpy as np

from jaxem import families as _families
from jaxem import priors as _priors
from jaxem.families.base import Family

__all__ = ["FAMILIES", "describe_family", "build_family", "describe_prior", "build_prior"]

#: The built-in families by ``Family.name`` (``"normal"``, ``"mvn"``, …), in the
#: order ``jaxem.families.BUILT_IN`` gives (the command line's). Each class says
#: its own facts: ``hyperparameters``, ``params_type``, ``support_kind``, ``location``.
FAMILIES: dict[str, type[Family]] = {cls.name: cls for cls in _families.BUILT_IN}

# A file names a family by its class name ("Normal", "MultivariateNormal"): the
# file format's, kept as it was before ``Family.name``.
_SAVED_FAMILIES: dict[str, type[Family]] = {cls.__name__: cls for cls in FAMILIES.values()}

_PRIORS: dict[str, tuple[type, tuple[str, ...]]] = {
    "Normal": (_priors.Normal, ("loc", "scale")),
    "Gamma": (_priors.Gamma, ("concentration", "rate")),
    "InverseGamma": (_priors.InverseGamma, ("concentration", "scale")),
    "Beta": (_priors.Beta, ("a", "b")),
    "Dirichlet": (_priors.Dirichlet, ("concentration",)),
    "InverseWishart": (_priors.InverseWishart, ("df", "scale")),
}


def _json_value(value):
    """A hyper-parameter as JSON: numbers, strings, or nested lists of floats."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return {"array": np.asarray(value, np.float64).tolist()}
    raise TypeError(f"cannot describe a value of type {type(value).__name__}")


def _from_json(value):
    if isinstance(value, dict):
        if set(value) != {"array"}:
            raise ValueError(f"malformed hyper-parameter {value!r}")
        try:
            return np.asarray(value["array"], np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"malformed hyper-parameter {value!r}: not an array of numbers"
            ) from None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"malformed hyper-parameter {value!r}")


def describe_prior(prior) -> dict | None:
    """``{"prior": name, "args": {...}}`` for a built-in ``priors`` object; ``None`` for ``None``.

    Raises:
        TypeError: for a prior given as a function, or a subclass of a built-in.

    Example:
        >>> em.io.describe_prior(priors.Gamma(2.0, 0.5))
        {'prior': 'Gamma', 'args': {'concentration': 2.0, 'rate': 0.5}}
    """
    if prior is None:
        return None
    for name, (cls, fields) in _PRIORS.items():
        if type(prior) is cls:
            args = {}
            for f in fields:
                value = getattr(prior, f)
                arr = np.asarray(value)
                args[f] = float(arr) if arr.ndim == 0 else _json_value(arr)
            return {"prior": name, "args": args}
    raise TypeError(
        f"cannot describe the prior {prior!r} by name: only the built-in jaxem.priors "
        f"({', '.join(_PRIORS)}) can be saved, not functions or subclasses."
    )


def build_prior(desc: dict | None):
    """Inverse of :func:`describe_prior` (only built-in prior classes are built)."""
    if desc is None:
        return None
    if not isinstance(desc, dict) or set(desc) != {"prior", "args"}:
        raise ValueError(f"malformed prior description {desc!r}")
    entry = _PRIORS.get(desc["prior"]) if isinstance(desc["prior"], str) else None
    if entry is None:
        raise ValueError(f"unknown prior {desc['prior']!r}; known: {', '.join(_PRIORS)}")
    cls, fields = entry
    args = desc["args"]
    if not isinstance(args, dict) or set(args) != set(fields):
        raise ValueError(f"prior {desc['prior']} needs arguments {fields}, got {args!r}")
    kwargs = {}
    for key, value in args.items():
        value = _from_json(value)
        if not isinstance(value, (int, float, np.ndarray)) or isinstance(value, bool):
            raise ValueError(f"prior {desc['prior']}: {key} must be a number, got {value!r}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prior {desc['prior']}{tuple(args.values())!r}: {err}") from None


def describe_family(family) -> dict:
    """``{"family": name, "args": {...}}`` for a built-in family: its name and hyper-parameters.

    Raises:
        TypeError: for a custom family (or a subclass of a built-in one), or a
            family whose prior is a function: they cannot be rebuilt without
            running code.

    Example:
        >>> em.io.describe_family(em.Poisson(rate_prior=priors.Gamma(2.0, 0.5)))
        {'family': 'Poisson', 'args': {'rate_prior': {'prior': 'Gamma', ...}}}
    """
    cls = type(family)
    if _SAVED_FAMILIES.get(cls.__name__) is cls:
        args: dict[str, Any] = {f: _json_value(getattr(family, f)) for f in cls.hyperparameters}
        for field, prior in getattr(family, "priors", {}).items():
            if prior is not None:
                try:
                    args[f"{field}_prior"] = describe_prior(prior)
                except TypeError as err:
                    raise TypeError(f"{family!r}: {field}_prior: {err}") from None
        return {"family": cls.__name__, "args": args}
    raise TypeError(
        f"{cls.__name__} is not a built-in jaxem family, so it cannot be described by name."
    )


def build_family(desc: dict):
    """Inverse of :func:`describe_family` (only built-in family classes are built)."""
    if not isinstance(desc, dict) or set(desc) != {"family", "args"}:
        raise ValueError(f"malformed family description {desc!r}")
    cls = _SAVED_FAMILIES.get(desc["family"]) if isinstance(desc["family"], str) else None
    if cls is None:
        known = ", ".join(_SAVED_FAMILIES)
        raise ValueError(f"unknown family {desc['family']!r}; known: {known}")
    if not isinstance(desc["args"], dict):
        raise ValueError(f"family {desc['family']}: args must be an object, got {desc['args']!r}")
    kwargs = {}
    for key, value in desc["args"].items():
        if key.endswith("_prior") and key[: -len("_prior")] in _family_prior_fields(cls):
            kwargs[key] = build_prior(value)
        elif key in cls.hyperparameters:
            kwargs[key] = _from_json(value)
        else:
            raise ValueError(f"family {desc['family']} has no argument {key!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        message = str(err)
        if not message.startswith(f"{cls.__name__}:"):
            message = f"{desc['family']}: {message}"
        raise ValueError(f"family {message}") from None


def _family_prior_fields(cls) -> tuple[str, ...]:
    """The fields of a built-in family that take a ``<field>_prior`` argument."""
    return tuple(
        name[: -len("_prior")]
        for name in inspect.signature(cls.__init__).parameters
        if name.endswith("_prior")
    )
