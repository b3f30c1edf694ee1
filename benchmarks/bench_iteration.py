"""Per-iteration cost of Gaussian-mixture EM: jaxem vs scikit-learn (vs gmmx), and the rest of
issue 5's targets: vmapped restarts, cold time-to-first-result and peak memory.

Sections (``--sections``, all by default):

* ``ceiling``: what the hardware allows, measured in jax on the default backend: a large square
  float32 matmul (default precision and ``HIGHEST``), a streaming read (GB/s) and ``exp`` on
  in-cache data (G exp/s). Needed by ``grid`` for its roofline columns.
* ``grid``: one EM fit per implementation from the *same* start, ``tol=0`` and a fixed number of
  iterations. jaxem (float32):
  ``em.fit(em.Mixture(em.MultivariateNormal(cov, reg_covar=1e-6), K), x, init=..., max_iter=n,
  tol=0.0)``; scikit-learn (float64): ``GaussianMixture(weights_init, means_init,
  precisions_init, max_iter=n, tol=0, n_init=1)``; gmmx (float32, if importable):
  ``EMFitter(max_iter=n, tol=0).fit``. Each is timed at ``n`` and at 1 iteration, interleaved
  (jaxem, sklearn, gmmx, in an order that rotates with the repeat), after a warm-up that compiles
  every program. The per-iteration figure is the median over repeats of ``(t(n) - t(1)) / (n -
  1)``: the fixed costs (jaxem's host validation and copy of the data, the first E-step;
  scikit-learn's initial M-step and final E-step; compilation is never timed) cancel. "fixed" is
  ``t(1)`` minus one iteration. scikit-learn runs under whichever BLAS thread count (threadpoolctl,
  the same as ``OPENBLAS_NUM_THREADS``) a short probe found faster: 1 or the default.
  The log-likelihood at the final parameters is checked: jaxem's own float32 value against
  scikit-learn's ``score(X) * N`` (float64), and gmmx's parameters evaluated in float64.
* ``restarts``: ``em.fit(key=..., restarts=16, max_iter=n, tol=0)`` (its own k-means++ starts)
  against scikit-learn ``n_init=16`` (every init from the same start), end to end and per
  iteration per restart.
* ``cold``: time to first result for a 1-D, 1000-point, 3-component ``em.Mixture(em.Normal(),
  3)`` fit with the defaults, in a fresh interpreter: wall clock from process start to the
  result (import, compile, fit), median of ``--cold-reps``.
* ``memory``: peak RSS of a fresh process that fits 8 diagonal components to 5e7 two-dimensional
  float32 points (5 iterations, default chunking), and of the unchunked path
  (``chunk_size=N``) at the largest N up to 1e7 whose predicted peak stays under ~8 GiB
  (predicted from a run at 1e6). With an accelerator, the device's peak bytes too.

Roofline columns (grid). ``flops``: 4·N·K·D² per iteration for full covariance (the
Mahalanobis GEMM X @ [A_1ᵀ|…|A_Kᵀ] and the K second-moment GEMMs), 8·N·K·D for diag (the same
two passes written as GEMMs on [x, x²]). ``bound``: the largest of flops / matmul ceiling,
bytes / streaming bandwidth (one float32 read of X, the minimum for a fused pass) and N·K / exp
rate (one exp per row and component); "% roof" is that bound over the measured time.

Runs unchanged on a GPU: arrays are placed on ``jax.default_backend()``; scikit-learn stays on
the CPU. Usage:

    python benchmarks/bench_iteration.py --quick                 # < 1 minute
    python benchmarks/bench_iteration.py --sections ceiling grid --case 1e6,16,8,full
    python benchmarks/bench_iteration.py       # everything: ~30-40 minutes on 2 vCPUs
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

DEFAULT_GRID = [
    (n, d, k, cov)
    for (n, d, k) in [
        (100_000, 2, 3),
        (1_000_000, 2, 3),
        (100_000, 16, 8),
        (1_000_000, 16, 8),
        (200_000, 64, 16),
    ]
    for cov in ("full", "diag")
]
QUICK_GRID = [(20_000, 8, 4, "full"), (20_000, 2, 3, "diag")]
RESTART_CASES = [(100_000, 2, 3), (100_000, 16, 8)]
REG_COVAR = 1e-6
SECTIONS = ("ceiling", "grid", "restarts", "cold", "memory")
#: gmmx is skipped (for time) above this N·K·D² with full covariance unless --gmmx-all: at
#: (2e5, 64, 16) one gmmx iteration took ~14 s on the loaded 2-vCPU machine.
GMMX_MAX_NKDD = 5e9


# -- small helpers ---------------------------------------------------------------------------
def _load():
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on every OS
        return "n/a"


def _median(values):
    return statistics.median(values) if values else float("nan")


def _fmt_s(s):
    if s is None or not np.isfinite(s):
        return "n/a"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _ratio(a, b):
    if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)) or b <= 0:
        return "n/a"
    return f"{a / b:.2f}"


def _block(tree):
    import jax

    return jax.block_until_ready(tree)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# -- data and starts -----------------------------------------------------------------------------
def make_data(n, d, k, seed=0):
    """(n, d) float32 draws from K overlapping full-covariance Gaussians (random orientations)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.5, (k, d))
    covs = []
    for _ in range(k):
        a = rng.normal(size=(d, d)) / math.sqrt(d)
        covs.append(0.3 * np.eye(d) + 0.7 * a @ a.T)
    weights = rng.dirichlet(np.full(k, 5.0))
    labels = rng.choice(k, size=n, p=weights)
    x = rng.standard_normal((n, d), dtype=np.float32)
    for j in range(k):
        rows = labels == j
        chol = np.linalg.cholesky(covs[j]).astype(np.float32)
        x[rows] = x[rows] @ chol.T + means[j].astype(np.float32)
    return x


def make_start(x, k, cov, seed=1, lloyd=3, sub=20_000):
    """The shared start (float64): means from a few Lloyd iterations on a subsample, every
    covariance the subsample's covariance (or variances), weights 1/K."""
    rng = np.random.default_rng(seed)
    rows = x[rng.choice(len(x), size=min(sub, len(x)), replace=False)].astype(np.float64)
    means = rows[rng.choice(len(rows), size=k, replace=False)].copy()
    for _ in range(lloyd):
        dist = ((rows[:, None, :] - means[None]) ** 2).sum(-1)
        lab = dist.argmin(1)
        for j in range(k):
            if np.any(lab == j):
                means[j] = rows[lab == j].mean(0)
    glob = np.atleast_2d(np.cov(rows, rowvar=False))
    if cov == "full":
        covs = np.broadcast_to(glob, (k,) + glob.shape).copy()
    else:
        covs = np.broadcast_to(np.diag(glob), (k, glob.shape[0])).copy()
    return np.full(k, 1.0 / k), means, covs


def loglik64(x, weights, means, covs, cov, chunk=65_536):
    """Σ_i log p(x_i) in float64 (to check parameters that come without their own value)."""
    x = np.asarray(x)
    d = x.shape[1]
    if cov == "full":
        chol = np.linalg.cholesky(covs)
        prec = np.linalg.inv(chol)  # (K, D, D): L⁻¹
        logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
    else:
        logdet = np.log(covs).sum(1)
    total = 0.0
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk].astype(np.float64)
        if cov == "full":
            maha = np.stack(
                [(((xs - means[j]) @ prec[j].T) ** 2).sum(1) for j in range(len(weights))], 1
            )
        else:
            maha = (((xs[:, None, :] - means[None]) ** 2) / covs[None]).sum(-1)
        lj = np.log(weights) - 0.5 * (d * math.log(2 * math.pi) + logdet + maha)
        m = lj.max(1, keepdims=True)
        total += float((m[:, 0] + np.log(np.exp(lj - m).sum(1))).sum())
    return total


# -- ceilings --------------------------------------------------------------------------------------
def _rate(fn, arg, reps):
    """Median seconds of ``fn(*arg)`` (jitted, warmed once)."""
    _block(fn(*arg))
    return _median([_timed(lambda: _block(fn(*arg)))[0] for _ in range(reps)])


def matmul_ceiling(reps=3, size=2048):
    """GFLOP/s of a square f32 matmul at default precision (re-measured before each case: on a
    shared machine the ceiling moves with the load)."""
    import jax
    import jax.numpy as jnp

    key = jax.random.key(4)
    mats = (
        jax.random.normal(key, (size, size), jnp.float32),
        jax.random.normal(jax.random.fold_in(key, 1), (size, size), jnp.float32),
    )
    return 2 * size**3 / _rate(jax.jit(jnp.matmul), mats, reps) / 1e9


def measure_ceilings(reps=5, size=4096):
    """Square f32 matmul (GFLOP/s), streaming read (GB/s), exp (per s) on the default device."""
    import jax
    import jax.numpy as jnp

    out = {"backend": jax.default_backend(), "device": str(jax.devices()[0])}
    key = jax.random.key(0)
    mats = (
        jax.random.normal(key, (size, size), jnp.float32),
        jax.random.normal(jax.random.fold_in(key, 1), (size, size), jnp.float32),
    )
    for name, prec in (("default", None), ("highest", jax.lax.Precision.HIGHEST)):
        mm = jax.jit(lambda a, b, prec=prec: jnp.matmul(a, b, precision=prec))
        out[f"matmul_gflops_{name}"] = 2 * size**3 / _rate(mm, mats, reps) / 1e9
    # Streaming read: Σ x² over 64 Mi floats (256 MiB), far beyond any cache.
    big = (jnp.ones((1 << 26,), jnp.float32),)
    out["stream_gbs"] = (1 << 26) * 4 / _rate(jax.jit(lambda v: jnp.sum(v * v)), big, reps) / 1e9
    # exp on 4 Mi floats (16 MiB, in the last-level cache on most CPUs)
    small = (jax.random.normal(key, (1 << 22,), jnp.float32),)
    out["exp_per_s"] = (1 << 22) / _rate(jax.jit(lambda v: jnp.sum(jnp.exp(v))), small, reps)
    return out


def skinny_gemm_gflops(n, d, k, reps=3, chunk=8192):
    """The E-step's GEMM shape: Σ over row chunks of ((chunk, D) @ (D, K·D))², in one jit."""
    import jax
    import jax.numpy as jnp

    n = chunk * max(1, n // chunk)
    x = jax.random.normal(jax.random.key(2), (n // chunk, chunk, d), jnp.float32)
    f = jax.random.normal(jax.random.key(3), (d, k * d), jnp.float32)

    @jax.jit
    def run(x, f):
        def body(i, acc):
            y = x[i] @ f
            return acc + jnp.sum(y * y)

        return jax.lax.fori_loop(0, x.shape[0], body, jnp.zeros((), jnp.float32))

    _block(run(x, f))
    times = [_timed(lambda: _block(run(x, f)))[0] for _ in range(reps)]
    return 2 * n * d * k * d / _median(times) / 1e9


def flops_per_iter(n, d, k, cov):
    return 4 * n * k * d * d if cov == "full" else 8 * n * k * d


def roofline_bound(n, d, k, cov, ceil, matmul_gflops):
    """Lower bound on one iteration (s) and what sets it."""
    terms = {
        "matmul": flops_per_iter(n, d, k, cov) / (matmul_gflops * 1e9),
        "memory": 4 * n * d / (ceil["stream_gbs"] * 1e9),
        "exp": n * k / ceil["exp_per_s"],
    }
    name = max(terms, key=terms.get)
    return terms[name], name


# -- the implementations -------------------------------------------------------------------------
class Jaxem:
    name = "jaxem"

    def __init__(self, x32, start, cov, k):
        import jax.numpy as jnp

        import jaxem as em

        self.em = em
        self.x = jnp.asarray(x32)  # on the default device, once
        w, m, c = start
        self.init = em.MixtureParams(
            weights=jnp.asarray(w, jnp.float32),
            components=em.MultivariateNormalParams(
                mean=jnp.asarray(m, jnp.float32), cov=jnp.asarray(c, jnp.float32)
            ),
        )
        self.model = em.Mixture(em.MultivariateNormal(cov, reg_covar=REG_COVAR), k)

    def run(self, iters):
        res = self.em.fit(self.model, self.x, init=self.init, max_iter=iters, tol=0.0)
        _block(res.params)
        return res

    @staticmethod
    def n_iter(res):
        return res.n_iter

    @staticmethod
    def loglik(res, x, cov):
        return res.log_likelihood


class Sklearn:
    name = "sklearn"

    def __init__(self, x32, start, cov, k):
        self.x = x32.astype(np.float64)
        self.start, self.cov, self.k = start, cov, k
        self.threads = None

    def model(self, iters, n_init=1):
        from sklearn.mixture import GaussianMixture

        w, m, c = self.start
        prec = np.linalg.inv(c) if self.cov == "full" else 1.0 / c
        return GaussianMixture(
            n_components=self.k,
            covariance_type=self.cov,
            tol=0.0,
            reg_covar=REG_COVAR,
            max_iter=iters,
            n_init=n_init,
            init_params="random_from_data",  # overridden by the *_init below
            weights_init=w,
            means_init=m,
            precisions_init=prec,
            random_state=0,
        )

    def _fit(self, iters, n_init=1):
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.threads, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self.model(iters, n_init).fit(self.x)

    def probe_threads(self, iters=1):
        """Pick 1 BLAS thread or the default, whichever runs a short fit faster (twice each,
        once each when a fit takes over 5 s)."""
        probe = {}
        for i, threads in enumerate((1, None, 1, None)):
            if i == 2 and max(probe.values()) > 5:
                break
            self.threads = threads
            t, _ = _timed(lambda: self._fit(iters))
            key = "1" if threads == 1 else "default"
            probe[key] = min(probe.get(key, float("inf")), t)
        self.threads = 1 if probe["1"] <= probe["default"] else None
        return {"probe_s": probe, "threads": "1" if self.threads == 1 else "default"}

    def run(self, iters, n_init=1):
        return self._fit(iters, n_init)

    @staticmethod
    def n_iter(res):
        return res.n_iter_

    @staticmethod
    def loglik(res, x, cov):
        return float(res.score(x)) * len(x)


class Gmmx:
    name = "gmmx"

    def __init__(self, x32, start, cov, k):
        import jax.numpy as jnp
        from gmmx import EMFitter, GaussianMixtureModelJax

        self.fitter_cls = EMFitter
        self.x = jnp.asarray(x32)
        w, m, c = start
        self.gmm = GaussianMixtureModelJax.from_squeezed(
            means=jnp.asarray(m, jnp.float32),
            covariances=jnp.asarray(c, jnp.float32),
            weights=jnp.asarray(w, jnp.float32),
            covariance_type=cov,
        )
        self.cov = cov

    def run(self, iters):
        fitter = self.fitter_cls(max_iter=iters, tol=0.0, reg_covar=REG_COVAR)
        res = fitter.fit(x=self.x, gmm=self.gmm)
        _block(res.gmm)
        return res

    @staticmethod
    def n_iter(res):
        return int(res.n_iter)

    def loglik(self, res, x, cov):
        g = res.gmm
        return loglik64(x, g.weights_numpy, g.means_numpy, g.covariances.values_numpy, cov)


def gmmx_available():
    try:
        import gmmx  # noqa: F401
    except ImportError:
        return False
    return True


# -- the grid --------------------------------------------------------------------------------------
def bench_case(n, d, k, cov, iters, reps, budget, use_gmmx, ceil, gmmx_all=False):
    t_case = time.perf_counter()
    x32 = make_data(n, d, k)
    start = make_start(x32, k, cov)
    out = {"N": n, "D": d, "K": k, "cov": cov, "iters": iters, "load_start": _load()}
    impls = [Jaxem(x32, start, cov, k), Sklearn(x32, start, cov, k)]
    skip_gmmx = not gmmx_all and cov == "full" and n * k * d * d > GMMX_MAX_NKDD
    if use_gmmx and not skip_gmmx:
        impls.append(Gmmx(x32, start, cov, k))
    elif use_gmmx:
        out["gmmx_skipped"] = (
            f"for time: N·K·D² = {n * k * d * d:.1e} > {GMMX_MAX_NKDD:.0e} (--gmmx-all runs it)"
        )

    # Warm-up: compile (jaxem, gmmx) and warm caches, BLAS pools.
    for impl in impls:
        if isinstance(impl, Sklearn):
            out["sklearn_blas"] = impl.probe_threads()
            continue
        t_first, _ = _timed(lambda impl=impl: impl.run(1))
        t_second, _ = _timed(lambda impl=impl: impl.run(1))
        _timed(lambda impl=impl: impl.run(iters))
        out[f"{impl.name}_compile_s"] = t_first - t_second

    raw = {impl.name: {"t_n": [], "t_1": [], "n_iter": None, "res": None} for impl in impls}
    for rep in range(reps):
        order = impls[rep % len(impls) :] + impls[: rep % len(impls)]
        for impl in order:
            r = raw[impl.name]
            t_n, res = _timed(lambda impl=impl: impl.run(iters))
            t_1, res1 = _timed(lambda impl=impl: impl.run(1))
            r["t_n"].append(t_n)
            r["t_1"].append(t_1)
            r["n_iter"], r["n_iter_1"], r["res"] = impl.n_iter(res), impl.n_iter(res1), res
        if time.perf_counter() - t_case > budget and rep + 1 < reps:
            out["reps_cut"] = f"stopped after {rep + 1} of {reps} repeats (case budget {budget} s)"
            break

    ref_ll = None
    for impl in impls:
        r = raw[impl.name]
        span = max(r["n_iter"] - r["n_iter_1"], 1)
        diffs = [(a - b) / span for a, b in zip(r["t_n"], r["t_1"], strict=True)]
        per = _median(diffs)
        ll = impl.loglik(r["res"], x32, cov)
        out[impl.name] = {
            "per_iter_s": per,
            "per_iter_raw_s": _median(r["t_n"]) / max(r["n_iter"], 1),
            "fixed_s": _median(r["t_1"]) - per,
            "t_n_s": r["t_n"],
            "t_1_s": r["t_1"],
            "n_iter": r["n_iter"],
            "reps": len(r["t_n"]),
            "log_likelihood": ll,
        }
        if impl.name == "sklearn":
            ref_ll = ll
    for impl in impls:
        o = out[impl.name]
        o["rel_ll_vs_sklearn"] = abs(o["log_likelihood"] - ref_ll) / abs(ref_ll)
    if ceil:
        flops = flops_per_iter(n, d, k, cov)
        out["matmul_gflops"] = matmul_ceiling()  # now, at this case's load
        bound, what = roofline_bound(n, d, k, cov, ceil, out["matmul_gflops"])
        out["flops_per_iter"] = flops
        out["roofline_s"], out["roofline_term"] = bound, what
        if cov == "full" and d >= 8:
            out["skinny_gemm_gflops"] = skinny_gemm_gflops(n, d, k)
    out["load_end"] = _load()
    out["wall_s"] = time.perf_counter() - t_case
    return out


def print_grid(rows, ceil):
    print()
    print("Seconds per EM iteration (median over repeats of (t(n) - t(1)) / (n - 1)):")
    print()
    print(
        "| N | D | K | cov | jaxem | sklearn | gmmx | sklearn / jaxem | gmmx / jaxem "
        "| jaxem % f32 matmul ceiling | jaxem % roofline (bound) | jaxem fixed s "
        "| rel. LL jaxem vs sklearn | rel. LL gmmx vs sklearn | sklearn BLAS threads "
        "| iters × reps | matmul ceiling GFLOP/s | load start → end |"
    )
    print("|" + "---|" * 18)
    for o in rows:
        jx, sk, gx = o["jaxem"], o["sklearn"], o.get("gmmx")
        pct_mm = pct_roof = "n/a"
        if ceil:
            pct_mm = "–"
            if o["cov"] == "full":
                rate = o["flops_per_iter"] / jx["per_iter_s"] / 1e9
                pct_mm = f"{100 * rate / o['matmul_gflops']:.1f}"
            pct_roof = f"{100 * o['roofline_s'] / jx['per_iter_s']:.0f} ({o['roofline_term']})"
        gmmx_s = _fmt_s(gx["per_iter_s"]) if gx else ("skipped" if "gmmx_skipped" in o else "–")
        gmmx_ll = f"{gx['rel_ll_vs_sklearn']:.1e}" if gx else "–"
        print(
            f"| {o['N']:.0e} | {o['D']} | {o['K']} | {o['cov']} "
            f"| {_fmt_s(jx['per_iter_s'])} | {_fmt_s(sk['per_iter_s'])} | {gmmx_s} "
            f"| {_ratio(sk['per_iter_s'], jx['per_iter_s'])} "
            f"| {_ratio(gx['per_iter_s'], jx['per_iter_s']) if gx else '–'} "
            f"| {pct_mm} | {pct_roof} | {_fmt_s(jx['fixed_s'])} "
            f"| {jx['rel_ll_vs_sklearn']:.1e} | {gmmx_ll} "
            f"| {o['sklearn_blas']['threads']} | {o['iters']} × {jx['reps']} "
            f"| {o.get('matmul_gflops', float('nan')):.0f} | {o['load_start']} → {o['load_end']} |"
        )
    notes = [o for o in rows if "reps_cut" in o or "gmmx_skipped" in o]
    for o in notes:
        key = f"({o['N']:.0e}, {o['D']}, {o['K']}, {o['cov']})"
        for field in ("reps_cut", "gmmx_skipped"):
            if field in o:
                print(f"- {key}: {field.replace('_', ' ')}: {o[field]}")
    short = [o for o in rows if o["jaxem"]["n_iter"] < o["iters"]]
    for o in short:
        print(
            f"- ({o['N']:.0e}, {o['D']}, {o['K']}, {o['cov']}): jaxem stopped after "
            f"{o['jaxem']['n_iter']} iterations (the float32 objective stopped increasing)"
        )
    if ceil:
        extra = [o for o in rows if "skinny_gemm_gflops" in o]
        if extra:
            print()
            print(
                "| N | D | K | cov | compile s (jaxem / gmmx) | jaxem GFLOP/s | sklearn GFLOP/s "
                "| skinny GEMM (chunk×D)@(D×K·D) GFLOP/s in jax |"
            )
            print("|" + "---|" * 8)
            for o in extra:
                f = o["flops_per_iter"]
                print(
                    f"| {o['N']:.0e} | {o['D']} | {o['K']} | {o['cov']} "
                    f"| {o.get('jaxem_compile_s', float('nan')):.2f} / "
                    f"{o.get('gmmx_compile_s', float('nan')):.2f} "
                    f"| {f / o['jaxem']['per_iter_s'] / 1e9:.1f} "
                    f"| {f / o['sklearn']['per_iter_s'] / 1e9:.1f} "
                    f"| {o['skinny_gemm_gflops']:.1f} |"
                )


# -- restarts --------------------------------------------------------------------------------------
def bench_restarts(n, d, k, cov, r, iters, reps, budget):
    import jax

    t_case = time.perf_counter()
    x32 = make_data(n, d, k)
    start = make_start(x32, k, cov)
    jx, sk = Jaxem(x32, start, cov, k), Sklearn(x32, start, cov, k)
    key = jax.random.key(0)

    def run_j(it):
        res = jx.em.fit(jx.model, jx.x, key=key, restarts=r, max_iter=it, tol=0.0)
        _block(res.params)
        return res

    out = {"N": n, "D": d, "K": k, "cov": cov, "R": r, "iters": iters, "load_start": _load()}
    t_first, _ = _timed(lambda: run_j(1))
    t_second, _ = _timed(lambda: run_j(1))
    run_j(iters)
    out["jaxem_compile_s"] = t_first - t_second
    out["sklearn_blas"] = sk.probe_threads()
    tj = {"t_n": [], "t_1": []}
    ts = {"t_n": [], "t_1": []}
    for rep in range(reps):
        steps = [("j", run_j), ("s", lambda it: sk.run(it, n_init=r))]
        if rep % 2:
            steps.reverse()
        for tag, fn in steps:
            t_n, res = _timed(lambda fn=fn: fn(iters))
            t_1, res1 = _timed(lambda fn=fn: fn(1))
            store = tj if tag == "j" else ts
            store["t_n"].append(t_n)
            store["t_1"].append(t_1)
            if tag == "j":
                out["jaxem_n_iter"] = res.restart_n_iter.tolist()
                span_j = max(int(res.restart_n_iter.max()) - int(res1.restart_n_iter.max()), 1)
        if time.perf_counter() - t_case > budget and rep + 1 < reps:
            out["reps_cut"] = f"stopped after {rep + 1} of {reps} repeats"
            break
    per_j = _median([(a - b) / (r * span_j) for a, b in zip(tj["t_n"], tj["t_1"], strict=True)])
    per_s = _median(
        [(a - b) / (r * (iters - 1)) for a, b in zip(ts["t_n"], ts["t_1"], strict=True)]
    )
    out["jaxem"] = {"total_s": _median(tj["t_n"]), "per_iter_restart_s": per_j, **tj}
    out["sklearn"] = {"total_s": _median(ts["t_n"]), "per_iter_restart_s": per_s, **ts}
    out["reps"] = len(tj["t_n"])
    out["load_end"] = _load()
    out["wall_s"] = time.perf_counter() - t_case
    return out


def print_restarts(rows):
    print()
    print("Restarts: end to end (R starts × iters, median) and per iteration per restart:")
    print()
    print(
        "| N | D | K | cov | R × iters | jaxem `restarts=R` total | sklearn `n_init=R` total "
        "| total ratio | jaxem per iter·restart | sklearn per iter·restart | per-iter ratio "
        "| sklearn BLAS | reps | load start → end |"
    )
    print("|" + "---|" * 14)
    for o in rows:
        jx, sk = o["jaxem"], o["sklearn"]
        print(
            f"| {o['N']:.0e} | {o['D']} | {o['K']} | {o['cov']} | {o['R']} × {o['iters']} "
            f"| {_fmt_s(jx['total_s'])} | {_fmt_s(sk['total_s'])} "
            f"| {_ratio(sk['total_s'], jx['total_s'])} "
            f"| {_fmt_s(jx['per_iter_restart_s'])} | {_fmt_s(sk['per_iter_restart_s'])} "
            f"| {_ratio(sk['per_iter_restart_s'], jx['per_iter_restart_s'])} "
            f"| {o['sklearn_blas']['threads']} | {o['reps']} "
            f"| {o['load_start']} → {o['load_end']} |"
        )


# -- cold start and memory (fresh processes) -----------------------------------------------------
COLD_CHILD = r"""
import time
t0 = time.perf_counter()
import json
import sys
import numpy as np
import jax
import jaxem as em
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-3, 1, 300), rng.normal(0, 1, 400), rng.normal(3, 1, 300)])
model = em.Mixture(em.Normal(), 3)
t1 = time.perf_counter()
res = em.fit(model, x.astype(np.float32), key=jax.random.key(0))
ll = float(res.log_likelihood)
t_fit = time.perf_counter() - t1
result_epoch = time.time()
t2 = time.perf_counter()
em.fit(model, x.astype(np.float32), key=jax.random.key(1))
t_again = time.perf_counter() - t2
t_new_model = float("nan")
if sys.argv[1:] == ["1"]:
    t3 = time.perf_counter()
    em.fit(em.Mixture(em.Normal(), 3), x.astype(np.float32), key=jax.random.key(1))
    t_new_model = time.perf_counter() - t3
print(json.dumps({"import_s": t_import, "first_fit_s": t_fit, "to_result_s": t_import + t_fit,
                  "same_model_again_s": t_again, "new_model_instance_s": t_new_model,
                  "n_iter": res.n_iter, "log_likelihood": ll, "backend": jax.default_backend(),
                  "result_epoch": result_epoch,
                  "cache_dir": str(jax.config.jax_compilation_cache_dir)}))
"""

MEMORY_CHILD = r"""
import json, resource, sys, time
mode, n = sys.argv[1], int(float(sys.argv[2]))
def peak():
    # VmHWM: this process's own peak. ru_maxrss is not: Linux carries it over exec from the
    # parent (which may be large), so it is only the fallback off Linux.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
import numpy as np
import jax
import jaxem as em
jax.numpy.zeros(1).block_until_ready()  # start the backend
base = peak()
rng = np.random.default_rng(0)
x = rng.standard_normal((n, 2), dtype=np.float32)
x[: n // 3] += 3.0
after_data = peak()
model = em.Mixture(em.MultivariateNormal("diag", reg_covar=1e-6), 8)
kwargs = {} if mode == "chunked" else {"chunk_size": n}
t0 = time.perf_counter()
res = em.fit(model, x, key=jax.random.key(0), max_iter=5, tol=0.0, **kwargs)
fit_s = time.perf_counter() - t0
stats = jax.devices()[0].memory_stats() or {}
print(json.dumps({"mode": mode, "N": n, "base_rss": base, "after_data_rss": after_data,
                  "peak_rss": peak(), "fit_s": fit_s, "n_iter": res.n_iter,
                  "data_bytes": x.nbytes, "device_peak_bytes": stats.get("peak_bytes_in_use"),
                  "backend": jax.default_backend()}))
"""


def _child(code, *args, env=None, timeout=900):
    t0 = time.perf_counter()
    spawn_epoch = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    if "result_epoch" in info:
        info["to_first_result_wall_s"] = info["result_epoch"] - spawn_epoch
    return info, wall


def bench_cold(reps, variants=True):
    import tempfile

    _, bare = _child("import json; print(json.dumps({}))")
    out = {"python_start_s": bare, "load_start": _load()}
    with tempfile.TemporaryDirectory() as cache:
        # Default settings (no persistent cache), then a persistent compilation cache that a
        # first process fills and the next ones read.
        cached_env = {
            "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        }
        todo = [("default", None, reps)]
        if variants:
            todo += [("fill cache", cached_env, 1), ("warm persistent cache", cached_env, reps)]
        for name, env, count in todo:
            runs = [_child(COLD_CHILD, int(variants), env=env)[0] for _ in range(count)]
            keys = [k for k in runs[0] if k.endswith("_s")]
            out[name] = {
                "runs": runs,
                "median": {k: _median([r[k] for r in runs]) for k in keys},
            }
    out["load_end"] = _load()
    return out


def print_cold(o):
    print()
    print(
        "Cold time to first result: a fresh process fits em.Mixture(em.Normal(), 3) to 1000 "
        f"points with the defaults (bare interpreter start {o['python_start_s']:.2f} s; "
        f"load {o['load_start']} → {o['load_end']}):"
    )
    print()
    print(
        "| setting | runs | wall clock to first result | import jax + jaxem | first fit (compile "
        "+ run) | same model again | new identical em.Mixture | iterations |"
    )
    print("|" + "---|" * 8)
    for name in ("default", "fill cache", "warm persistent cache"):
        if name not in o:
            continue
        m, runs = o[name]["median"], o[name]["runs"]
        print(
            f"| {name} | {len(runs)} | {m['to_first_result_wall_s']:.2f} s | {m['import_s']:.2f} s "
            f"| {m['first_fit_s']:.2f} s | {m['same_model_again_s'] * 1e3:.0f} ms "
            f"| {_fmt_s(m['new_model_instance_s'])} | {runs[0]['n_iter']} |"
        )


def bench_memory(n_chunked, n_unchunked_max, limit_gib):
    out = {"load_start": _load()}
    info, wall = _child(MEMORY_CHILD, "chunked", n_chunked)
    out["chunked"] = {**info, "wall_s": wall}
    # Unchunked: predict from 1e6 rows, then the largest power of ten that stays under the limit.
    probe_n = int(min(1e6, n_unchunked_max))
    info, wall = _child(MEMORY_CHILD, "unchunked", probe_n)
    out["unchunked_probe"] = {**info, "wall_s": wall}
    per_row = (info["peak_rss"] - info["base_rss"]) / probe_n
    n = int(n_unchunked_max)
    while n > probe_n and info["base_rss"] + per_row * n > limit_gib * 2**30:
        n //= 10
    out["unchunked_predicted_bytes_per_row"] = per_row
    if n > probe_n:
        info, wall = _child(MEMORY_CHILD, "unchunked", n)
        out["unchunked"] = {**info, "wall_s": wall}
    else:
        out["unchunked"] = out["unchunked_probe"]
    out["load_end"] = _load()
    return out


def print_memory(o):
    print()
    load = f"load {o['load_start']} → {o['load_end']}"
    print(f"Peak memory, 8 diag components, 5 iterations ({load}):")
    print()
    print(
        "| path | N | data (float32) | RSS after import | RSS after data | peak RSS "
        "| peak − after data | per row | device peak | fit s |"
    )
    print("|" + "---|" * 10)
    gib = 2**30
    for name in ("chunked", "unchunked_probe", "unchunked"):
        r = o.get(name)
        if r is None or (name == "unchunked" and r is o.get("unchunked_probe")):
            continue
        dev = r["device_peak_bytes"]
        print(
            f"| {r['mode']} | {r['N']:.0e} | {r['data_bytes'] / gib:.2f} GiB "
            f"| {r['base_rss'] / gib:.2f} GiB | {r['after_data_rss'] / gib:.2f} GiB "
            f"| {r['peak_rss'] / gib:.2f} GiB "
            f"| {(r['peak_rss'] - r['after_data_rss']) / gib:.2f} GiB "
            f"| {(r['peak_rss'] - r['after_data_rss']) / r['N']:.0f} B "
            f"| {'n/a' if dev is None else f'{dev / gib:.2f} GiB'} | {r['fit_s']:.1f} |"
        )


# -- driver ----------------------------------------------------------------------------------------
def parse_case(text):
    parts = text.split(",")
    if len(parts) != 4 or parts[3] not in ("full", "diag"):
        raise argparse.ArgumentTypeError(f"a case is N,D,K,full|diag, got {text!r}")
    return int(float(parts[0])), int(parts[1]), int(parts[2]), parts[3]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small grid and sizes, < 1 minute")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument(
        "--case",
        type=parse_case,
        action="append",
        help="grid case N,D,K,full|diag (repeatable; default: the whole grid)",
    )
    p.add_argument("--iters", type=int, default=10, help="EM iterations n (tol=0)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repeats per case, at most")
    p.add_argument(
        "--case-budget", type=float, default=480, help="seconds per case before repeats stop"
    )
    p.add_argument("--no-gmmx", action="store_true", help="leave gmmx out")
    p.add_argument("--gmmx-all", action="store_true", help="run gmmx on the largest cases too")
    p.add_argument("--restarts", type=int, default=16)
    p.add_argument("--restart-iters", type=int, default=10)
    p.add_argument("--restart-reps", type=int, default=2)
    p.add_argument("--restart-cov", nargs="+", default=["full", "diag"])
    p.add_argument("--cold-reps", type=int, default=3)
    p.add_argument("--mem-n", type=float, default=5e7, help="rows of the chunked memory fit")
    p.add_argument("--mem-unchunked-max", type=float, default=1e7)
    p.add_argument("--mem-limit-gib", type=float, default=8.0)
    p.add_argument("--json", help="write every measurement to this file")
    args = p.parse_args(argv)

    grid = args.case or DEFAULT_GRID
    restart_cases = [(n, d, k, cov) for (n, d, k) in RESTART_CASES for cov in args.restart_cov]
    iters, reps, r_iters, r_reps, restarts = (
        args.iters,
        args.reps,
        args.restart_iters,
        args.restart_reps,
        args.restarts,
    )
    mem_n, mem_un = args.mem_n, args.mem_unchunked_max
    if args.quick:
        grid = args.case or QUICK_GRID
        iters, reps, r_iters, r_reps, restarts = 5, 2, 5, 1, 4
        restart_cases = [(20_000, 2, 3, "full")]
        mem_n, mem_un = 1e6, 2e5
        args.cold_reps = 1

    import jax
    import sklearn
    from threadpoolctl import threadpool_info

    use_gmmx = not args.no_gmmx and gmmx_available()
    gmmx_version = "not installed"
    if use_gmmx:
        from importlib.metadata import version

        gmmx_version = version("gmmx")
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}  python {platform.python_version()}  "
        f"jax {jax.__version__} (backend {jax.default_backend()}: {jax.devices()[0]})  "
        f"scikit-learn {sklearn.__version__}  numpy {np.__version__}  gmmx {gmmx_version}  "
        f"cpus {os.cpu_count()}  {platform.machine()}  BLAS {blas}  load {_load()}",
        flush=True,
    )
    results = {"argv": sys.argv[1:], "backend": jax.default_backend(), "load_start": _load()}
    t_start = time.perf_counter()
    ceil = None
    if "ceiling" in args.sections:
        ceil = measure_ceilings(reps=3, size=2048) if args.quick else measure_ceilings()
        results["ceiling"] = ceil
        print(
            f"ceilings ({ceil['backend']}): f32 matmul {ceil['matmul_gflops_default']:.0f} GFLOP/s "
            f"(default precision), {ceil['matmul_gflops_highest']:.0f} (HIGHEST); streaming read "
            f"{ceil['stream_gbs']:.1f} GB/s; exp {ceil['exp_per_s'] / 1e9:.2f} G/s",
            flush=True,
        )
    if "grid" in args.sections:
        rows = []
        for n, d, k, cov in grid:
            o = bench_case(
                n, d, k, cov, iters, reps, args.case_budget, use_gmmx, ceil, args.gmmx_all
            )
            rows.append(o)
            gx = o.get("gmmx", {}).get("per_iter_s")
            print(
                f"  ({n:.0e}, {d}, {k}, {cov}): jaxem {_fmt_s(o['jaxem']['per_iter_s'])}, "
                f"sklearn {_fmt_s(o['sklearn']['per_iter_s'])}, gmmx {_fmt_s(gx)} per iteration; "
                f"rel. LL {o['jaxem']['rel_ll_vs_sklearn']:.1e}; {o['wall_s']:.0f} s",
                flush=True,
            )
        results["grid"] = rows
        print_grid(rows, ceil)
    if "restarts" in args.sections:
        rows = []
        for n, d, k, cov in restart_cases:
            o = bench_restarts(n, d, k, cov, restarts, r_iters, r_reps, args.case_budget)
            rows.append(o)
            print(f"  restarts ({n:.0e}, {d}, {k}, {cov}): {o['wall_s']:.0f} s", flush=True)
        results["restarts"] = rows
        print_restarts(rows)
    if "cold" in args.sections:
        results["cold"] = bench_cold(args.cold_reps, variants=not args.quick)
        print_cold(results["cold"])
    if "memory" in args.sections:
        results["memory"] = bench_memory(int(mem_n), int(mem_un), args.mem_limit_gib)
        print_memory(results["memory"])
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s, load at the end {_load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main()
