"""``em.GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem.estimators import _saving
from jaxem.estimators._cache import _cached, _Entry
from jaxem.estimators._checks import (
    _check_array_param,
    _check_n_samples,
    _check_real,
    _InvalidParameter,
    _numpy_rng,
)
from jaxem.estimators._gaussian import (
    _ILL_DEFINED,
    INIT_PARAMS,
    _covariances_from_precisions,
    _gaussian_log_prob_missing,
    _GaussianStarts,
    _precisions_cholesky,
)
from jaxem.estimators.base import _MixtureEstimatorBase, _Start
from jaxem.families.mvn import COVARIANCE_TYPES, MultivariateNormalParams
from jaxem.mixture import MixtureParams


@_saving.savable
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
        params = _saving._params_from_header(cls, header, arrays, cls._ARRAY_PARAMS)
        est = cls(**params)
        est._check_hyperparameters()
        state = _saving._check_state(header["state"], ndims=(2,))
        attrs = cls._ATTRS + ("lower_bounds_",)
        expected = {
            f"param.{n}" for n in cls._ARRAY_PARAMS if isinstance(params.get(n), np.ndarray)
        }
        if state is not None:
            expected |= {f"attr.{a}" for a in attrs}
        _saving._check_array_keys(arrays, expected, cls.__name__, attrs)
        _saving._check_gaussian_starts(est, None if state is None else state["n_features_in_"])
        values = None
        if state is not None:
            values = {a: _saving._saved_array(arrays, f"attr.{a}") for a in attrs}
            _saving._check_gaussian_fitted(
                est.covariance_type, int(est.n_components), state, values
            )
        est._restore_state(state, values, attrs)
        return est
