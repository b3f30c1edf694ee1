"""The two-coin example (Do & Batzoglou 2008) against a float64 NumPy EM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxem as em
from jaxem import constraints, demos

HEADS = demos.COIN_HEADS


def numpy_coin_em(p, n_iter):
    """Textbook EM for two coins chosen with probability 1/2; exact M-step."""
    p = np.array(p, np.float64)
    for _ in range(n_iter):
        lik = stats.binom.pmf(HEADS[:, None], 10, p[None, :])
        r = lik / lik.sum(1, keepdims=True)
        p = (r * HEADS[:, None]).sum(0) / (10 * r.sum(0))
    return p


@pytest.fixture(scope="module")
def coin():
    return demos.coin_model()


@pytest.mark.parametrize("n_iter", [1, 2, 10])
def test_gradient_m_step_reproduces_exact_em_iterates(coin, n_iter):
    """The L-BFGS M-step must reach the maximiser: iterates equal exact EM's."""
    res = em.fit(coin, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=n_iter, tol=0.0)
    ref = numpy_coin_em([0.6, 0.5], n_iter)
    np.testing.assert_allclose(np.asarray(res.params["p"]), ref, rtol=0, atol=2e-5)
    assert res.n_iter == n_iter


def test_textbook_values(coin):
    """Do & Batzoglou's figure: 0.71/0.58 after one iteration, 0.80/0.52 after ten."""
    one = em.fit(coin, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=1, tol=0.0)
    ten = em.fit(coin, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=10, tol=0.0)
    np.testing.assert_allclose(np.round(np.asarray(one.params["p"]), 2), [0.71, 0.58])
    np.testing.assert_allclose(np.round(np.asarray(ten.params["p"]), 2), [0.80, 0.52])


def test_history_is_the_log_likelihood_of_each_iterate(coin):
    """history[t] is the objective at the t-th iterate, checked with scipy."""
    res = em.fit(coin, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=5, tol=0.0)
    for t, value in enumerate(res.history):
        p = numpy_coin_em([0.6, 0.5], t)
        ref = np.log(0.5 * stats.binom.pmf(HEADS[:, None], 10, p[None, :]).sum(1)).sum()
        np.testing.assert_allclose(value, ref, rtol=2e-6)
    assert np.all(np.diff(res.history) >= 0)


def test_user_closed_form_m_step_matches_gradient_path(coin):
    """A user-supplied m_step gives the same fit as the gradient M-step."""

    def m_step(params, x, resp, w):
        wr = resp * w[:, None]
        return {"p": (wr * x[:, None]).sum(0) / (10 * wr.sum(0))}

    closed = em.Model(
        demos.coin_log_joint, constraints={"p": constraints.unit_interval}, m_step=m_step
    )
    a = em.fit(closed, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=10, tol=0.0)
    b = em.fit(coin, HEADS, init={"p": jnp.array([0.6, 0.5])}, max_iter=10, tol=0.0)
    np.testing.assert_allclose(np.asarray(a.params["p"]), np.asarray(b.params["p"]), atol=2e-5)
    np.testing.assert_allclose(a.history, b.history, rtol=1e-6)


def test_float64(coin):
    """Under jax_enable_x64 the fit runs in float64 and matches NumPy to 1e-9."""
    with jax.enable_x64(True):
        res = em.fit(coin, HEADS, init={"p": np.array([0.6, 0.5])}, max_iter=10, tol=0.0)
        assert res.params["p"].dtype == jnp.float64
        np.testing.assert_allclose(
            np.asarray(res.params["p"]), numpy_coin_em([0.6, 0.5], 10), rtol=0, atol=1e-9
        )
