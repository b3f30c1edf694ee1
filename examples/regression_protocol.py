"""A model with its own E- and M-step: a mixture of linear regressions by weighted least squares.

``em.Model(log_joint)`` alone fits this model with the gradient M-step. Here the
model speaks the engine's protocol instead:

* ``expect`` returns each unit's log-likelihood and *additive* statistics
  (per component: Σ r, Σ r·[1, u][1, u]ᵀ, Σ r·[1, u]·y, Σ r·y²), summed over
  the chunks of units the engine hands it;
* ``maximize`` solves the weighted least-squares problem of each component
  from those statistics alone, never re-running the E-step.

Chunks, padding, weights, restarts, SQUAREM and devices all come from ``em.fit``.
Run: ``python examples/regression_protocol.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em
from jaxem import constraints


class Stats(NamedTuple):
    n: jax.Array  # (K,)     Σ_i w_i r_ik
    gram: jax.Array  # (K, 2, 2) Σ_i w_i r_ik a_i a_iᵀ, a_i = [1, u_i]
    cross: jax.Array  # (K, 2)  Σ_i w_i r_ik a_i y_i
    yy: jax.Array  # (K,)     Σ_i w_i r_ik y_i²


class RegressionMixture(em.Model):
    """K linear regressions ``y = b0_k + b1_k u + N(0, v_k)`` on data ``{"y": (N,), "u": (N,)}``."""

    def __init__(self, n_components: int = 2):
        super().__init__(
            self._log_joint,
            init=self._init,
            constraints={"w": constraints.simplex, "v": constraints.positive},
        )
        self.k = n_components

    def _log_joint(self, p, d):
        mu = p["b0"] + p["b1"] * d["u"][:, None]  # (N, K)
        return jnp.log(p["w"]) + jax.scipy.stats.norm.logpdf(d["y"][:, None], mu, jnp.sqrt(p["v"]))

    def _init(self, key, d):
        i = jax.random.choice(key, d["y"].shape[0], (self.k, 2), replace=False)
        u, y = d["u"][i], d["y"][i]
        slope = (y[:, 1] - y[:, 0]) / jnp.where(u[:, 1] == u[:, 0], 1.0, u[:, 1] - u[:, 0])
        return {
            "w": jnp.full(self.k, 1.0 / self.k, d["y"].dtype),
            "b0": y[:, 0] - slope * u[:, 0],
            "b1": slope,
            "v": jnp.full(self.k, jnp.var(d["y"])),
        }

    def expect(self, params, data, sample_weight, extra=em.NO_EXTRA, chunking=None):
        def units(d, w):  # some units -> (additive statistics, per-unit log-likelihood)
            lj = self.log_joint(params, d)
            r = jax.nn.softmax(lj, axis=1) * w[:, None]  # (n, K), 0 on padding
            a = jnp.stack([jnp.ones_like(d["u"]), d["u"]], axis=1)  # (n, 2)
            stats = Stats(
                r.sum(0),
                jnp.einsum("nk,ni,nj->kij", r, a, a),
                jnp.einsum("nk,ni,n->ki", r, a, d["y"]),
                r.T @ d["y"] ** 2,
            )
            return stats, jax.scipy.special.logsumexp(lj, axis=1)

        stats, unit_ll = em.chunks.rows_sum(units, chunking, data, sample_weight)
        return em.Expectation(unit_ll, self.log_prior(params), stats)

    def maximize(self, params, data, sample_weight, stats, extra=em.NO_EXTRA, chunking=None,
                 fixed=None):  # fmt: skip
        coef = jnp.linalg.solve(stats.gram, stats.cross[..., None])[..., 0]  # (K, 2)
        # Σ r (y - aᵀb)² = Σ r y² - 2 bᵀ(Σ r a y) + bᵀ(Σ r a aᵀ) b
        rss = (
            stats.yy
            - 2 * jnp.sum(coef * stats.cross, axis=1)
            + jnp.einsum("ki,kij,kj->k", coef, stats.gram, coef)
        )
        return {
            "w": stats.n / jnp.sum(stats.n),
            "b0": coef[:, 0],
            "b1": coef[:, 1],
            "v": jnp.maximum(rss, 0) / stats.n,
        }


def main() -> None:
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 10, 2000)
    y = np.where(rng.random(2000) < 0.4, 5 * u, 15 + 2 * u) + rng.normal(0, 3, 2000)
    data = {"y": y, "u": u}
    res = em.fit(RegressionMixture(2), data, key=jax.random.key(0), restarts=16)
    order = np.argsort(np.asarray(res.params["b1"]))
    for name in ("w", "b0", "b1", "v"):
        print(f"{name}: {np.round(np.asarray(res.params[name])[order], 3)}")
    print(f"log-likelihood {float(res.log_likelihood):.2f} after {int(res.n_iter)} iterations")


if __name__ == "__main__":
    main()
