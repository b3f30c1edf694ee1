"""``em.bootstrap``: refit the model to resampled data, all replicates in one program.

Every replicate runs EM like ``em.fit``'s restarts: one after the other on a
CPU, together under ``vmap`` on an accelerator, all in one compiled program.
It starts at the fit, after Newton steps on its own data with the fit's
observed information (``start="newton"``, the default; see :func:`bootstrap`).

* ``kind="nonparametric"``: the units are resampled with replacement, as
  multinomial counts used as weights (the data are never copied);
* ``kind="parametric"``: each replicate draws N new units from the fitted
  model (``model.sample``; mixtures of densities).

Label switching is undone by matching each replicate's components to the
fit's: the permutation that maximises the agreement of their posteriors on
the data (``Σ_i r_ik r'_iπ(k)``), over all permutations for K ≤ 7 and greedily
beyond. This covers an ``em.Mixture`` of one family (with or without
gating: the permuted gating is re-expressed with the new component 0 as the
reference, which leaves every unit's weights unchanged) and an ``em.HMM``
(its states matched by their smoothed posteriors over every step; the
initial probabilities, both axes of the transition matrix and the
emissions permuted together). A mixture of a list of families is left as
fitted: its components are of different families and keep their places.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxem import _programs, _validation
from jaxem import chunks as _chunks
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem import uncertainty as _uncertainty
from jaxem.accelerate import ACCELERATORS
from jaxem.fit import _em_parts, _in_turn
from jaxem.gating import GatingParams
from jaxem.hmm import HMM, HMMParams
from jaxem.mixture import Mixture, MixtureParams
from jaxem.model import NO_EXTRA, Model
from jaxem.uncertainty import log_posterior

__all__ = ["bootstrap", "BootstrapResult"]

KINDS = ("nonparametric", "parametric")
_HI = jax.lax.Precision.HIGHEST  # no TF32 on GPUs
STARTS = ("newton", "fit")


class BootstrapResult(NamedTuple):
    """Replicate fits of :func:`bootstrap`.

    Attributes:
        samples: the replicates' parameters, every leaf with a leading
            ``(n_boot,)`` axis, components matched to the fit's.
        standard_errors: their standard deviation (``ddof=1``), shaped like the parameters.
        objectives: ``(n_boot,)`` each replicate's final objective (on its own data).
        converged: ``(n_boot,)`` whether each replicate met ``tol``.
        n_iter: ``(n_boot,)`` EM iterations of each replicate (after its Newton steps).
        start: ``"newton"`` when each replicate took Newton steps before
            EM, ``"fit"`` when they all started EM at the fit.
    """

    samples: Any
    standard_errors: Any
    objectives: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    start: str = "fit"

    def intervals(self, level: float = 0.95):
        """Percentile intervals ``(lower, upper)``, pytrees shaped like the parameters."""
        if not (isinstance(level, float | int) and 0 < level < 1):
            raise ValueError(f"level must be a number in (0, 1), got {level!r}.")
        tail = 50 * (1 - level)
        lower = jax.tree.map(lambda a: np.percentile(a, tail, axis=0), self.samples)
        upper = jax.tree.map(lambda a: np.percentile(a, 100 - tail, axis=0), self.samples)
        return lower, upper


def _program(
    model,
    hist_len: int,
    chunking,
    masks,
    parametric: bool,
    in_turn: bool,
    accelerate=None,
    newton=None,
):
    """The jitted replicates: EM for each row of weights (and data).

    ``in_turn``: one replicate after the other (``lax.map``), as ``em.fit``
    runs restarts on a CPU; otherwise all together under ``vmap``. In turn,
    ``rows`` (``(n_boot, M)`` indices, or ``None``) gathers each replicate's
    resampled units (weights ``(n_boot, M)``), so that EM passes over only those.

    ``newton``: ``None`` (EM starts at ``start``), or the static ``(leaves,
    unravel)`` of the unconstrained coordinates. Then ``shared = (u, C)``
    holds the fit's coordinates and inverse information, and ``per =
    (moved, predicted, start_objective)`` each replicate's first Newton point
    (:func:`_newton_program`), its predicted gain and the objective at the fit: the replicate
    takes Newton steps ``u ← u + C ∇ℓ_b(u)`` (:func:`_chord`) and EM starts
    at the best point they reached.
    """
    objective = None if newton is None else log_posterior(model, *newton, chunking)

    def one(x, w, start, max_iter, tol, shared, per):
        if chunking is not None:
            x = _chunks.pad_units(x, chunking)
            w = _chunks.pad_rows(w, chunking, 0)
        begin, keep_going, step = _em_parts(
            model, x, w, NO_EXTRA, tol, hist_len, accelerate, chunking, masks
        )
        if newton is None:
            state = begin(start)
        else:
            leaves, unravel = newton
            flat_u, cov = shared
            moved, predicted, start_objective = per
            best = _chord(
                objective, x, w, flat_u, cov, moved, start_objective, predicted, tol * jnp.sum(w)
            )
            # One EM step from where the Newton steps ended. If EM goes down from
            # there (no iteration kept), that point is not EM's fixed point (an
            # M-step that is not the objective's maximiser): start at the fit.
            state = begin(_back(leaves, unravel, masks, start, best))
            state = jax.lax.cond(max_iter > 0, step, lambda s: s, state)
            dropped = (state.n_iter == 0) & jnp.any(best != flat_u) & (max_iter > 0)
            state = jax.lax.cond(dropped, lambda: begin(start), lambda: state)
        state = jax.lax.while_loop(lambda s: keep_going(s, max_iter), step, state)
        return state.point.params, state.point.objective, state.converged, state.n_iter

    if not in_turn:
        x_axis = 0 if parametric else None
        batched = jax.vmap(one, in_axes=(x_axis, 0, None, None, None, None, 0))
        return jax.jit(lambda x, w, start, max_iter, tol, shared, per, rows: batched(
            x, w, start, max_iter, tol, shared, per
        ))  # fmt: skip

    def turn(x, w, start, max_iter, tol, shared, per, rows):
        def replicate(args):
            xb, wb, pb = args
            return one(xb, wb, start, max_iter, tol, shared, pb)

        if parametric:
            return jax.lax.map(replicate, (x, w, per))
        if rows is None:
            return jax.lax.map(lambda a: replicate((x, *a)), (w, per))
        return jax.lax.map(
            lambda a: replicate((jax.tree.map(lambda v: v[a[0]], x), *a[1:])), (rows, w, per)
        )

    return jax.jit(turn)


# Newton steps per replicate at most: each costs a gradient (about three
# E-steps); from the first Newton point, each shrinks the distance to the
# replicate's estimate by a factor ~ 1/sqrt(N) (measured at N = 2000: median
# error of the means 3.5e-3, 1.3e-4, 7e-6 after one, two, three steps).
_NEWTON_STEPS = 6
# A Newton point is kept only if it gains at least this share of the gain the
# quadratic model predicts (½ gᵀ C g), the classical trust-region test: where
# the log-likelihood is far from quadratic, EM takes over from the last good point.
_AGREEMENT = 0.25
# Observations (rows; an HMM's steps) per unconstrained coordinate below which
# the replicates start at the fit: a replicate's estimate lies about sqrt(U / N)
# from the fit (in the data's own units), and the quadratic model's error grows
# with that. Below it (iris, three Gaussians: 150 rows, 26 or 44 coordinates)
# the steps saved few EM iterations (236 of 2540, 106 of 1437 over 50
# replicates), cost more time than they saved, and 1 or 2 of the 50 replicates
# reached another local maximum than EM from the fit does.
_OBSERVATIONS_PER_COORDINATE = 10


def _chord(objective, x, w, flat_u, cov, moved, start_objective, predicted, threshold):
    """The best point of Newton steps with the fit's inverse information ``cov`` (flat ``u``).

    Starts from the fit (objective ``start_objective``) and its first Newton
    point ``moved`` (predicted gain ``predicted``); steps ``u ← u + C ∇ℓ_b(u)``
    while each raises the replicate's objective by more than ``threshold``
    (EM's own stopping rule) and by at least ``_AGREEMENT`` of the predicted
    gain, at most ``_NEWTON_STEPS`` gradients. The first step that fails
    either test ends them, unused: the best point so far is returned, the
    fit's coordinates if no step held.
    """
    value_and_grad = jax.value_and_grad(objective)

    def going(c):
        count, _, _, _, _, gain = c
        return (count < _NEWTON_STEPS) & (gain > threshold)

    def body(c):
        count, u, expect, best_u, best_v, _ = c
        value, grad = value_and_grad(u, x, w, None)
        gain = value - best_v
        held = jnp.isfinite(value) & (gain > 0) & (gain >= _AGREEMENT * expect)
        step = jnp.dot(cov, grad, precision=_HI)
        best_u = jnp.where(held, u, best_u)
        best_v = jnp.where(held, value, best_v)
        gain = jnp.where(held, gain, -jnp.inf)
        return count + 1, u + step, 0.5 * jnp.dot(grad, step), best_u, best_v, gain

    inf = jnp.asarray(jnp.inf, start_objective.dtype)
    first = (jnp.zeros((), jnp.int32), moved, predicted, flat_u, start_objective, inf)
    return jax.lax.while_loop(going, body, first)[3]


def _back(leaves, unravel, masks, start, flat):
    """The parameters at unconstrained ``flat``, entries held by ``fixed=`` exactly ``start``'s."""
    params = _constraints.to_constrained(leaves, unravel(flat))
    return params if masks is None else _fixed.restore(masks, params, start)


@partial(jax.jit, static_argnums=1)
def _resampled(weights: jax.Array, size: int):
    """``(rows, weights)``, each ``(n_boot, size)``: every replicate's units of nonzero weight.

    A replicate with fewer than ``size`` such units is padded with unit 0 at weight 0.
    """

    def one(w):
        (idx,) = jnp.nonzero(w > 0, size=size, fill_value=0)
        kept = jnp.arange(size) < jnp.sum(w > 0)
        return idx, jnp.where(kept, w[idx], 0)

    return jax.vmap(one)(weights)


def _compact_size(weights: jax.Array) -> int | None:
    """Units per replicate for :func:`_resampled`, or ``None`` when compacting saves little.

    A resample of N units holds about ``(1 - 1/e) N`` distinct ones. The
    largest count is rounded up to a multiple of ``N / 32`` (new keys rarely
    change it, so the program is reused).
    """
    n = weights.shape[1]
    largest = int(jnp.max(jnp.sum(weights > 0, axis=1)))
    quantum = max(8, -(-n // 32))
    size = quantum * -(-largest // quantum)
    return size if size <= 0.85 * n else None


def _newton_information(
    model, x, params, sample_weight, fixed, masks, lengths, chunk_size, n_boot, n_observations
):
    """``(flat_u, unravel, leaves, cov)`` for the replicates' Newton steps, or ``None``.

    ``cov`` is ``(U, U)``: the inverse observed information on the free
    unconstrained coordinates (:mod:`jaxem.uncertainty`), zero elsewhere, so
    entries held by ``fixed=`` or by the model do not move. ``None`` (every
    replicate starts at the fit) where the steps would not find EM's fixed
    points or would not pay:

    * a family that adds a ridge to its covariances (``reg_covar > 0``): EM's
      fixed point is then not the maximum of the objective the steps climb;
    * a structured covariance family (mclust's tied coordinates), or single
      entries of a simplex held by ``fixed=``: the information is not taken
      in those coordinates;
    * more than ``max(64, n_boot)`` free coordinates (the Hessian costs about
      one pass over the data per coordinate), or fewer than
      ``_OBSERVATIONS_PER_COORDINATE`` observations per free coordinate;
    * directions without information.
    """
    families = _uncertainty._families_of(model)
    if any(
        getattr(f, "reg_covar", 0) > 0 or getattr(f, "tied_coordinates", False) for f in families
    ):
        return None
    leaves = _constraints.broadcast(model.constraints, params)
    u = _constraints.to_unconstrained(leaves, params)
    flat_u, unravel = ravel_pytree(u)
    held = _uncertainty._merge(masks, model._held_entries(params))
    try:
        free = int(np.sum(_uncertainty._free_unconstrained(leaves, u, held)))
    except ValueError:  # single simplex entries held: no coordinates of their own
        return None
    if free > max(64, n_boot) or n_observations < _OBSERVATIONS_PER_COORDINATE * free:
        return None
    info = _uncertainty._information(
        model, params, x, sample_weight, fixed, lengths, None, chunk_size
    )
    if info.bad.any() or not np.all(np.isfinite(info.cov_u)):
        return None
    cov = np.zeros((flat_u.size, flat_u.size))
    cov[np.ix_(info.free, info.free)] = info.cov_u
    return flat_u, unravel, leaves, jnp.asarray(cov, flat_u.dtype)


def _newton_program(model, leaves, unravel, chunking, parametric: bool):
    """The jitted first Newton points: ``(moved, predicted, start_objective)``.

    ``moved``: ``(n_boot, U)`` unconstrained coordinates ``u + C g_b``,
    ``g_b`` the gradient of replicate ``b``'s objective at the fit's
    unconstrained coordinates ``u``; ``predicted`` ``(n_boot,)``: the gain
    ``½ g_bᵀ C g_b`` the quadratic model predicts for that step;
    ``start_objective`` ``(n_boot,)``: the objective at the fit.
    Nonparametric replicates reweight the same units, so these are products
    of the weights with each unit's log-likelihood and its gradient (forward
    mode, ``U`` tangents, chunk by chunk); parametric replicates are new
    data, one gradient each.
    """

    def natural(flat):
        return _constraints.to_constrained(leaves, unravel(flat))

    def prior(flat):
        return model.log_prior(natural(flat))

    def nonparametric(flat_u, cov, data, weights):
        wt = weights.T  # (N, n_boot): rows first, to go through the chunks
        if chunking is not None:
            data = _chunks.pad_units(data, chunking)
            wt = _chunks.pad_rows(wt, chunking, 0)

        def rows(xb, wb):
            def unit_ll(flat):
                ll = model.unit_log_likelihood(natural(flat), xb, None)
                return ll, ll

            jac, ll = jax.jacfwd(unit_ll, has_aux=True)(flat_u)  # (rows, U), (rows,)
            # Units of zero weight in every replicate (zero fit weight) may be -inf.
            seen = jnp.any(wb > 0, axis=1)
            jac = jnp.where(seen[:, None], jac, 0)
            ll = jnp.where(seen, ll, 0)
            return (jnp.dot(wb.T, jac, precision=_HI), jnp.dot(wb.T, ll, precision=_HI)), None

        (grad, value), _ = _chunks.rows_sum(rows, chunking, data, wt)
        lp, lp_grad = jax.value_and_grad(prior)(flat_u)
        return (*_first_step(flat_u, cov, grad + lp_grad), value + lp)

    objective = log_posterior(model, leaves, unravel, chunking)

    def redrawn(flat_u, cov, xs, weights):
        def one(args):
            xb, wb = args
            if chunking is not None:
                xb = _chunks.pad_units(xb, chunking)
                wb = _chunks.pad_rows(wb, chunking, 0)
            return jax.value_and_grad(objective)(flat_u, xb, wb, None)

        value, grad = jax.lax.map(one, (xs, weights))
        return (*_first_step(flat_u, cov, grad), value)

    return jax.jit(redrawn if parametric else nonparametric)


def _first_step(flat_u, cov, grad):
    """``(moved (n_boot, U), predicted gain (n_boot,))`` of Newton steps from ``flat_u``."""
    step = jnp.dot(grad, cov.T, precision=_HI)
    return flat_u + step, 0.5 * jnp.sum(grad * step, axis=1)


@partial(jax.jit, static_argnums=2)
def _weights(key, w: jax.Array, n_boot: int) -> jax.Array:
    """``(n_boot, N)`` multinomial resampling counts, scaled to the total weight."""
    n = w.shape[0]
    total = jnp.sum(w)
    p = w / total

    def draw(k):
        idx = jax.random.choice(k, n, (n,), p=p)
        return jnp.zeros(n, w.dtype).at[idx].add(1.0)

    counts = jax.vmap(draw)(jax.random.split(key, n_boot))
    return counts * (total / n)


def _permutations(agreement: np.ndarray) -> np.ndarray:
    """``(n_boot, K)``: for each replicate the permutation ``π`` maximising ``Σ_k A[k, π(k)]``.

    ``agreement`` is ``(n_boot, K, K)``, ``A[k, j] = Σ_i r_ik r'_ij`` (the
    fit's posteriors against a replicate's): all permutations for K ≤ 7, at once
    for every replicate; greedily beyond.
    """
    n_boot, k = agreement.shape[:2]
    if k > 7:
        return np.stack([_greedy_permutation(a) for a in agreement])
    perms = np.array(list(itertools.permutations(range(k))))  # (P, K)
    block = max(1, 2**20 // perms.size)  # replicates at a time: (block, P, K) stays small
    best = []
    for lo in range(0, n_boot, block):
        scores = agreement[lo : lo + block, np.arange(k), perms].sum(axis=2)  # (block, P)
        best.append(perms[np.argmax(scores, axis=1)])
    return np.concatenate(best)


def _greedy_permutation(agreement: np.ndarray) -> np.ndarray:
    """Components matched one at a time, the most certain first (K > 7)."""
    k = agreement.shape[0]
    order = np.full(k, -1)
    taken = np.zeros(k, bool)
    for j in np.argsort(-agreement.max(axis=1)):
        cand = np.where(taken, -np.inf, agreement[j])
        order[j] = int(np.argmax(cand))
        taken[order[j]] = True
    return order


def _take(family, comps, perm: np.ndarray):
    """A family's parameters with component ``perm[k]`` at position ``k`` (shared leaves kept)."""
    axes = family.component_axes(comps)
    return jax.tree.map(
        lambda axis, a: a if axis is None else np.asarray(a)[perm],
        axes,
        comps,
        is_leaf=lambda a: a is None,
    )


def _permute(model: Model, params, perm: np.ndarray):
    """``params`` with component (state) ``perm[k]`` moved to position ``k``: the same model.

    * ``em.Mixture`` of one family: the weights ``(K,)`` and the components.
    * with ``em.SoftmaxGating``: the rows of ``gate_coef (K, Q)`` and
      ``gate_intercept (K,)``, then the new row 0 subtracted from every row, so
      that component 0 is the reference again (every unit's softmax unchanged).
    * ``em.HMM``: ``initial[perm]``, ``transition[perm][:, perm]`` and the emissions.
    """
    perm = np.asarray(perm)
    if isinstance(model, HMM):
        transition = np.asarray(params.transition)[np.ix_(perm, perm)]
        emissions = _take(model.emission, params.emissions, perm)
        return HMMParams(np.asarray(params.initial)[perm], transition, emissions)
    comps = _take(model.family, params.components, perm)
    weights = params.weights
    if isinstance(weights, GatingParams):
        coef = np.asarray(weights.gate_coef)[perm]
        icpt = np.asarray(weights.gate_intercept)[perm]
        return MixtureParams(GatingParams(coef - coef[:1], icpt - icpt[:1]), comps)
    return MixtureParams(np.asarray(weights)[perm], comps)


def _matches_components(model: Model) -> bool:
    """Whether :func:`bootstrap` matches this model's components (see the module's doc)."""
    return isinstance(model, HMM) or (isinstance(model, Mixture) and model.family is not None)


def bootstrap(
    model: Model,
    x,
    params,
    n_boot: int = 200,
    *,
    kind: str = "nonparametric",
    key=None,
    max_iter: int = 1000,
    tol: float = 1e-8,
    sample_weight=None,
    chunk_size: int | None = None,
    fixed=None,
    lengths=None,
    accelerate: str | None = None,
    start: str = "newton",
) -> BootstrapResult:
    """Bootstrap the fit: ``n_boot`` refits in one compiled program, each from ``params``.

    Args:
        model: the fitted model.
        x: the data it was fitted to (an array or a pytree of units).
        params: the fit (e.g. ``FitResult.params``); every replicate starts there.
        n_boot: the number of replicates.
        kind: ``"nonparametric"`` (units resampled with replacement, as
            multinomial weights) or ``"parametric"`` (new data drawn from the
            fitted model with ``model.sample``; an ``em.Mixture`` of densities).
        key: a ``jax.random.key`` or int seed (required).
        tol, chunk_size, fixed, lengths, accelerate: as for ``em.fit``
            (``accelerate="squarem"``: fewer EM evaluations per replicate).
        sample_weight: the fit's weights: nonparametric replicates resample
            units in proportion to them.
        start: where each replicate's EM starts. ``"fit"``: at ``params``.
            ``"newton"`` (default): each replicate first takes Newton steps
            on its own data from ``params``, ``u ← u + I⁻¹ ∇ℓ_b(u)`` in the
            unconstrained coordinates, with ``I`` the fit's observed
            information (computed once, as :func:`em.standard_errors` does),
            while a step raises its objective by more than ``tol`` and by
            at least a quarter of the gain its quadratic model predicts (at
            most six steps); EM starts at the best point. A replicate's
            estimate lies about ``1/√N`` from the fit, which EM crosses in
            tens of iterations; each step shrinks that distance by a factor
            of order ``1/√N``. EM's stopping rule is unchanged, and so is
            its fixed point where the replicate's likelihood has a single
            maximum near the fit. Falls back to ``"fit"`` (``result.start`` says which
            ran) where the steps would not find EM's fixed points or would
            not pay: a covariance ridge (``reg_covar > 0``, EM's fixed point
            is then not the objective's maximum), directions without
            information, mclust's structured covariances, single simplex
            entries held by ``fixed=``, fewer than 10 observations (rows;
            an HMM's steps) per free unconstrained coordinate (the
            quadratic model is poor there, and on multimodal likelihoods a
            replicate may reach another local maximum than EM from the
            fit), or more than ``max(64, n_boot)`` free coordinates (the
            Hessian would cost more than it saves). A replicate whose
            first EM step goes down from its Newton point (by more than
            rounding) restarts at the fit. Use ``"fit"`` for a model whose
            log-likelihood autodiff cannot differentiate, or to follow EM's
            own path from the fit exactly (as a loop of
            ``em.fit(init=params)`` does).
        max_iter: EM iterations per replicate (after the Newton steps).

    Units are what ``em.fit`` weighs: rows of a mixture, whole sequences of
    an ``em.HMM`` (pass ``lengths=`` as to ``em.fit``). On a CPU, where the
    replicates run one after the other, each passes over only its resampled
    units (about 63% of them, gathered one replicate at a time).

    Returns:
        A :class:`BootstrapResult` (``.standard_errors``, ``.samples``,
        ``.intervals(0.95)``). The components of every replicate are matched
        to the fit's (label switching undone) for an ``em.Mixture`` of one
        family, with or without gating (the gating re-expressed with
        component 0 as its reference), and for an ``em.HMM`` (its states);
        a mixture of a list of families is left as fitted.

    Example:
        >>> boot = em.bootstrap(model, x, res.params, n_boot=200, key=jax.random.key(0))
        >>> boot.standard_errors.components.mean, boot.intervals(0.95)
        >>> boot = em.bootstrap(hmm, x, res.params, 200, key=0, lengths=lengths)
        >>> boot.standard_errors.transition          # (K, K)
    """
    if not isinstance(model, Model):
        raise TypeError(f"model must be an em.Model or em.Mixture, got {type(model).__name__}.")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    n_boot = _validation.check_int("n_boot", n_boot, 2)
    max_iter = _validation.check_int("max_iter", max_iter, 0)
    tol = _validation.check_tol(tol)
    if not isinstance(accelerate, (str, type(None))) or accelerate not in ACCELERATORS:
        raise ValueError(f"accelerate must be None or 'squarem', got {accelerate!r}.")
    accelerate = None if accelerate == "none" else accelerate
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}.")
    if key is None:
        raise ValueError("bootstrap needs key= (e.g. key=jax.random.key(0)) to resample.")
    key = _validation.as_key(key)
    if chunk_size is not None:
        chunk_size = _validation.check_int("chunk_size", chunk_size, 1)
    data = _validation.prepare_data(model, model._as_units(x, lengths))
    params = model._check_params(params, data)
    n = _validation.n_units(data)
    w = _validation.prepare_sample_weight(sample_weight, n, like=_validation.first_leaf(data))
    parametric = kind == "parametric"
    if parametric:
        if not isinstance(model, Mixture) or model._reads_units():
            raise TypeError(
                "kind='parametric' draws new data with model.sample: an em.Mixture of "
                "densities; use kind='nonparametric' for this model."
            )
        keys = jax.random.split(key, n_boot)
        draws = jax.jit(jax.vmap(lambda k: model.sample(k, params, n)[0]))(keys)
        replicate_x = draws
        weights = jnp.broadcast_to(jnp.sum(w) / n, (n_boot, n)).astype(w.dtype)
    else:
        replicate_x = data
        weights = _weights(key, w, n_boot)
    k = int(getattr(model, "n_components", 1))
    lead = _validation.first_leaf(data)
    backend = _validation.backend(lead)
    in_turn = _in_turn(backend, 0, n_boot)
    rows, units = None, n
    features = _validation.unit_size(data)
    gemm_width = model._gemm_rows(NO_EXTRA, features)
    restarts = 1 if in_turn else n_boot  # replicates that hold their rows' work at once
    masks = _fixed.resolve(
        fixed, params, model.constraints, model._event_masks_ok, model._shared_leaf
    )
    shapes = tuple((np.shape(a), str(jnp.asarray(a).dtype)) for a in jax.tree.leaves(params))
    shared = per = newton = None
    if start == "newton":
        # Observations, which the information grows with: rows, or an HMM's steps.
        seen = int(np.sum(data.mask)) if isinstance(model, HMM) else n
        newton = _newton_information(
            model, x, params, sample_weight, fixed, masks, lengths, chunk_size, n_boot, seen
        )
    if newton is not None:
        flat_u, unravel, leaves, cov = newton
        # U tangents per unit: chunks sized for that (the fit's chunk_size is for EM).
        full = _chunks.plan(n, k * flat_u.size, features, None)
        cache = ("bootstrap newton", shapes, full, parametric)
        program = _programs.get(
            model, cache, lambda: _newton_program(model, leaves, unravel, full, parametric)
        )
        shared = (flat_u, cov)
        per = program(flat_u, cov, replicate_x, weights)
        newton = (leaves, unravel)
    if in_turn and not parametric:
        size = _compact_size(weights)
        if size is not None:
            rows, weights = _resampled(weights, size)
            units = size
    chunking = _chunks.plan(
        units, k, features, chunk_size, 1, backend, restarts, gemm_width=gemm_width
    )
    # The replicates' objective histories are not returned: a short buffer, and
    # JAX drops the writes past its end (scatter's default mode).
    hist_len = 16
    options = (hist_len, chunking, _fixed.cache_key(masks), parametric, in_turn, accelerate)
    cache = ("bootstrap", *options, rows is None, newton is not None, shapes)
    program = _programs.get(
        model,
        cache,
        lambda: _program(model, hist_len, chunking, masks, parametric, in_turn, accelerate, newton),
    )
    dtype = _validation.float_dtype()
    samples, objectives, converged, n_iter = program(
        replicate_x, weights, params, max_iter, jnp.asarray(tol, dtype), shared, per, rows
    )
    samples = jax.tree.map(lambda a: np.asarray(a, np.float64), samples)
    if _matches_components(model):
        samples = _match_components(model, params, data, samples)
    se = jax.tree.map(lambda a: np.std(a, axis=0, ddof=1), samples)
    return BootstrapResult(
        samples,
        se,
        np.asarray(objectives, np.float64),
        np.asarray(converged, bool),
        np.asarray(n_iter),
        "fit" if newton is None else "newton",
    )


def _match_components(model: Model, params, data, samples):
    """Each replicate's components reordered to agree with the fit's posteriors on ``data``."""
    dtype = _validation.float_dtype()
    program = model._compiled.get("bootstrap agreement")
    if program is None:
        program = model._compiled["bootstrap agreement"] = jax.jit(partial(_agreement, model))
    agreement = np.asarray(
        program(params, jax.tree.map(lambda a: jnp.asarray(a, dtype), samples), data), np.float64
    )  # (n_boot, K, K): one program, the posteriors never leave the device
    perms = _permutations(agreement)
    samples = jax.tree.map(np.array, samples)  # writable copies
    k = agreement.shape[1]
    for b in np.flatnonzero(np.any(perms != np.arange(k), axis=1)):
        # Few replicates: most, started at the fit, keep its labels.
        rep = _permute(model, jax.tree.map(lambda a, b=b: a[b], samples), perms[b])
        for dst, src in zip(jax.tree.leaves(samples), jax.tree.leaves(rep), strict=True):
            dst[b] = src
    return samples


def _agreement(model: Model, params, samples, data):
    """``(n_boot, K, K)``: ``Σ_i r_ik r'_ij`` of the fit's posteriors against each replicate's.

    For an HMM the sum runs over every sequence's own steps.
    """
    ref = model.posterior(params, data)  # (N, K), or (B, T, K) for an HMM
    every = jax.vmap(model.posterior, in_axes=(0, None))(samples, data)
    k = ref.shape[-1]
    if isinstance(model, HMM):
        ref = ref * data.mask[..., None]
    return jnp.einsum("nk,bnj->bkj", ref.reshape(-1, k), every.reshape(every.shape[0], -1, k))
