"""Plots: files of the requested size, and what they draw against scipy / numpy references.

Parameters are written by hand (no fitting, nothing to compile): the plots only
evaluate the model's densities and `em.predict`.
"""

import math
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
from matplotlib.patches import Ellipse  # noqa: E402

import jaxem as em  # noqa: E402
from jaxem.plot import plot_fit, plot_history  # noqa: E402

FAITHFUL = em.datasets.load_faithful()


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def line(ax, label):
    (found,) = [ln for ln in ax.get_lines() if ln.get_label() == label]
    return np.asarray(found.get_xdata(), float), np.asarray(found.get_ydata(), float)


def mixture_params(weights, components):
    return em.MixtureParams(np.asarray(weights, np.float32), components)


def test_one_column_density_and_cdf_against_scipy(tmp_path):
    x = FAITHFUL[:, 0]
    w, mean, var = np.array([0.35, 0.65]), np.array([2.04, 4.29]), np.array([0.07, 0.17])
    params = mixture_params(w, em.NormalParams(mean.astype(np.float32), var.astype(np.float32)))
    path = tmp_path / "eruptions.png"
    fig = plot_fit(em.Mixture(em.Normal(), 2), params, x, path, figsize=(6, 3), dpi=100)
    assert png_size(path) == (600, 300)
    density_ax, cdf_ax = fig.axes
    g, density = line(density_ax, "fitted mixture")
    pdf = (w * stats.norm.pdf(g[:, None], mean, np.sqrt(var))).sum(1)
    np.testing.assert_allclose(density, pdf, rtol=1e-4, atol=1e-7)
    _, comp = line(density_ax, "component 2 (w=0.65)")
    np.testing.assert_allclose(comp, 0.65 * stats.norm.pdf(g, 4.29, math.sqrt(0.17)), atol=1e-6)
    # The CDF is the density integrated on a grid: it must match the exact one.
    g, cdf = line(cdf_ax, "fitted CDF")
    exact = (w * stats.norm.cdf(g[:, None], mean, np.sqrt(var))).sum(1)
    np.testing.assert_allclose(cdf, exact, atol=1e-5)
    _, ecdf = line(cdf_ax, "data (ECDF)")
    np.testing.assert_allclose(ecdf, np.arange(1, 273) / 272)


def test_support_is_respected_exponential(tmp_path):
    # The exponential log-density formula is finite below 0: the grid must stop at 0.
    x = np.random.default_rng(0).exponential(1.0, 400)
    rate = np.array([0.5, 3.0])
    params = mixture_params([0.5, 0.5], em.ExponentialParams(rate.astype(np.float32)))
    fig = plot_fit(em.Mixture(em.Exponential(), 2), params, x, tmp_path / "e.png")
    g, cdf = line(fig.axes[1], "fitted CDF")
    assert g.min() >= 0 and g.min() < 1e-6
    exact = (0.5 * stats.expon.cdf(g[:, None], scale=1 / rate)).sum(1)
    np.testing.assert_allclose(cdf, exact, atol=1e-4)


@pytest.mark.parametrize("family", ["poisson", "categorical"])
def test_discrete_bars_against_frequencies_and_pmf(tmp_path, family):
    rng = np.random.default_rng(0)
    if family == "poisson":
        x = np.concatenate([rng.poisson(2.0, 200), rng.poisson(9.0, 100)]).astype(float)
        model = em.Mixture(em.Poisson(), 2)
        rate = np.array([2.1, 8.6])
        params = mixture_params([0.67, 0.33], em.PoissonParams(rate.astype(np.float32)))
        pmf = lambda v: (np.array([0.67, 0.33]) * stats.poisson.pmf(v[:, None], rate)).sum(1)
    else:
        x = rng.integers(0, 4, 300).astype(float)
        model = em.Mixture(em.Categorical(4), 2)
        probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
        params = mixture_params([0.5, 0.5], em.CategoricalParams(probs.astype(np.float32)))
        pmf = lambda v: 0.5 * probs[:, v.astype(int)].sum(0)
    path = tmp_path / "bars.png"
    fig = plot_fit(model, params, x, path, figsize=(5, 4), dpi=80)
    assert png_size(path) == (400, 320)
    bars_ax, cdf_ax = fig.axes
    heights = np.array([p.get_height() for p in bars_ax.patches])
    values = np.array([p.get_x() + p.get_width() / 2 for p in bars_ax.patches])
    np.testing.assert_allclose(values, np.arange(len(values)))
    np.testing.assert_allclose(heights, [np.mean(x == v) for v in values])
    v, fitted = line(bars_ax, "fitted mixture")
    np.testing.assert_allclose(fitted, pmf(v), rtol=1e-5, atol=1e-8)
    _, cdf = line(cdf_ax, "fitted CDF")
    np.testing.assert_allclose(cdf[:-1], np.cumsum(pmf(v)), rtol=1e-5)


def ellipse_reference(cov, n_sigma):
    """Width, height, angle of the n-sigma contour of a 2x2 covariance, in closed form."""
    a, b, c = cov[0, 0], cov[0, 1], cov[1, 1]
    half, root = (a + c) / 2, math.hypot((a - c) / 2, b)
    angle = math.degrees(0.5 * math.atan2(2 * b, a - c))
    return 2 * n_sigma * math.sqrt(half + root), 2 * n_sigma * math.sqrt(half - root), angle


COV_2D = {  # each covariance type's cov parameter, and the 2x2 covariance it means
    "full": (
        np.array([[[0.07, 0.44], [0.44, 33.7]], [[0.17, 0.94], [0.94, 36.0]]]),
        lambda c, k: c[k],
    ),
    "diag": (np.array([[0.07, 33.7], [0.17, 36.0]]), lambda c, k: np.diag(c[k])),
    "spherical": (np.array([0.5, 30.0]), lambda c, k: c[k] * np.eye(2)),
    "tied": (np.array([[0.12, 0.7], [0.7, 35.0]]), lambda c, k: c),
}


@pytest.mark.parametrize("kind", list(COV_2D))
def test_two_columns_scatter_and_ellipses(tmp_path, kind):
    cov, full = COV_2D[kind]
    w, mean = np.array([0.36, 0.64]), np.array([[2.04, 54.5], [4.29, 80.0]])
    model = em.Mixture(em.MultivariateNormal(kind), 2)
    params = mixture_params(w, em.MultivariateNormalParams(mean, cov))
    path = tmp_path / f"{kind}.png"
    fig = plot_fit(model, params, FAITHFUL, path, figsize=(5, 5), dpi=60)
    assert png_size(path) == (300, 300)
    (ax,) = fig.axes
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 6
    for i, e in enumerate(ellipses):
        k, n_sigma = divmod(i, 3)
        width, height, angle = ellipse_reference(full(cov, k), n_sigma + 1)
        np.testing.assert_allclose(e.center, mean[k])
        np.testing.assert_allclose([e.width, e.height], [width, height], rtol=1e-6)
        turn = (e.angle - angle) % 180  # an ellipse is the same turned by 180 degrees
        assert min(turn, 180 - turn) < 1e-6 or kind == "spherical"  # circles: any angle
    # Points coloured by the most probable component, computed with scipy.
    logp = np.stack(
        [stats.multivariate_normal.logpdf(FAITHFUL, mean[k], full(cov, k)) for k in range(2)], 1
    )
    labels = np.argmax(logp + np.log(w), axis=1)
    colors = ax.collections[0].get_facecolors()[:, :3]
    for k in range(2):
        assert len(np.unique(colors[labels == k], axis=0)) == 1
    assert not np.allclose(colors[labels == 0][0], colors[labels == 1][0])


def test_three_columns_give_every_pair(tmp_path):
    x = np.column_stack([FAITHFUL, FAITHFUL[:, 0] * 2 + 1])
    cov = np.stack([np.eye(3), 2 * np.eye(3)])
    params = mixture_params([0.5, 0.5], em.MultivariateNormalParams(x[:2], cov))
    fig = plot_fit(em.Mixture(em.MultivariateNormal(), 2), params, x, tmp_path / "p.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    pairs = {(ax.get_xlabel(), ax.get_ylabel()) for ax in visible}
    assert pairs == {("x[0]", "x[1]"), ("x[0]", "x[2]"), ("x[1]", "x[2]")}


def test_history_trace_and_improvement(tmp_path):
    history = -100 - 50 * np.exp(-np.arange(12.0))  # increasing, as EM
    path = tmp_path / "history.png"
    fig = plot_history(history, path, figsize=(8, 3), dpi=50)
    assert png_size(path) == (400, 150)
    trace, gains = fig.axes
    it, h = line(trace, "objective")
    np.testing.assert_array_equal(it, np.arange(12))
    np.testing.assert_allclose(h, history)
    (g,) = gains.get_lines()
    np.testing.assert_allclose(g.get_ydata(), np.diff(history))
    assert gains.get_yscale() == "log"


def test_without_matplotlib_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    params = mixture_params([1.0], em.NormalParams(np.zeros(1), np.ones(1)))
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install matplotlib"):
        plot_fit(em.Mixture(em.Normal(), 1), params, np.zeros(3))
    with pytest.raises(ImportError, match=r"pip install matplotlib"):
        plot_history(np.zeros(3))


def test_hand_written_model_and_axes(tmp_path):
    # Any em.Model: the two coins (integer heads: bars), drawn into a given Axes.
    from matplotlib.figure import Figure

    from jaxem import demos

    fig = Figure()
    ax = fig.subplots()
    p = np.array([0.8, 0.52])
    out = plot_fit(demos.coin_model(), {"p": p}, demos.COIN_HEADS, ax)
    assert out is fig and fig.axes == [ax]
    v, fitted = line(ax, "fitted mixture")
    ref = np.exp(logsumexp(stats.binom.logpmf(v[:, None], 10, p) + np.log(0.5), axis=1))
    np.testing.assert_allclose(fitted, ref, rtol=1e-5)


def test_hmm_states_over_time(tmp_path):
    """An HMM: the first sequence coloured by its Viterbi path, the posteriors stacked below."""
    from test_hmm import HMM, LENGTHS, SEQS, X, _start

    params = em.fit(HMM, X, lengths=LENGTHS, init=_start(), max_iter=20).params
    fig = plot_fit(HMM, params, X, tmp_path / "hmm.png", lengths=LENGTHS, names=["a", "b"])
    top, bottom = fig.axes
    path = np.asarray(em.predict(HMM, params, [SEQS[0]]))
    for s, points in enumerate(top.collections):
        np.testing.assert_allclose(points.get_offsets()[:, 1], SEQS[0][path == s, 0])
        np.testing.assert_array_equal(points.get_offsets()[:, 0], np.flatnonzero(path == s))
    post = np.asarray(em.responsibilities(HMM, params, [SEQS[0]]))
    # stackplot: the top edge of the last band is the sum of every state's probability, 1
    assert len(bottom.collections) == 3
    np.testing.assert_allclose(post.sum(1), 1, rtol=1e-5)
    assert png_size(tmp_path / "hmm.png") == (960, 560)
    with pytest.raises(TypeError, match="lengths= is for an em.HMM"):
        plot_fit(em.Mixture(em.Normal(), 2), None, X[:, 0], lengths=LENGTHS)
