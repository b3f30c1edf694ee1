"""jaxem.constraints: bijections, support checks and constraint-tree broadcasting.

References are NumPy/SciPy closed forms (exp/log, expit/logit, additive
log-ratio softmax, Cholesky) and central finite differences; no jaxem code is
used as a reference.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import expit, logit, softmax

from jaxem import constraints

C = constraints

# ----------------------------------------------------------------------------- references


def _random_pd(rng, shape):
    """Well-conditioned symmetric positive-definite matrices of ``shape`` (..., d, d)."""
    d = shape[-1]
    a = rng.standard_normal(shape)
    return a @ np.swapaxes(a, -1, -2) / d + 0.5 * np.eye(d)


def _np_alr(v):
    """Additive log-ratio: the simplex's unconstrained coordinates."""
    return np.log(v[..., :-1]) - np.log(v[..., -1:])


def _np_simplex(u):
    """softmax([u, 0]) along the last axis."""
    return softmax(np.concatenate([u, np.zeros(u.shape[:-1] + (1,))], -1), axis=-1)


def _np_chol_param(v):
    """Cholesky factor with a log diagonal and a zero strict upper triangle."""
    chol = np.linalg.cholesky(v)
    d = v.shape[-1]
    return (
        np.tril(chol, -1) + np.eye(d) * np.log(np.diagonal(chol, axis1=-2, axis2=-1))[..., None, :]
    )


def _np_pd(u):
    """L @ L.T with L = strict lower triangle of u plus exp(diagonal of u)."""
    d = u.shape[-1]
    chol = np.tril(u, -1) + np.eye(d) * np.exp(np.diagonal(u, axis1=-2, axis2=-1))[..., None, :]
    return chol @ np.swapaxes(chol, -1, -2)


# (name, constraint, sampler of valid values, NumPy to_unconstrained reference)
VALID = [
    ("real-(3,)", C.real, lambda r: r.standard_normal(3) * 5, lambda v: v),
    ("positive-(3,)", C.positive, lambda r: r.lognormal(0, 2, 3), np.log),
    ("positive-(2,4)", C.positive, lambda r: r.lognormal(0, 2, (2, 4)), np.log),
    ("unit_interval-(5,)", C.unit_interval, lambda r: r.uniform(0.01, 0.99, 5), logit),
    ("unit_interval-(2,3)", C.unit_interval, lambda r: r.uniform(0.01, 0.99, (2, 3)), logit),
    ("simplex-(5,)", C.simplex, lambda r: r.dirichlet(np.full(5, 2.0)), _np_alr),
    ("simplex-(4,3)", C.simplex, lambda r: r.dirichlet(np.full(3, 2.0), 4), _np_alr),
    ("pd-(4,4)", C.positive_definite, lambda r: _random_pd(r, (4, 4)), _np_chol_param),
    ("pd-(2,3,3)", C.positive_definite, lambda r: _random_pd(r, (2, 3, 3)), _np_chol_param),
]
VALID_IDS = [v[0] for v in VALID]

# float64 and float32 tolerances for round trips.
TOL = {"float64": {"rtol": 1e-12, "atol": 1e-12}, "float32": {"rtol": 2e-5, "atol": 2e-6}}


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name, c, sample, ref_unc", VALID, ids=VALID_IDS)
def test_round_trip_recovers_valid_values(name, c, sample, ref_unc, dtype):
    """to_constrained(to_unconstrained(v)) == v for valid random (batched) values."""
    v = sample(np.random.default_rng(len(name))).astype(dtype)
    with jax.enable_x64(dtype == "float64"):
        back = jax.jit(lambda x: c.to_constrained(c.to_unconstrained(x)))(jnp.asarray(v))
        assert back.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.asarray(back), v, **TOL[dtype])


@pytest.mark.parametrize("name, c, sample, ref_unc", VALID, ids=VALID_IDS)
def test_to_unconstrained_matches_numpy_reference(name, c, sample, ref_unc):
    """to_unconstrained is log / logit / additive log-ratio / log-diagonal Cholesky (float64)."""
    v = sample(np.random.default_rng(len(name) + 1))
    with jax.enable_x64(True):
        u = np.asarray(jax.jit(c.to_unconstrained)(jnp.asarray(v)))
    expected = ref_unc(v)
    assert u.shape == expected.shape
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "c, shape",
    [
        (C.positive, (2, 4)),
        (C.unit_interval, (5,)),
        (C.simplex, (4, 2)),
        (C.positive_definite, (2, 3, 3)),
    ],
    ids=["positive", "unit_interval", "simplex", "positive_definite"],
)
def test_unconstrained_round_trip_is_identity(c, shape):
    """to_unconstrained(to_constrained(u)) == u: the map is a bijection (PD: lower triangle)."""
    u = np.random.default_rng(3).standard_normal(shape)
    if c is C.positive_definite:
        u = np.tril(u)  # the strict upper triangle is unused
    with jax.enable_x64(True):
        back = jax.jit(lambda x: c.to_unconstrained(c.to_constrained(x)))(jnp.asarray(u))
    np.testing.assert_allclose(np.asarray(back), u, rtol=1e-10, atol=1e-12)


def test_positive_definite_ignores_strict_upper_triangle():
    """The strict upper triangle of u does not change the PD value (as documented)."""
    rng = np.random.default_rng(4)
    u = rng.standard_normal((3, 3))
    u2 = u + np.triu(rng.standard_normal((3, 3)), 1)
    with jax.enable_x64(True):
        f = jax.jit(C.positive_definite.to_constrained)
        a, b = np.asarray(f(jnp.asarray(u))), np.asarray(f(jnp.asarray(u2)))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, _np_pd(np.tril(u)), rtol=1e-12)


def test_unit_interval_endpoints_map_to_finite_values():
    """0 and 1 (in the support) map to finite unconstrained values that come back within eps."""
    with jax.enable_x64(True):
        u = jax.jit(C.unit_interval.to_unconstrained)(jnp.array([0.0, 1.0]))
        back = np.asarray(jax.jit(C.unit_interval.to_constrained)(u))
    assert np.all(np.isfinite(np.asarray(u)))
    np.testing.assert_allclose(back, [0.0, 1.0], atol=4 * np.finfo(np.float64).eps)


def test_simplex_with_a_zero_entry_maps_to_finite_values():
    """A probability vector with a zero entry has finite coordinates and round-trips."""
    v = np.array([[0.0, 0.25, 0.75], [0.5, 0.5, 0.0]])
    with jax.enable_x64(True):
        u = jax.jit(C.simplex.to_unconstrained)(jnp.asarray(v))
        back = np.asarray(jax.jit(C.simplex.to_constrained)(u))
    assert np.all(np.isfinite(np.asarray(u)))
    np.testing.assert_allclose(back, v, atol=1e-12)


# ----------------------------------------------------------------------------- support (hypothesis)

_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
_to_constrained = {
    c.name: jax.jit(c.to_constrained)
    for c in (C.positive, C.unit_interval, C.simplex, C.positive_definite)
}


@_SETTINGS
@given(u=arrays(np.float64, (2, 3), elements=st.floats(-30, 30)))
def test_positive_lands_in_support(u):
    """Any u in [-30, 30] maps (float32) to exp(u) > 0, which check accepts."""
    v = np.asarray(_to_constrained["positive"](jnp.asarray(u, jnp.float32)))
    assert np.all(v > 0)
    assert C.positive.check(v)
    np.testing.assert_allclose(v, np.exp(u.astype(np.float32).astype(np.float64)), rtol=2e-6)


@_SETTINGS
@given(u=arrays(np.float64, (2, 3), elements=st.floats(-30, 30)))
def test_unit_interval_lands_in_support(u):
    """Any u in [-30, 30] maps (float32) to expit(u) in [0, 1], which check accepts."""
    v = np.asarray(_to_constrained["unit_interval"](jnp.asarray(u, jnp.float32)))
    assert np.all((v >= 0) & (v <= 1))
    assert C.unit_interval.check(v)
    expected = expit(u.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(v, expected, rtol=2e-6, atol=1e-7)


@_SETTINGS
@given(u=arrays(np.float64, (4, 2), elements=st.floats(-30, 30)))
def test_simplex_lands_in_support(u):
    """Any (4, 2) u in [-30, 30] maps (float32) to 4 rows of 3 non-negative entries summing to 1."""
    v = np.asarray(_to_constrained["simplex"](jnp.asarray(u, jnp.float32)))
    assert v.shape == (4, 3)
    assert np.all(v >= 0)
    np.testing.assert_allclose(v.sum(-1), 1.0, atol=1e-6)
    assert C.simplex.check(v)
    expected = _np_simplex(u.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(v, expected, rtol=1e-5, atol=1e-7)


@_SETTINGS
@given(u=arrays(np.float64, (2, 3, 3), elements=st.floats(-3, 3)))
def test_positive_definite_lands_in_support(u):
    """Any (2, 3, 3) u in [-3, 3] maps (float64) to symmetric matrices with positive eigenvalues."""
    with jax.enable_x64(True):
        v = np.asarray(_to_constrained["positive_definite"](jnp.asarray(u)))
    np.testing.assert_array_equal(v, np.swapaxes(v, -1, -2))
    assert np.all(np.linalg.eigvalsh(v) > 0)
    assert C.positive_definite.check(v)
    np.testing.assert_allclose(v, _np_pd(u), rtol=1e-12, atol=1e-12)


@_SETTINGS
@given(u=arrays(np.float64, (3,), elements=st.floats(-1e6, 1e6)))
def test_real_is_the_identity(u):
    """real maps any finite u to itself, both ways, and check accepts it."""
    with jax.enable_x64(True):
        v = np.asarray(C.real.to_constrained(jnp.asarray(u)))
        w = np.asarray(C.real.to_unconstrained(jnp.asarray(u)))
    np.testing.assert_array_equal(v, u)
    np.testing.assert_array_equal(w, u)
    assert C.real.check(v)


# ----------------------------------------------------------------------------- check

_PD = _random_pd(np.random.default_rng(0), (3, 3))
_NONSYM = _PD.copy()
_NONSYM[0, 1] += 0.1
_ROWS = np.random.default_rng(1).dirichlet(np.ones(3), 4)
_BAD_ROWS = _ROWS.copy()
_BAD_ROWS[2] *= 0.9

CHECKS = [
    ("real-finite", C.real, np.array([1.0, -2.0, 1e30]), True),
    ("real-nan", C.real, np.array([1.0, np.nan]), False),
    ("real-inf", C.real, np.array([np.inf]), False),
    ("positive-ok", C.positive, np.array([1e-30, 0.5, 3e10]), True),
    ("positive-negative", C.positive, np.array([1.0, -1.0]), False),
    ("positive-zero", C.positive, np.array([0.0, 1.0]), False),
    ("positive-nan", C.positive, np.array([np.nan]), False),
    ("positive-inf", C.positive, np.array([np.inf]), False),
    ("unit-ok", C.unit_interval, np.array([0.0, 0.3, 1.0]), True),
    ("unit-above-one", C.unit_interval, np.array([0.5, 1.1]), False),
    ("unit-negative", C.unit_interval, np.array([-0.1]), False),
    ("unit-nan", C.unit_interval, np.array([np.nan]), False),
    ("simplex-vector", C.simplex, np.array([0.2, 0.3, 0.5]), True),
    ("simplex-rows", C.simplex, _ROWS, True),
    ("simplex-zero-entry", C.simplex, np.array([0.0, 1.0]), True),
    ("simplex-row-sums-0.9", C.simplex, _BAD_ROWS, False),
    ("simplex-sum-1.1", C.simplex, np.array([0.5, 0.6]), False),
    ("simplex-negative-entry", C.simplex, np.array([1.2, -0.2]), False),
    ("simplex-scalar", C.simplex, np.array(1.0), False),
    ("pd-ok", C.positive_definite, _PD, True),
    ("pd-batch", C.positive_definite, np.stack([_PD, 2 * _PD + np.eye(3)]), True),
    ("pd-nonsymmetric", C.positive_definite, _NONSYM, False),
    ("pd-indefinite", C.positive_definite, np.diag([1.0, -1.0, 2.0]), False),
    ("pd-symmetric-indefinite", C.positive_definite, np.array([[1.0, 2.0], [2.0, 1.0]]), False),
    ("pd-singular", C.positive_definite, np.zeros((2, 2)), False),
    ("pd-batch-one-bad", C.positive_definite, np.stack([_PD, -_PD]), False),
    ("pd-non-square", C.positive_definite, np.ones((2, 3)), False),
    ("pd-vector", C.positive_definite, np.ones(3), False),
    ("pd-nan", C.positive_definite, np.full((2, 2), np.nan), False),
]


@pytest.mark.parametrize("name, c, value, expected", CHECKS, ids=[c[0] for c in CHECKS])
def test_check_accepts_valid_and_rejects_invalid(name, c, value, expected):
    """check is True exactly on the support (by construction of each value)."""
    result = c.check(value)
    assert isinstance(result, bool)
    assert result is expected


def test_check_accepts_jax_arrays():
    """check works on a JAX array as well as a NumPy one."""
    assert C.positive.check(jnp.array([0.5, 2.0])) is True
    assert C.positive.check(jnp.array([0.5, -2.0])) is False
    assert C.simplex.check(jnp.array([0.25, 0.75])) is True


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    "c, shape",
    [
        (C.real, (3,)),
        (C.positive, (3,)),
        (C.unit_interval, (2, 3)),
        (C.simplex, (4, 2)),
        (C.positive_definite, (2, 3, 3)),
    ],
    ids=["real", "positive", "unit_interval", "simplex", "positive_definite"],
)
def test_gradient_through_to_constrained_is_finite_and_correct(c, shape):
    """grad of a smooth function of to_constrained(u) is finite and matches central differences."""
    rng = np.random.default_rng(5)
    u = rng.standard_normal(shape)
    with jax.enable_x64(True):
        v_shape = jax.eval_shape(c.to_constrained, jnp.asarray(u)).shape
        w = jnp.asarray(rng.standard_normal(v_shape))
        f = jax.jit(lambda x: jnp.sum(w * jnp.sin(c.to_constrained(x))))
        g = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(u)))
        assert np.all(np.isfinite(g))
        h = 1e-6
        fd = np.zeros_like(u)
        for idx in np.ndindex(u.shape):
            e = np.zeros_like(u)
            e[idx] = h
            fd[idx] = (float(f(jnp.asarray(u + e))) - float(f(jnp.asarray(u - e)))) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    if c is C.positive_definite:  # the unused strict upper triangle gets zero gradient
        np.testing.assert_array_equal(np.triu(g, 1), 0.0)


# ----------------------------------------------------------------------------- broadcast


class Params(NamedTuple):
    weights: Any
    comp: Any


def _params():
    return Params(
        weights=np.array([0.2, 0.3, 0.5]),
        comp={"mean": np.array([-1.0, 0.0, 2.0]), "var": np.array([0.5, 1.0, 4.0])},
    )


def test_broadcast_none_is_all_real():
    """None gives ``real`` for every leaf of the parameter tree."""
    params = {"a": np.zeros(2), "b": {"c": np.ones(3), "d": 1.0}}
    assert C.broadcast(None, params) == {"a": C.real, "b": {"c": C.real, "d": C.real}}
    assert C.broadcast(None, _params()) == Params(C.real, {"mean": C.real, "var": C.real})


def test_broadcast_single_constraint_covers_every_leaf():
    """A single constraint applies to every leaf below it."""
    params = {"a": np.ones(2), "b": np.ones(3)}
    assert C.broadcast(C.positive, params) == {"a": C.positive, "b": C.positive}


def test_broadcast_dict_fills_missing_keys_with_real():
    """A dict naming only some keys leaves the others ``real``."""
    params = {"p": np.array([0.3, 0.6]), "mu": np.zeros(2), "s": np.ones(2)}
    out = C.broadcast({"p": C.unit_interval, "s": C.positive}, params)
    assert out == {"p": C.unit_interval, "mu": C.real, "s": C.positive}


def test_broadcast_dict_names_namedtuple_fields():
    """A dict can name the fields of a NamedTuple; the result is that NamedTuple."""
    out = C.broadcast({"weights": C.simplex}, _params())
    assert type(out) is Params
    assert out == Params(C.simplex, {"mean": C.real, "var": C.real})


@pytest.mark.parametrize(
    "tree, params, bad",
    [
        ({"p": C.unit_interval, "q": C.positive}, {"p": np.ones(2)}, "q"),
        ({"wieghts": C.simplex}, _params(), "wieghts"),
        (Params(C.simplex, {"vra": C.positive}), _params(), "vra"),
    ],
    ids=["dict", "namedtuple", "nested"],
)
def test_broadcast_unknown_key_raises_naming_it(tree, params, bad):
    """A constraint for a parameter that does not exist raises ValueError naming it."""
    with pytest.raises(ValueError, match=f"'{bad}'"):
        C.broadcast(tree, params)


def test_broadcast_structure_mismatch_raises():
    """A tuple prefix of the wrong length is a ValueError, not a silent partial match."""
    with pytest.raises(ValueError, match="pytree prefix"):
        C.broadcast((C.simplex,), _params())


@pytest.mark.parametrize(
    "tree",
    [
        Params(C.simplex, {"var": C.positive}),
        (C.simplex, {"var": C.positive}),
        {"weights": C.simplex, "comp": {"var": C.positive}},
    ],
    ids=["namedtuple-prefix", "tuple-prefix", "dict-prefix"],
)
def test_broadcast_nested_prefix(tree):
    """A nested prefix (NamedTuple, tuple or dict of constraint and dict) expands per leaf."""
    leaves = C.broadcast(tree, _params())
    assert type(leaves) is Params
    assert leaves == Params(C.simplex, {"mean": C.real, "var": C.positive})


def test_tree_maps_use_each_leaf_bijection():
    """to_unconstrained/to_constrained over a broadcast tree apply each leaf's own map."""
    params = _params()
    leaves = C.broadcast(Params(C.simplex, {"var": C.positive}), params)
    with jax.enable_x64(True):
        u = jax.jit(lambda p: C.to_unconstrained(leaves, p))(params)
        back = jax.jit(lambda x: C.to_constrained(leaves, x))(u)
    assert type(u) is Params and type(back) is Params
    np.testing.assert_allclose(np.asarray(u.weights), _np_alr(params.weights), rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(u.comp["mean"]), params.comp["mean"])
    np.testing.assert_allclose(np.asarray(u.comp["var"]), np.log(params.comp["var"]), rtol=1e-12)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
