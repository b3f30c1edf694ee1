"""``em.Model``: a latent-variable model given by its log complete-likelihood.

The engine (:mod:`jaxem.fit`, :mod:`jaxem.stream`) talks to a model through a
small protocol of pure functions, which a subclass may override:

* ``expect(params, data, sample_weight, extra, chunking) -> Expectation``: the
  E-step. Each unit's log-likelihood, the log prior, and ``stats``: whatever
  this model's M-step consumes (additive expected statistics summed over the
  units, or per-unit posteriors), so that the M-step never re-runs the E-step;
* ``maximize(params, data, sample_weight, stats, extra, chunking, fixed)``: the
  M-step, from those statistics;
* ``posterior`` / ``unit_log_likelihood`` / ``decode``: what a fitted model
  says about its latent states (a chain model answers with smoothed
  marginals, the forward likelihood and a Viterbi path);
* ``_draw(key, data)``: one random start.

``Model`` implements them from the user's ``log_joint`` / ``log_prior`` /
``m_step``: the posterior is the softmax of each unit's log joint (the
one-factor case of "marginals are the gradient of log Z", Eisner 2016) and
``stats`` are the responsibilities. :class:`jaxem.Mixture` works from its
families' sufficient statistics instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from jaxem import _validation, mstep
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem.chunks import rows_sum
from jaxem.estep import e_step, pin_labels
from jaxem.mstep import GradientOptions, expected_log_joint

__all__ = ["Model", "Expectation", "Extra"]


def is_jaxem_code(obj) -> bool:
    """Whether a class or function was defined in jaxem (not by a user)."""
    return (getattr(obj, "__module__", None) or "").startswith("jaxem.")


class Extra(NamedTuple):
    """Per-row side information the engine hands to a model with the data.

    Attributes:
        observed: ``None``, or a boolean array of ``x``'s shape, False where the
            entry was missing (its value in ``x`` is a placeholder).
        labels: ``None``, or ``(N,)`` int32 latent states, -1 where unknown.
    """

    observed: Any = None
    labels: Any = None


NO_EXTRA = Extra()


class Expectation(NamedTuple):
    """What a model's E-step returns to the engine.

    Attributes:
        unit_ll: ``(N,)`` log-likelihood ``log p(x_i | params)`` of each unit.
        log_prior: scalar log prior density of ``params``.
        stats: what the model's ``maximize`` consumes (a pytree): statistics
            summed over units, or per-unit posteriors.
    """

    unit_ll: jax.Array
    log_prior: jax.Array
    stats: Any


class Model:
    """A model with discrete latent states, fitted by EM.

    Args:
        log_joint: ``log_joint(params, x) -> (N, K)``, the values
            ``log p(x_i, z_i = k | params)``.
        log_prior: ``log_prior(params) -> scalar``; ``None`` fits the maximum
            likelihood estimate.
        constraints: a pytree prefix of ``params`` naming each leaf's support
            (``constraints.real`` by default, ``positive``, ``unit_interval``,
            ``simplex``, ``positive_definite``). A dict may omit real leaves.
        m_step: optional closed-form (or ECM) update
            ``m_step(params, x, resp, sample_weight) -> params`` that never
            decreases ``Q + log prior``. Without it the M-step runs L-BFGS on
            ``Q(θ|θt) + log prior`` until its gradient vanishes.
        init: ``init(key, x) -> params``, one random start; needed for restarts.
        gradient_options: stopping rules of the gradient M-step.

    Example:
        >>> def log_joint(params, x):
        ...     return jax.scipy.stats.binom.logpmf(x[:, None], 10, params["p"]) + jnp.log(0.5)
        >>> model = em.Model(log_joint, constraints={"p": constraints.unit_interval})
        >>> res = em.fit(model, heads, init={"p": jnp.array([0.6, 0.5])}, max_iter=10, tol=0.0)
    """

    def __init__(
        self,
        log_joint: Callable,
        log_prior: Callable | None = None,
        *,
        constraints: Any = None,
        m_step: Callable | None = None,
        init: Callable | None = None,
        gradient_options: GradientOptions | None = None,
    ):
        for name, fn in (
            ("log_joint", log_joint),
            ("log_prior", log_prior),
            ("m_step", m_step),
            ("init", init),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"Model: {name} must be callable, got {type(fn).__name__}.")
        if log_joint is None:
            raise TypeError("Model: log_joint is required: log_joint(params, x) -> (N, K).")
        self._log_joint = log_joint
        self._log_prior = log_prior
        self.constraints = constraints
        self.m_step = m_step
        self.init = init
        self.gradient_options = gradient_options or GradientOptions()
        self._compiled: dict = {}

    # -- the model -----------------------------------------------------------
    def log_joint(self, params, x) -> jax.Array:
        """``(N, K)`` values of ``log p(x_i, z_i = k | params)``."""
        return self._log_joint(params, x)

    def log_prior(self, params) -> jax.Array:
        """Log prior density of ``params`` (0 for maximum likelihood)."""
        if self._log_prior is None:
            return jnp.zeros((), _validation.float_dtype())
        return jnp.asarray(self._log_prior(params))

    # -- inference: what a fitted model says about its latent states ------------
    def _scores(self, params, x, observed=None):
        """``log_joint``, with the mask of observed entries where there is one."""
        return (
            self.log_joint(params, x) if observed is None else self.log_joint(params, x, observed)
        )

    def posterior(self, params, x, observed=None) -> jax.Array:
        """``(N, K)`` posterior marginals ``p(z_i = k | x, params)``.

        They are the gradient of the log-likelihood with respect to the log
        potentials ``log_joint`` (Eisner 2016); for independent units that
        gradient is the softmax of each row, computed directly. A model with
        structure between units overrides this (and the two below).
        """
        return jax.nn.softmax(self._scores(params, x, observed), axis=-1)

    def unit_log_likelihood(self, params, x, observed=None) -> jax.Array:
        """``(N,)`` log-likelihood ``log p(x_i | params)`` of each unit."""
        return logsumexp(self._scores(params, x, observed), axis=-1)

    def decode(self, params, x, observed=None) -> jax.Array:
        """``(N,)`` most probable latent state of each unit (the MAP assignment)."""
        return jnp.argmax(self._scores(params, x, observed), axis=-1)

    # -- the engine's protocol -------------------------------------------------
    def _posterior(self, params, x, sample_weight, labels):
        """``(resp (N, K), row_ll (N,))`` for some rows."""
        resp, row_ll = e_step(pin_labels(self.log_joint(params, x), labels))
        # A zero-weight row may have density 0 everywhere (nan softmax): drop it.
        return jnp.where(sample_weight[:, None] > 0, resp, 0), row_ll

    def expect(
        self, params, x, sample_weight, extra: Extra = NO_EXTRA, chunking=None
    ) -> Expectation:
        """E-step over the units of ``x``: an :class:`Expectation`.

        Args:
            params: the current parameters θt.
            x: the data (an array, or a pytree of arrays sharing the unit axis).
            sample_weight: ``(N,)`` unit weights (0 for padding).
            extra: missing-entry mask and labels (:class:`Extra`).
            chunking: ``None`` for one pass, or a :class:`jaxem.chunks.Chunking`.

        For a general ``log_joint`` the statistics are the ``(N, K)``
        responsibilities (what Q needs of it), carried to the M-step, chunked
        or not, so that it never re-runs the E-step.
        """
        if chunking is None:
            resp, row_ll = self._posterior(params, x, sample_weight, extra.labels)
            return Expectation(row_ll, self.log_prior(params), resp)

        def rows(xb, wb, lb):
            resp, row_ll = self._posterior(params, xb, wb, lb)
            return jnp.zeros((), wb.dtype), (row_ll, resp)

        _, (row_ll, resp) = rows_sum(rows, chunking, x, sample_weight, extra.labels)
        return Expectation(row_ll, self.log_prior(params), resp)

    def maximize(
        self,
        params,
        x,
        sample_weight,
        resp,
        extra: Extra = NO_EXTRA,
        chunking=None,
        fixed=None,
    ):
        """M-step from ``stats`` of :meth:`expect` at ``params`` (here the responsibilities).

        ``fixed``: masks (:mod:`jaxem.fixed`) of entries held at ``params``'s
        values; the gradient M-step moves only the others. A custom
        ``m_step`` runs as given and the engine restores the fixed entries
        after it (so it must be a conditional maximiser for them).
        Returns the new parameters (same pytree as ``params``).
        """
        if resp is None:  # a caller without the E-step's output (not the engine)
            resp = self._posterior(params, x, sample_weight, extra.labels)[0]
        if self.m_step is not None:
            return self.m_step(params, x, resp, sample_weight)
        total = jnp.sum(sample_weight)

        def q_rows(theta, xb, wb, rb):
            lj = self.log_joint(_fixed.freeze(fixed, theta, params), xb)
            return expected_log_joint(lj, wb[:, None] * rb)

        def objective(theta):
            if chunking is None:
                q = q_rows(theta, x, sample_weight, resp)
            else:

                def rows(xb, wb, rb):
                    return q_rows(theta, xb, wb, rb), None

                q, _ = rows_sum(rows, chunking, x, sample_weight, resp, checkpoint=True)
            return (q + self.log_prior(_fixed.freeze(fixed, theta, params))) / total

        leaves = _constraints.broadcast(self.constraints, params)
        return mstep.maximize(objective, params, leaves, self.gradient_options)

    def _event_masks_ok(self, path) -> bool:
        """Whether ``fixed=`` may fix single entries of the constrained leaf at ``path``."""
        return False

    def _as_units(self, x, lengths=None, missing=None):
        """The user's data as this model's units (a sequence model splits ``lengths``)."""
        if lengths is not None:
            raise TypeError(
                "lengths= splits data into sequences, for sequence models (em.HMM); this "
                f"model ({type(self).__name__}) takes independent units."
            )
        return x

    def _prepare_labels(self, labels, data, n_states: int):
        """``labels`` as per-unit int32 states (-1 unknown), validated on the host."""
        return _validation.prepare_labels(labels, _validation.n_units(data), n_states)

    def _per_step(self, out, data):
        """Per-unit outputs as the public functions return them (sequence models flatten)."""
        return out

    def _n_observations(self, data) -> int:
        """N in BIC's ``p log N``: the number of units."""
        return _validation.n_units(data)

    def _structural_zeros(self, params, masks=None) -> int:
        """Free constrained entries that are not parameters (an HMM's zero transitions)."""
        return 0

    def _held_entries(self, params):
        """Masks like ``params`` of entries the model holds (not parameters), or ``None``."""
        return None

    def _min_units(self) -> int:
        """Units needed to draw a start (a mixture: one per component)."""
        return int(getattr(self, "n_components", 1))

    def _shared_leaf(self, path) -> bool:
        """Whether the parameter at ``path`` is shared by all latent states (see ``fixed``)."""
        return False

    def _draw(self, key, x):
        """One random start."""
        return self.init(key, x)

    # -- host-side validation --------------------------------------------------
    def _check_data(self, x: np.ndarray) -> None:
        """Raise for data this model cannot fit (host array)."""
        self._check_support(x)

    def _check_support(self, x: np.ndarray) -> None:
        """Raise for data this model cannot score, whatever the number of rows (host array)."""

    def _condition_number(self, params) -> float | None:
        """Worst condition number of the fitted parameters' linear algebra (or ``None``)."""
        return None

    def _check_missing(self, x: np.ndarray) -> None:
        """Raise unless this model can integrate out NaN entries of ``x``."""
        raise ValueError(
            "missing='marginalize' needs a model that knows how to integrate out missing "
            "entries: an em.Mixture of built-in families (or families with "
            "independent_features = True). For a custom em.Model, handle NaN in log_joint "
            "yourself or impute before fitting."
        )

    def _n_states(self, x) -> int:
        """K, the number of latent states (from the model's own start)."""
        params = jax.eval_shape(self._draw, jax.random.key(0), x)
        return int(jax.eval_shape(self.log_joint, params, x).shape[-1])

    def _gemm_rows(self, extra, d: int) -> int | None:
        """Floats per row when every pass over the rows is a matrix product
        (:func:`jaxem.chunks.plan`'s ``gemm_width``), else ``None``."""
        return None

    def _pads_units(self, from_keys: bool) -> bool:
        """Whether ``fit`` may pad the units to a bucket size (:mod:`jaxem._buckets`).

        Repeated units with their weight split among the copies change no
        weighted sum, but a user's ``m_step`` might ignore ``sample_weight`` and
        a user's ``init`` might mind repeated rows: only jaxem's own code (and
        ``log_joint``, one row at a time) may see padded units.
        """
        if not is_jaxem_code(type(self)) or self.m_step is not None:
            return False
        return not from_keys or is_jaxem_code(self.init)

    def _can_draw(self) -> bool:
        return self.init is not None

    def _check_params(self, params, x, *, trace: bool = True):
        """Validate user-given parameters; return them cast to the float dtype.

        ``trace=False`` checks the values only, not the shapes against ``log_joint``
        (for the 2nd, 3rd, … of stacked starts, whose shapes are the first's).
        """
        dtype = _validation.float_dtype()

        def cast(leaf):
            arr = np.asarray(leaf)
            if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
                return jnp.asarray(arr, dtype)
            raise TypeError(f"parameters must be numeric arrays, got a leaf of dtype {arr.dtype}.")

        # A list of numbers is one array, not a pytree of scalars.
        params = jax.tree.map(cast, params, is_leaf=lambda a: isinstance(a, list))
        leaves = _constraints.broadcast(self.constraints, params)
        flat, _ = jax.tree_util.tree_flatten_with_path(params)
        cons = jax.tree.leaves(leaves, is_leaf=lambda c: isinstance(c, _constraints.Constraint))
        for (path, leaf), con in zip(flat, cons, strict=False):
            if not con.check(np.asarray(leaf)):
                raise ValueError(
                    f"init parameter {jax.tree_util.keystr(path)} is outside its support "
                    f"({con!r}): {np.asarray(leaf)}."
                )
        if not trace:
            return params
        # Tracing log_joint is most of a small fit's host time: once per signature.
        signature = tuple(
            (jax.tree.structure(t), tuple((np.shape(a), _dtype_of(a)) for a in leaves))
            for t in (params, x)
            for leaves in [jax.tree.leaves(t)]
        )
        # (kept in _compiled: a per-instance cache, not part of the model's value)
        checked = self.__dict__.setdefault("_compiled", {}).setdefault("shapes checked", set())
        if signature in checked:
            return params
        shapes = jax.tree.map(np.shape, x)
        n = _validation.n_units(x)
        try:
            out = jax.eval_shape(self.log_joint, params, x)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"the parameters do not fit data of shape {shapes} (check the number of "
                f"features and components): log_joint(params, x) failed with: {err}"
            ) from err
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(
                f"log_joint(params, x) must return shape (N, K) = ({n}, K), one row per unit "
                f"of x; it returned {out.shape}."
            )
        lp = jax.eval_shape(self.log_prior, params)
        if lp.shape != ():
            raise ValueError(
                f"log_prior(params) must return a scalar; it returned shape {lp.shape}."
            )
        if len(checked) >= 64:
            checked.clear()
        checked.add(signature)
        return params


def _dtype_of(leaf) -> np.dtype:
    """A leaf's dtype: an array's own, else NumPy's reading of a Python number or list."""
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.result_type(leaf)
