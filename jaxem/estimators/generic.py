"""``em.MixtureEstimator``: a mixture of any ``em.Family`` with the scikit-learn interface."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem import codec as _codec
from jaxem import priors as _priors
from jaxem.estimators import _saving
from jaxem.estimators._cache import _cached, _Entry
from jaxem.estimators._checks import _check_n_samples, _InvalidParameter, _jax_key
from jaxem.estimators.base import _MixtureEstimatorBase, _Start
from jaxem.families.base import Family
from jaxem.mixture import Mixture, MixtureParams


def _family_key(family):
    """Settings key of a family: its description for built-ins, else the object itself."""
    try:
        return ("described", json.dumps(_codec.describe_family(family), sort_keys=True))
    except TypeError:
        return ("object", id(family))  # the cached model keeps the object alive


def _prior_key(prior):
    if prior is None:
        return None
    if type(prior) is _priors.Dirichlet:
        return ("Dirichlet", prior.concentration.shape, tuple(prior.concentration.ravel()))
    return ("object", id(prior))


@_saving.savable
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
            family = _codec.describe_family(self.family)
            weights_prior = _codec.describe_prior(self.weights_prior)
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
            init_fields, comp_arrays = _saving._fields_of(comps)
            arrays["init.weights"] = np.asarray(weights, np.float64)
            arrays.update({f"init.components.{k}": v for k, v in comp_arrays.items()})
        state, attr_arrays = self._saved_state(("weights_",))
        fields = None
        if state is not None:
            fields, comp_arrays = _saving._fields_of(self.params_)
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
        family = _codec.build_family(header["family"])
        weights_prior = _codec.build_prior(header["weights_prior"])
        params = _saving._params_from_header(
            cls, header, arrays, rebuilt=("family", "weights_prior", "init")
        )
        params.update(family=family, weights_prior=weights_prior)
        kind = type(family).params_type
        fields = list(kind._fields)
        for entry in ("init_fields", "params_fields"):
            if header[entry] is not None and header[entry] != fields:
                raise ValueError(
                    f"header.{entry} is {header[entry]!r}; {type(family).__name__} has the "
                    f"parameters {fields}."
                )
        state = _saving._check_state(header["state"], ndims=(1, 2))
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
        _saving._check_array_keys(arrays, expected, cls.__name__, attrs + ("params_",))
        if header["init_fields"] is not None:
            comps = _saving._rebuild(kind, fields, arrays, "init.components.")
            params["init"] = MixtureParams(_saving._saved_array(arrays, "init.weights"), comps)
        est = cls(**params)
        est._check_hyperparameters()
        k = int(est.n_components)
        if est.init is not None:
            weights, comps = est.init
            _saving._check_mixture_params(
                family, k, "init.weights", weights, "init.components.", comps
            )
        values = fitted = None
        if state is not None:
            values = {a: _saving._saved_array(arrays, f"attr.{a}") for a in attrs}
            fitted = _saving._rebuild(kind, fields, arrays, "params_.")
            layout = (state["_fit_ndim_"], state["n_features_in_"])
            _saving._check_mixture_params(
                family, k, "attr.weights_", values["weights_"], "params_.", fitted, layout
            )
            _saving._check_shape("attr.lower_bounds_", values["lower_bounds_"], (state["n_iter_"],))
        est._restore_state(state, values, attrs)
        if fitted is not None:
            est.params_ = fitted
        return est
