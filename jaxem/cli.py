"""Command line: ``jaxem demo``."""

from __future__ import annotations

import argparse
import sys
import time


def _table(headers, rows) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "   " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
    rule = "   " + "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def demo(restarts: int = 64, seed: int = 0) -> int:
    import jax
    import numpy as np

    import jaxem as em
    from jaxem import demos

    print("jaxem demo: EM on JAX", f"(jax {jax.__version__}, {jax.default_backend()})\n")

    x = demos.three_normals()
    model = demos.three_normals_model()
    t0 = time.perf_counter()
    res = em.fit(model, x, key=jax.random.key(seed), restarts=restarts)
    elapsed = time.perf_counter() - t0
    comp = res.params.components
    order = np.argsort(np.asarray(comp.mean))
    print(
        f"1. Three normals, MAP ({len(x)} points; truth: means 25/30/40, sd 1/1.75/0.25, "
        "weights 0.4/0.4/0.2)"
    )
    print(f"   {model}")
    rows = [
        [
            k + 1,
            f"{float(res.params.weights[i]):.4f}",
            f"{float(comp.mean[i]):.4f}",
            f"{float(comp.var[i]):.4f}",
            f"{float(np.sqrt(comp.var[i])):.4f}",
        ]
        for k, i in enumerate(order)
    ]
    print(_table(["component", "weight", "mean", "var", "sd"], rows))
    print(
        f"   objective (log posterior) {res.objective:.4f}, log-likelihood {res.log_likelihood:.4f}"
    )
    print(
        f"   best of {restarts} parallel restarts: {res.n_iter} iterations, converged="
        f"{res.converged}; {np.sum(np.isclose(res.restart_objectives, res.objective, atol=1e-3))}"
        f"/{restarts} restarts reached it; {elapsed:.2f} s incl. compilation\n"
    )

    coin = demos.coin_model()
    print(
        "2. Two coins (Do & Batzoglou 2008), heads in five sets of 10 tosses:",
        demos.COIN_HEADS.astype(int).tolist(),
    )
    rows = []
    for n_iter in (1, 10):
        r = em.fit(coin, demos.COIN_HEADS, init=demos.COIN_INIT, max_iter=n_iter, tol=0.0)
        p = np.asarray(r.params["p"])
        rows.append([n_iter, f"{p[0]:.4f}", f"{p[1]:.4f}", f"{r.objective:.4f}"])
    r = em.fit(coin, demos.COIN_HEADS, init=demos.COIN_INIT)
    p = np.asarray(r.params["p"])
    rows.append([f"{r.n_iter} (converged)", f"{p[0]:.4f}", f"{p[1]:.4f}", f"{r.objective:.4f}"])
    print(_table(["iterations", "p_A", "p_B", "log-likelihood"], rows))
    print("   textbook: 0.71/0.58 after 1 iteration, 0.80/0.52 after 10")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jaxem", description="Expectation-Maximization on JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="fit the bundled examples and print the estimates")
    p_demo.add_argument("--restarts", type=int, default=64, help="random restarts (default 64)")
    p_demo.add_argument("--seed", type=int, default=0, help="PRNG seed for the restarts")
    args = parser.parse_args(argv)
    if args.command == "demo" and args.restarts < 1:
        parser.error("--restarts must be >= 1")
    try:
        return demo(restarts=args.restarts, seed=args.seed)
    except BrokenPipeError:  # e.g. `jaxem demo | head`: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
