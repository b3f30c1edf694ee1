"""Model selection's grid in a fresh process: ``em.select_model`` against a scikit-learn loop.

The case of issue 16: Old Faithful (272 × 2, float64), K = 1..9, ``n_init=16``
k-means restarts per cell. Every measurement is a new Python process, timed
from before its imports to its last result, so compilation (and for jaxem the
persistent compilation cache) is included:

- ``jaxem cold``: ``em.select_model`` with an empty compilation cache;
- ``jaxem warm``: the same in a second process, reading the cache the first wrote;
- ``sklearn``: ``GaussianMixture(k, covariance_type=t, n_init=16).fit(X).bic(X)``
  for each cell, with scikit-learn's default ``tol=1e-3`` and with jaxem's
  ``1e-5`` (the same stopping rule: per-sample log-likelihood change);

for scikit-learn's four covariance types and for mclust's 14 models (jaxem
only: scikit-learn has four). Printed: seconds, the ratio to scikit-learn
(same tol), each side's winner with its BIC, and scikit-learn's BIC for
jaxem's winning cell. scikit-learn's ``reg_covar=1e-6`` lets a component
collapse onto repeated rows (Faithful's waiting times are integers): at
``tol=1e-5`` its "winner" is such a degenerate fit, which jaxem (like mclust)
discards.

Run from the repository root: ``python benchmarks/bench_select.py``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile

JAXEM = """
import time; t0 = time.perf_counter()
import json, numpy as np, jaxem as em
x = np.asarray(em.datasets.load_faithful(), np.float64)
r = em.select_model(x, range(1, 10), {models!r}, n_init=16, random_state=0)
print(json.dumps({{"seconds": time.perf_counter() - t0, "model": r.best.model,
                  "k": r.best.n_components, "bic": r.best.bic}}))
"""

SKLEARN = """
import time; t0 = time.perf_counter()
import json, warnings, numpy as np
from sklearn.mixture import GaussianMixture
x = np.genfromtxt("jaxem/data/faithful.csv", delimiter=",", skip_header=1, usecols=(0, 1))
cells = {{}}
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for t in ("full", "tied", "diag", "spherical"):
        for k in range(1, 10):
            cells[f"{{t}} {{k}}"] = GaussianMixture(k, covariance_type=t, n_init=16, tol={tol},
                                                  max_iter=1000, random_state=0).fit(x).bic(x)
seconds = time.perf_counter() - t0
t, k = min(cells, key=cells.get).split()
print(json.dumps({{"seconds": seconds, "model": t, "k": int(k), "bic": min(cells.values()),
                  "cells": cells}}))
"""


def _run(code: str, cache: str | None = None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["JAXEM_CACHE_DIR"] = cache
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _isa() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown ISA"
    if "XLA_FLAGS" in os.environ and "max_isa=AVX2" in os.environ["XLA_FLAGS"]:
        return "AVX-512 CPU limited to AVX2 by XLA_FLAGS"
    return "AVX-512" if "avx512f" in flags else "AVX2"


def main() -> None:
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {_isa()}")
    print("Old Faithful 272 x 2, K = 1..9, 16 k-means restarts per cell, fresh processes\n")
    sk = {tol: _run(SKLEARN.format(tol=tol)) for tol in (1e-3, 1e-5)}
    head = f"{'grid':<34}{'seconds':>9}{'vs sklearn':>12}   winner (BIC)"
    print(head)
    for tol, r in sk.items():
        print(
            f"{f'sklearn loop, tol={tol:g}':<34}{r['seconds']:>9.2f}{'':>12}   "
            f"{r['model']} K={r['k']} ({r['bic']:.2f})"
        )
    for label, models in (("4 sklearn types", ("full", "tied", "diag", "spherical")),
                          ("mclust's 14 models", "mclust")):  # fmt: skip
        with tempfile.TemporaryDirectory() as cache:
            cold = _run(JAXEM.format(models=models), cache)
            warm = _run(JAXEM.format(models=models), cache)
        if models != "mclust":
            cell = f"{cold['model']} {cold['k']}"
            print(
                f"   scikit-learn's BIC of jaxem's winner ({cell}): "
                + ", ".join(f"{sk[t]['cells'][cell]:.2f} at tol={t:g}" for t in sk)
            )
        for name, r in (("cold cache", cold), ("warm cache", warm)):
            ratio = r["seconds"] / sk[1e-5]["seconds"]
            print(
                f"{f'jaxem {label}, {name}':<34}{r['seconds']:>9.2f}{ratio:>11.2f}x   "
                f"{r['model']} K={r['k']} ({r['bic']:.2f})"
            )


if __name__ == "__main__":
    main()
