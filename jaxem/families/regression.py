"""Regression families: a component is a conditional density of a response given covariates.

A regression family reads its data from a pytree of units (a dict by default):
the covariates ``data[covariates]`` (``(N, P)``, or ``(N,)`` for one) and the
response ``data[response]`` (``(N,)``). Each component has its own
coefficients ``coef (P,)`` and ``intercept``; the linear predictor is
``η = x·coef + intercept``. In a mixture the parameters carry a leading
``(K,)`` axis, and the ``(N, K)`` predictors of all components are one matrix
product.

This module holds what all regression families share and
:class:`LinearRegression`, whose M-step is weighted least squares in closed
form (Cholesky of the weighted Gram matrix, never an explicit inverse), with a
Normal (ridge) prior on the coefficients and an InverseGamma prior on the
variance. The GLMs are in :mod:`jaxem.families.glm`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints, priors
from jaxem.families.base import Family, check_prior, register_m_step
from jaxem.newton import spd_solve

__all__ = ["RegressionFamily", "LinearRegression", "LinearRegressionParams"]

_LOG_2PI = math.log(2 * math.pi)
_HI = jax.lax.Precision.HIGHEST  # no TF32 on GPUs


def _check_key(owner: str, name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"{owner}: {name} must be the (non-empty) name of a data field, got {value!r}."
        )
    return value


class RegressionFamily(Family):
    """Base class of regression families: the data are a pytree holding covariates and response.

    Subclasses define ``log_prob_eta(components, eta, data) -> (N, K)``, the
    log density of the response given the ``(N, K)`` linear predictors,
    ``mean_from_eta(components, eta, data) -> (N, K)``, the response's mean,
    ``constraints`` for their extra fields (``coef`` and ``intercept`` are
    real), and for random restarts ``init(key, data, n_components)``, which
    may start from :meth:`least_squares_start`. Their parameters are a
    NamedTuple with ``coef (K, P)`` and ``intercept (K,)`` fields. Without a
    registered closed form they get the gradient M-step.

    Example:
        >>> class LaplaceParams(NamedTuple):
        ...     coef: jax.Array; intercept: jax.Array; scale: jax.Array
        >>> class LaplaceRegression(em.RegressionFamily):
        ...     constraints = {"scale": constraints.positive}
        ...     def log_prob_eta(self, c, eta, data):
        ...         y = self.response_values(data)[:, None]
        ...         return -jnp.abs(y - eta) / c.scale - jnp.log(2 * c.scale)
        ...     def mean_from_eta(self, c, eta, data):
        ...         return eta
        ...     def init(self, key, data, n_components):
        ...         coef, intercept = self.least_squares_start(key, data, n_components)
        ...         return LaplaceParams(coef, intercept, jnp.ones(n_components))

    Args (shared by the built-in regression families):
        covariates: the data field holding the covariates, ``(N, P)`` or ``(N,)``.
        response: the data field holding the response, ``(N,)``.
        fit_intercept: whether each component has an intercept (else it is
            held at 0 and not counted as a parameter).
    """

    #: Regression families score a pytree of units, not an array.
    reads_units = True

    def __init__(self, *, covariates: str = "x", response: str = "y", fit_intercept: bool = True):
        owner = type(self).__name__
        self.covariates = _check_key(owner, "covariates", covariates)
        self.response = _check_key(owner, "response", response)
        if not isinstance(fit_intercept, (bool, np.bool_)):
            raise TypeError(f"{owner}: fit_intercept must be True or False, got {fit_intercept!r}.")
        self.fit_intercept = bool(fit_intercept)

    # -- data ------------------------------------------------------------------------
    def data_fields(self) -> tuple[str, ...]:
        """The fields of the data pytree this family reads."""
        return (self.covariates, self.response)

    def design(self, data) -> jax.Array:
        """The covariates as an ``(N, P)`` float array."""
        x = jnp.asarray(data[self.covariates])
        x = x.astype(jnp.result_type(float)) if not jnp.issubdtype(x.dtype, jnp.floating) else x
        return x[:, None] if x.ndim == 1 else x

    def response_values(self, data) -> jax.Array:
        """The response as an ``(N,)`` float array."""
        y = jnp.asarray(data[self.response])
        return y.astype(self.design(data).dtype)

    def eta(self, components, data) -> jax.Array:
        """``(N, K)`` linear predictors ``x·coef_k + intercept_k``."""
        x = self.design(data)
        eta = jnp.matmul(x, components.coef.T, precision=_HI)
        return eta + components.intercept if self.fit_intercept else eta

    def validate_data(self, data) -> None:
        owner = type(self).__name__
        if not isinstance(data, dict) and not hasattr(data, "_fields"):
            raise TypeError(
                f"{owner} reads a dict of arrays, e.g. {{'{self.covariates}': X (N, P), "
                f"'{self.response}': y (N,)}}; got {type(data).__name__}."
            )
        fields = data if isinstance(data, dict) else data._asdict()
        for name in self.data_fields():
            if name not in fields:
                raise ValueError(
                    f"{owner}: the data has no field {name!r} (it has {sorted(fields)}); pass it, "
                    f"or name the field with {owner}(covariates=..., response=...)."
                )
        x, y = np.asarray(fields[self.covariates]), np.asarray(fields[self.response])
        if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] == 0):
            raise ValueError(
                f"{owner}: data[{self.covariates!r}] must have shape (N, P) or (N,), got {x.shape}."
            )
        if y.ndim != 1:
            raise ValueError(
                f"{owner}: data[{self.response!r}] must have shape (N,), got {y.shape}; one "
                "response per unit."
            )
        self.validate_response(y, fields)
        self._check_coef_prior(fields)

    def validate_response(self, y: np.ndarray, fields) -> None:
        """Raise ``ValueError`` when the response is outside the family's support."""

    def validate_params(self, components) -> None:
        """Raise ``ValueError`` for user-given parameters the model cannot hold (host-side)."""
        if not self.fit_intercept and np.any(np.asarray(components.intercept) != 0):
            raise ValueError(
                f"{type(self).__name__}(fit_intercept=False): init intercepts must be 0 (they "
                f"are not parameters), got {np.asarray(components.intercept)}."
            )

    def _check_coef_prior(self, data) -> None:
        """A ``priors.Normal`` coefficient prior has one loc/scale, or one per covariate."""
        prior = getattr(self, "priors", {}).get("coef")
        if not isinstance(prior, priors.Normal):
            return
        p = self.n_covariates(data)
        for name in ("loc", "scale"):
            size = np.size(getattr(prior, name))
            if np.ndim(getattr(prior, name)) > 1 or size not in (1, p):
                raise ValueError(
                    f"{type(self).__name__}: coef_prior's {name} must be a number or one per "
                    f"covariate (shape ({p},)), got shape {np.shape(getattr(prior, name))}; "
                    "the same prior applies to every component."
                )

    def n_covariates(self, data) -> int:
        x = np.shape(data[self.covariates])
        return 1 if len(x) == 1 else int(x[1])

    # -- densities ---------------------------------------------------------------------
    def log_prob_eta(self, components, eta, data) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must define log_prob_eta")

    def mean_from_eta(self, components, eta, data) -> jax.Array:
        raise NotImplementedError(f"{type(self).__name__} must define mean_from_eta")

    def log_prob_components(self, components, data) -> jax.Array:
        return self.log_prob_eta(components, self.eta(components, data), data)

    def log_prob(self, params, data):
        one = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
        return self.log_prob_components(one, data)[:, 0]

    def mean_response(self, components, data) -> jax.Array:
        """``(N, K)`` mean of the response given the covariates under each component."""
        return self.mean_from_eta(components, self.eta(components, data), data)

    def supports_missing(self, ndim: int) -> bool:
        return False

    def n_fixed(self, components, mask=None) -> int:
        """Parameter entries that are not free: the intercepts, without ``fit_intercept``.

        ``mask``: ``fixed=`` masks like ``components``; entries they hold are not counted.
        """
        if self.fit_intercept:
            return 0
        held = np.zeros(np.shape(components.intercept), bool)
        if mask is not None:
            held = np.broadcast_to(np.asarray(mask.intercept), held.shape)
        return int(np.sum(~held))

    def location(self, components) -> np.ndarray:
        """Each component's ``[intercept, coef...]`` (host-side, ``(K, P + 1)``)."""
        coef = np.asarray(components.coef, dtype=np.float64)
        icpt = np.asarray(components.intercept, dtype=np.float64)
        return np.column_stack([icpt, coef.reshape(len(icpt), -1)])

    # -- starts --------------------------------------------------------------------------
    def working_response(self, data) -> jax.Array:
        """A response on the linear predictor's scale, for least-squares starts."""
        return self.response_values(data)

    def least_squares_start(self, key, data, n_components: int):
        """Least squares on a small random subset of units per component.

        Subsets of ``P + 3`` units (drawn with replacement: no permutation of
        all N units per start) give starts that differ (a start fitted to units
        of one true component lies near it); a small ridge on standardised
        covariates keeps the solve defined when a subset is degenerate.
        Returns ``(coef (K, P), intercept (K,))`` on the working response's scale.
        """
        x = self.design(data)
        t = self.working_response(data)
        n, p = x.shape
        m = p + 3
        idx = jax.random.randint(key, (n_components, m), 0, n)  # (K, m)
        spread = jnp.std(x, axis=0)
        scale = jnp.where(spread > 0, spread, 1.0)
        # With an intercept the covariates are centred (the intercept absorbs
        # the centre); without one the fit goes through the origin.
        centre = jnp.mean(x, axis=0) if self.fit_intercept else jnp.zeros((p,), x.dtype)

        def one(rows):
            sub = (x[rows] - centre) / scale  # standardised: the ridge is scale-free
            target = t[rows]
            offset = jnp.mean(target) if self.fit_intercept else jnp.zeros((), x.dtype)
            gram = sub.T @ sub + 1e-3 * m * jnp.eye(p, dtype=x.dtype)
            beta = jnp.linalg.solve(gram, sub.T @ (target - offset)) / scale
            return beta, offset - centre @ beta

        coef, intercept = jax.vmap(one)(idx)  # (K, P), (K,)
        return coef, intercept


def _with_intercept(x, fit_intercept: bool):
    """The design ``[x, 1]`` (the intercept's column last), or ``x``."""
    if not fit_intercept:
        return x
    return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


# -- the linear regression ---------------------------------------------------------------
class LinearRegressionParams(NamedTuple):
    """Per-component parameters: ``coef (K, P)``, ``intercept (K,)``, noise ``var (K,)``."""

    coef: jax.Array
    intercept: jax.Array
    var: jax.Array


class LinearRegression(RegressionFamily):
    """Normal linear regression ``y | x ~ N(x·coef + intercept, var)`` per component.

    Args:
        covariates, response, fit_intercept: see :class:`RegressionFamily`
            (defaults ``"x"``, ``"y"``, ``True``).
        coef_prior: prior on each coefficient (not the intercept):
            ``priors.Normal`` (ridge; closed form), any other prior or
            function ``coef -> log density`` (gradient M-step).
        var_prior: prior on each variance: ``priors.InverseGamma`` (closed
            form) or any other prior or function.
        ecm_sweeps: coordinate-ascent sweeps (coefficients given variance,
            then variance given coefficients) when there is a coefficient
            prior; without one a single sweep is the exact maximiser.
        min_var: floor of the variance update (as :class:`jaxem.Normal`'s).

    Example:
        >>> model = em.Mixture(em.LinearRegression(), n_components=2)
        >>> res = em.fit(model, {"x": X, "y": y}, key=jax.random.key(0), restarts=32)
        >>> res.params.components.coef        # (K, P)
    """

    constraints = {
        "coef": constraints.real,
        "intercept": constraints.real,
        "var": constraints.positive,
    }
    hyperparameters = ("covariates", "response", "fit_intercept", "ecm_sweeps", "min_var")
    params_type = LinearRegressionParams

    def __init__(
        self,
        *,
        covariates: str = "x",
        response: str = "y",
        fit_intercept: bool = True,
        coef_prior=None,
        var_prior=None,
        ecm_sweeps: int = 20,
        min_var: float = 1e-6,
    ):
        super().__init__(covariates=covariates, response=response, fit_intercept=fit_intercept)
        self.priors = {
            "coef": check_prior("LinearRegression", "coef", coef_prior),
            "var": check_prior("LinearRegression", "var", var_prior),
        }
        if isinstance(ecm_sweeps, bool) or not isinstance(ecm_sweeps, int) or ecm_sweeps < 1:
            raise ValueError(
                f"LinearRegression: ecm_sweeps must be an integer >= 1, got {ecm_sweeps!r}."
            )
        self.ecm_sweeps = ecm_sweeps
        if (
            isinstance(min_var, bool)
            or not isinstance(min_var, (int, float))
            or not (np.isfinite(min_var) and min_var >= 0)
        ):
            raise ValueError(
                f"LinearRegression: min_var must be a finite number >= 0, got {min_var!r}."
            )
        self.min_var = float(min_var)

    def log_prob_eta(self, components, eta, data):
        z = self.response_values(data)[:, None] - eta
        return -0.5 * (_LOG_2PI + jnp.log(components.var) + z * z / components.var)

    def mean_from_eta(self, components, eta, data):
        return eta

    def sample_response(self, key, components, data) -> jax.Array:
        """``(N, K)`` draws of the response given the covariates, one per component."""
        mean = self.eta(components, data)
        noise = jax.random.normal(key, mean.shape, mean.dtype)
        return mean + jnp.sqrt(components.var) * noise

    def init(self, key, data, n_components):
        """Least squares on a random subset of units per component; variance of y."""
        coef, intercept = self.least_squares_start(key, data, n_components)
        y = self.response_values(data)
        var = jnp.full((n_components,), jnp.var(y) + 10 * jnp.finfo(y.dtype).tiny)
        return LinearRegressionParams(coef, intercept, jnp.maximum(var, self.min_var))


class LinearRegressionStats(NamedTuple):
    """Row sums per component, on the residuals at the current coefficients.

    With ``a = [x, 1]`` (or ``x`` without intercept) and ``e_k = y - η_k``:
    ``n = Σ w r``, ``gram = Σ w r a aᵀ``, ``cross = Σ w r a e``, ``ee = Σ w r e²``.
    Residuals keep the sums of squares accurate in float32 near the optimum
    (where EM spends its iterations). Far from it (a poor start) the residual
    sum of squares after the step, ``ee - 2δᵀcross + δᵀgram δ``, cancels: it is
    floored at its rounding error, and the next iteration, with residuals at
    the new coefficients, is accurate again.
    """

    n: jax.Array  # (K,)
    gram: jax.Array  # (K, P1, P1)
    cross: jax.Array  # (K, P1)
    ee: jax.Array  # (K,)


def _linear_stats(family, params, data, resp, sample_weight):
    wr = resp * sample_weight[:, None]  # (N, K)
    a = _with_intercept(family.design(data), family.fit_intercept)  # (N, P1)
    e = family.response_values(data)[:, None] - family.eta(params, data)  # (N, K)
    gram = jnp.einsum("nk,ni,nj->kij", wr, a, a, precision=_HI)
    cross = jnp.einsum("nk,ni->ki", wr * e, a, precision=_HI)
    return LinearRegressionStats(wr.sum(0), gram, cross, jnp.sum(wr * e * e, axis=0))


def _linear_update(family, params, stats):
    cp, vp = family.priors["coef"], family.priors["var"]
    dtype = stats.gram.dtype
    p1 = stats.gram.shape[-1]
    has_data = stats.n > 0
    n_safe = jnp.where(has_data, stats.n, 1)
    old = jnp.concatenate(
        [params.coef, params.intercept[:, None]] if family.fit_intercept else [params.coef], axis=1
    )  # (K, P1), the intercept last
    p = params.coef.shape[1]
    if cp is not None:  # hyper-parameters per coefficient; 0 precision on the intercept
        pad = jnp.zeros((p1 - p,), dtype)
        prec = jnp.concatenate([jnp.broadcast_to(1 / jnp.asarray(cp.scale, dtype) ** 2, (p,)), pad])
        loc = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cp.loc, dtype), (p,)), pad])

    def coef_given_var(var):
        """The step δ from the current coefficients: a weighted (ridge) least-squares solve."""
        if cp is None:
            return spd_solve(stats.gram, stats.cross)
        s = var[:, None, None] * jnp.diag(prec)  # σ² / τ² on the penalised coefficients
        rhs = stats.cross - var[:, None] * prec * (old - loc)
        return spd_solve(stats.gram + s, rhs)

    def rss(delta):
        # Σ w r (e - aᵀδ)² = ee - 2 δᵀ cross + δᵀ gram δ
        quad = jnp.einsum("ki,kij,kj->k", delta, stats.gram, delta, precision=_HI)
        floor = 8 * jnp.finfo(dtype).eps * (stats.ee + quad)  # the expansion's rounding
        return jnp.maximum(stats.ee - 2 * jnp.sum(delta * stats.cross, axis=1) + quad, floor)

    def var_given_coef(delta, var_old):
        ss = rss(delta)
        if vp is None:
            var = jnp.where(has_data, ss / n_safe, var_old)
        else:
            a = jnp.asarray(vp.concentration, dtype)
            b = jnp.asarray(vp.scale, dtype)
            var = (ss + 2 * b) / (stats.n + 2 * a + 2)
        return jnp.maximum(var, jnp.asarray(family.min_var, dtype))

    def sweep(_, carry):
        _, var = carry
        delta = coef_given_var(var)
        return delta, var_given_coef(delta, params.var)

    sweeps = family.ecm_sweeps if cp is not None else 1
    delta, var = jax.lax.fori_loop(0, sweeps, sweep, (jnp.zeros_like(old), params.var))
    # An empty component keeps its coefficients (no data, no prior: nothing to fit).
    keep = ~has_data[:, None] if cp is None else jnp.zeros_like(has_data)[:, None]
    new = jnp.where(keep, old, old + delta)
    if family.fit_intercept:
        coef, intercept = new[:, :p], new[:, p]
    else:
        coef, intercept = new, params.intercept
    return LinearRegressionParams(coef, intercept, var)


def _linear_applies(family):
    cp, vp = family.priors["coef"], family.priors["var"]
    return (cp is None or type(cp) is priors.Normal) and (
        vp is None or type(vp) is priors.InverseGamma
    )


def _linear_exact(family):
    # With a coefficient prior the sweeps are coordinate ascent: close, not exact.
    return family.priors["coef"] is None


register_m_step(
    LinearRegression,
    _linear_update,
    sufficient_stats=_linear_stats,
    applies=_linear_applies,
    exact=_linear_exact,
)
