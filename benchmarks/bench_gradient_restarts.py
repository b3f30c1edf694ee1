"""Restarts on the gradient M-step: stepped together, one after the other, or separate fits.

A custom density has no closed form, so every M-step is an inner L-BFGS loop
of its own length. Three ways to run R restarts of the same starts:

- ``together``: one ``while_loop`` over the batch (``vmap``): each EM iteration
  waits for the slowest restart's inner loop, and the batch runs until the
  slowest restart converges;
- ``in turn``: ``lax.map`` over the restarts, each its own ``while_loop`` (what
  ``em.fit`` does on a CPU when some M-step is the gradient one);
- ``loop``: R calls of ``em.fit(init=start_i)`` (compiled once).

Reported: seconds (warm, best of 3), and the best objective of each. Case (issue
17): a 3-component Weibull mixture, N = 1000, R = 32, EM to ``tol`` (1e-8 per
sample) or 1000 iterations, float32.

Run from the repository root: ``python benchmarks/bench_gradient_restarts.py``.
"""

from __future__ import annotations

import importlib
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em
from jaxem import constraints

fit_module = importlib.import_module("jaxem.fit")  # the module (em.fit is the function)


class Weibull(em.Family):
    constraints = {"shape": constraints.positive, "scale": constraints.positive}

    def log_prob(self, params, x):
        k, lam = params["shape"], params["scale"]
        return jnp.log(k / lam) + (k - 1) * jnp.log(x / lam) - (x / lam) ** k

    def init(self, key, x, n_components):
        return {
            "shape": jnp.ones(n_components),
            "scale": jax.random.choice(key, x, (n_components,)),
        }


def best_of(fn, reps=3):
    fn()  # compile
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.weibull(1.5, 500), 4 * rng.weibull(5.0, 500)])
    model = em.Mixture(Weibull(), 3)
    r = 32
    keys = jax.random.split(jax.random.key(0), r)
    starts = jax.vmap(model.init, in_axes=(0, None))(keys, jnp.asarray(x, jnp.float32))
    chooser = fit_module._in_turn

    def batch():
        return em.fit(model, x, init=starts, restarts=r)

    def loop():
        fits = [em.fit(model, x, init=jax.tree.map(lambda a, i=i: a[i], starts)) for i in range(r)]
        return max(fits, key=lambda f: f.objective)

    t_turn, turn = best_of(batch)
    fit_module._in_turn = lambda *a: False
    try:
        t_together, together = best_of(batch)
    finally:
        fit_module._in_turn = chooser
    t_loop, single = best_of(loop)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"Weibull mixture K=3, N=1000, {r} restarts, to tol 1e-8 (float32)")
    for name, t, res in (
        ("together (vmap)", t_together, together),
        ("in turn (lax.map)", t_turn, turn),
        (f"loop of {r} em.fit", t_loop, single),
    ):
        print(f"  {name:<20} {t:7.2f} s   {t / t_loop:5.2f}x the loop   best {res.objective:.4f}")


if __name__ == "__main__":
    main()
