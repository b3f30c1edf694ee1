"""``em.bootstrap``: refit the model to resampled data, all replicates in one program.

Every replicate runs EM from the fitted parameters, like ``em.fit``'s
restarts: one after the other on a CPU, together under ``vmap`` on an
accelerator, all in one compiled program:

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

from jaxem import _programs, _validation
from jaxem import chunks as _chunks
from jaxem import fixed as _fixed
from jaxem.accelerate import ACCELERATORS
from jaxem.fit import _em_parts, _history_length, _in_turn
from jaxem.gating import GatingParams
from jaxem.hmm import HMM, HMMParams
from jaxem.mixture import Mixture, MixtureParams
from jaxem.model import NO_EXTRA, Model

__all__ = ["bootstrap", "BootstrapResult"]

KINDS = ("nonparametric", "parametric")


class BootstrapResult(NamedTuple):
    """Replicate fits of :func:`bootstrap`.

    Attributes:
        samples: the replicates' parameters, every leaf with a leading
            ``(n_boot,)`` axis, components matched to the fit's.
        standard_errors: their standard deviation (``ddof=1``), shaped like the parameters.
        objectives: ``(n_boot,)`` each replicate's final objective (on its own data).
        converged: ``(n_boot,)`` whether each replicate met ``tol``.
        n_iter: ``(n_boot,)`` EM iterations of each replicate.
    """

    samples: Any
    standard_errors: Any
    objectives: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray

    def intervals(self, level: float = 0.95):
        """Percentile intervals ``(lower, upper)``, pytrees shaped like the parameters."""
        if not (isinstance(level, float | int) and 0 < level < 1):
            raise ValueError(f"level must be a number in (0, 1), got {level!r}.")
        tail = 50 * (1 - level)
        lower = jax.tree.map(lambda a: np.percentile(a, tail, axis=0), self.samples)
        upper = jax.tree.map(lambda a: np.percentile(a, 100 - tail, axis=0), self.samples)
        return lower, upper


def _program(
    model, hist_len: int, chunking, masks, parametric: bool, in_turn: bool, accelerate=None
):
    """The jitted replicates: EM from ``start`` for each row of weights (and data).

    ``in_turn``: one replicate after the other (``lax.map``), as ``em.fit``
    runs restarts on a CPU; otherwise all together under ``vmap``.
    """

    def one(x, w, start, max_iter, tol):
        if chunking is not None:
            x = _chunks.pad_units(x, chunking)
            w = _chunks.pad_rows(w, chunking, 0)
        begin, keep_going, step = _em_parts(
            model, x, w, NO_EXTRA, tol, hist_len, accelerate, chunking, masks
        )
        state = jax.lax.while_loop(lambda s: keep_going(s, max_iter), step, begin(start))
        return state.point.params, state.point.objective, state.converged, state.n_iter

    x_axis = 0 if parametric else None
    if not in_turn:
        return jax.jit(jax.vmap(one, in_axes=(x_axis, 0, None, None, None)))

    def turn(x, w, start, max_iter, tol):
        if parametric:
            return jax.lax.map(lambda xw: one(*xw, start, max_iter, tol), (x, w))
        return jax.lax.map(lambda wb: one(x, wb, start, max_iter, tol), w)

    return jax.jit(turn)


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


def _permutation(agreement: np.ndarray) -> np.ndarray:
    """The permutation ``π`` maximising ``Σ_k agreement[k, π(k)]`` (K ≤ 7: exhaustive).

    ``agreement[k, j] = Σ_i r_ik r'_ij``: the fit's posteriors against a replicate's.
    """
    k = agreement.shape[0]
    if k <= 7:
        perms = np.array(list(itertools.permutations(range(k))))
        scores = agreement[np.arange(k), perms].sum(axis=1)
        return perms[int(np.argmax(scores))]
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
        max_iter, tol, chunk_size, fixed, lengths, accelerate: as for ``em.fit``
            (``accelerate="squarem"``: fewer EM evaluations per replicate).
        sample_weight: the fit's weights: nonparametric replicates resample
            units in proportion to them.

    Units are what ``em.fit`` weighs: rows of a mixture, whole sequences of
    an ``em.HMM`` (pass ``lengths=`` as to ``em.fit``).

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
    features = _validation.unit_size(data)
    gemm_width = model._gemm_rows(NO_EXTRA, features)
    restarts = 1 if in_turn else n_boot  # replicates that hold their rows' work at once
    chunking = _chunks.plan(n, k, features, chunk_size, 1, backend, restarts, gemm_width=gemm_width)
    masks = _fixed.resolve(
        fixed, params, model.constraints, model._event_masks_ok, model._shared_leaf
    )
    hist_len = _history_length(max_iter)
    options = (hist_len, chunking, _fixed.cache_key(masks), parametric, in_turn, accelerate)
    cache = ("bootstrap", *options)
    program = _programs.get(
        model,
        cache,
        lambda: _program(model, hist_len, chunking, masks, parametric, in_turn, accelerate),
    )
    dtype = _validation.float_dtype()
    samples, objectives, converged, n_iter = program(
        replicate_x, weights, params, max_iter, jnp.asarray(tol, dtype)
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
    )


def _match_components(model: Model, params, data, samples):
    """Each replicate's components reordered to agree with the fit's posteriors on ``data``."""
    dtype = _validation.float_dtype()
    one = model._compiled.get("posterior")
    if one is None:
        one = model._compiled["posterior"] = jax.jit(model.posterior)
        model._compiled["posteriors"] = jax.jit(jax.vmap(model.posterior, in_axes=(0, None)))
    ref = np.asarray(one(params, data), np.float64)
    every = model._compiled["posteriors"](
        jax.tree.map(lambda a: jnp.asarray(a, dtype), samples), data
    )  # (n_boot, N, K), or (n_boot, B, T, K) for an HMM: one program, not a loop
    every = np.asarray(every, np.float64)
    if isinstance(model, HMM):  # every sequence's own steps: (ΣT, K)
        mask = np.asarray(data.mask, bool)
        ref, every = ref[mask], every[:, mask]
    agreement = np.einsum("nk,bnj->bkj", ref, every)  # (n_boot, K, K)
    samples = jax.tree.map(np.array, samples)  # writable copies
    k = agreement.shape[1]
    for b in range(agreement.shape[0]):
        perm = _permutation(agreement[b])
        if np.array_equal(perm, np.arange(k)):
            continue  # most replicates, started at the fit, keep its labels
        rep = _permute(model, jax.tree.map(lambda a, b=b: a[b], samples), perm)
        for dst, src in zip(jax.tree.leaves(samples), jax.tree.leaves(rep), strict=True):
            dst[b] = src
    return samples
