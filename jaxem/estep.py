"""The E-step, and the public functions that evaluate a fitted model.

Responsibilities are ``softmax`` of the log joint over the K latent states; the
log-likelihood of each row is the ``logsumexp`` of the same values. Both stay
in log space, so components whose densities underflow in float32 still get
their (tiny) share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from jaxem import _validation

__all__ = ["e_step", "weighted_sum", "responsibilities", "log_likelihood", "predict"]


def e_step(log_joint):
    """Posterior over latent states, and each row's log-likelihood.

    Args:
        log_joint: ``(N, K)`` values of ``log p(x_i, z_i = k | θ)``.

    Returns:
        ``(resp, row_ll)``: responsibilities ``(N, K)`` (rows sum to 1) and
        ``log p(x_i | θ)``, ``(N,)``.
    """
    return jax.nn.softmax(log_joint, axis=-1), logsumexp(log_joint, axis=-1)


def weighted_sum(sample_weight, row_values):
    """``Σ_i w_i v_i``, where a zero-weight row counts 0 even if ``v_i`` is -inf."""
    return jnp.sum(jnp.where(sample_weight > 0, sample_weight * row_values, 0))


def responsibilities(model, params, x) -> jax.Array:
    """Posterior probabilities of the latent states, ``(N, K)``.

    Example:
        >>> r = em.responsibilities(model, res.params, x)   # rows sum to 1
    """
    x = _validation.prepare_data(model, x)
    params = model._check_params(params, x)
    return jax.nn.softmax(model.log_joint(params, x), axis=-1)


def log_likelihood(model, params, x) -> jax.Array:
    """``Σ_i log p(x_i | params)``, summed over samples (no prior), a scalar.

    Example:
        >>> em.log_likelihood(model, res.params, x)   # == res.log_likelihood
    """
    x = _validation.prepare_data(model, x)
    params = model._check_params(params, x)
    return jnp.sum(logsumexp(model.log_joint(params, x), axis=-1))


def predict(model, params, x) -> jax.Array:
    """Most probable latent state of each row, ``(N,)`` integers.

    Example:
        >>> labels = em.predict(model, res.params, x)
    """
    x = _validation.prepare_data(model, x)
    params = model._check_params(params, x)
    return jnp.argmax(model.log_joint(params, x), axis=-1)
