"""em.MixtureRegressor and `jaxem fit --model regression`, against em.fit and NumPy/scikit-learn.

One data set (NPreg, Leisch 2004: y = 5x + e and y = 15 + 10x - x^2 + e, sd 3)
and one estimator configuration are shared, so one program is compiled.
"""

import json
import warnings

import jax
import numpy as np
import pytest
from sklearn.metrics import r2_score

import jaxem as em
from jaxem import cli


def npreg(seed=0, n_per_class=100):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, 2 * n_per_class)
    cls = np.repeat([0, 1], n_per_class)
    y = np.where(cls == 0, 5 * x, 15 + 10 * x - x**2) + rng.normal(0, 3, x.shape)
    return np.column_stack([x, x**2]), y, cls


X, Y, CLS = npreg()


@pytest.fixture(scope="module")
def fitted():
    return em.MixtureRegressor("linear", 2, n_init=16, random_state=0).fit(X, Y)


def order(est):
    return np.argsort(est.intercept_)


def test_estimator_matches_em_fit_and_its_own_predictions(fitted):
    est = fitted
    assert est.coef_.dtype == np.float64 and est.coef_.shape == (2, 2)
    with jax.enable_x64(True):
        model = em.Mixture(em.LinearRegression(), 2)
        data = {"x": X, "y": Y}
        res = em.fit(model, data, key=jax.random.key(1), restarts=16)
        ref_order = np.argsort(np.asarray(res.params.components.intercept))
        c = res.params.components
        # The same optimum from other starts: the estimator's padding is a weighted fit.
        i = order(est)
        coef = np.asarray(c.coef)[ref_order]  # entries near 0 measured on the leaf's scale
        np.testing.assert_allclose(est.coef_[i], coef, rtol=1e-5, atol=1e-5 * np.abs(coef).max())
        np.testing.assert_allclose(
            est.intercept_[i], np.asarray(c.intercept)[ref_order], rtol=1e-5, atol=1e-5
        )
        np.testing.assert_allclose(est.var_[i], np.asarray(c.var)[ref_order], rtol=1e-5)
        np.testing.assert_allclose(
            est.weights_[i], np.asarray(res.params.weights)[ref_order], rtol=1e-5
        )
        ll = float(em.log_likelihood(model, res.params, data))
        post = np.asarray(em.responsibilities(model, res.params, data))[:, ref_order]
    # The class structure of NPreg is recovered (up to label switching).
    found = est.predict_component(X, Y)
    assert max(np.mean(found == CLS), np.mean(found != CLS)) > 0.85
    # predict: Σ_k w_k (x·coef_k + intercept_k), by hand.
    by_hand = (X @ est.coef_.T + est.intercept_) @ est.weights_
    np.testing.assert_allclose(est.predict(X), by_hand, rtol=1e-12)
    assert est.score(X, Y) == pytest.approx(r2_score(Y, by_hand), rel=1e-12)
    np.testing.assert_allclose(est.posterior_proba(X, Y)[:, order(est)], post, atol=1e-5)
    assert est.log_predictive_density(X, Y).sum() == pytest.approx(ll, rel=1e-9)
    n_params = 2 * (2 + 1 + 1) + 1
    assert est.bic(X, Y) == pytest.approx(-2 * ll + n_params * np.log(len(Y)), rel=1e-9)
    assert est.aic(X, Y) == pytest.approx(-2 * ll + 2 * n_params, rel=1e-9)


def test_estimator_float32_and_validation(fitted):
    est = em.MixtureRegressor("linear", 2, n_init=4, random_state=0)
    est.fit(X.astype(np.float32), Y.astype(np.float32))
    assert est.coef_.dtype == np.float32
    # The float32 fit reaches the float64 one's optimum (to float32 accuracy).
    np.testing.assert_allclose(
        est.coef_[order(est)], fitted.coef_[order(fitted)], rtol=2e-3, atol=2e-3
    )
    with pytest.raises(ValueError, match="requires y"):
        em.MixtureRegressor().fit(X, None)
    with pytest.raises(ValueError, match="different numbers of rows"):
        em.MixtureRegressor().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="family must be one of"):
        em.MixtureRegressor("gamma").fit(X, Y)
    with pytest.raises(em.NotFittedError):
        em.MixtureRegressor().predict(X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :1])
    with pytest.raises(ValueError, match="counts"):
        em.MixtureRegressor("poisson").fit(X, -np.abs(Y))
    with pytest.raises(ValueError, match="0 or 1"):
        em.MixtureRegressor("logistic").fit(X, Y)


@pytest.mark.slow
def test_sklearn_check_estimator_regressor():
    from sklearn.utils.estimator_checks import check_estimator

    # Random starts are drawn from the rows, so a row of weight 2 and a row
    # given twice do not draw the same starts (the fits then agree only when EM
    # finds the same optimum, which on the check's random data it need not).
    expected = {
        "check_sample_weight_equivalence_on_dense_data": "starts are drawn from the rows",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(em.MixtureRegressor(n_init=2), expected_failed_checks=expected)


def test_cli_regression_matches_em_fit(tmp_path, capsys):
    path = tmp_path / "npreg.csv"
    table = np.column_stack([X, Y])
    np.savetxt(path, table, delimiter=",", header="x,x2,y", comments="")
    out = tmp_path / "fit.json"
    args = ["fit", path, "-k", "2", "--model", "regression", "--response", "y"]
    png = tmp_path / "fit.png"
    assert cli.main([str(a) for a in args + ["--out", out, "--seed", "3", "--plot", png]]) == 0
    printed = capsys.readouterr().out
    assert "mixture of linear regressions of y on x, x2" in printed
    assert png.stat().st_size > 0
    record = json.loads(out.read_text())
    model = cli._regression_model("linear", 2)  # the CLI's model: its compiled program
    data = {"x": X.astype(np.float32), "y": Y.astype(np.float32)}
    res = em.fit(model, data, key=jax.random.key(3), restarts=16)
    i = np.argsort(np.asarray(res.params.components.intercept))
    np.testing.assert_allclose(
        record["params"]["coef"], np.asarray(res.params.components.coef)[i], rtol=1e-5
    )
    assert record["log_likelihood"] == pytest.approx(res.log_likelihood, rel=1e-6)
    assert record["n_parameters"] == 9
    # --columns picks the covariates (by name or index), in that order.
    assert cli.main([str(a) for a in args + ["--columns", "x2,0"]]) == 0
    assert "regressions of y on x2, x, K=2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "regression"], "needs --response"),
        (["--response", "y"], "applies to --model regression only"),
        (["--model", "regression", "--response", "z"], "unknown column 'z'"),
        (["--model", "regression", "--response", "y", "--family", "mvn"], "regression family"),
        (["--model", "regression", "--response", "y", "--columns", "y"], "also among"),
    ],
)
def test_cli_regression_errors(tmp_path, capsys, extra, message):
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([X[:20], Y[:20]]), delimiter=",", header="x,x2,y", comments="")
    code = cli.main(["fit", str(path), "-k", "2"] + extra)
    assert code != 0
    assert message in capsys.readouterr().err


def test_plot_regression_draws_each_components_mean(fitted, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    est = fitted
    params = em.MixtureParams(
        est.weights_, em.LinearRegressionParams(est.coef_, est.intercept_, est.var_)
    )
    model = em.Mixture(em.LinearRegression(), 2)
    data = {"x": X, "y": Y}
    with jax.enable_x64(True):
        fig = em.plot_fit(model, params, data, tmp_path / "reg.png", names=["x", "y"])
    assert (tmp_path / "reg.png").stat().st_size > 0
    ax = fig.axes[0]
    assert len(ax.lines) == 2  # x2 = x**2 is a function of x: the means are curves
    order = np.argsort(X[:, 0])
    for c, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_xdata(), X[order, 0])
        np.testing.assert_allclose(
            line.get_ydata(), X[order] @ est.coef_[c] + est.intercept_[c], rtol=1e-10
        )
    # The points are coloured by em.predict: each scatter holds one component's units.
    found = est.predict_component(X, Y)
    sizes = [len(col.get_offsets()) for col in ax.collections]
    assert sizes == [int(np.sum(found == c)) for c in range(2)]
