"""Save and load fitted estimators in a safe format: ``.npz`` arrays plus a JSON header.

A saved file is a NumPy ``.npz`` archive: every array (fitted attributes,
array-valued constructor arguments) is stored as an array, and one entry,
``__jaxem__``, holds a JSON header with the estimator's class, its scalar
constructor arguments and, for :class:`~jaxem.MixtureEstimator`, its family and
priors described by *name and hyper-parameters*. Loading reads it with
``numpy.load(..., allow_pickle=False)`` and rebuilds objects only from a fixed
list of built-in classes, so loading a file never unpickles and never runs code
from it.

A custom family (or a prior given as a plain function) cannot be described that
way; saving one raises a ``TypeError`` that says what to do instead.

Example:
    >>> gm = em.GaussianMixture(n_components=3, random_state=0).fit(X)
    >>> gm.save("gm.npz")
    >>> em.load("gm.npz").predict(X)          # == gm.predict(X)
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import numpy as np

from jaxem import priors as _priors
from jaxem.families import (
    Bernoulli,
    Binomial,
    Categorical,
    Exponential,
    Gamma,
    MultivariateNormal,
    Normal,
    Poisson,
    StudentT,
    VonMises,
)

__all__ = ["save", "load", "describe_family", "build_family", "describe_prior", "build_prior"]

FORMAT = "jaxem-estimator"
VERSION = 1
_HEADER = "__jaxem__"

# Built-in families: the constructor arguments read back from an instance
# (besides the ``<field>_prior`` ones, taken from ``family.priors``).
_FAMILIES: dict[str, tuple[type, tuple[str, ...]]] = {
    "Normal": (Normal, ("ecm_sweeps", "min_var")),
    "MultivariateNormal": (MultivariateNormal, ("covariance_type", "reg_covar", "ecm_sweeps")),
    "Binomial": (Binomial, ("n_trials",)),
    "Bernoulli": (Bernoulli, ()),
    "Categorical": (Categorical, ("n_categories",)),
    "Poisson": (Poisson, ()),
    "Exponential": (Exponential, ()),
    "Gamma": (Gamma, ()),
    "StudentT": (StudentT, ()),
    "VonMises": (VonMises, ()),
}

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
        return np.asarray(value["array"], np.float64)
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
    entry = _PRIORS.get(desc["prior"])
    if entry is None:
        raise ValueError(f"unknown prior {desc['prior']!r}; known: {', '.join(_PRIORS)}")
    cls, fields = entry
    args = desc["args"]
    if not isinstance(args, dict) or set(args) != set(fields):
        raise ValueError(f"prior {desc['prior']} needs arguments {fields}, got {args!r}")
    return cls(**{k: _from_json(v) for k, v in args.items()})


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
    for name, (cls, fields) in _FAMILIES.items():
        if type(family) is cls:
            args: dict[str, Any] = {f: _json_value(getattr(family, f)) for f in fields}
            for field, prior in getattr(family, "priors", {}).items():
                if prior is not None:
                    try:
                        args[f"{field}_prior"] = describe_prior(prior)
                    except TypeError as err:
                        raise TypeError(f"{family!r}: {field}_prior: {err}") from None
            return {"family": name, "args": args}
    raise TypeError(
        f"{type(family).__name__} is not a built-in jaxem family, so it cannot be described "
        "by name."
    )


def build_family(desc: dict):
    """Inverse of :func:`describe_family` (only built-in family classes are built)."""
    if not isinstance(desc, dict) or set(desc) != {"family", "args"}:
        raise ValueError(f"malformed family description {desc!r}")
    entry = _FAMILIES.get(desc["family"])
    if entry is None:
        raise ValueError(f"unknown family {desc['family']!r}; known: {', '.join(_FAMILIES)}")
    cls, fields = entry
    args = dict(desc["args"])
    kwargs = {}
    for key, value in args.items():
        if key.endswith("_prior"):
            kwargs[key] = build_prior(value)
        elif key in fields:
            kwargs[key] = _from_json(value)
        else:
            raise ValueError(f"family {desc['family']} has no argument {key!r}")
    return cls(**kwargs)


# -- estimators --------------------------------------------------------------------


def _estimator_classes() -> dict[str, type]:
    from jaxem.estimators import GaussianMixture, MixtureEstimator

    return {"GaussianMixture": GaussianMixture, "MixtureEstimator": MixtureEstimator}


def save(estimator, path: str | os.PathLike) -> None:
    """Write ``estimator`` (fitted or not) to ``path`` as ``.npz`` + JSON header.

    Args:
        estimator: an ``em.GaussianMixture`` or ``em.MixtureEstimator``.
        path: the file to write (written as given; no suffix is added).

    Raises:
        TypeError: for a ``MixtureEstimator`` whose family or priors are custom
            (not describable by name), or a ``random_state`` that is not an int
            or ``None``; the message says what to do instead.

    Example:
        >>> em.save(gm, "gm.npz")        # same as gm.save("gm.npz")
    """
    classes = _estimator_classes()
    name = type(estimator).__name__
    if classes.get(name) is not type(estimator):
        raise TypeError(
            f"em.save writes em.GaussianMixture and em.MixtureEstimator, got {name}. "
            "For other objects, save their arrays with numpy.savez."
        )
    header, arrays = estimator._to_saved()
    header = {"format": FORMAT, "version": VERSION, "class": name, **header}
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in arrays.items():
        if value.dtype == object:  # never write something only pickle could read
            raise TypeError(f"cannot save {key}: it is not a numeric array.")
    arrays[_HEADER] = np.asarray(json.dumps(header))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path: str | os.PathLike):
    """Read an estimator written by :func:`save` (or ``est.save``).

    The file is read with ``numpy.load(..., allow_pickle=False)`` and only
    built-in estimator, family and prior classes are rebuilt from it: loading
    never unpickles and never runs code from the file.

    Returns:
        An ``em.GaussianMixture`` or ``em.MixtureEstimator`` with the saved
        constructor arguments and, if it was fitted, its fitted attributes.

    Example:
        >>> gm2 = em.load("gm.npz")
        >>> gm2.score(X) == gm.score(X)
    """
    with np.load(path, allow_pickle=False) as data:
        if _HEADER not in data.files:
            raise ValueError(f"{os.fspath(path)!r} is not a file written by em.save (no header).")
        header = json.loads(str(data[_HEADER][()]))
        arrays = {k: np.asarray(data[k]) for k in data.files if k != _HEADER}
    if header.get("format") != FORMAT:
        raise ValueError(f"{os.fspath(path)!r} is not a file written by em.save.")
    if header.get("version") != VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has format version {header.get('version')}; this jaxem reads "
            f"version {VERSION}."
        )
    cls = _estimator_classes().get(header.get("class"))
    if cls is None:
        raise ValueError(f"{os.fspath(path)!r} holds an unknown class {header.get('class')!r}.")
    return cls._from_saved(header, arrays)
