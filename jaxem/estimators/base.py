"""fit / predict / score / save plumbing shared by both estimators."""

from __future__ import annotations

import math
import numbers
import sys
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxem import _validation
from jaxem.estimators import _saving
from jaxem.estimators._cache import _Entry, _pad_rows
from jaxem.estimators._checks import (
    _check_array,
    _check_int,
    _check_missing,
    _check_random_state,
    _check_real,
    _check_sample_weight,
    _InvalidParameter,
    _jax_key,
    _set_feature_names,
    _warn_not_converged,
)
from jaxem.estimators._compat import (
    HAVE_SKLEARN,
    NotFittedError,
    _BaseEstimator,
    _DensityMixin,
    _same,
)
from jaxem.fit import ConvergenceWarning, fit
from jaxem.mixture import MixtureParams
from jaxem.selection import n_parameters


def _logsumexp(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (top + np.log(np.sum(np.exp(a - top), axis=1, keepdims=True)))[:, 0]


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
        _set_feature_names(self, X)
        _warn_not_converged(self, stacklevel=3)
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

    def standard_errors(self, X) -> MixtureParams:
        """Standard errors of the fitted parameters from the observed information on ``X``.

        Computed in float64 by :func:`jaxem.standard_errors` (see there for what
        they mean; NaN marks entries with no information). Returned as an
        ``em.MixtureParams`` with the family's fields (for ``GaussianMixture``:
        ``weights``, ``components.mean``, ``components.cov``).
        """
        from jaxem.uncertainty import standard_errors

        x = self._checked_X(X)
        model = self._entry(self.n_features_in_).model
        missing = "marginalize" if np.isnan(x).any() else None
        with jax.enable_x64(True):
            params = jax.tree.map(lambda a: np.asarray(a, np.float64), self._current_params())
            return standard_errors(model, params, x.astype(np.float64), missing=missing)

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
        _saving.write(self, path)

    # -- saving: the constructor arguments and fitted attributes
    def _saved_params(self, array_params: tuple[str, ...]):
        header, arrays = {}, {}
        for name, value in self.get_params(deep=False).items():
            if name in array_params and value is not None:
                arrays[f"param.{name}"] = _saving._float_array(value)
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
        """Set the fitted state checked by ``em.load``: ``state`` (from ``_saving._check_state``)
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
