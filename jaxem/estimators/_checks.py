"""Host-side validation of the estimators' constructor arguments, ``X`` and ``sample_weight``.

Messages follow scikit-learn's where its checks (and code written against it)
look for them.
"""

from __future__ import annotations

import math
import numbers
import warnings

import jax
import numpy as np

from jaxem import _validation


class _InvalidParameter(ValueError, TypeError):
    """A bad constructor argument (a ValueError, also caught as TypeError, like sklearn's)."""


def _check_int(owner: str, name: str, value, minimum: int) -> int:
    try:
        return _validation.check_int(name, value, minimum, owner)
    except (TypeError, ValueError) as err:
        raise _InvalidParameter(str(err)) from None


def _check_real(owner: str, name: str, value, fix: str) -> float:
    if (
        isinstance(value, (bool, np.bool_))
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise _InvalidParameter(
            f"{owner}: {name} must be a finite number >= 0, got {value!r}. {fix}"
        )
    return float(value)


def _check_random_state(owner: str, random_state) -> None:
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if 0 <= random_state < 2**32:
            return
    raise _InvalidParameter(
        f"{owner}: random_state must be None, an int in [0, 2**32) or a "
        f"numpy.random.RandomState, got {random_state!r}."
    )


def _numpy_rng(random_state) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``: None is NumPy's global generator."""
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, np.random.RandomState):
        return random_state
    return np.random.RandomState(int(random_state))


def _jax_key(random_state) -> jax.Array:
    """A ``jax.random.key``: an int seed directly, else one drawn from the NumPy generator."""
    if isinstance(random_state, numbers.Integral):
        return jax.random.key(int(random_state))
    return jax.random.key(int(_numpy_rng(random_state).randint(np.iinfo(np.int32).max)))


def _check_missing(owner: str, missing) -> bool:
    """Validate the ``missing`` argument; whether NaN entries are missing values."""
    try:
        return _validation.check_missing(missing, owner)
    except ValueError as err:
        raise _InvalidParameter(str(err)) from None


def _check_array(
    X,
    owner: str,
    *,
    allow_1d: bool,
    min_samples: int,
    allow_nan: bool = False,
    fitting: bool = False,
) -> np.ndarray:
    """``X`` as a float NumPy array, with scikit-learn-compatible messages.

    The dtype follows scikit-learn's ``dtype=[np.float64, np.float32]``:
    float32 stays float32, anything else becomes float64.
    ``allow_nan``: NaN entries are missing values (``missing="marginalize"``);
    for a fit (``fitting``) every column needs an observed value.
    """
    sparse = hasattr(X, "tocsr") or hasattr(X, "toarray")
    if not sparse and X is not None and not isinstance(X, (str, bytes)):
        X = np.asarray(X)  # array-likes that refuse NumPy's functions (scikit-learn's checks)
        if X.dtype == object:
            # Python's own TypeError for entries that are not numbers, which
            # scikit-learn's estimator checks look for.
            X = X.astype(np.float64)
        if np.iscomplexobj(X):  # scikit-learn raises ValueError here, with these words
            raise ValueError(
                f"{owner}: Complex data not supported (X has dtype {X.dtype}); pass the real "
                "and imaginary parts as separate columns."
            )
    arr = _validation.numeric_array(X, "X", owner)
    arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    if arr.ndim == 1 and not allow_1d:
        raise ValueError(
            f"{owner}: Expected 2D array, got 1D array instead (shape {arr.shape}). Reshape "
            "your data either using X.reshape(-1, 1) if your data has a single feature or "
            "X.reshape(1, -1) if it contains a single sample."
        )
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"{owner}: X must have shape (n_samples, n_features), got shape {arr.shape}."
        )
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{owner}: Found array with {arr.shape[0]} sample(s) (shape={arr.shape}) while a "
            f"minimum of {min_samples} is required."
        )
    if arr.ndim == 2 and arr.shape[1] == 0:
        raise ValueError(
            f"{owner}: Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 "
            "is required."
        )
    nan = np.isnan(arr)
    if nan.any() and not allow_nan:
        raise ValueError(
            f"{owner}: Input X contains NaN ({int(nan.sum())} entries); remove or impute them, "
            f"or pass {owner}(..., missing='marginalize') to treat them as missing values "
            "and integrate them out."
        )
    if np.isinf(arr).any():
        raise ValueError(
            f"{owner}: Input X contains infinity; remove those entries"
            + (" (NaN marks a missing value, infinity is not one)." if allow_nan else ".")
        )
    if fitting and nan.any():
        empty = np.flatnonzero(nan.reshape(len(arr), -1).all(axis=0))
        if empty.size:
            raise ValueError(
                f"{owner}: column {int(empty[0])} of X has no observed value (all NaN); drop "
                "it before fitting."
            )
    return arr


def _check_sample_weight(owner: str, sample_weight, n: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n)
    return _validation.check_sample_weight(sample_weight, n, owner, rows="X", scale=False)


def _check_array_param(name: str, value, shape: tuple) -> np.ndarray:
    """A user-given start as a float array (float32 kept), in scikit-learn's words."""
    try:
        arr = np.asarray(value)
        if arr.dtype != np.float32:
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"GaussianMixture: the parameter '{name}' must be an array of numbers: {err}"
        ) from None
    if arr.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {arr.shape}"
        )
    if np.isnan(arr).any():
        raise ValueError(f"Input contains NaN (the parameter '{name}').")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"Input contains infinity or a value too large for {arr.dtype!r} (the parameter "
            f"'{name}')."
        )
    return arr


def _check_n_samples(n_samples) -> int:
    if isinstance(n_samples, (bool, np.bool_)) or not isinstance(n_samples, numbers.Integral):
        raise ValueError(f"sample: n_samples must be a positive integer, got {n_samples!r}.")
    if n_samples < 1:
        raise ValueError(
            f"Invalid value for 'n_samples': {n_samples}. The sampling requires at least one "
            "sample."
        )
    return int(n_samples)


def _set_feature_names(est, X) -> None:
    """``feature_names_in_`` from a DataFrame's string columns (removed for other ``X``)."""
    names = getattr(X, "columns", None)
    if names is not None and all(isinstance(c, str) for c in names):
        est.feature_names_in_ = np.asarray(list(names), dtype=object)
    elif hasattr(est, "feature_names_in_"):
        del est.feature_names_in_


def _warn_not_converged(est, stacklevel: int) -> None:
    """scikit-learn's words and class when the best start did not converge.

    Code that filters scikit-learn's ``ConvergenceWarning`` keeps working.
    """
    from jaxem.estimators._compat import _FitConvergenceWarning

    if not est.converged_ and est.max_iter > 0:
        warnings.warn(
            "Best performing initialization did not converge. Try different init "
            "parameters, or increase max_iter, tol, or check for degenerate data.",
            _FitConvergenceWarning,
            stacklevel=stacklevel + 1,
        )
