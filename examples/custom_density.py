"""Custom component densities: a density alone, a density with a closed-form M-step, and a
mixture of different families.

(a) Weibull: subclass ``em.Family`` with ``constraints``, ``log_prob`` and ``init`` only.
    With no closed form registered, each M-step runs L-BFGS on Q(θ|θt) until it
    reaches the maximiser.
(b) Laplace: the same, plus a closed-form M-step attached with the decorator
    ``@em.register_m_step(Laplace)``, verified against autodiff with
    ``em.check_m_step``.
(c) ``em.Mixture([Laplace(), em.Normal()])``: one Laplace and one normal
    component; ``params.components`` is a tuple with one entry per component.

Run: python examples/custom_density.py
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxem as em
from jaxem import constraints


# -- (a) a density is all a family needs ------------------------------------------------------
class Weibull(em.Family):
    """Weibull(shape k, scale λ) on x > 0; params is a dict (README: "Your own family")."""

    # Every restricted field needs its constraint: a field left out is real, and the
    # gradient M-step would search it over the whole real line, negative values included.
    constraints = {"shape": constraints.positive, "scale": constraints.positive}

    def log_prob(self, params, x):  # one component: scalar leaves; x (N,) -> (N,)
        k, lam = params["shape"], params["scale"]
        return jnp.log(k / lam) + (k - 1) * jnp.log(x / lam) - (x / lam) ** k

    def init(self, key, x, n_components):  # -> params with a leading (n_components,) axis
        return {
            "shape": jnp.ones(n_components, x.dtype),
            "scale": jax.random.choice(key, x, (n_components,)),
        }


# -- (b) a density with a closed-form M-step --------------------------------------------------
class LaplaceParams(NamedTuple):
    """``loc`` and ``scale`` (mean absolute deviation), each ``(K,)`` in a mixture."""

    loc: jax.Array
    scale: jax.Array


class Laplace(em.Family):
    """Laplace(loc, scale) on the real line: ``-log(2 b) - |x - μ| / b``. (N,) data only.

    Its log density has a kink at μ = x_i, where the maximum of Q lies: the
    gradient M-step stalls there, close to but short of it. The closed form
    below is the exact maximiser.
    """

    constraints = {"scale": constraints.positive}

    def validate_data(self, x):
        if x.ndim != 1:
            raise ValueError(f"Laplace: x must have shape (N,), got {x.shape}.")

    def log_prob(self, params, x):
        return -jnp.log(2 * params.scale) - jnp.abs(x - params.loc) / params.scale

    def init(self, key, x, n_components):
        loc = jax.random.choice(key, x, (n_components,), replace=False)
        spread = jnp.mean(jnp.abs(x - jnp.median(x)))
        return LaplaceParams(loc, jnp.full((n_components,), spread, x.dtype))

    def sample(self, key, params, n):
        return params.loc + params.scale * jax.random.laplace(
            key, (n,), jnp.result_type(params.loc)
        )


# The maximiser of Σ_i w_i r_ik log f(x_i | μ_k, b_k) is, for any b_k, a
# weighted median of x (it minimises Σ w r |x - μ|), and given μ_k the scale
# b_k = Σ w r |x - μ_k| / Σ w r: together the exact joint maximiser.
#
# It is declared exact=False all the same: Q is not differentiable at a
# weighted median (a data point), so check_m_step's "the gradient vanishes"
# test cannot apply; it then checks the ascent property instead.
@em.register_m_step(Laplace, exact=lambda family: False)
def laplace_update(family, params, x, resp, sample_weight):
    """resp (N, K), sample_weight (N,) -> LaplaceParams with (K,) leaves."""
    wr = resp * sample_weight[:, None]
    order = jnp.argsort(x)
    xs, cum = x[order], jnp.cumsum(wr[order], axis=0)  # (N,), (N, K)
    half = cum[-1] / 2
    # The first sorted row whose cumulative weight reaches half, and the first
    # that passes it: equal unless the half falls exactly between two rows,
    # where every point in between is a median and we take the midpoint.
    lo, hi = jnp.argmax(cum >= half, axis=0), jnp.argmax(cum > half, axis=0)
    loc = (xs[lo] + xs[hi]) / 2
    total = cum[-1]
    mad = jnp.sum(wr * jnp.abs(x[:, None] - loc), axis=0) / jnp.where(total > 0, total, 1)
    # An empty component (no maximiser) keeps its parameters; a zero spread
    # (all its weight on one point: the likelihood is unbounded) keeps its scale.
    loc = jnp.where(total > 0, loc, params.loc)
    scale = jnp.where((total > 0) & (mad > 0), mad, params.scale)
    return LaplaceParams(loc, scale)


def main():
    rng = np.random.default_rng(0)

    # (a) two Weibull components, fitted from 4 random starts.
    x = np.concatenate([rng.weibull(5.0, 300) * 1.0, rng.weibull(8.0, 200) * 6.0])
    weibull = em.Mixture(Weibull(), n_components=2)
    res = em.fit(weibull, x, key=jax.random.key(0), restarts=4)
    order = np.argsort(res.params.components["scale"])  # components come in any order
    print("(a) Weibull mixture:", res)
    print("    weights", res.params.weights[order], " (true 0.6, 0.4)")
    print("    shape  ", res.params.components["shape"][order], " (true 5, 8)")
    print("    scale  ", res.params.components["scale"][order], " (true 1, 6)")

    # (b) the Laplace closed form, checked against jax.grad of Q in float64.
    y = np.concatenate([rng.laplace(-2.0, 0.5, 250), rng.laplace(3.0, 1.0, 250)])
    laplace = em.Mixture(Laplace(), n_components=2)
    with jax.enable_x64(True):
        report = em.check_m_step(laplace, y)
    print("\n(b) check_m_step of the Laplace closed form (float64):")
    print(report)
    # The weighted median moves between data points in jumps, so EM's gain can
    # be tiny just before one: run to the fixed point (tol=0), cheap with a closed form.
    res = em.fit(laplace, y, key=jax.random.key(0), restarts=8, tol=0.0, max_iter=500)
    print("    fit:", res)
    order = np.argsort(res.params.components.loc)
    print("    loc  ", res.params.components.loc[order], " (true -2, 3)")
    print("    scale", res.params.components.scale[order], " (true 0.5, 1)")

    # (c) one Laplace and one normal component.
    both = em.Mixture([Laplace(), em.Normal()])
    truth = em.MixtureParams(
        jnp.array([0.4, 0.6]),
        (
            LaplaceParams(jnp.array(-3.0), jnp.array(1.0)),
            em.NormalParams(jnp.array(3.0), jnp.array(1.5)),
        ),
    )
    z, _ = both.sample(jax.random.key(2), truth, 600)
    res = em.fit(both, z, key=jax.random.key(0), restarts=8, tol=0.0, max_iter=500)
    lap, nor = res.params.components  # a tuple: one entry per component, no K axis
    print("\n(c) Mixture([Laplace(), Normal()]):", res)
    print(f"    weights {res.params.weights}  (true [0.4 0.6])")
    print(f"    Laplace loc {float(lap.loc):.3f} scale {float(lap.scale):.3f}  (true -3, 1)")
    print(f"    Normal mean {float(nor.mean):.3f} var {float(nor.var):.3f}  (true 3, 1.5)")


if __name__ == "__main__":
    main()
