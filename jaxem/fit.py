"""The EM loop: one compiled program, all restarts under ``vmap``.

``fit`` validates on the host, then calls a jitted function that draws the
starts (or takes the user's), runs EM for every start (on a CPU one after the
other, ``lax.map``; on an accelerator in one ``lax.while_loop`` vmapped over
restarts, where finished restarts idle until the last one stops) and returns
every restart's final state. The best restart by objective is picked on the
host.

Each iteration is one M-step then one E-step; the E-step's output (the
objective and what the next M-step consumes) is carried, so each iteration
evaluates the model once. The loop stops when the objective's per-sample
improvement is ``<= tol``, at ``max_iter``, or if the objective stops being
finite (the last finite parameters are kept and a warning is raised).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _buckets, _programs, _validation
from jaxem import chunks as _chunks
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem.accelerate import ACCELERATORS, Point
from jaxem.chunks import pad_rows, pad_units
from jaxem.estep import weighted_sum
from jaxem.model import Extra, Model

__all__ = ["fit", "FitResult", "ConvergenceWarning"]

DEFAULT_MAX_ITER = 1000
DEFAULT_TOL = 1e-8
#: random starts are drawn from at most this many rows (a fixed random subset)
DRAW_ROWS = 1 << 16


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the objective settled."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What ``em.fit`` returns.

    Attributes:
        params: the best restart's parameters.
        objective: log-likelihood + log prior at ``params`` (summed over samples).
        log_likelihood: ``Σ_i w_i log p(x_i | params)``.
        n_iter: EM iterations run by the best restart (outer iterations with
            ``accelerate="squarem"``, each of which evaluates the EM map twice).
        n_evals: E-steps (objective evaluations) the best restart used, the
            starting one included: ``n_iter + 1`` for plain EM, ``3 n_iter + 1``
            with SQUAREM. Compare methods by this, not by ``n_iter``.
        converged: whether the best restart stopped by ``tol`` rather than ``max_iter``.
        history: ``(n_iter + 1,)`` objective after each iteration, starting at the
            initial parameters; non-decreasing.
        restart_objectives: ``(restarts,)`` final objective of every restart.
        restart_n_iter: ``(restarts,)`` iterations of every restart.
        restart_converged: ``(restarts,)`` convergence flag of every restart.
    """

    params: Any
    objective: float
    log_likelihood: float
    n_iter: int
    n_evals: int
    converged: bool
    history: np.ndarray
    restart_objectives: np.ndarray
    restart_n_iter: np.ndarray
    restart_converged: np.ndarray

    def standard_errors(self, model, x, **kwargs):
        """``em.standard_errors(model, self.params, x, **kwargs)``: a pytree like ``params``.

        Pass the fit's ``sample_weight``, ``fixed``, ``lengths`` or ``missing`` again.

        Example:
            >>> res.standard_errors(model, x).components.mean
        """
        from jaxem.uncertainty import standard_errors

        return standard_errors(model, self.params, x, **kwargs)

    def __repr__(self) -> str:
        return (
            f"FitResult(objective={self.objective:.6g}, log_likelihood={self.log_likelihood:.6g}, "
            f"n_iter={self.n_iter}, converged={self.converged}, "
            f"restarts={len(self.restart_objectives)})"
        )


class _State(NamedTuple):
    point: Point
    n_iter: jax.Array
    n_evals: jax.Array  # E-steps (objective evaluations), the honest unit of work
    step_max: jax.Array  # SQUAREM's largest step length
    history: jax.Array
    converged: jax.Array
    finite: jax.Array
    decreased: jax.Array  # an M-step lowered the objective beyond rounding: stopped there


def _em_parts(
    model: Model, x, sample_weight, extra, tol, hist_len: int, accelerate, chunking, masks=None
):
    """``(start, keep_going, step)`` of EM for one restart (traced; vmapped by the caller).

    ``masks`` (from :func:`jaxem.fixed.resolve`): entries kept at their start.
    """
    threshold = tol * jnp.sum(sample_weight)
    strategy = ACCELERATORS[accelerate]

    def evaluate(params) -> Point:
        row_ll, log_prior, m_input = model.expect(params, x, sample_weight, extra, chunking)
        ll = weighted_sum(sample_weight, row_ll)
        return Point(params, ll + log_prior, ll, row_ll, log_prior, m_input)

    def em_map(point: Point) -> Point:
        new = model.maximize(
            point.params, x, sample_weight, point.m_input, extra, chunking, fixed=masks
        )
        return evaluate(_fixed.restore(masks, new, point.params))

    def start(params) -> _State:
        first = evaluate(params)
        history = jnp.full((hist_len,), jnp.nan, first.objective.dtype).at[0].set(first.objective)
        false = jnp.zeros((), bool)
        one = jnp.ones((), first.objective.dtype)
        int0 = jnp.zeros((), jnp.int32)
        finite = jnp.isfinite(first.objective)
        return _State(first, int0, int0 + 1, one, history, false, finite, false)

    def keep_going(s: _State, max_iter):
        return (s.n_iter < max_iter) & ~s.converged & s.finite & ~s.decreased

    def step(s: _State) -> _State:
        leaves = _constraints.broadcast(model.constraints, s.point.params)
        eps = jnp.finfo(s.point.objective.dtype).eps
        # An extrapolated point (SQUAREM) keeps the fixed entries exactly too.
        held = (
            evaluate
            if masks is None
            else lambda params: evaluate(_fixed.restore(masks, params, s.point.params, leaves))
        )
        new, evals, step_max = strategy(em_map, held, leaves, s.point, s.step_max)
        # The improvement summed row by row: the difference of two float32
        # totals cannot resolve less than an ulp of the total (2.4e-4 at 3e3).
        gain = weighted_sum(sample_weight, new.row_ll - s.point.row_ll) + (
            new.log_prior - s.point.log_prior
        )
        # EM never lowers the objective. A tiny drop (rounding, or reg_covar's
        # shift of an otherwise exact update near the optimum, ~1e-12 relative)
        # means it has settled: stop at the better point. Rounding grows with
        # the conditioning (a covariance near rank deficiency, data far from
        # 0 in float32), so only a drop beyond sqrt(eps) relative (3e-4 in
        # float32, 1.5e-8 in float64) is taken for a broken M-step (a user
        # m_step, say): stop there too, and say so.
        scale = weighted_sum(sample_weight, jnp.abs(s.point.row_ll)) + 1
        noise = 8 * eps * scale
        decreased = gain < -noise
        broken = gain < -(noise + threshold + jnp.sqrt(eps) * scale)
        finite = jnp.isfinite(new.objective)
        advanced = _State(
            new,
            s.n_iter + 1,
            s.n_evals + evals,
            step_max,
            s.history.at[s.n_iter + 1].set(new.objective),
            gain <= threshold,
            finite,
            jnp.zeros((), bool),
        )
        # Never hand back parameters whose objective is nan, infinite or lower.
        ok = finite & ~decreased
        stopped = s._replace(
            finite=finite,
            converged=finite & ~broken,
            n_evals=s.n_evals + evals,
            decreased=broken,
        )
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), advanced, stopped)

    return start, keep_going, step


def _report(every: int):
    """Host side of ``progress``: one line on stderr every ``every`` iterations."""

    def report(iteration, best, active, restarts):
        print(
            f"jaxem: iteration {int(iteration):>6d}  best objective {float(best):.10g}  "
            f"({int(active)}/{int(restarts)} restarts running)",
            file=sys.stderr,
            flush=True,
        )

    return report


def _run_restarts(
    model,
    x,
    sample_weight,
    extra,
    starts,
    max_iter,
    tol,
    hist_len,
    accelerate,
    progress,
    chunking,
    masks=None,
):
    """EM for every start: one ``while_loop`` over the batch of restarts.

    Equivalent to ``vmap`` of a per-restart loop (finished restarts keep their
    state), written out so that ``progress`` can report once per iteration
    for all restarts together.
    """
    start, keep_going, step = _em_parts(
        model, x, sample_weight, extra, tol, hist_len, accelerate, chunking, masks
    )
    states = jax.vmap(start)(starts)
    n_restarts = jax.tree.leaves(starts)[0].shape[0]

    def going(states):
        return jax.vmap(keep_going, in_axes=(0, None))(states, max_iter)

    def body(carry):
        states, iteration = carry
        active = going(states)
        stepped = jax.vmap(step)(states)
        states = jax.tree.map(
            lambda a, b: jnp.where(active.reshape(active.shape + (1,) * (a.ndim - 1)), a, b),
            stepped,
            states,
        )
        iteration = iteration + 1
        if progress:
            best = jnp.max(
                jnp.where(jnp.isfinite(states.point.objective), states.point.objective, -jnp.inf)
            )
            jax.lax.cond(
                (iteration % progress == 0) | ~jnp.any(going(states)),
                lambda: jax.debug.callback(
                    _report(progress),
                    iteration,
                    best,
                    jnp.sum(going(states)),
                    n_restarts,
                    ordered=True,
                ),
                lambda: None,
            )
        return states, iteration

    def cond(carry):
        return jnp.any(going(carry[0]))

    return jax.lax.while_loop(cond, body, (states, jnp.zeros((), jnp.int32)))[0]


def _run_restarts_in_turn(
    model, x, sample_weight, extra, starts, max_iter, tol, hist_len, accelerate, chunking, masks
):
    """EM for every start, one after the other (``lax.map``): each its own ``while_loop``.

    Same results as :func:`_run_restarts`, which steps all restarts together;
    used where that lockstep wastes work (see :func:`_in_turn`).
    """
    start, keep_going, step = _em_parts(
        model, x, sample_weight, extra, tol, hist_len, accelerate, chunking, masks
    )

    def one(params):
        return jax.lax.while_loop(lambda s: keep_going(s, max_iter), step, start(params))

    return jax.lax.map(one, starts)


def _in_turn(backend, progress: int, restarts: int) -> bool:
    """Whether restarts run one after the other rather than stepped together.

    On a CPU, yes. Stepped together, every EM iteration of the batch waits for
    its slowest restart (a gradient M-step's inner L-BFGS loop has its own
    length), and the batch runs until the slowest restart converges; a CPU
    gains little from the batch to pay for that. Measured here: 32 restarts of
    a custom density (gradient M-step) 15.6 s together, 2.8 s in turn, 5.3 s as
    32 separate fits; 16 restarts of a full-covariance Gaussian mixture on
    (1e5, 2) data, to ``tol``, 5.6 s together and 3.5 s in turn. At a fixed
    number of iterations together can win where restarts share a GEMM
    (diagonal Gaussians), but runs to ``tol`` are the common case.
    Accelerators, where the batch fills the device, and ``progress`` (one line
    per iteration for all restarts) keep the batch; a single restart runs
    unbatched (unless ``progress``).
    """
    if progress:
        return False
    # One restart: in turn is no batch at all (a vmap of one would turn every
    # lax.cond of the model into a select that runs both branches).
    return restarts == 1 or backend in (None, "cpu")


def _compiled(
    model: Model,
    hist_len: int,
    from_keys: bool,
    accelerate,
    progress: int,
    chunking,
    masks=None,
    in_turn: bool = False,
    n_keys: int | None = None,
):
    """The jitted EM program for this model (shared by equal models, see ``_programs``).

    ``from_keys``: ``starts`` is one key, and the program draws ``n_keys`` random
    starts from ``fold_in(key, i)`` (:func:`jaxem._validation.restart_keys`).
    """
    settings = (
        n_keys,
        in_turn,
        hist_len,
        from_keys,
        accelerate,
        progress,
        chunking,
        _fixed.cache_key(masks),
    )

    def build():
        def run(x, sample_weight, extra, starts, max_iter, tol, x_draw):
            if sample_weight is None:  # unit weights: a broadcast XLA fuses, not an (N,) input
                sample_weight = jnp.ones(_validation.n_units(x), tol.dtype)
            if from_keys:  # the restart keys inside the program: no program of their own
                keys = _validation.fold_in_each(starts, n_keys)
                starts = jax.vmap(model._draw, in_axes=(0, None))(keys, x_draw)
            if chunking is not None:
                # Padded rows repeat row 0 (inside the support) with zero weight.
                observed = extra.observed
                x = pad_units(x, chunking)
                sample_weight = pad_rows(sample_weight, chunking, 0)
                extra = Extra(
                    None if observed is None else pad_rows(observed, chunking, observed[0]),
                    None if extra.labels is None else pad_rows(extra.labels, chunking, -1),
                )
            if in_turn:
                final = _run_restarts_in_turn(
                    model, x, sample_weight, extra, starts, max_iter, tol, hist_len,
                    accelerate, chunking, masks,
                )  # fmt: skip
            else:
                final = _run_restarts(
                    model,
                    x,
                    sample_weight,
                    extra,
                    starts,
                    max_iter,
                    tol,
                    hist_len,
                    accelerate,
                    progress,
                    chunking,
                    masks,
                )
            return final._replace(point=final.point._replace(m_input=None, row_ll=None)), starts

        return jax.jit(run)

    return _programs.get(model, settings, build)


def _bucketed(model: Model, x, n: int, n_devices: int, from_keys: bool) -> bool:
    """Whether the units are padded to a bucket size (:mod:`jaxem._buckets`).

    On one device, up to ``_buckets.MAX_UNITS`` units, for models whose code
    that reads the units is jaxem's own (see ``Model._pads_units``).
    """
    if n_devices != 1 or n > _buckets.MAX_UNITS:
        return False
    if not all(a.is_fully_addressable for a in jax.tree.leaves(x)):
        return False
    return model._pads_units(from_keys)


def _pad_to_bucket(x, sample_weight, extra: Extra, pad):
    """Units repeated up to the bucket size, each repeated unit's weight split among its copies."""
    idx, share = pad
    return _take_padded(x, sample_weight, extra, idx, share)  # host arrays: no staging ops


@jax.jit
def _take_padded(x, sample_weight, extra: Extra, idx, share):
    """:func:`_pad_to_bucket`'s gathers as one program (run eagerly, each op would be one)."""
    take = functools.partial(_validation.take_units, index=idx)
    weight = take(sample_weight) * share.astype(sample_weight.dtype)
    observed = None if extra.observed is None else take(extra.observed)
    labels = None if extra.labels is None else take(extra.labels)
    return take(x), weight, Extra(observed, labels)


def _pick(tree, i: int):
    """Entry ``i`` of every batched leaf, put back on its leaf's device: indexed
    on the host (no small compiled op per leaf in a fresh process)."""

    def one(a):
        if not a.is_fully_addressable or len(a.devices()) != 1:
            return a[i]
        return jax.device_put(np.asarray(a)[i], next(iter(a.devices())))

    return jax.tree.map(one, tree)


def _n_states(model: Model, x, starts, from_keys: bool) -> int:
    """K, the number of latent states, from the model or its starts' shapes."""
    if hasattr(model, "n_components"):
        return model.n_components
    if from_keys:
        return model._n_states(x)
    one = jax.tree.map(lambda a: a[0], starts)
    return int(jax.eval_shape(model.log_joint, one, x).shape[-1])


def _stack_starts(model: Model, init, x, restarts: int):
    """``init`` as a batch of starts with a leading restart axis (validated on the host)."""
    if restarts == 1:
        return jax.tree.map(lambda a: a[None], model._check_params(init, x))
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(init)}
    if sizes != {restarts}:
        raise ValueError(
            f"restarts={restarts} with init: init must then hold {restarts} starts, stacked "
            f"along a leading axis of every leaf (found leading sizes {sorted(map(str, sizes))}). "
            "Pass one start with restarts=1, or key= and restarts= to draw random starts."
        )
    # Host-side validation, before anything is traced: the first start in full (shapes
    # against log_joint, which traces it), the others' values only (their shapes are
    # the first's), then one stacked array per leaf.
    host = jax.tree.map(np.asarray, init)
    checked = [
        model._check_params(jax.tree.map(lambda a, i=i: a[i], host), x, trace=i == 0)
        for i in range(restarts)
    ]
    return jax.tree.map(lambda *a: jnp.asarray(np.stack([np.asarray(v) for v in a])), *checked)


def _decrease_message(model: Model, params, dtype, n_iter: int) -> str:
    """Why an M-step lowered the objective: float32 conditioning when the numbers say so.

    A covariance with condition number ``c`` loses about ``log10(c)`` of
    float32's 7 digits in its Cholesky factor; beyond ``c·eps ≈ 1e-3`` (c of
    about 1e4) the exact update's objective is no longer resolved, which is
    what duplicate or collinear columns with a small ``reg_covar`` produce.
    """
    eps = float(np.finfo(dtype).eps)
    cond = model._condition_number(params)
    tail = "The last parameters before the drop are returned (converged=False)."
    if cond is not None and np.dtype(dtype) == np.float32 and cond * eps > 1e-3:
        return (
            f"float32 cannot resolve this problem: a fitted covariance has condition number "
            f"{cond:.2g} (float32 keeps about 7 digits), as duplicate or collinear columns "
            "give; so an M-step lowered the objective after iteration "
            f"{n_iter}. Drop redundant columns, raise reg_covar, or fit in float64 (wrap "
            f"the call in `with jax.enable_x64(True):`). {tail}"
        )
    reg = max((getattr(f, "reg_covar", 0) for f, _ in getattr(model, "_blocks", ())), default=0)
    if reg > 0:
        return (
            f"the objective dropped after iteration {n_iter}: reg_covar={reg:g} is added to "
            "the covariance update, which is then no longer the likelihood's maximiser, so the "
            "likelihood can fall (scikit-learn's update does the same and does not check). Use "
            "a smaller reg_covar, reg_covar=0, or a covariance prior (a MAP fit that EM "
            "ascends). " + tail
        )
    return (
        f"an M-step lowered the objective after iteration {n_iter}, which EM never does: the "
        "M-step is wrong (check a custom m_step or closed form with em.check_m_step), or "
        "float32 cannot resolve this problem (try jax.enable_x64). " + tail
    )


def _fixed_masks(model: Model, fixed, x, starts, from_keys: bool):
    """``fixed`` resolved against the shapes of one start (``None`` if nothing is fixed)."""
    if fixed is None:
        return None
    if from_keys:
        one = jax.eval_shape(model._draw, jax.random.key(0), x)
    else:
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), starts)
    return _fixed.resolve(fixed, one, model.constraints, model._event_masks_ok, model._shared_leaf)


def _history_length(max_iter: int) -> int:
    # A power of two, so that changing max_iter rarely recompiles.
    return max(16, 1 << int(max_iter).bit_length())


def fit(
    model: Model,
    x,
    *,
    init=None,
    key=None,
    restarts: int = 1,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    sample_weight=None,
    labels=None,
    missing: str | None = None,
    accelerate: str | None = None,
    progress: int = 0,
    chunk_size: int | None = None,
    fixed=None,
    lengths=None,
) -> FitResult:
    """Fit ``model`` to ``x`` by EM; return the best of ``restarts`` runs.

    Args:
        model: an ``em.Model`` or ``em.Mixture``.
        x: ``(N,)`` or ``(N, D)`` data (NumPy or JAX). Cast to float32, or
            float64 when ``jax_enable_x64`` is on.
        init: one start (a params pytree; for a mixture an ``em.MixtureParams``),
            or, with ``restarts=R``, R starts stacked along a leading axis of
            every leaf (e.g. from ``jax.vmap(model.init, (0, None))(keys, x)``).
        key: a ``jax.random.key`` (or int seed) to draw ``restarts`` starts
            with ``model.init``; required when ``init`` is not given. Starts
            are drawn from the positive-weight rows, or from a fixed random
            subset of 65536 of them when there are more.
        restarts: number of random starts, all in one compiled program: on
            a CPU one after the other, on an accelerator together under ``vmap``.
        max_iter: maximum EM iterations per restart (0 evaluates the start).
        tol: stop when the objective improves by no more than ``tol`` per
            unit of sample weight (per sample, for unit weights).
        sample_weight: ``(N,)`` non-negative weights of the rows: integer
            weights give the fit of repeated rows, zero weights drop rows.
        labels: ``(N,)`` integers, the latent state of each row where known and
            -1 where not (semi-supervised EM): a labelled row's responsibilities
            are fixed to its state and it adds ``log p(x_i, z_i = label)`` to the
            objective, so components come out in label order.
        missing: ``None`` (NaN in ``x`` raises) or ``"marginalize"``: NaN entries
            are missing values, integrated out exactly. The objective is then the
            observed-data log-likelihood (+ log prior). Families with
            independent features drop the missing terms; ``MultivariateNormal``
            uses the marginal of the observed entries and, in the M-step, the
            conditional moments of the missing ones (Ghahramani & Jordan 1994).
            A row with nothing observed adds nothing and keeps the prior weights
            as responsibilities. Needs an ``em.Mixture``.
        accelerate: ``None`` (plain EM) or ``"squarem"``: squared extrapolation
            of the EM map (Varadhan & Roland 2008) that falls back to the plain
            EM step whenever the jump would not improve the objective, so the
            objective still never decreases and the fixed point is the same.
        progress: 0 (silent) or N: print the iteration, the best objective so
            far and the number of restarts still running to stderr every N
            iterations, from inside the compiled loop. Off, it costs nothing
            (the callback is not compiled in).
        chunk_size: rows per chunk of the passes over the data, or ``None`` to
            choose: one pass for small problems, else chunks of about
            ``2^20 / (K·D)`` rows. Chunked, the E-step, the sufficient
            statistics and the gradient M-step's objective are accumulated
            chunk by chunk inside the compiled loop, so no ``(N, K)`` array is
            ever formed (responsibility-based closed forms and a custom
            ``m_step`` still see all rows at once). The result is the unchunked
            one up to summation order.
        fixed: parameters that keep their starting values: a set of field
            names (``{"weights"}``; every leaf whose path has that name) or a
            pytree prefix of the parameters with booleans, or boolean arrays
            over a leaf's leading axes (one flag per component), as leaves
            (``em.MixtureParams(weights=True, components=False)``). Each
            M-step maximises over the free entries only (a conditional
            maximisation, so EM stays monotone): closed forms where the
            fixed part is whole (weights, a whole family's parameters), the
            gradient M-step for a family with some fields or components fixed,
            with the mixture weights' free entries rescaled to what the fixed
            ones leave. With random starts each restart keeps its own drawn
            values; pass ``init=`` to fix known values. Count free parameters
            with ``em.n_parameters(model, params, fixed=...)`` (and ``bic``/
            ``aic``).
        lengths: for a sequence model (``em.HMM``): the lengths of the
            sequences whose concatenation is ``x`` (hmmlearn's convention).
            ``x`` may instead be a list of sequences. The units are then the
            sequences: ``sample_weight`` has one weight per sequence.

    The result is deterministic: the same data, key and arguments give the
    same result on the same device and JAX version.

    Compilation: one program per model value, options and bucket of row
    counts. On one device, up to 2^20 units are padded to a bucket size (four
    per doubling, then multiples of 4096: at most 25% more rows) by repeating units, each repeated
    unit's weight split between its copies, so the objective and every
    M-step are unchanged and nearby N share a program; random starts are then
    drawn from the padded rows (the repeated ones spread evenly over the
    data). Models with a user's ``m_step``, registered closed form, or (for
    random starts) ``init`` are not padded.

    Returns:
        A :class:`FitResult` for the restart with the highest objective.

    Example:
        >>> model = em.Mixture(em.Normal(), n_components=2)
        >>> res = em.fit(model, x, key=jax.random.key(0), restarts=16)
        >>> res.params.components.mean, res.objective, res.converged
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    restarts = _validation.check_int("restarts", restarts, 1)
    max_iter = _validation.check_int("max_iter", max_iter, 0)
    tol = _validation.check_tol(tol)
    if not isinstance(accelerate, (str, type(None))) or accelerate not in ACCELERATORS:
        raise ValueError(f"accelerate must be None or 'squarem', got {accelerate!r}.")
    accelerate = None if accelerate == "none" else accelerate
    progress = _validation.check_int("progress", progress, 0)
    if chunk_size is not None:
        chunk_size = _validation.check_int("chunk_size", chunk_size, 1)
    x = model._as_units(x, lengths, missing)
    if missing == "marginalize":
        x, observed = _validation.prepare_data(model, x, missing)
    else:
        x, observed = _validation.prepare_data(model, x, missing), None
    user_weights = sample_weight
    n = _validation.n_units(x)
    lead = _validation.first_leaf(x)  # where the units live (sharding, device)
    sample_weight = _validation.prepare_sample_weight(sample_weight, n, like=lead)

    if init is not None:
        if key is not None:
            raise ValueError("pass either init= (one start) or key= (random starts), not both.")
        starts = _stack_starts(model, init, x, restarts)
        from_keys = False
    else:
        if key is None:
            raise ValueError(
                "fit needs init= (a start) or key= (e.g. key=jax.random.key(0)) to draw "
                f"{restarts} random start(s)."
            )
        if not model._can_draw():
            raise ValueError(
                "this model has no init(key, x) to draw random starts: pass init= or build "
                "the model with em.Model(..., init=...)."
            )
        starts = _validation.as_key(key)  # the program folds in each restart's index
        from_keys = True
    n_states = _n_states(model, x, starts, from_keys)
    if labels is not None:
        labels = _validation.place_like(model._prepare_labels(labels, x, n_states), lead)
    extra = Extra(observed, labels)

    n_devices = len(lead.sharding.device_set) if isinstance(lead, jax.Array) else 1
    x_rows, w_rows = x, sample_weight  # the user's units, for drawing starts
    bucketed = _bucketed(model, x, n, n_devices, from_keys)
    if bucketed and (pad := _buckets.index(n)) is not None:
        x, sample_weight, extra = _pad_to_bucket(x, sample_weight, extra, pad)
        n = _validation.n_units(x)
    features = _validation.unit_size(x)
    backend = _validation.backend(lead)
    in_turn = _in_turn(backend, progress, restarts)
    chunking = _chunks.plan(
        n,
        n_states,
        features,
        chunk_size,
        n_devices,
        backend,
        1 if in_turn else restarts,
        gemm_width=model._gemm_rows(extra, features),
    )
    masks = _fixed_masks(model, fixed, x, starts, from_keys)
    program = _compiled(
        model,
        _history_length(max_iter),
        from_keys,
        accelerate,
        progress,
        chunking,
        masks,
        in_turn,
        restarts if from_keys else None,
    )
    # Random starts come from rows that count: a zero-weight row must not seed a component.
    if user_weights is None:
        x_draw = x_rows
    elif w_rows.is_fully_addressable:
        positive = np.asarray(w_rows) > 0
        x_draw = x_rows if positive.all() else _validation.take_units(x_rows, positive)
    else:  # rows on several processes: draw from all of them
        x_draw = x_rows
    n_draw = _validation.n_units(x_draw)
    addressable = all(a.is_fully_addressable for a in jax.tree.leaves(x_draw))
    if from_keys and n_draw > DRAW_ROWS and addressable:
        # Starts (k-means++ and friends) from a fixed random subset of the
        # units (every array of a data pytree alike): their (rows, K)
        # temporaries must not scale with N.
        pick = np.random.default_rng(0).choice(n_draw, DRAW_ROWS, replace=False)
        x_draw = _validation.take_units(x_draw, np.sort(pick))
        n_draw = DRAW_ROWS
    if from_keys and n_draw < model._min_units():
        raise ValueError(
            f"sample_weight leaves {n_draw} rows with positive weight, fewer than "
            f"n_components={model.n_components}."
        )
    if not from_keys:
        # unused: a fixed shape, so weights and row counts do not recompile
        x_draw = _validation.take_units(x, slice(0, 1))
    elif bucketed and x_draw is x_rows:
        x_draw = x  # the padded rows themselves: no second copy
    elif bucketed and (pad := _buckets.index(n_draw)) is not None:
        x_draw = _validation.take_units(x_draw, pad[0])  # starts from evenly repeated rows
    # bucketed: always weights, so a full bucket and a padded one share a program
    weights_arg = None if user_weights is None and not bucketed else sample_weight
    dtype = _validation.float_dtype()
    tol_arg = np.asarray(tol, dtype)  # a host scalar: no small program of its own
    final, _ = program(x, weights_arg, extra, starts, max_iter, tol_arg, x_draw)

    objectives = np.asarray(final.point.objective, dtype=np.float64)
    n_iters = np.asarray(final.n_iter)
    converged = np.asarray(final.converged)
    finite = np.asarray(final.finite)
    ranked = np.where(np.isfinite(objectives), objectives, -np.inf)
    best = int(np.argmax(ranked))
    params = _pick(final.point.params, best)
    history = np.asarray(final.history)[best][: n_iters[best] + 1]

    if not np.isfinite(objectives[best]):
        warnings.warn(
            "the objective is not finite at any start: check the data, the starts and the "
            "model's support.",
            RuntimeWarning,
            stacklevel=2,
        )
    elif np.asarray(final.decreased)[best]:
        warnings.warn(
            _decrease_message(model, params, dtype, int(n_iters[best])),
            RuntimeWarning,
            stacklevel=2,
        )
    elif not finite[best]:
        warnings.warn(
            f"the objective became non-finite after iteration {n_iters[best]}; the last finite "
            "parameters are returned (converged=False).",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not converged[best] and tol > 0 and max_iter > 0:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (tol={tol:g} per sample); "
            "raise max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return FitResult(
        params=params,
        objective=float(objectives[best]),
        log_likelihood=float(np.asarray(final.point.log_likelihood)[best]),
        n_iter=int(n_iters[best]),
        n_evals=int(np.asarray(final.n_evals)[best]),
        converged=bool(converged[best]),
        history=history,
        restart_objectives=objectives,
        restart_n_iter=n_iters,
        restart_converged=converged,
    )
