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
    assert "Model selection by BIC (lower is better)" in text
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["1", "full", "3"] and lines[3].split()[:3] == ["2", "full", "2"]
    assert "K=3" in repr(result)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(criterion="icl"), "criterion must be 'bic' or 'aic'"),
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
