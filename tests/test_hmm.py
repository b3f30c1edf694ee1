"""Hidden Markov models: forward–backward, Viterbi and Baum–Welch against float64 NumPy references.

References (tests/scripts/numpy_hmm.py): a log-space forward–backward written
from Rabiner (1989), independent of jaxem's scaled filter; Viterbi; and a
diagonal-Gaussian Baum–Welch. The gradient of the log normaliser (Eisner 2016)
is a third, autodiff, reference for the marginals and transition counts.
"""

import functools
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxem as em
from jaxem import priors
from jaxem.forward_backward import (
    forward_backward,
    forward_backward_blocked,
    forward_backward_log,
    forward_backward_parallel,
    log_normalizer,
    viterbi,
)

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import numpy_hmm as ref  # noqa: E402

sys.path.pop(0)


@np.errstate(divide="ignore")  # log 0 = -inf: a structural zero
def _logs(*arrays):
    return [np.log(a) for a in arrays]


def _chain(rng, k, t_len, zeros=False):
    pi = rng.dirichlet(np.ones(k))
    a = rng.dirichlet(np.ones(k), k)
    if zeros:  # left-to-right: no way back
        a = np.triu(a)
        a /= a.sum(1, keepdims=True)
        pi = np.eye(k)[0]
    return pi, a, rng.normal(0, 3, (t_len, k))


def _blocked(*args):
    return forward_backward_blocked(
        *args, block=7
    )  # 58 transitions: 9 blocks, the last part padding


VARIANTS = {
    "log": forward_backward_log,
    "scaled": forward_backward,
    "parallel": forward_backward_parallel,
    "blocked": _blocked,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("zeros", [False, True])
def test_forward_backward_equals_log_space_numpy_and_the_gradient_of_log_z(zeros, variant):
    rng = np.random.default_rng(0)
    pi, a, log_e = _chain(rng, 4, 50, zeros)
    log_pi, log_a = _logs(pi, a)
    ll, gamma, xi = ref.forward_backward(log_pi, log_a, log_e)
    pad = np.concatenate([log_e, rng.normal(0, 3, (9, 4))])  # 9 padding steps
    mask = np.r_[np.ones(50, bool), np.zeros(9, bool)]
    with jax.enable_x64(True):
        fb = jax.jit(VARIANTS[variant])
        out = fb(jnp.asarray(log_pi), jnp.asarray(a), jnp.asarray(pad), mask)
        np.testing.assert_allclose(out.log_likelihood, ll, rtol=1e-13)
        np.testing.assert_allclose(out.marginals[:50], gamma, atol=1e-12)
        np.testing.assert_array_equal(out.marginals[50:], 0)
        np.testing.assert_allclose(out.transitions, xi, atol=1e-11)
        if not zeros:  # log Z's gradient is nan where a whole column of log A is -inf
            grads = jax.grad(log_normalizer, argnums=(1, 2))(
                jnp.asarray(log_pi), jnp.asarray(log_a), jnp.asarray(pad), mask
            )
            np.testing.assert_allclose(grads[0], xi, atol=1e-11)
            np.testing.assert_allclose(grads[1][:50], gamma, atol=1e-12)
            np.testing.assert_array_equal(grads[1][50:], 0)


@functools.cache
def _long_chain():
    pi, a, log_e = _chain(np.random.default_rng(1), 3, 2000)
    return (pi, a, log_e), ref.forward_backward(np.log(pi), np.log(a), log_e)


@pytest.mark.parametrize(
    "fb", [forward_backward_log, forward_backward, forward_backward_parallel, _blocked]
)
def test_forward_backward_float32_stays_finite_on_long_sequences(fb):
    (pi, a, log_e), (ll, gamma, _) = _long_chain()
    out = jax.jit(fb)(
        jnp.log(jnp.asarray(pi, jnp.float32)),
        jnp.asarray(a, jnp.float32),
        jnp.asarray(log_e, jnp.float32),
        np.ones(2000, bool),
    )
    assert out.log_likelihood.dtype == jnp.float32
    np.testing.assert_allclose(out.log_likelihood, ll, rtol=1e-5)
    np.testing.assert_allclose(out.marginals, gamma, atol=2e-4)


@pytest.mark.parametrize("zeros", [False, True])
def test_viterbi_equals_numpy(zeros):
    rng = np.random.default_rng(2)
    pi, a, log_e = _chain(rng, 5, 80, zeros)
    log_pi, log_a = _logs(pi, a)
    path, score = ref.viterbi(log_pi, log_a, log_e)
    pad = np.concatenate([log_e, np.zeros((4, 5))])
    mask = np.r_[np.ones(80, bool), np.zeros(4, bool)]
    with jax.enable_x64(True):
        args = (jnp.asarray(log_pi), jnp.asarray(log_a), jnp.asarray(pad), mask)
        ours, best = jax.jit(viterbi)(*args)
    np.testing.assert_array_equal(np.asarray(ours)[:80], path)
    np.testing.assert_array_equal(np.asarray(ours)[80:], path[-1])
    np.testing.assert_allclose(best, score, rtol=1e-13)


# ------------------------------------------------------------------ Baum–Welch
def _gaussian_data(seed=3, lengths=(120, 75, 200, 31)):
    """Three well-separated 2-D diagonal Gaussian states, sequences of unequal lengths."""
    rng = np.random.default_rng(seed)
    a = np.array([[0.9, 0.08, 0.02], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    means = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]])
    seqs = []
    for t_len in lengths:
        z = [rng.integers(3)]
        for _ in range(t_len - 1):
            z.append(rng.choice(3, p=a[z[-1]]))
        seqs.append(means[z] + rng.normal(0, 1.0, (t_len, 2)))
    return seqs


SEQS = _gaussian_data()
LENGTHS = [len(s) for s in SEQS]
X = np.concatenate(SEQS)
HMM = em.HMM(em.MultivariateNormal("diag", reg_covar=0.0), 3)


def _start():
    return em.HMMParams(
        initial=np.array([0.5, 0.3, 0.2]),
        transition=np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]]),
        emissions=em.MultivariateNormalParams(
            mean=np.array([[0.5, 0.5], [2.0, 2.0], [-1.0, 3.0]]), cov=np.ones((3, 2))
        ),
    )


def _numpy_fit(n_iter, weights=None):
    s = _start()
    return ref.baum_welch_gaussian(
        SEQS, s.initial, s.transition, s.emissions.mean, s.emissions.cov, n_iter, weights
    )


def _assert_params(params, expected, rtol):
    pi, a, means, variances = expected
    np.testing.assert_allclose(params.initial, pi, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(params.transition, a, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(params.emissions.mean, means, rtol=rtol)
    np.testing.assert_allclose(params.emissions.cov, variances, rtol=rtol)


@pytest.mark.parametrize(
    "chunk_size, estep",
    [
        (None, "log"),
        (2, "log"),
        (None, "scaled"),
        pytest.param(None, "parallel", marks=pytest.mark.slow),
        pytest.param(None, "blocked", marks=pytest.mark.slow),
    ],
)
def test_baum_welch_equals_float64_numpy_with_unequal_lengths_and_weights(chunk_size, estep):
    w = np.array([1.0, 2.0, 0.5, 3.0])
    hmm = em.HMM(em.MultivariateNormal("diag", reg_covar=0.0), 3, estep=estep)
    with jax.enable_x64(True):
        res = em.fit(
            hmm, X, lengths=LENGTHS, init=_start(), max_iter=15, tol=0.0, chunk_size=chunk_size
        )
        weighted = em.fit(
            hmm,
            SEQS,  # a list of sequences is the same data
            init=_start(),
            max_iter=15,
            tol=0.0,
            sample_weight=w,
            chunk_size=chunk_size,
        )
    expected, lls = _numpy_fit(15)
    _assert_params(res.params, expected, rtol=1e-9)
    np.testing.assert_allclose(res.history[:15], lls, rtol=1e-12)
    _assert_params(weighted.params, _numpy_fit(15, w)[0], rtol=1e-9)
    assert np.all(np.diff(res.history) >= -1e-10 * abs(res.history[-1]))


def test_public_functions_are_the_chain_posteriors_concatenated():
    with jax.enable_x64(True):
        params = em.fit(HMM, X, lengths=LENGTHS, init=_start(), max_iter=3, tol=0.0).params
        resp = em.responsibilities(HMM, params, X, lengths=LENGTHS)
        path = em.predict(HMM, params, SEQS)
        ll = em.log_likelihood(HMM, params, X, lengths=LENGTHS)
        bic = em.bic(HMM, params, X, lengths=LENGTHS)
    log_pi, log_a = np.log(np.asarray(params.initial)), np.log(np.asarray(params.transition))
    means, cov = np.asarray(params.emissions.mean), np.asarray(params.emissions.cov)
    gammas, paths, total = [], [], 0.0
    for x in SEQS:
        lli, gamma, _ = ref.forward_backward(log_pi, log_a, ref.gaussian_log_e(x, means, cov))
        gammas.append(gamma)
        paths.append(ref.viterbi(log_pi, log_a, ref.gaussian_log_e(x, means, cov))[0])
        total += lli
    assert resp.shape == (X.shape[0], 3) and path.shape == (X.shape[0],)
    np.testing.assert_allclose(resp, np.concatenate(gammas), atol=1e-12)
    np.testing.assert_array_equal(path, np.concatenate(paths))
    np.testing.assert_allclose(ll, total, rtol=1e-13)
    n_obs = X.shape[0]
    p = 2 + 6 + 3 * 2 * 2  # initial, transition rows, means and variances
    assert em.n_parameters(HMM, params) == p
    assert bic == pytest.approx(-2 * total + p * np.log(n_obs), rel=1e-12)


def test_left_to_right_chain_that_leaves_a_state_forever_float32():
    """A state whose probability underflows and cannot be re-entered: log space keeps it.

    Data 0 / 5 / 0 in runs of 20 / 20 / 160 under a left-to-right chain with means
    (0, 5): after the fives, state 0 is e^-250 less likely than state 1 (below
    float32's range) yet explains the last 160 zeros. The float64 log normaliser
    is the reference.
    """
    x = np.r_[np.zeros(20), np.full(20, 5.0), np.zeros(160)]
    params = em.HMMParams(
        np.array([1.0, 0.0]), np.array([[0.95, 0.05], [0.0, 1.0]]),
        em.NormalParams(mean=np.array([0.0, 5.0]), var=np.ones(2)),
    )  # fmt: skip
    hmm = em.HMM(em.Normal(), 2)
    with jax.enable_x64(True):
        log_e = hmm.emission_log_prob(params.emissions, jnp.asarray(x)[None])[0]
        with np.errstate(divide="ignore"):
            ref_ll = float(log_normalizer(
                jnp.log(params.initial), jnp.log(params.transition), log_e, np.ones(200, bool)
            ))  # fmt: skip
    ll = float(em.log_likelihood(hmm, params, x))
    post = np.asarray(em.responsibilities(hmm, params, x))
    assert ll == pytest.approx(ref_ll, rel=1e-5)
    assert np.all(np.isfinite(post)) and np.allclose(post.sum(1), 1, rtol=1e-5)
    # The chain stays in state 0 through the fives (it cannot come back from 1).
    assert np.all(em.predict(hmm, params, x) == 0)


def test_fitted_zeros_are_not_structural_and_priors_see_the_support():
    """EM can drive an initial probability to 0 in float32: it is still a free parameter."""
    x = SEQS[2][:, 0]
    hmm = em.HMM(em.Normal(), 2, initial_prior=None)
    res = em.fit(hmm, x, key=jax.random.key(0), max_iter=20, tol=0.0)
    assert np.all(np.asarray(res.params.initial) > 0)
    assert em.n_parameters(hmm, res.params) == 1 + 2 + 4
    # A Dirichlet prior > 1 and a structural zero: the objective stays finite.
    prior = em.HMM(em.Normal(), 2, transition_prior=priors.Dirichlet(2.0))
    start = em.HMMParams(
        np.array([0.5, 0.5]), np.array([[0.9, 0.1], [0.0, 1.0]]),
        em.NormalParams(mean=np.array([-1.0, 3.0]), var=np.ones(2)),
    )  # fmt: skip
    res = em.fit(prior, x, init=start, max_iter=10, tol=0.0)
    assert np.isfinite(res.objective) and res.params.transition[1, 0] == 0
    assert np.all(np.diff(res.history) >= -1e-4 * abs(res.history[-1]))


def test_viterbi_float32_resolves_long_sequences_far_from_zero():
    rng = np.random.default_rng(8)
    pi, a, _ = _chain(rng, 3, 2)
    log_e = -300 + rng.normal(0, 0.3, (2000, 3))
    log_pi, log_a = _logs(pi, a)
    path, score = ref.viterbi(log_pi, log_a, log_e)
    ours, best = jax.jit(viterbi)(
        jnp.asarray(log_pi, jnp.float32), jnp.asarray(log_a, jnp.float32),
        jnp.asarray(log_e, jnp.float32), np.ones(2000, bool),
    )  # fmt: skip
    assert np.mean(np.asarray(ours) == path) > 0.999
    assert float(best) == pytest.approx(score, rel=1e-6)


def test_left_to_right_zeros_stay_zero_and_are_not_free():
    start = _start()
    start = start._replace(
        initial=np.array([1.0, 0.0, 0.0]),
        transition=np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]]),
    )
    seqs = [np.concatenate([s[s[:, 1] < 0.5], s[s[:, 1] >= 0.5]]) for s in SEQS]
    with jax.enable_x64(True):
        res = em.fit(HMM, seqs, init=start, max_iter=20, tol=0.0)
    t = np.asarray(res.params.transition)
    np.testing.assert_array_equal(t[np.asarray(start.transition) == 0], 0)
    np.testing.assert_array_equal(res.params.initial, [1.0, 0.0, 0.0])
    assert np.all(np.diff(res.history) >= -1e-10 * abs(res.history[-1]))
    # Initial [1, 0, 0]: nothing free. Transition rows with 1, 1 and 2 zeros: 1 + 1 + 0 free.
    assert em.n_parameters(HMM, res.params) == 0 + 2 + 12


@pytest.mark.slow
def test_squarem_and_restarts():
    with jax.enable_x64(True):
        plain = em.fit(HMM, X, lengths=LENGTHS, init=_start(), max_iter=300, tol=1e-10)
        fast = em.fit(
            HMM, X, lengths=LENGTHS, init=_start(), max_iter=300, tol=1e-10, accelerate="squarem"
        )
        many = em.fit(HMM, X, lengths=LENGTHS, key=jax.random.key(0), restarts=8, max_iter=300)
    assert fast.n_iter < plain.n_iter
    assert fast.objective == pytest.approx(plain.objective, rel=1e-9)
    assert np.all(np.diff(fast.history) >= -1e-10 * abs(fast.history[-1]))
    assert many.objective >= plain.objective - 1e-6 * abs(plain.objective)


def test_fixed_transitions_keep_their_values():
    with jax.enable_x64(True):
        free = em.fit(HMM, X, lengths=LENGTHS, init=_start(), max_iter=30, tol=0.0)
        held = em.fit(
            HMM, X, lengths=LENGTHS, init=_start(), max_iter=30, tol=0.0, fixed={"transition"}
        )
    np.testing.assert_array_equal(held.params.transition, _start().transition)
    assert np.all(np.diff(held.history) >= -1e-10 * abs(held.history[-1]))
    assert held.objective < free.objective
    assert em.n_parameters(HMM, held.params, fixed={"transition"}) == 2 + 12
    # Left-to-right and fixed: the fixed zeros are not subtracted a second time.
    ltr = _start()._replace(
        initial=np.array([1.0, 0.0, 0.0]),
        transition=np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]]),
    )
    assert em.n_parameters(HMM, ltr) == 0 + 2 + 12
    assert em.n_parameters(HMM, ltr, fixed={"transition"}) == 0 + 12
    assert em.n_parameters(HMM, ltr, fixed={"initial", "transition"}) == 12


def _casino():
    rng = np.random.default_rng(4)
    a = np.array([[0.95, 0.05], [0.1, 0.9]])
    faces = np.array([[1 / 6] * 6, [0.1] * 5 + [0.5]])
    z = [0]
    for _ in range(2999):
        z.append(rng.choice(2, p=a[z[-1]]))
    z = np.array(z)
    rolls = (rng.random(3000)[:, None] > np.cumsum(faces[z], axis=1)).sum(1)
    return a, faces, z, rolls


def test_occasionally_dishonest_casino():
    """Durbin et al. (1998), 3.2: a fair die and a loaded one (a six half the time)."""
    a, faces, z, rolls = _casino()
    hmm = em.HMM(em.Categorical(6), 2)
    start = em.HMMParams(  # Durbin's Baum–Welch: a sticky guess, a mild preference for sixes
        np.array([0.5, 0.5]),
        np.array([[0.9, 0.1], [0.1, 0.9]]),
        em.CategoricalParams(probs=np.array([[[1 / 6] * 6], [[0.15] * 5 + [0.25]]])),
    )
    with jax.enable_x64(True):
        res = em.fit(hmm, rolls[:, None], init=start, max_iter=2000, tol=1e-9)
        path = np.asarray(em.predict(hmm, res.params, rolls[:, None]))
        truth = em.HMMParams(np.array([1.0, 0.0]), a, em.CategoricalParams(faces[:, None]))
        at_truth = float(em.log_likelihood(hmm, truth, rolls[:, None]))
    np.testing.assert_allclose(res.params.transition, a, atol=0.04)
    np.testing.assert_allclose(res.params.emissions.probs[:, 0], faces, atol=0.04)
    assert res.log_likelihood >= at_truth  # the maximum-likelihood estimate
    # The decoded path beats always answering "fair" (the majority state).
    assert np.mean(path == z) > max(np.mean(z == 0), np.mean(z == 1)) + 0.05


@pytest.mark.slow
def test_casino_from_random_restarts():
    """The README's call: 8 random restarts reach the optimum of a sensible start."""
    a, faces, z, rolls = _casino()
    hmm = em.HMM(em.Categorical(6), 2)
    start = em.HMMParams(
        np.array([0.5, 0.5]),
        np.array([[0.9, 0.1], [0.1, 0.9]]),
        em.CategoricalParams(probs=np.array([[[1 / 6] * 6], [[0.15] * 5 + [0.25]]])),
    )
    guided = em.fit(hmm, rolls[:, None], init=start, max_iter=2000)
    random = em.fit(hmm, rolls[:, None], key=jax.random.key(0), restarts=8, max_iter=2000)
    assert random.objective >= guided.objective - 1e-4 * abs(guided.objective)
    assert np.sum(random.restart_objectives >= guided.objective - 1.0) >= 4


@pytest.mark.slow
def test_gradient_only_emissions_and_sampling():
    hmm = em.HMM(em.StudentT(), 2)
    params = em.HMMParams(
        jnp.array([0.5, 0.5]),
        jnp.array([[0.97, 0.03], [0.05, 0.95]]),
        em.StudentTParams(loc=jnp.array([-3.0, 3.0]), scale=jnp.ones(2), df=jnp.array([4.0, 8.0])),
    )
    x, z = hmm.sample(jax.random.key(0), params, 4000)
    assert x.shape == (4000,) and z.shape == (4000,)
    # The sampled chain's transition frequencies are the transition matrix.
    z = np.asarray(z)
    counts = np.zeros((2, 2))
    np.add.at(counts, (z[:-1], z[1:]), 1)
    np.testing.assert_allclose(counts / counts.sum(1, keepdims=True), params.transition, atol=0.02)
    start = params._replace(
        transition=jnp.array([[0.8, 0.2], [0.2, 0.8]]),
        emissions=params.emissions._replace(loc=jnp.array([-1.0, 1.0])),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        res = em.fit(hmm, np.asarray(x), init=start, max_iter=30)
    assert np.all(np.diff(res.history) >= -1e-4 * abs(res.history[-1]))
    np.testing.assert_allclose(res.params.emissions.loc, [-3.0, 3.0], atol=0.1)
    np.testing.assert_allclose(res.params.transition, params.transition, atol=0.02)


BAD = [
    (dict(lengths=[100, 100]), ValueError, "lengths sum to 200 but x has 426 rows"),
    (dict(lengths=[426.0]), TypeError, "lengths must be a 1-D array of integers"),
    (dict(lengths=[0, 426]), ValueError, "lengths must all be >= 1"),
    (dict(lengths=LENGTHS, labels=np.zeros(4)), ValueError, r"labels must have shape \(426,\)"),
    (dict(lengths=LENGTHS, labels=np.full(426, 3)), ValueError, r"labels must lie in \[0, 2\]"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD)
def test_bad_input_is_refused_before_tracing(kwargs, error, message):
    with pytest.raises(error, match=message):
        em.fit(HMM, X, init=_start(), **kwargs)


def test_labels_pin_states_at_some_steps():
    rng = np.random.default_rng(5)
    labels = np.where(rng.random(X.shape[0]) < 0.2, rng.integers(0, 3, X.shape[0]), -1)
    per_seq = np.split(labels, np.cumsum(LENGTHS)[:-1])
    with jax.enable_x64(True):
        res = em.fit(HMM, X, lengths=LENGTHS, labels=labels, init=_start(), max_iter=6, tol=0.0)
        chunked = em.fit(
            HMM, X, lengths=LENGTHS, labels=labels, init=_start(), max_iter=6, tol=0.0,
            chunk_size=3,
        )  # fmt: skip
    s = _start()
    expected, lls = ref.baum_welch_gaussian(
        SEQS, s.initial, s.transition, s.emissions.mean, s.emissions.cov, 6, labels=per_seq
    )
    _assert_params(res.params, expected, rtol=1e-9)
    _assert_params(chunked.params, expected, rtol=1e-9)
    np.testing.assert_allclose(res.history[:6], lls, rtol=1e-12)


def test_missing_observations_are_integrated_out():
    rng = np.random.default_rng(6)
    holes = [np.where(rng.random(x.shape) < 0.15, np.nan, x) for x in SEQS]
    holes[0][5] = np.nan  # a step with nothing observed
    with jax.enable_x64(True):
        res = em.fit(HMM, holes, init=_start(), max_iter=8, tol=0.0, missing="marginalize")
        ll = em.log_likelihood(HMM, res.params, holes, missing="marginalize")
    s = _start()
    expected, lls = ref.baum_welch_gaussian(
        holes, s.initial, s.transition, s.emissions.mean, s.emissions.cov, 8
    )
    _assert_params(res.params, expected, rtol=1e-9)
    np.testing.assert_allclose(res.history[:8], lls, rtol=1e-12)
    assert np.all(np.diff(res.history) >= -1e-10 * abs(res.history[-1]))
    assert np.isfinite(ll)
    with pytest.raises(ValueError, match="missing='marginalize'"):
        em.fit(HMM, holes, init=_start())


def test_lengths_are_for_sequence_models_only():
    with pytest.raises(TypeError, match="lengths= splits data into sequences"):
        em.fit(em.Mixture(em.Normal(), 2), X[:, 0], key=0, lengths=LENGTHS)
    with pytest.raises(ValueError, match="n_states must be >= 1"):
        em.HMM(em.Normal(), 0)
    with pytest.raises(TypeError, match="an instance"):
        em.HMM(em.Normal, 2)
    with pytest.raises(ValueError, match="estep must be one of"):
        em.HMM(em.Normal(), 2, estep="fast")
    one_step = [np.array([0.5]), np.array([1.5])]  # every sequence of length 1
    hmm = em.HMM(em.Normal(), 2, estep="parallel")
    params = em.HMMParams(np.array([0.5, 0.5]), np.full((2, 2), 0.5), em.NormalParams(
        mean=np.array([0.0, 2.0]), var=np.ones(2)))  # fmt: skip
    assert np.isfinite(float(em.log_likelihood(hmm, params, one_step)))
