"""``em.SoftmaxGating``: mixing weights that depend on covariates (a mixture of experts).

With gating, unit ``i``'s weights are ``softmax(w_i·Γ + γ)`` over the K
components, where ``w_i = data[covariates][i]``. Component 0 is the reference
class: its row of ``Γ`` and its ``γ`` are held at 0, which identifies the
model (adding the same vector to every row changes nothing). In
:class:`jaxem.MixtureParams` the ``weights`` field then holds
:class:`GatingParams` instead of a ``(K,)`` vector.

The M-step is a weighted multinomial logistic regression of the
responsibilities on the covariates, concave in ``(Γ, γ)``: Newton's method
with step halving (:mod:`jaxem.newton`), warm-started, to the optimum. A
``priors.Normal`` on the coefficients (not the intercepts) is covered;
entries held by ``fixed=`` use the gradient M-step on the others.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem import mstep, newton
from jaxem import priors as _priors
from jaxem.families.base import check_prior

__all__ = ["SoftmaxGating", "GatingParams"]

_HI = jax.lax.Precision.HIGHEST


class GatingParams(NamedTuple):
    """Gating parameters: ``gate_coef (K, Q)`` and ``gate_intercept (K,)``, row 0 held at 0.

    The names differ from the regression families' ``coef``/``intercept`` so
    that ``fixed={"intercept"}`` names the components' intercepts only.
    """

    gate_coef: jax.Array
    gate_intercept: jax.Array


class SoftmaxGating:
    """Mixing weights ``softmax(w·coef + intercept)`` from the covariates ``data[covariates]``.

    Args:
        covariates: the data field holding the gating covariates, ``(N, Q)``
            or ``(N,)``.
        fit_intercept: whether the weights have an intercept per component
            (else it is held at 0).
        coef_prior: ``priors.Normal`` on each coefficient (not the
            intercepts; Newton M-step), or ``None``.
        newton_steps: the most Newton steps per M-step.

    Example:
        >>> model = em.Mixture(em.LinearRegression(), 2, gating=em.SoftmaxGating(covariates="w"))
        >>> res = em.fit(model, {"x": X, "y": y, "w": W}, key=jax.random.key(0), restarts=16)
        >>> res.params.weights.gate_coef     # (K, Q), row 0 is the reference (zeros)
    """

    def __init__(
        self,
        covariates: str = "w",
        *,
        fit_intercept: bool = True,
        coef_prior=None,
        newton_steps: int = 50,
    ):
        if not isinstance(covariates, str) or not covariates:
            raise TypeError(
                f"SoftmaxGating: covariates must be the name of a data field, got {covariates!r}."
            )
        if not isinstance(fit_intercept, (bool, np.bool_)):
            raise TypeError(
                f"SoftmaxGating: fit_intercept must be True or False, got {fit_intercept!r}."
            )
        prior = check_prior("SoftmaxGating", "coef", coef_prior)
        if prior is not None and type(prior) is not _priors.Normal:
            raise TypeError(
                "SoftmaxGating: coef_prior must be a priors.Normal (the Newton M-step is written "
                f"for it), got {prior!r}."
            )
        if (
            isinstance(newton_steps, bool)
            or not isinstance(newton_steps, numbers.Integral)
            or newton_steps < 1
        ):
            raise ValueError(
                f"SoftmaxGating: newton_steps must be an integer >= 1, got {newton_steps!r}."
            )
        self.covariates = covariates
        self.fit_intercept = bool(fit_intercept)
        self.coef_prior = prior
        self.newton_steps = int(newton_steps)

    def __repr__(self) -> str:
        extra = "" if self.coef_prior is None else f", coef_prior={self.coef_prior!r}"
        if not self.fit_intercept:
            extra += ", fit_intercept=False"
        return f"SoftmaxGating(covariates={self.covariates!r}{extra})"

    constraints = GatingParams(_constraints.real, _constraints.real)

    # -- data ------------------------------------------------------------------------
    def design(self, data) -> jax.Array:
        """The gating covariates as an ``(N, Q)`` float array."""
        w = jnp.asarray(data[self.covariates])
        w = w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(jnp.result_type(float))
        return w[:, None] if w.ndim == 1 else w

    def validate_data(self, data) -> None:
        if not isinstance(data, dict) and not hasattr(data, "_fields"):
            raise TypeError(
                f"SoftmaxGating reads a dict of arrays with the field {self.covariates!r}; got "
                f"{type(data).__name__}."
            )
        fields = data if isinstance(data, dict) else data._asdict()
        if self.covariates not in fields:
            raise ValueError(
                f"SoftmaxGating: the data has no field {self.covariates!r} (it has "
                f"{sorted(fields)}); pass the gating covariates there or name the field with "
                "SoftmaxGating(covariates=...)."
            )
        w = np.asarray(fields[self.covariates])
        if w.ndim not in (1, 2) or (w.ndim == 2 and w.shape[1] == 0):
            raise ValueError(
                f"SoftmaxGating: data[{self.covariates!r}] must have shape (N, Q) or (N,), got "
                f"{w.shape}."
            )
        q = 1 if w.ndim == 1 else w.shape[1]
        for name in ("loc", "scale") if self.coef_prior is not None else ():
            value = getattr(self.coef_prior, name)
            if np.ndim(value) > 1 or np.size(value) not in (1, q):
                raise ValueError(
                    f"SoftmaxGating: coef_prior's {name} must be a number or one per covariate "
                    f"(shape ({q},)), got shape {np.shape(value)}."
                )

    # -- the model ---------------------------------------------------------------------
    def logits(self, params: GatingParams, data) -> jax.Array:
        """``(N, K)`` unnormalised log weights (0 for the reference component)."""
        out = jnp.matmul(self.design(data), params.gate_coef.T, precision=_HI)
        return out + params.gate_intercept if self.fit_intercept else out

    def log_weights(self, params: GatingParams, data) -> jax.Array:
        """``(N, K)`` log mixing weights of each unit."""
        return jax.nn.log_softmax(self.logits(params, data), axis=-1)

    def weights(self, params: GatingParams, data) -> jax.Array:
        """``(N, K)`` mixing weights of each unit (rows sum to 1)."""
        return jax.nn.softmax(self.logits(params, data), axis=-1)

    def log_prior(self, params: GatingParams) -> jax.Array:
        if self.coef_prior is None:
            return jnp.zeros((), params.gate_coef.dtype)
        return jnp.sum(self.coef_prior(params.gate_coef[1:]))

    def init(self, key, data, n_components: int) -> GatingParams:
        """Equal weights for every unit: all coefficients 0."""
        q = self.design(data).shape[1]
        dtype = self.design(data).dtype
        return GatingParams(jnp.zeros((n_components, q), dtype), jnp.zeros((n_components,), dtype))

    def n_fixed(self, params: GatingParams, mask=None) -> int:
        """Entries that are not parameters: the reference row (and the intercepts without one).

        ``mask``: ``fixed=`` masks like ``params``; entries they hold are not counted.
        """
        k, q = np.shape(params.gate_coef)
        coef = np.zeros((k, q), bool)
        coef[0] = True
        icpt = np.ones(k, bool) if not self.fit_intercept else np.arange(k) == 0
        if mask is not None:
            coef &= ~np.broadcast_to(np.asarray(mask.gate_coef), coef.shape)
            icpt &= ~np.broadcast_to(np.asarray(mask.gate_intercept), icpt.shape)
        return int(coef.sum() + icpt.sum())

    # -- the M-step --------------------------------------------------------------------------
    def update(self, params: GatingParams, data, resp, sample_weight, mask=None) -> GatingParams:
        """Maximise ``Σ_i s_i Σ_k r_ik log π_k(w_i) + log prior`` over the non-reference rows.

        ``resp``: ``(N, K)`` responsibilities; ``mask``: ``fixed=`` masks
        (a :class:`GatingParams` of booleans) or ``None``.
        """
        w = self.design(data)
        a = (
            jnp.concatenate([w, jnp.ones((w.shape[0], 1), w.dtype)], axis=1)
            if self.fit_intercept
            else w
        )
        k, q = params.gate_coef.shape
        q1 = a.shape[1]
        dtype = a.dtype
        sr = resp * sample_weight[:, None]  # (N, K)
        s = jnp.sum(sr, axis=1)  # (N,) Σ_k s r = s where the responsibilities sum to 1
        total = jnp.maximum(jnp.sum(s), jnp.finfo(dtype).tiny)
        prec = jnp.zeros((q1,), dtype)
        loc = jnp.zeros((q1,), dtype)
        if self.coef_prior is not None:
            pad = jnp.zeros((q1 - q,), dtype)
            prec = jnp.concatenate(
                [jnp.broadcast_to(1 / jnp.asarray(self.coef_prior.scale, dtype) ** 2, (q,)), pad]
            )
            loc = jnp.concatenate(
                [jnp.broadcast_to(jnp.asarray(self.coef_prior.loc, dtype), (q,)), pad]
            )

        def unpack(beta):  # (1, (K-1) Q1) -> (K, Q1), the reference row 0
            return jnp.concatenate([jnp.zeros((1, q1), dtype), beta.reshape(k - 1, q1)], axis=0)

        def value(beta_full):  # (K, Q1) -> scalar per unit of weight
            logp = jax.nn.log_softmax(jnp.matmul(a, beta_full.T, precision=_HI), axis=-1)
            ll = jnp.sum(jnp.where(sr > 0, sr * logp, 0))
            return (ll - 0.5 * jnp.sum(prec * (beta_full[1:] - loc) ** 2)) / total

        cols = (
            [params.gate_coef, params.gate_intercept[:, None]]
            if self.fit_intercept
            else [params.gate_coef]
        )
        full0 = jnp.concatenate(cols, axis=1)  # (K, Q1)
        if mask is not None and any(np.any(m) for m in jax.tree.leaves(mask)):
            return self._update_masked(params, value, mask)

        def objective(beta):
            return value(unpack(beta[0]))[None]

        def derivatives(beta):
            full = unpack(beta[0])
            pi = jax.nn.softmax(jnp.matmul(a, full.T, precision=_HI), axis=-1)[:, 1:]  # (N, K-1)
            grad = jnp.einsum("nj,na->ja", sr[:, 1:] - s[:, None] * pi, a, precision=_HI)
            grad = grad - prec * (full[1:] - loc)
            sp = s[:, None] * pi
            diag = jnp.einsum("nj,na,nb->jab", sp, a, a, precision=_HI)  # (K-1, Q1, Q1)
            cross = jnp.einsum("nj,nl,na,nb->jalb", sp, pi, a, a, precision=_HI)
            m = k - 1
            info = -cross.reshape(m * q1, m * q1)
            blocks = jnp.einsum("jab,jl->jalb", diag + jnp.diag(prec), jnp.eye(m, dtype=dtype))
            info = info + blocks.reshape(m * q1, m * q1)
            return grad.reshape(1, -1) / total, info[None] / total

        if k == 1:
            return params
        beta0 = full0[1:].reshape(1, -1)
        beta = newton.ascend(objective, derivatives, beta0, jnp.ones((1,), bool), self.newton_steps)
        full = unpack(beta[0])
        if self.fit_intercept:
            return GatingParams(full[:, :q], full[:, q])
        return GatingParams(full, params.gate_intercept)

    def _update_masked(self, params, value, mask):
        """The gradient M-step over the entries ``fixed=`` leaves free (and not the reference)."""

        def to_full(p):
            cols = [p.gate_coef, p.gate_intercept[:, None]] if self.fit_intercept else [p.gate_coef]
            return jnp.concatenate(cols, axis=1)

        def objective(theta):
            theta = _fixed.freeze(mask, theta, params)
            theta = GatingParams(theta.gate_coef.at[0].set(0), theta.gate_intercept.at[0].set(0))
            return value(to_full(theta))

        leaves = _constraints.broadcast(self.constraints, params)
        new = mstep.maximize(objective, params, leaves)
        return GatingParams(new.gate_coef.at[0].set(0), new.gate_intercept.at[0].set(0))
