"""``em.Mixture``: a finite mixture of one component family.

``log p(x_i, z_i = k) = log w_k + log f(x_i | θ_k)``. The M-step splits into
independent pieces, each solved the best available way:

* weights: closed form for a flat or ``priors.Dirichlet`` prior
  (``w_k ∝ N_k + α_k - 1``), gradient M-step on the simplex for any other
  prior function;
* components: the family's registered closed form from additive sufficient
  statistics when its priors are covered, else the gradient M-step on
  ``Σ_ik r_ik log f(x_i | θ_k) + log prior(θ)``.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints as _constraints
from jaxem import priors as _priors
from jaxem.estep import e_step
from jaxem.families.base import Family, closed_form_for, component_constraints
from jaxem.model import Model
from jaxem.mstep import GradientOptions, maximize

__all__ = ["Mixture", "MixtureParams"]


class MixtureParams(NamedTuple):
    """Parameters of a mixture.

    Attributes:
        weights: ``(K,)`` mixing proportions (non-negative, summing to 1).
        components: the family's parameters with a leading ``(K,)`` axis on
            every leaf, e.g. ``em.NormalParams(mean=(K,), var=(K,))``.
    """

    weights: jax.Array
    components: Any


class _MixtureEStep(NamedTuple):
    counts: jax.Array  # (K,) Σ_i w_i r_ik
    stats: Any  # the family's sufficient statistics, or None
    resp: Any  # (N, K) responsibilities when the M-step needs them, or None


class Mixture(Model):
    """A mixture of ``n_components`` components of one family.

    Args:
        family: an ``em.Family`` instance (``em.Normal(...)``, a custom family).
        n_components: K, the number of components.
        weights_prior: ``priors.Dirichlet`` (closed form; concentration >= 1 so
            that the mode exists), any function ``weights -> log density``
            (gradient M-step on the simplex), or ``None`` (maximum likelihood).
        gradient_options: stopping rules of the gradient M-step, where used.

    Example:
        >>> model = em.Mixture(em.Normal(), n_components=3, weights_prior=priors.Dirichlet(1.5))
        >>> res = em.fit(model, x, key=jax.random.key(0), restarts=64)
        >>> res.params.weights, res.params.components.mean
    """

    def __init__(
        self,
        family: Family,
        n_components: int,
        *,
        weights_prior=None,
        gradient_options: GradientOptions | None = None,
    ):
        if isinstance(family, (list, tuple)):
            raise TypeError(
                "Mixture: mixing different families (a list) is not supported yet; "
                "pass one em.Family instance."
            )
        if isinstance(family, type) and issubclass(family, Family):
            raise TypeError(
                f"Mixture: family must be an instance, e.g. {family.__name__}(), not the class."
            )
        if not isinstance(family, Family):
            raise TypeError(f"Mixture: family must be an em.Family instance, got {family!r}.")
        if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
            raise TypeError(f"Mixture: n_components must be an integer, got {n_components!r}.")
        if n_components < 1:
            raise ValueError(f"Mixture: n_components must be >= 1, got {n_components}.")
        n_components = int(n_components)
        if weights_prior is not None and not callable(weights_prior):
            raise TypeError(
                "Mixture: weights_prior must be priors.Dirichlet, a function weights -> log "
                f"density, or None; got {type(weights_prior).__name__}."
            )
        if isinstance(weights_prior, _priors.Dirichlet):
            alpha = weights_prior.concentration
            if alpha.ndim == 1 and alpha.shape[0] != n_components:
                raise ValueError(
                    f"Mixture: weights_prior has {alpha.shape[0]} concentrations but "
                    f"n_components={n_components}."
                )
            if np.any(alpha < 1):
                raise ValueError(
                    "Mixture: weights_prior=priors.Dirichlet(concentration) needs concentration "
                    f">= 1 for the posterior mode to exist; got {weights_prior.concentration}."
                )
        self.family = family
        self.n_components = n_components
        self.weights_prior = weights_prior
        self.gradient_options = gradient_options or GradientOptions()
        self.m_step = None
        self.init = self._draw
        self._compiled = {}

    def __repr__(self) -> str:
        wp = "" if self.weights_prior is None else f", weights_prior={self.weights_prior!r}"
        return f"Mixture({self.family!r}, n_components={self.n_components}{wp})"

    @property
    def constraints(self):
        return MixtureParams(_constraints.simplex, dict(self.family.constraints))

    # -- the model -------------------------------------------------------------
    def component_log_prob(self, components, x) -> jax.Array:
        """``(N, K)`` log densities of each row under each component."""
        return jax.vmap(self.family.log_prob, in_axes=(0, None), out_axes=1)(components, x)

    def log_joint(self, params, x) -> jax.Array:
        return jnp.log(params.weights) + self.component_log_prob(params.components, x)

    def log_prior(self, params) -> jax.Array:
        lp = self.family.log_prior(params.components)
        if self.weights_prior is not None:
            lp = lp + jnp.sum(self.weights_prior(params.weights))
        return lp

    # -- the engine's protocol ---------------------------------------------------
    def _expect(self, params, x, sample_weight):
        resp, row_ll = e_step(self.log_joint(params, x))
        counts = jnp.sum(resp * sample_weight[:, None], axis=0)
        cf = closed_form_for(self.family)
        if cf is not None and cf.sufficient_stats is not None:
            stats = cf.sufficient_stats(self.family, params.components, x, resp, sample_weight)
            m_input = _MixtureEStep(counts, stats, None)
        else:
            m_input = _MixtureEStep(counts, None, resp)
        return row_ll, self.log_prior(params), m_input

    def _maximize(self, params, x, sample_weight, m_input):
        weights = self._update_weights(params.weights, m_input.counts)
        cf = closed_form_for(self.family)
        if cf is not None and cf.sufficient_stats is not None:
            comps = cf.update(self.family, params.components, m_input.stats)
        elif cf is not None:
            comps = cf.update(self.family, params.components, x, m_input.resp, sample_weight)
        else:
            comps = self._gradient_components(params.components, x, sample_weight, m_input.resp)
        return MixtureParams(weights, comps)

    def _update_weights(self, weights, counts):
        prior = self.weights_prior
        if prior is None or isinstance(prior, _priors.Dirichlet):
            alpha = 1.0 if prior is None else jnp.asarray(prior.concentration, counts.dtype)
            num = counts + alpha - 1
            return num / jnp.sum(num)
        total = jnp.sum(counts)

        def objective(w):
            return (jnp.sum(jnp.where(counts > 0, counts * jnp.log(w), 0)) + prior(w)) / total

        leaves = _constraints.broadcast(_constraints.simplex, weights)
        return maximize(objective, weights, leaves, self.gradient_options)

    def _gradient_components(self, components, x, sample_weight, resp):
        wr = resp * sample_weight[:, None]
        total = jnp.sum(sample_weight)

        def objective(theta):
            lp = self.component_log_prob(theta, x)
            q = jnp.sum(jnp.where(wr > 0, wr * lp, 0))
            return (q + self.family.log_prior(theta)) / total

        leaves = component_constraints(self.family, components)
        return maximize(objective, components, leaves, self.gradient_options)

    def _draw(self, key, x):
        k = self.n_components
        comps = self.family.init(key, x, k)
        return MixtureParams(jnp.full((k,), 1.0 / k, x.dtype), comps)

    # -- host-side validation ------------------------------------------------------
    def _can_draw(self) -> bool:
        return True

    def _check_data(self, x: np.ndarray) -> None:
        if x.shape[0] < self.n_components:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of samples "
                f"({x.shape[0]}); use at most {x.shape[0]} components or more data."
            )
        self.family.validate_data(x)

    def _check_params(self, params, x):
        if isinstance(params, dict) and set(params) == {"weights", "components"}:
            params = MixtureParams(**params)
        if not isinstance(params, tuple) or len(params) != 2:
            raise TypeError(
                "Mixture parameters must be em.MixtureParams(weights=(K,), components=...), "
                f"got {type(params).__name__}."
            )
        weights, comps = params
        k = self.n_components
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (k,):
            raise ValueError(f"init weights must have shape ({k},), got {w.shape}.")
        if not (np.all(w >= 0) and abs(w.sum() - 1) < 1e-5):
            raise ValueError(f"init weights must be non-negative and sum to 1, got {w}.")
        for path, leaf in jax.tree_util.tree_flatten_with_path(comps)[0]:
            shape = np.shape(leaf)
            if len(shape) == 0 or shape[0] != k:
                raise ValueError(
                    f"init components{jax.tree_util.keystr(path)} must have a leading axis of "
                    f"n_components={k}, got shape {shape}."
                )
        return super()._check_params(MixtureParams(w, comps), x)
