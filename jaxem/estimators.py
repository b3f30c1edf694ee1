"""scikit-learn–style estimators: ``em.GaussianMixture`` and ``em.MixtureEstimator``.

Both are thin layers over ``em.Mixture`` + ``em.fit``: ``fit`` validates on the
host, then runs the first start alone (as ``n_init=1`` does) and the other
``n_init - 1`` together under ``vmap``; fitted attributes and method results
are NumPy arrays.

Design decisions:

* **The data's dtype is the fit's dtype**, as in scikit-learn: float64 ``X``
  (and integer ``X``) is fitted in float64, with ``jax_enable_x64`` switched on
  for the duration of the call only (``jax.enable_x64``), and gives float64
  attributes; float32 ``X`` is fitted in float32 and gives float32 attributes.
  ``em.fit`` itself keeps its float32 default (the accelerator's native
  precision); the estimators follow scikit-learn because their users compare
  against it and expect its iterates.
* **More restarts are never worse.** XLA's rounding depends on how many
  restarts share a batch, so the first start runs in a batch of its own,
  exactly as with ``n_init=1``: ``n_init=10`` then never ends below
  ``n_init=1`` with the same ``random_state``, to the last bit.

* **scikit-learn is optional.** When it is importable the estimators derive from
  ``sklearn.base.DensityMixin`` and ``BaseEstimator`` (so ``clone``,
  ``Pipeline``, ``GridSearchCV`` and ``check_estimator`` work) and raise its
  ``NotFittedError``; otherwise a small stand-in base provides
  ``get_params``/``set_params``/``repr`` and ``NotFittedError`` is a
  ``ValueError`` subclass. Input validation is jaxem's own in both cases (the
  messages follow scikit-learn's where its checks look for them), so behaviour
  does not depend on which base is used.
* **Compiled programs are reused.** XLA compiles one program per model and data
  shape (seconds on a CPU). Models are kept in a small module-level cache keyed
  by their settings (an estimator holds none, so it pickles), and the rows
  handed to ``em.fit`` are padded to a bucket size (a power of two from 64 up to
  32768 rows, then a multiple of 4096) by repeating rows at a fraction of their
  weight: the weighted fit is the same fit, and cross-validation folds,
  refits and pipelines reuse one program. Seeding sees the repeated rows, so a
  row repeated for padding is (at most twice) as likely to seed a component.
* **GaussianMixture evaluates in float64 NumPy.** ``predict``,
  ``predict_proba``, ``score_samples``, ``score``, ``bic`` and ``aic`` use the
  fitted attributes (promoted to float64) with scikit-learn's formulas
  (through ``precisions_cholesky_``): no compilation, results independent of
  the batch, and identical to scikit-learn's for the same parameters.
  ``MixtureEstimator`` evaluates its family's ``log_prob`` with JAX, in the
  dtype of its fit.
* **Missing values are opt-in.** With ``missing=None`` (the default) NaN in
  ``X`` raises, as in scikit-learn. With ``missing="marginalize"`` NaN entries
  are missing values, integrated out exactly: ``fit`` runs
  ``em.fit(..., missing="marginalize")``, and every method scores the observed
  entries of each row. ``GaussianMixture`` evaluates the marginal normal of
  the observed block (one Cholesky factor per component and missingness
  pattern, shared by the rows with that pattern); ``MixtureEstimator`` masks
  the missing entries out of its family's densities. A row with nothing
  observed has log-likelihood 0 and the weights as its posterior. ``score``,
  ``bic`` and ``aic`` use the observed-data log-likelihood and ``N`` rows.
"""

from __future__ import annotations

import collections
import inspect
import json
import math
import numbers
import sys
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem import io as _io
from jaxem import priors as _priors
from jaxem.families._seeding import kmeans_plus_plus
from jaxem.families.base import Family
from jaxem.families.mvn import COVARIANCE_TYPES, MultivariateNormal, MultivariateNormalParams
from jaxem.fit import ConvergenceWarning, fit
from jaxem.mixture import Mixture, MixtureParams
from jaxem.selection import n_parameters

__all__ = ["GaussianMixture", "MixtureEstimator", "NotFittedError", "HAVE_SKLEARN"]

try:  # optional: scikit-learn is a test extra, never a runtime dependency
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import DensityMixin as _DensityMixin
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.exceptions import NotFittedError

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    HAVE_SKLEARN = False
    _SklearnConvergenceWarning = None

    class NotFittedError(ValueError, AttributeError):
        """An estimator was used before ``fit`` (scikit-learn's class when it is installed)."""

    class _DensityMixin:
        """Stand-in for ``sklearn.base.DensityMixin`` (nothing to add without sklearn)."""

    class _BaseEstimator:
        """Stand-in for ``sklearn.base.BaseEstimator``: parameters from ``__init__``'s signature."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name
                for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(
                        f"Invalid parameter {name!r} for estimator {type(self).__name__}; "
                        f"valid parameters are {valid}."
                    )
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            sig = inspect.signature(type(self).__init__)
            shown = [
                f"{name}={value!r}"
                for name, value in self.get_params().items()
                if sig.parameters[name].default is inspect.Parameter.empty
                or not _same(value, sig.parameters[name].default)
            ]
            return f"{type(self).__name__}({', '.join(shown)})"


def _same(a, b) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # arrays and other objects without a truthy ==
        return False


if HAVE_SKLEARN:

    class _FitConvergenceWarning(ConvergenceWarning, _SklearnConvergenceWarning):
        """jaxem's ConvergenceWarning that scikit-learn's warning filters also catch."""

else:  # pragma: no cover
    _FitConvergenceWarning = ConvergenceWarning


class _InvalidParameter(ValueError, TypeError):
    """A bad constructor argument (a ValueError, also caught as TypeError, like sklearn's)."""


# -- host-side validation ---------------------------------------------------------


def _check_int(owner: str, name: str, value, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise _InvalidParameter(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise _InvalidParameter(f"{owner}: {name} must be >= {minimum}, got {value}.")
    return int(value)


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


MISSING_OPTIONS = (None, "marginalize")


def _check_missing(owner: str, missing) -> bool:
    """Validate the ``missing`` argument; whether NaN entries are missing values."""
    if missing is None:
        return False
    if isinstance(missing, str) and missing == "marginalize":
        return True
    raise _InvalidParameter(
        f"{owner}: missing must be None (NaN in X raises) or 'marginalize' (NaN entries are "
        f"missing values, integrated out), got {missing!r}."
    )


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
    if hasattr(X, "tocsr") or hasattr(X, "toarray"):
        raise TypeError(
            f"{owner}: sparse input is not supported (X is {type(X).__name__}); "
            "convert it with X.toarray()."
        )
    if X is None or isinstance(X, (str, bytes)):
        raise TypeError(f"{owner}: X must be an array of numbers, got {type(X).__name__}.")
    arr = np.asarray(X)
    if arr.dtype == object:
        arr = arr.astype(np.float64)  # TypeError for entries that are not numbers
    if np.iscomplexobj(arr):
        raise ValueError(
            f"{owner}: Complex data not supported (X has dtype {arr.dtype}); pass the real "
            "and imaginary parts as separate columns."
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{owner}: X must hold numbers, got dtype {arr.dtype}.")
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
    w = np.asarray(sample_weight)
    if w.dtype == object or not np.issubdtype(w.dtype, np.number):
        raise TypeError(f"{owner}: sample_weight must hold numbers, got dtype {w.dtype}.")
    w = w.astype(np.float64)
    if w.shape != (n,):
        raise ValueError(
            f"{owner}: sample_weight must have shape ({n},), one weight per row of X, "
            f"got shape {w.shape}."
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{owner}: sample_weight must be finite and >= 0.")
    if not w.sum() > 0:
        raise ValueError(
            f"{owner}: sample_weight must contain at least one positive weight; all weights "
            "are zero."
        )
    return w


def _padded_size(n: int) -> int:
    if n <= 1 << 15:
        return max(64, 1 << (n - 1).bit_length())
    return -(-n // 4096) * 4096


def _pad_rows(x: np.ndarray, w: np.ndarray):
    """Repeat rows up to the bucket size, splitting each row's weight among its copies.

    Why: XLA compiles a program per data shape; a few bucket sizes let fits on
    different numbers of rows share one. The weighted objective is unchanged.
    """
    n = x.shape[0]
    size = _padded_size(n)
    if size == n:
        return x, w
    idx = np.arange(size) % n
    copies = np.bincount(idx, minlength=n)
    return x[idx], (w / copies)[idx]


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (top + np.log(np.sum(np.exp(a - top), axis=1, keepdims=True)))[:, 0]


# -- cached models --------------------------------------------------------------------


class _Entry:
    """A cached model and the small jitted helpers built around it."""

    def __init__(self, model: Mixture):
        self.model = model
        self._draw = None
        self._log_joint = None
        self._sample = None

    def draw(self, keys, x):
        """``R`` random starts, one per key (one compiled program)."""
        if self._draw is None:
            self._draw = jax.jit(jax.vmap(self.model._draw, in_axes=(0, None)))
        return self._draw(keys, x)

    def log_joint(self, params, x, observed=None):
        if self._log_joint is None:
            self._log_joint = jax.jit(self.model.log_joint)
        return self._log_joint(params, x, observed)

    def sample(self, key, params, n: int):
        if self._sample is None:  # eager, sampling dispatches hundreds of small ops
            self._sample = jax.jit(self.model.sample, static_argnums=2)
        return self._sample(key, params, n)


_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


def _cached(key, build) -> _Entry:
    """The model for these settings, built once (its compiled programs live on it)."""
    entry = _CACHE.get(key)
    if entry is None:
        entry = _Entry(build())
        _CACHE[key] = entry
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return entry


# -- starting points for GaussianMixture ----------------------------------------------


def _lloyd_resp(key, x, k: int, max_iter: int = 100):
    """k-means: Lloyd iterations from k-means++ centres; one-hot ``(N, K)`` assignments."""
    xc = x - jnp.mean(x, axis=0)
    _, centres = kmeans_plus_plus(key, xc, k)
    sq = jnp.sum(xc * xc, axis=1)[:, None]

    def labels_of(c):
        return jnp.argmin(sq - 2 * xc @ c.T + jnp.sum(c * c, axis=1)[None, :], axis=1)

    def body(state):
        i, c, labels, _ = state
        onehot = jax.nn.one_hot(labels, k, dtype=x.dtype)
        counts = jnp.sum(onehot, axis=0)
        c = jnp.where((counts > 0)[:, None], (onehot.T @ xc) / jnp.maximum(counts, 1)[:, None], c)
        new = labels_of(c)
        return i + 1, c, new, jnp.any(new != labels)

    def cond(state):
        return (state[0] < max_iter) & state[3]

    state = (jnp.zeros((), jnp.int32), centres, labels_of(centres), jnp.ones((), bool))
    labels = jax.lax.while_loop(cond, body, state)[2]
    return jax.nn.one_hot(labels, k, dtype=x.dtype)


def _random_resp(key, x, k: int):
    """scikit-learn's ``random``: uniform random responsibilities, rows normalised."""
    r = jax.random.uniform(key, (x.shape[0], k), x.dtype)
    return r / jnp.sum(r, axis=1, keepdims=True)


def _from_data_resp(key, x, k: int):
    """``random_from_data``: K rows chosen uniformly, never two with the same values.

    One-hot at the chosen rows only (scikit-learn's responsibilities), so each
    component starts at a data point with covariance ``reg_covar``.
    """
    n = x.shape[0]

    def pick(i, carry):
        idx, free = carry  # free: rows whose values differ from every chosen row
        count = jnp.sum(free)
        p = jnp.where(count > 0, free / jnp.maximum(count, 1), 1.0 / n).astype(x.dtype)
        new = jax.random.choice(jax.random.fold_in(key, i), n, p=p)
        free = free & jnp.any(x != x[new], axis=-1)
        return idx.at[i].set(new.astype(jnp.int32)), free

    start = (jnp.zeros(k, jnp.int32), jnp.ones(n, bool))
    idx, _ = jax.lax.fori_loop(0, k, pick, start)
    return jnp.zeros((n, k), x.dtype).at[idx, jnp.arange(k)].set(1)


def _gaussian_parameters(x, resp, covariance_type: str, reg_covar: float):
    """scikit-learn's ``_estimate_gaussian_parameters`` from responsibilities.

    Returns ``(weights (K,), means (K, D), cov)``; the weights are normalised.
    """
    dtype = x.dtype
    centre = jnp.mean(x, axis=0)
    xc = x - centre
    nk = jnp.sum(resp, axis=0) + 10 * jnp.finfo(dtype).eps
    means = resp.T @ xc / nk[:, None]
    diff = xc[None, :, :] - means[:, None, :]  # (K, N, D)
    d = x.shape[1]
    eye = jnp.eye(d, dtype=dtype)
    if covariance_type in ("full", "tied"):
        scatter = jnp.einsum("nk,knd,kne->kde", resp, diff, diff)
        if covariance_type == "full":
            cov = scatter / nk[:, None, None] + reg_covar * eye
        else:
            cov = jnp.sum(scatter, axis=0) / jnp.sum(nk) + reg_covar * eye
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    else:
        cov = jnp.einsum("nk,knd->kd", resp, diff * diff) / nk[:, None] + reg_covar
        if covariance_type == "spherical":
            cov = jnp.mean(cov, axis=1)
    return nk / jnp.sum(nk), means + centre, cov


_RESPONSIBILITIES = {
    "kmeans": _lloyd_resp,
    "random": _random_resp,
    "random_from_data": _from_data_resp,
}
INIT_PARAMS = ("kmeans", "k-means++", "random", "random_from_data")


class _GaussianStarts(Mixture):
    """A Gaussian mixture whose random starts follow ``init_params`` (drawn in the fit program).

    ``k-means++`` is ``MultivariateNormal.init`` (k-means++ clusters, covariances
    shrunk to the data's); the others build scikit-learn's responsibilities and
    take one M-step from them.
    """

    def __init__(self, covariance_type: str, reg_covar: float, n_components: int, init_params):
        super().__init__(MultivariateNormal(covariance_type, reg_covar=reg_covar), n_components)
        self.init_params = init_params

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, init_params={self.init_params!r})"

    def _draw(self, key, x):
        if self.init_params == "k-means++":
            return super()._draw(key, x)
        resp = _RESPONSIBILITIES[self.init_params](key, x, self.n_components)
        fam = self.family
        w, means, cov = _gaussian_parameters(x, resp, fam.covariance_type, fam.reg_covar)
        return MixtureParams(w, MultivariateNormalParams(means, cov))


# -- precisions (float64 NumPy, scikit-learn's conventions) ---------------------------

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def _precisions_cholesky(cov: np.ndarray, covariance_type: str) -> np.ndarray:
    """``precisions_cholesky_``: upper-triangular ``U`` with ``U Uᵀ = Σ⁻¹`` (or ``1/√var``)."""
    if covariance_type in ("full", "tied"):
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(_ILL_DEFINED) from None
        eye = np.broadcast_to(np.eye(cov.shape[-1]), cov.shape)
        return np.swapaxes(np.linalg.solve(chol, eye), -1, -2)
    if np.any(cov <= 0):
        raise ValueError(_ILL_DEFINED)
    return 1.0 / np.sqrt(cov)


def _covariances_from_precisions(prec: np.ndarray, covariance_type: str) -> np.ndarray:
    if covariance_type in ("full", "tied"):
        chol = np.linalg.cholesky(prec)
        eye = np.broadcast_to(np.eye(prec.shape[-1]), prec.shape)
        inv_chol = np.linalg.solve(chol, eye)  # L⁻¹; Σ = P⁻¹ = L⁻ᵀ L⁻¹
        cov = np.swapaxes(inv_chol, -1, -2) @ inv_chol
        return 0.5 * (cov + np.swapaxes(cov, -1, -2))
    return 1.0 / prec


def _gaussian_log_prob(X, means, prec_chol, covariance_type: str) -> np.ndarray:
    """``(N, K)`` log densities, scikit-learn's ``_estimate_log_gaussian_prob`` in float64."""
    n, d = X.shape
    k = means.shape[0]
    out = np.empty((n, k))
    for j in range(k):  # one component at a time: no (N, K, D) temporaries
        if covariance_type == "full":
            u = prec_chol[j]
            y = X @ u - means[j] @ u
            log_det = np.sum(np.log(np.diag(u)))
        elif covariance_type == "tied":
            y = X @ prec_chol - means[j] @ prec_chol
            log_det = np.sum(np.log(np.diag(prec_chol)))
        elif covariance_type == "diag":
            y = (X - means[j]) * prec_chol[j]
            log_det = np.sum(np.log(prec_chol[j]))
        else:
            y = (X - means[j]) * prec_chol[j]
            log_det = d * np.log(prec_chol[j])
        out[:, j] = -0.5 * (d * np.log(2 * np.pi) + np.sum(y * y, axis=1)) + log_det
    return out


def _missingness_patterns(observed: np.ndarray):
    """Yield ``(pattern (D,) bool, rows)`` for each distinct row of ``observed``.

    Rows are grouped by sorting (``O(N log N)``), so the work per pattern runs
    once for all the rows that share it.
    """
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = np.reshape(inverse, -1)
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=len(patterns)))
    starts = ends - np.bincount(inverse, minlength=len(patterns))
    for pattern, start, end in zip(patterns, starts, ends, strict=True):
        yield pattern, order[start:end]


def _gaussian_log_prob_missing(X, means, cov, prec_chol, covariance_type: str) -> np.ndarray:
    """``(N, K)`` log densities of the observed entries of each row (NaN = missing).

    Each row's density is the marginal normal of its observed block: mean
    ``μ_o``, covariance ``Σ_oo`` (whose Cholesky factor is computed once per
    missingness pattern). Complete rows use ``precisions_cholesky_`` as
    :func:`_gaussian_log_prob` does (scikit-learn's values); a row with nothing
    observed has density 1 (log 0).
    """
    nan = np.isnan(X)
    if not nan.any():
        return _gaussian_log_prob(X, means, prec_chol, covariance_type)
    out = np.zeros((X.shape[0], means.shape[0]))
    for obs, rows in _missingness_patterns(~nan):
        if not obs.any():
            continue  # nothing observed: log density 0 for every component
        if obs.all():
            out[rows] = _gaussian_log_prob(X[rows], means, prec_chol, covariance_type)
            continue
        xo = X[np.ix_(rows, obs)]
        if covariance_type == "full":
            sub = _precisions_cholesky(cov[:, obs][:, :, obs], "full")
        elif covariance_type == "tied":
            sub = _precisions_cholesky(cov[np.ix_(obs, obs)], "tied")
        elif covariance_type == "diag":
            sub = prec_chol[:, obs]
        else:  # spherical: the same 1/σ on every observed feature
            sub = prec_chol
        out[rows] = _gaussian_log_prob(xo, means[:, obs], sub, covariance_type)
    return out


# -- the shared estimator machinery -----------------------------------------------------


class _Start(NamedTuple):
    init: Any  # None, one start, or R stacked starts
    key: Any
    restarts: int


def _split_first(start: _Start):
    """``(first, rest)``: the first start as ``n_init=1`` runs it, and the others (or None).

    Random starts: the first from ``fold_in(key, 0)``, the others from
    ``fold_in(key, 1)``. Stacked starts: the first leaf row, and the rest.
    """
    r = int(start.restarts)
    if start.init is None:
        first = (None, jax.random.fold_in(start.key, 0), 1)
        rest = (None, jax.random.fold_in(start.key, 1), r - 1)
    elif r == 1:
        return (start.init, None, 1), None
    else:
        first = (jax.tree.map(lambda a: np.asarray(a)[0], start.init), None, 1)
        tail = jax.tree.map(lambda a: np.asarray(a)[1:], start.init)
        if r == 2:
            tail = jax.tree.map(lambda a: a[0], tail)
        rest = (tail, None, r - 1)
    return first, (rest if r > 1 else None)


def _better(a: float, b: float) -> bool:
    """Whether objective ``a`` beats ``b`` (a non-finite one never does)."""
    return bool(np.isfinite(a) and (not np.isfinite(b) or a > b))


class _MixtureEstimatorBase(_DensityMixin, _BaseEstimator):
    """fit / predict / score plumbing shared by both estimators (not public)."""

    # -- subclass hooks
    def _check_hyperparameters(self) -> None:
        raise NotImplementedError  # abstract

    def _entry(self, n_features: int) -> _Entry:
        raise NotImplementedError  # abstract

    #: whether ``X`` may be ``(N,)`` (one feature)
    _allow_1d = False

    def _validate_fit_X(self, X) -> np.ndarray:
        return self._checked_array(X, min_samples=2, fitting=True)

    def _checked_array(self, X, *, min_samples: int, fitting: bool = False) -> np.ndarray:
        return _check_array(
            X,
            type(self).__name__,
            allow_1d=self._allow_1d,
            min_samples=min_samples,
            allow_nan=self._allow_nan(),
            fitting=fitting,
        )

    def _validate_X(self, X) -> np.ndarray:
        raise NotImplementedError  # abstract

    def _explicit_start(self, entry: _Entry, x: np.ndarray, key, xp) -> _Start | None:
        return None

    def _current_params(self) -> MixtureParams:
        raise NotImplementedError  # abstract

    def _set_params_from(self, params) -> None:
        raise NotImplementedError  # abstract

    def _weighted_log_prob(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # abstract

    # -- fitting
    def _common_hyperparameters(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "n_components", self.n_components, 1)
        _check_real(owner, "tol", self.tol, "Use e.g. tol=1e-3 (per-sample improvement).")
        _check_int(owner, "max_iter", self.max_iter, 0)
        _check_int(owner, "n_init", self.n_init, 1)
        _check_random_state(owner, self.random_state)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise _InvalidParameter(
                f"{owner}: warm_start must be True or False, got {self.warm_start!r}."
            )
        if not isinstance(self.verbose, (bool, np.bool_)):
            _check_int(owner, "verbose", self.verbose, 0)
        _check_int(owner, "verbose_interval", self.verbose_interval, 1)
        _check_missing(owner, self.missing)

    def _allow_nan(self) -> bool:
        """Whether NaN entries of ``X`` are missing values (``missing="marginalize"``)."""
        return _check_missing(type(self).__name__, self.missing)

    def _fit(self, X, sample_weight) -> None:
        owner = type(self).__name__
        self._check_hyperparameters()
        x = self._validate_fit_X(X)
        n = x.shape[0]
        if n < self.n_components:
            raise ValueError(
                f"{owner}: Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {n}; lower n_components or pass more rows."
            )
        w = _check_sample_weight(owner, sample_weight, n)
        # The fit runs in X's dtype, as scikit-learn's does: float64 data in
        # float64 (x64 switched on for this call only), float32 in float32.
        with jax.enable_x64(x.dtype == np.float64):
            w = self._rescaled_weights(w)
            res = self._run_fit(x, w)
        self._set_params_from(res.params)
        self._cast_attributes(x.dtype)
        total = float(w.sum())
        self.converged_ = bool(res.converged)
        self.n_iter_ = int(res.n_iter)
        self.lower_bound_ = float(res.objective) / total
        self.lower_bounds_ = np.asarray(res.history[1:], np.float64) / total
        n_features = 1 if x.ndim == 1 else x.shape[1]
        self.n_features_in_ = n_features
        self._fit_ndim_ = x.ndim
        names = getattr(X, "columns", None)
        if names is not None and all(isinstance(c, str) for c in names):
            self.feature_names_in_ = np.asarray(list(names), dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if not self.converged_ and self.max_iter > 0:
            # scikit-learn's words and class, so code that filters them keeps working.
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                _FitConvergenceWarning,
                stacklevel=3,
            )
        if self.verbose:
            state = "converged" if self.converged_ else "did not converge"
            print(
                f"{owner}: {state} after {self.n_iter_} iterations; lower bound "
                f"{self.lower_bound_:.5f}.",
                file=sys.stderr,
            )

    def _rescaled_weights(self, w: np.ndarray) -> np.ndarray:
        """The weights handed to ``em.fit`` (subclasses without priors may rescale)."""
        return w

    def _run_fit(self, x: np.ndarray, w: np.ndarray):
        """The one ``em.fit`` call (inside the dtype context); returns its ``FitResult``."""
        owner = type(self).__name__
        nan = bool(np.isnan(x).any())  # only possible with missing="marginalize"
        n_features = 1 if x.ndim == 1 else x.shape[1]
        entry = self._entry(n_features)
        # Zero-weight rows add nothing to the fit: dropping them here keeps the
        # padded shape (and so the compiled program) of the unweighted fit.
        keep = w > 0
        if keep.sum() < self.n_components:
            raise ValueError(
                f"{owner}: sample_weight leaves {int(keep.sum())} rows with positive weight, "
                f"fewer than n_components={self.n_components}."
            )
        xp, wp = _pad_rows(x[keep], w[keep])
        if self.warm_start and hasattr(self, "converged_"):
            if self.n_features_in_ != n_features or self._fit_ndim_ != x.ndim:
                raise ValueError(
                    f"{owner}: warm_start=True continues the previous fit, which had "
                    f"{self.n_features_in_} features, but X has {n_features}; set "
                    "warm_start=False to start afresh."
                )
            start = _Start(self._current_params(), None, 1)
        else:
            key = _jax_key(self.random_state)
            # Starts drawn here see each missing entry filled with an observed value
            # of its column (as em.fit's own random starts do).
            x_draw = _validation.prepare_data(entry.model, xp, "marginalize")[0] if nan else xp
            start = self._explicit_start(entry, x, key, x_draw) or _Start(None, key, self.n_init)
        progress = int(self.verbose_interval) if self.verbose else 0

        def run(init, key, restarts):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = fit(
                    entry.model,
                    xp,
                    init=init,
                    key=key,
                    restarts=restarts,
                    max_iter=int(self.max_iter),
                    tol=float(self.tol),
                    sample_weight=wp,
                    missing="marginalize" if nan else None,
                    progress=progress,
                )
            return res, caught

        # The first start runs alone, exactly as it runs for n_init=1, and the
        # others together: XLA's rounding depends on the batch of restarts, so
        # only this makes "more restarts are never worse" hold to the last bit
        # (scikit-learn's sequential restarts have that property).
        first, rest = _split_first(start)
        res, caught = run(*first)
        if rest is not None:
            other, other_caught = run(*rest)
            if _better(other.objective, res.objective):
                res, caught = other, other_caught
        if not np.isfinite(res.objective):
            self._non_finite()
        for item in caught:
            if issubclass(item.category, ConvergenceWarning):
                continue  # said once, in scikit-learn's words, by _fit
            warnings.warn(f"{owner}: {item.message}", item.category, stacklevel=4)
        return res

    def _cast_attributes(self, dtype) -> None:
        """Fitted arrays in the data's dtype (float32 data, float32 attributes)."""

    def _non_finite(self) -> None:
        raise ValueError(
            f"{type(self).__name__}: the log-likelihood is not finite at any start; check that "
            "X lies in the family's support and try other starts (random_state, n_init)."
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "converged_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "converged_")

    if HAVE_SKLEARN:

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.input_tags.allow_nan = _same(self.missing, "marginalize")
            return tags

    def _checked_X(self, X) -> np.ndarray:
        self._check_fitted()
        return self._validate_X(X)

    def _features_mismatch(self, d: int) -> ValueError:
        return ValueError(
            f"X has {d} features, but {type(self).__name__} is expecting "
            f"{self.n_features_in_} features as input (the number it was fitted on); pass "
            "rows with the same columns."
        )

    # -- public methods
    def fit(self, X, y=None, sample_weight=None):
        """Fit the mixture by EM: ``n_init`` restarts in one compiled program; keep the best.

        Args:
            X: ``(N, D)`` data (``MixtureEstimator`` also takes ``(N,)``); NaN
                marks a missing value when ``missing="marginalize"`` (every
                column needs an observed value), else raises.
            y: ignored (present for scikit-learn's API).
            sample_weight: ``(N,)`` non-negative weights of the rows; integer
                weights give the fit of repeated rows.

        Returns:
            ``self``.
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """``fit(X)`` then ``predict(X)``: ``(N,)`` component labels."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def score_samples(self, X) -> np.ndarray:
        """``(N,)`` log-likelihood ``log p(x_i)`` of each row under the fitted mixture.

        With ``missing="marginalize"``, the density of each row's observed
        entries (0 for a row with nothing observed).
        """
        return _logsumexp(self._weighted_log_prob(self._checked_X(X)))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row of ``X`` (higher is better; what ``GridSearchCV`` uses)."""
        return float(np.mean(self.score_samples(X)))

    def predict_proba(self, X) -> np.ndarray:
        """``(N, K)`` posterior probabilities of the components (rows sum to 1).

        With ``missing="marginalize"``, given each row's observed entries (the
        weights for a row with nothing observed).
        """
        lj = self._weighted_log_prob(self._checked_X(X))
        return np.exp(lj - _logsumexp(lj)[:, None])

    def predict(self, X) -> np.ndarray:
        """``(N,)`` most probable component of each row."""
        return np.argmax(self._weighted_log_prob(self._checked_X(X)), axis=1)

    def _n_parameters(self) -> int:
        model = self._entry(self.n_features_in_).model
        return n_parameters(model, self._current_params())

    def bic(self, X) -> float:
        """Bayesian information criterion ``-2 log L + p log N`` on ``X`` (lower is better).

        ``p`` is ``em.n_parameters`` of the fitted model (scikit-learn's count
        for Gaussian mixtures). With ``missing="marginalize"``, ``log L`` is the
        observed-data log-likelihood and ``N`` the number of rows.
        """
        n = self._checked_X(X).shape[0]
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` on ``X`` (lower is better)."""
        n = self._checked_X(X).shape[0]
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def save(self, path) -> None:
        """Write this estimator to ``path`` (``.npz`` + JSON header; see :func:`jaxem.load`)."""
        _io.save(self, path)

    # -- saving: the constructor arguments and fitted attributes
    def _saved_params(self, array_params: tuple[str, ...]):
        header, arrays = {}, {}
        for name, value in self.get_params(deep=False).items():
            if name in array_params and value is not None:
                arrays[f"param.{name}"] = _io._float_array(value)
                header[name] = {"array": True}
            elif name == "random_state" and isinstance(value, np.random.RandomState):
                raise TypeError(
                    f"{type(self).__name__}.save: random_state is a RandomState, which cannot "
                    "be saved safely; set random_state to an int or None first."
                )
            elif value is None or isinstance(value, (bool, np.bool_, numbers.Real, str)):
                header[name] = value.item() if isinstance(value, np.generic) else value
        return header, arrays

    def _saved_state(self, attrs: tuple[str, ...]):
        if not hasattr(self, "converged_"):
            return None, {}
        state = {
            "converged_": self.converged_,
            "n_iter_": self.n_iter_,
            "lower_bound_": self.lower_bound_,
            "n_features_in_": self.n_features_in_,
            "_fit_ndim_": self._fit_ndim_,
        }
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(c) for c in self.feature_names_in_]
        arrays = {f"attr.{a}": getattr(self, a) for a in attrs + ("lower_bounds_",)}
        return state, arrays

    def _restore_state(self, state, values: dict | None, attrs: tuple[str, ...]) -> None:
        """Set the fitted state checked by ``em.load``: ``state`` (from ``_io._check_state``)
        and the declared ``attrs`` only, from ``values`` (name -> checked array)."""
        if state is None:
            return
        for name in ("converged_", "n_iter_", "lower_bound_", "n_features_in_", "_fit_ndim_"):
            setattr(self, name, state[name])
        self.lower_bound_ = float(self.lower_bound_)
        if "feature_names_in_" in state:
            self.feature_names_in_ = np.asarray(state["feature_names_in_"], dtype=object)
        for name in attrs:
            setattr(self, name, values[name])


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
                    f"header.params.{name} is {_io._json_type(value)}, expected null (it is "
                    "saved in its own header entry)."
                )
        elif name in array_params and isinstance(value, dict) and value == {"array": True}:
            value = _io._saved_array(arrays, f"param.{name}")
        elif not (value is None or isinstance(value, (bool, int, float, str))):
            raise ValueError(
                f"header.params.{name} is {_io._json_type(value)}, expected a number, a string, "
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


# -- GaussianMixture --------------------------------------------------------------------


class GaussianMixture(_MixtureEstimatorBase):
    """Gaussian mixture fitted by EM: a drop-in for ``sklearn.mixture.GaussianMixture``.

    Same constructor arguments and defaults, methods and fitted attributes as
    scikit-learn's, plus ``fit(X, y=None, sample_weight=None)`` and ``save``.
    The ``n_init`` restarts run together in one compiled program (``vmap``), so
    ``n_init=64`` costs little more than ``n_init=1``. Built on
    ``em.Mixture(em.MultivariateNormal(covariance_type, reg_covar=reg_covar), K)``.

    Args:
        n_components: K, the number of components.
        covariance_type: ``"full"`` (K, D, D), ``"tied"`` (D, D), ``"diag"``
            (K, D) or ``"spherical"`` (K,): the shape of ``covariances_``.
        tol: stop when the mean log-likelihood per sample improves by no more
            than ``tol`` (scikit-learn's meaning). jaxem tests the improvement
            of the parameters it returns, scikit-learn that of the parameters
            before its last M-step: for the same ``tol`` a fit stops one
            M-step earlier than scikit-learn's (``n_iter_`` one lower).
        reg_covar: added to the covariance diagonal after each M-step.
        max_iter: maximum EM iterations (M-steps) per restart.
        n_init: number of restarts (the first alone, the others in parallel); the
            best by likelihood is kept.
        init_params: how random starts are drawn, inside the compiled program:
            ``"kmeans"`` (k-means++ then Lloyd iterations, then one M-step from
            the clusters), ``"k-means++"`` (``em.MultivariateNormal.init``:
            k-means++ clusters with covariances shrunk to the data's),
            ``"random"`` (random responsibilities), ``"random_from_data"``
            (K distinct rows as means, covariance ``reg_covar``).
        weights_init: ``(K,)`` initial weights, or ``None``.
        means_init: ``(K, D)`` initial means, or ``None``.
        precisions_init: initial precisions (inverse covariances), shaped like
            ``covariances_``, or ``None``. Given ones replace the corresponding
            part of every random start (as scikit-learn does); with all three
            given there is a single start.
        random_state: ``None``, an int, or a ``numpy.random.RandomState``:
            seeds the starts (and ``sample``).
        warm_start: if True, each ``fit`` after the first starts from the
            previous solution, with one start.
        verbose: if > 0, print the objective to stderr every
            ``verbose_interval`` iterations from inside the compiled loop.
        verbose_interval: iterations between progress lines.
        missing: ``None`` (NaN in ``X`` raises ``ValueError``, scikit-learn's
            behaviour) or ``"marginalize"``: NaN entries are missing values,
            integrated out exactly. ``fit`` maximises the observed-data
            log-likelihood (EM with the conditional moments of the missing
            entries); ``predict``, ``predict_proba``, ``score``,
            ``score_samples``, ``bic`` and ``aic`` use each row's marginal
            density of its observed entries. A row with nothing observed
            scores 0 and gets the weights as probabilities; ``bic``/``aic``
            count every row in ``N``. Infinity still raises.

    Attributes:
        weights_: ``(K,)`` mixing proportions.
        means_: ``(K, D)`` component means.
        covariances_: by ``covariance_type`` (see above).
        precisions_: inverse covariances, same shape.
        precisions_cholesky_: upper-triangular ``U`` with ``U Uᵀ`` the precision
            (``1/√variance`` for diag/spherical).
        converged_: whether the best restart stopped by ``tol``.
        n_iter_: its EM iterations.
        lower_bound_: its mean log-likelihood per sample (per unit weight; of
            the observed entries with ``missing="marginalize"``).
        lower_bounds_: ``(n_iter_,)`` the same after each iteration.
        n_features_in_: D.

    Example:
        >>> gm = em.GaussianMixture(n_components=3, n_init=64, random_state=0).fit(X)
        >>> gm.predict(X), gm.predict_proba(X).shape, gm.bic(X)
        >>> Xs, labels = gm.sample(100)
        >>> gm = em.GaussianMixture(3, missing="marginalize").fit(X_with_nan)  # NaN: missing
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        missing: str | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.missing = missing

    def _check_hyperparameters(self) -> None:
        self._common_hyperparameters()
        if (
            not isinstance(self.covariance_type, str)
            or self.covariance_type not in COVARIANCE_TYPES
        ):
            raise _InvalidParameter(
                f"GaussianMixture: covariance_type must be one of {COVARIANCE_TYPES}, got "
                f"{self.covariance_type!r}."
            )
        _check_real(
            "GaussianMixture", "reg_covar", self.reg_covar, "Use e.g. reg_covar=1e-6 (the default)."
        )
        if not isinstance(self.init_params, str) or self.init_params not in INIT_PARAMS:
            raise _InvalidParameter(
                f"GaussianMixture: init_params must be one of {INIT_PARAMS}, got "
                f"{self.init_params!r}."
            )

    def _entry(self, n_features: int) -> _Entry:
        key = (
            "gaussian",
            self.covariance_type,
            float(self.reg_covar),
            int(self.n_components),
            self.init_params,
        )
        return _cached(
            key,
            lambda: _GaussianStarts(
                self.covariance_type,
                float(self.reg_covar),
                int(self.n_components),
                self.init_params,
            ),
        )

    def _validate_X(self, X) -> np.ndarray:
        x = self._checked_array(X, min_samples=1)
        if x.shape[1] != self.n_features_in_:
            raise self._features_mismatch(x.shape[1])
        return x

    # -- user-given starts
    def _given_starts(self, d: int):
        """Validated ``(weights, means, covariances)``, each ``None`` when not given.

        The checks and messages are scikit-learn's (``_check_weights``,
        ``_check_means``, ``_check_precisions``), so code written against it
        keeps working.
        """
        k, kind = int(self.n_components), self.covariance_type
        weights = means = cov = None
        if self.weights_init is not None:
            weights = _check_array_param("weights", self.weights_init, (k,))
            if np.any(weights < 0) or np.any(weights > 1):
                # scikit-learn prints the minimum as "max value" and the maximum
                # as "min value"; kept to the letter for code that matches it.
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max "
                    f"value {weights.min():.5f}, min value {weights.max():.5f}"
                )
            atol = 1e-6 if weights.dtype == np.float32 else 1e-8
            if not abs(1.0 - float(np.sum(weights))) <= atol:
                raise ValueError(
                    "The parameter 'weights' should be normalized, but got sum(weights) = "
                    f"{float(np.sum(weights)):.5f}"
                )
        if self.means_init is not None:
            means = _check_array_param("means", self.means_init, (k, d))
        if self.precisions_init is not None:
            shapes = {"full": (k, d, d), "tied": (d, d), "diag": (k, d), "spherical": (k,)}
            name = f"{kind} precision"
            prec = _check_array_param(name, self.precisions_init, shapes[kind])
            if kind in ("full", "tied"):
                for mat in prec.reshape((-1, d, d)):
                    symmetric = np.allclose(mat, mat.T, rtol=1e-5, atol=1e-8)
                    if not symmetric or np.any(np.linalg.eigvalsh(mat) <= 0):
                        raise ValueError(f"'{name}' should be symmetric, positive-definite")
            elif np.any(prec <= 0):
                raise ValueError(f"'{name}' should be positive")
            cov = _covariances_from_precisions(prec.astype(np.float64), kind)
        return (
            None if weights is None else weights.astype(np.float64),
            None if means is None else means.astype(np.float64),
            cov,
        )

    def _explicit_start(self, entry: _Entry, x, key, xp) -> _Start | None:
        weights, means, cov = self._given_starts(x.shape[1])
        if weights is None and means is None and cov is None:
            return None
        if weights is not None and means is not None and cov is not None:
            return _Start(MixtureParams(weights, MultivariateNormalParams(means, cov)), None, 1)
        # Partial starts: draw every restart from the scheme, then put the given parts in.
        r = int(self.n_init)
        dtype = _validation.float_dtype()
        drawn = entry.draw(_validation.restart_keys(key, r), jnp.asarray(xp, dtype))
        drawn = jax.tree.map(lambda a: np.asarray(a, np.float64), drawn)
        w = drawn.weights if weights is None else np.broadcast_to(weights, (r,) + weights.shape)
        m = drawn.components.mean if means is None else np.broadcast_to(means, (r,) + means.shape)
        c = drawn.components.cov if cov is None else np.broadcast_to(cov, (r,) + cov.shape)
        starts = MixtureParams(w, MultivariateNormalParams(m, c))
        if r == 1:  # one start is passed unstacked
            starts = jax.tree.map(lambda a: a[0], starts)
        return _Start(starts, None, r)

    # -- fitted state
    def _current_params(self) -> MixtureParams:
        return MixtureParams(
            self.weights_, MultivariateNormalParams(self.means_, self.covariances_)
        )

    def _set_params_from(self, params) -> None:
        weights = np.asarray(params.weights, np.float64)
        means = np.asarray(params.components.mean, np.float64)
        cov = np.asarray(params.components.cov, np.float64)
        if self.covariance_type in ("full", "tied"):
            cov = 0.5 * (cov + np.swapaxes(cov, -1, -2))
        prec_chol = _precisions_cholesky(cov, self.covariance_type)
        self.weights_ = weights / weights.sum()
        self.means_ = means
        self.covariances_ = cov
        self.precisions_cholesky_ = prec_chol
        if self.covariance_type in ("full", "tied"):
            self.precisions_ = prec_chol @ np.swapaxes(prec_chol, -1, -2)
        else:
            self.precisions_ = prec_chol**2

    def _non_finite(self) -> None:
        raise ValueError(f"GaussianMixture: {_ILL_DEFINED}")

    def _rescaled_weights(self, w: np.ndarray) -> np.ndarray:
        # Maximum likelihood depends on the weights' ratios only: weights too
        # small (or large) for float32 are rescaled instead of rejected.
        try:
            _validation.check_weight_scale(w)
        except ValueError:
            return w / w.max()
        return w

    def _cast_attributes(self, dtype) -> None:
        for name in self._ATTRS:
            setattr(self, name, getattr(self, name).astype(dtype))

    def _weighted_log_prob(self, x) -> np.ndarray:
        x = x.astype(np.float64, copy=False)  # float64 scoring, for float32 fits too
        lp = _gaussian_log_prob_missing(
            x, self.means_, self.covariances_, self.precisions_cholesky_, self.covariance_type
        )
        with np.errstate(divide="ignore"):
            return lp + np.log(self.weights_)

    def sample(self, n_samples: int = 1):
        """Draw ``n_samples`` rows from the fitted mixture (scikit-learn's procedure).

        Returns:
            ``(X (n_samples, D), y (n_samples,))``, grouped by component as
            scikit-learn returns them; seeded by ``random_state``.
        """
        self._check_fitted()
        n_samples = _check_n_samples(n_samples)
        rng = _numpy_rng(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_)
        kind = self.covariance_type
        parts = []
        for j, (mean, count) in enumerate(zip(self.means_, counts, strict=True)):
            if kind == "full":
                parts.append(rng.multivariate_normal(mean, self.covariances_[j], int(count)))
            elif kind == "tied":
                parts.append(rng.multivariate_normal(mean, self.covariances_, int(count)))
            else:
                z = rng.standard_normal(size=(int(count), mean.shape[0]))
                parts.append(mean + z * np.sqrt(self.covariances_[j]))
        labels = np.concatenate([np.full(int(c), j, dtype=np.int64) for j, c in enumerate(counts)])
        return np.vstack(parts), labels

    # -- saving
    _ARRAY_PARAMS = ("weights_init", "means_init", "precisions_init")
    _ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")

    def _to_saved(self):
        params, arrays = self._saved_params(self._ARRAY_PARAMS)
        state, attr_arrays = self._saved_state(self._ATTRS)
        return {"params": params, "state": state}, {**arrays, **attr_arrays}

    @classmethod
    def _from_saved(cls, header, arrays):
        """Rebuild from a file's header and arrays, checking everything before setting it."""
        params = _params_from_header(cls, header, arrays, cls._ARRAY_PARAMS)
        est = cls(**params)
        est._check_hyperparameters()
        state = _io._check_state(header["state"], ndims=(2,))
        attrs = cls._ATTRS + ("lower_bounds_",)
        expected = {
            f"param.{n}" for n in cls._ARRAY_PARAMS if isinstance(params.get(n), np.ndarray)
        }
        if state is not None:
            expected |= {f"attr.{a}" for a in attrs}
        _io._check_array_keys(arrays, expected, cls.__name__, attrs)
        _io._check_gaussian_starts(est, None if state is None else state["n_features_in_"])
        values = None
        if state is not None:
            values = {a: _io._saved_array(arrays, f"attr.{a}") for a in attrs}
            _io._check_gaussian_fitted(est.covariance_type, int(est.n_components), state, values)
        est._restore_state(state, values, attrs)
        return est


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


# -- MixtureEstimator -------------------------------------------------------------------


def _family_key(family):
    """Settings key of a family: its description for built-ins, else the object itself."""
    try:
        return ("described", json.dumps(_io.describe_family(family), sort_keys=True))
    except TypeError:
        return ("object", id(family))  # the cached model keeps the object alive


def _prior_key(prior):
    if prior is None:
        return None
    if type(prior) is _priors.Dirichlet:
        return ("Dirichlet", prior.concentration.shape, tuple(prior.concentration.ravel()))
    return ("object", id(prior))


class MixtureEstimator(_MixtureEstimatorBase):
    """A mixture of any ``em.Family`` with the scikit-learn estimator interface.

    Same methods as :class:`GaussianMixture` (``fit``, ``fit_predict``,
    ``predict``, ``predict_proba``, ``score``, ``score_samples``, ``sample``,
    ``bic``, ``aic``, ``save``), for Poisson counts, Bernoulli features, or a
    custom density. Random starts come from the family's ``init``; the
    ``n_init`` restarts run together in one compiled program.

    Args:
        family: an ``em.Family`` instance, e.g. ``em.Poisson()``.
        n_components: K.
        weights_prior: prior on the mixing weights (``priors.Dirichlet`` or a
            function), or ``None`` for maximum likelihood.
        n_init: restarts (the first alone, the others in parallel); the best is kept.
        max_iter: maximum EM iterations per restart.
        tol: stop when the objective improves by no more than ``tol`` per sample.
        random_state: ``None``, an int or a ``numpy.random.RandomState``.
        warm_start: if True, each ``fit`` after the first starts from the
            previous solution.
        verbose: if > 0, print progress to stderr every ``verbose_interval`` iterations.
        verbose_interval: iterations between progress lines.
        init: an optional start, ``em.MixtureParams(weights (K,), components)``
            with the family's parameters (leading ``(K,)`` axis); used instead
            of random starts.
        missing: ``None`` (NaN in ``X`` raises) or ``"marginalize"``: NaN
            entries are missing values, integrated out (the family's
            ``log_prob`` of the observed entries only; features of ``(N, D)``
            data must be independent, or the family must define
            ``log_prob_components_missing``). A row with nothing observed
            scores 0 and gets the weights as probabilities.

    Attributes:
        weights_: ``(K,)`` mixing proportions.
        params_: the family's parameters (its NamedTuple, or dict, of NumPy
            arrays with a leading ``(K,)`` axis), e.g. ``PoissonParams(rate=(K,))``.
        converged_, n_iter_: as for ``GaussianMixture``.
        lower_bound_: the objective EM maximised, per sample: the mean
            log-likelihood (plus the log prior / N under priors), of the
            observed entries with ``missing="marginalize"``.
        n_features_in_: D (1 for ``(N,)`` data).

    ``X`` may be ``(N,)`` (one feature) or ``(N, D)``; later calls must use the
    same layout (``(N, 1)`` is accepted for ``(N,)`` fits).

    Example:
        >>> est = em.MixtureEstimator(em.Poisson(), n_components=4, n_init=16, random_state=0)
        >>> est.fit(counts).params_.rate          # (4,) for (N,) counts
        >>> est.predict(counts), est.bic(counts)
    """

    _allow_1d = True

    def __init__(
        self,
        family: Family,
        n_components: int,
        *,
        weights_prior=None,
        n_init: int = 1,
        max_iter: int = 100,
        tol: float = 1e-3,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        init=None,
        missing: str | None = None,
    ):
        self.family = family
        self.n_components = n_components
        self.weights_prior = weights_prior
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.init = init
        self.missing = missing

    def _check_hyperparameters(self) -> None:
        self._common_hyperparameters()
        if isinstance(self.family, type) and issubclass(self.family, Family):
            raise _InvalidParameter(
                f"MixtureEstimator: family must be an instance, e.g. {self.family.__name__}(), "
                "not the class."
            )
        if not isinstance(self.family, Family):
            raise _InvalidParameter(
                f"MixtureEstimator: family must be an em.Family instance (em.Poisson(), a "
                f"custom family), got {self.family!r}."
            )
        wp = self.weights_prior
        if wp is not None and not callable(wp):
            raise _InvalidParameter(
                "MixtureEstimator: weights_prior must be priors.Dirichlet, a function "
                f"weights -> log density, or None; got {type(wp).__name__}."
            )
        if self.init is not None and not (isinstance(self.init, tuple) and len(self.init) == 2):
            raise _InvalidParameter(
                "MixtureEstimator: init must be em.MixtureParams(weights=(K,), components=...) "
                f"or None, got {type(self.init).__name__}."
            )

    def _entry(self, n_features: int) -> _Entry:
        key = (
            "family",
            _family_key(self.family),
            int(self.n_components),
            _prior_key(self.weights_prior),
        )
        return _cached(
            key,
            lambda: Mixture(self.family, int(self.n_components), weights_prior=self.weights_prior),
        )

    def _validate_X(self, X) -> np.ndarray:
        x = self._checked_array(X, min_samples=1)
        if self._fit_ndim_ == 1:
            if x.ndim == 2 and x.shape[1] == 1:
                return x[:, 0]
            if x.ndim == 2:
                raise self._features_mismatch(x.shape[1])
            return x
        if x.ndim == 1:
            raise ValueError(
                f"MixtureEstimator: Expected 2D array, got 1D array instead (shape {x.shape}); "
                "the estimator was fitted on (N, D) data. Reshape your data with "
                "X.reshape(1, -1) for a single sample."
            )
        if x.shape[1] != self.n_features_in_:
            raise self._features_mismatch(x.shape[1])
        return x

    def _explicit_start(self, entry: _Entry, x, key, xp) -> _Start | None:
        if self.init is None:
            return None
        return _Start(MixtureParams(*self.init), None, 1)

    def _current_params(self) -> MixtureParams:
        return MixtureParams(self.weights_, self.params_)

    def _set_params_from(self, params) -> None:
        weights = np.asarray(params.weights, np.float64)
        self.weights_ = weights / weights.sum()
        self.params_ = jax.tree.map(lambda a: np.asarray(a, np.float64), params.components)

    def _cast_attributes(self, dtype) -> None:
        self.weights_ = self.weights_.astype(dtype)
        self.params_ = jax.tree.map(lambda a: a.astype(dtype), self.params_)

    def _x64(self):
        """The dtype context of the fit: float64 attributes are evaluated in float64."""
        return jax.enable_x64(np.asarray(self.weights_).dtype == np.float64)

    def _device_params(self) -> MixtureParams:
        dtype = _validation.float_dtype()
        return jax.tree.map(lambda a: jnp.asarray(a, dtype), self._current_params())

    def _weighted_log_prob(self, x) -> np.ndarray:
        with self._x64():
            return self._weighted_log_prob_here(x)

    def _weighted_log_prob_here(self, x) -> np.ndarray:
        entry = self._entry(self.n_features_in_)
        params = self._device_params()
        nan = np.isnan(x)
        observed = None
        x = x.astype(np.dtype(_validation.float_dtype()))
        if nan.any():  # only with missing="marginalize" (validated before)
            entry.model._check_missing(x)
            observed = jnp.asarray(~nan)
            # The filled entries are masked out; they only have to lie in the
            # support. A column with nothing observed in X takes its value from
            # a row drawn from the fitted mixture.
            x = _validation.fill_missing(
                x, nan, fallback=lambda: entry.sample(jax.random.key(0), params, 1)[0]
            )
        entry.model._check_support(x)
        return np.asarray(entry.log_joint(params, jnp.asarray(x), observed), np.float64)

    def sample(self, n_samples: int = 1):
        """Draw ``n_samples`` rows: ``(X, y)`` with ``X`` of the fitted data's layout.

        Seeded by ``random_state`` (an int gives the same draws every call).
        """
        self._check_fitted()
        n_samples = _check_n_samples(n_samples)
        entry = self._entry(self.n_features_in_)
        with self._x64():
            key = _jax_key(self.random_state)
            x, labels = entry.sample(key, self._device_params(), n_samples)
            return np.asarray(x, self.weights_.dtype), np.asarray(labels, np.int64)

    # -- saving
    def _to_saved(self):
        params, arrays = self._saved_params(())
        try:
            family = _io.describe_family(self.family)
            weights_prior = _io.describe_prior(self.weights_prior)
        except TypeError as err:
            raise TypeError(
                f"MixtureEstimator.save: {err} em.load rebuilds families and priors from "
                "their names, so that loading a file never runs code. Instead, keep the "
                "fitted arrays yourself (numpy.savez(path, weights=est.weights_, "
                "**est.params_._asdict())) and rebuild the estimator in code with "
                "init=em.MixtureParams(weights, params) and max_iter=0; or use pickle for "
                "files you trust."
            ) from None
        init_fields = None
        if self.init is not None:
            weights, comps = self.init
            init_fields, comp_arrays = _fields_of(comps)
            arrays["init.weights"] = np.asarray(weights, np.float64)
            arrays.update({f"init.components.{k}": v for k, v in comp_arrays.items()})
        state, attr_arrays = self._saved_state(("weights_",))
        fields = None
        if state is not None:
            fields, comp_arrays = _fields_of(self.params_)
            attr_arrays.update({f"params_.{k}": v for k, v in comp_arrays.items()})
        header = {
            "params": params,
            "family": family,
            "weights_prior": weights_prior,
            "init_fields": init_fields,
            "params_fields": fields,
            "state": state,
        }
        return header, {**arrays, **attr_arrays}

    @classmethod
    def _from_saved(cls, header, arrays):
        """Rebuild from a file's header and arrays, checking everything before setting it."""
        family = _io.build_family(header["family"])
        weights_prior = _io.build_prior(header["weights_prior"])
        params = _params_from_header(
            cls, header, arrays, rebuilt=("family", "weights_prior", "init")
        )
        params.update(family=family, weights_prior=weights_prior)
        kind = _params_type(family)
        fields = list(kind._fields)
        for entry in ("init_fields", "params_fields"):
            if header[entry] is not None and header[entry] != fields:
                raise ValueError(
                    f"header.{entry} is {header[entry]!r}; {type(family).__name__} has the "
                    f"parameters {fields}."
                )
        state = _io._check_state(header["state"], ndims=(1, 2))
        if (header["params_fields"] is None) != (state is None):
            raise ValueError(
                "header.params_fields must be given exactly when header.state is (a fitted "
                "estimator)."
            )
        attrs = ("weights_", "lower_bounds_")
        expected = set()
        if header["init_fields"] is not None:
            expected |= {"init.weights"} | {f"init.components.{f}" for f in fields}
        if state is not None:
            expected |= {f"attr.{a}" for a in attrs} | {f"params_.{f}" for f in fields}
        _io._check_array_keys(arrays, expected, cls.__name__, attrs + ("params_",))
        if header["init_fields"] is not None:
            comps = _rebuild(kind, fields, arrays, "init.components.")
            params["init"] = MixtureParams(_io._saved_array(arrays, "init.weights"), comps)
        est = cls(**params)
        est._check_hyperparameters()
        k = int(est.n_components)
        if est.init is not None:
            weights, comps = est.init
            _io._check_mixture_params(family, k, "init.weights", weights, "init.components.", comps)
        values = fitted = None
        if state is not None:
            values = {a: _io._saved_array(arrays, f"attr.{a}") for a in attrs}
            fitted = _rebuild(kind, fields, arrays, "params_.")
            layout = (state["_fit_ndim_"], state["n_features_in_"])
            _io._check_mixture_params(
                family, k, "attr.weights_", values["weights_"], "params_.", fitted, layout
            )
            _io._check_shape("attr.lower_bounds_", values["lower_bounds_"], (state["n_iter_"],))
        est._restore_state(state, values, attrs)
        if fitted is not None:
            est.params_ = fitted
        return est


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
    return [k for k, _ in items], {k: _io._float_array(v) for k, v in items}


def _params_type(family: Family):
    """The NamedTuple class of a built-in family's parameters."""
    from jaxem import families as _families

    name = type(family).__name__
    if name == "Bernoulli":
        name = "Binomial"
    return getattr(_families, f"{name}Params")


def _rebuild(kind, fields: list[str], arrays: dict, prefix: str):
    """``kind`` (the family's NamedTuple) from the arrays ``<prefix><field>``, each checked."""
    return kind(**{f: _io._saved_array(arrays, f"{prefix}{f}") for f in fields})
