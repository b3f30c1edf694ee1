"""The scikit-learn-style estimators, against scikit-learn and float64 NumPy references.

Compiling an EM program takes seconds, so the tests share a few shapes: every
Gaussian fit uses (240, 2) data and 3 components (2 for the grid search), and
``max_iter`` stays in 64..127 (one history length). Like scikit-learn's, the
estimators follow the data's dtype: float64 data are fitted in float64 and
compared with scikit-learn's iterates to 1e-9; float32 data in float32, with
tolerances from float32's error (eps = 1.2e-7), never from one CPU's rounding.
"""

import pickle
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import jaxem as em
from jaxem import _programs, estimators

KINDS = ("full", "diag", "spherical", "tied")
W0 = np.full(3, 1 / 3)
M0 = np.array([[-1.0, -1.0], [2.0, 0.0], [0.0, 3.0]])
P0 = {
    "full": np.stack([np.eye(2), 2 * np.eye(2), np.array([[1.0, 0.3], [0.3, 1.0]])]),
    "tied": np.array([[1.0, 0.2], [0.2, 0.5]]),
    "diag": np.array([[1.0, 2.0], [0.5, 1.0], [1.0, 1.0]]),
    "spherical": np.array([1.0, 0.5, 2.0]),
}


def _blobs(centres, scales, seed):
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, s, (80, 2)) for c, s in zip(centres, scales, strict=True)])


X_SEP = _blobs([[0, 0], [5, 5], [0, 6]], [1.0, 0.7, 0.5], 0)  # three clear clusters
X_OVERLAP = _blobs([[0, 0], [1.5, 1.0], [0, 2.0]], [1.0, 1.0, 0.8], 1)  # slow EM


def sk_fit(X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        return SkGaussianMixture(**kwargs).fit(X)


def assert_params_close(gm, sk, rtol):
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        ours, ref = getattr(gm, name), getattr(sk, name)
        assert isinstance(ours, np.ndarray) and ours.shape == ref.shape, name
        np.testing.assert_allclose(
            ours, ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name
        )


# -- parity with scikit-learn --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_converged_fit_matches_sklearn_from_the_same_start(kind):
    start = dict(weights_init=W0, means_init=M0, precisions_init=P0[kind])
    gm = em.GaussianMixture(3, covariance_type=kind, tol=1e-6, max_iter=100, **start).fit(X_SEP)
    assert gm.converged_ and not jax.config.jax_enable_x64  # x64 was on for the fit only
    assert gm.means_.dtype == np.float64 and gm.covariances_.dtype == np.float64
    # The same number of M-steps from the same start: scikit-learn's iterate.
    sk = sk_fit(X_SEP, n_components=3, covariance_type=kind, tol=0, max_iter=gm.n_iter_, **start)
    assert_params_close(gm, sk, rtol=1e-9)
    np.testing.assert_allclose(gm.score(X_SEP), sk.score(X_SEP), rtol=1e-12)
    np.testing.assert_allclose(gm.score_samples(X_SEP), sk.score_samples(X_SEP), rtol=1e-11)
    np.testing.assert_allclose(gm.bic(X_SEP), sk.bic(X_SEP), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(X_SEP), sk.aic(X_SEP), rtol=1e-12)
    np.testing.assert_array_equal(gm.predict(X_SEP), sk.predict(X_SEP))
    np.testing.assert_allclose(gm.predict_proba(X_SEP), sk.predict_proba(X_SEP), atol=1e-10)
    # scikit-learn's own stopping rule at tol=1e-6 ends within one M-step of ours.
    conv = sk_fit(X_SEP, n_components=3, covariance_type=kind, tol=1e-6, max_iter=100, **start)
    assert conv.converged_ and conv.n_iter_ - gm.n_iter_ in (0, 1)
    # scikit-learn's lower bound lags one M-step behind; at tol=1e-6 that is below 1e-6.
    np.testing.assert_allclose(gm.lower_bound_, conv.lower_bound_, atol=2e-6)
    np.testing.assert_allclose(gm.lower_bound_, gm.score(X_SEP), rtol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_data_are_fitted_in_float32(kind):
    """float32 in, float32 attributes out; scikit-learn's float64 iterate to float32 accuracy.

    64 M-steps from the same start (no stopping rule, whose decision could flip
    on one ulp). EM's map contracts near its fixed point, so rounding does not
    grow with the iterations: the parameters agree to ~1e2·eps relative, the
    budget below is 1e4·eps (1.2e-3) on the covariances' scale.
    """
    start = dict(weights_init=W0, means_init=M0, precisions_init=P0[kind])
    x32 = X_SEP.astype(np.float32)
    gm = em.GaussianMixture(3, covariance_type=kind, tol=0.0, max_iter=64, **start).fit(x32)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gm, name).dtype == np.float32, name
    sk = sk_fit(X_SEP, n_components=3, covariance_type=kind, tol=0, max_iter=64, **start)
    eps = np.finfo(np.float32).eps
    assert_params_close(gm, sk, rtol=1e4 * eps)
    np.testing.assert_allclose(gm.score(X_SEP), sk.score(X_SEP), rtol=1e3 * eps)
    np.testing.assert_array_equal(gm.predict(X_SEP), sk.predict(X_SEP))


@pytest.mark.parametrize("kind", KINDS)
def test_same_iteration_count_gives_sklearns_parameters(kind):
    """64 EM iterations on overlapping clusters (still moving): the same iterate as sklearn's."""
    start = dict(weights_init=W0, means_init=M0, precisions_init=P0[kind])
    with pytest.warns(SklearnConvergenceWarning, match="did not converge"):
        gm = em.GaussianMixture(3, covariance_type=kind, tol=1e-9, max_iter=64, **start)
        gm.fit(X_OVERLAP)
    assert gm.n_iter_ == 64 and not gm.converged_
    assert np.all(np.diff(gm.lower_bounds_) > 0)  # far from settled: every step gains
    sk = sk_fit(X_OVERLAP, n_components=3, covariance_type=kind, tol=0, max_iter=64, **start)
    assert_params_close(gm, sk, rtol=1e-9)
    np.testing.assert_allclose(gm.score(X_OVERLAP), sk.score(X_OVERLAP), rtol=1e-12)


def test_convergence_warning_is_both_jaxems_and_sklearns():
    assert issubclass(estimators._FitConvergenceWarning, em.ConvergenceWarning)
    assert issubclass(estimators._FitConvergenceWarning, SklearnConvergenceWarning)
    text = (
        "Best performing initialization did not converge. Try different init parameters, "
        "or increase max_iter, tol, or check for degenerate data."
    )
    # A fixed seed: with random_state=None the start comes from NumPy's global
    # generator, and from some starts two iterations gain less than tol.
    for est in (
        em.GaussianMixture(3, max_iter=2, random_state=1),
        em.MixtureEstimator(em.Normal(), 2, max_iter=2, random_state=1),
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X_OVERLAP if isinstance(est, em.GaussianMixture) else X_OVERLAP[:, 0])
        assert [str(w.message) for w in caught] == [text]  # said once, in sklearn's words
        assert issubclass(caught[0].category, SklearnConvergenceWarning)
    with warnings.catch_warnings():  # max_iter=0 (evaluate the start) does not warn
        warnings.simplefilter("error")
        em.GaussianMixture(3, max_iter=0).fit(X_OVERLAP)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_more_restarts_are_never_worse(dtype):
    """scikit-learn's test_init: n_init=10 never ends below n_init=1 (same random_state)."""
    for seed in range(6):
        x = _blobs([[0, 0], [1.5, 1.0], [0, 2.0]], [1.0, 1.0, 0.8], seed).astype(dtype)
        for max_iter in (1, 100):
            fits = [
                em.GaussianMixture(3, n_init=n, max_iter=max_iter, random_state=seed)
                for n in (1, 10)
            ]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SklearnConvergenceWarning)
                one, ten = (gm.fit(x) for gm in fits)
            assert ten.lower_bound_ >= one.lower_bound_, (seed, max_iter)


# -- fitting from random starts ----------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    return em.GaussianMixture(3, random_state=0).fit(X_SEP)


def test_default_fit_finds_the_clusters(fitted):
    gm = fitted
    assert gm.converged_ and 1 <= gm.n_iter_ <= 100 and gm.n_features_in_ == 2
    centres = np.array([[0, 0], [5, 5], [0, 6]])
    order = np.argsort(gm.means_[:, 0] * 10 + gm.means_[:, 1])
    np.testing.assert_allclose(gm.means_[order], centres[np.argsort(centres @ [10, 1])], atol=0.3)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert type(getattr(gm, name)) is np.ndarray
    assert gm.covariances_.shape == (3, 2, 2) and gm.precisions_cholesky_.shape == (3, 2, 2)
    np.testing.assert_allclose(
        gm.precisions_ @ gm.covariances_, np.broadcast_to(np.eye(2), (3, 2, 2)), atol=1e-9
    )
    np.testing.assert_allclose(gm.lower_bound_, gm.score(X_SEP), rtol=1e-6)
    # The same random_state gives the same fit; fit_predict is fit().predict.
    again = em.GaussianMixture(3, random_state=0)
    np.testing.assert_array_equal(again.fit_predict(X_SEP), gm.predict(X_SEP))
    np.testing.assert_array_equal(again.means_, gm.means_)


def test_evaluation_matches_sklearn_for_the_fitted_parameters(fitted):
    sk = SkGaussianMixture(3)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, name, getattr(fitted, name))
    sk.n_features_in_ = 2
    x = X_OVERLAP[:50]
    np.testing.assert_allclose(fitted.score_samples(x), sk.score_samples(x), rtol=1e-12)
    np.testing.assert_allclose(fitted.predict_proba(x), sk.predict_proba(x), atol=1e-12)
    np.testing.assert_array_equal(fitted.predict(x), sk.predict(x))
    np.testing.assert_allclose(fitted.bic(x), sk.bic(x), rtol=1e-12)
    np.testing.assert_allclose(fitted.aic(x), sk.aic(x), rtol=1e-12)
    # sample() follows scikit-learn's procedure: the same random_state, the same draws.
    fitted.random_state, sk.random_state = 3, 3
    try:
        xs, ys = fitted.sample(500)
    finally:
        fitted.random_state = 0
    xr, yr = sk.sample(500)
    np.testing.assert_array_equal(ys, yr)
    np.testing.assert_allclose(xs, xr, rtol=1e-12)


def test_warm_start_continues_from_the_previous_solution():
    """64 iterations, then 64 more warm-started: scikit-learn's 128 from the same start."""
    start = dict(weights_init=W0, means_init=M0, precisions_init=P0["full"])
    gm = em.GaussianMixture(3, tol=1e-9, max_iter=64, warm_start=True, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        gm.fit(X_OVERLAP)
        first = gm.means_.copy()
        gm.fit(X_OVERLAP)
    assert gm.n_iter_ == 64 and not np.allclose(gm.means_, first, rtol=1e-3)
    sk = sk_fit(X_OVERLAP, n_components=3, tol=0, max_iter=128, **start)
    assert_params_close(gm, sk, rtol=1e-5)


def test_sample_weight_equals_repeated_rows():
    w = np.random.default_rng(4).integers(0, 3, len(X_SEP))  # zeros drop rows
    assert w.sum() <= 256  # the repeated data stay in the same padded shape (one program)
    start = dict(weights_init=W0, means_init=M0, precisions_init=P0["full"], tol=1e-6)
    weighted = em.GaussianMixture(3, **start).fit(X_SEP, sample_weight=w)
    repeated = em.GaussianMixture(3, **start).fit(np.repeat(X_SEP, w, axis=0))
    assert weighted.converged_ and repeated.converged_
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-9)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-9)
    np.testing.assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-12)


def test_pickle_round_trip(fitted):
    back = pickle.loads(pickle.dumps(fitted))
    for method in ("predict_proba", "score_samples"):  # BLAS may round differently: 1e-12
        np.testing.assert_allclose(
            getattr(back, method)(X_OVERLAP), getattr(fitted, method)(X_OVERLAP), rtol=1e-12
        )
    np.testing.assert_array_equal(back.predict(X_OVERLAP), fitted.predict(X_OVERLAP))
    np.testing.assert_array_equal(back.covariances_, fitted.covariances_)
    assert back.get_params() == fitted.get_params()


def test_pipeline_with_standard_scaler():
    pipe = make_pipeline(StandardScaler(), em.GaussianMixture(3, random_state=0)).fit(X_SEP)
    scaled = StandardScaler().fit_transform(X_SEP)
    direct = em.GaussianMixture(3, random_state=0).fit(scaled)
    np.testing.assert_array_equal(pipe.predict(X_SEP), direct.predict(scaled))
    np.testing.assert_allclose(pipe.score(X_SEP), direct.score(scaled), rtol=1e-12)


def test_grid_search_over_n_components_picks_three():
    search = GridSearchCV(
        em.GaussianMixture(random_state=0),
        {"n_components": [2, 3]},
        cv=KFold(3, shuffle=True, random_state=0),  # X_SEP is ordered by cluster
    ).fit(X_SEP)
    assert search.best_params_ == {"n_components": 3}
    assert isinstance(search.best_estimator_, em.GaussianMixture)
    assert search.best_estimator_.n_features_in_ == 2


def test_init_schemes_draw_valid_starts():
    """Each scheme's start, drawn as inside the fit program, against NumPy checks."""
    x = np.asarray(X_SEP, np.float32)
    keys = jax.random.split(jax.random.key(0), 4)
    for scheme in ("kmeans", "random", "random_from_data"):  # k-means++: the family's init
        model = estimators._GaussianStarts("full", 1e-6, 3, scheme)
        starts = jax.jit(jax.vmap(model._draw, in_axes=(0, None)))(keys, jnp.asarray(x))
        w, m, c = (np.asarray(a, np.float64) for a in (starts.weights, *starts.components))
        np.testing.assert_allclose(w.sum(axis=1), 1, rtol=1e-6, err_msg=scheme)
        assert np.all(np.linalg.eigvalsh(c) > 0), scheme
        if scheme == "random_from_data":  # distinct rows of X, covariance reg_covar
            for means in m:
                dist = np.abs(X_SEP[:, None, :] - means[None]).max(axis=-1)  # (N, K)
                assert np.all(dist.min(axis=0) < 1e-5)
                assert len(set(np.argmin(dist, axis=0).tolist())) == 3
            np.testing.assert_allclose(c, np.broadcast_to(1e-6 * np.eye(2), c.shape), atol=1e-9)
        if scheme == "kmeans":  # a Lloyd fixed point: each mean is its nearest points' mean
            for means in m:
                nearest = np.argmin(((X_SEP[:, None] - means[None]) ** 2).sum(-1), axis=1)
                centroids = np.stack([X_SEP[nearest == j].mean(0) for j in range(3)])
                np.testing.assert_allclose(means, centroids, atol=1e-4)
        if scheme == "random":  # random responsibilities: every mean near the data's mean
            np.testing.assert_allclose(m, np.broadcast_to(X_SEP.mean(0), m.shape), atol=1.0)


# -- MixtureEstimator -------------------------------------------------------------------


def _poisson_em_float64(x, weights, rate, n_iter):
    """Textbook EM for a Poisson mixture in float64 NumPy (independent reference)."""
    from scipy.special import gammaln, logsumexp

    for _ in range(n_iter):
        lj = np.log(weights) + x[:, None] * np.log(rate) - rate - gammaln(x[:, None] + 1)
        resp = np.exp(lj - logsumexp(lj, axis=1, keepdims=True))
        nk = resp.sum(0)
        weights, rate = nk / len(x), resp.T @ x / nk
    lj = np.log(weights) + x[:, None] * np.log(rate) - rate - gammaln(x[:, None] + 1)
    return weights, rate, lj


@pytest.fixture(scope="module")
def poisson_fit():
    rng = np.random.default_rng(2)
    counts = np.concatenate([rng.poisson(2.0, 150), rng.poisson(9.0, 90)]).astype(float)
    start = em.MixtureParams(np.array([0.5, 0.5]), em.PoissonParams(rate=np.array([1.0, 4.0])))
    est = em.MixtureEstimator(em.Poisson(), 2, init=start, tol=0.0, max_iter=64).fit(counts)
    return counts, est


def test_mixture_estimator_poisson_matches_float64_em(poisson_fit):
    counts, est = poisson_fit
    assert est.n_iter_ > 5
    weights, rate, lj = _poisson_em_float64(
        counts, np.array([0.5, 0.5]), np.array([1.0, 4.0]), est.n_iter_
    )
    assert isinstance(est.params_, em.PoissonParams) and type(est.params_.rate) is np.ndarray
    assert est.weights_.dtype == np.float64  # float64 counts: a float64 fit
    np.testing.assert_allclose(est.weights_, weights, rtol=1e-10)
    np.testing.assert_allclose(est.params_.rate, rate, rtol=1e-10)
    from scipy.special import logsumexp

    row_ll = logsumexp(lj, axis=1)
    np.testing.assert_allclose(est.score_samples(counts), row_ll, rtol=1e-12)
    np.testing.assert_allclose(est.lower_bound_, row_ll.mean(), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(counts), np.argmax(lj, axis=1))
    np.testing.assert_allclose(est.predict_proba(counts), np.exp(lj - row_ll[:, None]), atol=1e-12)
    np.testing.assert_allclose(est.bic(counts), -2 * row_ll.sum() + 3 * np.log(240), rtol=1e-12)
    np.testing.assert_allclose(est.aic(counts), -2 * row_ll.sum() + 6, rtol=1e-12)
    # (N, 1) data is accepted for a fit on (N,) data; counts are checked for the support.
    np.testing.assert_array_equal(est.predict(counts[:, None]), est.predict(counts))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        est.predict(counts + 0.5)


# -- bad input: clear messages, raised before anything is compiled ------------------------


BAD_FIT = [
    (dict(covariance_type="fulll"), "covariance_type must be one of"),
    (dict(n_components=0), "n_components must be >= 1"),
    (dict(n_components=2.5), "n_components must be an integer"),
    (dict(tol=-1.0), "tol must be a finite number >= 0"),
    (dict(reg_covar=float("nan")), "reg_covar must be a finite number >= 0"),
    (dict(max_iter=-1), "max_iter must be >= 0"),
    (dict(n_init=0), "n_init must be >= 1"),
    (dict(init_params="kmeans++"), "init_params must be one of"),
    (dict(random_state=-3), "random_state must be None, an int in"),
    (dict(warm_start="yes"), "warm_start must be True or False"),
    # scikit-learn's messages, to the letter (its own tests match them).
    (
        dict(weights_init=[0.5, 0.6, -0.1]),
        r"^The parameter 'weights' should be in the range \[0, 1\], but got max value "
        r"-0.10000, min value 0.60000$",
    ),
    (
        dict(weights_init=[0.2, 0.2, 0.2]),
        r"^The parameter 'weights' should be normalized, but got sum\(weights\) = 0.60000$",
    ),
    (
        dict(weights_init=[0.5, 0.5]),
        r"^The parameter 'weights' should have the shape of \(3,\), but got \(2,\)$",
    ),
    (
        dict(means_init=np.zeros((3, 3))),
        r"^The parameter 'means' should have the shape of \(3, 2\), but got \(3, 3\)$",
    ),
    (
        dict(precisions_init=np.ones((3, 2))),
        r"^The parameter 'full precision' should have the shape of \(3, 2, 2\), but got "
        r"\(3, 2\)$",
    ),
    (
        dict(precisions_init=-np.ones((3, 2, 2))),
        r"^'full precision' should be symmetric, positive-definite$",
    ),
    (
        dict(covariance_type="tied", precisions_init=np.array([[1.0, 2.0], [0.0, 1.0]])),
        r"^'tied precision' should be symmetric, positive-definite$",
    ),
    (
        dict(covariance_type="diag", precisions_init=np.zeros((3, 2))),
        r"^'diag precision' should be positive$",
    ),
    (
        dict(covariance_type="spherical", precisions_init=-np.ones(3)),
        r"^'spherical precision' should be positive$",
    ),
]


@pytest.mark.parametrize("kwargs, message", BAD_FIT[-9:])
def test_bad_starts_get_sklearns_messages(kwargs, message):
    """The same arguments give scikit-learn's own ValueError, word for word."""
    kwargs = {"n_components": 3, **kwargs}
    with pytest.raises(ValueError) as ours:
        em.GaussianMixture(**kwargs).fit(X_SEP)
    with pytest.raises(ValueError) as theirs:
        SkGaussianMixture(**kwargs).fit(X_SEP)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("kwargs, message", BAD_FIT)
def test_bad_constructor_arguments_raise_in_fit_before_compiling(kwargs, message):
    kwargs = {"n_components": 3, "reg_covar": 0.123, **kwargs}
    gm = em.GaussianMixture(**kwargs)  # __init__ never validates (sklearn's rule)
    with pytest.raises(ValueError, match=message):
        gm.fit(X_SEP)
    assert not hasattr(gm, "converged_")
    for model, _ in _programs._PROGRAMS.values():  # no EM program built for these settings
        assert getattr(getattr(model, "family", None), "reg_covar", None) != 0.123


BAD_DATA = [
    (np.ones(10), ValueError, "Reshape your data"),
    (np.ones((0, 2)), ValueError, r"0 sample\(s\)"),
    (np.ones((1, 2)), ValueError, r"1 sample\(s\).*minimum of 2"),
    (np.ones((5, 0)), ValueError, r"0 feature\(s\)"),
    (np.where(np.eye(4, 2) > 0, np.nan, 1.0), ValueError, "Input X contains NaN"),
    (np.where(np.eye(4, 2) > 0, np.inf, 1.0), ValueError, "Input X contains infinity"),
    (np.ones((4, 2)) * 1j, ValueError, "Complex data not supported"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "must hold numbers"),
    (np.ones((2, 2)), ValueError, "Expected n_samples >= n_components"),
]


@pytest.mark.parametrize("X, error, message", BAD_DATA)
def test_bad_data_raises_with_a_clear_message(X, error, message):
    with pytest.raises(error, match=message):
        em.GaussianMixture(3).fit(X)


def test_sparse_and_sample_weight_errors():
    from scipy import sparse

    with pytest.raises(TypeError, match=r"sparse input is not supported.*toarray"):
        em.GaussianMixture(3).fit(sparse.csr_matrix(X_SEP))
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(240,\)"):
        em.GaussianMixture(3).fit(X_SEP, sample_weight=np.ones(10))
    with pytest.raises(ValueError, match="all weights are zero"):
        em.GaussianMixture(3).fit(X_SEP, sample_weight=np.zeros(240))
    with pytest.raises(ValueError, match="finite and >= 0"):
        em.GaussianMixture(3).fit(X_SEP, sample_weight=-np.ones(240))


def test_unfitted_and_mismatched_use(fitted):
    for method in ("predict", "predict_proba", "score", "score_samples", "bic", "aic"):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(em.GaussianMixture(3), method)(X_SEP)
    with pytest.raises(NotFittedError):
        em.GaussianMixture(3).sample(5)
    assert em.NotFittedError is NotFittedError
    for method in ("predict", "predict_proba", "score", "score_samples", "bic"):
        with pytest.raises(
            ValueError, match="X has 3 features, but GaussianMixture is expecting 2"
        ):
            getattr(fitted, method)(np.ones((4, 3)))
    with pytest.raises(ValueError, match="Reshape your data"):
        fitted.predict(X_SEP[0])
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)
    with pytest.raises(TypeError, match="family must be an instance, e.g. Poisson()"):
        em.MixtureEstimator(em.Poisson, 2).fit(np.arange(10.0))
    with pytest.raises(ValueError, match="non-negative integer counts"):
        em.MixtureEstimator(em.Poisson(), 2).fit(np.array([0.5, 1.0, 2.0]))


def test_without_sklearn_a_small_base_stands_in():
    """With scikit-learn unimportable: get/set_params, repr and a ValueError NotFittedError."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # any `import sklearn...` now raises ImportError
        import jaxem as em
        from jaxem import estimators
        assert not estimators.HAVE_SKLEARN
        gm = em.GaussianMixture(3, covariance_type="diag")
        assert gm.get_params()["covariance_type"] == "diag" and gm.get_params()["tol"] == 1e-3
        assert gm.set_params(n_init=4) is gm and gm.n_init == 4
        shown = "GaussianMixture(covariance_type='diag', n_components=3, n_init=4)"
        assert repr(gm) == shown, repr(gm)
        try:
            gm.set_params(bogus=1)
        except ValueError as err:
            assert "Invalid parameter 'bogus'" in str(err)
        try:
            gm.predict([[0.0, 1.0]])
        except em.NotFittedError as err:
            assert isinstance(err, ValueError) and "not fitted yet" in str(err)
        else:
            raise AssertionError("predict before fit must raise")
        assert "sklearn" not in [m.split(".")[0] for m in sys.modules if sys.modules[m]]
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_sklearn_is_not_imported_by_import_jaxem():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, jaxem; print('sklearn' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "False", out.stderr


# -- missing values: missing="marginalize" -----------------------------------------------


def _gm_with(kind, weights, means, cov, **kwargs):
    """A GaussianMixture holding the given parameters (no fit: only the evaluation)."""
    gm = em.GaussianMixture(len(weights), covariance_type=kind, **kwargs)
    gm._set_params_from(em.MixtureParams(weights, em.MultivariateNormalParams(means, cov)))
    gm.converged_, gm.n_iter_, gm.lower_bound_ = True, 0, 0.0
    gm.n_features_in_, gm._fit_ndim_ = means.shape[1], 2
    return gm


def _holes(shape, rate, seed):
    return np.random.default_rng(seed).random(shape) < rate


@pytest.mark.parametrize("kind", KINDS)
def test_score_samples_with_nan_are_the_observed_marginal_densities(kind):
    """Each row's density is the mixture of the observed block's marginal normals."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(5)
    k, d = 2, 3
    weights, means = np.array([0.3, 0.7]), rng.normal(0, 2, (k, d))
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    cov = {"full": full, "tied": full[0], "diag": rng.uniform(0.5, 2, (k, d))}
    cov["spherical"] = np.array([0.7, 1.8])
    dense = {  # each component's (D, D) covariance, for scipy
        "full": full,
        "tied": np.stack([full[0]] * k),
        "diag": np.stack([np.diag(v) for v in cov["diag"]]),
        "spherical": cov["spherical"][:, None, None] * np.eye(d),
    }[kind]
    gm = _gm_with(kind, weights, means, cov[kind], missing="marginalize")
    x = rng.normal(0, 2, (64, d))
    patterns = np.array([[(p >> i) & 1 for i in range(d)] for p in range(8)], bool)
    x[np.where(np.tile(patterns, (8, 1)))] = np.nan  # every pattern, the last row all NaN
    ref = np.zeros((len(x), k))
    for i, row in enumerate(x):
        o = ~np.isnan(row)
        for j in range(k):
            if o.any():
                mvn = multivariate_normal(means[j, o], dense[j][np.ix_(o, o)])
                ref[i, j] = mvn.logpdf(row[o])
    ref += np.log(weights)
    np.testing.assert_allclose(gm.score_samples(x), logsumexp(ref, axis=1), rtol=1e-12, atol=1e-15)
    assert abs(gm.score_samples(x)[-1]) < 1e-15  # nothing observed: log p = 0, posterior w
    np.testing.assert_allclose(gm.predict_proba(x)[-1], weights, rtol=1e-12)
    np.testing.assert_allclose(
        gm.predict_proba(x), np.exp(ref - logsumexp(ref, axis=1, keepdims=True)), atol=1e-12
    )
    np.testing.assert_array_equal(gm.predict(x), np.argmax(ref, axis=1))
    np.testing.assert_allclose(gm.score(x), logsumexp(ref, axis=1).mean(), rtol=1e-12)
    sk = SkGaussianMixture(k, covariance_type=kind)
    sk.means_ = means
    p = sk._n_parameters()
    ll = logsumexp(ref, axis=1).sum()
    np.testing.assert_allclose(gm.bic(x), -2 * ll + p * np.log(len(x)), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(x), -2 * ll + 2 * p, rtol=1e-12)
    # Complete rows keep scikit-learn's formula.
    complete = ~np.isnan(x).any(axis=1)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, name, getattr(gm, name))
    np.testing.assert_allclose(
        gm.score_samples(x[complete]), sk.score_samples(x[complete]), rtol=1e-12
    )


def test_fit_with_missing_values_recovers_the_complete_data_clusters():
    """Old Faithful with 10% of entries missing at random: the same two clusters."""
    x = em.datasets.load_faithful()
    xm = np.where(_holes(x.shape, 0.1, 0), np.nan, x)
    complete = sk_fit(x, n_components=2, random_state=0)  # float64, nothing to compile
    gm = em.GaussianMixture(2, random_state=0, missing="marginalize")
    labels = gm.fit_predict(xm)
    assert gm.converged_ and np.isfinite(gm.lower_bound_)
    agree = np.mean(labels == complete.predict(x))
    assert max(agree, 1 - agree) >= 0.95
    np.testing.assert_allclose(np.sort(gm.means_[:, 1]), np.sort(complete.means_[:, 1]), rtol=0.02)
    # The objective is the observed-data log-likelihood; BIC/AIC count N rows.
    np.testing.assert_allclose(gm.lower_bound_, gm.score(xm), rtol=1e-5)
    n_par = 2 * 2 + 2 * 3 + 1
    ll = gm.score_samples(xm).sum()
    np.testing.assert_allclose(gm.bic(xm), -2 * ll + n_par * np.log(len(x)), rtol=1e-12)
    np.testing.assert_allclose(gm.aic(xm), -2 * ll + 2 * n_par, rtol=1e-12)


def test_mixture_estimator_poisson_with_missing_counts():
    """score_samples: per row, the mixture of the product of the observed pmfs."""
    from scipy.special import logsumexp
    from scipy.stats import poisson

    rng = np.random.default_rng(6)
    counts = np.vstack([rng.poisson([2.0, 6.0], (120, 2)), rng.poisson([8.0, 1.0], (120, 2))])
    x = np.where(_holes(counts.shape, 0.15, 1), np.nan, counts.astype(float))
    est = em.MixtureEstimator(em.Poisson(), 2, missing="marginalize", random_state=0).fit(x)
    rate = est.params_.rate
    assert rate.shape == (2, 2) and np.isfinite(est.lower_bound_)
    observed = ~np.isnan(x)
    logpmf = poisson.logpmf(np.nan_to_num(x)[:, None, :], rate[None])  # (N, K, D)
    ref = np.log(est.weights_) + np.sum(np.where(observed[:, None, :], logpmf, 0), axis=2)
    np.testing.assert_allclose(est.score_samples(x), logsumexp(ref, axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(est.score(x), logsumexp(ref, axis=1).mean(), rtol=1e-5)
    np.testing.assert_array_equal(est.predict(x), np.argmax(ref, axis=1))
    # One row, fewer rows than components, a column with no observed value.
    one = np.log(est.weights_) + poisson.logpmf(3, rate[:, 1])
    np.testing.assert_allclose(
        est.predict_proba(np.array([[np.nan, 3.0]]))[0], np.exp(one - logsumexp(one)), rtol=1e-5
    )
    np.testing.assert_allclose(est.score_samples(np.full((1, 2), np.nan)), 0.0, atol=1e-6)


def test_missing_none_still_rejects_nan(fitted):
    holey = np.where(_holes(X_SEP.shape, 0.1, 2), np.nan, X_SEP)
    for call in (em.GaussianMixture(3).fit, fitted.predict, fitted.score_samples):
        with pytest.raises(ValueError, match=r"Input X contains NaN.*missing='marginalize'"):
            call(holey)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        em.MixtureEstimator(em.Poisson(), 2).fit(np.array([1.0, np.nan, 3.0]))
    # One rule for the estimators and em.fit: the same options, the same words.
    with pytest.raises(ValueError, match="missing must be None, 'raise' or 'marginalize'") as est:
        em.GaussianMixture(3, missing="drop").fit(X_SEP)
    with pytest.raises(ValueError) as fit:
        em.fit(em.Mixture(em.Poisson(), 2), np.array([1.0, 2.0, 3.0]), key=0, missing="drop")
    assert str(est.value) == "GaussianMixture: " + str(fit.value)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        em.GaussianMixture(3, missing="raise").fit(holey)
    with pytest.raises(ValueError, match="infinity"):
        em.GaussianMixture(3, missing="marginalize").fit(np.where(np.isnan(holey), np.inf, X_SEP))
    with pytest.raises(ValueError, match="column 1 of X has no observed value"):
        em.GaussianMixture(3, missing="marginalize").fit(np.c_[X_SEP[:, 0], np.full(240, np.nan)])
    from sklearn.utils import get_tags

    assert not get_tags(fitted).input_tags.allow_nan
    assert get_tags(em.GaussianMixture(missing="marginalize")).input_tags.allow_nan


# -- slow: scikit-learn's own estimator checks, restarts, every init scheme -------------------


@pytest.mark.slow
def test_sklearn_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(em.GaussianMixture())


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["k-means++", "random", "random_from_data"])
def test_every_init_scheme_with_parallel_restarts_matches_sklearns_best(scheme):
    gm = em.GaussianMixture(3, init_params=scheme, n_init=16, random_state=0).fit(X_SEP)
    sk = sk_fit(X_SEP, n_components=3, n_init=16, random_state=0)
    assert gm.converged_
    np.testing.assert_allclose(gm.score(X_SEP), sk.score(X_SEP), rtol=1e-3)


@pytest.mark.slow
def test_partial_starts_fill_in_from_the_scheme():
    weights = np.array([0.2, 0.3, 0.5])
    gm = em.GaussianMixture(3, weights_init=weights, means_init=M0, max_iter=0, n_init=2)
    gm.fit(X_SEP)  # max_iter=0 returns the best start: given parts, drawn covariances
    assert gm.n_iter_ == 0
    np.testing.assert_allclose(gm.weights_, weights, rtol=1e-6)
    np.testing.assert_allclose(gm.means_, M0, rtol=1e-6)
    assert np.all(np.linalg.eigvalsh(gm.covariances_) > 0)


@pytest.mark.slow
def test_mixture_estimator_sample(poisson_fit):
    counts, est = poisson_fit
    est.random_state = 0
    xs, labels = est.sample(2000)
    assert xs.shape == (2000,) and set(np.unique(labels)) <= {0, 1}
    assert np.all(xs == np.round(xs)) and abs(np.mean(labels == 1) - est.weights_[1]) < 0.04
    for j in range(2):  # each component's draws have its rate as mean
        np.testing.assert_allclose(xs[labels == j].mean(), est.params_.rate[j], rtol=0.1)
    np.testing.assert_array_equal(est.sample(50)[0], est.sample(50)[0])  # seeded


@pytest.mark.slow
def test_verbose_prints_progress_from_the_compiled_loop(capfd):
    em.GaussianMixture(3, verbose=1, verbose_interval=2, random_state=0).fit(X_SEP)
    err = capfd.readouterr().err
    assert "jaxem: iteration      2" in err and "GaussianMixture: converged" in err
