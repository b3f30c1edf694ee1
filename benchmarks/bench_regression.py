"""Mixtures of regressions: jaxem against a reference EM written the obvious way in NumPy.

Same data, same starts (drawn once by jaxem's family ``init`` and handed to
both), same iteration count (``tol=0``). The reference runs the restarts one
after another in float64, as a loop over iterations: E-step by ``logsumexp``,
M-step by weighted least squares (``np.linalg.solve`` of each component's
weighted Gram matrix) for the linear family, and by IRLS (Newton steps to
convergence) for the Poisson family. jaxem runs all restarts together in one
compiled program, in float64 and in float32. Reported: the seconds of each
(jaxem warm, i.e. compiled; jaxem's first call, compilation included, apart),
the ratio, and the largest gap of the final log-likelihoods (float64 must
agree to ~1e-9: the same iterations were run).

The issue's case: N = 100 000 rows, P = 10 covariates, K = 4 components,
16 restarts; 50 EM iterations for linear, 20 for Poisson. ``--quick`` shrinks it.
Run from the repository root: ``python benchmarks/bench_regression.py [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
from scipy.special import gammaln, logsumexp

import jaxem as em


def _data(rng, n, p, k, family):
    x = rng.normal(size=(n, p))
    coef = rng.normal(0, 1, (k, p)) * (0.3 if family == "poisson" else 1.0)
    intercept = rng.normal(0, 2 if family == "linear" else 0.5, k)
    z = rng.integers(k, size=n)
    eta = np.einsum("np,np->n", x, coef[z]) + intercept[z]
    if family == "poisson":
        return x, rng.poisson(np.exp(eta)).astype(np.float64)
    return x, eta + rng.normal(0, 1, n)


def _model(family, k):
    fam = em.LinearRegression() if family == "linear" else em.PoissonRegression()
    return em.Mixture(fam, n_components=k)


def _starts(family, k, data, restarts):
    with jax.enable_x64(True):
        model = _model(family, k)
        keys = jax.random.split(jax.random.key(0), restarts)
        starts = jax.vmap(model.init, in_axes=(0, None))(keys, data)
        return jax.tree.map(lambda a: np.asarray(a, np.float64), starts)


# -- the reference: float64 NumPy, one restart after another ------------------------------------
def _log_density(family, a, y, beta, var):
    eta = a @ beta.T  # (N, K)
    if family == "linear":
        return -0.5 * (np.log(2 * np.pi * var) + (y[:, None] - eta) ** 2 / var)
    return y[:, None] * eta - np.exp(eta) - gammaln(y + 1)[:, None]


def _irls(a, y, r, beta, steps=25):
    """Weighted Poisson regression by Newton steps (IRLS), warm-started."""
    for _ in range(steps):
        mu = np.exp(a @ beta)
        grad = a.T @ (r * (y - mu))
        info = (a * (r * mu)[:, None]).T @ a
        step = np.linalg.solve(info, grad)
        beta = beta + step
        if grad @ step < 1e-20 * r.sum():
            break
    return beta


def _reference(family, x, y, start, n_iter):
    a = np.column_stack([x, np.ones(len(x))])
    w = start.weights.copy()
    c = start.components
    beta = np.column_stack([c.coef, c.intercept])
    var = c.var.copy() if family == "linear" else None
    for _ in range(n_iter):
        lj = np.log(w) + _log_density(family, a, y, beta, var)
        r = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        nk = r.sum(0)
        w = nk / nk.sum()
        for j in range(len(w)):
            if family == "linear":
                ar = a * r[:, j : j + 1]
                beta[j] = np.linalg.solve(ar.T @ a, ar.T @ y)
                var[j] = r[:, j] @ (y - a @ beta[j]) ** 2 / nk[j]
            else:
                beta[j] = _irls(a, y, r[:, j], beta[j])
    lj = np.log(w) + _log_density(family, a, y, beta, var)
    return logsumexp(lj, axis=1).sum()


def _one(start, i):
    return jax.tree.map(lambda v: v[i], start)


def _case(family, n, p, k, restarts, n_iter, rng):
    x, y = _data(rng, n, p, k, family)
    data = {"x": x, "y": y}
    starts = _starts(family, k, data, restarts)
    t0 = time.perf_counter()
    ref = [_reference(family, x, y, _one(starts, i), n_iter) for i in range(restarts)]
    t_ref = time.perf_counter() - t0
    row = {"case": f"{family}: N={n}, P={p}, K={k}, {restarts} restarts, {n_iter} iterations"}
    row["numpy_f64_s"] = t_ref
    for dtype in ("float64", "float32"):
        with jax.enable_x64(dtype == "float64"):
            model = _model(family, k)

            def run(model=model, data=data):
                res = em.fit(model, data, init=starts, restarts=restarts, max_iter=n_iter, tol=0.0)
                return res, np.asarray(res.restart_objectives)

            t0 = time.perf_counter()
            run()
            cold = time.perf_counter() - t0
            best = np.inf
            for _ in range(3):
                t0 = time.perf_counter()
                res, objs = run()
                best = min(best, time.perf_counter() - t0)
        row[f"jaxem_{dtype}_s"] = best
        row[f"jaxem_{dtype}_first_call_s"] = cold
        row[f"gap_{dtype}"] = float(np.max(np.abs(objs - np.asarray(ref)) / np.abs(ref)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    args = parser.parse_args()
    n, restarts = (5_000, 4) if args.quick else (100_000, 16)
    rng = np.random.default_rng(0)
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {os.cpu_count()} CPUs, jax {jax.__version__}")
    for family, n_iter in (("linear", 50), ("poisson", 20)):
        row = _case(family, n, 10, 4, restarts, n_iter, rng)
        print(row["case"])
        print(f"  NumPy float64 reference, restarts in sequence: {row['numpy_f64_s']:8.2f} s")
        for dtype in ("float64", "float32"):
            t = row[f"jaxem_{dtype}_s"]
            print(
                f"  jaxem {dtype}, restarts under vmap:         {t:8.2f} s"
                f"  ({row['numpy_f64_s'] / t:5.1f}x faster; first call with compilation "
                f"{row[f'jaxem_{dtype}_first_call_s']:.2f} s; log-likelihood gap "
                f"{row[f'gap_{dtype}']:.1e})"
            )


if __name__ == "__main__":
    main()
