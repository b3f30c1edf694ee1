"""Issue 17's table, every row measured side by side in one run.

Rows (float32 jaxem, float64 scikit-learn, same data and starts as
``bench_iteration.py``, same iteration count; jaxem timed warm, after a first
call that compiles, except where the row is about compilation):

1. ``restarts``: R = 16 restarts, 20 EM iterations (``tol=0``), jaxem
   ``em.fit(init=<16 stacked starts>, restarts=16)`` against scikit-learn
   ``GaussianMixture(n_init=16, max_iter=20, tol=0)`` from the same start, on
   (1e5, 2, 3) full, (1e5, 16, 8) full and (1e5, 16, 8) diag. jaxem runs the
   restarts in turn on a CPU (its default) and, for comparison, stepped
   together (``progress``-free ``vmap``).
2. ``gradient``: ``benchmarks/bench_gradient_restarts.py`` (32 restarts of a
   custom density against 32 separate fits), run as a child process.
3. ``iteration``: one fit, milliseconds per iteration, (1e5, 16, 8) full and diag.
4. ``cold``: a fresh process imports jaxem, fits a 1-D 1000-point 3-component
   mixture and prints, with an empty persistent compilation cache and then
   with the cache the first process filled (wall time from process start).
5. ``newn``: ``em.fit`` of one model on N = 1000, 1001, 1002, ... rows: seconds
   per fit and resident memory after each.
6. ``estimator``: a fresh process fits ``em.GaussianMixture(3)`` to iris, wine
   and Old Faithful (the first fit of each, cold and warm cache), against
   scikit-learn's ``GaussianMixture(3)`` in the same process kind.
7. ``stacked``: ``em.fit`` with 200 stacked starts (N = 2000, 1-D), every start
   already converged: seconds per call.

Run from the repository root: ``python benchmarks/bench_table.py`` (about 6
minutes here); ``--rows restarts cold`` picks rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_iteration import Gmmx, gmmx_available, make_data, make_start  # noqa: E402

fit_module = sys.modules["jaxem.fit"]
ROWS = ("restarts", "gradient", "iteration", "cold", "newn", "estimator", "stacked")


def _isa() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown ISA"
    return "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")


def best_of(fn, reps=3):
    fn()  # compile / warm up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(jax.tree.leaves(out))
        times.append(time.perf_counter() - t)
    return min(times), out


def starts(x, k, cov, r):
    """R starts, bench_iteration's (3 Lloyd iterations on a subsample from K random
    rows, the subsample's covariance, weights 1/K), seeds 1..R: (weights, means, covs)."""
    parts = [make_start(x, k, cov, seed=1 + i) for i in range(r)]
    return tuple(np.stack([p[j] for p in parts]) for j in range(3))


def _model(cov, k):
    return em.Mixture(em.MultivariateNormal(cov, reg_covar=1e-6), k)


def _jaxem_start(start):
    w, m, c = (jnp.asarray(a, jnp.float32) for a in start)
    return em.MixtureParams(w, em.MultivariateNormalParams(m, c))


def _sklearn(cov, start, n_init, iters):
    """scikit-learn from restart 0 of ``start`` (every one of its n_init runs)."""
    from sklearn.mixture import GaussianMixture

    w, m, c = (a[0] for a in start)
    prec = np.linalg.inv(c) if cov == "full" else 1 / c
    return GaussianMixture(
        len(w), covariance_type=cov, n_init=n_init, max_iter=iters, tol=0.0, reg_covar=1e-6,
        weights_init=w, means_init=m, precisions_init=prec,
    )  # fmt: skip


def row_restarts(out):
    cases = [(100_000, 2, 3, "full"), (100_000, 16, 8, "full"), (100_000, 16, 8, "diag")]
    r, iters = 16, 20
    print(f"\n1. {r} restarts, {iters} iterations (tol=0), seconds (warm, best of 3)")
    print(f"{'case':>22} {'sklearn n_init':>15} {'jaxem in turn':>14} {'together':>9} "
          f"{'sk/in turn':>11} {'sk/together':>12} {'rel LL diff':>12}")  # fmt: skip
    for n, d, k, cov in cases:
        x = make_data(n, d, k)
        start = starts(x, k, cov, r)
        model = _model(cov, k)
        init = _jaxem_start(start)
        x64 = x.astype(np.float64)

        def jx(init=init, model=model, x=x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return em.fit(model, x, init=init, restarts=r, max_iter=iters, tol=0.0)

        t_turn, res = best_of(jx)
        saved = fit_module._in_turn
        fit_module._in_turn = lambda *a: False
        try:
            t_together, _ = best_of(jx)
        finally:
            fit_module._in_turn = saved
        sk = _sklearn(cov, start, r, iters)

        def skfit(sk=sk, x64=x64):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sk.fit(x64)

        t_sk, fitted = best_of(skfit, reps=1)
        sk_ll = fitted.score(x64) * n
        ll0 = float(res.restart_objectives[0])  # restart 0 started where scikit-learn's did
        rel = abs(ll0 - sk_ll) / abs(sk_ll)
        name = f"({n:.0e}, {d}, {k}) {cov}"
        print(f"{name:>22} {t_sk:>15.2f} {t_turn:>14.2f} {t_together:>9.2f} "
              f"{t_sk / t_turn:>10.2f}x {t_sk / t_together:>11.2f}x {rel:>12.1e}")  # fmt: skip
        out.append({"row": "restarts", "case": name, "sklearn_s": t_sk, "in_turn_s": t_turn,
                    "together_s": t_together, "rel_ll": rel})  # fmt: skip


def row_gradient(out):
    print("\n2. gradient M-step restarts (benchmarks/bench_gradient_restarts.py)")
    here = os.path.dirname(os.path.abspath(__file__))
    text = subprocess.run(
        [sys.executable, os.path.join(here, "bench_gradient_restarts.py")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print(text.rstrip())
    out.append({"row": "gradient", "output": text})


def row_iteration(out):
    iters = 20
    print(f"\n3. one fit, ms per iteration ({iters} iterations, tol=0, warm)")
    print(f"{'case':>22} {'sklearn':>9} {'gmmx':>9} {'jaxem':>9} {'vs sklearn':>11} "
          f"{'vs gmmx':>8} {'rel LL diff':>12}")  # fmt: skip
    for n, d, k, cov in [(100_000, 16, 8, "full"), (100_000, 16, 8, "diag")]:
        x = make_data(n, d, k)
        start = starts(x, k, cov, 1)
        model = _model(cov, k)
        init = jax.tree.map(lambda a: a[0], _jaxem_start(start))

        def jx(init=init, model=model, x=x):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return em.fit(model, x, init=init, max_iter=iters, tol=0.0)

        t_j, res = best_of(jx)
        sk = _sklearn(cov, start, 1, iters)
        x64 = x.astype(np.float64)

        def skfit(sk=sk, x64=x64):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sk.fit(x64)

        t_s, fitted = best_of(skfit)
        t_g = float("nan")
        if gmmx_available():  # not a dependency: pip install gmmx to compare
            g = Gmmx(x, tuple(a[0] for a in start), cov, k)
            t_g, _ = best_of(lambda g=g: g.run(iters).gmm.weights_numpy)
        rel = abs(res.log_likelihood - fitted.score(x64) * n) / abs(fitted.score(x64) * n)
        name = f"({n:.0e}, {d}, {k}) {cov}"
        ms = [1e3 * t / iters for t in (t_s, t_g, t_j)]
        print(f"{name:>22} {ms[0]:>9.2f} {ms[1]:>9.2f} {ms[2]:>9.2f} "
              f"{t_s / t_j:>10.2f}x {t_g / t_j:>7.2f}x {rel:>12.1e}")  # fmt: skip
        out.append({"row": "iteration", "case": name, "sklearn_ms": 1e3 * t_s / iters,
                    "gmmx_ms": 1e3 * t_g / iters, "jaxem_ms": 1e3 * t_j / iters,
                    "rel_ll": rel})  # fmt: skip


COLD = """
import numpy as np, jax, jaxem as em
x = np.concatenate([np.random.default_rng(0).normal(m, 1, 334) for m in (-4, 0, 4)])[:1000]
res = em.fit(em.Mixture(em.Normal(), 3), x, key=jax.random.key(0))
print(res.objective)
"""


def _wall(code, env):
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def row_cold(out):
    print("\n4. fresh process: import, fit 1-D 1000 points K=3, print (wall s from process start)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAXEM_CACHE_DIR": cache}
        cold = _wall(COLD, env)
        warm = min(_wall(COLD, env) for _ in range(3))
    bare = min(_wall("import jax, jaxem", {**os.environ, "JAXEM_CACHE_DIR": "off"})
               for _ in range(3))  # fmt: skip
    print(f"   empty cache {cold:.2f} s, warm cache {warm:.2f} s (import alone {bare:.2f} s)")
    out.append({"row": "cold", "empty_s": cold, "warm_s": warm, "import_s": bare})


def _rss_mb():
    """Resident memory now (Linux), else the peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row_newn(out):
    print("\n5. em.fit on new row counts (same model; seconds per fit, resident MB after)")
    rng = np.random.default_rng(0)
    model = em.Mixture(em.Normal(), 3)
    cells = []
    for n in (1000, 1001, 1002, 1003, 1100, 1500, 2000, 2047, 3000):
        x = rng.normal(size=n) + np.repeat([-3.0, 0.0, 3.0], -(-n // 3))[:n]
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            em.fit(model, x, key=jax.random.key(0), max_iter=200)
        cells.append((n, time.perf_counter() - t, _rss_mb()))
    print("   " + "  ".join(f"N={n}: {s:.2f} s {m:.0f} MB" for n, s, m in cells))
    out.append({"row": "newn", "cells": cells})


ESTIMATOR = """
import time, json, warnings
t0 = time.perf_counter()
import numpy as np
from sklearn import datasets
{imp}
out = {{}}
warnings.simplefilter("ignore")
for name in ("iris", "wine", "faithful"):
    if name == "faithful":
        x = np.genfromtxt("jaxem/data/faithful.csv", delimiter=",", skip_header=1, usecols=(0, 1))
    else:
        x = getattr(datasets, "load_" + name)().data
    t = time.perf_counter()
    GM(3, random_state=0).fit(x)
    out[name] = time.perf_counter() - t
out["process"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def row_estimator(out):
    print("\n6. first GaussianMixture(3).fit in a fresh process (s): iris / wine / faithful")
    jx = ESTIMATOR.format(imp="from jaxem import GaussianMixture as GM")
    sk = ESTIMATOR.format(imp="from sklearn.mixture import GaussianMixture as GM")

    def child(code, env):
        text = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                              capture_output=True, text=True).stdout  # fmt: skip
        return json.loads(text.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAXEM_CACHE_DIR": cache}
        for label, code in (("jaxem, empty cache", jx), ("jaxem, warm cache", jx),
                            ("scikit-learn", sk)):  # fmt: skip
            o = child(code, env)
            cells = " / ".join(f"{o[k]:.2f}" for k in ("iris", "wine", "faithful"))
            print(f"   {label:<20} {cells}   (process {o['process']:.2f} s)")
            out.append({"row": "estimator", "setting": label, **o})


def row_stacked(out):
    print("\n7. 200 stacked starts, N = 2000, 1-D, every start converged: s per call")
    x = np.concatenate([np.random.default_rng(0).normal(m, 1, 1000) for m in (-3, 3)])
    model = em.Mixture(em.Normal(), 2)
    res = em.fit(model, x, key=jax.random.key(0))
    init = jax.tree.map(lambda a: jnp.broadcast_to(a, (200,) + a.shape), res.params)
    t, _ = best_of(lambda: em.fit(model, x, init=init, restarts=200))
    print(f"   {t:.3f} s")
    out.append({"row": "stacked", "seconds": t})


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    p.add_argument("--json", help="also write every measurement to this file")
    args = p.parse_args(argv)
    print(f"{platform.machine()}, {os.cpu_count()} cores, {_isa()}, jax {jax.__version__}, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    out = []
    for row in args.rows:
        globals()[f"row_{row}"](out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
