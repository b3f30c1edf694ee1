"""The bundled examples: the seed normal mixture (MAP) and the two coins.

Both are small and deterministic, so ``jaxem demo`` prints the same table on
every machine (up to float32 rounding). The demo's third fit, Old Faithful
(``jaxem.datasets.load_faithful()``, ``MultivariateNormal("full")``, K=2), is
built by the command line's model cache so that ``jaxem fit`` on the same shapes
reuses its compiled program.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em
from jaxem import constraints, priors

# Do & Batzoglou (2008), Nat. Biotech. 26:897: heads in five sets of ten tosses.
COIN_HEADS = np.array([5.0, 9.0, 8.0, 4.0, 7.0])
COIN_INIT = {"p": np.array([0.6, 0.5])}


def three_normals(seed: int = 0) -> np.ndarray:
    """The seed data: 500/500/250 draws at means 30/25/40, sd 1.75/1/0.25."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.normal(30.0, 1.75, 500), rng.normal(25.0, 1.0, 500), rng.normal(40.0, 0.25, 250)]
    )


def three_normals_model() -> em.Mixture:
    """MAP normal mixture with the priors of the notebook "Introduction to the EM Algorithm"."""
    return em.Mixture(
        em.Normal(
            mean_prior=priors.Normal(30.0, 5.0**0.5), var_prior=priors.InverseGamma(5.0, 1.0)
        ),
        n_components=3,
        weights_prior=priors.Dirichlet(1.5),
    )


def coin_log_joint(params, x):
    """log p(heads_i, coin_i = k): binomial(10, p_k) with a fair choice of coin."""
    return jax.scipy.stats.binom.logpmf(x[:, None], 10, params["p"]) + jnp.log(0.5)


def coin_model() -> em.Model:
    """The two-coin model as a hand-written ``em.Model`` (gradient M-step)."""
    return em.Model(coin_log_joint, constraints={"p": constraints.unit_interval})
