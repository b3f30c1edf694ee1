"""Prototype: E-steps for R restarts x K diagonal-normal components that share one pass.

Not part of jaxem: a standalone micro-benchmark (it re-implements the library's current
formulation as ``lib`` so that it keeps working while jaxem changes). Every variant runs the
same full EM iteration (E-step + closed-form M-step) for all R restarts inside one jitted
``lax.fori_loop``, from the same starts, so timings include no dispatch or allocation per
iteration, and the final log-likelihoods can be compared with a float64 NumPy reference.

Variants (x is (N, D) float32; parameters (R, K, D); P = R*K):
  lib        the library today: vmap over restarts of a vmap over components, (N, K, D)
             broadcasts reduced over a minor D axis, softmax and logsumexp separately (two exps
             per entry), statistics by einsum('nk,nkd->kd'); output layout (R, N, K).
  nminor     same maths (exactly centred statistics), restarts and components as batch axes and
             the rows on the minor axis: x is transposed once to (D, N); log-joint, one exp,
             normaliser and the centred sums are (R, K, [D,] N) fusions reduced over N.
  gemm       one GEMM for the log-joint of every restart and component,
             [-1/(2v) | m/v] (P, 2D) @ [x^2 ; x]^T (2D, N), and one GEMM for the moments,
             resp (P, N) @ [x | x^2] (N, 2D); x centred once at the global mean. Statistics
             are uncentred (E[x^2] - m^2), so float32 loses accuracy for tight components far
             from the global mean (see the accuracy column and --far).
  lib1exp    lib with one exp per entry (e = exp(lj - max); resp = e / sum e; row_ll =
             max + log sum e) instead of softmax + logsumexp: the estep.py change alone.
  auto       per iteration, gemm if its float32 cancellation error bound (gemm_is_accurate) is
             small, else the exact nminor: both compiled, chosen by lax.cond.
  *_chunkC   the same, scanned over row chunks of C rows, accumulating the sums.

Usage:
    python benchmarks/proto_restarts_estep.py                       # both profile cases
    python benchmarks/proto_restarts_estep.py --case 1e5,2,3,64 --iters 10
    python benchmarks/proto_restarts_estep.py --far                 # accuracy stress data
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

L2PI = math.log(2 * math.pi)


# -- data, starts, reference ---------------------------------------------------------------
def make_data(n, d, k, seed=0, far=False):
    rng = np.random.default_rng(seed)
    if far:  # tight components far from 0 and from each other: hard for E[x^2] - m^2 in f32
        centres = 1000.0 + 50.0 * rng.normal(size=(k, d))
        scales = rng.uniform(0.05, 0.2, (k, d))
    else:  # as in bench_restarts.py
        centres = rng.normal(0.0, 1.0 / np.sqrt(d), (k, d))
        scales = rng.uniform(0.7, 1.3, (k, d))
    z = rng.integers(0, k, n)
    return centres[z] + scales[z] * rng.normal(size=(n, d))


def make_starts(x, k, r, seed=1):
    rng = np.random.default_rng(seed)
    means = np.stack([x[rng.choice(len(x), k, replace=False)] for _ in range(r)])
    var = np.broadcast_to(x.var(axis=0), means.shape).copy()
    return np.full((r, k), 1.0 / k), means, var


def reference_em(x, w, m, v, iters):
    """float64 NumPy EM (diag), one restart; returns the final log-likelihood."""
    for it in range(iters + 1):
        lj = (
            np.log(w)
            - 0.5 * np.sum(L2PI + np.log(v), -1)
            - 0.5 * (((x[:, None, :] - m[None]) ** 2) / v[None]).sum(-1)
        )
        mx = lj.max(1, keepdims=True)
        s = np.exp(lj - mx).sum(1, keepdims=True)
        ll = float(np.sum(np.log(s) + mx))
        if it == iters:
            return ll
        resp = np.exp(lj - mx) / s
        n = resp.sum(0)
        w = n / n.sum()
        m = resp.T @ x / n[:, None]
        v = np.einsum("nk,nkd->kd", resp, (x[:, None, :] - m[None]) ** 2) / n[:, None]
    return ll


# -- the M-step shared by every variant -----------------------------------------------------
def m_step(m_old, counts, s1, s2):
    """Closed-form ML update from sums centred at the old means (as jaxem's Normal)."""
    n = counts[..., None]
    mean = m_old + s1 / n
    dm = mean - m_old
    var = jnp.maximum(s2 - 2 * dm * s1 + n * dm * dm, 0) / n
    return counts / jnp.sum(counts, -1, keepdims=True), mean, var


# -- variant: the library's current formulation ------------------------------------------------
def estep_lib(w, m, v, x):
    """(R,...) parameters; x (N, D). vmap over restarts of the per-restart library code."""

    def one(w, m, v):
        def log_prob(mk, vk):  # Normal.log_prob for (N, D) data
            return jnp.sum(-0.5 * (L2PI + jnp.log(vk) + (x - mk) ** 2 / vk), axis=-1)

        lj = jnp.log(w) + jax.vmap(log_prob, out_axes=1)(m, v)  # (N, K)
        resp = jax.nn.softmax(lj, axis=-1)
        ll = jnp.sum(logsumexp(lj, axis=-1))
        counts = jnp.sum(resp, axis=0)
        d = x[:, None, :] - m[None]
        s1 = jnp.einsum("nk,nkd->kd", resp, d)
        s2 = jnp.einsum("nk,nkd->kd", resp, d * d)
        return ll, counts, s1, s2

    return jax.vmap(one)(w, m, v)


def estep_lib1exp(w, m, v, x):
    """As ``lib`` but one exp per entry: e = exp(lj - max), resp = e / sum(e) and
    row_ll = max + log(sum(e)), instead of softmax and logsumexp (two exps; estep.py)."""

    def one(w, m, v):
        def log_prob(mk, vk):
            return jnp.sum(-0.5 * (L2PI + jnp.log(vk) + (x - mk) ** 2 / vk), axis=-1)

        lj = jnp.log(w) + jax.vmap(log_prob, out_axes=1)(m, v)
        mx = jax.lax.stop_gradient(jnp.max(lj, axis=-1, keepdims=True))
        e = jnp.exp(lj - mx)
        tot = jnp.sum(e, axis=-1, keepdims=True)
        resp = e / tot
        ll = jnp.sum(jnp.log(tot) + mx)
        counts = jnp.sum(resp, axis=0)
        d = x[:, None, :] - m[None]
        s1 = jnp.einsum("nk,nkd->kd", resp, d)
        s2 = jnp.einsum("nk,nkd->kd", resp, d * d)
        return ll, counts, s1, s2

    return jax.vmap(one)(w, m, v)


# -- variant: same maths, rows on the minor axis -------------------------------------------
def _nminor_sums(w, m, v, xt):
    """xt (D, C). Returns (ll (R,), counts (R,K), s1 (R,K,D), s2 (R,K,D)) over these rows."""
    d_count = xt.shape[0]
    c = jnp.log(w) - 0.5 * jnp.sum(L2PI + jnp.log(v), -1)  # (R, K)
    prec = 1.0 / v
    q = 0.0
    for d in range(d_count):  # unrolled: D axis never minor, every op is vectorised over rows
        z = xt[d][None, None, :] - m[:, :, d, None]
        q = q + z * z * prec[:, :, d, None]
    lj = c[..., None] - 0.5 * q  # (R, K, C)
    mx = jnp.max(lj, axis=1, keepdims=True)
    e = jnp.exp(lj - mx)
    tot = jnp.sum(e, axis=1, keepdims=True)
    resp = e / tot  # one exp per entry
    ll = jnp.sum(jnp.log(tot[:, 0]) + mx[:, 0], axis=-1)
    counts = jnp.sum(resp, -1)
    s1, s2 = [], []
    for d in range(d_count):
        z = xt[d][None, None, :] - m[:, :, d, None]
        rz = resp * z
        s1.append(jnp.sum(rz, -1))
        s2.append(jnp.sum(rz * z, -1))
    return ll, counts, jnp.stack(s1, -1), jnp.stack(s2, -1)


def estep_nminor(w, m, v, xt):
    return _nminor_sums(w, m, v, xt)


# -- variant: GEMMs over restarts x components ------------------------------------------------
def _gemm_sums(w, m, v, xt, x2t, xx):
    """xt, x2t (D, C) centred rows and squares; xx (C, 2D) = [x | x^2]. Uncentred moments."""
    r, k, d = m.shape
    prec = 1.0 / v
    coef = jnp.concatenate([-0.5 * prec, m * prec], -1).reshape(r * k, 2 * d)  # (P, 2D)
    c = jnp.log(w) - 0.5 * jnp.sum(L2PI + jnp.log(v) + m * m * prec, -1)  # (R, K)
    lj = coef @ jnp.concatenate([x2t, xt], 0)  # (P, C): one GEMM for every restart
    lj = lj.reshape(r, k, -1) + c[..., None]
    mx = jnp.max(lj, axis=1, keepdims=True)
    e = jnp.exp(lj - mx)
    tot = jnp.sum(e, axis=1, keepdims=True)
    resp = e / tot
    ll = jnp.sum(jnp.log(tot[:, 0]) + mx[:, 0], axis=-1)
    counts = jnp.sum(resp, -1)
    mom = (resp.reshape(r * k, -1) @ xx).reshape(r, k, 2 * d)  # (P, 2D): second GEMM
    return ll, counts, mom[..., :d], mom[..., d:]


def _centre_moments(m, counts, sx, sxx):
    """Uncentred sums -> sums centred at the old means (what m_step takes)."""
    n = counts[..., None]
    s1 = sx - n * m
    s2 = sxx - 2 * m * sx + n * m * m
    return s1, s2


def estep_gemm(w, m, v, xt, x2t, xx):
    ll, counts, sx, sxx = _gemm_sums(w, m, v, xt, x2t, xx)
    return (ll, counts, *_centre_moments(m, counts, sx, sxx))


def gemm_is_accurate(m, v, spread2, tol=1e-4):
    """Whether the expanded (GEMM) forms keep ~tol relative accuracy in this precision.

    The expansion x^2/v - 2xm/v + m^2/v loses about eps * ((x - a)^2 + (m - a)^2) / v to
    cancellation, with a the centring point (the global mean) and spread2 = max (x - a)^2 per
    feature over the data (computed once).
    """
    eps = jnp.finfo(v.dtype).eps
    kappa = jnp.max((m * m + spread2) / v)
    return eps * kappa < tol


# -- chunked drivers ----------------------------------------------------------------------------
def chunked(sums, chunk_args, w, m, v):
    """Scan ``sums`` over leading-axis chunks of ``chunk_args``, adding the results."""
    r, k, d = m.shape
    zero = (jnp.zeros(r), jnp.zeros((r, k)), jnp.zeros((r, k, d)), jnp.zeros((r, k, d)))

    def body(acc, args):
        out = sums(w, m, v, *args)
        return jax.tree.map(jnp.add, acc, out), None

    acc, _ = lax.scan(body, zero, chunk_args)
    return acc


# -- harness ------------------------------------------------------------------------------------
def build(variant, x_np, chunk):
    """Returns (prepared data tuple, em_iteration(w, m, v, *data) -> (w, m, v, ll))."""
    mu = x_np.mean(0)  # global centring (all variants: harmless for the exact ones)
    xc = (x_np - mu).astype(np.float32)
    n, d = xc.shape
    if variant in ("lib", "lib1exp"):
        data = (jnp.asarray(xc),)
        e = estep_lib if variant == "lib" else estep_lib1exp

    elif variant == "nminor":
        if chunk:
            assert n % chunk == 0
            data = (jnp.asarray(xc.reshape(n // chunk, chunk, d).transpose(0, 2, 1)),)

            def e(w, m, v, xt):
                return chunked(_nminor_sums, (xt,), w, m, v)

        else:
            data = (jnp.asarray(xc.T),)
            e = estep_nminor
    elif variant == "gemm":
        xx = np.concatenate([xc, xc * xc], 1)
        if chunk:
            assert n % chunk == 0
            xt = xc.reshape(n // chunk, chunk, d).transpose(0, 2, 1)
            data = (
                jnp.asarray(xt),
                jnp.asarray(xt * xt),
                jnp.asarray(xx.reshape(n // chunk, chunk, 2 * d)),
            )

            def e(w, m, v, xt, x2t, xx):
                ll, counts, sx, sxx = chunked(_gemm_sums, (xt, x2t, xx), w, m, v)
                return (ll, counts, *_centre_moments(m, counts, sx, sxx))

        else:
            data = (jnp.asarray(xc.T), jnp.asarray((xc * xc).T), jnp.asarray(xx))
            e = estep_gemm
    elif variant == "auto":  # gemm when accurate enough, else the exact nminor (lax.cond)
        assert chunk and n % chunk == 0
        xt = xc.reshape(n // chunk, chunk, d).transpose(0, 2, 1)
        xx = np.concatenate([xc, xc * xc], 1).reshape(n // chunk, chunk, 2 * d)
        spread2 = jnp.asarray((xc * xc).max(0))
        data = (jnp.asarray(xt), jnp.asarray(xt * xt), jnp.asarray(xx))

        def e(w, m, v, xt, x2t, xx):
            def fast(_):
                ll, counts, sx, sxx = chunked(_gemm_sums, (xt, x2t, xx), w, m, v)
                return (ll, counts, *_centre_moments(m, counts, sx, sxx))

            def exact(_):
                return chunked(_nminor_sums, (xt,), w, m, v)

            return lax.cond(gemm_is_accurate(m, v, spread2), fast, exact, None)

    else:
        raise ValueError(variant)

    def iteration(w, m, v, *data):
        ll, counts, s1, s2 = e(w, m, v, *data)
        w2, m2, v2 = m_step(m, counts, s1, s2)
        return w2, m2, v2, ll

    return data, iteration, mu


def prepare_variant(variant, chunk, x_np, starts, iters):
    """Compile the EM loop for this variant; return (call, final log-likelihoods, temp bytes)."""
    data, iteration, mu = build(variant, x_np, chunk)
    w0, m0, v0 = (jnp.asarray(a, jnp.float32) for a in starts)
    m0 = m0 - jnp.asarray(mu, jnp.float32)  # parameters in the centred frame

    @jax.jit
    def em(w, m, v, *data):
        def body(_, c):
            w, m, v, _ = c
            return iteration(w, m, v, *data)

        c = lax.fori_loop(0, iters, body, (w, m, v, jnp.zeros(w.shape[0])))
        # log-likelihood at the final parameters: one more E-step
        return iteration(*c[:3], *data)[3]

    ll = jax.block_until_ready(em(w0, m0, v0, *data))  # compile + warm
    temp = jax.jit(iteration).lower(w0, m0, v0, *data).compile()
    temp = temp.memory_analysis().temp_size_in_bytes

    def call():
        t0 = time.perf_counter()
        jax.block_until_ready(em(w0, m0, v0, *data))
        return (time.perf_counter() - t0) / (iters + 1)  # iters M-steps, iters + 1 E-steps

    return call, np.asarray(ll, np.float64), temp


def ceilings(reps=5):
    """Measured f32 GEMM GFLOP/s, in-jit elementwise GB/s and exp/s (best of reps)."""
    a = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda a: lax.fori_loop(0, 5, lambda i, b: (a @ b) * 1e-3, a))
    jax.block_until_ready(mm(a))
    gflops = 5 * 2 * 2048**3 / min(_time(mm, a) for _ in range(reps)) / 1e9
    big = jnp.ones((64 * 2**20,), jnp.float32)  # 256 MB
    ew = jax.jit(lambda b: lax.fori_loop(0, 10, lambda i, c: c * 1.0001 + 1.0, b))
    jax.block_until_ready(ew(big))
    gbs = 10 * 2 * big.nbytes / min(_time(ew, big) for _ in range(reps)) / 1e9
    e = jnp.zeros((48, 100_000), jnp.float32)  # the size of R*K x N at R=16, K=3
    ex = jax.jit(lambda b: lax.fori_loop(0, 10, lambda i, c: jnp.exp(c - 1.0), b))
    jax.block_until_ready(ex(e))
    exps = 10 * e.size / min(_time(ex, e) for _ in range(reps)) / 1e9
    return gflops, gbs, exps


def _time(f, *a):
    t0 = time.perf_counter()
    jax.block_until_ready(f(*a))
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", action="append", help="N,D,K,R (repeatable)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--far", action="store_true", help="tight components far from 0")
    p.add_argument(
        "--variants",
        default="lib,lib1exp,nminor,nminor_chunk2000,nminor_chunk5000,gemm,gemm_chunk2000,"
        "gemm_chunk5000,auto_chunk5000",
    )
    args = p.parse_args(argv)
    cases = args.case or ["1e5,16,8,16", "1e5,1,3,16"]
    gflops, gbs, exps = ceilings()
    print(
        f"jax {jax.__version__}; ceilings (best of 5): f32 2048^2 matmul {gflops:.0f} GFLOP/s, "
        f"in-jit elementwise {gbs:.0f} GB/s (read+write), exp {exps:.2f} G/s"
    )
    for case in cases:
        n, d, k, r = (int(float(s)) for s in case.split(","))
        x = make_data(n, d, k, far=args.far)
        starts = make_starts(x, k, r)
        ref = np.array(
            [
                reference_em(x, starts[0][i], starts[1][i], starts[2][i], args.iters)
                for i in range(min(r, 2))
            ]
        )
        # nominal work per restart-iteration: ~8 flops per (row, component, feature) for the
        # log-joint and the two centred sums, ~10 per (row, component) besides one exp.
        flops = n * k * (8 * d + 10)
        print(
            f"\nN={n:.0e} D={d} K={k} R={r}, {args.iters} iterations"
            f"{' (far data)' if args.far else ''}; nominal {flops / 1e6:.1f} MFLOP and "
            f"{n * k / 1e6:.2f} M exp per restart-iteration; min over {args.reps} "
            "interleaved rounds"
        )
        prepared = {}
        for name in args.variants.split(","):
            variant, _, chunk = name.partition("_chunk")
            chunk = int(chunk) if chunk else 0
            if chunk and n % chunk:
                continue
            prepared[name] = prepare_variant(variant, chunk, x, starts, args.iters)
        best = {name: float("inf") for name in prepared}
        for _ in range(args.reps):  # interleave: the machine is shared and noisy
            for name, (call, _, _) in prepared.items():
                best[name] = min(best[name], call())
        print(
            "| variant | ms per restart-iteration | speed-up vs lib | nominal GFLOP/s "
            "| % of matmul ceiling | exp/s as % of exp ceiling | XLA temp MB "
            "| rel. LL diff vs f64 |"
        )
        print("|---|---|---|---|---|---|---|---|")
        base = best.get("lib", next(iter(best.values()))) / r
        for name, (_, ll, temp) in prepared.items():
            per = best[name] / r
            rel = np.max(np.abs(ll[: len(ref)] - ref) / np.abs(ref))
            rate = flops / per / 1e9
            exp_rate = n * k / per / 1e9
            print(
                f"| {name} | {1e3 * per:.3f} | {base / per:.1f} | {rate:.1f} "
                f"| {100 * rate / gflops:.1f} | {100 * exp_rate / exps:.0f} "
                f"| {temp / 1e6:.0f} | {rel:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
