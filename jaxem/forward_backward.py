"""Exact inference in a chain of discrete states: forward–backward and Viterbi.

One sequence at a time (the caller vmaps over sequences), with a padding mask
at the end: steps with ``mask[t] = False`` contribute nothing — no likelihood,
no statistics.

The filter works with normalised messages in probability space (the
"scaling" form of Rabiner 1989): with ``e_t[k] = p(x_t | z_t = k)`` divided by
its largest entry ``m_t``, the forward message ``α̂_t ∝ (α̂_{t-1} A) ∘ e_t`` is
renormalised to sum 1 by ``c_t``, and ``log p(x_{1:T}) = Σ_t log c_t + log m_t``.
Each step is a ``(K,) @ (K, K)`` product — no ``logsumexp`` — and the
messages never under- or overflow (every entry of a normalised ``α̂`` is at
most 1 and one entry of ``e_t`` is 1). The backward pass accumulates the
expected transition counts ``Σ_t ξ_t`` in its carry, so nothing of shape
``(T, K, K)`` is formed.

Viterbi runs in log space (max-product), so structural zeros of the
transition matrix (``-inf``) are exact.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ChainPosterior",
    "forward_backward_log",
    "forward_backward",
    "forward_backward_parallel",
    "forward_backward_blocked",
    "block_length",
    "viterbi",
    "log_normalizer",
]


class ChainPosterior(NamedTuple):
    """What forward–backward returns for one sequence.

    Attributes:
        log_likelihood: scalar ``log p(x_{1:T})`` over the unmasked steps.
        marginals: ``(T, K)`` smoothed ``p(z_t = k | x)``, 0 on masked steps.
        transitions: ``(K, K)`` expected transition counts ``Σ_t p(z_t=i, z_{t+1}=j | x)``.
    """

    log_likelihood: jax.Array
    marginals: jax.Array
    transitions: jax.Array


_UNROLL = 1  # unrolling 8 steps per loop iteration made compilation ~4x slower (8 s -> 32 s)


def _lse(a, axis):
    """``logsumexp`` whose value and gradient stay finite-or--inf (no nan) on all -inf input."""
    top = jnp.max(a, axis=axis, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0)
    return jnp.log(jnp.sum(jnp.exp(a - top), axis=axis)) + jnp.squeeze(top, axis)


def forward_backward_log(log_initial, transition, log_emission, mask) -> ChainPosterior:
    """:func:`forward_backward` with every message in log space (``logsumexp``): exact always.

    The probability-space forms lose a state whose filtered probability falls
    below the smallest float relative to the others (e^-103 in float32) when
    it cannot be re-entered (a zero in the transition matrix: left-to-right
    models); log-space messages keep it. ``K²`` exponentials per step instead
    of a ``(K,) @ (K, K)`` product: the default E-step of ``em.HMM``.
    """
    dtype = log_emission.dtype
    log_a = jnp.log(transition)
    first = log_initial + log_emission[0]
    c0 = _lse(first, axis=0)
    alpha0 = first - c0

    # Rabiner's scaling, in logs: α̂ is normalised every step (log c_t is the
    # normaliser), and β̂ divided by the same c_t, so every message is O(1)
    # and float32 keeps its digits over any length.
    def forward(alpha, inputs):
        le, m = inputs
        new = _lse(alpha[:, None] + log_a, axis=0) + le
        c = jnp.where(m, _lse(new, axis=0), 0.0)
        return jnp.where(m, new - c, alpha), (jnp.where(m, new - c, alpha), c)

    _, (alphas, log_c) = jax.lax.scan(forward, alpha0, (log_emission[1:], mask[1:]), unroll=_UNROLL)
    alphas = jnp.concatenate([alpha0[None], alphas], axis=0)  # (T, K)
    log_likelihood = c0 + jnp.sum(log_c)

    def backward(carry, inputs):
        beta_next, counts = carry  # log β̂_{t+1}
        alpha_t, le_next, c_next, m_next = inputs
        v = le_next + beta_next - c_next  # (K,)
        xi = jnp.exp(alpha_t[:, None] + log_a + v[None, :])
        counts = counts + jnp.where(m_next, xi, 0.0)
        beta = jnp.where(m_next, _lse(log_a + v[None, :], axis=1), beta_next)
        return (beta, counts), beta

    k = transition.shape[0]
    init = (jnp.zeros((k,), dtype), jnp.zeros((k, k), dtype))
    (_, counts), betas = jax.lax.scan(
        backward,
        init,
        (alphas[:-1], log_emission[1:], log_c, mask[1:]),
        reverse=True,
        unroll=_UNROLL,
    )
    betas = jnp.concatenate([betas, jnp.zeros((1, k), dtype)], axis=0)
    marginals = jax.nn.softmax(alphas + betas, axis=1)
    marginals = jnp.where(mask[:, None], marginals, 0.0)
    return ChainPosterior(log_likelihood, marginals, counts)


def forward_backward(log_initial, transition, log_emission, mask) -> ChainPosterior:
    """Smoothed marginals, expected transition counts and log-likelihood of one sequence.

    The scaled (probability-space) recursion: fast, and exact unless a state's
    filtered probability underflows relative to the others *and* it cannot be
    re-entered (zeros in ``transition``); then use :func:`forward_backward_log`.

    Args:
        log_initial: ``(K,)`` log initial-state probabilities (``-inf`` allowed).
        transition: ``(K, K)`` transition probabilities, rows summing to 1.
        log_emission: ``(T, K)`` values ``log p(x_t | z_t = k)``.
        mask: ``(T,)`` booleans, True for the sequence's steps (padding last).
    """
    dtype = log_emission.dtype
    hi = jax.lax.Precision.HIGHEST
    emit, top = _scaled_emissions(log_emission)  # (T, K), largest entry of each row 1
    first = jnp.exp(log_initial - jnp.max(log_initial)) * emit[0]
    c0 = jnp.sum(first)
    alpha0 = first / c0

    def forward(alpha, inputs):
        e, m = inputs
        pred = jnp.matmul(alpha, transition, precision=hi) * e
        c = jnp.where(m, jnp.sum(pred), 1.0)
        new = jnp.where(m, pred / c, alpha)
        return new, (new, c)

    _, (alphas, c) = jax.lax.scan(forward, alpha0, (emit[1:], mask[1:]), unroll=_UNROLL)
    alphas = jnp.concatenate([alpha0[None], alphas], axis=0)  # (T, K)
    log_likelihood = (
        jnp.log(c0) + jnp.max(log_initial) + jnp.sum(jnp.log(c)) + jnp.sum(jnp.where(mask, top, 0))
    )

    # The backward pass only carries β̂; the messages e_{t+1} β̂_{t+1} / c_{t+1} it
    # passes are kept, and the transition counts are one product over all steps
    # afterwards, Σ_t α̂_t ⊗ msg_{t+1} (∘ A): no (K, K) work inside the loop.
    def backward(beta_next, inputs):
        e_next, c_next, m_next = inputs
        msg = jnp.where(m_next, e_next * beta_next / c_next, 0.0)
        beta = jnp.where(m_next, jnp.matmul(transition, msg, precision=hi), beta_next)
        return beta, (beta, msg)

    k = transition.shape[0]
    _, (betas, msgs) = jax.lax.scan(
        backward, jnp.ones((k,), dtype), (emit[1:], c, mask[1:]), reverse=True, unroll=_UNROLL
    )
    betas = jnp.concatenate([betas, jnp.ones((1, k), dtype)], axis=0)  # (T, K)
    counts = transition * jnp.matmul(alphas[:-1].T, msgs, precision=hi)
    marginals = alphas * betas
    marginals = marginals / jnp.sum(marginals, axis=1, keepdims=True)
    marginals = jnp.where(mask[:, None], marginals, 0.0)
    return ChainPosterior(log_likelihood, marginals, counts)


def _scaled_emissions(log_emission):
    top = jnp.max(log_emission, axis=1, keepdims=True)  # (T, 1)
    top = jnp.where(jnp.isfinite(top), top, 0)
    return jnp.exp(log_emission - top), top[:, 0]


def _product(a, b):
    """Associative product of scaled matrices ``(M, log s)``: ``M_a M_b`` rescaled to max 1."""
    m = jnp.matmul(a[0], b[0], precision=jax.lax.Precision.HIGHEST)
    top = jnp.max(m, axis=(-2, -1), keepdims=True)
    top = jnp.where(top > 0, top, 1)
    return m / top, a[1] + b[1] + jnp.log(top[..., 0, 0])


def forward_backward_parallel(log_initial, transition, log_emission, mask) -> ChainPosterior:
    """:func:`forward_backward` in ``O(log T)`` parallel depth (``lax.associative_scan``).

    The forward messages are prefix products, the backward messages suffix
    products, of the step matrices ``M_t = A diag(e_t)`` (the identity on
    masked steps), each kept with a log scale so nothing under- or overflows
    (Särkkä & García-Fernández 2021 parallelise the same recursions). Work is
    ``O(T K³)`` against the sequential ``O(T K²)``, but every level is one
    batched matmul: the choice for long sequences on an accelerator.
    """
    dtype = log_emission.dtype
    t_len = log_emission.shape[0]
    if t_len == 1:  # no transitions: nothing to scan
        return forward_backward(log_initial, transition, log_emission, mask)
    k = transition.shape[0]
    emit, top = _scaled_emissions(log_emission)
    first = jnp.exp(log_initial - jnp.max(log_initial)) * emit[0]
    c0 = jnp.sum(first)
    alpha0 = first / c0
    eye = jnp.eye(k, dtype=dtype)
    steps = jnp.where(mask[1:, None, None], transition[None] * emit[1:, None, :], eye)
    zeros = jnp.zeros((t_len - 1,), dtype)
    prefix, log_p = jax.lax.associative_scan(_product, (steps, zeros))
    unnorm = jnp.einsum("i,tij->tj", alpha0, prefix, precision=jax.lax.Precision.HIGHEST)
    norm = jnp.sum(unnorm, axis=1, keepdims=True)
    alphas = jnp.concatenate([alpha0[None], unnorm / norm], axis=0)  # (T, K)
    log_likelihood = (
        jnp.log(c0)
        + jnp.max(log_initial)
        + log_p[-1]
        + jnp.log(norm[-1, 0])
        + jnp.sum(jnp.where(mask, top, 0))
    )
    # Reversed, the scan combines later elements first: swap to keep M_t M_{t+1} ⋯.
    suffix, _ = jax.lax.associative_scan(lambda a, b: _product(b, a), (steps, zeros), reverse=True)
    betas = jnp.concatenate([jnp.sum(suffix, axis=2), jnp.ones((1, k), dtype)], axis=0)
    betas = betas / jnp.max(betas, axis=1, keepdims=True)
    marginals = alphas * betas
    marginals = marginals / jnp.sum(marginals, axis=1, keepdims=True)
    marginals = jnp.where(mask[:, None], marginals, 0.0)
    msg = emit[1:] * betas[1:]  # (T-1, K)
    z = jnp.einsum("ti,ij,tj->t", alphas[:-1], transition, msg, precision=jax.lax.Precision.HIGHEST)
    weight = jnp.where(mask[1:], 1 / jnp.where(mask[1:], z, 1), 0)
    outer = jnp.einsum(
        "ti,tj->ij", alphas[:-1] * weight[:, None], msg, precision=jax.lax.Precision.HIGHEST
    )
    return ChainPosterior(log_likelihood, marginals, transition * outer)


def block_length(n_steps: int) -> int:
    """Steps per block of :func:`forward_backward_blocked`: about ``√T``, at least 8."""
    return max(8, int(math.ceil(math.sqrt(max(n_steps - 1, 1)))))


def forward_backward_blocked(
    log_initial, transition, log_emission, mask, block: int | None = None
) -> ChainPosterior:
    """:func:`forward_backward` with ``≈ 4√T`` sequential steps instead of ``2T``.

    The ``T - 1`` transitions are cut into ``C`` blocks of ``L`` steps. (1) Each
    block's product ``M_c = Π A diag(e_t)`` (normalised) is formed, all blocks
    at once; (2) a scan over the ``C`` blocks gives the exact filtered message
    entering each block and the backward message leaving it; (3) each block
    then runs the ordinary scaled recursions from those messages, all blocks at
    once. Work grows by about ``K`` in (1) (matrices instead of vectors); the
    gain is the depth: on a CPU a step of a small scan costs microseconds of
    loop overhead whatever its size, so for long sequences this is the fast
    form (benchmarks/RESULTS.md). Marginals and transition counts are
    normalised step by step, so the blocks' arbitrary message scales cancel.
    """
    dtype = log_emission.dtype
    t_len, k = log_emission.shape
    length = block_length(t_len) if block is None else block
    count = -(-(t_len - 1) // length)
    pad = count * length - (t_len - 1)
    emit, top = _scaled_emissions(log_emission)
    first = jnp.exp(log_initial - jnp.max(log_initial)) * emit[0]
    c0 = jnp.sum(first)
    alpha0 = first / c0
    hi = jax.lax.Precision.HIGHEST
    e = jnp.concatenate([emit[1:], jnp.ones((pad, k), dtype)]).reshape(count, length, k)
    m = jnp.concatenate([mask[1:], jnp.zeros((pad,), bool)]).reshape(count, length)
    eye = jnp.eye(k, dtype=dtype)

    def product(p, inputs):
        et, mt = inputs
        q = jnp.matmul(p, transition, precision=hi) * et[None, :]
        q = jnp.where(mt, q, p)
        return q / jnp.max(q), None

    blocks = jax.vmap(lambda eb, mb: jax.lax.scan(product, eye, (eb, mb))[0])(e, m)

    def entering(a, mc):
        n = jnp.matmul(a, mc, precision=hi)
        return n / jnp.sum(n), a

    _, starts = jax.lax.scan(entering, alpha0, blocks)  # (C, K): message before each block

    def leaving(b, mc):
        n = jnp.matmul(mc, b, precision=hi)
        return n / jnp.max(n), b

    _, ends = jax.lax.scan(leaving, jnp.ones((k,), dtype), blocks, reverse=True)  # β at block ends

    def forward(a, inputs):
        et, mt = inputs
        pred = jnp.matmul(a, transition, precision=hi) * et
        c = jnp.sum(pred)
        new = jnp.where(mt, pred / c, a)
        return new, (new, jnp.where(mt, jnp.log(c), 0.0))

    def block_forward(a0, eb, mb):
        return jax.lax.scan(forward, a0, (eb, mb), unroll=_UNROLL)[1]

    alphas, log_c = jax.vmap(block_forward)(starts, e, m)  # (C, L, K), (C, L)
    before = jnp.concatenate([starts[:, None], alphas[:, :-1]], axis=1)  # α̂ at t - 1

    def backward(b, inputs):  # b: β at step t (arbitrary scale)
        et, mt = inputs
        prev = jnp.matmul(transition, et * b, precision=hi)
        prev = jnp.where(mt, prev / jnp.max(prev), b)
        return prev, (prev, b)

    def block_backward(b_end, eb, mb):
        return jax.lax.scan(backward, b_end, (eb, mb), reverse=True, unroll=_UNROLL)[1]

    prevs, at = jax.vmap(block_backward)(ends, e, m)  # β at t - 1 and at t, (C, L, K)
    # ξ_t ∝ α̂_{t-1} ⊗ (e_t β_t) ∘ A, normalised step by step (the blocks' β scales
    # differ), summed over all steps as one product.
    msg = e * at
    z = jnp.einsum("cli,ij,clj->cl", before, transition, msg, precision=hi)
    weight = jnp.where(m, 1 / jnp.where(m, z, 1), 0.0)
    counts = transition * jnp.einsum("cli,clj->ij", before * weight[..., None], msg, precision=hi)
    betas = jnp.concatenate(
        [prevs.reshape(count * length, k)[: t_len - 1], jnp.ones((1, k), dtype)]
    )
    every = jnp.concatenate([alpha0[None], alphas.reshape(count * length, k)[: t_len - 1]])
    marginals = every * betas
    marginals = marginals / jnp.sum(marginals, axis=1, keepdims=True)
    marginals = jnp.where(mask[:, None], marginals, 0.0)
    log_likelihood = (
        jnp.log(c0) + jnp.max(log_initial) + jnp.sum(log_c) + jnp.sum(jnp.where(mask, top, 0))
    )
    return ChainPosterior(log_likelihood, marginals, counts)


def log_normalizer(log_initial, log_transition, log_emission, mask) -> jax.Array:
    """``log p(x_{1:T})`` by the log-space forward recursion (``logsumexp``).

    Differentiable: its gradient with respect to ``log_emission`` is the
    smoothed marginals, with respect to ``log_transition`` the expected
    transition counts (Eisner 2016). Used to check :func:`forward_backward`.
    """
    alpha0 = log_initial + log_emission[0]

    def step(alpha, inputs):
        le, m = inputs
        new = jax.nn.logsumexp(alpha[:, None] + log_transition, axis=0) + le
        return jnp.where(m, new, alpha), None

    alpha, _ = jax.lax.scan(step, alpha0, (log_emission[1:], mask[1:]))
    return jax.nn.logsumexp(alpha)


def viterbi(log_initial, log_transition, log_emission, mask):
    """Most probable state path of one sequence: ``((T,) int32 states, its log joint)``.

    Masked (padding) steps repeat the last state.
    """
    delta0 = log_initial + log_emission[0]
    k = log_initial.shape[0]
    states = jnp.arange(k, dtype=jnp.int32)

    # δ is kept relative to its maximum (the offset summed apart): its entries stay
    # O(|log e|), so float32 resolves the differences that decide the path.
    def forward(carry, inputs):
        delta, offset = carry
        le, m = inputs
        scores = delta[:, None] + log_transition  # (from, to)
        best_from = jnp.argmax(scores, axis=0).astype(jnp.int32)
        new = jnp.max(scores, axis=0) + le
        top = jnp.max(new)
        top = jnp.where(jnp.isfinite(top), top, 0)
        new, offset = jnp.where(m, new - top, delta), jnp.where(m, offset + top, offset)
        return (new, offset), jnp.where(m, best_from, states)

    top0 = jnp.max(delta0)
    top0 = jnp.where(jnp.isfinite(top0), top0, 0)
    (delta, offset), pointers = jax.lax.scan(
        forward, (delta0 - top0, top0), (log_emission[1:], mask[1:]), unroll=_UNROLL
    )
    last = jnp.argmax(delta).astype(jnp.int32)

    def back(state, pointer):
        prev = pointer[state]
        return prev, prev

    _, path = jax.lax.scan(back, last, pointers, reverse=True, unroll=_UNROLL)
    return jnp.concatenate([path, last[None]]), jnp.max(delta) + offset
