"""jaxem.priors: every log density against scipy.stats, in float64 and float32.

References are scipy.stats (float64), scipy.integrate for normalisation and
closed-form derivatives for gradients; no jaxem code is used as a reference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxem import priors

# --------------------------------------------------------------------------- cases
# Each case draws N random hyper-parameter sets (as per-entry vectors, which the
# priors broadcast against the values) and in-support values from an rng, and
# returns the jaxem prior, the scipy reference log density and the values.

N = 12  # random hyper-parameter sets per draw
K_VECTOR, K_SCALAR = 3, 4  # Dirichlet lengths


def _normal(rng):
    loc, scale = rng.uniform(-5, 5, N), rng.uniform(0.1, 5, N)
    x = loc + 2 * scale * rng.standard_normal(N)
    return priors.Normal(loc, scale), lambda v: stats.norm.logpdf(v, loc, scale), x


def _gamma(rng):
    a, rate = rng.uniform(0.3, 8, N), rng.uniform(0.1, 5, N)
    x = (rng.gamma(a) + 0.05) / rate
    return priors.Gamma(a, rate), lambda v: stats.gamma.logpdf(v, a, scale=1 / rate), x


def _inverse_gamma(rng):
    a, scale = rng.uniform(0.5, 8, N), rng.uniform(0.1, 5, N)
    x = scale / (rng.gamma(a) + 0.05)
    return (
        priors.InverseGamma(a, scale),
        lambda v: stats.invgamma.logpdf(v, a, scale=scale),
        x,
    )


def _beta(rng):
    a, b = rng.uniform(0.3, 6, N), rng.uniform(0.3, 6, N)
    x = rng.uniform(0.01, 0.99, N)
    return priors.Beta(a, b), lambda v: stats.beta.logpdf(v, a, b), x


def _scipy_dirichlet(alpha):
    """scipy's Dirichlet logpdf applied to every vector along the last axis."""

    def ref(v):
        rows = np.asarray(v, np.float64).reshape(-1, len(alpha))
        return np.array([stats.dirichlet.logpdf(r, alpha) for r in rows]).reshape(v.shape[:-1])

    return ref


def _dirichlet_vector(rng):
    alpha = rng.uniform(0.3, 5, K_VECTOR)
    x = rng.dirichlet(alpha + 1, size=N)
    return priors.Dirichlet(alpha), _scipy_dirichlet(alpha), x


def _dirichlet_scalar(rng):
    c = rng.uniform(0.3, 5)
    x = rng.dirichlet(np.full(K_SCALAR, c + 1), size=N)
    return priors.Dirichlet(c), _scipy_dirichlet(np.full(K_SCALAR, c)), x


CASES = {
    "normal": _normal,
    "gamma": _gamma,
    "inverse_gamma": _inverse_gamma,
    "beta": _beta,
    "dirichlet_vector": _dirichlet_vector,
    "dirichlet_scalar": _dirichlet_scalar,
}
SCALAR_CASES = ["normal", "gamma", "inverse_gamma", "beta"]


def _lp(prior, value):
    """``prior.log_prob`` under ``jax.jit`` (how the M-step calls it; compiles much faster)."""
    return jax.jit(prior.log_prob)(value)


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize("case", list(CASES))
def test_log_prob_matches_scipy_float64(case):
    """log_prob equals scipy's logpdf to 1e-10 in float64 at N random hyper-parameter sets."""
    prior, ref, x = CASES[case](np.random.default_rng(len(case)))
    with jax.enable_x64(True):
        out = _lp(prior, jnp.asarray(x))
        assert out.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(out), ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_log_prob_matches_scipy_float32(case):
    """In float32 log_prob stays float32 and matches scipy (on the rounded inputs) to 1e-4."""
    prior, ref, x = CASES[case](np.random.default_rng(len(case)))
    x32 = x.astype(np.float32)
    out = _lp(prior, jnp.asarray(x32))
    assert out.dtype == jnp.float32
    x_ref = x32.astype(np.float64)
    if case.startswith("dirichlet"):  # scipy insists on rows summing to 1 within 1e-9
        x_ref = x_ref / x_ref.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out), ref(x_ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "prior, value, ref",
    [
        (priors.Normal(-1.0, 3.0), 2.0, stats.norm.logpdf(2.0, -1.0, 3.0)),
        (priors.Gamma(2.5, 0.5), 2.0, stats.gamma.logpdf(2.0, 2.5, scale=2.0)),
        (priors.InverseGamma(2.5, 0.5), 2.0, stats.invgamma.logpdf(2.0, 2.5, scale=0.5)),
        (priors.Beta(2.5, 0.5), 0.25, stats.beta.logpdf(0.25, 2.5, 0.5)),
        (
            priors.Dirichlet([0.5, 2.0, 3.0]),
            [0.2, 0.3, 0.5],
            stats.dirichlet.logpdf([0.2, 0.3, 0.5], [0.5, 2.0, 3.0]),
        ),
    ],
    ids=[*SCALAR_CASES, "dirichlet"],
)
def test_call_is_log_prob_eagerly(prior, value, ref):
    """Outside jit, prior(value) is exactly prior.log_prob(value), and both are scipy's value."""
    with jax.enable_x64(True):
        called, direct = prior(value), prior.log_prob(value)
        assert direct.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(called), np.asarray(direct))
    np.testing.assert_allclose(float(direct), ref, rtol=1e-12)


@pytest.mark.parametrize(
    "prior, ref",
    [
        (priors.Normal(-1.0, 3.0), stats.norm.logpdf(2.0, -1.0, 3.0)),
        (priors.Gamma(2.5, 0.5), stats.gamma.logpdf(2.0, 2.5, scale=2.0)),
        (priors.InverseGamma(2.5, 0.5), stats.invgamma.logpdf(2.0, 2.5, scale=0.5)),
    ],
    ids=SCALAR_CASES[:3],
)
def test_integer_value_is_promoted_to_float(prior, ref):
    """An int value is evaluated as a float (not truncated), giving scipy's value at 2.0."""
    with jax.enable_x64(True):
        out = _lp(prior, 2)
        assert out.dtype == jnp.float64
    assert float(out) == pytest.approx(ref, rel=1e-12)


def test_docstring_value():
    """Normal(0, 1) at 0 is -log(sqrt(2 pi)) (the module docstring's example)."""
    with jax.enable_x64(True):
        out = float(priors.Normal(0.0, 1.0).log_prob(0.0))
    assert out == pytest.approx(-0.5 * np.log(2 * np.pi), abs=1e-14)


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize(
    "prior, value, expected",
    [
        # concentration 1: the density is finite at the boundary (xlogy(0, 0) = 0).
        (priors.Gamma(1.0, 2.5), 0.0, stats.gamma.logpdf(0.0, 1.0, scale=1 / 2.5)),
        (priors.Beta(1.0, 3.0), 0.0, stats.beta.logpdf(0.0, 1.0, 3.0)),
        (priors.Beta(2.0, 1.0), 1.0, stats.beta.logpdf(1.0, 2.0, 1.0)),
        (priors.Beta(1.0, 1.0), 1.0, 0.0),
        (
            priors.Dirichlet([1.0, 2.0, 3.0]),
            [0.0, 0.4, 0.6],
            stats.dirichlet.logpdf([0.0, 0.4, 0.6], [1.0, 2.0, 3.0]),
        ),
    ],
)
def test_boundary_with_unit_concentration_is_finite(prior, value, expected):
    """With exponent 0 the log density at a support boundary is finite and equals scipy's."""
    with jax.enable_x64(True):
        out = float(_lp(prior, jnp.asarray(value)))
    assert np.isfinite(expected)
    assert out == pytest.approx(expected, rel=1e-12, abs=1e-12)


# --------------------------------------------------------------------------- normalisation


def _integrate(prior, lo, hi, breaks=()):
    """∫ exp(log_prob) over [lo, hi] in float64, split at ``breaks``."""
    with jax.enable_x64(True):
        f = jax.jit(prior.log_prob)
        dens = lambda t: float(np.exp(f(t)))
        edges = [lo, *breaks, hi]
        return sum(
            integrate.quad(dens, a, b, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        )


@pytest.mark.parametrize(
    "prior, lo, hi, breaks",
    [
        (priors.Normal(0.0, 1.0), -np.inf, np.inf, ()),
        (priors.Normal(-3.2, 0.4), -np.inf, np.inf, (-3.2,)),
        (priors.Normal(7.0, 12.0), -np.inf, np.inf, (7.0,)),
        (priors.Gamma(2.5, 1.7), 0.0, np.inf, (1.0,)),
        (priors.Gamma(0.6, 3.0), 0.0, np.inf, (1.0,)),
        (priors.Gamma(30.0, 0.5), 0.0, np.inf, (60.0,)),
        (priors.InverseGamma(3.0, 2.0), 0.0, np.inf, (1.0,)),
        (priors.InverseGamma(1.2, 0.3), 0.0, np.inf, (0.25,)),
        (priors.Beta(2.0, 5.0), 0.0, 1.0, ()),
        (priors.Beta(0.7, 0.8), 0.0, 1.0, (0.5,)),
        (priors.Beta(40.0, 3.0), 0.0, 1.0, (0.9,)),
    ],
    ids=repr,
)
def test_scalar_priors_integrate_to_one(prior, lo, hi, breaks):
    """Each 1-D density is normalised: its integral over the support is 1 within 1e-6."""
    assert _integrate(prior, lo, hi, breaks) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("concentration", [[2.0, 3.5], [0.7, 1.5], 1.8])
def test_dirichlet_two_entries_integrates_to_one(concentration):
    """A 2-entry Dirichlet density of (t, 1 - t) integrates to 1 over t in [0, 1]."""
    prior = priors.Dirichlet(concentration)
    with jax.enable_x64(True):
        f = jax.jit(lambda t: prior.log_prob(jnp.stack([t, 1 - t])))
        dens = lambda t: float(np.exp(f(t)))
        total = sum(
            integrate.quad(dens, a, b, epsabs=1e-13, limit=200)[0] for a, b in [(0, 0.5), (0.5, 1)]
        )
    assert total == pytest.approx(1.0, abs=1e-6)


def test_dirichlet_three_entries_integrates_to_one():
    """A 3-entry Dirichlet density integrates to 1 over the 2-simplex (dblquad)."""
    prior = priors.Dirichlet([1.5, 2.0, 3.0])
    with jax.enable_x64(True):
        f = jax.jit(lambda s, t: prior.log_prob(jnp.stack([s, t, 1 - s - t])))
        total, _ = integrate.dblquad(
            lambda t, s: float(np.exp(f(s, t))),
            0.0,
            1.0,
            0.0,
            lambda s: 1.0 - s,
            epsabs=1e-10,
            epsrel=1e-10,
        )
    assert total == pytest.approx(1.0, abs=1e-6)


# --------------------------------------------------------------------------- broadcasting


@pytest.mark.parametrize("case", SCALAR_CASES)
def test_scalar_priors_are_elementwise_over_value_arrays(case):
    """A (3, N) value array against (N,) hypers gives scipy's (3, N) elementwise log densities."""
    rng = np.random.default_rng(11)
    prior, ref, x = CASES[case](rng)
    x = np.stack([x, rng.permutation(x), rng.permutation(x)])
    with jax.enable_x64(True):
        out = np.asarray(_lp(prior, jnp.asarray(x)))
    assert out.shape == (3, N)
    np.testing.assert_allclose(out, ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", SCALAR_CASES)
def test_scalar_hypers_broadcast_over_value_matrix(case):
    """Scalar hypers over a (2, N) value array give scipy's (2, N) elementwise log densities."""
    rng = np.random.default_rng(12)
    _, _, x = CASES[case](rng)
    x = np.stack([x, x[::-1]])
    prior, ref = {
        "normal": (priors.Normal(0.5, 2.0), lambda v: stats.norm.logpdf(v, 0.5, 2.0)),
        "gamma": (priors.Gamma(1.5, 2.0), lambda v: stats.gamma.logpdf(v, 1.5, scale=0.5)),
        "inverse_gamma": (
            priors.InverseGamma(3.0, 0.7),
            lambda v: stats.invgamma.logpdf(v, 3.0, scale=0.7),
        ),
        "beta": (priors.Beta(0.6, 2.0), lambda v: stats.beta.logpdf(v, 0.6, 2.0)),
    }[case]
    with jax.enable_x64(True):
        out = np.asarray(_lp(prior, jnp.asarray(x)))
    assert out.shape == (2, N)
    np.testing.assert_allclose(out, ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["dirichlet_vector", "dirichlet_scalar"])
def test_dirichlet_reduces_last_axis(case):
    """A (2, N/2, K) batch of probability vectors gives the (2, N/2) per-vector log densities."""
    prior, ref, x = CASES[case](np.random.default_rng(13))
    x = x.reshape(2, N // 2, -1)
    with jax.enable_x64(True):
        out = np.asarray(_lp(prior, jnp.asarray(x)))
    assert out.shape == (2, N // 2)
    np.testing.assert_allclose(out, ref(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", [K_VECTOR, K_SCALAR])
def test_dirichlet_scalar_concentration_adapts_to_length(k):
    """One scalar concentration serves vectors of any length K (scipy with alpha = c * ones(K))."""
    prior = priors.Dirichlet(2.2)
    x = np.random.default_rng(k).dirichlet(np.ones(k), size=N)
    with jax.enable_x64(True):
        out = np.asarray(_lp(prior, jnp.asarray(x)))
    np.testing.assert_allclose(out, _scipy_dirichlet(np.full(k, 2.2))(x), rtol=1e-10)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "prior, value, expected",
    [
        (priors.Normal(1.0, 2.0), 0.3, -(0.3 - 1.0) / 4.0),
        (priors.Gamma(2.5, 1.5), 0.7, 1.5 / 0.7 - 1.5),
        (priors.InverseGamma(3.0, 2.0), 0.8, -4.0 / 0.8 + 2.0 / 0.8**2),
        (priors.Beta(2.0, 3.0), 0.4, 1.0 / 0.4 - 2.0 / 0.6),
    ],
    ids=["normal", "gamma", "inverse_gamma", "beta"],
)
def test_gradient_in_value_matches_closed_form(prior, value, expected):
    """d log_prob / d value (used by the gradient M-step) equals the analytic score."""
    with jax.enable_x64(True):
        g = float(jax.jit(jax.grad(prior.log_prob))(jnp.asarray(value)))
    assert g == pytest.approx(expected, rel=1e-10)


# --------------------------------------------------------------------------- validation

_BAD_HYPERS = [
    (priors.Normal, {"loc": 0.0, "scale": 0.0}, "scale"),
    (priors.Normal, {"loc": 0.0, "scale": -1.0}, "scale"),
    (priors.Normal, {"loc": 0.0, "scale": np.inf}, "scale"),
    (priors.Normal, {"loc": 0.0, "scale": np.nan}, "scale"),
    (priors.Normal, {"loc": np.nan, "scale": 1.0}, "loc"),
    (priors.Normal, {"loc": -np.inf, "scale": 1.0}, "loc"),
    (priors.Normal, {"loc": 0.0, "scale": [1.0, -2.0]}, "scale"),
    (priors.Gamma, {"concentration": 0.0, "rate": 1.0}, "concentration"),
    (priors.Gamma, {"concentration": -2.0, "rate": 1.0}, "concentration"),
    (priors.Gamma, {"concentration": np.nan, "rate": 1.0}, "concentration"),
    (priors.Gamma, {"concentration": 2.0, "rate": 0.0}, "rate"),
    (priors.Gamma, {"concentration": 2.0, "rate": -1.0}, "rate"),
    (priors.Gamma, {"concentration": 2.0, "rate": np.inf}, "rate"),
    (priors.InverseGamma, {"concentration": -1.0, "scale": 1.0}, "concentration"),
    (priors.InverseGamma, {"concentration": np.inf, "scale": 1.0}, "concentration"),
    (priors.InverseGamma, {"concentration": 2.0, "scale": 0.0}, "scale"),
    (priors.InverseGamma, {"concentration": 2.0, "scale": np.nan}, "scale"),
    (priors.Beta, {"a": 0.0, "b": 1.0}, "a"),
    (priors.Beta, {"a": -0.5, "b": 1.0}, "a"),
    (priors.Beta, {"a": np.nan, "b": 1.0}, "a"),
    (priors.Beta, {"a": 1.0, "b": 0.0}, "b"),
    (priors.Beta, {"a": 1.0, "b": np.inf}, "b"),
    (priors.Dirichlet, {"concentration": 0.0}, "concentration"),
    (priors.Dirichlet, {"concentration": [1.0, -1.0, 2.0]}, "concentration"),
    (priors.Dirichlet, {"concentration": [1.0, np.nan]}, "concentration"),
    (priors.Dirichlet, {"concentration": np.inf}, "concentration"),
]


@pytest.mark.parametrize(
    "cls, kwargs, name", _BAD_HYPERS, ids=[f"{c.__name__}-{k}" for c, k, _ in _BAD_HYPERS]
)
def test_invalid_hyper_parameters_raise_naming_the_argument(cls, kwargs, name):
    """Zero, negative, nan or inf hyper-parameters raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=rf"\b{name} must be"):
        cls(**kwargs)


def test_dirichlet_rejects_matrix_concentration():
    """A 2-D Dirichlet concentration raises ValueError naming ``concentration``."""
    with pytest.raises(ValueError, match=r"concentration must be a scalar or a vector"):
        priors.Dirichlet(np.ones((2, 3)))


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (priors.Normal, {"loc": -1e6, "scale": 1e-8}),
        (priors.Gamma, {"concentration": 1e-3, "rate": 1e4}),
        (priors.InverseGamma, {"concentration": [0.1, 50.0], "scale": 1e-3}),
        (priors.Beta, {"a": 1e-4, "b": 1e4}),
        (priors.Dirichlet, {"concentration": [0.01, 1.0, 100.0]}),
    ],
)
def test_valid_extreme_hyper_parameters_are_accepted(cls, kwargs):
    """Small or large, but finite and positive, hyper-parameters are stored unchanged."""
    prior = cls(**kwargs)
    for key, value in kwargs.items():
        np.testing.assert_array_equal(getattr(prior, key), np.asarray(value, np.float64))


@pytest.mark.parametrize(
    "prior, value, ref",
    [
        (priors.Gamma(2.0, 1.0), -1.0, stats.gamma.logpdf(-1.0, 2.0)),
        (priors.InverseGamma(2.0, 1.0), 0.0, stats.invgamma.logpdf(0.0, 2.0)),
        (priors.InverseGamma(2.0, 1.0), -2.0, stats.invgamma.logpdf(-2.0, 2.0)),
        (priors.Beta(2.0, 2.0), 1.5, stats.beta.logpdf(1.5, 2.0, 2.0)),
        (priors.Beta(2.0, 2.0), -0.1, stats.beta.logpdf(-0.1, 2.0, 2.0)),
    ],
)
def test_outside_the_support_is_minus_inf_like_scipy(prior, value, ref):
    """Outside the support the log density is -inf (scipy's answer), never nan."""
    assert ref == -np.inf
    assert float(prior.log_prob(value)) == -np.inf
