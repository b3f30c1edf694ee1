"""Saving and loading estimators: round trips, and loading never runs code from the file.

The fits reuse the shapes and settings of tests/test_estimators.py ((240, 2)
data, 3 components; 240 Poisson counts), so one session compiles them once.
"""

import json
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


# -- em.load checks a file before it sets anything -----------------------------------


def _rewrite(src, dst, edit=None, **arrays):
    """Copy the saved file ``src`` to ``dst``: ``edit(header)`` returns the new header;
    ``arrays`` replace (or add) arrays, ``None`` drops one."""
    with np.load(src, allow_pickle=False) as data:
        contents = {k: data[k] for k in data.files}
    header = json.loads(str(contents.pop("__jaxem__")[()]))
    if edit is not None:
        header = edit(header)
    for key, value in arrays.items():
        if value is None:
            contents.pop(key)
        else:
            contents[key] = value
    np.savez(dst, __jaxem__=np.asarray(json.dumps(header)), **contents)
    return dst


def _set(path, value):
    """An ``edit`` that sets ``header[path[0]][path[1]]... = value``."""

    def edit(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return header

    return edit


@pytest.fixture(scope="module")
def saved(tmp_path_factory, fitted, poisson_fit):
    """The fitted GaussianMixture and MixtureEstimator (with init) as files."""
    folder = tmp_path_factory.mktemp("saved")
    fitted.save(folder / "gm.npz")
    poisson_fit[1].save(folder / "me.npz")
    return folder / "gm.npz", folder / "me.npz"


def test_load_rejects_a_header_that_is_not_an_object(tmp_path, saved):
    gm = saved[0]
    bad = _rewrite(gm, tmp_path / "list.npz", lambda h: [h])
    with pytest.raises(ValueError, match=r"list\.npz.*header is a list, expected an object"):
        em.load(bad)
    np.savez(tmp_path / "text.npz", __jaxem__=np.asarray("{not json"))
    with pytest.raises(ValueError, match=r"text\.npz.*header is not valid JSON"):
        em.load(tmp_path / "text.npz")
    np.savez(tmp_path / "numbers.npz", __jaxem__=np.arange(3.0))
    with pytest.raises(ValueError, match="expected a JSON string"):
        em.load(tmp_path / "numbers.npz")


def test_load_rejects_missing_unexpected_or_mistyped_header_entries(tmp_path, saved):
    gm, me = saved
    for src, edit, message in (
        (
            gm,
            lambda h: {k: v for k, v in h.items() if k != "state"},
            r"lacks the entries \['state'\]",
        ),
        (gm, _set(["extra"], 1), r"header has unexpected entries \['extra'\]"),
        (gm, _set(["params"], [3]), "header.params is a list, expected an object"),
        (gm, _set(["version"], True), "header.version is a boolean, expected an integer"),
        (gm, _set(["state", "n_iter_"], "5"), "header.state.n_iter_ is a string, expected an int"),
        (gm, _set(["state", "predict"], 1), r"header.state has unexpected entries \['predict'\]"),
        (gm, _set(["state", "_fit_ndim_"], 1), "_fit_ndim_ is 1"),
        (gm, _set(["state", "feature_names_in_"], ["a"]), "feature_names_in_ must be a list"),
        (gm, _set(["params", "tol"], [1e-3]), "header.params.tol is a list, expected a number"),
        (me, _set(["params_fields"], ["lam"]), r"params_fields is \['lam'\]; Poisson has"),
        (me, _set(["params", "init"], "x"), "header.params.init is a string, expected null"),
        (me, lambda h: {**h, "params": {}}, r"lacks the arguments \['n_components'\]"),
    ):
        with pytest.raises(ValueError, match=message):
            em.load(_rewrite(src, tmp_path / "bad.npz", edit))


def test_load_rejects_an_unknown_estimator_class(tmp_path, saved):
    for name in ("Pipeline", ["GaussianMixture"], None):
        bad = _rewrite(saved[0], tmp_path / "bad.npz", _set(["class"], name))
        with pytest.raises(ValueError, match=r"bad\.npz.* unknown class"):
            em.load(bad)


def test_load_restores_only_the_declared_attributes(tmp_path, saved):
    gm, me = saved
    bad = _rewrite(gm, tmp_path / "bad.npz", **{"attr.predict": np.zeros(3)})
    with pytest.raises(ValueError, match="'predict' is not an attribute GaussianMixture saves"):
        em.load(bad)
    # means_ is a GaussianMixture attribute, not a MixtureEstimator one.
    bad = _rewrite(me, tmp_path / "bad.npz", **{"attr.means_": np.zeros(2)})
    with pytest.raises(ValueError, match="'means_' is not an attribute MixtureEstimator saves"):
        em.load(bad)
    bad = _rewrite(gm, tmp_path / "bad.npz", _set(["params", "predict"], 1))
    with pytest.raises(ValueError, match="GaussianMixture has no argument 'predict'"):
        em.load(bad)
    bad = _rewrite(gm, tmp_path / "bad.npz", **{"payload": np.zeros(3)})
    with pytest.raises(ValueError, match=r"unexpected arrays \['payload'\]"):
        em.load(bad)
    bad = _rewrite(gm, tmp_path / "bad.npz", **{"attr.means_": None})
    with pytest.raises(ValueError, match=r"arrays \['attr.means_'\] are missing"):
        em.load(bad)


def test_load_rejects_arrays_that_are_not_real_numbers(tmp_path, saved, fitted):
    for value in (
        np.array(["a", "b", "c"]),
        np.ones(3, bool),
        fitted.weights_.astype(complex),
    ):
        bad = _rewrite(saved[0], tmp_path / "bad.npz", **{"attr.weights_": value})
        with pytest.raises(ValueError, match=r"'attr.weights_' has dtype .*expected float32"):
            em.load(bad)


def test_load_rejects_non_finite_arrays(tmp_path, saved, fitted, poisson_fit):
    means = fitted.means_.copy()
    means[1, 0] = np.nan
    bad = _rewrite(saved[0], tmp_path / "bad.npz", **{"attr.means_": means})
    with pytest.raises(ValueError, match="'attr.means_' has non-finite entries"):
        em.load(bad)
    rate = np.array([np.inf, 1.0])
    bad = _rewrite(saved[1], tmp_path / "bad.npz", **{"params_.rate": rate})
    with pytest.raises(ValueError, match="'params_.rate' has non-finite entries"):
        em.load(bad)


def test_load_rejects_arrays_of_the_wrong_shape(tmp_path, saved, fitted):
    gm, me = saved
    for src, edit, arrays, message in (
        (
            gm,
            None,
            {"attr.means_": np.zeros((3, 3))},
            r"means_' has shape \(3, 3\), expected \(3, 2\)",
        ),
        (
            gm,
            _set(["params", "n_components"], 4),
            {},
            r"weights_' has shape \(3,\), expected \(4,\)",
        ),
        # diag covariances where the header says "full"
        (gm, None, {"attr.covariances_": np.ones((3, 2))}, r"expected \(3, 2, 2\)"),
        (gm, _set(["params", "covariance_type"], "tied"), {}, r"expected \(2, 2\)"),
        (gm, None, {"attr.lower_bounds_": np.zeros(1)}, r"lower_bounds_' has shape \(1,\)"),
        (me, None, {"params_.rate": np.ones((2, 1))}, r"rate' has shape \(2, 1\), expected \(2,\)"),
        (me, None, {"init.components.rate": np.ones(3)}, "expected a leading axis of n_comp"),
    ):
        with pytest.raises(ValueError, match=message):
            em.load(_rewrite(src, tmp_path / "bad.npz", edit, **arrays))


def test_load_rejects_weights_that_are_negative_or_do_not_sum_to_one(tmp_path, saved):
    gm, me = saved
    for src, key, weights, message in (
        (gm, "attr.weights_", np.array([-0.2, 0.6, 0.6]), "'attr.weights_' has negative weights"),
        (gm, "attr.weights_", np.zeros(3), "the weights sum to 0, not 1"),
        (gm, "attr.weights_", np.array([0.5, 0.5, 0.1]), "the weights sum to 1.1, not 1"),
        (me, "attr.weights_", np.array([1.5, -0.5]), "negative weights"),
        (me, "init.weights", np.array([0.2, 0.2]), "'init.weights': the weights sum to 0.4"),
    ):
        with pytest.raises(ValueError, match=message):
            em.load(_rewrite(src, tmp_path / "bad.npz", **{key: weights}))
    # A user-given start is checked too.
    em.GaussianMixture(3, weights_init=[0.2, 0.3, 0.5]).save(tmp_path / "unfitted.npz")
    weights = np.array([0.2, 0.3, 0.6])
    bad = _rewrite(
        tmp_path / "unfitted.npz", tmp_path / "bad.npz", **{"param.weights_init": weights}
    )
    with pytest.raises(ValueError, match="'param.weights_init': the weights sum to 1.1"):
        em.load(bad)


def test_load_rejects_covariances_and_precisions_outside_their_support(tmp_path, saved, fitted):
    gm = saved[0]
    flipped = fitted.covariances_.copy()
    flipped[0] = -flipped[0]
    for arrays, message in (
        ({"attr.covariances_": flipped}, r"'attr.covariances_' is outside its support"),
        ({"attr.precisions_": -fitted.precisions_}, r"'attr.precisions_' is outside its support"),
        ({"attr.precisions_": 2 * fitted.precisions_}, "is not precisions_cholesky_ @"),
        (
            {"attr.covariances_": 2 * fitted.covariances_},
            "'attr.precisions_cholesky_' and 'attr.covariances_' disagree",
        ),
        (
            {"attr.precisions_cholesky_": np.swapaxes(fitted.precisions_cholesky_, 1, 2)},
            "is not upper-triangular",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            em.load(_rewrite(gm, tmp_path / "bad.npz", **arrays))
    # diag: variances must be positive, and the precisions their inverses.
    diag = em.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X_SEP)
    diag.save(tmp_path / "diag.npz")
    for arrays, message in (
        ({"attr.covariances_": -diag.covariances_}, "'attr.covariances_' is outside its support"),
        ({"attr.covariances_": 2 * diag.covariances_}, r"'attr.precisions_' is not 1 / "),
    ):
        with pytest.raises(ValueError, match=message):
            em.load(_rewrite(tmp_path / "diag.npz", tmp_path / "bad.npz", **arrays))
    # A user-given start is checked too.
    em.GaussianMixture(3, precisions_init=np.stack([np.eye(2)] * 3)).save(tmp_path / "p.npz")
    bad = _rewrite(
        tmp_path / "p.npz",
        tmp_path / "bad.npz",
        **{"param.precisions_init": -np.stack([np.eye(2)] * 3)},
    )
    with pytest.raises(ValueError, match="'param.precisions_init' is outside its support"):
        em.load(bad)


def test_load_checks_family_parameters_against_the_family_support(tmp_path, saved):
    me = saved[1]
    for key, value in (
        ("params_.rate", np.array([-1.0, 4.0])),
        ("init.components.rate", np.array([0.0, 4.0])),
    ):
        bad = _rewrite(me, tmp_path / "bad.npz", **{key: value})
        with pytest.raises(
            ValueError, match=rf"'{key}' is outside its support \(constraints.positive\)"
        ):
            em.load(bad)


def test_load_validates_constructor_arguments(tmp_path, saved):
    gm, me = saved
    unfitted = tmp_path / "unfitted.npz"
    em.GaussianMixture(2).save(unfitted)
    for src, path, value, message in (
        (gm, ["params", "covariance_type"], "bogus", "covariance_type must be one of"),
        (unfitted, ["params", "covariance_type"], "bogus", "covariance_type must be one of"),
        (unfitted, ["params", "n_components"], 0, "n_components must be >= 1"),
        (unfitted, ["params", "n_components"], 2.5, "n_components must be an integer"),
        (unfitted, ["params", "tol"], "small", "tol must be a finite number"),
        (unfitted, ["params", "init_params"], "os.system", "init_params must be one of"),
        (me, ["params", "n_components"], -1, "n_components must be >= 1"),
        (me, ["params", "missing"], "drop", "missing must be None"),
        (me, ["family", "args", "foo"], 1, "family Poisson has no argument 'foo'"),
        (me, ["family", "family"], "Pickle", "unknown family 'Pickle'"),
        (me, ["family", "family"], ["Poisson"], r"unknown family \['Poisson'\]"),
        (
            me,
            ["family"],
            {"family": "MultivariateNormal", "args": {"covariance_type": "x"}},
            "family MultivariateNormal: covariance_type must be one of",
        ),
        (me, ["family", "args"], [1], "args must be an object"),
        (
            me,
            ["weights_prior"],
            {"prior": "Dirichlet", "args": {"concentration": "x"}},
            "concentration must be a number",
        ),
    ):
        bad = _rewrite(src, tmp_path / "bad.npz", _set(path, value))
        with pytest.raises(ValueError, match=message):
            em.load(bad)
