"""Restarts: one vmapped ``em.fit`` vs R separate fits vs scikit-learn ``n_init``.

Diagonal Gaussian mixtures by maximum likelihood, ``tol=0`` and a fixed ``max_iter`` on every
side, so that per-iteration costs can be compared:

* jaxem, vmapped: ``em.fit(model, x, key=..., restarts=R)`` (its own k-means++ starts). The
  per-iteration figure is ``(t(max_iter) - t(1 iteration)) / (R * (iterations - 1))``: the same
  compiled program run twice (the 1-iteration run uses a huge ``tol``), so the draw of the starts
  and the first E-step cancel.  Under ``vmap`` every restart computes until the last one stops,
  so the iterations counted are ``max(res.restart_n_iter)``.
* jaxem, vmapped, same starts: the program ``em.fit`` compiles, called with the R starts below
  stacked (a private entry point, ``jaxem.fit._compiled``; reported as n/a if it moves).
  Raw time / (R * max n_iter).  This is the column that shares starts with the others.
* jaxem, R separate fits: ``em.fit(model, x, init=start_r)`` for r = 1..R, one after the other.
  Raw time (host validation, copies and the first E-step included) / sum(n_iter).
* scikit-learn ``GaussianMixture(covariance_type="diag", reg_covar=0, tol=0)``: with
  ``n_init=R`` (every init from start 1 via means_init / precisions_init / weights_init;
  ``init_params="random"``, whose responsibilities those override, costs about one M-step), and
  as separate fits from the first ``--sk-fits`` starts. Time / (inits * max_iter). scikit-learn
  runs exactly max_iter iterations with tol=0, plus one final E-step.

The starts: means are K distinct data rows, variances the data's per-feature variance, weights
1/K; float32 for jaxem (its default), float64 for scikit-learn. Data: K overlapping diagonal
Gaussians (centres ~ N(0, 1/D) per feature, scales in [0.7, 1.3]) so that EM keeps improving
for the whole run (jaxem with tol=0 stops early only if the float32 objective stops increasing;
the n_iter columns say when it did).

Correctness: the final log-likelihood from the same start, jaxem (float32) against
scikit-learn (float64, ``score(X) * N`` at its final parameters).

Usage:
    python benchmarks/bench_restarts.py               # the default grid, ~5-6 minutes
    python benchmarks/bench_restarts.py --quick       # a small smoke run
    python benchmarks/bench_restarts.py --iters 50 --grid 100000,16,8,16
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import json
import os
import platform
import statistics
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import jaxem as em

DEFAULT_GRID = [
    (10_000, 1, 3, 16),
    (100_000, 1, 3, 16),
    (100_000, 2, 3, 16),
    (100_000, 16, 8, 16),
    (100_000, 2, 3, 64),
]
HUGE_TOL = 1e30  # stops every restart after one iteration: same program, cheap warm-up


# -- data and starts -------------------------------------------------------------------------
def make_data(n: int, d: int, k: int, seed: int = 0) -> np.ndarray:
    """(N, D) float64 draws from K overlapping diagonal Gaussians."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0 / np.sqrt(d), (k, d))
    scales = rng.uniform(0.7, 1.3, (k, d))
    z = rng.integers(0, k, n)
    return centres[z] + scales[z] * rng.normal(size=(n, d))


def make_starts(x: np.ndarray, k: int, r: int, seed: int = 1):
    """R starts: means (R, K, D) = distinct data rows, variances (R, K, D) = data variance."""
    rng = np.random.default_rng(seed)
    means = np.stack([x[rng.choice(len(x), k, replace=False)] for _ in range(r)])
    var = np.broadcast_to(x.var(axis=0), means.shape).copy()
    return means, var


def jaxem_data(x: np.ndarray) -> np.ndarray:
    """(N,) for D = 1 (the 1-D model), else (N, D); float32."""
    return (x[:, 0] if x.shape[1] == 1 else x).astype(np.float32)


def jaxem_start(mean: np.ndarray, var: np.ndarray) -> em.MixtureParams:
    k, d = mean.shape
    squeeze = (lambda a: a[:, 0]) if d == 1 else (lambda a: a)
    return em.MixtureParams(
        weights=jnp.full((k,), 1.0 / k, jnp.float32),
        components=em.NormalParams(
            mean=jnp.asarray(squeeze(mean), jnp.float32),
            var=jnp.asarray(squeeze(var), jnp.float32),
        ),
    )


# -- timing ----------------------------------------------------------------------------------
def timed(fn, reps: int, budget_s: float, times=None, out=None):
    """Run ``fn`` up to ``reps`` times in all, while the runs so far took under ``budget_s``.

    ``times`` (and ``out``, the result of the last of them) are runs already made; without
    them ``fn`` runs at least once. Returns (min seconds, median seconds, runs, last result).
    """
    times = list(times or [])
    while len(times) < reps and (not times or sum(times) < budget_s):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), len(times), out


def _block(res):
    jax.block_until_ready(res.params)
    return res


# -- the four ways -------------------------------------------------------------------------
def bench_vmapped(model, x, r, iters, reps, budget):
    """em.fit(restarts=R): time per iteration per restart, draws and first E-step cancelled."""
    key = jax.random.key(0)
    one = lambda: _block(em.fit(model, x, key=key, restarts=r, max_iter=iters, tol=HUGE_TOL))
    full = lambda: _block(em.fit(model, x, key=key, restarts=r, max_iter=iters, tol=0.0))
    one()  # compile (tol is traced: one program for both)
    t1, _, _, res1 = timed(one, reps, budget / 4)
    tm, tm_med, n, res = timed(full, reps, budget)
    assert int(res1.restart_n_iter.max()) == 1
    it = int(res.restart_n_iter.max())
    per = (tm - t1) / (r * max(it - 1, 1))
    return {
        "per_iter": per,
        "per_iter_raw": tm / (r * max(it, 1)),
        "t_total": tm,
        "t_total_median": tm_med,
        "t_one_iter": t1,
        "runs": n,
        "n_iter": res.restart_n_iter.tolist(),
    }


def _private_program(model, iters, from_keys=False):
    """The jitted program em.fit runs for given starts, or raise if its internals moved.

    ``jaxem.fit._compiled(model, hist_len, from_keys, *options)``: options that it gained
    after this script was written get em.fit's defaults (e.g. accelerate=None).
    """
    fit_mod = importlib.import_module("jaxem.fit")
    params = list(inspect.signature(fit_mod._compiled).parameters)
    if params[:3] != ["model", "hist_len", "from_keys"]:
        raise TypeError(f"jaxem.fit._compiled{params} is not (model, hist_len, from_keys, ...)")
    defaults = inspect.signature(em.fit).parameters
    extra = [defaults[p].default for p in params[3:]]  # KeyError if no such fit option
    return fit_mod._compiled(model, fit_mod._history_length(iters), from_keys, *extra)


def _field(state, name):
    """state.name or state.point.name (the loop state's layout has changed before)."""
    if hasattr(state, name):
        return getattr(state, name)
    return getattr(state.point, name)


def bench_vmapped_same_starts(model, x, starts, iters, reps, budget):
    """The program em.fit compiles, given the R starts stacked (private entry point)."""
    try:
        program = _private_program(model, iters)
    except (AttributeError, TypeError, KeyError, ValueError) as err:  # internals moved
        return {"per_iter": float("nan"), "error": repr(err)}
    xj = jnp.asarray(x)
    sw = jnp.ones(x.shape[0], xj.dtype)
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *starts)
    tol = jnp.asarray(0.0, xj.dtype)

    def call(tol=tol):
        final, _ = program(xj, sw, stacked, iters, tol)
        return jax.block_until_ready(final)

    try:
        call(jnp.asarray(HUGE_TOL, xj.dtype))  # compile; one iteration (tol is traced)
        t0 = time.perf_counter()
        final = call()  # the first timed run
        tm_first = time.perf_counter() - t0
        n_iter = np.asarray(_field(final, "n_iter"))
        ll = np.asarray(_field(final, "log_likelihood"), np.float64)
    except (AttributeError, TypeError, ValueError) as err:
        return {"per_iter": float("nan"), "error": repr(err)}
    tm, tm_med, n, _ = timed(call, reps, budget, times=[tm_first], out=final)
    return {
        "per_iter": tm / (len(starts) * max(int(n_iter.max()), 1)),
        "t_total": tm,
        "t_total_median": tm_med,
        "runs": n,
        "n_iter": n_iter.tolist(),
        "log_likelihood": ll.tolist(),
    }


def bench_separate(model, x, starts, iters, reps, budget):
    """R separate em.fit(init=start_r) calls, one after the other."""
    _block(em.fit(model, x, init=starts[0], max_iter=iters, tol=HUGE_TOL))  # compile, 1 iter

    def all_fits():
        return [_block(em.fit(model, x, init=s, max_iter=iters, tol=0.0)) for s in starts]

    tm, tm_med, n, results = timed(all_fits, reps, budget)
    n_iter = [r.n_iter for r in results]
    return {
        "per_iter": tm / max(sum(n_iter), 1),
        "t_total": tm,
        "t_total_median": tm_med,
        "runs": n,
        "n_iter": n_iter,
        "log_likelihood": [r.log_likelihood for r in results],
    }


def sk_model(k, iters, mean, var, n_init):
    return GaussianMixture(
        n_components=k,
        covariance_type="diag",
        tol=0.0,
        reg_covar=0.0,
        max_iter=iters,
        n_init=n_init,
        init_params="random",  # overridden by the *_init below; ~one M-step of work
        weights_init=np.full(k, 1.0 / k),
        means_init=mean,
        precisions_init=1.0 / var,
        random_state=0,
    )


def _sk_fit(gm, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkConvergenceWarning)
        gm.fit(x)
    return gm


def _limits(threads):
    # threads=None leaves the BLAS pools as they are (the default: one thread per core).
    return threadpool_limits(limits=threads, user_api="blas")


def bench_sklearn(x, means, var, iters, r, sk_fits, reps, budget):
    k = means.shape[1]
    n_probe = 1

    # Which BLAS thread setting is faster here? Probe with a short n_init run under each.
    probe = {}
    for threads in (1, None):
        with _limits(threads):
            _sk_fit(sk_model(k, 2, means[0], var[0], 1), x)  # warm caches and pools
            t, _, _, _ = timed(
                lambda: _sk_fit(sk_model(k, iters, means[0], var[0], n_probe), x),
                reps,
                budget / 4,
            )
        probe["1" if threads == 1 else "default"] = t / (n_probe * iters)
    best = 1 if probe["1"] <= probe["default"] else None

    with _limits(best):
        t_ninit, t_ninit_med, runs_ninit, gm = timed(
            lambda: _sk_fit(sk_model(k, iters, means[0], var[0], r), x), reps, budget
        )
        sk_n_iter = gm.n_iter_

        def seq():
            return [_sk_fit(sk_model(k, iters, means[i], var[i], 1), x) for i in range(sk_fits)]

        t_seq, t_seq_med, runs_seq, gms = timed(seq, reps, budget)
    n = x.shape[0]
    return {
        "threads": "1" if best == 1 else "default",
        "probe_per_iter": probe,
        "n_init_per_iter": t_ninit / (r * iters),
        "n_init_t_total": t_ninit,
        "n_init_t_total_median": t_ninit_med,
        "n_init_runs": runs_ninit,
        "n_init_n_iter": sk_n_iter,
        "seq_per_iter": t_seq / (sk_fits * iters),
        "seq_t_total": t_seq,
        "seq_t_total_median": t_seq_med,
        "seq_runs": runs_seq,
        "seq_fits": sk_fits,
        "seq_n_iter": [g.n_iter_ for g in gms],
        # log-likelihood (sum over rows) at the final parameters of each start
        "log_likelihood": [g.score(x) * n for g in gms],
    }


# -- driver ------------------------------------------------------------------------------------
def run_case(n, d, k, r, iters, reps, budget, sk_fits):
    x64 = make_data(n, d, k)
    means, var = make_starts(x64, k, r)
    x32 = jaxem_data(x64)
    starts = [jaxem_start(means[i], var[i]) for i in range(r)]
    model = em.Mixture(em.Normal(), n_components=k)
    sk_fits = min(sk_fits, r)

    out = {"N": n, "D": d, "K": k, "R": r, "iters": iters}
    out["vmapped"] = bench_vmapped(model, x32, r, iters, reps, budget)
    out["vmapped_same"] = bench_vmapped_same_starts(model, x32, starts, iters, reps, budget)
    out["separate"] = bench_separate(model, x32, starts, iters, reps, budget)
    out["sklearn"] = bench_sklearn(x64, means, var, iters, r, sk_fits, reps, budget)

    sk_ll = np.asarray(out["sklearn"]["log_likelihood"])
    sep_ll = np.asarray(out["separate"]["log_likelihood"][:sk_fits])
    out["rel_ll_jaxem_vs_sklearn"] = float(np.max(np.abs(sep_ll - sk_ll) / np.abs(sk_ll)))
    if "log_likelihood" in out["vmapped_same"]:
        vm = np.asarray(out["vmapped_same"]["log_likelihood"])
        sep = np.asarray(out["separate"]["log_likelihood"])
        out["rel_ll_vmapped_vs_separate"] = float(np.max(np.abs(vm - sep) / np.abs(sep)))
    return out


def _ms(s):
    return "n/a" if not np.isfinite(s) else f"{1e3 * s:.3g}"


def _iters_note(n_iter, iters):
    n_iter = np.asarray(n_iter)
    short = int(np.sum(n_iter < iters))
    return f"{iters}" if short == 0 else f"{iters} ({short} stopped early, min {n_iter.min()})"


def print_tables(rows):
    print()
    print("Per EM iteration per restart, milliseconds (min over runs):")
    print()
    print(
        "| N | D | K | R | iters | jaxem vmapped `restarts=R` | jaxem vmapped, same starts "
        "| jaxem R separate fits | sklearn `n_init=R` | sklearn separate fits "
        "| sklearn n_init / vmapped | separate / vmapped | max rel. LL diff (f32 vs f64) |"
    )
    print("|" + "---|" * 13)
    for o in rows:
        vm = o["vmapped"]["per_iter"]
        sk = o["sklearn"]
        print(
            f"| {o['N']:.0e} | {o['D']} | {o['K']} | {o['R']} | {o['iters']} "
            f"| {_ms(vm)} | {_ms(o['vmapped_same']['per_iter'])} "
            f"| {_ms(o['separate']['per_iter'])} "
            f"| {_ms(sk['n_init_per_iter'])} | {_ms(sk['seq_per_iter'])} ({sk['seq_fits']}) "
            f"| {sk['n_init_per_iter'] / vm:.2f} | {o['separate']['per_iter'] / vm:.2f} "
            f"| {o['rel_ll_jaxem_vs_sklearn']:.1e} |"
        )
    print()
    print("Iterations run, sklearn BLAS threads, vmapped check:")
    print()
    print(
        "| N | D | K | R | vmapped n_iter | same starts n_iter | separate n_iter "
        "| sklearn ms/iter 1 thread / default | used | vmapped vs separate LL |"
    )
    print("|" + "---|" * 10)
    for o in rows:
        sk, it = o["sklearn"], o["iters"]
        same = o["vmapped_same"].get("n_iter")
        print(
            f"| {o['N']:.0e} | {o['D']} | {o['K']} | {o['R']} "
            f"| {_iters_note(o['vmapped']['n_iter'], it)} "
            f"| {_iters_note(same, it) if same else 'n/a'} "
            f"| {_iters_note(o['separate']['n_iter'], it)} "
            f"| {_ms(sk['probe_per_iter']['1'])} / {_ms(sk['probe_per_iter']['default'])} "
            f"| {sk['threads']} | {o.get('rel_ll_vmapped_vs_separate', float('nan')):.1e} |"
        )


def parse_grid(items):
    grid = []
    for item in items:
        n, d, k, r = (int(float(v)) for v in item.split(","))
        grid.append((n, d, k, r))
    return grid


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=20, help="EM iterations (max_iter, tol=0)")
    p.add_argument("--grid", nargs="*", help="cases N,D,K,R (default: the standard grid)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per measurement, at most")
    p.add_argument(
        "--budget",
        type=float,
        default=3.0,
        help="seconds per measurement before stopping the repeats (one run always happens)",
    )
    p.add_argument(
        "--sk-fits",
        type=int,
        default=4,
        help="separate scikit-learn fits timed (and checked) per case",
    )
    p.add_argument("--quick", action="store_true", help="small grid, 10 iterations")
    p.add_argument("--json", help="write all measurements to this file")
    args = p.parse_args(argv)

    grid = parse_grid(args.grid) if args.grid else DEFAULT_GRID
    iters = args.iters
    if args.quick:
        grid, iters = [(10_000, 1, 3, 4), (10_000, 4, 3, 4)], 10

    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
    print(
        f"{datetime.date.today()}  python {platform.python_version()}  jax {jax.__version__}  "
        f"scikit-learn {sklearn.__version__}  numpy {np.__version__}  "
        f"cpus {os.cpu_count()}  {platform.machine()}  threadpools {blas}"
    )
    print(
        f"jax devices {jax.devices()}  x64 {jax.config.jax_enable_x64}  iters {iters}  "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    t_start = time.perf_counter()
    rows = []
    for n, d, k, r in grid:
        t0 = time.perf_counter()
        o = run_case(n, d, k, r, iters, args.reps, args.budget, args.sk_fits)
        o["wall_s"] = time.perf_counter() - t0
        rows.append(o)
        print(
            f"  N={n:.0e} D={d} K={k} R={r}: vmapped {_ms(o['vmapped']['per_iter'])} ms, "
            f"separate {_ms(o['separate']['per_iter'])} ms, sklearn n_init "
            f"{_ms(o['sklearn']['n_init_per_iter'])} ms per iteration per restart "
            f"({o['wall_s']:.0f} s)",
            flush=True,
        )
    print_tables(rows)
    print(
        f"\ntotal {time.perf_counter() - t_start:.0f} s, load average at the end "
        f"{os.getloadavg()[0]:.2f} (this process counts about 1-2 of it)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
