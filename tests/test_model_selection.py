"""em.select_model: the BIC/AIC table against scikit-learn's criteria for the same parameters.

The default test reuses the shapes and settings of tests/test_estimators.py
((240, 2) data, 2 and 3 full-covariance components), so one session compiles
them once; the full grid runs under ``-m slow``.
"""

import math
import warnings

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import jaxem as em

_rng = np.random.default_rng(0)
X_SEP = np.vstack(
    [_rng.normal(c, s, (80, 2)) for c, s in (([0, 0], 1.0), ([5, 5], 0.7), ([0, 6], 0.5))]
)


def sklearn_criteria(est, X):
    """BIC and AIC of scikit-learn's GaussianMixture carrying ``est``'s parameters."""
    sk = SkGaussianMixture(est.n_components, covariance_type=est.covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(sk, name, getattr(est, name))
    sk.n_features_in_ = X.shape[1]
    return sk.bic(X), sk.aic(X)


def test_select_model_ranks_by_bic_and_picks_three():
    result = em.select_model(X_SEP, n_components=[2, 3], covariance_types=("full",), random_state=0)
    assert isinstance(result, em.ModelSelection) and len(result.rows) == 2
    assert result.best.n_components == 3 and result.best.model == "full"
    assert result.best_estimator is result.rows[0].estimator
    values = [r.criterion for r in result.rows]
    assert values == sorted(values)
    for row in result.rows:
        bic, aic = sklearn_criteria(row.estimator, X_SEP)
        np.testing.assert_allclose([row.bic, row.aic, row.criterion], [bic, aic, bic], rtol=1e-10)
        k = row.n_components
        assert row.n_parameters == (k - 1) + 2 * k + 3 * k  # weights, means, full 2x2 covariances
        np.testing.assert_allclose(
            row.log_likelihood, row.estimator.score(X_SEP) * len(X_SEP), rtol=1e-12
        )
    text = str(result)
    assert "BIC by number of components (rows) and model (columns); lower is better" in text
    lines = text.splitlines()
    assert lines[1].split() == ["K", "full"]
    assert lines[2].split() == ["2", f"{result.rows[1].bic:.1f}"]
    assert lines[3].split() == ["3", f"{result.rows[0].bic:.1f}"]
    top = lines[lines.index("Top models by BIC:") + 2 :]
    assert top[0].split()[:3] == ["1", "full", "3"] and top[1].split()[:3] == ["2", "full", "2"]
    assert "K=3" in repr(result)
    assert result.models == ("full",) and result.n_components == (2, 3)
    np.testing.assert_array_equal(result.values[:, 0], [result.rows[1].bic, result.rows[0].bic])
    d = result.as_dict()
    assert d["best"] == {"model": "full", "n_components": 3}
    assert d["values"] == [[result.rows[1].bic], [result.rows[0].bic]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(criterion="hqc"), "criterion must be 'bic', 'icl' or 'aic'"),
        (dict(n_init=0), "n_init must be an integer >= 1"),
        (dict(init_params="random"), "init_params must be 'kmeans'"),
        (dict(reg_covar=-1.0), "reg_covar must be a finite number >= 0"),
        (dict(covariance_types=("EEE", "EEE")), "repeated entries"),
        (dict(n_components=[300]), "cannot support 300 components"),
        (dict(n_components=[0, 2]), "every entry of n_components must be an integer >= 1"),
        (dict(n_components=[]), "n_components is empty"),
        (dict(covariance_types=("full", "diagonal")), "covariance_types must be a non-empty"),
        (dict(families=[em.Poisson, em.Normal()]), "is not an em.Family instance"),
        (dict(families=[]), "families must be a non-empty list"),
    ],
)
def test_select_model_rejects_bad_grids(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        em.select_model(X_SEP, **kwargs)


@pytest.mark.slow
def test_every_covariance_type_agrees_with_sklearn():
    """All four covariance types at K = 3: criteria match sklearn's at our parameters,
    and the best BIC is as good as the best of sklearn's own fits."""
    result = em.select_model(X_SEP, n_components=[3], random_state=0)
    assert sorted(r.model for r in result.rows) == ["diag", "full", "spherical", "tied"]
    for row in result.rows:
        bic, aic = sklearn_criteria(row.estimator, X_SEP)
        np.testing.assert_allclose([row.bic, row.aic], [bic, aic], rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        best = min(
            SkGaussianMixture(3, covariance_type=t, n_init=4, random_state=0).fit(X_SEP).bic(X_SEP)
            for t in ("full", "diag", "spherical", "tied")
        )
    assert result.best.bic <= best + 1e-4 * abs(best)
    by_aic = em.select_model(X_SEP, n_components=[3], criterion="aic", random_state=0)
    assert [r.criterion for r in by_aic.rows] == sorted(r.aic for r in by_aic.rows)


@pytest.mark.slow
def test_families_grid_picks_the_poisson_mixture():
    rng = np.random.default_rng(2)
    counts = np.concatenate([rng.poisson(2.0, 150), rng.poisson(9.0, 90)]).astype(float)
    result = em.select_model(
        counts,
        n_components=2,
        families={"poisson": em.Poisson(), "normal": em.Normal()},
        n_init=8,
        random_state=0,
    )
    assert [r.model for r in result.rows] == ["poisson", "normal"]
    for row in result.rows:  # BIC by hand from the fitted estimator
        ll = row.estimator.score(counts) * len(counts)
        p = {"poisson": 2, "normal": 3}[row.model] * row.n_components - 1
        np.testing.assert_allclose(row.bic, -2 * ll + p * math.log(len(counts)), rtol=1e-10)


def _faithful():
    from jaxem.datasets import load_faithful

    return np.asarray(load_faithful(), np.float64)


def test_mclust_faithful_result_and_icl():
    """mclust's Old Faithful answer: EEE with 3 components, log-likelihood -1126.3, BIC 2314.3.

    ICL is BIC plus twice the entropy of the MAP classification, recomputed here
    from the best estimator's posterior.
    """
    x = _faithful()
    result = em.select_model(x, [2, 3, 4], ("EEE", "VVV"), n_init=4, random_state=0)
    best = result.best
    assert (best.model, best.n_components, best.n_parameters) == ("EEE", 3, 11)
    assert abs(best.log_likelihood - (-1126.3)) < 0.05 and abs(best.bic - 2314.3) < 0.05
    est = result.best_estimator
    assert isinstance(est, em.MixtureEstimator)
    assert est.family.model == "EEE"
    np.testing.assert_allclose(est.score(x) * len(x), best.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(est.bic(x), best.bic, rtol=1e-12)
    entropy = -np.sum(np.log(np.max(est.predict_proba(x), axis=1)))
    np.testing.assert_allclose(best.icl, best.bic + 2 * entropy, rtol=1e-10)
    by_icl = em.select_model(
        x, [2, 3, 4], ("EEE", "VVV"), criterion="icl", n_init=4, random_state=0
    )
    np.testing.assert_allclose(by_icl.values, result.matrix("icl"), rtol=1e-10)
    # the cell is where EM stopped (per-sample change < tol): em.fit from its parameters
    # climbs less than 5 iterations' worth of that
    import jax

    with jax.enable_x64(True), pytest.warns(em.ConvergenceWarning):
        fit = em.fit(em.Mixture(est.family, 3), x, init=est._current_params(), max_iter=5)
    assert best.log_likelihood <= fit.log_likelihood <= best.log_likelihood + 5 * 1e-5 * len(x)


def test_singular_fits_are_discarded_as_mclust_does():
    """A run whose covariance is numerically singular does not count (mclust reports NA)."""
    from jaxem.model_selection import _singular

    good = np.stack([np.eye(2), 2 * np.eye(2)])
    flat = np.stack([np.eye(2), np.diag([1.0, 1e-17])])
    cov = np.stack([good, flat, flat])  # 3 runs with K_max = 2
    ks = np.array([2, 2, 1])  # the third run uses only its first component
    np.testing.assert_array_equal(_singular(cov, ks, np.float64), [False, True, False])
    assert _singular(cov, ks, np.float32).tolist() == [False, True, False]
    # a grid whose every K=4 restart collapses on repeated rows has a NaN cell, no row
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]), 5, axis=0)
    x = np.vstack([x, np.random.default_rng(0).normal(size=(4, 2))])
    result = em.select_model(x, [1, 4], ("VVV",), n_init=2, random_state=0)
    assert np.isnan(result.values[1, 0]) and [r.n_components for r in result.rows] == [1]
    assert "failed at every restart" in str(result)


def test_float32_data_fit_in_float32():
    x = _faithful().astype(np.float32)
    result = em.select_model(x, [3], ("EEE",), n_init=2, random_state=0)
    est = result.best_estimator
    assert est.weights_.dtype == np.float32
    assert abs(result.best.bic - 2314.3) < 0.5


@pytest.mark.slow
def test_mclust_whole_grid_on_faithful():
    """mclustBIC(faithful): 14 models × K = 1..9; EEE with 3 components wins."""
    x = _faithful()
    result = em.select_model(x, range(1, 10), "mclust", n_init=8, random_state=0)
    assert result.models == _mclust_names()
    assert result.values.shape == (9, 14)
    assert (result.best.model, result.best.n_components) == ("EEE", 3)
    assert abs(result.best.bic - 2314.3) < 0.05
    # K = 1: the models with the same single covariance agree (VVV = EEE = EVV = ...)
    one = dict(zip(result.models, result.values[0], strict=True))
    for a, b in (("EII", "VII"), ("EEI", "VVI"), ("EEE", "VVV"), ("VEV", "EVE")):
        np.testing.assert_allclose(one[a], one[b], rtol=1e-9)


def _mclust_names():
    from jaxem.families.parsimonious import MCLUST_MODELS

    return MCLUST_MODELS
