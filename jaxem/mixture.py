"""``em.Mixture``: a finite mixture of component densities.

``log p(x_i, z_i = k) = log w_k + log f_k(x_i | θ_k)``. The M-step splits into
independent pieces, each solved the best available way:

* weights: closed form for a flat or ``priors.Dirichlet`` prior
  (``w_k ∝ N_k + α_k - 1``), gradient M-step on the simplex for any other
  prior function;
* components: the family's registered closed form from additive sufficient
  statistics when its priors are covered, else the gradient M-step on
  ``Σ_ik r_ik log f(x_i | θ_k) + log prior(θ)``.

Internally the components are *blocks*: one block of K components for a
single family, or one block of one component per entry of a list of families
(a heterogeneous mixture). Every block holds its parameters with a leading
component axis, so the same code serves both.
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation, mstep
from jaxem import block_updates as _updates
from jaxem import constraints as _constraints
from jaxem import fixed as _fixed
from jaxem import priors as _priors
from jaxem.chunks import rows_sum
from jaxem.estep import e_step, pin_labels
from jaxem.families.base import Family, closed_form_for, component_constraints
from jaxem.gating import GatingParams, SoftmaxGating
from jaxem.model import NO_EXTRA, Expectation, Extra, Model, is_jaxem_code
from jaxem.mstep import GradientOptions, expected_log_joint

__all__ = ["Mixture", "MixtureParams", "MixtureStats", "Block"]


class MixtureParams(NamedTuple):
    """Parameters of a mixture.

    Attributes:
        weights: ``(K,)`` mixing proportions (non-negative, summing to 1).
        components: for one family, its parameters with a leading ``(K,)``
            axis on every leaf, e.g. ``em.NormalParams(mean=(K,), var=(K,))``;
            for a list of families, a tuple with one entry per component, each
            that family's parameters for one component (no K axis).
    """

    weights: jax.Array
    components: Any


class MixtureStats(NamedTuple):
    """What a mixture's E-step hands its M-step.

    Attributes:
        counts: ``(K,)`` expected counts ``Σ_i w_i r_ik``.
        stats: one entry per block: that family's sufficient statistics
            (summed over units), or ``None`` where its update reads the
            responsibilities.
        resp: ``(N, K)`` responsibilities when some block's update needs
            them, else ``None``.
    """

    counts: jax.Array
    stats: tuple
    resp: Any = None


class Block(NamedTuple):
    """One family's share of a mixture's components.

    Attributes:
        family: the ``em.Family``.
        components: which of the K components it holds (a ``slice``).
        params: its parameters, every leaf with a leading component axis
            (except leaves shared by its components, e.g. a tied covariance).
    """

    family: Family
    components: slice
    params: Any


def _is_none(obj) -> bool:
    return obj is None


def _map_component_leaves(family, components, fn):
    """Apply ``fn`` to the leaves that have a component axis; shared leaves pass through."""
    axes = family.component_axes(components)
    return jax.tree.map(
        lambda axis, a: a if axis is None else fn(a), axes, components, is_leaf=_is_none
    )


def _block_log_prob(family, block, x, observed):
    if observed is None:
        return family.log_prob_components(block, x)
    return family.log_prob_components_missing(block, x, observed)


def _rank(x) -> int:
    """The data's rank for choosing updates: an array's ndim; a pytree of units counts as 1."""
    return 1 if _validation.is_unit_tree(x) else x.ndim


def _float_dtype_of(x):
    """The float dtype of the data (its first float leaf)."""
    for leaf in jax.tree.leaves(x):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.result_type(float)


def _is_family(obj) -> bool:
    return isinstance(obj, Family)


def _check_family(family, where: str) -> Family:
    if isinstance(family, type) and issubclass(family, Family):
        raise TypeError(
            f"Mixture: {where} must be an instance, e.g. {family.__name__}(), not the class."
        )
    if not _is_family(family):
        raise TypeError(f"Mixture: {where} must be an em.Family instance, got {family!r}.")
    return family


class Mixture(Model):
    """A mixture of ``n_components`` components of one family, or of a list of families.

    Args:
        family: an ``em.Family`` instance (``em.Normal(...)``, a custom family),
            or a list of instances, one per component (a heterogeneous mixture).
        n_components: K; inferred from a list of families.
        weights_prior: ``priors.Dirichlet`` (closed form; concentration >= 1 so
            that the mode exists), any function ``weights -> log density``
            (gradient M-step on the simplex), or ``None`` (maximum likelihood).
        gating: ``em.SoftmaxGating(covariates=...)`` for weights that depend
            on covariates in the data (a mixture of experts): ``params.weights``
            is then an ``em.GatingParams``. ``None``: constant weights.
        gradient_options: stopping rules of the gradient M-step, where used.

    Example:
        >>> model = em.Mixture(em.Normal(), n_components=3, weights_prior=priors.Dirichlet(1.5))
        >>> res = em.fit(model, x, key=jax.random.key(0), restarts=64)
        >>> res.params.weights, res.params.components.mean
        >>> both = em.Mixture([em.Normal(), MyLaplace()])   # params.components: a 2-tuple
        >>> moe = em.Mixture(em.LinearRegression(), 2, gating=em.SoftmaxGating(covariates="w"))
    """

    def __init__(
        self,
        family: Family | list | tuple,
        n_components: int | None = None,
        *,
        weights_prior=None,
        gating: SoftmaxGating | None = None,
        gradient_options: GradientOptions | None = None,
    ):
        if isinstance(family, (list, tuple)):
            families = tuple(_check_family(f, f"family[{i}]") for i, f in enumerate(family))
            if not families:
                raise ValueError("Mixture: the list of families is empty.")
            if n_components is not None and n_components != len(families):
                raise ValueError(
                    f"Mixture: n_components={n_components} but {len(families)} families were "
                    "given; omit n_components for a list of families."
                )
            n_components = len(families)
            self.family = None
            self.families = families
            self._blocks = [(f, 1) for f in families]
        else:
            family = _check_family(family, "family")
            if n_components is None:
                raise TypeError("Mixture: n_components is required for a single family.")
            if isinstance(n_components, bool) or not isinstance(n_components, numbers.Integral):
                raise TypeError(f"Mixture: n_components must be an integer, got {n_components!r}.")
            if n_components < 1:
                raise ValueError(f"Mixture: n_components must be >= 1, got {n_components}.")
            n_components = int(n_components)
            self.family = family
            self.families = None
            self._blocks = [(family, n_components)]
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
        if gating is not None and not isinstance(gating, SoftmaxGating):
            raise TypeError(
                f"Mixture: gating must be an em.SoftmaxGating or None, got {type(gating).__name__}."
            )
        if gating is not None and not all(
            getattr(f, "reads_units", False) for f, _ in self._blocks
        ):
            raise TypeError(
                "Mixture: gating= needs regression families (em.LinearRegression, "
                "em.PoissonRegression, em.LogisticRegression, or an em.RegressionFamily): they "
                "and the gating read the same data pytree."
            )
        if gating is not None and weights_prior is not None:
            raise ValueError(
                "Mixture: with gating the weights depend on covariates; put a prior on the "
                "gating coefficients (SoftmaxGating(coef_prior=...)) instead of weights_prior."
            )
        self.n_components = n_components
        self.weights_prior = weights_prior
        self.gating = gating
        self.gradient_options = gradient_options or GradientOptions()
        self.m_step = None
        self.init = self._draw
        self._compiled = {}

    def __repr__(self) -> str:
        wp = "" if self.weights_prior is None else f", weights_prior={self.weights_prior!r}"
        wp += "" if self.gating is None else f", gating={self.gating!r}"
        if self.families is not None:
            return f"Mixture([{', '.join(map(repr, self.families))}]{wp})"
        return f"Mixture({self.family!r}, n_components={self.n_components}{wp})"

    # -- blocks ------------------------------------------------------------------
    def _to_blocks(self, components) -> list:
        """Block parameters, each with a leading component axis (except shared leaves)."""
        if self.families is None:
            return [components]
        return [
            _map_component_leaves(f, c, lambda a: jnp.asarray(a)[None])
            for f, c in zip(self.families, components, strict=True)
        ]

    def _mask_blocks(self, masks) -> list:
        """:meth:`_to_blocks` for ``fixed`` masks: host NumPy arrays stay host arrays."""
        if self.families is None:
            return [masks]
        return [
            _map_component_leaves(f, c, lambda a: np.asarray(a)[None])
            for f, c in zip(self.families, masks, strict=True)
        ]

    def _from_blocks(self, blocks: list):
        if self.families is None:
            return blocks[0]
        return tuple(
            _map_component_leaves(f, b, lambda a: a[0])
            for f, b in zip(self.families, blocks, strict=True)
        )

    def _slices(self):
        start = 0
        for family, n in self._blocks:
            yield family, slice(start, start + n)
            start += n

    def blocks(self, components) -> list[Block]:
        """The components split by family: one :class:`Block` per family.

        A mixture of one family is one block of K components; a list of
        families is one block of one component per entry.
        """
        return [
            Block(family, sl, block)
            for (family, sl), block in zip(self._slices(), self._to_blocks(components), strict=True)
        ]

    def updates(self, ndim: int, missing: bool) -> tuple:
        """One :class:`jaxem.block_updates.BlockUpdate` per block, chosen once for the data's rank.

        ``missing``: whether some entries are missing (integrated out).
        """
        key = ("updates", ndim, bool(missing))
        if key not in self._compiled:
            self._compiled[key] = tuple(
                _updates.choose(family, ndim, missing) for family, _ in self._blocks
            )
        return self._compiled[key]

    @property
    def constraints(self):
        if self.families is None:
            comps = dict(self.family.constraints)
        else:
            comps = tuple(dict(f.constraints) for f in self.families)
        weights = _constraints.simplex if self.gating is None else self.gating.constraints
        return MixtureParams(weights, comps)

    # -- the model -------------------------------------------------------------
    def component_log_prob(self, components, x, observed=None) -> jax.Array:
        """``(N, K)`` log densities of each row under each component.

        ``observed`` (a boolean array of ``x``'s shape, or ``None``) marks the
        entries that count; the others are integrated out.
        """
        parts = [
            _block_log_prob(family, block, x, observed)
            for (family, _), block in zip(self._blocks, self._to_blocks(components), strict=True)
        ]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)

    def log_weights(self, params, x) -> jax.Array:
        """``(K,)`` log weights, or ``(N, K)`` per unit with gating."""
        if self.gating is None:
            return jnp.log(params.weights)
        return self.gating.log_weights(params.weights, x)

    def log_joint(self, params, x, observed=None) -> jax.Array:
        """``(N, K)`` values ``log w_k + log f_k(x_i)`` (observed entries only, if given)."""
        return self.log_weights(params, x) + self.component_log_prob(params.components, x, observed)

    def predict_mean(self, params, x) -> jax.Array:
        """``(N,)`` predictive mean of the response given the covariates: ``Σ_k w_k(x) μ_k(x)``.

        For regression families (``em.LinearRegression`` and the GLMs); the
        weights are the gating's for a mixture of experts. The response in
        ``x`` is not read (pass any placeholder of the right shape).
        """
        means = []
        for (family, _), block in zip(
            self._blocks, self._to_blocks(params.components), strict=True
        ):
            if not hasattr(family, "mean_response"):
                raise TypeError(
                    f"predict_mean needs regression families; {type(family).__name__} has no "
                    "covariates (use em.predict or the fitted means)."
                )
            means.append(family.mean_response(block, x))
        mean = means[0] if len(means) == 1 else jnp.concatenate(means, axis=1)  # (N, K)
        return jnp.sum(jnp.exp(self.log_weights(params, x)) * mean, axis=-1)

    def log_prior(self, params) -> jax.Array:
        lp = sum(
            family.log_prior(block)
            for (family, _), block in zip(
                self._blocks, self._to_blocks(params.components), strict=True
            )
        )
        if self.weights_prior is not None:
            lp = lp + jnp.sum(self.weights_prior(params.weights))
        if self.gating is not None:
            lp = lp + self.gating.log_prior(params.weights)
        return lp

    def sample(self, key, params, n: int):
        """Draw ``n`` rows: ``(x, labels)`` with ``x`` of shape ``(n,)`` plus the event shape.

        Example:
            >>> x, z = model.sample(jax.random.key(0), res.params, 1000)
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"sample: n must be a positive integer, got {n!r}.")
        if self.gating is not None or any(
            getattr(f, "reads_units", False) for f, _ in self._blocks
        ):
            raise TypeError(
                "sample: a mixture of regressions draws responses given covariates, not rows; "
                "it has no sample(key, params, n)."
            )
        key_z, key_x = jax.random.split(key)
        labels = jax.random.categorical(key_z, jnp.log(params.weights), shape=(n,))
        draws = []
        for i, ((family, k), block) in enumerate(
            zip(self._blocks, self._to_blocks(params.components), strict=True)
        ):
            keys = jax.random.split(jax.random.fold_in(key_x, i), k)
            axes = family.component_axes(block)
            draws.append(jax.vmap(family.sample, in_axes=(0, axes, None))(keys, block, n))
        every = jnp.concatenate(draws, axis=0)  # (K, n, ...)
        return every[labels, jnp.arange(n)], labels

    # -- the engine's protocol ---------------------------------------------------
    def _posterior(self, params, x, sample_weight, observed, labels):
        """``(resp (N, K), row_ll (N,))`` for some rows."""
        resp, row_ll = e_step(pin_labels(self.log_joint(params, x, observed), labels))
        # A zero-weight row may have density 0 under every component: its
        # softmax is nan, and nan * 0 would poison every sum.
        return jnp.where(sample_weight[:, None] > 0, resp, 0), row_ll

    def sufficient_statistics(self, params, x, sample_weight, observed=None, labels=None):
        """E-step over some rows: ``(MixtureStats, row_ll (N,))``.

        The counts and each block's statistics are sums over the rows (so
        chunks, devices and streamed batches add up); ``MixtureStats.resp``
        holds the ``(N, K)`` responsibilities when some block's update needs
        them, else ``None``.
        """
        resp, row_ll = self._posterior(params, x, sample_weight, observed, labels)
        return self.statistics_from_resp(
            params.components, x, resp, sample_weight, observed
        ), row_ll

    def statistics_from_resp(
        self, components, x, resp, sample_weight, observed=None
    ) -> MixtureStats:
        """:class:`MixtureStats` of rows ``x`` given their ``(N, K)`` responsibilities.

        For models whose posterior over the components comes from elsewhere
        (an HMM's smoothed marginals): counts ``Σ w r``, each block's
        sufficient statistics, and ``resp`` where some block's update reads it.
        """
        counts = jnp.sum(resp * sample_weight[:, None], axis=0)
        updates = self.updates(_rank(x), observed is not None)
        stats = tuple(
            upd.stats(b.family, b.params, x, resp[:, b.components], sample_weight, observed)
            for upd, b in zip(updates, self.blocks(components), strict=True)
        )
        need_resp = self.gating is not None or any(upd.needs_resp for upd in updates)
        return MixtureStats(counts, stats, resp if need_resp else None)

    def expect(
        self, params, x, sample_weight, extra: Extra = NO_EXTRA, chunking=None
    ) -> Expectation:
        """E-step: row log-likelihoods, log prior, and :class:`MixtureStats`.

        Chunked, the statistics are summed over the chunks; the ``(N, K)``
        responsibilities are carried only when some block's update reads them
        (a closed form on them, or the gradient M-step), so that the M-step
        never re-runs the E-step.
        """
        observed, labels = extra.observed, extra.labels
        if chunking is None:
            stats, row_ll = self.sufficient_statistics(params, x, sample_weight, observed, labels)
        else:

            def rows(xb, wb, ob, lb):
                st, row_ll = self.sufficient_statistics(params, xb, wb, ob, lb)
                return (st.counts, st.stats), (row_ll, st.resp)

            (counts, sums), (row_ll, resp) = rows_sum(
                rows, chunking, x, sample_weight, observed, labels
            )
            stats = MixtureStats(counts, sums, resp)
        return Expectation(row_ll, self.log_prior(params), stats)

    def maximize(
        self,
        params,
        x,
        sample_weight,
        stats: MixtureStats,
        extra: Extra = NO_EXTRA,
        chunking=None,
        fixed=None,
        posterior=None,
    ) -> MixtureParams:
        """M-step from :meth:`expect`'s statistics: weights and each block by its update.

        ``posterior``: a function returning the ``(N, K)`` responsibilities at
        ``params`` when an update needs them and ``stats`` did not carry them
        (a model whose posterior is not this mixture's softmax, e.g. an HMM's
        smoothed marginals); by default this mixture's E-step.

        ``x`` and ``sample_weight`` are read only by updates that need the
        rows (responsibility closed forms, the gradient M-step); a
        statistics-only mixture may pass a template of the data.
        ``fixed``: masks (:mod:`jaxem.fixed`) of entries held at ``params``.
        """
        observed = extra.observed
        full_resp = stats.resp

        def all_resp():
            # A block whose closed form was replaced by ``fixed=`` may need
            # responsibilities the E-step did not carry: compute them once.
            nonlocal full_resp
            if full_resp is None and posterior is not None:
                full_resp = posterior()
            elif full_resp is None:
                full_resp = self._posterior(params, x, sample_weight, observed, extra.labels)[0]
            return full_resp

        def gradient(b, masks):
            """The gradient M-step of one block (the fixed entries ``masks`` held)."""
            if chunking is None:
                resp = all_resp()[:, b.components]
                return self._gradient_block(
                    b.family, b.params, x, sample_weight, resp, observed, masks
                )
            return self._gradient_block_chunked(
                b, params, x, sample_weight, extra, chunking, masks, stats.resp
            )

        weights_mask = None if fixed is None else fixed.weights
        comp_masks = (
            [None] * len(self._blocks) if fixed is None else self._mask_blocks(fixed.components)
        )
        if self.gating is not None:
            weights = self.gating.update(params.weights, x, all_resp(), sample_weight, weights_mask)
        else:
            weights = self.update_weights(params.weights, stats.counts, weights_mask)
        new = []
        updates = self.updates(_rank(x), observed is not None)
        for upd, b, st, masks in zip(
            updates, self.blocks(params.components), stats.stats, comp_masks, strict=True
        ):
            held = None if masks is None else jax.tree.leaves(masks)
            if held is not None and all(m.all() for m in held):
                new.append(b.params)  # every parameter of this family is fixed
            elif held is not None and any(m.any() for m in held):
                # Some fields or components fixed: a closed form would move them
                # jointly, so this block takes the gradient M-step over the rest.
                new.append(gradient(b, masks))
            elif upd.gradient:
                new.append(gradient(b, None))
            else:

                def resp(sl=b.components):
                    return all_resp()[:, sl]

                new.append(upd.update(b.family, b.params, st, x, resp, sample_weight, observed))
        return MixtureParams(weights, self._from_blocks(new))

    def _gradient_block_chunked(
        self, b: Block, params, x, sample_weight, extra, chunking, masks=None, resp=None
    ):
        """The gradient M-step of one block with Q summed over row chunks.

        ``resp``: the ``(N, K)`` responsibilities the E-step carried. Without
        them (a block whose closed form was replaced by ``fixed=``) they are
        recomputed chunk by chunk (and again in the backward pass).
        """
        family, sl, block = b
        total = jnp.sum(sample_weight)

        def q_rows(theta, xb, wb, ob, rb):
            lp = _block_log_prob(family, _fixed.freeze(masks, theta, block), xb, ob)
            return expected_log_joint(lp, rb[:, sl] * wb[:, None])

        def objective(theta):
            if resp is not None:

                def rows(xb, wb, ob, rb):
                    return q_rows(theta, xb, wb, ob, rb), None

                q, _ = rows_sum(
                    rows, chunking, x, sample_weight, extra.observed, resp, checkpoint=True
                )
            else:

                def rows(xb, wb, ob, lb):
                    rb, _ = self._posterior(params, xb, wb, ob, lb)
                    return q_rows(theta, xb, wb, ob, rb), None

                q, _ = rows_sum(
                    rows, chunking, x, sample_weight, extra.observed, extra.labels, checkpoint=True
                )
            return (q + family.log_prior(_fixed.freeze(masks, theta, block))) / total

        leaves = component_constraints(family, block)
        return mstep.maximize(objective, block, leaves, self.gradient_options)

    def update_weights(self, weights, counts, mask=None) -> jax.Array:
        """The weights' M-step from the ``(K,)`` expected counts.

        Closed form for a flat or Dirichlet prior (``w ∝ N_k + α_k - 1``),
        else the gradient M-step on the simplex. ``mask`` (boolean ``(K,)``
        or a scalar) marks weights held fixed: the free ones share what is
        left in proportion to their counts.
        """
        prior = self.weights_prior
        if mask is not None and mask.all():
            return weights
        if prior is None or isinstance(prior, _priors.Dirichlet):
            alpha = 1.0 if prior is None else jnp.asarray(prior.concentration, counts.dtype)
            num = counts + alpha - 1
            if mask is None or not mask.any():
                return num / jnp.sum(num)
            # Some weights fixed: the free ones share what is left, in proportion
            # to their counts (the conditional maximiser on the simplex).
            mask = np.broadcast_to(mask, weights.shape)
            left = 1 - jnp.sum(jnp.where(mask, weights, 0))
            free = jnp.where(mask, 0, num)
            total = jnp.sum(free)  # 0 when every free component is empty: keep them
            return jnp.where(mask, weights, jnp.where(total > 0, free * left / total, weights))
        total = jnp.sum(counts)

        def objective(w):
            return (expected_log_joint(jnp.log(w), counts) + prior(w)) / total

        leaves = _constraints.broadcast(_constraints.simplex, weights)
        return mstep.maximize(objective, weights, leaves, self.gradient_options)

    def _gradient_block(self, family, block, x, sample_weight, resp, observed=None, masks=None):
        wr = resp * sample_weight[:, None]
        total = jnp.sum(sample_weight)

        def objective(theta):
            theta = _fixed.freeze(masks, theta, block)
            q = expected_log_joint(_block_log_prob(family, theta, x, observed), wr)
            return (q + family.log_prior(theta)) / total

        leaves = component_constraints(family, block)
        return mstep.maximize(objective, block, leaves, self.gradient_options)

    def _draw(self, key, x):
        k = self.n_components
        keys = jax.random.split(key, len(self._blocks))
        blocks = []
        for (family, n), kk in zip(self._blocks, keys, strict=True):
            block = family.init(kk, x, n)
            axes = jax.tree.leaves(family.component_axes(block), is_leaf=_is_none)
            leaves = jax.tree_util.tree_flatten_with_path(block)[0]
            for (path, leaf), axis in zip(leaves, axes, strict=True):
                if axis is not None and (jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != n):
                    raise ValueError(
                        f"{type(family).__name__}.init(key, x, n_components={n}) must return "
                        f"parameters with a leading axis of {n}; "
                        f"{jax.tree_util.keystr(path)} has shape {jnp.shape(leaf)}."
                    )
            blocks.append(block)
        if self.gating is not None:
            weights = self.gating.init(key, x, k)
        else:
            weights = jnp.full((k,), 1.0 / k, _float_dtype_of(x))
        return MixtureParams(weights, self._from_blocks(blocks))

    # -- host-side validation ------------------------------------------------------
    def _start_shapes(self, x):
        """Shapes of the components ``init`` draws for data like ``x`` (None if it cannot)."""
        shapes = tuple((np.shape(a), str(a.dtype)) for a in jax.tree.leaves(x))
        key = ("start shapes", jax.tree.structure(x), shapes, repr(self))
        if key not in self._compiled:
            try:
                shapes = jax.eval_shape(self._draw, jax.random.key(0), x).components
            except NotImplementedError:  # a custom family without init
                shapes = None
            self._compiled[key] = shapes
        return self._compiled[key]

    def _gemm_rows(self, extra, d: int) -> int | None:
        if extra.observed is not None or self.gating is not None or self.m_step is not None:
            return None
        widths = [getattr(f, "gemm_row_floats", lambda d, k: None)(d, k) for f, k in self._blocks]
        if any(w is None for w in widths):
            return None
        return sum(widths) + 2 * self.n_components  # each block builds its own features

    def _pads_units(self, from_keys: bool) -> bool:
        if not is_jaxem_code(type(self)) or self.m_step is not None:
            return False
        if self.gating is not None and not is_jaxem_code(type(self.gating)):
            return False
        for family, _ in self._blocks:
            update = closed_form_for(family)
            if update is not None and not is_jaxem_code(update.update):
                return False  # a user's closed form might ignore sample_weight
            if from_keys and not is_jaxem_code(type(family).init):
                return False
        return True

    def _can_draw(self) -> bool:
        return True

    def _condition_number(self, params) -> float | None:
        conds = [
            family.condition_number(block)
            for (family, _), block in zip(
                self._blocks, self._to_blocks(params.components), strict=True
            )
        ]
        conds = [c for c in conds if c is not None]
        return max(conds) if conds else None

    def _event_masks_ok(self, path) -> bool:
        # The weights' free entries are rescaled to what the fixed ones leave
        # (the closed form's conditional maximiser; none for another prior).
        closed = self.weights_prior is None or isinstance(self.weights_prior, _priors.Dirichlet)
        return (
            self.gating is None
            and closed
            and len(path) == 1
            and getattr(path[0], "name", None) == "weights"
        )

    def _shared_leaf(self, path) -> bool:
        if (
            self.families is not None
            or len(path) < 2
            or getattr(path[0], "name", "") != "components"
        ):
            return False
        name = getattr(path[1], "name", getattr(path[1], "key", None))
        axes = self.family.component_axes(self.family.constraints)
        if isinstance(axes, dict):
            return axes.get(name, 0) is None
        return getattr(axes, str(name), 0) is None

    def _check_missing(self, x: np.ndarray) -> None:
        for family, _ in self._blocks:
            if not family.supports_missing(x.ndim):
                raise ValueError(
                    f"missing='marginalize': {type(family).__name__} cannot integrate out "
                    "missing entries of (N, D) data (its features are not independent and it "
                    "defines no log_prob_components_missing). Impute the data, or use a "
                    "family that can."
                )

    def _reads_units(self) -> bool:
        """Whether this mixture scores a pytree of units (regression families, gating)."""
        return self.gating is not None or any(
            getattr(f, "reads_units", False) for f, _ in self._blocks
        )

    def _check_data(self, x: np.ndarray) -> None:
        self._check_array(x)
        n = _validation.n_units(x)
        if n < self.n_components:
            raise ValueError(
                f"n_components={self.n_components} is larger than the number of samples "
                f"({n}); use at most {n} components or more data."
            )
        self._check_support(x)

    def _check_array(self, x) -> None:
        tree = _validation.is_unit_tree(x)
        if tree and not self._reads_units():
            raise TypeError(
                "em.Mixture's families read an (N,) or (N, D) array, not a pytree of arrays; "
                "for data with covariates use regression families (em.LinearRegression, ...) "
                "or write the model as em.Model(log_joint, ...), whose log_joint receives the "
                "pytree."
            )
        if not tree and self._reads_units():
            mixed = [type(f).__name__ for f, _ in self._blocks if getattr(f, "reads_units", False)]
            what = ", ".join(mixed) if mixed else "SoftmaxGating"
            raise TypeError(
                f"{what} read(s) a dict of arrays (covariates and response, e.g. "
                "{'x': X, 'y': y}), not a single array."
            )
        if tree:
            plain = [
                type(f).__name__ for f, _ in self._blocks if not getattr(f, "reads_units", False)
            ]
            if plain:
                raise TypeError(
                    f"Mixture: {', '.join(plain)} read(s) an array, but the data is a pytree (for "
                    "the regression families or the gating); a mixture cannot combine them."
                )

    def _check_support(self, x: np.ndarray) -> None:
        """The families' data checks (support, shape), for any number of rows."""
        self._check_array(x)
        for family, _ in self._blocks:
            family.validate_data(x)
        if self.gating is not None:
            self.gating.validate_data(x)

    def _held_entries(self, params):
        """Entries the model holds, as masks like ``params`` (``None`` when there are none).

        A regression family's intercepts without ``fit_intercept``; the
        gating's reference row (and its intercepts without ``fit_intercept``).
        """
        blocks = self._to_blocks(params.components)
        held_blocks = []
        any_held = self.gating is not None
        for (family, _), block in zip(self._blocks, blocks, strict=True):
            mask = jax.tree.map(lambda a: np.zeros(np.shape(a), bool), block)
            if getattr(family, "reads_units", False) and not family.fit_intercept:
                mask = mask._replace(intercept=np.ones(np.shape(block.intercept), bool))
                any_held = True
            held_blocks.append(mask)
        if not any_held:
            return None
        weights = jax.tree.map(lambda a: np.zeros(np.shape(a), bool), params.weights)
        if self.gating is not None:
            k, q = np.shape(params.weights.gate_coef)
            coef = np.zeros((k, q), bool)
            coef[0] = True
            icpt = np.ones(k, bool) if not self.gating.fit_intercept else np.arange(k) == 0
            weights = GatingParams(coef, icpt)
        comps = self._from_blocks(held_blocks)
        if self.families is not None:
            comps = jax.tree.map(np.asarray, comps)
        return MixtureParams(weights, comps)

    def _structural_zeros(self, params, masks=None) -> int:
        """Entries that are held by the model, not free: a regression family's intercepts
        without ``fit_intercept``, the gating's reference row. Entries ``masks`` (from
        ``fixed=``) already hold are not subtracted again."""
        comp_masks = [None] * len(self._blocks)
        if masks is not None:
            comp_masks = self._mask_blocks(masks.components)
        zeros = sum(
            family.n_fixed(block, mask) if hasattr(family, "n_fixed") else 0
            for (family, _), block, mask in zip(
                self._blocks, self._to_blocks(params.components), comp_masks, strict=True
            )
        )
        if self.gating is not None:
            zeros += self.gating.n_fixed(params.weights, None if masks is None else masks.weights)
        return zeros

    def _check_params(self, params, x, *, trace: bool = True):
        if isinstance(params, dict) and set(params) == {"weights", "components"}:
            params = MixtureParams(**params)
        if not isinstance(params, tuple) or len(params) != 2:
            raise TypeError(
                "Mixture parameters must be em.MixtureParams(weights=(K,), components=...), "
                f"got {type(params).__name__}."
            )
        weights, comps = params
        k = self.n_components
        if self.gating is not None:
            w = self._check_gating_params(weights, x)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (k,):
                raise ValueError(f"init weights must have shape ({k},), got {w.shape}.")
            if not (np.all(w >= 0) and abs(w.sum() - 1) < 1e-5):
                raise ValueError(f"init weights must be non-negative and sum to 1, got {w}.")
        if self.families is not None:
            if not isinstance(comps, (tuple, list)) or len(comps) != k:
                raise ValueError(
                    f"init components must be a tuple of {k} parameter sets, one per family."
                )
            comps = tuple(comps)
        else:
            if hasattr(self.family, "validate_params"):
                self.family.validate_params(comps)
            axes = jax.tree.leaves(self.family.component_axes(comps), is_leaf=_is_none)
            leaves = jax.tree_util.tree_flatten_with_path(comps)[0]
            for (path, leaf), axis in zip(leaves, axes, strict=True):
                if axis is None:  # shared by every component (e.g. a tied covariance)
                    continue
                shape = np.shape(leaf)
                if len(shape) == 0 or shape[0] != k:
                    raise ValueError(
                        f"init components{jax.tree_util.keystr(path)} must have a leading axis "
                        f"of n_components={k}, got shape {shape}."
                    )
            expected = self._start_shapes(x) if trace else None
            given = jax.tree_util.tree_flatten_with_path(comps)[0]
            want = jax.tree.leaves(expected)
            if expected is not None and len(given) == len(want):
                for (path, leaf), spec in zip(given, want, strict=True):
                    if np.shape(leaf) != spec.shape:
                        raise ValueError(
                            f"components{jax.tree_util.keystr(path)} has shape "
                            f"{np.shape(leaf)}, but {self.family!r} with "
                            f"n_components={k} on data of shape {x.shape} uses {spec.shape}."
                        )
        return super()._check_params(MixtureParams(w, comps), x, trace=trace)

    def _check_gating_params(self, weights, x):
        """User-given gating parameters: shapes, and the reference component's row at 0."""
        if isinstance(weights, dict) and set(weights) == {"gate_coef", "gate_intercept"}:
            weights = GatingParams(**weights)
        if not isinstance(weights, GatingParams):
            raise TypeError(
                "with gating, init weights must be em.GatingParams(gate_coef=(K, Q), "
                "gate_intercept=(K,)), "
                f"got {type(weights).__name__}."
            )
        k = self.n_components
        q = int(self.gating.design(x).shape[1])
        coef = np.asarray(weights.gate_coef, dtype=np.float64)
        icpt = np.asarray(weights.gate_intercept, dtype=np.float64)
        if coef.shape != (k, q) or icpt.shape != (k,):
            raise ValueError(
                f"init gating parameters must have gate_coef ({k}, {q}) and gate_intercept "
                f"({k},), got {coef.shape} and {icpt.shape}."
            )
        if np.any(coef[0] != 0) or icpt[0] != 0 or (not self.gating.fit_intercept and np.any(icpt)):
            raise ValueError(
                "init gating parameters: component 0 is the reference class, so gate_coef[0] and "
                "gate_intercept[0] must be 0 (and every intercept without fit_intercept); subtract "
                "row 0 from every row to get the same weights."
            )
        return GatingParams(coef, icpt)
