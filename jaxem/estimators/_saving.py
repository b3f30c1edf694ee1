"""The estimators' saved form: writing it, and checking a loaded file's contents.

A saved file is a NumPy ``.npz`` archive of arrays plus one JSON header,
``__jaxem__`` (see :mod:`jaxem.io`, which reads it back). The checks here raise
``ValueError`` saying what is wrong; ``em.load`` prefixes the file's name.
"""

from __future__ import annotations

import inspect
import json
import math

import numpy as np

from jaxem import constraints as _constraints

FORMAT = "jaxem-estimator"
VERSION = 1
_HEADER = "__jaxem__"

#: The classes ``em.save`` writes and ``em.load`` rebuilds, by the name saved in the header.
CLASSES: dict[str, type] = {}


def savable(cls: type) -> type:
    """Class decorator: ``cls`` (not its subclasses) is written and read by name."""
    CLASSES[cls.__name__] = cls
    return cls


def write(estimator, path) -> None:
    """Write ``estimator`` to ``path``: its arrays, and its header as a JSON string."""
    name = type(estimator).__name__
    if CLASSES.get(name) is not type(estimator):
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


# -- checks of a loaded file ------------------------------------------------------------

_KINDS = {
    "object": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "null": (lambda v: v is None, "null"),
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


# -- constructor arguments and family parameters ---------------------------------------


def _params_from_header(
    cls, header: dict, arrays: dict, array_params: tuple[str, ...] = (), rebuilt=()
) -> dict:
    """The constructor arguments saved in ``header["params"]``, checked.

    Only ``cls``'s own arguments, as JSON scalars (``fit`` checks their values);
    ``array_params`` may be ``{"array": true}``: the (checked) array
    ``param.<name>``; ``rebuilt`` ones, restored from other header entries, may
    only be null here. Arguments with defaults may be absent.
    """
    names = set(cls._get_param_names())
    params = {}
    for name, value in header["params"].items():
        if name not in names:
            raise ValueError(f"header.params.{name}: {cls.__name__} has no argument {name!r}.")
        if name in rebuilt:
            if value is not None:
                raise ValueError(
                    f"header.params.{name} is {_json_type(value)}, expected null (it is "
                    "saved in its own header entry)."
                )
        elif name in array_params and isinstance(value, dict) and value == {"array": True}:
            value = _saved_array(arrays, f"param.{name}")
        elif not (value is None or isinstance(value, (bool, int, float, str))):
            raise ValueError(
                f"header.params.{name} is {_json_type(value)}, expected a number, a string, "
                "a boolean or null."
            )
        params[name] = value
    signature = inspect.signature(cls.__init__).parameters.values()
    missing = [
        p.name
        for p in signature
        if p.name != "self" and p.name not in rebuilt and p.name not in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise ValueError(f"header.params lacks the arguments {missing}.")
    return params


def _fields_of(components):
    """``(field names, {field: array})`` of a family's NamedTuple (or dict) of parameters."""
    if isinstance(components, dict):
        items = list(components.items())
    elif hasattr(components, "_asdict"):
        items = list(components._asdict().items())
    else:
        raise TypeError(
            f"cannot save parameters of type {type(components).__name__}: expected the "
            "family's NamedTuple or a dict of arrays."
        )
    return [k for k, _ in items], {k: _float_array(v) for k, v in items}


def _rebuild(kind, fields: list[str], arrays: dict, prefix: str):
    """``kind`` (the family's NamedTuple) from the arrays ``<prefix><field>``, each checked."""
    return kind(**{f: _saved_array(arrays, f"{prefix}{f}") for f in fields})
