"""Generalised linear regression families: Poisson (log link) and binomial (logit link).

Both are canonical-link GLMs, so each component's part of ``Q(θ|θt) + log
prior`` is concave in its coefficients. The registered M-step maximises it by
Newton's method (IRLS), warm-started at θt, all components at once: each step
solves ``(Aᵀ W A + prior precision) δ = gradient`` by Cholesky (``A = [x, 1]``,
``W`` the weights times responsibilities times the variance function) and
halves the step until the objective does not decrease, so the update is an
ascent step even before it converges. It stops when the Newton decrement per
unit of weight is below the dtype's resolution (the optimum), or after
``newton_steps``. A ``priors.Normal`` on the coefficients (not the intercepts)
is covered; any other prior uses the engine's gradient M-step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxem import constraints, newton, priors
from jaxem.families.base import check_prior, register_m_step
from jaxem.families.regression import _HI, RegressionFamily, _check_key, _with_intercept

__all__ = [
    "PoissonRegression",
    "PoissonRegressionParams",
    "LogisticRegression",
    "LogisticRegressionParams",
]


class PoissonRegressionParams(NamedTuple):
    """Per-component parameters: ``coef (K, P)`` and ``intercept (K,)`` on the log scale."""

    coef: jax.Array
    intercept: jax.Array


class LogisticRegressionParams(NamedTuple):
    """Per-component parameters: ``coef (K, P)`` and ``intercept (K,)`` on the logit scale."""

    coef: jax.Array
    intercept: jax.Array


def _check_steps(owner: str, newton_steps) -> int:
    if isinstance(newton_steps, bool) or not isinstance(newton_steps, int) or newton_steps < 1:
        raise ValueError(f"{owner}: newton_steps must be an integer >= 1, got {newton_steps!r}.")
    return newton_steps


class _GLM(RegressionFamily):
    """What the two GLMs share: the coefficient prior and the Newton M-step's pieces.

    A subclass defines ``log_prob_eta``, ``mean_from_eta`` and
    ``score_terms(eta, data) -> (dℓ/dη, -d²ℓ/dη²)``, both ``(N, K)``.
    """

    constraints = {"coef": constraints.real, "intercept": constraints.real}
    m_step_kind = "Newton"
    hyperparameters = ("covariates", "response", "fit_intercept", "newton_steps")

    def __init__(self, *, covariates, response, fit_intercept, coef_prior, newton_steps):
        super().__init__(covariates=covariates, response=response, fit_intercept=fit_intercept)
        owner = type(self).__name__
        self.priors = {"coef": check_prior(owner, "coef", coef_prior)}
        self.newton_steps = _check_steps(owner, newton_steps)

    def init(self, key, data, n_components):
        """Least squares on the working response of a random subset of units per component."""
        coef, intercept = self.least_squares_start(key, data, n_components)
        return self.params_type(coef, intercept)


class PoissonRegression(_GLM):
    """Poisson regression ``y | x ~ Poisson(exp(x·coef + intercept))`` per component.

    Args:
        covariates, response, fit_intercept: see
            :class:`jaxem.families.regression.RegressionFamily`.
        coef_prior: prior on each coefficient (not the intercept):
            ``priors.Normal`` (Newton M-step) or any other prior or function
            (gradient M-step).
        newton_steps: the most Newton steps per M-step.

    Example:
        >>> model = em.Mixture(em.PoissonRegression(), n_components=2)
        >>> res = em.fit(model, {"x": X, "y": counts}, key=jax.random.key(0), restarts=16)
    """

    params_type = PoissonRegressionParams
    support_kind = "counts"

    def __init__(
        self,
        *,
        covariates: str = "x",
        response: str = "y",
        fit_intercept: bool = True,
        coef_prior=None,
        newton_steps: int = 50,
    ):
        super().__init__(
            covariates=covariates,
            response=response,
            fit_intercept=fit_intercept,
            coef_prior=coef_prior,
            newton_steps=newton_steps,
        )

    def validate_response(self, y, fields):
        if not (np.all(y >= 0) and np.all(y == np.round(y))):
            raise ValueError(
                f"PoissonRegression: data[{self.response!r}] must hold counts (integers >= 0)."
            )

    def log_prob_eta(self, components, eta, data):
        y = self.response_values(data)[:, None]
        return y * eta - jnp.exp(eta) - gammaln(y + 1)

    def mean_from_eta(self, components, eta, data):
        return jnp.exp(eta)

    def score_terms(self, eta, data):
        # The mean capped below overflow: a step to a huge η then has a finite
        # (steep) derivative, and step halving brings it back.
        mu = jnp.exp(jnp.minimum(eta, math.log(jnp.finfo(eta.dtype).max) - 2))
        return self.response_values(data)[:, None] - mu, mu

    def working_response(self, data):
        return jnp.log(self.response_values(data) + 0.5)

    def sample_response(self, key, components, data) -> jax.Array:
        """``(N, K)`` draws of the response given the covariates, one per component."""
        mean = self.mean_response(components, data)
        return jax.random.poisson(key, mean, mean.shape).astype(mean.dtype)


class LogisticRegression(_GLM):
    """Logistic regression: ``y | x ~ Binomial(n, sigmoid(x·coef + intercept))`` per component.

    Binary responses (0/1) by default; with ``trials="n"`` the response counts
    successes out of ``data["n"]`` trials per unit.

    Args:
        covariates, response, fit_intercept: see
            :class:`jaxem.families.regression.RegressionFamily`.
        trials: the data field holding each unit's number of trials, or
            ``None`` (one trial: a binary response).
        coef_prior: prior on each coefficient (not the intercept):
            ``priors.Normal`` (Newton M-step) or any other prior or function.
        newton_steps: the most Newton steps per M-step.

    Example:
        >>> model = em.Mixture(em.LogisticRegression(trials="n"), n_components=2)
        >>> res = em.fit(model, {"x": X, "y": successes, "n": trials}, key=jax.random.key(0))
    """

    params_type = LogisticRegressionParams
    support_kind = "counts"
    hyperparameters = _GLM.hyperparameters + ("trials",)

    def __init__(
        self,
        *,
        covariates: str = "x",
        response: str = "y",
        trials: str | None = None,
        fit_intercept: bool = True,
        coef_prior=None,
        newton_steps: int = 50,
    ):
        super().__init__(
            covariates=covariates,
            response=response,
            fit_intercept=fit_intercept,
            coef_prior=coef_prior,
            newton_steps=newton_steps,
        )
        self.trials = None if trials is None else _check_key("LogisticRegression", "trials", trials)

    def data_fields(self):
        return super().data_fields() + (() if self.trials is None else (self.trials,))

    def n_trials(self, data) -> jax.Array | float:
        if self.trials is None:
            return 1.0
        return jnp.asarray(data[self.trials]).astype(self.design(data).dtype)[:, None]

    def validate_response(self, y, fields):
        name = self.response
        if self.trials is None:
            if not np.all((y == 0) | (y == 1)):
                raise ValueError(
                    f"LogisticRegression: data[{name!r}] must be 0 or 1 (binary); for counts of "
                    "successes pass trials='<field of the number of trials>'."
                )
            return
        n = np.asarray(fields[self.trials])
        if n.shape != y.shape:
            raise ValueError(
                f"LogisticRegression: data[{self.trials!r}] must have shape {y.shape} (one "
                f"number of trials per unit), got {n.shape}."
            )
        if not (np.all(n >= 0) and np.all(n == np.round(n))):
            raise ValueError(f"LogisticRegression: data[{self.trials!r}] must be integers >= 0.")
        if not (np.all(y >= 0) and np.all(y <= n) and np.all(y == np.round(y))):
            raise ValueError(
                f"LogisticRegression: data[{name!r}] must be integers between 0 and "
                f"data[{self.trials!r}]."
            )

    def log_prob_eta(self, components, eta, data):
        y = self.response_values(data)[:, None]
        n = self.n_trials(data)
        ll = y * eta - n * jax.nn.softplus(eta)
        if self.trials is None:
            return ll
        return ll + gammaln(n + 1) - gammaln(y + 1) - gammaln(n - y + 1)

    def mean_from_eta(self, components, eta, data):
        return self.n_trials(data) * jax.nn.sigmoid(eta)

    def score_terms(self, eta, data):
        p = jax.nn.sigmoid(eta)
        n = self.n_trials(data)
        return self.response_values(data)[:, None] - n * p, n * p * (1 - p)

    def working_response(self, data):
        y = self.response_values(data)
        n = jnp.squeeze(jnp.asarray(self.n_trials(data)))
        q = (y + 0.5) / (n + 1.0)
        return jnp.log(q) - jnp.log1p(-q)

    def sample_response(self, key, components, data) -> jax.Array:
        """``(N, K)`` draws of the response given the covariates, one per component."""
        p = jax.nn.sigmoid(self.eta(components, data))
        n = jnp.broadcast_to(self.n_trials(data), p.shape)
        return jax.random.binomial(key, n, p).astype(p.dtype)


# -- the Newton (IRLS) M-step ----------------------------------------------------------------
def _prior_terms(family, p: int, p1: int, dtype):
    """``(precision (P1,), location (P1,))`` of the coefficient prior; zeros on the intercept."""
    cp = family.priors["coef"]
    if cp is None:
        return jnp.zeros((p1,), dtype), jnp.zeros((p1,), dtype)
    pad = jnp.zeros((p1 - p,), dtype)
    prec = jnp.concatenate([jnp.broadcast_to(1 / jnp.asarray(cp.scale, dtype) ** 2, (p,)), pad])
    loc = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cp.loc, dtype), (p,)), pad])
    return prec, loc


def _newton_update(family, params, data, resp, sample_weight):
    x = family.design(data)
    a = _with_intercept(x, family.fit_intercept)  # (N, P1)
    dtype = a.dtype
    p, p1 = x.shape[1], a.shape[1]
    wr = resp * sample_weight[:, None]  # (N, K)
    total = jnp.maximum(jnp.sum(wr, axis=0), jnp.finfo(dtype).tiny)  # (K,)
    prec, loc = _prior_terms(family, p, p1, dtype)
    cols = [params.coef, params.intercept[:, None]] if family.fit_intercept else [params.coef]
    beta0 = jnp.concatenate(cols, axis=1)  # (K, P1)

    def objective(beta):  # (K,): each component's Σ w r ℓ + log prior, per unit of weight
        eta = jnp.matmul(a, beta.T, precision=_HI)
        ll = jnp.sum(jnp.where(wr > 0, wr * family.log_prob_eta(params, eta, data), 0), axis=0)
        return (ll - 0.5 * jnp.sum(prec * (beta - loc) ** 2, axis=1)) / total

    def derivatives(beta):
        eta = jnp.matmul(a, beta.T, precision=_HI)
        d1, d2 = family.score_terms(eta, data)
        # Units of zero weight add nothing, even where their terms overflow (0 * inf).
        g1, g2 = (jnp.where(wr > 0, wr * d, 0) for d in (d1, d2))
        grad = jnp.einsum("nk,ni->ki", g1, a, precision=_HI) - prec * (beta - loc)
        info = jnp.einsum("nk,ni,nj->kij", g2, a, a, precision=_HI) + jnp.diag(prec)
        return grad / total[:, None], info / total[:, None, None]

    has_data = jnp.sum(wr, axis=0) > 0
    beta = newton.ascend(objective, derivatives, beta0, has_data, family.newton_steps)
    if family.fit_intercept:
        return family.params_type(beta[:, :p], beta[:, p])
    return family.params_type(beta, params.intercept)


def _glm_applies(family):
    cp = family.priors["coef"]
    return cp is None or type(cp) is priors.Normal


for _cls in (PoissonRegression, LogisticRegression):
    register_m_step(_cls, _newton_update, applies=_glm_applies)
