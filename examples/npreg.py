"""Mixtures of regressions on Leisch's NPreg design (FlexMix, JSS 2004), then a mixture of experts.

Two latent classes of 100 units each, x uniform on [0, 10]:

* class 1: y = 5x + ε,            yp ~ Poisson(exp(2 - 0.2x))
* class 2: y = 15 + 10x - x² + ε, yp ~ Poisson(exp(1 + 0.1x)),   ε ~ N(0, 3²).

Run: ``python examples/npreg.py``.
"""

from __future__ import annotations

import jax
import numpy as np

import jaxem as em


def npreg(seed: int = 0, n_per_class: int = 100):
    """NPreg-style data: ``(x (N,), y (N,), yp (N,), class (N,))``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, 2 * n_per_class)
    cls = np.repeat([0, 1], n_per_class)
    mean = np.where(cls == 0, 5 * x, 15 + 10 * x - x**2)
    y = mean + rng.normal(0, 3, x.shape)
    yp = rng.poisson(np.exp(np.where(cls == 0, 2 - 0.2 * x, 1 + 0.1 * x)))
    return x, y, yp, cls


def main() -> None:
    x, y, yp, cls = npreg()
    key = jax.random.key(0)

    # 1. A mixture of two linear regressions of y on (x, x²).
    data = {"x": np.column_stack([x, x**2]), "y": y}
    model = em.Mixture(em.LinearRegression(), n_components=2)
    res = em.fit(model, data, key=key, restarts=16)
    c = res.params.components
    for k in np.argsort(np.asarray(c.intercept)):
        print(
            f"linear  w={float(res.params.weights[k]):.3f}  intercept={float(c.intercept[k]):7.3f}"
            f"  coef={np.round(np.asarray(c.coef[k]), 3)}  sd={float(np.sqrt(c.var[k])):.3f}"
        )
    found = np.asarray(em.predict(model, res.params, data))
    agree = max(np.mean(found == cls), np.mean(found != cls))
    print(
        f"classes recovered for {agree:.1%} of the units; BIC {em.bic(model, res.params, data):.1f}"
    )

    # 2. A mixture of two Poisson regressions of the counts yp on x.
    counts = {"x": x, "y": yp}
    pois = em.Mixture(em.PoissonRegression(), n_components=2)
    rp = em.fit(pois, counts, key=key, restarts=16)
    cp = rp.params.components
    for k in np.argsort(np.asarray(cp.intercept)):
        print(
            f"poisson w={float(rp.params.weights[k]):.3f}  intercept={float(cp.intercept[k]):6.3f}"
            f"  slope={float(cp.coef[k, 0]):6.3f}"
        )

    # 3. A mixture of experts: the weights depend on a covariate w through a softmax.
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, x.shape)
    z = rng.random(x.shape) < 1 / (1 + np.exp(-(3 * w)))  # P(class 2 | w) = sigmoid(3w)
    ye = np.where(z, 15 + 10 * x - x**2, 5 * x) + rng.normal(0, 3, x.shape)
    moe = em.Mixture(em.LinearRegression(), 2, gating=em.SoftmaxGating(covariates="w"))
    data_e = {"x": np.column_stack([x, x**2]), "y": ye, "w": w}
    re = em.fit(moe, data_e, key=key, restarts=16)
    g = re.params.weights
    print(
        f"gating: component 1 against 0, slope {float(g.gate_coef[1, 0]):.2f}, "
        f"intercept {float(g.gate_intercept[1]):.2f}"
    )
    print(
        "predictive mean at the first 3 units:",
        np.round(np.asarray(moe.predict_mean(re.params, data_e))[:3], 2),
    )


if __name__ == "__main__":
    main()
