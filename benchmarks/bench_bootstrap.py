"""The bootstrap: 200 refits in one compiled program against a loop of 200 ``em.fit`` calls.

Both refit the same resampled weights (multinomial counts, as ``em.bootstrap``
draws them) from the same start (the fit) with the same ``tol``; the loop
calls ``em.fit(model, x, init=params, sample_weight=w_b)`` for each replicate
(compiled once, before timing). Reported: seconds of each (warm, best of 3),
the ratio, the largest gap between the two sets of replicate parameters, and
the bootstrap standard errors against the observed-information ones.

Case (issue 15): a two-component normal mixture, N = 2000, float64.
Run from the repository root: ``python benchmarks/bench_bootstrap.py``.
"""

from __future__ import annotations

import os
import platform
import time

import jax
import numpy as np

import jaxem as em
from jaxem.bootstrap import _weights


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    n, n_boot = 2000, 200
    z = rng.random(n) < 0.35
    x = np.where(z, rng.normal(-1, 0.8, n), rng.normal(2, 1.3, n))
    model = em.Mixture(em.Normal(), 2)
    params = em.fit(model, x, key=0, restarts=8, tol=1e-12).params
    key = jax.random.key(1)
    tol = 1e-8

    def boot(accelerate=None):
        return em.bootstrap(model, x, params, n_boot, key=key, tol=tol, accelerate=accelerate)

    weights = np.asarray(_weights(key, np.ones(n), n_boot))

    def loop(accelerate=None):
        return [
            em.fit(
                model, x, init=params, sample_weight=weights[b], tol=tol, accelerate=accelerate
            ).params
            for b in range(n_boot)
        ]

    t0 = time.perf_counter()
    result = boot()
    first = time.perf_counter() - t0
    t_boot = min(_timed(boot) for _ in range(3))
    loop()  # compile
    t_loop = min(_timed(loop) for _ in range(3))
    fits = loop()
    loop_means = np.stack([np.sort(np.asarray(p.components.mean)) for p in fits])
    boot_means = np.sort(result.samples.components.mean, axis=1)
    se = em.standard_errors(model, params, x)
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {os.cpu_count()} CPUs, jax {jax.__version__}")
    print(f"two normals, N={n}, {n_boot} nonparametric replicates, float64, tol={tol:g}")
    print(f"  em.bootstrap (one program): {t_boot:7.2f} s   (first call {first:.2f} s)")
    print(f"  loop of em.fit calls:       {t_loop:7.2f} s   ({t_loop / t_boot:.1f}x the bootstrap)")
    boot("squarem")
    loop("squarem")
    t_boot_sq = min(_timed(lambda: boot("squarem")) for _ in range(3))
    t_loop_sq = min(_timed(lambda: loop("squarem")) for _ in range(3))
    print(f"  with accelerate='squarem' on both sides: bootstrap {t_boot_sq:.2f} s, "
          f"loop {t_loop_sq:.2f} s ({t_loop_sq / t_boot_sq:.1f}x)")  # fmt: skip
    iters = int(result.n_iter.sum())
    print(f"  EM iterations of all replicates: {iters}; "
          f"{1e6 * t_boot / iters:.0f} us per iteration in the bootstrap")  # fmt: skip
    print(f"  largest gap of the replicate means: {np.max(np.abs(loop_means - boot_means)):.1e}")
    print(f"  bootstrap SE of the means:  {result.standard_errors.components.mean}")
    print(f"  Hessian SE of the means:    {se.components.mean}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
