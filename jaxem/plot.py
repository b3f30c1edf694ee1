"""Plots of a fit: the fitted density over the data, component ellipses, the objective trace.

matplotlib is optional (``pip install "jaxem[plot]"``) and imported only inside
these functions, so ``import jaxem`` never pays for it.

- :func:`plot_fit` picks the picture from the data: one column gives the fitted
  mixture density (and each weighted component) over a histogram, beside the
  empirical CDF against the fitted one; counts and category codes give bars of
  the observed frequencies against the fitted probability mass; two or more
  columns give scatter plots coloured by the most probable component, with 1, 2
  and 3-sigma ellipses for Gaussian components.
- :func:`plot_history` draws the objective at every EM iteration.

Both return the ``matplotlib.figure.Figure``. Given a path they save to it
(PNG, PDF, SVG: by the file's extension) on a figure built without pyplot, so no
display is needed; given an ``Axes`` they draw the main panel into it; given
nothing they create the figure with pyplot (it shows in notebooks and with
``plt.show()``); given a sequence of ``Axes``, they fill those panels in order.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np

from jaxem import _validation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_fit", "plot_history"]

INSTALL_HINT = 'jaxem.plot needs matplotlib: pip install "jaxem[plot]"'

_N_GRID = 2001  # points per panel width for densities (the CDF grid has four times more)
_MAX_PAIRS = 6  # scatter panels drawn for (N, D) data


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return matplotlib


def _figure(path_or_ax, n_panels: int, figsize, dpi: float, nrows: int = 1):
    """``(fig, axes, path)``: axes is a flat list (just the given one for an Axes)."""
    _require_matplotlib()
    from matplotlib.axes import Axes

    if isinstance(path_or_ax, Axes):
        return path_or_ax.figure, [path_or_ax], None
    if _is_axes(path_or_ax):  # a sequence of Axes: the panels, main one first
        axes = list(np.ravel(path_or_ax))[:n_panels]
        return axes[0].figure, axes, None
    ncols = math.ceil(n_panels / nrows)
    if figsize is None:
        figsize = (4.8 * ncols, 3.8 * nrows)
    if path_or_ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, dpi=dpi, layout="constrained")
        path = None
    elif isinstance(path_or_ax, (str, os.PathLike)):
        from matplotlib.figure import Figure

        # No pyplot: no GUI backend and no global figure registry when saving.
        fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        path = os.fspath(path_or_ax)
    else:
        raise TypeError(
            "path_or_ax must be None, a file path or a matplotlib Axes, "
            f"got {type(path_or_ax).__name__}."
        )
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels], path


def _finish(fig, path, dpi):
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


# -- what the model is ------------------------------------------------------------------
def _families(model) -> list:
    """The component families of an ``em.Mixture``, one per component; [] for a plain Model."""
    from jaxem.mixture import Mixture

    if not isinstance(model, Mixture):
        return []
    if model.family is not None:
        return [model.family] * model.n_components
    return list(model.families)


def _is_discrete(model, x: np.ndarray) -> bool:
    families = _families(model)
    if families:
        return all(f.support_top(x) is not None for f in families)
    # A hand-written Model: integer data with few distinct values are treated as counts.
    return bool(np.all(x == np.round(x)) and np.unique(x).size <= 100)


def _inside_support(model, value: float) -> bool:
    """Whether every component family accepts ``value`` as a data point."""
    for family in {id(f): f for f in _families(model)}.values():
        try:
            family.validate_data(np.array([value]))
        except ValueError:
            return False
    return True


def _edge_of_support(model, outside: float, inside: float) -> float:
    """Bisect for the support's edge between a rejected and an accepted point."""
    for _ in range(60):
        mid = 0.5 * (outside + inside)
        if _inside_support(model, mid):
            inside = mid
        else:
            outside = mid
    return inside


def _weighted_components(model, params, grid: np.ndarray, ndim: int) -> np.ndarray:
    """``(G, K)`` densities ``w_k f_k(grid)``, from the model's own ``log_joint``."""
    import jax.numpy as jnp

    from jaxem import _validation

    g = jnp.asarray(grid, dtype=_validation.float_dtype())
    if ndim == 2:
        g = g[:, None]
    return np.exp(np.asarray(model.log_joint(params, g), dtype=np.float64))


def _component_labels(model, params, k: int) -> list[str]:
    weights = getattr(params, "weights", None)
    if weights is None:
        return [f"state {i + 1}" for i in range(k)]
    w = np.asarray(weights, dtype=np.float64)
    return [f"component {i + 1} (w={w[i]:.2f})" for i in range(k)]


def _colors(k: int):
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


# -- one column --------------------------------------------------------------------------
def _continuous_grid(model, x: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """A fine grid for the density and its integral, and the range to show."""
    families = _families(model)
    if families and all(f.support_kind == "circular" for f in families):
        return np.linspace(-np.pi, np.pi, _N_GRID), (-np.pi, np.pi)
    lo, hi = float(np.min(x)), float(np.max(x))
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    # The CDF integrates from the grid's start: go a full span past the data on
    # each side (the missing tail mass is then negligible for light tails),
    # but never outside the support (an exponential's density is not 0 below 0).
    start, stop = lo - span, hi + span
    if not _inside_support(model, start):
        start = _edge_of_support(model, start, lo)
    if not _inside_support(model, stop):
        stop = _edge_of_support(model, stop, hi)
    view = (max(start, lo - 0.05 * span), min(stop, hi + 0.05 * span))
    return np.linspace(start, stop, 4 * _N_GRID), view


def _mixture_cdf(model, params, grid: np.ndarray, ndim: int) -> np.ndarray:
    """The mixture density integrated from the grid's start, at every grid point.

    The midpoint rule: it never evaluates the density at the grid's ends, where
    it may be infinite (a gamma with concentration < 1 at 0) yet integrable.
    """
    mids = 0.5 * (grid[1:] + grid[:-1])
    steps = _weighted_components(model, params, mids, ndim).sum(axis=1) * np.diff(grid)
    return np.concatenate([[0.0], np.cumsum(steps)])


def _plot_continuous(axes, model, params, x, ndim, name):
    grid, view = _continuous_grid(model, x)
    comps = _weighted_components(model, params, grid, ndim)
    density = comps.sum(axis=1)
    k = comps.shape[1]
    colors = _colors(k)
    labels = _component_labels(model, params, k)

    ax = axes[0]
    bins = int(np.clip(round(math.sqrt(x.size)), 10, 80))
    heights, _, _ = ax.hist(
        x, bins=bins, density=True, color="0.8", edgecolor="white", label=f"data (n={x.size})"
    )
    # Where one component dominates the mixture the two curves coincide:
    # shaded areas keep every component visible under the mixture's line.
    for i in range(k):
        ax.fill_between(grid, comps[:, i], color=colors[i], alpha=0.3, lw=0)
        ax.plot(grid, comps[:, i], color=colors[i], lw=1.2, label=labels[i])
    ax.plot(grid, density, color="black", lw=1.8, label="fitted mixture")
    shown = (grid >= view[0]) & (grid <= view[1])
    # An integrable spike at the support's edge (a gamma with concentration < 1)
    # must not flatten the histogram.
    top = max(float(np.max(heights)), float(np.max(density[shown][1:-1], initial=0.0)))
    ax.set_ylim(0, 1.08 * min(top, 3.0 * float(np.max(heights)) if heights.size else top))
    ax.set_xlim(*view)
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    ax.set_title("fitted density")
    ax.legend(fontsize="small", frameon=False)

    if len(axes) > 1:
        ax = axes[1]
        xs = np.sort(x)
        ax.step(
            xs,
            np.arange(1, xs.size + 1) / xs.size,
            where="post",
            color="0.45",
            lw=1.6,
            label="data (ECDF)",
        )
        ax.plot(
            grid, _mixture_cdf(model, params, grid, ndim), color="black", lw=1.4, label="fitted CDF"
        )
        ax.set_xlim(*view)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(name)
        ax.set_ylabel("cumulative probability")
        ax.set_title("empirical vs fitted CDF")
        ax.legend(fontsize="small", frameon=False, loc="upper left")


def _plot_discrete(axes, model, params, x, ndim, name):
    families = _families(model)
    if families:
        lo = 0
        hi = max(f.support_top(x) for f in families)
    else:
        lo, hi = int(np.min(x)), int(np.max(x))
    values = np.arange(lo, hi + 1)
    comps = _weighted_components(model, params, values.astype(np.float64), ndim)
    pmf = comps.sum(axis=1)
    freq = np.array([np.count_nonzero(x == v) for v in values]) / x.size
    k = comps.shape[1]
    colors = _colors(k)
    labels = _component_labels(model, params, k)

    ax = axes[0]
    ax.bar(values, freq, width=0.8, color="0.82", label=f"data frequency (n={x.size})")
    for i in range(k):
        ax.plot(values, comps[:, i], "--", color=colors[i], lw=1.0, marker=".", label=labels[i])
    ax.plot(values, pmf, color="black", lw=1.2, marker="o", ms=4, label="fitted mixture")
    ax.set_xlabel(name)
    ax.set_ylabel("probability")
    ax.set_title("observed frequency vs fitted pmf")
    if values.size <= 12:
        ax.set_xticks(values)
    ax.legend(fontsize="small", frameon=False)

    if len(axes) > 1:
        ax = axes[1]
        # One step past the last value, so that the last jump shows its level.
        xs = np.append(values, values[-1] + 1)
        ecdf, cdf = np.cumsum(freq), np.cumsum(pmf)
        ecdf, cdf = np.append(ecdf, ecdf[-1]), np.append(cdf, cdf[-1])
        ax.step(xs, ecdf, where="post", color="0.45", lw=1.6, label="data (ECDF)")
        ax.step(xs, cdf, where="post", color="black", lw=1.2, ls="--", label="fitted CDF")
        ax.set_ylim(0, 1.02)
        if values.size <= 12:
            ax.set_xticks(values)
        ax.set_xlabel(name)
        ax.set_ylabel("cumulative probability")
        ax.set_title("empirical vs fitted CDF")
        ax.legend(fontsize="small", frameon=False, loc="lower right")


# -- two or more columns -----------------------------------------------------------------
def _component_covariances(model, params, dims: tuple[int, int]) -> list:
    """Each component's ``(mean (2,), cov (2, 2))`` on two columns, or ``None`` per component.

    Gaussian components only: ``MultivariateNormal`` (any covariance type: the
    marginal of two columns is the sub-block of the covariance) and ``Normal``
    on several columns (independent features: a diagonal covariance).

    Example:
        >>> _component_covariances(model, res.params, (0, 1))[0]   # (mean, cov) of component 1
    """
    families = _families(model)
    if not families:
        return []
    comps = params.components
    out = []
    for k, family in enumerate(families):
        if model.families is not None:  # heterogeneous: one component's parameters each
            out.append(family.gaussian_marginal(comps[k], None, dims))
        else:
            out.append(family.gaussian_marginal(comps, k, dims))
    return out


def _ellipse_geometry(cov: np.ndarray, n_sigma: float) -> tuple[float, float, float]:
    """``(width, height, angle in degrees)`` of the ``n_sigma`` Mahalanobis contour."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.0, None)
    angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
    return 2 * n_sigma * math.sqrt(vals[-1]), 2 * n_sigma * math.sqrt(vals[0]), angle


def _plot_pair(ax, x2, labels, gaussians, dims, names, colors, comp_labels, legend):
    from matplotlib.patches import Ellipse

    k = len(colors)
    point_colors = np.array(colors)[labels]
    ax.scatter(x2[:, 0], x2[:, 1], c=point_colors, s=10, alpha=0.65, linewidths=0)
    for i in range(k):
        g = gaussians[i] if i < len(gaussians) else None
        if g is None:
            continue
        mean, cov = g
        for n_sigma, alpha in ((1, 0.95), (2, 0.65), (3, 0.35)):
            width, height, angle = _ellipse_geometry(cov, n_sigma)
            ax.add_patch(
                Ellipse(
                    mean,
                    width,
                    height,
                    angle=angle,
                    fill=False,
                    edgecolor=colors[i],
                    lw=1.5,
                    alpha=alpha,
                    label=f"{comp_labels[i]}: 1/2/3σ" if n_sigma == 1 else None,
                )
            )
        ax.plot(*mean, marker="X", ms=9, color=colors[i], mec="black", mew=0.8, ls="none")
    if not any(g is not None for g in gaussians):
        for i in range(k):  # no ellipses to carry the legend: label the point colours
            ax.scatter([], [], color=colors[i], s=20, label=comp_labels[i])
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    if legend:
        ax.legend(fontsize="small", frameon=False, loc="best")


def _plot_columns(axes, model, params, x, names, pairs):
    import jaxem as em

    labels = np.asarray(em.predict(model, params, x))
    k = _n_states(model, params, x)
    colors = _colors(k)
    comp_labels = _component_labels(model, params, k)
    for n, (ax, dims) in enumerate(zip(axes, pairs, strict=False)):
        gaussians = _component_covariances(model, params, dims)
        _plot_pair(ax, x[:, dims], labels, gaussians, dims, names, colors, comp_labels, n == 0)
    axes[0].set_title("data coloured by most probable component")


def _plot_item_parameters(axes, model, params, names):
    """Discrete multi-column data (items): each component's parameter per column."""
    family = _families(model)[0]
    comps = params.components
    k = model.n_components
    labels = _component_labels(model, params, k)
    if family.support_kind == "categories":  # per column, the expected code
        table = np.asarray(family.location(comps), dtype=np.float64)
        what = "expected category code"
    else:
        field = comps._fields[0]
        table = np.asarray(getattr(comps, field), dtype=np.float64)
        what = field
    ax = axes[0]
    im = ax.imshow(table, aspect="auto", cmap="viridis")
    ax.set_yticks(range(k), labels)
    ax.set_xticks(range(table.shape[1]), names, rotation=45, ha="right")
    for (i, j), v in np.ndenumerate(table):
        bright = im.norm(v) > 0.6  # viridis is light at its top
        ax.text(
            j,
            i,
            f"{v:.2g}",
            ha="center",
            va="center",
            fontsize="small",
            color="black" if bright else "white",
        )
    ax.figure.colorbar(im, ax=ax, label=what)
    ax.set_title(f"fitted {what} per column")


def _n_states(model, params, x) -> int:
    n = getattr(model, "n_components", None)
    if n is not None:
        return int(n)
    return int(np.shape(model.log_joint(params, x[:1]))[-1])


# -- public ------------------------------------------------------------------------------
def plot_fit(
    model,
    params,
    x,
    path_or_ax=None,
    *,
    names: list[str] | None = None,
    discrete: bool | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
    lengths=None,
) -> Figure:
    """Draw a fitted model over its data; return the matplotlib ``Figure``.

    - An ``em.HMM`` (data with ``lengths=``, or a list of sequences): the
      first sequence over time (its first column, at most 2000 steps) coloured
      by the Viterbi state, with each state's location as a dashed line, and
      below it the smoothed state probabilities ``p(z_t | x)``.

    - ``(N,)`` (or ``(N, 1)``) continuous data: a histogram with the fitted
      mixture density and each weighted component ``w_k f_k``, and the empirical
      CDF against the fitted CDF (the density integrated numerically on a grid,
      so any family works, a hand-written ``em.Model`` too).
    - Counts and codes (``Poisson``, ``Binomial``, ``Bernoulli``, ``Categorical``,
      or ``discrete=True``): bars of observed frequencies against the fitted pmf.
    - ``(N, D)`` with ``D >= 2``: scatter plots of pairs of columns (up to six
      pairs) coloured by ``em.predict``, with each Gaussian component's 1, 2 and
      3-sigma ellipses (``MultivariateNormal`` of any covariance type, or
      ``Normal`` on several columns). Discrete items get a table of the fitted
      parameter per component and column.

    Rows with missing values (NaN) are left out of the picture.

    Args:
        model: the fitted ``em.Mixture`` (or ``em.Model``).
        params: its parameters, e.g. ``FitResult.params``.
        x: the data it was fitted to, ``(N,)`` or ``(N, D)``.
        path_or_ax: ``None`` (a new pyplot figure), a file path to save to, a
            matplotlib ``Axes`` to draw the main panel into, or a sequence of
            ``Axes`` for the panels (one column: density, then CDF).
        names: column names for the axis labels.
        discrete: force (``True``) or forbid (``False``) the bar chart; by
            default it follows the family.
        title: a title over the figure.
        figsize, dpi: the figure's size in inches and resolution: a saved PNG
            is ``figsize * dpi`` pixels.

    Example:
        >>> from jaxem.plot import plot_fit
        >>> res = em.fit(model, x, key=jax.random.key(0), restarts=16)
        >>> plot_fit(model, res.params, x, "fit.png")
    """
    _require_matplotlib()
    from jaxem.hmm import HMM

    if isinstance(model, HMM):
        return _plot_hmm(model, params, x, lengths, path_or_ax, names, title, figsize, dpi)
    if lengths is not None:
        raise TypeError("plot_fit: lengths= is for an em.HMM's sequences.")
    if getattr(model, "_reads_units", lambda: False)():
        return _plot_regression(model, params, x, path_or_ax, names, title, figsize, dpi)
    if _validation.is_unit_tree(x):
        raise TypeError(
            "plot_fit draws arrays, HMMs and mixtures of regressions; for a model on a data "
            "pytree draw what matters with matplotlib (em.responsibilities gives the posterior)."
        )
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[0] == 0:
        raise ValueError(
            f"plot_fit: x must have shape (N,) or (N, D) with N >= 1, got {arr.shape}."
        )
    ndim = arr.ndim
    d = 1 if ndim == 1 else arr.shape[1]
    if names is None:
        names = ["x"] if d == 1 else [f"x[{j}]" for j in range(d)]
    names = list(names)
    if len(names) != d:
        raise ValueError(f"plot_fit: {len(names)} names for {d} columns.")
    rows = arr.reshape(arr.shape[0], -1)
    complete = ~np.isnan(rows).any(axis=1)
    if not complete.any():
        raise ValueError("plot_fit: every row has a missing value; nothing to draw.")
    arr = arr[complete]
    if d == 1:
        flat = arr.reshape(-1)
        if discrete is None:
            discrete = _is_discrete(model, flat)
        fig, axes, path = _figure(path_or_ax, 2, figsize, dpi)
        draw = _plot_discrete if discrete else _plot_continuous
        draw(axes, model, params, flat, ndim, names[0])
    elif getattr(model, "family", None) is not None and (
        discrete if discrete is not None else _is_discrete(model, arr)
    ):
        if figsize is None:
            figsize = (max(6.4, 2.5 + 0.7 * d), max(3.2, 1.0 + 0.6 * model.n_components))
        fig, axes, path = _figure(path_or_ax, 1, figsize, dpi)
        _plot_item_parameters(axes, model, params, names)
    else:
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)][:_MAX_PAIRS]
        nrows = 1 if len(pairs) <= 3 else 2
        if figsize is None and len(pairs) == 1 and not _is_axes(path_or_ax):
            figsize = (6.4, 5.2)
        fig, axes, path = _figure(path_or_ax, len(pairs), figsize, dpi, nrows=nrows)
        _plot_columns(axes, model, params, arr, names, pairs[: len(axes)])
    if title is not None:
        if _is_axes(path_or_ax):
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    n_left = int((~complete).sum())
    if n_left:
        axes[0].annotate(
            f"{n_left} rows with missing values not shown",
            (0.01, 0.01),
            xycoords="figure fraction",
            fontsize="x-small",
        )
    return _finish(fig, path, dpi)


_MAX_STEPS = 2000


def _plot_hmm(model, params, x, lengths, path_or_ax, names, title, figsize, dpi):
    """The first sequence over time, coloured by its Viterbi path; state probabilities below."""
    from jaxem.estep import predict, responsibilities
    from jaxem.hmm import sequences

    data = sequences(x, lengths)
    t_len = int(np.asarray(data.mask)[0].sum())
    own = np.asarray(data.x)[0, :t_len]  # (T,) or (T, D), as the model reads it
    missing = "marginalize" if np.isnan(own).any() else None
    path = np.asarray(predict(model, params, [own], missing=missing))
    post = np.asarray(responsibilities(model, params, [own], missing=missing))
    first = own.reshape(t_len, -1)
    shown = min(t_len, _MAX_STEPS)
    k = model.n_states
    colors = _colors(k)
    if figsize is None:
        figsize = (9.6, 5.6)
    fig, axes, out = _figure(path_or_ax, 2, figsize, dpi, nrows=2)
    steps = np.arange(shown)
    name = (names or ["x"])[0]
    ax = axes[0]
    if shown <= 500:  # a line through more steps only hides the points
        ax.plot(steps, first[:shown, 0], color="0.75", lw=0.6, zorder=1)
    for s in range(k):
        at = path[:shown] == s
        ax.scatter(steps[at], first[:shown, 0][at], s=6, color=colors[s], label=f"state {s}")
    where = np.asarray(model.emission.location(params.emissions), dtype=np.float64)
    where = where.reshape(k, -1)[:, 0]
    for s in range(k):
        if np.isfinite(where[s]):
            ax.axhline(where[s], color=colors[s], ls="--", lw=0.8)
    ax.set_ylabel(name)
    ax.set_title(
        f"sequence 1 of {data.x.shape[0]}: steps 0-{shown - 1} of {t_len}, "
        "coloured by the Viterbi path",
        fontsize="small",
    )
    ax.legend(fontsize="x-small", markerscale=2, ncols=min(k, 6), loc="upper right")
    axes[1].stackplot(steps, post[:shown].T, colors=colors, alpha=0.8)
    axes[1].set_ylim(0, 1)
    axes[1].set_xlim(axes[0].get_xlim())
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("p(state | x)")
    if title is not None:
        fig.suptitle(title)
    return _finish(fig, out, dpi)


def _plot_regression(model, params, data, path_or_ax, names, title, figsize, dpi):
    """The response against the first covariate, coloured by component, with each fitted mean.

    A second panel, for a mixture of experts: each component's weight against
    the first gating covariate.
    """
    from jaxem.estep import predict

    family = model.family if model.family is not None else model.families[0]
    data = _validation.prepare_data(model, data, fitting=False)
    x0 = np.asarray(family.design(data), np.float64)
    y = np.asarray(family.response_values(data), np.float64)
    label = np.asarray(predict(model, params, data))
    means = np.concatenate(
        [
            np.asarray(b.family.mean_response(b.params, data), np.float64)
            for b in model.blocks(params.components)
        ],
        axis=1,
    )  # (N, K)
    k = model.n_components
    colors = _colors(k)
    gated = model.gating is not None
    if figsize is None:
        figsize = (11.0, 4.6) if gated else (6.4, 4.8)
    fig, axes, out = _figure(path_or_ax, 2 if gated else 1, figsize, dpi)
    names = list(names) if names is not None else [family.covariates, family.response]
    ax = axes[0]
    order = np.argsort(x0[:, 0], kind="stable")
    # Fitted means as curves when x is one column, or when the other columns are
    # functions of the first (a polynomial); else as points at the data.
    as_curve = x0.shape[1] == 1 or all(
        np.all(np.diff(x0[order, 0]) > 0) and _is_function_of(x0[order, 0], x0[order, j])
        for j in range(1, x0.shape[1])
    )
    for c in range(k):
        at = label == c
        ax.scatter(x0[at, 0], y[at], s=10, color=colors[c], alpha=0.7, label=f"component {c}")
        if as_curve:
            ax.plot(x0[order, 0], means[order, c], color=colors[c], lw=2)
        else:
            ax.scatter(x0[:, 0], means[:, c], s=3, marker="x", color=colors[c], alpha=0.5)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1] if len(names) > 1 else family.response)
    what = "lines" if as_curve else "crosses"
    ax.set_title(f"coloured by em.predict; {what}: each component's mean", fontsize="small")
    ax.legend(fontsize="x-small", markerscale=2)
    if gated:
        w = np.asarray(model.gating.design(data), np.float64)
        weights = np.asarray(model.gating.weights(params.weights, data), np.float64)
        by_w = np.argsort(w[:, 0], kind="stable")
        for c in range(k):
            axes[1].plot(w[by_w, 0], weights[by_w, c], ".", ms=3, color=colors[c])
        axes[1].set_ylim(0, 1)
        axes[1].set_xlabel(model.gating.covariates)
        axes[1].set_ylabel("weight (gating)")
        axes[1].set_title("each component's weight for the unit", fontsize="small")
    if title is not None:
        fig.suptitle(title)
    return _finish(fig, out, dpi)


def _is_function_of(first: np.ndarray, other: np.ndarray) -> bool:
    """Whether ``other`` (sorted by ``first``) is a smooth function of it: no zigzag.

    A polynomial term is monotone between its few turning points; an
    independent covariate changes direction at about two thirds of the steps.
    """
    turns = np.sum(np.diff(np.sign(np.diff(other))) != 0)
    return bool(turns <= max(2, 0.05 * len(other)))


def _is_axes(obj) -> bool:
    """An ``Axes``, or a non-empty sequence of them."""
    from matplotlib.axes import Axes

    if isinstance(obj, Axes):
        return True
    if isinstance(obj, (list, tuple, np.ndarray)):
        flat = list(np.ravel(np.asarray(obj, dtype=object)))
        return bool(flat) and all(isinstance(a, Axes) for a in flat)
    return False


def plot_history(
    history,
    path_or_ax=None,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Draw the objective at every EM iteration; return the matplotlib ``Figure``.

    Beside the trace, the improvement per iteration on a log scale (EM's linear
    convergence shows as a straight line). With an ``Axes``, only the trace.

    Args:
        history: ``FitResult.history`` (or the ``FitResult`` itself): the
            objective at the start and after each iteration.
        path_or_ax: ``None``, a file path to save to, a matplotlib ``Axes`` (the
            trace only) or two ``Axes`` (trace, improvement).
        title: a title over the figure.
        figsize, dpi: size in inches and resolution (a PNG is ``figsize * dpi`` pixels).

    Example:
        >>> from jaxem.plot import plot_history
        >>> plot_history(res, "history.png")
    """
    _require_matplotlib()
    h = np.asarray(getattr(history, "history", history), dtype=np.float64).reshape(-1)
    if h.size == 0:
        raise ValueError("plot_history: history is empty.")
    fig, axes, path = _figure(path_or_ax, 2, figsize, dpi)
    it = np.arange(h.size)
    marker = "o" if h.size <= 40 else None
    ax = axes[0]
    ax.plot(it, h, color="black", lw=1.5, marker=marker, ms=3, label="objective")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective (log-likelihood + log prior)")
    ax.set_title(f"objective per iteration ({h.size - 1} iterations)")
    if len(axes) > 1:
        ax = axes[1]
        gain = np.diff(h)
        positive = gain > 0
        if positive.any():
            ax.semilogy(
                it[1:][positive], gain[positive], color="black", lw=1.2, marker=marker, ms=3
            )
        ax.set_xlabel("iteration")
        ax.set_ylabel("improvement")
        ax.set_title("improvement per iteration")
        ax.set_xlim(0, max(h.size - 1, 1))
    if title is not None:
        if _is_axes(path_or_ax):
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    return _finish(fig, path, dpi)
