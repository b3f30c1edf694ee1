"""The two-coin example of Do & Batzoglou (2008), as a hand-written em.Model.

Five sets of ten tosses; each set used coin A or coin B with probability 1/2,
and which one is hidden. No closed form is given, so each M-step runs L-BFGS on
Q(θ|θt) in logit space until it reaches the maximiser: the iterates are the
textbook ones (0.71/0.58 after one iteration, 0.80/0.52 after ten).

Run: python examples/two_coins.py
"""

import jax
import jax.numpy as jnp

import jaxem as em
from jaxem import constraints

heads = jnp.array([5.0, 9.0, 8.0, 4.0, 7.0])


def log_joint(params, x):  # (N, K): log p(x_i, z_i = k | params)
    return jax.scipy.stats.binom.logpmf(x[:, None], 10, params["p"]) + jnp.log(0.5)


model = em.Model(log_joint, constraints={"p": constraints.unit_interval})

for n_iter in (1, 10):
    res = em.fit(model, heads, init={"p": jnp.array([0.6, 0.5])}, max_iter=n_iter, tol=0.0)
    p = res.params["p"]
    print(f"after {n_iter:2d} iteration(s): p = {p}, log-likelihood {res.objective:.4f}")

res = em.fit(model, heads, init={"p": jnp.array([0.6, 0.5])})
print(f"converged={res.converged} after {res.n_iter} iterations: p = {res.params['p']}")
print("responsibilities of coin A per set:", em.responsibilities(model, res.params, heads)[:, 0])
