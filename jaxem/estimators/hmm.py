"""hmmlearn-style estimators: ``em.GaussianHMM`` and ``em.HMMEstimator``.

Thin layers over ``em.HMM`` + ``em.fit`` with hmmlearn's arguments, methods and
fitted attributes (``startprob_``, ``transmat_``, ``means_``, ``covars_``,
``monitor_``), and ``n_init`` restarts run together under ``vmap``, which
hmmlearn lacks. As with the mixture estimators, float64 ``X`` is fitted in
float64 (x64 on for the call only) and float32 ``X`` in float32.

Differences from hmmlearn, on purpose:

* ``tol`` is hmmlearn's: the gain of the total log-likelihood per iteration.
  EM stops when the gain falls below it; hmmlearn runs one more M-step after
  the gain it measured (its parameters are one step further), so compare
  fixed iteration counts with ``tol=0``.
* Starts: ``init_params`` letters initialise as hmmlearn does (uniform
  ``startprob_``/``transmat_``, covariances from the data's covariance plus
  ``min_covar``), except the means: k-means++ seeding of each restart (jaxem's
  ``MultivariateNormal`` start) instead of scikit-learn's ``KMeans``.
* ``startprob_prior`` and ``transmat_prior`` must be >= 1 (a Dirichlet with a
  mode); hmmlearn clips the update at 0 below 1, which is no MAP estimate.
* ``implementation`` maps to ``em.HMM``'s ``estep``: ``"log"`` (hmmlearn's
  default) is the log-space forward–backward, exact for any transition
  matrix; ``"scaling"`` the faster probability-space recursion, which (as
  hmmlearn's) can lose a state that cannot be re-entered (zero transitions).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation
from jaxem import priors as _priors
from jaxem.estimators._cache import _cached
from jaxem.estimators._checks import (
    _check_int,
    _check_random_state,
    _check_real,
    _InvalidParameter,
    _jax_key,
    _numpy_rng,
)
from jaxem.estimators._compat import NotFittedError, _BaseEstimator
from jaxem.estimators._hmm_gaussian import (
    HMMLearnGaussian,
    distribute_covariance,
    full_covariances,
)
from jaxem.families.base import Family
from jaxem.families.mvn import COVARIANCE_TYPES, MultivariateNormalParams
from jaxem.fit import fit
from jaxem.hmm import HMM, HMMParams, sequences

__all__ = ["GaussianHMM", "HMMEstimator", "ConvergenceMonitor"]


class ConvergenceMonitor(NamedTuple):
    """hmmlearn's ``monitor_``: the last two log-likelihoods, iterations, convergence.

    ``converged`` follows hmmlearn: True when the last gain was below ``tol``
    *or* ``n_iter`` iterations ran (see the estimator's ``converged_`` for
    the former alone).
    """

    tol: float
    n_iter: int
    iter: int
    history: tuple
    converged: bool


def _lengths(X, lengths, owner: str):
    x = _validation.numeric_array(X, "X", owner)
    if x.ndim != 2:
        raise ValueError(
            f"{owner}: X must be 2-D (n_samples, n_features), got shape {x.shape}; reshape a "
            "single feature with X.reshape(-1, 1)."
        )
    x = x.astype(np.float32 if x.dtype == np.float32 else np.float64, copy=False)
    if lengths is None:
        lengths = [x.shape[0]]
    return x, np.asarray(lengths)


class HMMEstimator(_BaseEstimator):
    """A hidden Markov model with any emission family, hmmlearn-style.

    Args:
        family: an ``em.Family`` instance (``em.Poisson()``, ``em.Categorical(6)``…).
        n_components: number of hidden states.
        startprob_prior, transmat_prior: Dirichlet concentrations (>= 1;
            1 is maximum likelihood), scalars or arrays.
        n_iter: maximum EM iterations. ``tol``: stop when the total
            log-likelihood gains less than this per iteration.
        params, init_params: letters of the parameters to update / to
            initialise: ``s`` start probabilities, ``t`` transitions, ``e``
            emissions (``GaussianHMM``: ``m`` means, ``c`` covariances).
        n_init: random restarts, run together (the best is kept).
        random_state: int, ``numpy.random.RandomState`` or None.

    Example:
        >>> est = em.HMMEstimator(em.Poisson(), 3, n_init=8).fit(counts[:, None], lengths)
        >>> est.transmat_, est.predict(counts[:, None], lengths)
    """

    _letters = "ste"

    def __init__(
        self,
        family: Family | None = None,
        n_components: int = 1,
        startprob_prior=1.0,
        transmat_prior=1.0,
        algorithm: str = "viterbi",
        random_state=None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "ste",
        init_params: str = "ste",
        n_init: int = 1,
    ):
        self.family = family
        self.n_components = n_components
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        self.algorithm = algorithm
        self.random_state = random_state
        self.n_iter = n_iter
        self.tol = tol
        self.verbose = verbose
        self.params = params
        self.init_params = init_params
        self.n_init = n_init

    # -- hooks --------------------------------------------------------------------
    def _emission(self, n_features: int) -> Family:
        if not isinstance(self.family, Family):
            raise TypeError(
                f"HMMEstimator: family must be an em.Family instance, got {self.family!r}."
            )
        return self.family

    def _emission_fixed(self):
        return "e" not in self.params

    def _emission_start(self, hmm: HMM, x: np.ndarray, keys):
        """Emission parameters of each restart, stacked ``(R, K, ...)``."""
        flat = jnp.asarray(x)
        return jax.vmap(hmm.emission.init, in_axes=(0, None, None))(keys, flat, self.n_components)

    def _current_emissions(self):
        return self.emissions_

    def _set_emissions(self, emissions, dtype) -> None:
        self.emissions_ = jax.tree.map(lambda a: np.asarray(a, dtype), emissions)

    # -- checks ----------------------------------------------------------------------
    def _check(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "n_components", self.n_components, 1)
        _check_int(owner, "n_iter", self.n_iter, 0)
        _check_int(owner, "n_init", self.n_init, 1)
        _check_real(owner, "tol", self.tol, "Use e.g. tol=1e-2 (log-likelihood gain).")
        _check_random_state(owner, self.random_state)
        if self.algorithm not in ("viterbi", "map"):
            raise _InvalidParameter(
                f"{owner}: algorithm must be 'viterbi' or 'map', got {self.algorithm!r}."
            )
        for name in ("params", "init_params"):
            value = getattr(self, name)
            if not isinstance(value, str) or set(value) - set(self._letters):
                raise _InvalidParameter(
                    f"{owner}: {name} must be a string of the letters {self._letters!r}, "
                    f"got {value!r}."
                )
        for name in ("startprob_prior", "transmat_prior"):
            value = np.asarray(getattr(self, name), np.float64)
            if not np.all(np.isfinite(value)) or np.any(value < 1):
                raise _InvalidParameter(
                    f"{owner}: {name} must be >= 1 (a Dirichlet concentration with a mode; 1 "
                    f"is maximum likelihood), got {getattr(self, name)!r}."
                )

    def _model(self, n_features: int) -> HMM:
        k = self.n_components

        def dirichlet(name, value):
            value = np.asarray(value, np.float64)
            if np.all(value == 1):
                return None  # flat: maximum likelihood
            if value.ndim == 2:  # one concentration vector per row
                if not np.all(value == value[:1]):
                    raise _InvalidParameter(
                        f"{type(self).__name__}: {name} with different rows is not supported; "
                        "pass a scalar or one (n_components,) vector for every row."
                    )
                value = value[0]
            return _priors.Dirichlet(value if value.ndim else float(value))

        emission = self._emission(n_features)
        initial = dirichlet("startprob_prior", self.startprob_prior)
        transition = dirichlet("transmat_prior", self.transmat_prior)
        # One model per settings, kept with its compiled programs: a refit (or
        # another estimator with the same settings) does not recompile.
        key = ("hmm", repr(emission), k, repr(initial), repr(transition))
        estep = "scaled" if getattr(self, "implementation", "log") == "scaling" else "log"
        key = key + (estep,)
        return _cached(
            key,
            lambda: HMM(
                emission, k, initial_prior=initial, transition_prior=transition, estep=estep
            ),
        ).model

    def _starts(self, hmm: HMM, x: np.ndarray, dtype):
        """``n_init`` starts, stacked, from ``init_params`` and the current attributes."""
        r, k = self.n_init, self.n_components
        letters = self.init_params
        if "s" in letters or not hasattr(self, "startprob_"):
            initial = np.full(k, 1.0 / k)
        else:
            initial = np.asarray(self.startprob_, np.float64)
        if "t" in letters or not hasattr(self, "transmat_"):
            transition = np.full((k, k), 1.0 / k)
        else:
            transition = np.asarray(self.transmat_, np.float64)
        keys = _validation.restart_keys(_jax_key(self.random_state), r)
        emissions = self._emission_starts(hmm, x, keys)
        tile = lambda a: jnp.asarray(np.broadcast_to(a, (r,) + np.shape(a)), dtype)  # noqa: E731
        return HMMParams(tile(initial), tile(transition), emissions)

    def _emission_starts(self, hmm, x, keys):
        if "e" in self.init_params or not hasattr(self, "emissions_"):
            return self._emission_start(hmm, x, keys)
        return jax.tree.map(
            lambda a: jnp.asarray(np.broadcast_to(a, (len(keys),) + np.shape(a))),
            self._current_emissions(),
        )

    def _fixed(self):
        fixed = set()
        if "s" not in self.params:
            fixed.add("initial")
        if "t" not in self.params:
            fixed.add("transition")
        emissions = self._emission_fixed()
        if emissions is True:
            fixed.add("emissions")
        elif emissions:
            fixed |= set(emissions)
        return fixed or None

    # -- fitting ---------------------------------------------------------------------
    def fit(self, X, lengths=None):
        """Fit by Baum–Welch: ``n_init`` restarts together, the best kept.

        Args:
            X: ``(n_samples, n_features)`` observations, the concatenation of
                the sequences.
            lengths: ``(n_sequences,)`` lengths summing to ``n_samples``
                (default: one sequence).

        Returns:
            self
        """
        owner = type(self).__name__
        self._check()
        x, lengths = _lengths(X, lengths, owner)
        if x.shape[0] < self.n_components:
            raise ValueError(
                f"{owner}: n_samples={x.shape[0]} should be >= n_components={self.n_components}."
            )
        with jax.enable_x64(x.dtype == np.float64):
            dtype = _validation.float_dtype()
            hmm = self._model(x.shape[1])
            data = sequences(x, lengths)
            starts = self._starts(hmm, x, dtype)
            res = fit(
                hmm,
                data,
                init=starts if self.n_init > 1 else jax.tree.map(lambda a: a[0], starts),
                restarts=self.n_init,
                max_iter=int(self.n_iter),
                tol=float(self.tol) / len(lengths),  # per sequence: em.fit's unit
                fixed=self._fixed(),
                progress=1 if self.verbose else 0,
            )
        self._hmm = hmm
        p = res.params
        self.startprob_ = np.asarray(p.initial, x.dtype)
        self.transmat_ = np.asarray(p.transition, x.dtype)
        self._set_emissions(p.emissions, x.dtype)
        self.n_features = x.shape[1]
        self.converged_ = bool(res.converged)
        self.n_iter_ = int(res.n_iter)
        history = tuple(float(v) for v in res.history[-2:])
        self.monitor_ = ConvergenceMonitor(
            float(self.tol),
            int(self.n_iter),
            int(res.n_iter),
            history,
            bool(res.converged) or int(res.n_iter) == int(self.n_iter),
        )
        return self

    # -- evaluation -----------------------------------------------------------------
    def _params(self) -> HMMParams:
        if not hasattr(self, "converged_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )
        return HMMParams(self.startprob_, self.transmat_, self._current_emissions())

    def _data(self, X, lengths):
        params = self._params()
        x, lengths = _lengths(X, lengths, type(self).__name__)
        if x.shape[1] != self.n_features:
            raise ValueError(
                f"X has {x.shape[1]} features, but {type(self).__name__} was fitted on "
                f"{self.n_features}."
            )
        return params, x, lengths

    def _run(self, fn, X, lengths):
        params, x, lengths = self._data(X, lengths)
        with jax.enable_x64(x.dtype == np.float64):
            hmm = getattr(self, "_hmm", None) or self._model(x.shape[1])
            return fn(hmm, params, x, lengths)

    def score(self, X, lengths=None) -> float:
        """Total log-likelihood of ``X`` (summed over sequences), as hmmlearn's."""
        from jaxem.estep import log_likelihood

        return float(self._run(lambda m, p, x, n: log_likelihood(m, p, x, lengths=n), X, lengths))

    def predict_proba(self, X, lengths=None) -> np.ndarray:
        """Smoothed state posteriors of every step, ``(n_samples, n_components)``."""
        from jaxem.estep import responsibilities

        out = self._run(lambda m, p, x, n: responsibilities(m, p, x, lengths=n), X, lengths)
        return np.asarray(out)

    def score_samples(self, X, lengths=None):
        """``(log-likelihood, posteriors (n_samples, n_components))``."""
        return self.score(X, lengths), self.predict_proba(X, lengths)

    def decode(self, X, lengths=None, algorithm=None):
        """``(log probability, states)``: the Viterbi path and ``log p(x, path)`` summed over
        sequences, or with ``algorithm="map"`` the posterior mode of each step."""
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm == "map":
            post = self.predict_proba(X, lengths)
            return float(np.max(post, axis=1).sum()), np.argmax(post, axis=1)
        if algorithm != "viterbi":
            raise ValueError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}.")

        def viterbi(m, p, x, n):
            data = m._prepare_units(m._as_units(x, n), None, False)
            params = m._check_params(p, data)
            paths = m.decode(params, data)
            return float(jnp.sum(m.viterbi_log_joint(params, data))), m._per_step(paths, data)

        score, path = self._run(viterbi, X, lengths)
        return score, np.asarray(path)

    def predict(self, X, lengths=None) -> np.ndarray:
        """Most likely states of every step (the estimator's ``algorithm``)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state=None, currstate=None):
        """``(X (n_samples, n_features), states (n_samples,))`` from the fitted model.

        ``currstate``: the first step's state (default: drawn from ``startprob_``).
        """
        params = self._params()
        if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        rs = self.random_state if random_state is None else random_state
        key = jax.random.key(int(_numpy_rng(rs).randint(np.iinfo(np.int32).max)))
        if currstate is not None:
            params = params._replace(initial=np.eye(self.n_components)[int(currstate)])
        dtype = np.asarray(self.startprob_).dtype
        with jax.enable_x64(dtype == np.float64):
            hmm = getattr(self, "_hmm", None) or self._model(self.n_features)
            x, z = hmm.sample(key, jax.tree.map(jnp.asarray, params), int(n_samples))
        x = np.asarray(x)
        return (x if x.ndim == 2 else x.reshape(len(x), -1)), np.asarray(z)

    def _n_parameters(self) -> int:
        from jaxem.selection import n_parameters

        return n_parameters(self._model(self.n_features), self._params())

    def bic(self, X, lengths=None) -> float:
        """``-2 log L + p log N`` with N the number of observations (steps)."""
        x, _ = _lengths(X, lengths, type(self).__name__)
        return -2 * self.score(X, lengths) + self._n_parameters() * np.log(x.shape[0])

    def aic(self, X, lengths=None) -> float:
        """``-2 log L + 2 p``."""
        return -2 * self.score(X, lengths) + 2 * self._n_parameters()


class GaussianHMM(HMMEstimator):
    """Drop-in for ``hmmlearn.hmm.GaussianHMM``: Gaussian emissions, hmmlearn's priors.

    Arguments as hmmlearn's (``covariance_type`` in full / diag / spherical /
    tied, ``min_covar``, ``means_prior``, ``means_weight``, ``covars_prior``,
    ``covars_weight``, ``params``/``init_params`` letters ``s t m c``), plus
    ``n_init`` restarts run together. ``covars_`` is ``(K, D, D)`` whatever
    the covariance type, as hmmlearn's property.

    Example:
        >>> est = em.GaussianHMM(3, "diag", n_iter=100, n_init=8).fit(X, lengths)
        >>> est.means_, est.transmat_, est.predict(X, lengths)
    """

    _letters = "stmc"

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "diag",
        min_covar: float = 1e-3,
        startprob_prior=1.0,
        transmat_prior=1.0,
        means_prior=0,
        means_weight=0,
        covars_prior=1e-2,
        covars_weight=1,
        algorithm: str = "viterbi",
        random_state=None,
        n_iter: int = 10,
        tol: float = 1e-2,
        verbose: bool = False,
        params: str = "stmc",
        init_params: str = "stmc",
        implementation: str = "log",
        n_init: int = 1,
    ):
        super().__init__(
            None,
            n_components,
            startprob_prior,
            transmat_prior,
            algorithm,
            random_state,
            n_iter,
            tol,
            verbose,
            params,
            init_params,
            n_init,
        )
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight
        self.implementation = implementation

    def _check(self) -> None:
        super()._check()
        owner = type(self).__name__
        if self.implementation not in ("log", "scaling"):
            raise _InvalidParameter(
                f"{owner}: implementation must be 'log' or 'scaling', got {self.implementation!r}."
            )
        if self.covariance_type not in COVARIANCE_TYPES:
            raise _InvalidParameter(
                f"{owner}: covariance_type must be one of {COVARIANCE_TYPES}, got "
                f"{self.covariance_type!r}."
            )
        for name in ("min_covar", "covars_prior", "means_weight"):
            _check_real(owner, name, getattr(self, name), "")
        for name in ("means_prior", "covars_weight"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or not np.isfinite(value):
                raise _InvalidParameter(
                    f"{owner}: {name} must be a finite number (jaxem takes scalars), got {value!r}."
                )

    def _emission(self, n_features: int) -> Family:
        return HMMLearnGaussian(
            self.covariance_type,
            self.means_prior,
            self.means_weight,
            self.covars_prior,
            self.covars_weight,
        )

    def _emission_fixed(self):
        fixed = [
            name for letter, name in (("m", "mean"), ("c", "cov")) if letter not in self.params
        ]
        return True if len(fixed) == 2 else fixed

    def _emission_starts(self, hmm, x, keys):
        r, k = len(keys), self.n_components
        letters = self.init_params
        if "m" in letters or not hasattr(self, "means_"):
            means = jax.vmap(hmm.emission.init, in_axes=(0, None, None))(
                keys, jnp.asarray(x), k
            ).mean
        else:
            means = jnp.broadcast_to(jnp.asarray(self.means_), (r,) + np.shape(self.means_))
        if "c" in letters or not hasattr(self, "_covars"):
            cv = np.atleast_2d(np.cov(x.T)) + self.min_covar * np.eye(x.shape[1])
            cov = distribute_covariance(cv, self.covariance_type, k)
        else:
            cov = self._covars
        covs = jnp.broadcast_to(jnp.asarray(cov, means.dtype), (r,) + np.shape(cov))
        return MultivariateNormalParams(means.astype(covs.dtype), covs)

    def _current_emissions(self):
        return MultivariateNormalParams(self.means_, self._covars)

    def _set_emissions(self, emissions, dtype) -> None:
        self.means_ = np.asarray(emissions.mean, dtype)
        self._covars = np.asarray(emissions.cov, dtype)

    @property
    def covars_(self) -> np.ndarray:
        """``(n_components, n_features, n_features)`` covariance matrices (hmmlearn's shape)."""
        cov = self._covars
        d = np.shape(self.means_)[-1]
        return full_covariances(cov, self.covariance_type, self.n_components, d)

    @covars_.setter
    def covars_(self, value) -> None:
        """Set a start (with ``init_params`` lacking ``c``): hmmlearn's per-type shape."""
        self._covars = np.asarray(value, np.float64)
