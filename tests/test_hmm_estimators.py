"""``em.GaussianHMM`` / ``em.HMMEstimator`` against hmmlearn, from the same start, in float64."""

import warnings

import numpy as np
import pytest
from hmmlearn import hmm as hl
from test_hmm import LENGTHS, SEQS, X

import jaxem as em

START_PI = np.array([0.5, 0.3, 0.2])
START_A = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]])
START_MEANS = np.array([[0.5, 0.5], [2.0, 2.0], [-1.0, 3.0]])
CV = np.array([[1.0, 0.3], [0.3, 2.0]])
START_COV = {
    "full": np.tile(CV, (3, 1, 1)),
    "tied": CV,
    "diag": np.tile(np.diag(CV), (3, 1)),
    "spherical": np.full(3, 1.5),
}


def _pair(cov, **kw):
    ref = hl.GaussianHMM(3, cov, init_params="", **kw)
    ours = em.GaussianHMM(3, cov, init_params="", **kw)
    for est in (ref, ours):
        est.startprob_, est.transmat_ = START_PI.copy(), START_A.copy()
        est.means_, est.covars_ = START_MEANS.copy(), START_COV[cov].copy()
    return ref, ours


@pytest.mark.parametrize(
    "cov, covars_prior",
    [
        ("diag", 0.0),
        ("full", 1e-2),
        pytest.param("diag", 1e-2, marks=pytest.mark.slow),
        pytest.param("full", 0.0, marks=pytest.mark.slow),
        pytest.param("tied", 0.0, marks=pytest.mark.slow),
        pytest.param("tied", 1e-2, marks=pytest.mark.slow),
        pytest.param("spherical", 0.0, marks=pytest.mark.slow),
        ("spherical", 1e-2),
    ],
)
def test_baum_welch_iterates_equal_hmmlearns(cov, covars_prior):
    ref, ours = _pair(cov, n_iter=7, tol=0.0, covars_prior=covars_prior, means_weight=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-9)
    if cov == "spherical":  # hmmlearn keeps a (K, D) copy of each state's variance
        np.testing.assert_allclose(ours._covars, ref._covars_[:, 0], rtol=1e-9)
    else:
        np.testing.assert_allclose(ours.covars_, ref.covars_, rtol=1e-9)
    assert ours.score(X, LENGTHS) == pytest.approx(ref.score(X, LENGTHS), rel=1e-12)
    ll, post = ours.score_samples(X, LENGTHS)
    np.testing.assert_allclose(post, ref.score_samples(X, LENGTHS)[1], atol=1e-12)
    logprob, path = ours.decode(X, LENGTHS)
    ref_logprob, ref_path = ref.decode(X, LENGTHS)
    np.testing.assert_array_equal(path, ref_path)
    assert logprob == pytest.approx(ref_logprob, rel=1e-12)
    np.testing.assert_array_equal(ours.predict(X, LENGTHS), ref.predict(X, LENGTHS))
    assert ours.bic(X, LENGTHS) == pytest.approx(ref.bic(X, LENGTHS), rel=1e-12)
    assert ours.aic(X, LENGTHS) == pytest.approx(ref.aic(X, LENGTHS), rel=1e-12)
    map_prob, map_path = ours.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(map_path, ref.decode(X, LENGTHS, algorithm="map")[1])


def test_params_letters_hold_parameters_and_priors_match():
    ref, ours = _pair("diag", n_iter=5, tol=0.0, params="tm", transmat_prior=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X, LENGTHS)
    ours.fit(X, LENGTHS)
    np.testing.assert_array_equal(ours.startprob_, START_PI)
    np.testing.assert_array_equal(ours.covars_, ref.covars_)  # unchanged start
    # Means with the covariances held: the gradient M-step (gtol 1e-10), not a closed form.
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.means_, ref.means_, atol=1e-8)


def test_restarts_never_lose_and_attributes_follow_the_dtype():
    one = em.GaussianHMM(3, n_iter=50, random_state=0).fit(X, LENGTHS)
    many = em.GaussianHMM(3, n_iter=50, random_state=0, n_init=8).fit(X, LENGTHS)
    assert many.score(X, LENGTHS) >= one.score(X, LENGTHS) - 1e-9 * abs(one.score(X, LENGTHS))
    assert one.means_.dtype == np.float64 and one.monitor_.iter == one.n_iter_
    single = em.GaussianHMM(3, n_iter=5, random_state=0).fit(X.astype(np.float32), LENGTHS)
    assert single.means_.dtype == np.float32 and single.transmat_.dtype == np.float32
    x, z = many.sample(500, random_state=1)
    assert x.shape == (500, 2) and z.shape == (500,) and set(np.unique(z)) <= {0, 1, 2}


def test_generic_estimator_with_poisson_emissions():
    rng = np.random.default_rng(7)
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    z = [0]
    for _ in range(1999):
        z.append(rng.choice(2, p=a[z[-1]]))
    counts = rng.poisson(np.array([2.0, 12.0])[z])[:, None].astype(float)
    est = em.HMMEstimator(em.Poisson(), 2, n_iter=200, tol=1e-6, n_init=4, random_state=0)
    est.fit(counts, [1000, 1000])
    order = np.argsort(est.emissions_.rate[:, 0])
    np.testing.assert_allclose(est.emissions_.rate[order, 0], [2.0, 12.0], rtol=0.05)
    np.testing.assert_allclose(est.transmat_[np.ix_(order, order)], a, atol=0.03)
    rank = np.argsort(order)  # fitted state -> rank of its rate (0: low, 1: high)
    assert np.mean(rank[est.predict(counts, [1000, 1000])] == np.asarray(z)) > 0.95


BAD = [
    (dict(params="stmx"), "params must be a string of the letters 'stmc'"),
    (dict(covariance_type="banded"), "covariance_type must be one of"),
    (dict(transmat_prior=0.5), "transmat_prior must be >= 1"),
    (dict(n_iter=-1), "n_iter must be >= 0"),
    (dict(algorithm="beam"), "algorithm must be 'viterbi' or 'map'"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        em.GaussianHMM(3, **kwargs).fit(X, LENGTHS)


def test_bad_data_and_unfitted_use():
    with pytest.raises(em.NotFittedError):
        em.GaussianHMM(3).predict(X)
    with pytest.raises(ValueError, match="X must be 2-D"):
        em.GaussianHMM(3).fit(X[:, 0])
    with pytest.raises(ValueError, match="lengths sum to 10"):
        em.GaussianHMM(3).fit(X, [5, 5])
    fitted = em.GaussianHMM(3, n_iter=2).fit(SEQS[0])
    with pytest.raises(ValueError, match="X has 3 features"):
        fitted.score(np.ones((4, 3)))
