"""Input checks that run on the host, before anything is traced."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np


def float_dtype():
    """float64 when ``jax_enable_x64`` is on, else float32."""
    return jnp.result_type(float)


def as_float_array(x, name: str = "x") -> np.ndarray:
    """Host copy of ``x`` as a float array, with clear errors."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}.")
    try:
        arr = np.asarray(x)
    except Exception as err:  # pragma: no cover - exotic array-likes
        raise TypeError(f"{name} must be array-like: {err}") from err
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}.")
    return arr.astype(np.dtype(float_dtype()), copy=False)


MISSING_OPTIONS = (None, "raise", "marginalize")


def prepare_data(model, x, missing: str | None = None):
    """Validate data for ``model``; return it as a device array of the float dtype.

    With ``missing="marginalize"`` NaN entries are missing values: returns
    ``(x_filled, observed)`` where ``observed`` is a boolean device array of
    ``x``'s shape (or ``None`` when nothing is missing) and each missing entry
    of ``x_filled`` holds an observed value of its column (the one nearest the
    column's observed mean), so that every entry lies in the model's support.
    Otherwise NaN raises and only ``x`` is returned.
    """
    if missing not in MISSING_OPTIONS:
        raise ValueError(f"missing must be None, 'raise' or 'marginalize', got {missing!r}.")
    arr = as_float_array(x)
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"x must have shape (N,) or (N, D), got ndim={arr.ndim} with shape {arr.shape}; "
            "reshape it (e.g. x.reshape(len(x), -1))."
        )
    if arr.shape[0] == 0 or (arr.ndim == 2 and arr.shape[1] == 0):
        raise ValueError(f"x is empty (shape {arr.shape}); pass at least one sample.")
    nan = np.isnan(arr)
    n_inf = int(np.isinf(arr).sum())
    if n_inf:
        raise ValueError(
            f"x contains {n_inf} infinite entries; remove them (NaN marks a missing value, "
            "infinity is not one)."
        )
    if missing != "marginalize":
        if nan.any():
            rows = int(nan.reshape(len(arr), -1).any(axis=1).sum())
            raise ValueError(
                f"x contains {int(nan.sum())} NaN entries (in {rows} rows). If they are missing "
                "values, pass missing='marginalize' to integrate them "
                "out; otherwise remove or impute them before fitting."
            )
        model._check_data(arr)
        return jnp.asarray(arr)
    if not nan.any():
        model._check_data(arr)
        return jnp.asarray(arr), None
    model._check_missing(arr)
    cols = arr.reshape(len(arr), -1)
    filled = cols.copy()
    for j in range(cols.shape[1]):  # host-side, once per column (not per row)
        seen = cols[~np.isnan(cols[:, j]), j]
        if seen.size == 0:
            raise ValueError(
                f"x: column {j} has no observed value (all NaN); drop it before fitting."
            )
        filled[np.isnan(cols[:, j]), j] = seen[np.argmin(np.abs(seen - seen.mean()))]
    filled = filled.reshape(arr.shape)
    model._check_data(filled)
    return jnp.asarray(filled), jnp.asarray(~nan)


def prepare_sample_weight(sample_weight, n: int) -> jax.Array:
    if sample_weight is None:
        return jnp.ones(n, float_dtype())
    w = as_float_array(sample_weight, "sample_weight")
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},) to match x, got {w.shape}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and >= 0.")
    if not w.sum() > 0:
        raise ValueError("sample_weight must have a positive sum.")
    return jnp.asarray(w)


def prepare_labels(labels, n: int, n_states: int) -> jax.Array:
    """``(N,)`` int32 labels in ``[-1, n_states)``; -1 marks an unlabelled row."""
    arr = np.asarray(labels)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"labels must be integers (-1 for unknown), got dtype {arr.dtype}.")
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match x, got {arr.shape}.")
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
        raise ValueError("labels must be whole numbers: a state index, or -1 for unknown.")
    if np.any(arr < -1) or np.any(arr >= n_states):
        bad = arr[(arr < -1) | (arr >= n_states)][:3]
        raise ValueError(
            f"labels must lie in [0, {n_states - 1}] (the latent states) or be -1 for "
            f"unknown; found e.g. {bad.tolist()}."
        )
    return jnp.asarray(arr.astype(np.int32))


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_tol(tol) -> float:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a number, got {tol!r}.")
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tol must be a finite number >= 0, got {tol}.")
    return float(tol)


def as_key(key):
    """Accept a typed key, a legacy uint32 key, or an int seed."""
    if isinstance(key, bool):
        raise TypeError("key must be a jax.random.key(...) or an int seed, got a bool.")
    if isinstance(key, numbers.Integral):
        return jax.random.key(int(key))
    try:
        arr = jnp.asarray(key)
    except TypeError as err:
        raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {key!r}.") from err
    if jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
        if arr.shape != ():
            raise ValueError(f"key must be a single key, got a batch of shape {arr.shape}.")
        return arr
    if arr.dtype == jnp.uint32 and arr.shape == (2,):
        return jax.random.wrap_key_data(arr)
    raise TypeError(f"key must be a jax.random.key(...) or an int seed, got {key!r}.")
