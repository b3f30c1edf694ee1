"""Saving and loading estimators: round trips, and loading never runs code from the file.

The fits reuse the shapes and settings of tests/test_estimators.py ((240, 2)
data, 3 components; 240 Poisson counts), so one session compiles them once.
"""

import pickle

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import jaxem as em

M0 = np.array([[-1.0, -1.0], [2.0, 0.0], [0.0, 3.0]])
_rng = np.random.default_rng(0)
X_SEP = np.vstack(
    [_rng.normal(c, s, (80, 2)) for c, s in (([0, 0], 1.0), ([5, 5], 0.7), ([0, 6], 0.5))]
)
X_OVERLAP = np.random.default_rng(1).normal(0.0, 2.0, (240, 2))


@pytest.fixture(scope="module")
def fitted():
    return em.GaussianMixture(3, random_state=0).fit(X_SEP)


@pytest.fixture(scope="module")
def poisson_fit():
    rng = np.random.default_rng(2)
    counts = np.concatenate([rng.poisson(2.0, 150), rng.poisson(9.0, 90)]).astype(float)
    start = em.MixtureParams(np.array([0.5, 0.5]), em.PoissonParams(rate=np.array([1.0, 4.0])))
    est = em.MixtureEstimator(em.Poisson(), 2, init=start, tol=0.0, max_iter=64).fit(counts)
    return counts, est


def test_save_load_round_trip(tmp_path, fitted, poisson_fit):
    counts, est = poisson_fit
    for model, x in ((fitted, X_OVERLAP), (est, counts)):
        path = tmp_path / f"{type(model).__name__}.npz"
        model.save(path)
        back = em.load(path)
        assert type(back) is type(model) and path.exists()
        np.testing.assert_array_equal(back.predict(x), model.predict(x))
        np.testing.assert_allclose(back.score_samples(x), model.score_samples(x), rtol=1e-12)
        for key, value in model.get_params().items():
            if key not in ("family", "init"):
                assert back.get_params()[key] == value
        for attr in ("converged_", "n_iter_", "lower_bound_", "n_features_in_", "weights_"):
            np.testing.assert_array_equal(getattr(back, attr), getattr(model, attr))
    assert isinstance(back.params_, em.PoissonParams) and isinstance(back.family, em.Poisson)
    assert isinstance(back.init, em.MixtureParams)
    # An unfitted estimator with array arguments and priors also round-trips.
    gm = em.GaussianMixture(3, covariance_type="diag", means_init=M0, random_state=7)
    em.save(gm, tmp_path / "unfitted")
    back = em.load(tmp_path / "unfitted")
    np.testing.assert_array_equal(back.means_init, M0)
    with pytest.raises(NotFittedError):
        back.predict(X_SEP)
    mp = em.MixtureEstimator(
        em.Normal(
            mean_prior=em.priors.Normal(0.0, 3.0), var_prior=em.priors.InverseGamma(2.0, 1.0)
        ),
        2,
        weights_prior=em.priors.Dirichlet(1.5),
    )
    mp.save(tmp_path / "prior.npz")
    back = em.load(tmp_path / "prior.npz")
    assert repr(back.family) == repr(mp.family) and repr(back.weights_prior) == repr(
        mp.weights_prior
    )


def test_loading_never_unpickles(tmp_path, fitted, monkeypatch):
    path = tmp_path / "gm.npz"
    fitted.save(path)

    def refuse(*args, **kwargs):
        raise AssertionError("em.load must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    np.testing.assert_array_equal(em.load(path).predict(X_SEP), fitted.predict(X_SEP))
    # A file with a pickled (object) array is refused by numpy, not executed.
    evil = tmp_path / "evil.npz"
    header = np.load(path, allow_pickle=False)["__jaxem__"]
    monkeypatch.undo()
    np.savez(evil, __jaxem__=header, payload=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        em.load(evil)
    # Only built-in classes are rebuilt: a header naming anything else is refused.
    for old, new, message in (
        ('"GaussianMixture"', '"os.system"', "unknown class 'os.system'"),
        ('"jaxem-estimator"', '"other"', "not a file written by em.save"),
    ):
        bad = tmp_path / "bad.npz"
        np.savez(bad, __jaxem__=np.asarray(str(header).replace(old, new)))
        with pytest.raises(ValueError, match=message):
            em.load(bad)


def test_saving_a_custom_family_says_what_to_do(tmp_path):
    class Laplace(em.Family):
        def log_prob(self, params, x):
            return -abs(x - params["loc"]) - np.log(2.0)

    with pytest.raises(
        TypeError, match=r"Laplace is not a built-in.*numpy.savez.*init=em.MixtureParams"
    ):
        em.MixtureEstimator(Laplace(), 2).save(tmp_path / "x.npz")
    with pytest.raises(TypeError, match=r"mean_prior.*functions"):
        em.MixtureEstimator(em.Normal(mean_prior=lambda m: -(m**2)), 2).save(tmp_path / "y.npz")
    with pytest.raises(TypeError, match="random_state to an int or None"):
        em.GaussianMixture(random_state=np.random.RandomState(0)).save(tmp_path / "z.npz")
