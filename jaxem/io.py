"""Save and load fitted estimators in a safe format: ``.npz`` arrays plus a JSON header.

A saved file is a NumPy ``.npz`` archive: every array (fitted attributes,
array-valued constructor arguments) is stored as an array, and one entry,
``__jaxem__``, holds a JSON header with the estimator's class, its scalar
constructor arguments and, for :class:`~jaxem.MixtureEstimator`, its family and
priors described by *name and hyper-parameters*. Loading reads it with
``numpy.load(..., allow_pickle=False)`` and rebuilds objects only from a fixed
list of built-in classes, so loading a file never unpickles and never runs code
from it. It also checks the whole file before setting anything: the header
against a schema, only the attributes each class declares, every array's dtype,
finiteness, shape and support, and the constructor arguments; a bad file raises
``ValueError`` naming the file and the problem.

A custom family (or a prior given as a plain function) cannot be described that
way; saving one raises a ``TypeError`` that says what to do instead.

Layers: ``jaxem.codec`` describes and rebuilds families and priors by name;
``jaxem.estimators._saving`` writes an estimator and checks a loaded file's
contents (each class's ``_to_saved``/``_from_saved`` use it); this module reads
files and dispatches on the header's class. Neither of the first two imports it.

Example:
    >>> gm = em.GaussianMixture(n_components=3, random_state=0).fit(X)
    >>> gm.save("gm.npz")
    >>> em.load("gm.npz").predict(X)          # == gm.predict(X)
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxem.codec import build_family, build_prior, describe_family, describe_prior
from jaxem.estimators._saving import (
    _HEADER,
    CLASSES,
    FORMAT,
    VERSION,
    _check_object,
    _json_type,
    write,
)

__all__ = ["save", "load", "describe_family", "build_family", "describe_prior", "build_prior"]


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
    write(estimator, path)


def load(path: str | os.PathLike):
    """Read an estimator written by :func:`save` (or ``est.save``).

    The file is read with ``numpy.load(..., allow_pickle=False)`` and only
    built-in estimator, family and prior classes are rebuilt from it: loading
    never unpickles and never runs code from the file. The file is checked
    before anything is set: the header against its schema (only the attributes
    the class saves are restored), every array's dtype, shape and support, and
    the constructor arguments as ``fit`` would check them.

    Returns:
        An ``em.GaussianMixture`` or ``em.MixtureEstimator`` with the saved
        constructor arguments and, if it was fitted, its fitted attributes.

    Raises:
        ValueError: naming the file and what is wrong with it.

    Example:
        >>> gm2 = em.load("gm.npz")
        >>> gm2.score(X) == gm.score(X)
    """
    where = repr(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else repr(path)
    header, arrays = _read(path, where)
    if not isinstance(header, dict):
        raise ValueError(f"{where}: header is {_json_type(header)}, expected an object.")
    if header.get("format") != FORMAT:
        raise ValueError(f"{where} is not a file written by em.save.")
    if header.get("version") != VERSION:
        raise ValueError(
            f"{where} has format version {header.get('version')!r}; this jaxem reads "
            f"version {VERSION}."
        )
    name = header.get("class")
    cls = CLASSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{where} holds an unknown class {name!r}.")
    try:
        _check_object("header", header, {**_HEADER_COMMON, **_HEADER_SCHEMA[name]})
        return cls._from_saved(header, arrays)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    except (KeyError, TypeError, AttributeError, IndexError) as err:  # a check we lack
        raise ValueError(f"{where}: malformed file ({type(err).__name__}: {err}).") from err


def _read(path, where: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The parsed JSON header and the arrays of a saved file (nothing else checked)."""
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as err:  # e.g. a pickle, which is never loaded
        raise ValueError(f"{where} is not a file written by em.save: {err}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{where} is not a file written by em.save (not an .npz archive).")
    with data:
        if _HEADER not in data.files:
            raise ValueError(f"{where} is not a file written by em.save (no header).")
        try:
            raw = data[_HEADER]
        except ValueError as err:
            raise ValueError(f"{where}: cannot read the header: {err}") from None
        if raw.dtype.kind != "U" or raw.ndim != 0:
            raise ValueError(
                f"{where}: the header is a {raw.dtype} array of shape {raw.shape}, expected "
                "a JSON string."
            )
        try:
            header = json.loads(str(raw[()]))
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: the header is not valid JSON ({err}).") from None
        arrays = {}
        for key in data.files:
            if key != _HEADER:
                try:
                    arrays[key] = np.asarray(data[key])
                except ValueError as err:  # an object array: numpy refuses to unpickle it
                    raise ValueError(f"{where}: cannot read array {key!r}: {err}") from None
    return header, arrays


# -- the header -----------------------------------------------------------------------

_HEADER_COMMON = {"format": ("string",), "version": ("int",), "class": ("string",)}
# The header's other entries per class, and the JSON types each may take.
_HEADER_SCHEMA = {
    "GaussianMixture": {"params": ("object",), "state": ("object", "null")},
    "MixtureEstimator": {
        "params": ("object",),
        "state": ("object", "null"),
        "family": ("object",),
        "weights_prior": ("object", "null"),
        "init_fields": ("list", "null"),
        "params_fields": ("list", "null"),
    },
}
