"""Supports of parameters, and the bijections the gradient M-step optimises through.

Each constraint maps an unconstrained array ``u`` to a valid parameter value
(``to_constrained``) and back (``to_unconstrained``). The gradient M-step runs
L-BFGS on ``u``; no Jacobian term is added, because we seek the mode of the
declared objective in the *parameter's* own coordinates, which a bijection
does not move.

Example:
    >>> from jaxem import constraints
    >>> constraints.positive.to_constrained(0.0)
    Array(1., dtype=float32, weak_type=True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _prefix

__all__ = [
    "Constraint",
    "real",
    "positive",
    "unit_interval",
    "simplex",
    "positive_definite",
]


class Constraint:
    """A parameter's support with a bijection from unconstrained space.

    Subclasses implement ``to_constrained``, ``to_unconstrained`` and
    ``check`` (a host-side test used to validate user-given parameters).
    """

    name = "constraint"

    def to_constrained(self, u):
        raise NotImplementedError  # abstract

    def to_unconstrained(self, value):
        raise NotImplementedError  # abstract

    def check(self, value: np.ndarray) -> bool:
        """True when every entry of ``value`` lies in the support."""
        raise NotImplementedError  # abstract

    def n_free(self, shape: tuple) -> int:
        """Free (unconstrained) dimensions of a value of this ``shape``."""
        return int(np.prod(shape, dtype=np.int64))

    def __repr__(self) -> str:
        return f"constraints.{self.name}"


class _Real(Constraint):
    name = "real"

    def to_constrained(self, u):
        return jnp.asarray(u)

    def to_unconstrained(self, value):
        return jnp.asarray(value)

    def check(self, value):
        return bool(np.all(np.isfinite(value)))


class _Positive(Constraint):
    # exp, not softplus: scale parameters are best optimised on a log scale.
    name = "positive"

    def to_constrained(self, u):
        return jnp.exp(u)

    def to_unconstrained(self, value):
        return jnp.log(value)

    def check(self, value):
        return bool(np.all(np.isfinite(value)) and np.all(value > 0))


class _UnitInterval(Constraint):
    name = "unit_interval"

    def to_constrained(self, u):
        return jax.nn.sigmoid(u)

    def to_unconstrained(self, value):
        value = jnp.asarray(value)
        eps = jnp.finfo(value.dtype).eps
        value = jnp.clip(value, eps, 1 - eps)
        return jnp.log(value) - jnp.log1p(-value)

    def check(self, value):
        return bool(np.all((value >= 0) & (value <= 1)))


class _Simplex(Constraint):
    """Probability vectors along the last axis: ``u`` has one entry fewer.

    ``value = softmax([u, 0])``: the additive log-ratio transform.
    """

    name = "simplex"

    def to_constrained(self, u):
        u = jnp.asarray(u)
        zero = jnp.zeros(u.shape[:-1] + (1,), u.dtype)
        return jax.nn.softmax(jnp.concatenate([u, zero], axis=-1), axis=-1)

    def to_unconstrained(self, value):
        value = jnp.asarray(value)
        logv = jnp.log(jnp.maximum(value, jnp.finfo(value.dtype).tiny))
        return logv[..., :-1] - logv[..., -1:]

    def n_free(self, shape):
        # The entries of each vector sum to 1: one fewer free entry per vector.
        return int(np.prod(shape[:-1], dtype=np.int64)) * (shape[-1] - 1)

    def check(self, value):
        value = np.asarray(value)
        if value.ndim == 0:
            return False
        return bool(
            np.all(value >= 0) and np.allclose(value.sum(-1), 1.0, atol=1e-5 * value.shape[-1])
        )


class _PositiveDefinite(Constraint):
    """Symmetric positive-definite matrices on the last two axes.

    ``u`` is a square matrix whose lower triangle, with a log-diagonal, is the
    Cholesky factor: ``value = L @ L.T``. Its strict upper triangle is unused.
    """

    name = "positive_definite"

    def to_constrained(self, u):
        u = jnp.asarray(u)
        d = u.shape[-1]
        eye = jnp.eye(d, dtype=u.dtype)
        chol = jnp.tril(u, -1) + eye * jnp.exp(jnp.diagonal(u, axis1=-2, axis2=-1))[..., None, :]
        return chol @ jnp.swapaxes(chol, -1, -2)

    def to_unconstrained(self, value):
        value = jnp.asarray(value)
        chol = jnp.linalg.cholesky(value)
        d = value.shape[-1]
        eye = jnp.eye(d, dtype=value.dtype)
        logdiag = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1))
        return jnp.tril(chol, -1) + eye * logdiag[..., None, :]

    def n_free(self, shape):
        # A symmetric matrix: its lower triangle.
        d = shape[-1]
        return int(np.prod(shape[:-2], dtype=np.int64)) * d * (d + 1) // 2

    def check(self, value):
        value = np.asarray(value, dtype=np.float64)
        if value.ndim < 2 or value.shape[-1] != value.shape[-2]:
            return False
        if not np.allclose(value, np.swapaxes(value, -1, -2), rtol=1e-5, atol=1e-8):
            return False
        try:
            np.linalg.cholesky(value)
        except np.linalg.LinAlgError:
            return False
        return True


real = _Real()
positive = _Positive()
unit_interval = _UnitInterval()
simplex = _Simplex()
positive_definite = _PositiveDefinite()


def _is_constraint(node) -> bool:
    return isinstance(node, Constraint)


def broadcast(constraint_tree, params):
    """Expand a constraint pytree (a prefix of ``params``) to one per leaf.

    ``None`` means every leaf is ``real``. A dict may omit keys (they are
    ``real``) and may name the fields of a NamedTuple of parameters.

    Raises:
        ValueError: when the constraints do not match the parameters' structure.
    """
    try:
        return _prefix.expand(constraint_tree, params, _is_constraint, real, "constraints")
    except _prefix.PrefixError as err:
        raise ValueError(
            f"{err} Constraints are a pytree prefix of the parameters, for example "
            "{'p': constraints.unit_interval}."
        ) from None


def to_unconstrained(constraint_leaves, params):
    """Map params to unconstrained space leaf by leaf (constraints from :func:`broadcast`)."""
    return jax.tree.map(
        lambda c, p: c.to_unconstrained(p), constraint_leaves, params, is_leaf=_is_constraint
    )


def to_constrained(constraint_leaves, u):
    """Inverse of :func:`to_unconstrained`."""
    return jax.tree.map(
        lambda c, p: c.to_constrained(p), constraint_leaves, u, is_leaf=_is_constraint
    )
