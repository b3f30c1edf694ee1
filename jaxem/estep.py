"""The E-step, and the public functions that evaluate a fitted model.

Responsibilities are ``softmax`` of the log joint over the K latent states; the
log-likelihood of each row is the ``logsumexp`` of the same values. Both stay
in log space, so components whose densities underflow in float32 still get
their (tiny) share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxem import _validation

__all__ = [
    "e_step",
    "weighted_sum",
    "pin_labels",
    "responsibilities",
    "log_likelihood",
    "predict",
]


def e_step(log_joint):
    """Posterior over latent states, and each row's log-likelihood.

    Args:
        log_joint: ``(N, K)`` values of ``log p(x_i, z_i = k | θ)``.

    Returns:
        ``(resp, row_ll)``: responsibilities ``(N, K)`` (rows sum to 1) and
        ``log p(x_i | θ)``, ``(N,)``.
    """
    # One max, one exp pass and one sum serve both results (softmax and
    # logsumexp separately would each make their own). A row that is -inf
    # throughout gets NaN responsibilities and -inf, as softmax/logsumexp give.
    top = jax.lax.stop_gradient(jnp.max(log_joint, axis=-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0)
    scaled = jnp.exp(log_joint - top)
    total = jnp.sum(scaled, axis=-1, keepdims=True)
    return scaled / total, (top + jnp.log(total))[..., 0]


def pin_labels(log_joint, labels):
    """Fix labelled rows to their state: ``-inf`` in every other column.

    With ``labels[i] = k >= 0`` row ``i``'s responsibilities become the
    indicator of ``k`` and its log-likelihood term ``log p(x_i, z_i = k)``:
    the objective of semi-supervised EM. ``labels`` of ``None`` changes nothing.
    """
    if labels is None:
        return log_joint
    states = jnp.arange(log_joint.shape[-1])
    other = (labels[:, None] >= 0) & (states[None, :] != labels[:, None])
    return jnp.where(other, -jnp.inf, log_joint)


def weighted_sum(sample_weight, row_values):
    """``Σ_i w_i v_i``, where a zero-weight row counts 0 even if ``v_i`` is -inf."""
    return jnp.sum(jnp.where(sample_weight > 0, sample_weight * row_values, 0))


def _prepared(model, params, x, missing, lengths=None):
    """Validated ``(params, x, observed)`` for the public evaluation functions."""
    x = model._as_units(x, lengths, missing)
    if missing == "marginalize":
        x, observed = _validation.prepare_data(model, x, missing, fitting=False)
    else:
        x, observed = _validation.prepare_data(model, x, missing, fitting=False), None
    return model._check_params(params, x), x, observed


def responsibilities(model, params, x, *, missing: str | None = None, lengths=None) -> jax.Array:
    """Posterior probabilities of the latent states, ``(N, K)``: ``model.posterior``.

    The model decides how: a softmax per unit for mixtures; a model with
    structure between units (a chain) computes its marginals its own way.
    ``missing="marginalize"``: NaN entries of ``x`` are integrated out (an
    ``em.Mixture`` only); a row with nothing observed gets the weights.
    For an ``em.HMM`` (``lengths=`` or a list of sequences): the smoothed
    marginals of every step, concatenated over sequences, ``(ΣT, K)``.

    Example:
        >>> r = em.responsibilities(model, res.params, x)   # rows sum to 1
    """
    params, x, observed = _prepared(model, params, x, missing, lengths)
    return model._per_step(model.posterior(params, x, observed), x)


def log_likelihood(model, params, x, *, missing: str | None = None, lengths=None) -> jax.Array:
    """``Σ_i log p(x_i | params)``, summed over units (no prior), a scalar.

    With ``missing="marginalize"``, the log-likelihood of the observed entries.

    Example:
        >>> em.log_likelihood(model, res.params, x)   # == res.log_likelihood
    """
    return jnp.sum(model.unit_log_likelihood(*_prepared(model, params, x, missing, lengths)))


def predict(model, params, x, *, missing: str | None = None, lengths=None) -> jax.Array:
    """Most probable latent state of each unit, ``(N,)`` integers: ``model.decode``.

    For an ``em.HMM``: the Viterbi path of every sequence, concatenated, ``(ΣT,)``.

    Example:
        >>> labels = em.predict(model, res.params, x)
    """
    params, x, observed = _prepared(model, params, x, missing, lengths)
    return model._per_step(model.decode(params, x, observed), x)
