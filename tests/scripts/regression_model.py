"""A mixture of two linear regressions written as a plain ``em.Model`` on a data dict.

Shared by the tests of data pytrees (tests/test_units.py) and the 8-device script:
the covariate ``u`` travels in the data with its response ``y``.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em
from jaxem import constraints


def log_joint(p, d):
    """``(N, 2)``: log w_k + log N(y | b0_k + b1_k u, v_k)."""
    mu = p["b0"] + p["b1"] * d["u"][:, None]
    return jnp.log(p["w"]) + jax.scipy.stats.norm.logpdf(d["y"][:, None], mu, jnp.sqrt(p["v"]))


def init(key, d):
    """A random start from the data: lines through two random units, the variance of y."""
    i = jax.random.choice(key, d["y"].shape[0], (2, 2), replace=False)
    u, y = d["u"][i], d["y"][i]  # (2 lines, 2 points)
    slope = (y[:, 1] - y[:, 0]) / jnp.where(u[:, 1] == u[:, 0], 1.0, u[:, 1] - u[:, 0])
    # "mismatch" never moves (log_joint ignores it): it records whether the
    # rows init saw kept y and u together (0 when y == 2 u + 1 row by row).
    return {
        "w": jnp.full(2, 0.5, d["y"].dtype),
        "b0": y[:, 0] - slope * u[:, 0],
        "b1": slope,
        "v": jnp.full(2, jnp.var(d["y"])),
        "mismatch": jnp.max(jnp.abs(d["y"] - 2 * d["u"] - 1)),
    }


MODEL = em.Model(
    lambda p, d: log_joint(p, d) + 0 * p["mismatch"],
    init=init,
    constraints={"w": constraints.simplex, "v": constraints.positive},
)


def data(n: int, seed: int = 0, dtype=np.float64) -> dict:
    """NPreg-like: y = 5u (40%) or 15 + 2u (60%), noise sd 3, u uniform on [0, 10]."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0, 10, n)
    z = rng.random(n) < 0.4
    y = np.where(z, 5 * u, 15 + 2 * u) + rng.normal(0, 3, n)
    return {"y": y.astype(dtype), "u": u.astype(dtype)}


def numpy_em(d: dict, start: dict, n_iter: int, weights=None) -> dict:
    """Float64 EM with the closed-form M-step (weighted least squares per component)."""
    y, u = np.asarray(d["y"], np.float64), np.asarray(d["u"], np.float64)
    w_row = np.ones_like(y) if weights is None else np.asarray(weights, np.float64)
    p = {k: np.array(v, np.float64) for k, v in start.items()}
    design = np.column_stack([np.ones_like(u), u])
    for _ in range(n_iter):
        mu = p["b0"] + p["b1"] * u[:, None]
        lj = (
            np.log(p["w"])
            - 0.5 * np.log(2 * np.pi * p["v"])
            - 0.5 * (y[:, None] - mu) ** 2 / p["v"]
        )
        lj -= lj.max(axis=1, keepdims=True)
        r = np.exp(lj)
        r /= r.sum(axis=1, keepdims=True)
        wr = r * w_row[:, None]
        p["w"] = wr.sum(0) / wr.sum()
        for k in range(2):
            gram = design.T @ (wr[:, k, None] * design)
            coef = np.linalg.solve(gram, design.T @ (wr[:, k] * y))
            p["b0"][k], p["b1"][k] = coef
            p["v"][k] = np.sum(wr[:, k] * (y - design @ coef) ** 2) / wr[:, k].sum()
    return p
