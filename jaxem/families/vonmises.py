"""Von Mises components for angles (radians): ``loc`` and ``concentration``.

``(N,)`` angles give scalar parameters per component; ``(N, D)`` data is
treated as D independent angles (e.g. a protein's dihedral angles), with
parameters ``(D,)`` per component. Data may be any real numbers: the density
is 2π-periodic in ``x``, so ``x`` and ``x + 2π`` are the same observation.

``log f(x) = κ cos(x - μ) - log(2π I₀(κ))``, evaluated as
``-2κ sin²((x - μ)/2) - log(2π) - log(i0e(κ))`` with the exponentially
scaled Bessel function, so that large concentrations neither overflow nor lose
precision near the mode.

No closed form is registered (the ML concentration solves
``I₁(κ)/I₀(κ) = R̄``, which has none), so the M-step is the gradient one.

``loc`` is an angle and is reported in ``(-π, π]``. Its constraint,
:data:`circular`, wraps the gradient M-step's unconstrained coordinate into
that interval. Wrapping moves nothing the objective sees: with no ``loc``
prior (or a 2π-periodic one) the objective is periodic in ``loc``, the
wrap's derivative is 1 everywhere, and L-BFGS runs on the smooth periodic
function of the unconstrained coordinate. With a non-periodic ``loc_prior``
(e.g. ``priors.Normal``) the prior applies to the reported value in
``(-π, π]``, i.e. ``loc`` is a point of that interval, not of the real line;
keep such a prior well inside the interval.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import i0e

from jaxem import constraints
from jaxem.families._seeding import as_rows, kmeans_plus_plus
from jaxem.families.base import Family, check_prior

__all__ = ["VonMises", "VonMisesParams", "circular", "wrap_angle", "sample_von_mises"]

_LOG_2PI = math.log(2 * math.pi)


def wrap_angle(angle):
    """Wrap angles to ``(-π, π]``; the derivative is 1 everywhere.

    Example:
        >>> wrap_angle(jnp.array([3 * jnp.pi / 2, -jnp.pi]))   # [-π/2, π]
    """
    angle = jnp.asarray(angle)
    return jnp.pi - jnp.remainder(jnp.pi - angle, 2 * jnp.pi)


class _Circular(constraints.Constraint):
    """An angle: any real, reported in ``(-π, π]``.

    ``to_constrained`` wraps (2π-periodic, not a bijection, but a local one
    with unit derivative: the gradient M-step of a 2π-periodic objective is
    unaffected, and its result comes back wrapped).
    """

    name = "circular"

    def to_constrained(self, u):
        return wrap_angle(u)

    def to_unconstrained(self, value):
        return jnp.asarray(value)

    def check(self, value):
        return bool(np.all(np.isfinite(value)))

    def __repr__(self) -> str:
        return "circular"


circular = _Circular()


class VonMisesParams(NamedTuple):
    """Per-component ``loc`` (mean direction, in ``(-π, π]``) and ``concentration`` κ.

    Each is ``(K,)`` for ``(N,)`` data or ``(K, D)`` for ``(N, D)`` data.
    """

    loc: jax.Array
    concentration: jax.Array


class VonMises(Family):
    """Von Mises(loc, concentration) component density on the circle.

    Args:
        loc_prior, concentration_prior: priors on each field: any ``priors``
            object or a function ``value -> log density`` (both use the
            gradient M-step). A ``loc`` prior should be 2π-periodic, or
            concentrated well inside ``(-π, π]`` (see the module docstring).

    Example:
        >>> from jaxem.families.vonmises import VonMises
        >>> res = em.fit(em.Mixture(VonMises(), 3), angles, key=jax.random.key(0), restarts=4)
        >>> res.params.components.loc                 # (3,), in (-π, π]
    """

    independent_features = True  # (N, D) data: a product over features
    constraints = {"loc": circular, "concentration": constraints.positive}

    name = "vonmises"
    hyperparameters = ()
    params_type = VonMisesParams
    support_kind = "circular"

    def __init__(self, *, loc_prior=None, concentration_prior=None):
        name = type(self).__name__
        self.priors = {
            "loc": check_prior(name, "loc", loc_prior),
            "concentration": check_prior(name, "concentration", concentration_prior),
        }

    def log_prob(self, params, x):
        kappa = params.concentration
        # I₀(κ) = i0e(κ) e^κ: the e^κ cancels against the κ cos term's maximum,
        # and cos d - 1 = -2 sin²(d/2) keeps its precision near the mode.
        half = jnp.sin(0.5 * (x - params.loc))
        lp = -2 * kappa * half * half - _LOG_2PI - jnp.log(i0e(kappa))
        return lp if x.ndim == 1 else jnp.sum(lp, axis=-1)

    def sample(self, key, params, n):
        loc = jnp.asarray(params.loc)
        shape = (n,) + loc.shape
        kappa = jnp.broadcast_to(jnp.asarray(params.concentration, loc.dtype), shape)
        return wrap_angle(loc + sample_von_mises(key, kappa))

    def init(self, key, x, n_components):
        """k-means++ on the unit-circle points; circular means and κ shrunk to the data's."""
        rows = as_rows(x)  # (N, D)
        cos, sin = jnp.cos(rows), jnp.sin(rows)
        # Cluster on (cos, sin): angles near +π and -π are neighbours there.
        resp, _ = kmeans_plus_plus(key, jnp.concatenate([cos, sin], axis=1), n_components)
        counts = resp.sum(0)[:, None]  # (K, 1)
        c = resp.T @ cos + jnp.mean(cos, axis=0)  # one pseudo-row of the overall mean
        s = resp.T @ sin + jnp.mean(sin, axis=0)
        loc = jnp.arctan2(s, c)
        r_bar = jnp.clip(jnp.sqrt(c * c + s * s) / (counts + 1), 0.0, 0.999)
        # κ with I₁(κ)/I₀(κ) ≈ R̄ (Banerjee et al. 2005); the M-step refines it.
        kappa = r_bar * (2 - r_bar * r_bar) / (1 - r_bar * r_bar)
        kappa = jnp.maximum(kappa, 1e-3)
        shape = (n_components,) + x.shape[1:]
        return VonMisesParams(loc=loc.reshape(shape), concentration=kappa.reshape(shape))


def sample_von_mises(key, concentration):
    """Von Mises draws centred at 0, one per entry of ``concentration``, in ``[-π, π]``.

    Best & Fisher's (1979) wrapped-Cauchy rejection sampler, vectorised: every
    entry draws proposals until accepted, inside one ``lax.while_loop``
    (acceptance is at least 66% for any κ). The constants are rearranged so
    that nothing cancels at small κ (where the draws become uniform; κ = 0 is
    allowed) or at large κ (where they become N(0, 1/κ)).

    Args:
        key: PRNG key.
        concentration: κ >= 0, any shape; the draws have its shape and dtype.

    Example:
        >>> theta = sample_von_mises(jax.random.key(0), jnp.full((1000,), 4.0))
    """
    kappa = jnp.asarray(concentration)
    if not jnp.issubdtype(kappa.dtype, jnp.floating):
        kappa = kappa.astype(jnp.result_type(float))
    dtype, shape = kappa.dtype, kappa.shape
    # Best & Fisher: τ = 1 + sqrt(1 + 4κ²), ρ = (τ - sqrt(2τ)) / (2κ),
    # r = (1 + ρ²) / (2ρ). With q = sqrt(1 + 4κ²): ρ = 2κ / (τ + sqrt(2τ)) and
    # 1 - ρ = (1 + 1/(q + 2κ) + sqrt(2τ)) / (τ + sqrt(2τ)), both free of cancellation.
    q = jnp.sqrt(1 + 4 * kappa * kappa)
    tau = 1 + q
    root = jnp.sqrt(2 * tau)
    rho = 2 * kappa / (tau + root)
    one_minus_rho = (1 + 1 / (q + 2 * kappa) + root) / (tau + root)
    # With ε = r - 1 = (1 - ρ)² / (2ρ): 1/ε, and κε, finite at κ = 0.
    inv_eps = 2 * rho / (one_minus_rho * one_minus_rho)
    kappa_eps = one_minus_rho * one_minus_rho * (tau + root) / 4

    def propose(key):
        k1, k2, k3 = jax.random.split(key, 3)
        z = jnp.cos(jnp.pi * jax.random.uniform(k1, shape, dtype))
        u = jax.random.uniform(k2, shape, dtype)
        den = 1 + (1 + z) * inv_eps
        # f = (1 + r z) / (r + z): 1 - f = ε(1 - z)/(r + z), c = κ(r - f) = κε(2 + ε)/(r + z).
        one_minus_f = jnp.clip((1 - z) / den, 0, 2)
        c = (2 * kappa + kappa_eps) / den
        accept = (c * (2 - c) > u) | (jnp.log(c / u) + 1 - c >= 0)
        # arccos(f) without its loss of precision near f = 1.
        theta = 2 * jnp.arcsin(jnp.sqrt(one_minus_f / 2))
        sign = jnp.where(jax.random.bernoulli(k3, 0.5, shape), 1, -1).astype(dtype)
        return sign * theta, accept

    def pending(carry):
        return ~jnp.all(carry[2])

    def draw(carry):
        key, out, done = carry
        key, sub = jax.random.split(key)
        theta, ok = propose(sub)
        return key, jnp.where(done, out, theta), done | ok

    init = (key, jnp.zeros(shape, dtype), jnp.zeros(shape, bool))
    _, out, _ = jax.lax.while_loop(pending, draw, init)
    return out
