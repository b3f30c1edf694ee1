"""Plots of real data: which coordinates the panels show, what= pictures, estimators, plot_bic.

Each picture's numbers are checked against NumPy/SciPy: principal components by
an eigendecomposition of the covariance matrix, densities and posteriors with
scipy.stats. Parameters are written by hand from the data's own classes (no
fitting), except for one small estimator fit shared by the module.
"""

import math
import types
import warnings

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Ellipse  # noqa: E402
from sklearn.datasets import load_digits, load_iris  # noqa: E402
from test_plot import ellipse_reference, png_size  # noqa: E402

import jaxem as em  # noqa: E402
from jaxem.plot import plot_bic, plot_fit  # noqa: E402

DIGITS, DIGIT = load_digits(return_X_y=True)
IRIS, IRIS_CLASS = load_iris(return_X_y=True)
FAITHFUL = em.datasets.load_faithful()


def class_gaussians(x, classes, kind):
    """Weights, means and covariances (of ``kind``) of the data's own classes, float64."""
    ks = np.unique(classes)
    w = np.array([np.mean(classes == k) for k in ks])
    mean = np.stack([x[classes == k].mean(0) for k in ks])
    full = np.stack([np.cov(x[classes == k].T) + 0.5 * np.eye(x.shape[1]) for k in ks])
    if kind == "full":
        cov = dense = full
    elif kind == "diag":
        cov = np.stack([np.diag(c) for c in full])
        dense = np.stack([np.diag(c) for c in cov])
    else:
        cov = np.array([np.trace(c) / x.shape[1] for c in full])
        dense = cov[:, None, None] * np.eye(x.shape[1])
    model = em.Mixture(em.MultivariateNormal(kind), len(ks))
    params = em.MixtureParams(w, em.MultivariateNormalParams(mean, cov))
    return model, params, (w, mean, dense)


def reference_pca(x):
    """Centre, principal axes (D, D) by decreasing variance, and the variances: eigh of cov."""
    center = x.mean(0)
    var, axes = np.linalg.eigh(np.cov(x.T, bias=True))
    order = np.argsort(var)[::-1]
    return center, axes[:, order], var[order]


def aligned(got, want):
    """``got``'s columns with the sign that matches ``want``'s (a PC's sign is arbitrary)."""
    return got * np.sign(np.sum(got * want, axis=0))


def scatter(ax):
    return ax.collections[0]


def ellipses(ax):
    return [p for p in ax.patches if isinstance(p, Ellipse)]


def contour(ax):
    (cs,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    return cs


def mixture_pdf(points, w, means, covs):
    return sum(
        w[k] * stats.multivariate_normal.pdf(points, means[k], covs[k]) for k in range(len(w))
    )


@pytest.fixture(scope="module")
def digits_diag():
    return class_gaussians(DIGITS, DIGIT, "diag")


@pytest.fixture(scope="module")
def iris_gm():
    with warnings.catch_warnings():  # ten iterations are enough to draw
        warnings.simplefilter("ignore", em.ConvergenceWarning)
        return em.GaussianMixture(3, max_iter=10, random_state=0).fit(IRIS)


# -- which coordinates -------------------------------------------------------------------
def test_digits_automatic_view_is_pca_of_the_data(digits_diag, tmp_path):
    """64 columns (3 constant): panels on PC1-PC3, scores equal to eigh's of the covariance."""
    model, params, _ = digits_diag
    fig = plot_fit(model, params, DIGITS, tmp_path / "d.png", figsize=(9, 3), dpi=50)
    assert png_size(tmp_path / "d.png") == (450, 150)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert len(panels) == 3
    center, axes, var = reference_pca(DIGITS)
    scores = (DIGITS - center) @ axes[:, :3]
    share = var[:3] / var.sum()
    for ax, (i, j) in zip(panels, [(0, 1), (0, 2), (1, 2)], strict=True):
        assert ax.get_xlabel() == f"PC{i + 1} ({100 * share[i]:.1f}% var)"
        assert ax.get_ylabel() == f"PC{j + 1} ({100 * share[j]:.1f}% var)"
        got = np.asarray(scatter(ax).get_offsets(), float)
        np.testing.assert_allclose(aligned(got, scores[:, [i, j]]), scores[:, [i, j]], atol=1e-8)
    # the shares as NumPy's own SVD gives them, too
    s = np.linalg.svd(DIGITS - DIGITS.mean(0), compute_uv=False)
    np.testing.assert_allclose(share, s[:3] ** 2 / np.sum(s**2), rtol=1e-10)
    # the sign of each axis is fixed: its largest loading is positive, so the
    # scores grow with that pixel
    first = np.asarray(scatter(panels[0]).get_offsets(), float)
    third = np.asarray(scatter(panels[1]).get_offsets(), float)[:, 1]
    for score, axis in zip([first[:, 0], first[:, 1], third], axes.T, strict=False):
        pixel = DIGITS[:, np.argmax(np.abs(axis))]
        assert np.dot(score, pixel - pixel.mean()) > 0


def test_automatic_columns_skip_constant_ones(tmp_path):
    """Digits' columns 0, 32 and 39 are always 0: with six columns, no panel uses them."""
    cols = [0, 1, 32, 10, 39, 20]
    x = DIGITS[:, cols]
    model, params, _ = class_gaussians(x, DIGIT, "diag")
    names = [f"pixel {c}" for c in cols]
    fig = plot_fit(model, params, x, tmp_path / "p.png", names=names)
    shown = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_xlabel()]
    assert shown == [("pixel 1", "pixel 10"), ("pixel 1", "pixel 20"), ("pixel 10", "pixel 20")]
    ax = fig.axes[0]
    np.testing.assert_array_equal(scatter(ax).get_offsets(), x[:, [1, 3]])
    assert "3 constant columns left out" in fig.get_suptitle()


def test_dims_choose_columns_and_pca(tmp_path):
    model, params, _ = class_gaussians(IRIS, IRIS_CLASS, "full")
    fig = plot_fit(model, params, IRIS, tmp_path / "a.png", dims=[3, 0])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x[3]", "x[0]")
    np.testing.assert_array_equal(scatter(ax).get_offsets(), IRIS[:, [3, 0]])
    fig = plot_fit(model, params, IRIS, tmp_path / "b.png", dims="pca")
    assert [a.get_xlabel()[:3] for a in fig.axes if a.get_visible()] == ["PC1", "PC1", "PC2"]


@pytest.mark.parametrize(
    "dims", ["pca2", (0,), (1, 1), (0, 4), (-1, 0), 2, (0.5, 1), [[0, 1]]], ids=repr
)
def test_bad_dims_and_what_raise(dims):
    model, params, _ = class_gaussians(IRIS, IRIS_CLASS, "full")
    with pytest.raises(ValueError, match=r"dims must be None.*'pca'.*e\.g\. dims=\(0, 1\)"):
        plot_fit(model, params, IRIS, dims=dims)


def test_bad_what_and_misplaced_options_raise():
    model, params, _ = class_gaussians(IRIS, IRIS_CLASS, "full")
    with pytest.raises(ValueError, match="what must be one of 'classification', 'uncertainty'"):
        plot_fit(model, params, IRIS, what="classes")
    one = em.MixtureParams(np.array([1.0]), em.NormalParams(np.zeros(1), np.ones(1)))
    with pytest.raises(ValueError, match="dims= is for scatter plots"):
        plot_fit(em.Mixture(em.Normal(), 1), one, IRIS[:, 0], dims=(0, 1))
    # a model with no Gaussian marginal on more than two columns has no density picture
    rate = em.ExponentialParams(np.ones((2, 3)))
    with pytest.raises(ValueError, match="what='density' needs Gaussian components"):
        plot_fit(
            em.Mixture(em.Exponential(), 2),
            em.MixtureParams(np.array([0.5, 0.5]), rate),
            IRIS[:, :3],
            what="density",
        )


# -- projected Gaussians -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "spherical"])
def test_projected_ellipses_are_v_sigma_v(kind, tmp_path):
    """Each ellipse on PCa-PCb is the contour of Vᵀ Σ V's block, centred at Vᵀ(μ - x̄)."""
    model, params, (w, mean, cov) = class_gaussians(DIGITS, DIGIT, kind)
    fig = plot_fit(model, params, DIGITS, tmp_path / "e.png", figsize=(6, 2), dpi=40)
    center, axes, _ = reference_pca(DIGITS)
    shown = np.asarray(scatter(fig.axes[0]).get_offsets(), float)
    v = aligned(axes[:, :2], np.linalg.lstsq(DIGITS - center, shown, rcond=None)[0])
    (ax_01,) = [ax for ax in fig.axes if ax.get_xlabel()[:3] == "PC1" and "PC2" in ax.get_ylabel()]
    found = ellipses(ax_01)
    assert len(found) == 3 * len(w)
    for k in range(len(w)):
        c2 = v.T @ cov[k] @ v
        for n_sigma in (1, 2, 3):
            e = found[3 * k + n_sigma - 1]
            width, height, angle = ellipse_reference(c2, n_sigma)
            np.testing.assert_allclose(e.center, (mean[k] - center) @ v, atol=1e-8)
            np.testing.assert_allclose([e.width, e.height], [width, height], rtol=1e-6)
            turn = (e.angle - angle) % 180
            assert min(turn, 180 - turn) < 1e-4 or kind == "spherical"


# -- what= -------------------------------------------------------------------------------
def test_uncertainty_sizes_follow_one_minus_max_responsibility(tmp_path):
    model, params, (w, mean, cov) = class_gaussians(IRIS, IRIS_CLASS, "full")
    fig = plot_fit(model, params, IRIS, tmp_path / "u.png", what="uncertainty")
    log_joint = np.log(w) + np.stack(
        [stats.multivariate_normal.logpdf(IRIS, mean[k], cov[k]) for k in range(3)], 1
    )
    u = 1 - np.exp(log_joint.max(1) - logsumexp(log_joint, axis=1))
    resp = np.asarray(em.responsibilities(model, params, IRIS), float)
    np.testing.assert_allclose(1 - resp.max(1), u, atol=1e-5)
    for ax in [a for a in fig.axes if a.get_visible()]:
        points, circled = ax.collections[:2]
        sizes = points.get_sizes()
        # sizes are an increasing affine function of the uncertainty (5 when certain)
        slope, intercept = np.polyfit(u, sizes, 1)
        assert slope > 0 and intercept == pytest.approx(5, abs=1e-3)
        np.testing.assert_allclose(sizes, intercept + slope * u, atol=1e-3)
        # the circled rows are the most uncertain 5%
        top = u >= max(np.quantile(u, 0.95), 0.01)
        assert 0 < top.sum() < 0.1 * len(u)
        np.testing.assert_allclose(circled.get_offsets(), scatter(ax).get_offsets()[top])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    cut = max(np.quantile(u, 0.95), 0.01)
    assert labels[-1] == f"uncertainty ≥ {cut:.2g} ({top.sum()} rows)"


def test_uncertainty_one_column(tmp_path):
    x = FAITHFUL[:, 0]
    w, m, var = np.array([0.35, 0.65]), np.array([2.04, 4.29]), np.array([0.07, 0.17])
    params = em.MixtureParams(w, em.NormalParams(m, var))
    fig = plot_fit(em.Mixture(em.Normal(), 2), params, x, tmp_path / "u1.png", what="uncertainty")
    log_joint = np.log(w) + stats.norm.logpdf(x[:, None], m, np.sqrt(var))
    u = 1 - np.exp(log_joint.max(1) - logsumexp(log_joint, axis=1))
    (ax,) = fig.axes
    offsets = np.asarray(ax.collections[1].get_offsets(), float)  # after the vertical lines
    np.testing.assert_allclose(offsets, np.column_stack([x, u]), atol=2e-5)


def test_density_contours_against_scipy_two_columns(tmp_path):
    """Old Faithful: levels are the density's quantiles at the data; vertices lie on them."""
    w, mean = np.array([0.36, 0.64]), np.array([[2.04, 54.5], [4.29, 80.0]])
    cov = np.array([[[0.07, 0.44], [0.44, 33.7]], [[0.17, 0.94], [0.94, 36.0]]])
    params = em.MixtureParams(w, em.MultivariateNormalParams(mean, cov))
    model = em.Mixture(em.MultivariateNormal(), 2)
    fig = plot_fit(model, params, FAITHFUL, tmp_path / "f.png", what="density")
    cs = contour(fig.axes[0])
    at_data = mixture_pdf(FAITHFUL, w, mean, cov)
    np.testing.assert_allclose(cs.levels, np.quantile(at_data, [0.05, 0.25, 0.5, 0.75, 0.95]))
    for level, path in zip(cs.levels, cs.get_paths(), strict=True):
        vertices = path.vertices[::7]
        np.testing.assert_allclose(mixture_pdf(vertices, w, mean, cov), level, rtol=0.02)
    # each labelled contour encloses that share of the rows
    assert sorted(cs.labelFmt.values()) == sorted(["5%", "25%", "50%", "75%", "95%"])
    for level, label in cs.labelFmt.items():
        share = np.mean(at_data >= level)
        assert share == pytest.approx(float(label[:-1]) / 100, abs=2 / len(at_data))


def test_density_on_principal_components(tmp_path):
    """Iris on PC1-PC2: the contours are the exact 2-D marginal of the projected mixture."""
    model, params, (w, mean, cov) = class_gaussians(IRIS, IRIS_CLASS, "full")
    fig = plot_fit(model, params, IRIS, tmp_path / "pd.png", what="density", dims="pca")
    ax = fig.axes[0]
    center, axes, _ = reference_pca(IRIS)
    scores = np.asarray(scatter(ax).get_offsets(), float)
    v = aligned(axes[:, :2], np.linalg.lstsq(IRIS - center, scores, rcond=None)[0])
    means2 = (mean - center) @ v
    covs2 = np.einsum("di,kde,ej->kij", v, cov, v)
    cs = contour(ax)
    at_data = mixture_pdf(scores, w, means2, covs2)
    np.testing.assert_allclose(cs.levels, np.quantile(at_data, [0.05, 0.25, 0.5, 0.75, 0.95]))
    for level, path in zip(cs.levels, cs.get_paths(), strict=True):
        vertices = path.vertices[::5]
        np.testing.assert_allclose(mixture_pdf(vertices, w, means2, covs2), level, rtol=0.02)


def test_density_of_a_non_gaussian_model_on_two_columns(tmp_path):
    """Two exponential columns: the model's own density, on a grid inside the data's box."""
    rate = np.array([[1.0, 0.2], [0.3, 2.0]])
    x = np.random.default_rng(0).exponential(1 / rate[[0] * 150 + [1] * 100])
    params = em.MixtureParams(np.array([0.6, 0.4]), em.ExponentialParams(rate))
    model = em.Mixture(em.Exponential(), 2)
    fig = plot_fit(model, params, x, tmp_path / "x.png", what="density")
    cs = contour(fig.axes[0])

    def pdf(p):
        return sum(
            wk * stats.expon.pdf(p[:, 0], scale=1 / r[0]) * stats.expon.pdf(p[:, 1], scale=1 / r[1])
            for wk, r in zip([0.6, 0.4], rate, strict=True)
        )

    np.testing.assert_allclose(
        cs.levels, np.quantile(pdf(x), [0.05, 0.25, 0.5, 0.75, 0.95]), rtol=1e-5
    )
    vertices = np.concatenate([p.vertices for p in cs.get_paths()])
    assert np.all(vertices >= x.min(0)) and np.all(vertices <= x.max(0))


# -- estimators --------------------------------------------------------------------------
def picture(fig):
    """The numbers a scatter figure draws, panel by panel."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        out.append(
            (
                ax.get_xlabel(),
                ax.get_ylabel(),
                [np.asarray(c.get_offsets(), float) for c in ax.collections],
                [np.asarray(c.get_facecolors(), float) for c in ax.collections],
                [np.asarray(c.get_sizes(), float) for c in ax.collections],
                [(e.center, e.width, e.height, e.angle) for e in ellipses(ax)],
            )
        )
    return out


@pytest.mark.parametrize("what", ["classification", "uncertainty"])
def test_estimator_draws_what_its_model_and_params_draw(iris_gm, what, tmp_path):
    gm = iris_gm
    model = em.Mixture(em.MultivariateNormal("full"), 3)
    params = em.MixtureParams(gm.weights_, em.MultivariateNormalParams(gm.means_, gm.covariances_))
    by_estimator = plot_fit(gm, IRIS, tmp_path / "est.png", what=what, figsize=(6, 4), dpi=50)
    assert png_size(tmp_path / "est.png") == (300, 200)
    by_model = plot_fit(model, params, IRIS, tmp_path / "mod.png", what=what)
    got, want = picture(by_estimator), picture(by_model)
    assert len(got) == len(want) == 6
    for g, m in zip(got, want, strict=True):
        assert g[:2] == m[:2]
        for a, b in zip(g[2] + g[3] + g[4], m[2] + m[3] + m[4], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        for a, b in zip(g[5], m[5], strict=True):
            np.testing.assert_allclose(np.hstack(a), np.hstack(b), rtol=1e-6, atol=1e-9)
    # the other ways to call it
    fig = Figure()
    ax = fig.subplots()
    assert plot_fit(gm, IRIS, path_or_ax=ax, dims=(0, 1), what=what) is fig
    assert plot_fit(gm, x=IRIS, path_or_ax=tmp_path / "kw.png", what=what).axes


def test_unfitted_estimator_and_misuse_raise():
    with pytest.raises(TypeError, match="GaussianMixture is not fitted yet; call its fit"):
        plot_fit(em.GaussianMixture(2), IRIS, "never.png")
    with pytest.raises(TypeError, match="MixtureEstimator is not fitted yet"):
        plot_fit(em.MixtureEstimator(em.Poisson(), n_components=2), IRIS)


# -- plot_bic ----------------------------------------------------------------------------
def selection(values, best=("VVV", 3), criterion="bic"):
    return types.SimpleNamespace(
        criterion=criterion,
        models=("EII", "VII", "VVV"),
        n_components=(1, 2, 3, 4),
        values=np.asarray(values, float),
        best=types.SimpleNamespace(model=best[0], n_components=best[1]),
    )


VALUES = [[900.0, 905, 930], [700, np.nan, 650], [690, 680, 600], [695, 685, np.nan]]


def test_plot_bic_lines_gaps_and_best(tmp_path):
    path = tmp_path / "bic.png"
    fig = plot_bic(selection(VALUES), path, figsize=(6, 4), dpi=50)
    assert png_size(path) == (300, 200)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["EII", "VII", "VVV", "best: VVV, K=3"]
    table = np.array(VALUES)
    for j, name in enumerate(["EII", "VII", "VVV"]):
        np.testing.assert_array_equal(lines[name].get_xdata(), [1, 2, 3, 4])
        # NaN stays NaN: matplotlib leaves a gap in the line there
        np.testing.assert_array_equal(lines[name].get_ydata(), table[:, j])
    best = lines["best: VVV, K=3"]
    assert (list(best.get_xdata()), list(best.get_ydata())) == ([3], [600.0])
    assert ax.get_ylabel() == "BIC (lower is better)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(lines)
    assert list(ax.get_xticks()) == [1, 2, 3, 4]


def test_plot_bic_into_axes_and_bad_selections():
    fig = Figure()
    ax = fig.subplots()
    assert plot_bic(selection(VALUES, criterion="icl"), ax) is fig
    assert ax.get_ylabel() == "ICL (lower is better)" and ax.get_legend() is not None
    with pytest.raises(ValueError, match=r"values has shape \(3, 3\), expected"):
        plot_bic(selection(VALUES[:3]))
    with pytest.raises(ValueError, match="best fit .VVV, K=7. is not in the table"):
        plot_bic(selection(VALUES, best=("VVV", 7)))


def test_plot_bic_every_fit_of_a_model_failed():
    values = np.array(VALUES)
    values[:, 1] = np.nan
    fig = plot_bic(selection(values), Figure().subplots())
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels[1] == "VII (every fit failed)"
    assert math.isnan(fig.axes[0].get_lines()[1].get_ydata()[0])


def test_plot_bic_zooms_when_some_models_are_far_worse_and_sorts_k():
    values = np.array(VALUES)
    values[:, 0] = [5000.0, 4800, 4700, 4650]  # one model far above the others
    sel = selection(values[::-1])  # rows given as K = 4, 3, 2, 1
    sel.n_components = (4, 3, 2, 1)
    fig = plot_bic(sel, None)
    assert len(fig.axes) == 2
    line = next(ln for ln in fig.axes[0].get_lines() if ln.get_label() == "VVV")
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])  # sorted by K
    np.testing.assert_array_equal(line.get_ydata(), values[:, 2])
    finite = values[np.isfinite(values)]
    low, high = fig.axes[1].get_ylim()
    assert low < 600 < np.median(finite) < high < 4650  # from the best to the median fit
    assert len(plot_bic(selection(VALUES), None).axes) == 1  # no model far worse: one panel
    sel.n_components = (1, 1, 2, 3)
    with pytest.raises(ValueError, match="repeated entries"):
        plot_bic(sel)


def test_plot_fit_names_missing_or_mismatched_data():
    model = em.Mixture(em.MultivariateNormal("full"), 2)
    with pytest.raises(TypeError, match="x, the data the model was fitted to, is missing"):
        plot_fit(model, None)
    gm = em.GaussianMixture(2, random_state=0).fit(IRIS[:, :2])
    with pytest.raises(ValueError, match="X has 4 columns but the GaussianMixture was fitted on 2"):
        plot_fit(gm, IRIS)
