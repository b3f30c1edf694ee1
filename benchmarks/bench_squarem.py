"""Plain EM vs SQUAREM: EM-map evaluations and wall time to the same optimum.

For each problem: fit once from a fixed start with SQUAREM to tol=0 (it stops
when the objective can no longer increase) to get the optimum, then fit plain
EM and SQUAREM from the same start, and count the E-steps each needs to come
within 1e-6 and 1e-9 per sample of that optimum (read off the objective history), and
the E-steps and seconds each takes to stop at tol=1e-10 per sample.
Float64 throughout, so that the counts measure convergence, not rounding.

Run:  python benchmarks/bench_squarem.py
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxem as em  # noqa: E402
from jaxem import constraints, demos  # noqa: E402

EPS = (1e-6, 1e-9)  # per-sample distances to the optimum that count as "there"
TOL = 1e-10


class Weibull(em.Family):
    """A custom Weibull density, as in the README (gradient M-step: no closed form)."""

    constraints = {"shape": constraints.positive, "scale": constraints.positive}

    def log_prob(self, params, x):
        k, lam = params["shape"], params["scale"]
        return jnp.log(k / lam) + (k - 1) * jnp.log(x / lam) - (x / lam) ** k

    def init(self, key, x, n_components):
        return {
            "shape": jnp.ones(n_components),
            "scale": jax.random.choice(key, x, (n_components,)),
        }


def problems():
    rng = np.random.default_rng(0)
    yield "seed: 3 normals, MAP", demos.three_normals_model(), demos.three_normals()
    overlap = np.concatenate([rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)])
    yield "overlap: .5N(0,1)+.5N(1,1)", em.Mixture(em.Normal(), 2), overlap
    counts = rng.poisson(np.repeat([3.0, 5.0], [3000, 2000])).astype(float)
    yield "Poisson(3)+Poisson(5)", em.Mixture(em.Poisson(), 2), counts
    if hasattr(em, "MultivariateNormal"):
        faithful = em.datasets.load_faithful()
        yield (
            "Old Faithful, 2 full-cov",
            em.Mixture(em.MultivariateNormal("full", reg_covar=0.0), 2),
            faithful,
        )
    weib = np.concatenate([rng.weibull(1.5, 1500) * 1.0, rng.weibull(4.0, 1500) * 2.0])
    yield "Weibull custom (gradient)", em.Mixture(Weibull(), 2), weib


def evals_to_reach(result, target, per_iter):
    hit = np.nonzero(result.history >= target)[0]
    return None if len(hit) == 0 else int(hit[0] * per_iter + 1)


def timed(model, x, start, **kw):
    em.fit(model, x, init=start, **kw)  # compile
    t = time.perf_counter()
    res = em.fit(model, x, init=start, **kw)
    return res, time.perf_counter() - t


def main():
    print(f"jax {jax.__version__} on {jax.default_backend()}; float64; tol={TOL:g}/sample")
    print("E-steps to come within 1e-6 / 1e-9 per sample of the optimum, and to stop at tol")
    header = (
        f"{'problem':<28} {'method':<8} {'to 1e-6':>8} {'to 1e-9':>8} {'at tol':>8} "
        f"{'seconds':>8} {'gap/sample':>11} {'min Δ':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, model, x in problems():
        start = em.fit(model, x, key=jax.random.key(1), max_iter=0).params
        best = em.fit(model, x, init=start, tol=0.0, max_iter=20_000, accelerate="squarem")
        n = len(x)
        ratios = {}
        for method, per_iter in ((None, 1), ("squarem", 3)):
            res, secs = timed(model, x, start, tol=TOL, max_iter=200_000, accelerate=method)
            reach = [evals_to_reach(res, best.objective - e * n, per_iter) for e in EPS]
            ratios[method] = reach + [res.n_evals, secs]
            gap = (best.objective - res.objective) / n
            print(
                f"{name:<28} {method or 'plain':<8} {reach[0]!s:>8} {reach[1]!s:>8} "
                f"{res.n_evals:>8} {secs:>8.3f} {gap:>11.2e} {np.diff(res.history).min():>9.1e}"
            )
        cells = [
            f"{a / b:>8.1f}" if a and b else f"{'-':>8}"
            for a, b in zip(ratios[None], ratios["squarem"], strict=True)
        ]
        print(f"{'':<28} {'ratio':<8} {' '.join(cells)}")


if __name__ == "__main__":
    main()
