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

Example:
    >>> gm = em.GaussianMixture(n_components=3, random_state=0).fit(X)
    >>> gm.save("gm.npz")
    >>> em.load("gm.npz").predict(X)          # == gm.predict(X)
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
from typing import Any

import numpy as np

from jaxem import constraints as _constraints
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
    entry = _FAMILIES.get(desc["family"]) if isinstance(desc["family"], str) else None
    if entry is None:
        raise ValueError(f"unknown family {desc['family']!r}; known: {', '.join(_FAMILIES)}")
    cls, fields = entry
    if not isinstance(desc["args"], dict):
        raise ValueError(f"family {desc['family']}: args must be an object, got {desc['args']!r}")
    kwargs = {}
    for key, value in desc["args"].items():
        if key.endswith("_prior") and key[: -len("_prior")] in _family_prior_fields(cls):
            kwargs[key] = build_prior(value)
        elif key in fields:
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
    cls = _estimator_classes().get(name) if isinstance(name, str) else None
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


# -- checks of a loaded file ------------------------------------------------------------
#
# Each raises ValueError saying what is wrong; load() prefixes the file's name.

_KINDS = {
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "null": (lambda v: v is None, "null"),
}

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
_STATE_SCHEMA = {
    "converged_": ("bool",),
    "n_iter_": ("int",),
    "lower_bound_": ("number",),
    "n_features_in_": ("int",),
    "_fit_ndim_": ("int",),
}


def _json_type(value) -> str:
    """How JSON calls the type of ``value`` ("an object", "a list", ...)."""
    for _, (test, name) in _KINDS.items():
        if test(value):
            return "a number" if name == "an integer" else name
    return type(value).__name__


def _check_object(where: str, obj, required: dict, optional: dict | None = None) -> dict:
    """``obj`` is a JSON object: the ``required`` keys, maybe ``optional`` ones, of their kinds."""
    optional = optional or {}
    if not isinstance(obj, dict):
        raise ValueError(f"{where} is {_json_type(obj)}, expected an object.")
    missing = [key for key in required if key not in obj]
    if missing:
        raise ValueError(f"{where} lacks the entries {missing}.")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        raise ValueError(
            f"{where} has unexpected entries {unknown}; it holds "
            f"{sorted({**required, **optional})}."
        )
    for key, value in obj.items():
        kinds = required.get(key) or optional[key]
        if not any(_KINDS[kind][0](value) for kind in kinds):
            expected = " or ".join(_KINDS[kind][1] for kind in kinds)
            raise ValueError(f"{where}.{key} is {_json_type(value)}, expected {expected}.")
    return obj


def _check_state(state, ndims: tuple[int, ...]) -> dict | None:
    """The fitted state of the header (``None`` when unfitted), checked."""
    if state is None:
        return None
    _check_object("header.state", state, _STATE_SCHEMA, {"feature_names_in_": ("list",)})
    if state["n_iter_"] < 0:
        raise ValueError(f"header.state.n_iter_ is {state['n_iter_']}, expected >= 0.")
    if state["n_features_in_"] < 1:
        raise ValueError(
            f"header.state.n_features_in_ is {state['n_features_in_']}, expected >= 1."
        )
    if state["_fit_ndim_"] not in ndims or (
        state["_fit_ndim_"] == 1 and state["n_features_in_"] != 1
    ):
        raise ValueError(
            f"header.state._fit_ndim_ is {state['_fit_ndim_']} with n_features_in_ = "
            f"{state['n_features_in_']}; expected one of {ndims} (1 only with one feature)."
        )
    if not math.isfinite(state["lower_bound_"]):
        raise ValueError(f"header.state.lower_bound_ is {state['lower_bound_']}, expected finite.")
    names = state.get("feature_names_in_")
    if names is not None and (
        len(names) != state["n_features_in_"] or not all(isinstance(c, str) for c in names)
    ):
        raise ValueError(
            "header.state.feature_names_in_ must be a list of n_features_in_ = "
            f"{state['n_features_in_']} strings, got {names!r}."
        )
    return state


def _check_array_keys(arrays: dict, expected: set, owner: str, attrs: tuple[str, ...]) -> None:
    """The file holds exactly the ``expected`` arrays; ``attr.*`` only for declared ``attrs``."""
    unknown = sorted(set(arrays) - expected)
    for key in unknown:
        if key.startswith("attr."):
            raise ValueError(
                f"array {key!r}: {key[5:]!r} is not an attribute {owner} saves (it restores "
                f"only {', '.join(attrs)}, and those only when fitted)."
            )
    if unknown:
        raise ValueError(f"unexpected arrays {unknown}; expected {sorted(expected)}.")
    missing = sorted(expected - set(arrays))
    if missing:
        raise ValueError(f"the arrays {missing} are missing.")


def _float_array(value) -> np.ndarray:
    """``value`` as an array to save: float32 and float64 kept, anything else as float64."""
    arr = np.asarray(value)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def _saved_array(arrays: dict, key: str) -> np.ndarray:
    """``arrays[key]``: present, real, finite (float32/64 kept, other numbers as float64)."""
    if key not in arrays:
        raise ValueError(f"the array {key!r} is missing.")
    arr = arrays[key]
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and arr.dtype.itemsize not in (4, 8)):
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise ValueError(f"array {key!r} has dtype {arr.dtype}, expected float32 or float64.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"array {key!r} has non-finite entries (NaN or infinity).")
    return arr


def _check_shape(key: str, arr: np.ndarray, shape: tuple) -> None:
    """``arr.shape`` matches ``shape`` (``None``: any size on that axis)."""
    if arr.ndim != len(shape) or any(
        s is not None and a != s for a, s in zip(arr.shape, shape, strict=True)
    ):
        want = (
            "("
            + ", ".join("?" if s is None else str(s) for s in shape)
            + ("," if len(shape) == 1 else "")
            + ")"
        )
        raise ValueError(f"array {key!r} has shape {arr.shape}, expected {want}.")


def _check_weights(key: str, arr: np.ndarray, k: int) -> None:
    """Mixing weights: ``(K,)``, non-negative, summing to 1."""
    _check_shape(key, arr, (k,))
    if np.any(arr < 0):
        raise ValueError(f"array {key!r} has negative weights (min {float(arr.min()):.6g}).")
    total = float(np.sum(arr, dtype=np.float64))
    if abs(total - 1.0) > max(1e-6, 4 * k * float(np.finfo(arr.dtype).eps)):
        raise ValueError(f"array {key!r}: the weights sum to {total:.10g}, not 1.")


def _check_support(key: str, arr: np.ndarray, constraint) -> None:
    if not constraint.check(arr):
        raise ValueError(f"array {key!r} is outside its support ({constraint!r}).")


def _gaussian_shape(covariance_type: str, k: int, d: int | None) -> tuple:
    return {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}[covariance_type]


def _check_gaussian_starts(est, n_features: int | None) -> None:
    """``weights_init``, ``means_init``, ``precisions_init`` of a loaded ``GaussianMixture``."""
    k, kind = int(est.n_components), est.covariance_type
    if est.weights_init is not None:
        _check_weights("param.weights_init", est.weights_init, k)
    d = n_features
    if est.means_init is not None:
        _check_shape("param.means_init", est.means_init, (k, d))
        d = est.means_init.shape[1]
    if est.precisions_init is not None:
        _check_shape("param.precisions_init", est.precisions_init, _gaussian_shape(kind, k, d))
        matrix = kind in ("full", "tied")
        support = _constraints.positive_definite if matrix else _constraints.positive
        _check_support("param.precisions_init", est.precisions_init, support)


def _check_gaussian_fitted(covariance_type: str, k: int, state: dict, values: dict) -> None:
    """The fitted arrays of a ``GaussianMixture``: shapes, supports, and that they agree."""
    d = state["n_features_in_"]
    _check_weights("attr.weights_", values["weights_"], k)
    _check_shape("attr.means_", values["means_"], (k, d))
    shape = _gaussian_shape(covariance_type, k, d)
    for name in ("covariances_", "precisions_", "precisions_cholesky_"):
        _check_shape(f"attr.{name}", values[name], shape)
    _check_shape("attr.lower_bounds_", values["lower_bounds_"], (state["n_iter_"],))
    matrix = covariance_type in ("full", "tied")
    support = _constraints.positive_definite if matrix else _constraints.positive
    _check_support("attr.covariances_", values["covariances_"], support)
    _check_support("attr.precisions_", values["precisions_"], support)
    cov, prec, chol = (
        np.asarray(values[n], np.float64)
        for n in ("covariances_", "precisions_", "precisions_cholesky_")
    )
    all64 = all(
        values[n].dtype == np.float64
        for n in ("covariances_", "precisions_", "precisions_cholesky_")
    )
    eps = float(np.finfo(np.float64 if all64 else np.float32).eps)
    if matrix:
        # Rounding grows with the condition number: allow for it (the checks are
        # for files that disagree outright, not for the last digits).
        cov, prec, chol = (a.reshape(-1, d, d) for a in (cov, prec, chol))
        eig = np.linalg.eigvalsh(cov)
        tol = (eps * (1e3 + 10 * d * eig[:, -1] / eig[:, 0]))[:, None, None]
        diag = np.diagonal(chol, axis1=-2, axis2=-1)
        scale = np.abs(chol).max(axis=(1, 2), keepdims=True)
        if np.any(diag <= 0) or np.any(np.abs(np.tril(chol, -1)) > tol * scale):
            raise ValueError(
                "array 'attr.precisions_cholesky_' is not upper-triangular with a positive "
                "diagonal."
            )
        chol_t = np.swapaxes(chol, -1, -2)
        bound = (np.abs(chol) @ np.abs(chol_t)).max(axis=(1, 2), keepdims=True)
        if np.any(np.abs(chol @ chol_t - prec) > tol * bound):
            raise ValueError(
                "array 'attr.precisions_' is not precisions_cholesky_ @ precisions_cholesky_.T."
            )
        if np.any(np.abs(chol_t @ cov @ chol - np.eye(d)) > tol):
            raise ValueError(
                "arrays 'attr.precisions_cholesky_' and 'attr.covariances_' disagree: "
                "precisions_cholesky_.T @ covariances_ @ precisions_cholesky_ is not the identity."
            )
    else:
        tol = 1e3 * eps
        _check_support("attr.precisions_cholesky_", values["precisions_cholesky_"], support)
        if not np.allclose(chol**2, prec, rtol=tol, atol=0):
            raise ValueError("array 'attr.precisions_' is not precisions_cholesky_ ** 2.")
        if not np.allclose(cov * prec, 1.0, rtol=0, atol=tol):
            raise ValueError("array 'attr.precisions_' is not 1 / attr.covariances_.")


def _family_shapes(family, k: int, ndim: int, d: int) -> dict[str, tuple]:
    """The shape of each parameter field for ``k`` components on ``(N,)``/``(N, d)`` data.

    Read off the family's own ``init`` by ``jax.eval_shape`` (nothing is computed).
    """
    import jax
    import jax.numpy as jnp

    n = 2 * k + 2
    x = jax.ShapeDtypeStruct((n,) if ndim == 1 else (n, d), jnp.float32)
    out = jax.eval_shape(lambda key, x: family.init(key, x, k), jax.random.key(0), x)
    return {field: tuple(getattr(out, field).shape) for field in out._fields}


def _check_mixture_params(
    family, k: int, weights_key: str, weights, prefix: str, components, layout=None
) -> None:
    """Weights and family parameters of a ``MixtureEstimator``: shapes and supports.

    ``layout``: ``(ndim, n_features)`` of the fitted data, when known: each
    field then has its exact shape; otherwise only its component axis is checked.
    """
    from jaxem.families.base import component_constraints

    _check_weights(weights_key, weights, k)
    shapes = None if layout is None else _family_shapes(family, k, *layout)
    axes = family.component_axes(components)
    leaves = component_constraints(family, components)
    for field in components._fields:
        key, value = f"{prefix}{field}", getattr(components, field)
        if shapes is not None:
            _check_shape(key, value, shapes[field])
        elif getattr(axes, field) == 0 and (value.ndim == 0 or value.shape[0] != k):
            raise ValueError(
                f"array {key!r} has shape {value.shape}, expected a leading axis of "
                f"n_components = {k}."
            )
        _check_support(key, value, getattr(leaves, field))
