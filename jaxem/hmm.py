"""``em.HMM``: a hidden Markov model with any emission family, fitted by Baum–Welch.

Baum–Welch is EM with forward–backward as its E-step. The *units* the engine
chunks, weights, shards and restarts over are whole sequences, held as
:class:`Sequences` (observations padded to the longest sequence, and a mask);
padding contributes nothing. The E-step returns additive statistics: expected
initial-state counts, expected transition counts and the emission family's
sufficient statistics under the smoothed marginals; the M-step is closed form
for the initial and transition probabilities (MAP under Dirichlet priors) and
the family's own update for the emissions (its closed form where registered,
else the gradient M-step).
"""

from __future__ import annotations

import functools
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _validation, mstep
from jaxem import constraints as _constraints
from jaxem import priors as _priors
from jaxem.chunks import rows_sum
from jaxem.families.base import Family
from jaxem.forward_backward import (
    forward_backward,
    forward_backward_blocked,
    forward_backward_log,
    forward_backward_parallel,
    viterbi,
)
from jaxem.mixture import Mixture, MixtureParams, MixtureStats
from jaxem.model import NO_EXTRA, Expectation, Extra, Model

__all__ = [
    "HMM",
    "HMMParams",
    "HMMStats",
    "Sequences",
    "sequences",
    "ESTEPS",
]

#: The forward–backward forms ``HMM(estep=...)`` selects (jaxem.forward_backward):
#: ``"log"`` log-space messages, exact always (the default); ``"scaled"`` the
#: probability-space recursion, ~1.5-2x faster on a CPU but it can lose a state
#: that cannot be re-entered (zero transitions) once its probability underflows;
#: ``"blocked"`` the scaled one in √T blocks (≈ 4√T sequential steps: 3.6x faster
#: than "scaled" at T = 1e6 on a CPU); ``"parallel"`` the scaled one as a
#: ``lax.associative_scan`` (log T deep, for long sequences on an accelerator).
ESTEPS = {
    "log": forward_backward_log,
    "scaled": forward_backward,
    "blocked": forward_backward_blocked,
    "parallel": forward_backward_parallel,
}


class HMMParams(NamedTuple):
    """Parameters of a hidden Markov model with K states.

    Attributes:
        initial: ``(K,)`` initial-state probabilities.
        transition: ``(K, K)`` transition probabilities, ``transition[i, j] =
            p(z_{t+1} = j | z_t = i)``; each row sums to 1.
        emissions: the emission family's parameters with a leading ``(K,)``
            axis (e.g. ``em.NormalParams(mean=(K,), var=(K,))``).
    """

    initial: jax.Array
    transition: jax.Array
    emissions: Any


class Sequences(NamedTuple):
    """Sequences padded to a common length: the units of an HMM fit.

    Attributes:
        x: ``(B, T, ...)`` observations; entries past a sequence's end repeat
            its first observation (inside the family's support) and count 0.
        mask: ``(B, T)`` booleans, True on each sequence's own steps.
    """

    x: Any
    mask: Any


class HMMStats(NamedTuple):
    """What the HMM's E-step hands its M-step (sums over sequences).

    Attributes:
        initial: ``(K,)`` expected counts of the first state.
        transition: ``(K, K)`` expected transition counts.
        emissions: the emission family's :class:`jaxem.MixtureStats` under the
            smoothed marginals (``resp`` is ``(B·T, K)`` when its update needs it).
    """

    initial: jax.Array
    transition: jax.Array
    emissions: MixtureStats


def _split(arr: np.ndarray, lengths) -> list[np.ndarray]:
    lens = np.asarray(lengths)
    if lens.ndim != 1 or lens.size == 0 or not np.issubdtype(lens.dtype, np.integer):
        raise TypeError(
            f"lengths must be a 1-D array of integers (one per sequence), got {lengths!r}."
        )
    if np.any(lens < 1):
        raise ValueError(f"lengths must all be >= 1, got {lens.min()}.")
    if lens.sum() != arr.shape[0]:
        raise ValueError(
            f"lengths sum to {int(lens.sum())} but x has {arr.shape[0]} rows; they must be "
            "equal (x is the concatenation of the sequences)."
        )
    return np.split(arr, np.cumsum(lens)[:-1])


def sequences(x, lengths=None) -> Sequences:
    """Sequences from hmmlearn's convention, or from a list of arrays.

    Args:
        x: the concatenation of all sequences, ``(ΣT,)`` or ``(ΣT, D)``, with
            ``lengths``; or a list of ``(T_b,)`` / ``(T_b, D)`` arrays; or
            one array without ``lengths`` (one sequence).
        lengths: ``(B,)`` integers summing to ``len(x)``.

    Returns:
        :class:`Sequences`: float observations padded to the longest sequence
        (NaN kept, for ``missing=``) and the ``(B, T)`` mask.

    Example:
        >>> data = em.sequences(np.concatenate([a, b]), lengths=[len(a), len(b)])
    """
    if isinstance(x, Sequences):
        return x
    if isinstance(x, (list, tuple)) and x and not isinstance(x[0], numbers.Number):
        if lengths is not None:
            raise ValueError("pass either a list of sequences or lengths=, not both.")
        parts = [np.asarray(_validation.numeric_array(a, f"x[{i}]")) for i, a in enumerate(x)]
    else:
        arr = _validation.numeric_array(x, "x")
        parts = [arr] if lengths is None else _split(arr, lengths)
    trail = {p.shape[1:] for p in parts}
    if len(trail) != 1 or any(p.ndim not in (1, 2) for p in parts):
        raise ValueError(
            "every sequence must be (T,) or (T, D) with the same D; got shapes "
            f"{sorted({p.shape for p in parts})[:4]}."
        )
    if any(p.shape[0] == 0 for p in parts):
        raise ValueError("every sequence needs at least one step (found an empty one).")
    longest = max(p.shape[0] for p in parts)
    out = np.empty((len(parts), longest) + parts[0].shape[1:], np.float64)
    mask = np.zeros((len(parts), longest), bool)
    for b, p in enumerate(parts):
        out[b, : len(p)] = p
        out[b, len(p) :] = p[0]
        mask[b, : len(p)] = True
    return Sequences(out, mask)


def _check_family(emission) -> Family:
    if isinstance(emission, type) and issubclass(emission, Family):
        raise TypeError(f"HMM: emission must be an instance, e.g. {emission.__name__}().")
    if not isinstance(emission, Family):
        raise TypeError(f"HMM: emission must be an em.Family instance, got {emission!r}.")
    return emission


def _dirichlet(prior, name: str, k: int):
    if prior is None:
        return None
    if not isinstance(prior, _priors.Dirichlet):
        raise TypeError(f"HMM: {name} must be priors.Dirichlet or None, got {prior!r}.")
    alpha = np.asarray(prior.concentration, np.float64)
    if alpha.ndim > 0 and alpha.shape[-1] != k:
        raise ValueError(f"HMM: {name} has {alpha.shape[-1]} concentrations but n_states={k}.")
    if np.any(alpha < 1):
        raise ValueError(
            f"HMM: {name} needs concentrations >= 1 for the posterior mode to exist; got "
            f"{prior.concentration}."
        )
    return prior


class HMM(Model):
    """A hidden Markov model: K states, a Markov chain between them, one emission family.

    Args:
        emission: an ``em.Family`` instance (any built-in or custom family).
        n_states: K.
        initial_prior: ``priors.Dirichlet`` on the initial probabilities, or
            ``None`` (maximum likelihood).
        transition_prior: ``priors.Dirichlet`` on each row of the transition
            matrix (a ``(K,)`` or ``(K, K)`` concentration), or ``None``.
        gradient_options: stopping rules of the gradient M-step (emission
            families without a closed form).
        estep: the forward–backward form (:data:`ESTEPS`): ``"log"`` (the
            default: log-space, exact for any transition matrix), or the
            faster probability-space ``"scaled"``, ``"blocked"`` (long
            sequences on a CPU) and ``"parallel"`` (long sequences on an
            accelerator), which need every transition probability > 0 (no
            left-to-right structure) to be exact.

    Data: ``em.fit(hmm, x, lengths=...)`` with ``x`` the concatenation of the
    sequences (hmmlearn's convention), a list of sequences, or
    :class:`Sequences`. Units are sequences: ``sample_weight`` has one weight
    per sequence and ``tol`` is per unit of sequence weight.

    Transition probabilities that are 0 in the start stay 0 (left-to-right
    models); they are not free parameters for BIC/AIC.

    Example:
        >>> hmm = em.HMM(em.Normal(), 2)
        >>> res = em.fit(hmm, x, lengths=lengths, key=jax.random.key(0), restarts=8)
        >>> res.params.transition, em.predict(hmm, res.params, x, lengths=lengths)
    """

    def __init__(
        self,
        emission: Family,
        n_states: int,
        *,
        initial_prior=None,
        transition_prior=None,
        gradient_options: mstep.GradientOptions | None = None,
        estep: str = "log",
    ):
        emission = _check_family(emission)
        if not isinstance(estep, str) or estep not in ESTEPS:
            raise ValueError(f"HMM: estep must be one of {sorted(ESTEPS)}, got {estep!r}.")
        self.estep = estep
        if isinstance(n_states, bool) or not isinstance(n_states, numbers.Integral):
            raise TypeError(f"HMM: n_states must be an integer, got {n_states!r}.")
        if n_states < 1:
            raise ValueError(f"HMM: n_states must be >= 1, got {n_states}.")
        self.emission = emission
        self.n_components = int(n_states)
        self.initial_prior = _dirichlet(initial_prior, "initial_prior", self.n_components)
        self.transition_prior = _dirichlet(transition_prior, "transition_prior", self.n_components)
        self.gradient_options = gradient_options or mstep.GradientOptions()
        self._mixture = Mixture(emission, self.n_components, gradient_options=gradient_options)
        self.m_step = None
        self.init = self._draw
        self._compiled = {}

    def __repr__(self) -> str:
        extra = ""
        if self.initial_prior is not None:
            extra += f", initial_prior={self.initial_prior!r}"
        if self.transition_prior is not None:
            extra += f", transition_prior={self.transition_prior!r}"
        if self.estep != "log":
            extra += f", estep={self.estep!r}"
        return f"HMM({self.emission!r}, n_states={self.n_components}{extra})"

    @property
    def n_states(self) -> int:
        return self.n_components

    @property
    def constraints(self):
        return HMMParams(
            _constraints.simplex, _constraints.simplex, dict(self.emission.constraints)
        )

    # -- the model ------------------------------------------------------------
    def emission_log_prob(self, emissions, x, observed=None) -> jax.Array:
        """``(B, T, K)`` log densities of observations ``x`` (``(B, T, [D])``) under each state.

        ``observed`` (``x``'s shape, or ``None``): entries that count; a step
        with nothing observed has density 1 under every state.
        """
        flat = x.reshape((-1,) + x.shape[2:])
        obs = None if observed is None else observed.reshape(flat.shape)
        lp = self._mixture.component_log_prob(emissions, flat, obs)
        return lp.reshape(x.shape[:2] + (self.n_components,))

    def log_prior(self, params) -> jax.Array:
        lp = self.emission.log_prior(params.emissions)
        for prior, value in (
            (self.initial_prior, params.initial),
            (self.transition_prior, params.transition),
        ):
            if prior is not None:
                lp = lp + _dirichlet_log_density(prior, value)
        return lp

    def log_joint(self, params, data):
        raise NotImplementedError(
            "an HMM has no per-unit log joint over independent states; use "
            "em.responsibilities / em.predict / em.log_likelihood."
        )

    def _chains(self, params, data: Sequences, observed=None, labels=None):
        """Per sequence: ``(log initial (K,), transition, log emissions (B, T, K))``.

        ``labels`` ``(B, T)`` (-1 unknown) pin known states: every other
        state's emission is ``-inf`` at those steps.
        """
        log_e = self.emission_log_prob(params.emissions, data.x, observed)
        if labels is not None:
            states = jnp.arange(self.n_components)
            other = (labels[..., None] >= 0) & (states != labels[..., None])
            log_e = jnp.where(other, -jnp.inf, log_e)
        return jnp.log(params.initial), params.transition, log_e

    def _forward_backward(self, params, data: Sequences, observed=None, labels=None):
        log_pi, trans, log_e = self._chains(params, data, observed, labels)
        fb = ESTEPS[self.estep]
        return jax.vmap(fb, in_axes=(None, None, 0, 0))(log_pi, trans, log_e, data.mask)

    # -- inference ----------------------------------------------------------------
    def _jit(self, name: str, fn):
        """``fn`` compiled once per model (the public functions call these eagerly)."""
        key = ("inference", name)
        if key not in self._compiled:
            self._compiled[key] = jax.jit(fn)
        return self._compiled[key]

    def posterior(self, params, data: Sequences, observed=None) -> jax.Array:
        """``(B, T, K)`` smoothed marginals ``p(z_t = k | x_b)`` (0 past each sequence's end)."""
        fn = self._jit("posterior", lambda p, d, o: self._forward_backward(p, d, o).marginals)
        return fn(params, data, observed)

    def unit_log_likelihood(self, params, data: Sequences, observed=None) -> jax.Array:
        """``(B,)`` forward log-likelihood ``log p(x_b)`` of each sequence."""
        fn = self._jit("ll", lambda p, d, o: self._forward_backward(p, d, o).log_likelihood)
        return fn(params, data, observed)

    def decode(self, params, data: Sequences, observed=None) -> jax.Array:
        """``(B, T)`` Viterbi paths (the last state repeated past each sequence's end)."""
        return self._jit("decode", lambda p, d, o: self._viterbi(p, d, o)[0])(
            params, data, observed
        )

    def _viterbi(self, params, data, observed=None):
        log_pi, trans, log_e = self._chains(params, data, observed)
        return jax.vmap(viterbi, in_axes=(None, None, 0, 0))(
            log_pi, jnp.log(trans), log_e, data.mask
        )

    def viterbi_log_joint(self, params, data: Sequences) -> jax.Array:
        """``(B,)`` ``log p(x_b, z*_b)`` of each sequence's Viterbi path."""
        return self._jit("viterbi score", lambda p, d: self._viterbi(p, d)[1])(params, data)

    def sample(self, key, params, n_steps: int):
        """One sequence of ``n_steps``: ``(x (n_steps, ...), states (n_steps,))``.

        Example:
            >>> x, z = hmm.sample(jax.random.key(0), res.params, 500)
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, numbers.Integral) or n_steps < 1:
            raise ValueError(f"sample: n_steps must be a positive integer, got {n_steps!r}.")
        key_z0, key_z, key_x = jax.random.split(key, 3)
        z0 = jax.random.categorical(key_z0, jnp.log(params.initial))
        log_t = jnp.log(params.transition)

        def step(z, k):
            nxt = jax.random.categorical(k, log_t[z])
            return nxt, nxt

        _, rest = jax.lax.scan(step, z0, jax.random.split(key_z, n_steps - 1))
        states = jnp.concatenate([z0[None], rest]).astype(jnp.int32)
        keys = jax.random.split(key_x, self.n_components)
        axes = self.emission.component_axes(params.emissions)
        every = jax.vmap(self.emission.sample, in_axes=(0, axes, None))(
            keys, params.emissions, n_steps
        )  # (K, n_steps, ...)
        return every[states, jnp.arange(n_steps)], states

    # -- the engine's protocol ------------------------------------------------------
    def _statistics(self, params, data: Sequences, sample_weight, observed=None, labels=None):
        """Additive statistics of some sequences, and their per-sequence log-likelihoods."""
        post = self._forward_backward(params, data, observed, labels)
        w = jnp.where(sample_weight > 0, sample_weight, 0)
        # A zero-weight (padding) sequence may be impossible under params: its nan
        # statistics must not poison the sums.
        ok = sample_weight > 0
        marg = jnp.where(ok[:, None, None], post.marginals, 0)
        initial = jnp.sum(w[:, None] * marg[:, 0], axis=0)
        transition = jnp.sum(
            w[:, None, None] * jnp.where(ok[:, None, None], post.transitions, 0), axis=0
        )
        k = self.n_components
        x_flat = data.x.reshape((-1,) + data.x.shape[2:])
        steps = (w[:, None] * data.mask).reshape(-1)  # each step weighs its sequence
        resp = marg.reshape(-1, k)
        obs = None if observed is None else observed.reshape(x_flat.shape)
        emissions = self._mixture.statistics_from_resp(params.emissions, x_flat, resp, steps, obs)
        return HMMStats(initial, transition, emissions), post.log_likelihood

    def expect(
        self, params, data: Sequences, sample_weight, extra: Extra = NO_EXTRA, chunking=None
    ) -> Expectation:
        """E-step: forward–backward on every sequence, statistics summed (:class:`HMMStats`)."""
        if chunking is None:
            stats, unit_ll = self._statistics(
                params, data, sample_weight, extra.observed, extra.labels
            )
            return Expectation(unit_ll, self.log_prior(params), stats)

        k = self.n_components

        def units(d, w, ob, lb):
            st, ll = self._statistics(params, d, w, ob, lb)
            e = st.emissions
            # Per-unit outputs lead with the chunk's sequences: (sequences, T, K).
            resp = None if e.resp is None else e.resp.reshape(d.mask.shape + (k,))
            return (st.initial, st.transition, e.counts, e.stats), (ll, resp)

        (initial, transition, counts, sums), (unit_ll, resp) = rows_sum(
            units, chunking, data, sample_weight, extra.observed, extra.labels
        )
        if resp is not None:
            # Per chunk the rows are (sequences of the chunk) x T: back in unit order.
            resp = resp.reshape((-1, k))
        stats = HMMStats(initial, transition, MixtureStats(counts, sums, resp))
        return Expectation(unit_ll, self.log_prior(params), stats)

    def maximize(
        self,
        params,
        data: Sequences,
        sample_weight,
        stats: HMMStats,
        extra: Extra = NO_EXTRA,
        chunking=None,
        fixed=None,
    ) -> HMMParams:
        """M-step: Dirichlet-MAP initial and transition probabilities, the family's emission update.

        Transitions that are 0 stay 0 (their expected counts are 0 and no
        prior mass is added to them).
        """
        initial = _dirichlet_mode(params.initial, stats.initial, self.initial_prior)
        transition = _dirichlet_mode(params.transition, stats.transition, self.transition_prior)
        k = self.n_components
        x_flat = data.x.reshape((-1,) + data.x.shape[2:])
        steps = (sample_weight[:, None] * data.mask).reshape(-1)
        mix = MixtureParams(jnp.full((k,), 1.0 / k, initial.dtype), params.emissions)
        masks = None
        if fixed is not None:
            masks = MixtureParams(np.zeros((k,), bool), fixed.emissions)
        obs = None if extra.observed is None else extra.observed.reshape(x_flat.shape)

        def posterior():  # the smoothed marginals at params, when stats did not carry them
            post = self._forward_backward(params, data, extra.observed, extra.labels)
            ok = sample_weight[:, None, None] > 0  # padding may be impossible: no nan
            return jnp.where(ok, post.marginals, 0).reshape(-1, k)

        emissions = self._mixture.maximize(
            mix, x_flat, steps, stats.emissions, Extra(obs, None), None, masks, posterior
        ).components
        return HMMParams(initial, transition, emissions)

    # -- starts and checks ------------------------------------------------------------
    def _draw(self, key, data: Sequences):
        """One random start: the family's own start for the emissions (from all steps),
        uniform initial probabilities, and transition rows ``(I + Dirichlet(1)) / 2``.

        Sticky, random rows: a uniform transition matrix makes the first
        E-step that of a mixture and leaves symmetric restarts alike.
        """
        k = self.n_components
        key_e, key_t = jax.random.split(key)
        x_flat = data.x.reshape((-1,) + data.x.shape[2:])
        emissions = self.emission.init(key_e, x_flat, k)
        dtype = x_flat.dtype
        initial = jnp.full((k,), 1.0 / k, dtype)
        rows = jax.random.dirichlet(key_t, jnp.ones((k,), dtype), (k,)).astype(dtype)
        transition = 0.5 * (jnp.eye(k, dtype=dtype) + rows)
        return HMMParams(initial, transition, emissions)

    def _pads_units(self, from_keys: bool) -> bool:
        return False  # units are packed sequences: not padded (each length compiles)

    def _can_draw(self) -> bool:
        return True

    def _as_units(self, x, lengths=None, missing=None):
        return sequences(x, lengths)

    def _prepare_units(self, data, missing, fitting: bool):
        """Validate :class:`Sequences` on the host; cast and place them on the device.

        With ``missing="marginalize"`` returns ``(data, observed)``: NaN
        entries are missing (integrated out by the emission family: a step
        with nothing observed carries no emission term), ``observed`` is
        ``(B, T, [D])`` booleans (``None`` when nothing is missing).
        """
        if not isinstance(data, Sequences):
            raise TypeError(
                "an HMM's data are sequences: pass x with lengths=, a list of sequences, or "
                "em.sequences(x, lengths)."
            )
        x = np.asarray(data.x, np.float64)
        mask = np.asarray(data.mask, bool)
        if x.ndim not in (2, 3) or mask.shape != x.shape[:2]:
            raise ValueError(
                f"HMM: observations must be (B, T) or (B, T, D) with a (B, T) mask, got "
                f"{x.shape} and {mask.shape}."
            )
        if not mask[:, 0].all() or np.any(np.diff(mask.astype(np.int8), axis=1) > 0):
            raise ValueError(
                "HMM: each sequence's mask must be True on its first steps and False after "
                "(padding last, at least one step); build Sequences with em.sequences."
            )
        # Padding repeats each sequence's first observation (inside the support).
        x = np.where(mask.reshape(mask.shape + (1,) * (x.ndim - 2)), x, x[:, :1])
        own = x[mask]  # every sequence's own steps, (ΣT, [D])
        _validation.check_float_range(own)
        if np.isinf(own).any():
            raise ValueError("x contains infinite entries; remove them.")
        nan = np.isnan(x)
        observed = None
        if nan.any():
            if missing != "marginalize":
                raise ValueError(
                    f"x contains {int(np.isnan(own).sum())} NaN entries. If they are missing "
                    "observations, pass missing='marginalize' to integrate them out; "
                    "otherwise remove or impute them."
                )
            self._mixture._check_missing(own)
            flat = x.reshape((-1,) + x.shape[2:])
            x = _validation.fill_missing(flat, nan.reshape(flat.shape)).reshape(x.shape)
            observed = ~nan
        units = Sequences(x, mask)
        (self._check_data if fitting else self._check_support)(units)
        dtype = np.dtype(_validation.float_dtype())
        # Sequences sharded over devices stay where they are (the engine then
        # chunks them strided, every device working on its own sequences).
        place = functools.partial(_validation.place_like, x=data.x)
        units = Sequences(place(x.astype(dtype)), place(mask))
        if missing != "marginalize":
            return units
        return units, None if observed is None else place(observed)

    def _prepare_labels(self, labels, data, n_states: int):
        """Per-step labels ``(ΣT,)`` (concatenated like ``x``; -1 unknown) as ``(B, T)``."""
        mask = np.asarray(data.mask)
        flat = _validation.prepare_labels(labels, int(mask.sum()), n_states)
        out = np.full(mask.shape, -1, np.int32)
        out[mask] = np.asarray(flat)
        return jnp.asarray(out)

    def _min_units(self) -> int:
        return 1  # one sequence is enough

    def _n_observations(self, data) -> int:
        return int(np.sum(np.asarray(data.mask)))

    def _structural_zeros(self, params, masks=None) -> int:
        """Free entries of the initial and transition probabilities that are 0: not free.

        ``masks`` (from ``fixed=``): fixed entries are not counted at all, so
        their zeros are not subtracted again.
        """
        total = 0
        for name in ("initial", "transition"):
            zero = np.asarray(getattr(params, name)) == 0
            if masks is not None:
                zero &= ~np.broadcast_to(np.asarray(getattr(masks, name)), zero.shape)
            total += int(zero.sum())
        return total

    def _per_step(self, out, data):
        """Per-step outputs ``(B, T, ...)`` concatenated over sequences ``(ΣT, ...)``."""
        return jnp.asarray(np.asarray(out)[np.asarray(data.mask)])

    def _check_data(self, data) -> None:
        self._check_support(data)
        steps = int(np.sum(np.asarray(data.mask)))
        if steps < self.n_components:
            raise ValueError(
                f"n_states={self.n_components} is larger than the number of observations "
                f"({steps}); use fewer states or more data."
            )

    def _check_support(self, data) -> None:
        if not isinstance(data, Sequences):
            raise TypeError(
                "an HMM's data are sequences: pass x with lengths=, a list of sequences, or "
                "em.sequences(x, lengths)."
            )
        x = np.asarray(data.x)
        if x.ndim not in (2, 3):
            raise ValueError(f"HMM: observations must be (B, T) or (B, T, D), got {x.shape}.")
        self.emission.validate_data(x[np.asarray(data.mask)])

    def _check_params(self, params, data, *, trace: bool = True):
        if isinstance(params, dict) and set(params) == set(HMMParams._fields):
            params = HMMParams(**params)
        if not isinstance(params, tuple) or len(params) != 3:
            raise TypeError(
                "HMM parameters must be em.HMMParams(initial=(K,), transition=(K, K), "
                f"emissions=...), got {type(params).__name__}."
            )
        k = self.n_components
        initial = np.asarray(params.initial, np.float64)
        transition = np.asarray(params.transition, np.float64)
        if initial.shape != (k,):
            raise ValueError(f"init initial must have shape ({k},), got {initial.shape}.")
        if transition.shape != (k, k):
            raise ValueError(f"init transition must have shape ({k}, {k}), got {transition.shape}.")
        for name, value in (("initial", initial), ("transition", transition)):
            if not (np.all(value >= 0) and np.allclose(value.sum(-1), 1, atol=1e-5)):
                raise ValueError(
                    f"init {name} must be non-negative with rows summing to 1, got {value}."
                )
        x_flat = np.asarray(data.x).reshape((-1,) + np.shape(data.x)[2:])
        comps = self._mixture._check_params(
            MixtureParams(np.full(k, 1.0 / k), params.emissions), x_flat, trace=trace
        ).components
        dtype = _validation.float_dtype()
        return HMMParams(jnp.asarray(initial, dtype), jnp.asarray(transition, dtype), comps)

    def _condition_number(self, params) -> float | None:
        return self.emission.condition_number(params.emissions)


def _dirichlet_log_density(prior, value):
    """Σ over rows of the Dirichlet log density on the rows' nonzero entries.

    A structural zero (a transition that is not allowed) is outside the
    model, not a point of zero density: its ``(α - 1) log 0`` term is dropped.
    """
    alpha = jnp.broadcast_to(jnp.asarray(prior.concentration, value.dtype), value.shape)
    terms = jnp.where(value > 0, (alpha - 1) * jnp.log(jnp.where(value > 0, value, 1)), 0)
    norm = jax.scipy.special.gammaln(jnp.sum(alpha, -1)) - jnp.sum(
        jax.scipy.special.gammaln(alpha), -1
    )
    return jnp.sum(terms) + jnp.sum(norm)


def _dirichlet_mode(old, counts, prior):
    """Rows of ``old`` updated to ``counts + α - 1`` normalised; zeros of ``old`` stay 0.

    Entries that are not structural zeros are kept at least at the smallest
    normal float: expected counts that underflow to 0 (a state never seen
    first) must not turn into a structural zero, which would hold forever.
    """
    num = counts
    if prior is not None:
        alpha = jnp.asarray(prior.concentration, counts.dtype)
        num = counts + alpha - 1
    tiny = jnp.finfo(counts.dtype).tiny
    num = jnp.where(old > 0, jnp.maximum(num, tiny), 0)
    total = jnp.sum(num, axis=-1, keepdims=True)
    # A state never visited keeps its row (every update is then a maximiser).
    return jnp.where(total > 0, num / jnp.where(total > 0, total, 1), old)
