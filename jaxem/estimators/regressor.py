"""``em.MixtureRegressor``: a mixture of regressions with scikit-learn's regressor interface."""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem.estep import responsibilities
from jaxem.estimators._cache import _cached, _pad_rows
from jaxem.estimators._checks import (
    _check_array,
    _check_int,
    _check_random_state,
    _check_real,
    _check_sample_weight,
    _InvalidParameter,
    _jax_key,
    _set_feature_names,
    _warn_not_converged,
)
from jaxem.estimators._compat import (
    NotFittedError,
    _BaseEstimator,
    _DataConversionWarning,
    _RegressorMixin,
)
from jaxem.families.glm import LogisticRegression, PoissonRegression
from jaxem.families.regression import LinearRegression
from jaxem.fit import ConvergenceWarning, fit
from jaxem.mixture import Mixture, MixtureParams
from jaxem.selection import n_parameters

__all__ = ["MixtureRegressor"]

_FAMILIES = {
    "linear": LinearRegression,
    "poisson": PoissonRegression,
    "logistic": LogisticRegression,
}


class MixtureRegressor(_RegressorMixin, _BaseEstimator):
    """A mixture of K regressions of ``y`` on ``X`` (clusterwise / latent-class regression).

    ``y_i`` comes from one of K regressions, component k with probability
    ``weights_[k]``. ``fit`` runs ``n_init`` random starts together in one
    compiled program (``em.fit`` with ``em.Mixture(em.LinearRegression(), K)``
    or the GLM families) and keeps the best.

    Args:
        family: ``"linear"`` (Normal errors), ``"poisson"`` (counts, log link)
            or ``"logistic"`` (0/1 responses, logit link).
        n_components: K.
        fit_intercept: whether each component has an intercept.
        n_init: random starts; the best is kept.
        max_iter: maximum EM iterations per start.
        tol: stop when the log-likelihood improves by no more than ``tol`` per
            sample (``em.fit``'s default: EM creeps near the optimum, and
            coefficients to a few digits need a tight tolerance).
        random_state: ``None``, an int or a ``numpy.random.RandomState``.

    Attributes:
        coef_: ``(K, P)`` coefficients of each component.
        intercept_: ``(K,)`` intercepts (0 without ``fit_intercept``).
        var_: ``(K,)`` noise variances (``"linear"`` only).
        weights_: ``(K,)`` mixing proportions.
        converged_, n_iter_: whether the best start met ``tol``, and its iterations.
        lower_bound_: its mean log-likelihood per sample.
        n_features_in_: P.

    The fit runs in ``X``'s dtype: float64 (and integer) data in float64,
    float32 in float32. ``score`` is the coefficient of determination R² of
    ``predict`` (scikit-learn's regressor score). The methods that need the
    response as well as ``X`` have names of their own (scikit-learn reserves
    ``predict_proba`` and ``score_samples(X)`` for classifiers and density
    estimators): ``posterior_proba(X, y)``, ``predict_component(X, y)`` and
    ``log_predictive_density(X, y)``.

    Example:
        >>> est = em.MixtureRegressor("linear", n_components=2, n_init=16, random_state=0)
        >>> est.fit(X, y).coef_, est.predict(X), est.posterior_proba(X, y)
    """

    def __init__(
        self,
        family: str = "linear",
        n_components: int = 2,
        *,
        fit_intercept: bool = True,
        n_init: int = 10,
        max_iter: int = 1000,
        tol: float = 1e-8,
        random_state=None,
    ):
        self.family = family
        self.n_components = n_components
        self.fit_intercept = fit_intercept
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # -- validation
    def _check_hyperparameters(self) -> None:
        owner = "MixtureRegressor"
        if not isinstance(self.family, str) or self.family not in _FAMILIES:
            raise _InvalidParameter(
                f"{owner}: family must be one of {', '.join(map(repr, _FAMILIES))}, got "
                f"{self.family!r}."
            )
        _check_int(owner, "n_components", self.n_components, 1)
        _check_int(owner, "n_init", self.n_init, 1)
        _check_int(owner, "max_iter", self.max_iter, 0)
        _check_real(owner, "tol", self.tol, "Use e.g. tol=1e-8 (per-sample improvement).")
        _check_random_state(owner, self.random_state)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise _InvalidParameter(
                f"{owner}: fit_intercept must be True or False, got {self.fit_intercept!r}."
            )

    def _model(self) -> Mixture:
        key = ("regressor", self.family, int(self.n_components), bool(self.fit_intercept))
        family = _FAMILIES[self.family]
        entry = _cached(
            key,
            lambda: Mixture(family(fit_intercept=bool(self.fit_intercept)), self.n_components),
        )
        return entry.model

    def _checked_X(self, X, *, min_samples: int = 1) -> np.ndarray:
        return _check_array(X, "MixtureRegressor", allow_1d=False, min_samples=min_samples)

    def _checked_y(self, y, n: int, dtype) -> np.ndarray:
        owner = "MixtureRegressor"
        if y is None:
            raise ValueError(
                f"{owner} requires y to be passed, but the target y is None; pass the "
                "responses, shape (n_samples,)."
            )
        arr = np.asarray(y)
        if arr.ndim == 2 and arr.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected; it is used as "
                "y.ravel() (shape (n_samples,)).",
                _DataConversionWarning,
                stacklevel=3,
            )
            arr = arr[:, 0]
        arr = _validation.numeric_array(arr, "y", owner).astype(dtype, copy=False)
        if arr.ndim != 1:
            raise ValueError(
                f"{owner}: y must have shape (n_samples,), got {arr.shape}; one response per row."
            )
        if arr.shape[0] != n:
            raise ValueError(
                f"{owner}: X and y have different numbers of rows ({n} and {arr.shape[0]}); "
                "pass one response per row of X."
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{owner}: Input y contains NaN or infinity; remove those rows.")
        return arr

    def _data(self, X, y):
        x = self._checked_X(X)
        self._check_features(x)
        yy = None if y is None else self._checked_y(y, x.shape[0], x.dtype)
        return x, yy

    def _check_features(self, x) -> None:
        self._check_fitted()
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but MixtureRegressor is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted on)."
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError(
                "This MixtureRegressor instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "coef_")

    # -- fitting
    def fit(self, X, y, sample_weight=None):
        """Fit the mixture of regressions by EM.

        Args:
            X: ``(N, P)`` covariates.
            y: ``(N,)`` responses (counts for ``"poisson"``, 0/1 for ``"logistic"``).
            sample_weight: ``(N,)`` non-negative weights; integer weights give
                the fit of repeated rows.

        Returns:
            ``self``.
        """
        owner = "MixtureRegressor"
        self._check_hyperparameters()
        x = _check_array(X, owner, allow_1d=False, min_samples=1, fitting=True)
        y = self._checked_y(y, x.shape[0], x.dtype)
        w = _check_sample_weight(owner, sample_weight, x.shape[0])
        keep = w > 0
        if keep.sum() < self.n_components:
            raise ValueError(
                f"{owner}: Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {int(keep.sum())} (with positive weight); "
                "lower n_components or pass more rows."
            )
        model = self._model()
        rows, wp = _pad_rows(np.column_stack([x[keep], y[keep]]), w[keep])
        data = {"x": rows[:, :-1], "y": rows[:, -1]}
        with jax.enable_x64(x.dtype == np.float64):
            _validation.prepare_data(model, data)  # the family's checks of y, before tracing
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                res = fit(
                    model,
                    data,
                    key=_jax_key(self.random_state),
                    restarts=int(self.n_init),
                    max_iter=int(self.max_iter),
                    tol=float(self.tol),
                    sample_weight=wp,
                )
        if not np.isfinite(res.objective):
            raise ValueError(
                f"{owner}: the log-likelihood is not finite at any start; check y against the "
                "family's support and try other starts (random_state, n_init)."
            )
        for item in caught:
            if not issubclass(item.category, ConvergenceWarning):
                warnings.warn(f"{owner}: {item.message}", item.category, stacklevel=2)
        comps = res.params.components
        dtype = x.dtype
        self.weights_ = np.asarray(res.params.weights, dtype)
        self.coef_ = np.asarray(comps.coef, dtype)
        self.intercept_ = np.asarray(comps.intercept, dtype)
        if self.family == "linear":
            self.var_ = np.asarray(comps.var, dtype)
        elif hasattr(self, "var_"):
            del self.var_
        total = float(w.sum())
        self.converged_ = bool(res.converged)
        self.n_iter_ = int(res.n_iter)
        self.lower_bound_ = float(res.objective) / total
        self.n_features_in_ = x.shape[1]
        _set_feature_names(self, X)
        _warn_not_converged(self, stacklevel=2)
        return self

    # -- evaluation
    def _params(self) -> MixtureParams:
        comps = [self.coef_, self.intercept_]
        if self.family == "linear":
            comps.append(self.var_)
        family = self._model().family
        dtype = _validation.float_dtype()
        comps = family.params_type(*(jnp.asarray(a, dtype) for a in comps))
        return MixtureParams(jnp.asarray(self.weights_, dtype), comps)

    def _x64(self):
        return jax.enable_x64(self.coef_.dtype == np.float64)

    def _means(self, x: np.ndarray) -> np.ndarray:
        """``(N, K)`` mean response of each component, in float64 NumPy."""
        eta = x.astype(np.float64) @ self.coef_.T.astype(np.float64)
        eta = eta + self.intercept_.astype(np.float64)
        if self.family == "poisson":
            return np.exp(eta)
        if self.family == "logistic":
            return 0.5 * (1 + np.tanh(0.5 * eta))  # the logistic function, without overflow
        return eta

    def predict(self, X) -> np.ndarray:
        """``(N,)`` predictive mean of ``y`` given ``X``: ``Σ_k weights_[k] μ_k(x)``.

        For ``"logistic"``, the probability that ``y = 1``.
        """
        x, _ = self._data(X, None)
        return (self._means(x) @ self.weights_.astype(np.float64)).astype(x.dtype)

    def posterior_proba(self, X, y) -> np.ndarray:
        """``(N, K)`` posterior probability of each component given ``(x, y)`` (rows sum to 1)."""
        x, y = self._data(X, y)
        with self._x64():
            post = responsibilities(self._model(), self._params(), {"x": x, "y": y})
        return np.asarray(post, x.dtype)

    def predict_component(self, X, y) -> np.ndarray:
        """``(N,)`` most probable component of each ``(x, y)``."""
        return np.argmax(self.posterior_proba(X, y), axis=1)

    def log_predictive_density(self, X, y) -> np.ndarray:
        """``(N,)`` log predictive density ``log p(y_i | x_i)`` under the fitted mixture."""
        x, y = self._data(X, y)
        model = self._model()
        with self._x64():
            data = _validation.prepare_data(model, {"x": x, "y": y}, fitting=False)
            ll = model.unit_log_likelihood(self._params(), data)
        return np.asarray(ll, np.float64)

    def score(self, X, y, sample_weight=None) -> float:
        """Coefficient of determination R² of :meth:`predict` (scikit-learn's regressor score)."""
        x, yy = self._data(X, y)
        w = _check_sample_weight("MixtureRegressor", sample_weight, x.shape[0])
        pred = self.predict(x).astype(np.float64)
        yy = yy.astype(np.float64)
        resid = np.sum(w * (yy - pred) ** 2)
        total = np.sum(w * (yy - np.average(yy, weights=w)) ** 2)
        if total == 0:
            return 1.0 if resid == 0 else 0.0
        return float(1 - resid / total)

    def standard_errors(self, X, y) -> dict:
        """Standard errors of ``weights_``, ``coef_``, ``intercept_`` (and ``var_``) on ``(X, y)``.

        From the observed information, in float64 (:func:`jaxem.standard_errors`):
        a dict keyed by the attribute names.
        """
        from jaxem.uncertainty import standard_errors

        x, yy = self._data(X, y)
        with jax.enable_x64(True):
            params = jax.tree.map(lambda a: np.asarray(a, np.float64), self._params())
            data = {"x": x.astype(np.float64), "y": yy.astype(np.float64)}
            se = standard_errors(self._model(), params, data)
        out = {"weights_": se.weights, "coef_": se.components.coef}
        out["intercept_"] = se.components.intercept
        if self.family == "linear":
            out["var_"] = se.components.var
        return out

    def _n_parameters(self) -> int:
        return n_parameters(self._model(), self._params())

    def bic(self, X, y) -> float:
        """Bayesian information criterion ``-2 log L + p log N`` on ``(X, y)`` (lower is better)."""
        ll = self.log_predictive_density(X, y)
        return float(-2 * ll.sum() + self._n_parameters() * math.log(len(ll)))

    def aic(self, X, y) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` on ``(X, y)`` (lower is better)."""
        return float(-2 * self.log_predictive_density(X, y).sum() + 2 * self._n_parameters())
