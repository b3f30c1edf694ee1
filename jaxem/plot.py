"""Plots of a fit: the fitted density over the data, component ellipses, the objective trace.

matplotlib is optional (the ``plot`` extra) and imported only inside
these functions, so ``import jaxem`` never pays for it.

- :func:`plot_fit` picks the picture from the data: one column gives the fitted
  mixture density (and each weighted component) over a histogram, beside the
  empirical CDF against the fitted one; counts and category codes give bars of
  the observed frequencies against the fitted probability mass; two or more
  columns give scatter plots of pairs of the columns that vary (above six, of
  the first principal components), and ``what=`` chooses mclust's pictures:
  ``"classification"`` (coloured by the most probable component, with 1, 2 and
  3-sigma ellipses for Gaussian components), ``"uncertainty"`` or ``"density"``.
  It takes a model with its params, or a fitted estimator.
- :func:`plot_history` draws the objective at every EM iteration.
- :func:`plot_bic` draws a model selection's criterion against the number of
  components, one line per model.

All return the ``matplotlib.figure.Figure``. Given a path they save to it
(PNG, PDF, SVG: by the file's extension) on a figure built without pyplot, so no
display is needed; given an ``Axes`` they draw the main panel into it; given
nothing they create the figure with pyplot (it shows in notebooks and with
``plt.show()``); given a sequence of ``Axes``, they fill those panels in order.
"""

from __future__ import annotations

import math
import operator
import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from jaxem import _validation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_bic", "plot_fit", "plot_history"]

INSTALL_HINT = "jaxem.plot needs matplotlib: pip install matplotlib"

_N_GRID = 2001  # points per panel width for densities (the CDF grid has four times more)
WHATS = ("classification", "uncertainty", "density")  # plot_fit's pictures, as mclust's
_MAX_COLUMNS = 6  # above this many varying columns (15 pairs) the panels show principal components
_N_PCS = 3  # principal components drawn (three panels)
_N_GRID_2D = 200  # grid points per side of a density panel
_DENSITY_MASS = (0.95, 0.75, 0.5, 0.25, 0.05)  # share of the rows inside each density contour
_UNCERTAIN_TOP = 0.05  # the most uncertain rows, circled...
_UNCERTAIN_MIN = 0.01  # ...when their uncertainty is at least this


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
class _Coordinates(NamedTuple):
    """What the panels of ``(N, D)`` data show: ``P`` coordinates of each row, in pairs.

    Either ``P`` of the data's columns (``columns``), or the scores on the
    ``P`` leading principal axes (``basis`` ``(D, P)``, ``center`` ``(D,)``).
    """

    values: np.ndarray  # (N, P)
    names: list[str]  # (P,) axis labels
    pairs: list[tuple[int, int]]  # one panel per pair of coordinates
    columns: tuple[int, ...] | None
    center: np.ndarray | None
    basis: np.ndarray | None
    n_columns: int  # D


def _check_dims(dims, d: int) -> str | tuple[int, ...] | None:
    """``None``, ``"pca"`` or a tuple of distinct column indices; a ValueError otherwise."""
    if dims is None:
        return None
    if isinstance(dims, str) and dims.lower() == "pca":
        return "pca"
    try:
        cols = tuple(operator.index(j) for j in dims) if not isinstance(dims, str) else None
    except TypeError:
        cols = None
    if (
        cols is None
        or len(cols) < 2
        or len(set(cols)) < len(cols)
        or min(cols) < 0
        or max(cols) >= d
    ):
        raise ValueError(
            f"plot_fit: dims must be None (automatic), 'pca' (principal components) or at least "
            f"two distinct column indices in 0..{d - 1}, e.g. dims=(0, 1); got {dims!r}."
        )
    return cols


def _principal_axes(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(center (D,), basis (D, n), share (n,))``: the data's leading principal axes.

    Unweighted and unscaled PCA of the centred data, by SVD in float64; each
    axis's sign is fixed (its largest loading positive) so pictures repeat.
    ``share`` is each axis's fraction of the total variance.
    """
    x = np.asarray(x, dtype=np.float64)
    center = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - center, full_matrices=False)
    basis = vt[:n].T
    largest = np.argmax(np.abs(basis), axis=0)
    basis = basis * np.sign(basis[largest, np.arange(basis.shape[1])])
    var = s**2
    total = var.sum()
    share = var[:n] / total if total > 0 else np.zeros(basis.shape[1])
    return center, basis, share


def _is_constant(column: np.ndarray) -> bool:
    return bool(np.all(column == column[0]))


def _coordinates(x: np.ndarray, names: list[str], dims) -> _Coordinates:
    """The panels' coordinates: ``dims``'s columns, principal components, or the automatic choice.

    Automatic: every pair of the columns that are not constant (a constant
    column only draws stripes), or, above ``_MAX_COLUMNS`` of them (too many
    pairs to look at), the leading principal components.
    """
    n_rows, d = x.shape
    dims = _check_dims(dims, d)
    if dims is None:
        varying = [j for j in range(d) if not _is_constant(x[:, j])]
        if len(varying) > _MAX_COLUMNS:
            dims = "pca"
        elif len(varying) >= 2:
            dims = tuple(varying)
        else:  # nothing better to show: fill up with the first constant columns
            dims = tuple(sorted((varying + [j for j in range(d) if j not in varying])[:2]))
    if dims == "pca":
        if n_rows < 2:
            raise ValueError("plot_fit: dims='pca' needs at least two rows of data.")
        n = min(_N_PCS, d, n_rows)
        center, basis, share = _principal_axes(x, n)
        n = basis.shape[1]
        labels = [f"PC{i + 1} ({100 * share[i]:.1f}% var)" for i in range(n)]
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        return _Coordinates((x - center) @ basis, labels, pairs, None, center, basis, d)
    pairs = [(i, j) for i in range(len(dims)) for j in range(i + 1, len(dims))]
    return _Coordinates(x[:, list(dims)], [names[j] for j in dims], pairs, dims, None, None, d)


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


def _full_gaussians(model, params, d: int) -> list:
    """Each component's ``(mean (D,), cov (D, D))`` on all columns, or ``None`` per component."""
    import jax

    families = _families(model)
    if not families:
        return []
    comps = jax.tree.map(lambda a: np.asarray(a, dtype=np.float64), params.components)
    out = []
    for k, family in enumerate(families):
        own = (comps[k], None) if model.families is not None else (comps, k)
        found = family.gaussian_marginal(*own, tuple(range(d)))
        if found is None:
            out.append(None)
            continue
        mean, cov = (np.asarray(a, dtype=np.float64) for a in found)
        if mean.shape != (d,) or cov.shape != (d, d):
            raise ValueError(
                f"plot_fit: {family!r}.gaussian_marginal(..., dims) returned shapes "
                f"{mean.shape} and {cov.shape} for {d} dims; it must return (m,) and (m, m) "
                "for m = len(dims)."
            )
        out.append((mean, cov))
    return out


def _panel_gaussians(model, params, coords: _Coordinates) -> list[list]:
    """Per panel, each component's ``(mean (2,), cov (2, 2))`` on its two coordinates.

    A projection carries each Gaussian exactly: ``mean = Vᵀ(μ - center)``,
    ``cov = Vᵀ Σ V``. A component that is not Gaussian is ``None``; a model
    without families gives ``[]``.
    """
    if coords.basis is None:
        cols = coords.columns
        return [_component_covariances(model, params, (cols[i], cols[j])) for i, j in coords.pairs]
    v, center = coords.basis, coords.center
    projected = [
        None if g is None else ((g[0] - center) @ v, v.T @ g[1] @ v)
        for g in _full_gaussians(model, params, coords.n_columns)
    ]
    return [
        [None if g is None else (g[0][[i, j]], g[1][np.ix_([i, j], [i, j])]) for g in projected]
        for i, j in coords.pairs
    ]


def _normal_pdf_2d(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``(G,)`` bivariate normal density at ``points`` ``(G, 2)``, in float64."""
    diff = points - mean
    q = np.einsum("gi,ij,gj->g", diff, np.linalg.inv(cov), diff)
    return np.exp(-0.5 * q) / (2 * math.pi * math.sqrt(np.linalg.det(cov)))


def _density_on_panel(model, params, coords: _Coordinates, pair, gaussians):
    """``f(points (G, 2)) -> (G,)``: the fitted mixture's density on one panel's coordinates.

    Gaussian components: the exact 2-D marginal ``Σ_k w_k N(m_k, S_k)``. Any
    other model: its own density when the panel shows its only two columns
    (``None`` otherwise: a marginal would need an integral).
    """
    if gaussians and all(g is not None for g in gaussians):
        w = np.asarray(params.weights, dtype=np.float64).reshape(-1)
        if w.shape == (len(gaussians),):
            return lambda pts: sum(
                w[k] * _normal_pdf_2d(pts, mean, cov) for k, (mean, cov) in enumerate(gaussians)
            )
    if coords.basis is None and coords.n_columns == 2:
        import jax.numpy as jnp
        from scipy.special import logsumexp

        def density(pts):
            full = np.empty_like(pts)
            full[:, [coords.columns[pair[0]], coords.columns[pair[1]]]] = pts
            g = jnp.asarray(full, dtype=_validation.float_dtype())
            return np.exp(logsumexp(np.asarray(model.log_joint(params, g), np.float64), axis=1))

        return density
    return None


def _uncertainty_cut(u: np.ndarray) -> float:
    """The uncertainty from which rows stand out: the top ``_UNCERTAIN_TOP``, if not tiny."""
    return max(float(np.quantile(u, 1 - _UNCERTAIN_TOP)), _UNCERTAIN_MIN)


def _uncertainty_size(scale: np.ndarray) -> np.ndarray:
    """Marker areas (points²) from 5 (certain) to 80 (``1 - 1/K``, no idea)."""
    return 5 + 75 * scale


def _uncertainty_scale(u: np.ndarray, k: int) -> np.ndarray:
    """``u`` over its largest possible value ``1 - 1/K``: 0 (certain) to 1 (no idea)."""
    return u / (1 - 1 / k) if k > 1 else np.zeros_like(u)


def _ellipse_geometry(cov: np.ndarray, n_sigma: float) -> tuple[float, float, float]:
    """``(width, height, angle in degrees)`` of the ``n_sigma`` Mahalanobis contour."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.0, None)
    angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
    return 2 * n_sigma * math.sqrt(vals[-1]), 2 * n_sigma * math.sqrt(vals[0]), angle


def _draw_ellipses(ax, gaussians, colors, lw=1.5):
    from matplotlib.patches import Ellipse

    for i, g in enumerate(gaussians):
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
                    lw=lw,
                    alpha=alpha,
                )
            )
        ax.plot(*mean, marker="X", ms=9, color=colors[i], mec="black", mew=0.8, ls="none")


def _draw_panel(ax, xy, what, resp, gaussians, density, colors):
    """One panel: the points as ``what`` asks, over each Gaussian's ellipses or the density."""
    import matplotlib

    labels = resp.argmax(axis=1)
    point_colors = np.array(colors)[labels]
    if what == "classification":
        ax.scatter(xy[:, 0], xy[:, 1], c=point_colors, s=10, alpha=0.65, linewidths=0)
        _draw_ellipses(ax, gaussians, colors)
    elif what == "uncertainty":
        u = 1 - resp.max(axis=1)
        scale = _uncertainty_scale(u, resp.shape[1])
        rgba = point_colors.copy()
        rgba[:, 3] = 0.3 + 0.7 * scale
        ax.scatter(xy[:, 0], xy[:, 1], c=rgba, s=_uncertainty_size(scale), linewidths=0)
        top = u >= _uncertainty_cut(u)
        ax.scatter(
            xy[top, 0],
            xy[top, 1],
            s=_uncertainty_size(scale[top]),
            facecolors="none",
            edgecolors="black",
            linewidths=0.9,
        )
        _draw_ellipses(ax, gaussians, colors, lw=1.0)
    else:
        ax.scatter(xy[:, 0], xy[:, 1], color="0.5", s=5, alpha=0.5, linewidths=0)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        # A margin around the data for Gaussians; other densities stay in the
        # data's box, inside their support (an exponential's formula is finite below 0).
        gaussian = bool(gaussians) and all(g is not None for g in gaussians)
        pad = 0.1 * np.where(hi > lo, hi - lo, 1.0) if gaussian else np.zeros(2)
        gx, gy = (np.linspace(lo[i] - pad[i], hi[i] + pad[i], _N_GRID_2D) for i in (0, 1))
        mesh_x, mesh_y = np.meshgrid(gx, gy)
        z = density(np.column_stack([mesh_x.ravel(), mesh_y.ravel()])).reshape(mesh_x.shape)
        # Levels by the data: the contour of mass m encloses the fraction m of
        # the rows (a highest-density region), whatever the density's scale.
        masses = np.array(_DENSITY_MASS)
        levels = np.quantile(density(xy), 1 - masses)  # increasing
        keep = np.concatenate([[True], np.diff(levels) > 0]) & (levels > 0)
        levels, masses = levels[keep], masses[keep]
        if levels.size:
            # viridis without its yellow end, which does not show on white
            shades = matplotlib.colormaps["viridis"](np.linspace(0.8, 0.0, len(_DENSITY_MASS)))
            cs = ax.contour(gx, gy, z, levels=levels, colors=shades[keep], linewidths=1.3)
            labels = {lvl: f"{100 * m:.0f}%" for lvl, m in zip(cs.levels, masses, strict=True)}
            ax.clabel(cs, fmt=labels, fontsize="x-small")
        ax.set_xlim(gx[0], gx[-1])
        ax.set_ylim(gy[0], gy[-1])


def _legend_handles(what: str, colors, comp_labels, resp: np.ndarray) -> list:
    from matplotlib.lines import Line2D

    if what == "density":
        return []  # the caption says what the contours are
    handles = [
        Line2D([], [], ls="none", marker="o", ms=6, color=c, label=label)
        for c, label in zip(colors, comp_labels, strict=True)
    ]
    if what == "uncertainty":
        u = 1 - resp.max(axis=1)
        cut = _uncertainty_cut(u)
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="o",
                ms=8,
                mfc="none",
                mec="black",
                label=f"uncertainty ≥ {cut:.2g} ({int(np.sum(u >= cut))} rows)",
            )
        )
    return handles


def _describe(what: str, coords: _Coordinates, gaussians: list[list], n_constant: int) -> str:
    """The one-line caption of a scatter figure."""
    text = {
        "classification": "coloured by the most probable component"
        + (
            "; ellipses: 1, 2, 3σ of each Gaussian"
            if any(g is not None for p in gaussians for g in p)
            else ""
        ),
        "uncertainty": "uncertainty 1 − max p(k | x): bigger, darker points are less certain",
        "density": "fitted mixture density over the data (grey); each contour encloses the "
        "labelled share of the rows",
    }[what]
    if coords.basis is not None:
        text += f"\nprojection on principal components of the {coords.n_columns} columns (centred)"
    elif n_constant:
        text += f" ({n_constant} constant columns left out)"
    return text


def _plot_columns(fig, axes, model, params, x, coords, gaussians, densities, what, own):
    """Scatter panels of ``(N, D)`` data, one per pair of ``coords``; the legend once."""
    from jaxem.estep import responsibilities

    resp = np.asarray(responsibilities(model, params, x), dtype=np.float64)  # (N, K)
    k = resp.shape[1]
    colors = _colors(k)
    for ax, pair, panel, density in zip(axes, coords.pairs, gaussians, densities, strict=False):
        _draw_panel(ax, coords.values[:, list(pair)], what, resp, panel, density, colors)
        ax.set_xlabel(coords.names[pair[0]])
        ax.set_ylabel(coords.names[pair[1]])
    handles = _legend_handles(what, colors, _component_labels(model, params, k), resp)
    # One legend for every panel: outside them when it would hide points.
    if handles and own and (len(axes) > 1 or k > 3):
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    elif handles:
        axes[0].legend(handles=handles, fontsize="small", frameon=False, loc="best")


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


def _plot_uncertainty_1d(ax, model, params, x, ndim, name):
    """One column: each row's uncertainty ``1 - max_k p(k | x)`` against its value."""
    from jaxem.estep import responsibilities

    rows = x if ndim == 1 else x[:, None]
    resp = np.asarray(responsibilities(model, params, rows), dtype=np.float64)
    k = resp.shape[1]
    colors = _colors(k)
    point_colors = np.array(colors)[resp.argmax(axis=1)]
    u = 1 - resp.max(axis=1)
    ax.vlines(x, 0, u, colors=point_colors, lw=0.6, alpha=0.5)
    ax.scatter(x, u, c=point_colors, s=10, linewidths=0)
    top = u >= _uncertainty_cut(u)
    ax.scatter(x[top], u[top], s=30, facecolors="none", edgecolors="black", linewidths=0.9)
    ax.set_ylim(0, max(1 - 1 / k, 0.05) * 1.05)
    ax.set_xlabel(name)
    ax.set_ylabel("uncertainty 1 − max p(k | x)")
    ax.set_title("uncertainty of each row's component, coloured by the most probable one")
    ax.legend(
        handles=_legend_handles("uncertainty", colors, _component_labels(model, params, k), resp),
        fontsize="small",
        frameon=False,
        loc="best",
    )


def _fitted_model(estimator) -> tuple[Any, Any, list[str] | None]:
    """``(model, params, feature names or None)`` of a fitted jaxem estimator."""
    owner = type(estimator).__name__
    if hasattr(estimator, "_current_params") and hasattr(estimator, "_entry"):
        kind = "mixture"  # em.GaussianMixture, em.MixtureEstimator
    elif hasattr(estimator, "_current_emissions") and hasattr(estimator, "_model"):
        kind = "hmm"  # em.GaussianHMM and the other HMM estimators
    else:
        raise TypeError(
            "plot_fit takes a fitted em.GaussianMixture, em.MixtureEstimator or HMM estimator, "
            f"or an em.Model with its params and data: plot_fit(model, params, x); got {owner}."
        )
    if not hasattr(estimator, "converged_"):
        raise TypeError(
            f"plot_fit: this {owner} is not fitted yet; call its fit(X) first "
            f"(plot_fit({owner.lower()}.fit(X), X, 'fit.png'))."
        )
    names = getattr(estimator, "feature_names_in_", None)
    names = None if names is None else [str(n) for n in names]
    if kind == "mixture":
        return estimator._entry(estimator.n_features_in_).model, estimator._current_params(), names
    model = getattr(estimator, "_hmm", None) or estimator._model(estimator.n_features)
    return model, estimator._params(), names


def _check_what(what) -> str:
    if what not in WHATS:
        raise ValueError(
            f"plot_fit: what must be one of {', '.join(map(repr, WHATS))}, got {what!r}."
        )
    return what


# -- public ------------------------------------------------------------------------------
def plot_fit(
    model: Any,
    params: Any = None,
    x: Any = None,
    path_or_ax: Any = None,
    *,
    what: str = "classification",
    dims: Sequence[int] | str | None = None,
    names: list[str] | None = None,
    discrete: bool | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
    lengths: Sequence[int] | None = None,
) -> Figure:
    """Draw a fitted model over its data; return the matplotlib ``Figure``.

    Called as ``plot_fit(model, params, x, path_or_ax)`` with an ``em.Model``,
    or as ``plot_fit(estimator, X, path_or_ax)`` with a fitted jaxem estimator
    (``em.GaussianMixture``, ``em.MixtureEstimator``, an HMM estimator).

    - ``(N, D)`` data with ``D >= 2``: scatter plots, one panel per pair of
      coordinates. The coordinates are ``dims``; by default every column that
      is not constant (all their pairs), or, above six such columns, the first
      three principal components of the centred data (unscaled, float64 SVD),
      labelled with their share of the variance. ``what`` picks the picture,
      as mclust's ``plot(model, what=...)``:

      - ``"classification"``: points coloured by the most probable component,
        with each Gaussian component's 1, 2 and 3-sigma ellipses
        (``MultivariateNormal`` of any covariance type, or ``Normal`` on
        several columns). On principal components a Gaussian is projected
        exactly (mean ``Vᵀ(μ - x̄)``, covariance ``Vᵀ Σ V``).
      - ``"uncertainty"``: each row's ``1 - max_k p(k | x)``: points coloured
        by component, bigger and darker the less certain; the most uncertain
        5% (at least 0.01) are circled in black.
      - ``"density"``: contours of the fitted mixture density on the panel's
        two coordinates, over the data in grey; each contour encloses the
        labelled share of the rows. Gaussian components use their exact 2-D
        marginal. Any other model draws its own density on two-column data
        only, and raises a ValueError otherwise (use ``"classification"``).

      Discrete items (``discrete=True`` or a counts/codes family) get a table
      of the fitted parameter per component and column instead.
    - ``(N,)`` (or ``(N, 1)``) continuous data: a histogram with the fitted
      mixture density and each weighted component ``w_k f_k``, and the empirical
      CDF against the fitted CDF (the density integrated numerically on a grid,
      so any family works, a hand-written ``em.Model`` too). Counts and codes
      (``Poisson``, ``Binomial``, ``Bernoulli``, ``Categorical``, or
      ``discrete=True``): bars of observed frequencies against the fitted pmf.
      ``what="density"`` is the same picture; ``what="uncertainty"`` draws each
      row's uncertainty against its value.
    - An ``em.HMM`` (data with ``lengths=``, or a list of sequences): the
      first sequence over time (its first column, at most 2000 steps) coloured
      by the Viterbi state, with each state's location as a dashed line, and
      below it the smoothed state probabilities ``p(z_t | x)``.

    Rows with missing values (NaN) are left out of the picture.

    Args:
        model: the fitted ``em.Mixture`` (or ``em.Model``), or a fitted
            estimator (then ``params`` is left out: the next arguments are
            ``x`` and ``path_or_ax``).
        params: its parameters, e.g. ``FitResult.params``.
        x: the data it was fitted to, ``(N,)`` or ``(N, D)``.
        path_or_ax: ``None`` (a new pyplot figure), a file path to save to, a
            matplotlib ``Axes`` to draw the main panel into, or a sequence of
            ``Axes`` for the panels (one column: density, then CDF).
        what: ``"classification"`` (default), ``"uncertainty"`` or ``"density"``.
        dims: for ``(N, D)`` data, the column indices to draw (every pair of
            them), ``"pca"`` for the principal components, or ``None``
            (automatic, see above).
        names: column names for the axis labels (an estimator fitted on a
            DataFrame gives its own).
        discrete: force (``True``) or forbid (``False``) the bar chart; by
            default it follows the family.
        title: a title over the figure.
        figsize, dpi: the figure's size in inches and resolution: a saved PNG
            is ``figsize * dpi`` pixels.
        lengths: ``(S,)`` sequence lengths, for an ``em.HMM``.

    Example:
        >>> from jaxem.plot import plot_fit
        >>> res = em.fit(model, x, key=jax.random.key(0), restarts=16)
        >>> plot_fit(model, res.params, x, "fit.png")
        >>> gm = em.GaussianMixture(10, covariance_type="diag").fit(digits)   # (1797, 64)
        >>> plot_fit(gm, digits, "digits.png", what="uncertainty")   # on PC1-PC3
        >>> plot_fit(gm, digits, "pixels.png", dims=(20, 28, 36))
    """
    _require_matplotlib()
    from jaxem.hmm import HMM
    from jaxem.model import Model

    what = _check_what(what)
    if not isinstance(model, Model) and hasattr(model, "get_params"):  # an estimator
        estimator = model
        model, fitted, own_names = _fitted_model(model)
        if params is None and x is None:
            raise TypeError("plot_fit(estimator, X, path_or_ax): X is missing.")
        if params is not None:  # plot_fit(estimator, X, ...): shift the positions
            if x is not None and path_or_ax is not None:
                raise TypeError(
                    "plot_fit(estimator, X, path_or_ax) takes no params: the estimator holds them."
                )
            x, path_or_ax = params, (x if x is not None else path_or_ax)
        params = fitted
        names = own_names if names is None else names
        width = getattr(estimator, "n_features_in_", None)
        if width is not None and np.ndim(x) == 2 and np.shape(x)[1] != width:
            raise ValueError(
                f"plot_fit: X has {np.shape(x)[1]} columns but the {type(estimator).__name__} "
                f"was fitted on {width}; pass the data it was fitted to."
            )
    elif x is None:
        raise TypeError(
            "plot_fit(model, params, x): x, the data the model was fitted to, is missing."
        )
    if (
        isinstance(model, HMM)
        or lengths is not None
        or getattr(model, "_reads_units", lambda: False)()
    ):
        if what != "classification" or dims is not None:
            raise ValueError(
                f"plot_fit: what={what!r} and dims= draw arrays of rows; an HMM or a mixture "
                "of regressions has one picture (leave them out)."
            )
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
    items = d > 1 and (
        getattr(model, "family", None) is not None
        and (discrete if discrete is not None else _is_discrete(model, arr))
    )
    if dims is not None and (d == 1 or items):
        raise ValueError(
            "plot_fit: dims= is for scatter plots of (N, D) continuous data; x has "
            f"{'one column' if d == 1 else 'discrete items'}."
        )
    if items and what != "classification":
        raise ValueError(
            f"plot_fit: what={what!r} draws continuous data; discrete items have one picture, "
            "their fitted parameters (leave what= out)."
        )
    if d == 1 and what == "uncertainty":
        fig, axes, path = _figure(path_or_ax, 1, figsize or (7.2, 4.2), dpi)
        _plot_uncertainty_1d(axes[0], model, params, arr.reshape(-1), ndim, names[0])
    elif d == 1:
        flat = arr.reshape(-1)
        if discrete is None:
            discrete = _is_discrete(model, flat)
        fig, axes, path = _figure(path_or_ax, 2, figsize, dpi)
        draw = _plot_discrete if discrete else _plot_continuous
        draw(axes, model, params, flat, ndim, names[0])
    elif items:
        if figsize is None:
            figsize = (max(6.4, 2.5 + 0.7 * d), max(3.2, 1.0 + 0.6 * model.n_components))
        fig, axes, path = _figure(path_or_ax, 1, figsize, dpi)
        _plot_item_parameters(axes, model, params, names)
    else:
        return _plot_scatter(
            model,
            params,
            arr,
            names,
            dims,
            what,
            path_or_ax,
            title,
            figsize,
            dpi,
            int((~complete).sum()),
        )
    if title is not None:
        if _is_axes(path_or_ax):
            axes[0].set_title(title)
        else:
            fig.suptitle(title)
    _note_missing(axes[0], int((~complete).sum()))
    return _finish(fig, path, dpi)


def _note_missing(ax, n_left: int) -> None:
    if n_left:
        ax.annotate(
            f"{n_left} rows with missing values not shown",
            (0.01, 0.01),
            xycoords="figure fraction",
            fontsize="x-small",
        )


def _panel_rows(n_panels: int) -> int:
    """Rows of the panel grid: up to three panels a row (five above nine panels)."""
    return 1 if n_panels <= 3 else 2 if n_panels <= 6 else 3 if n_panels <= 9 else -(-n_panels // 5)


def _plot_scatter(model, params, x, names, dims, what, path_or_ax, title, figsize, dpi, n_left):
    """``(N, D)`` continuous data: the scatter panels of :func:`plot_fit`."""
    coords = _coordinates(x, names, dims)
    gaussians = _panel_gaussians(model, params, coords)
    densities = [None] * len(coords.pairs)
    if what == "density":
        densities = [
            _density_on_panel(model, params, coords, pair, panel)
            for pair, panel in zip(coords.pairs, gaussians, strict=True)
        ]
        if any(f is None for f in densities):
            raise ValueError(
                "plot_fit: what='density' needs Gaussian components (their 2-D marginals are "
                f"exact) or data with two columns; this model on {x.shape[1]} columns has no "
                "closed-form marginal. Use what='classification' or 'uncertainty'."
            )
    n_panels = len(coords.pairs)
    own = not _is_axes(path_or_ax)
    if figsize is None and n_panels == 1 and own:
        figsize = (6.4, 5.2)
    fig, axes, path = _figure(path_or_ax, n_panels, figsize, dpi, nrows=_panel_rows(n_panels))
    _plot_columns(fig, axes, model, params, x, coords, gaussians, densities, what, own)
    n_constant = 0  # the automatic choice's constant columns: said in the caption
    if dims is None and coords.columns is not None:
        n_constant = sum(
            _is_constant(x[:, j]) for j in range(x.shape[1]) if j not in coords.columns
        )
    caption = _describe(what, coords, gaussians, n_constant)
    if own:  # wrapped to the figure's width (about 9 characters an inch at this size)
        room = max(40, int(fig.get_figwidth() * 9))
        caption = "\n".join(textwrap.fill(line, room) for line in caption.split("\n"))
        fig.suptitle(caption if title is None else f"{title}\n{caption}", fontsize="medium")
    else:
        if title is None:  # a panel among others: lines no wider than it
            wrapped = "\n".join(textwrap.fill(line, 60) for line in caption.split("\n"))
            axes[0].set_title(wrapped, fontsize="small")
        else:
            axes[0].set_title(title)
    _note_missing(axes[0], n_left)
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
    history: Any,
    path_or_ax: Any = None,
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


_MARKERS = "os^vDP*X<>hpd8H"


def plot_bic(
    selection: Any,
    path_or_ax: Any = None,
    *,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: float = 100,
) -> Figure:
    """Draw a model selection's criterion against the number of components; return the ``Figure``.

    mclust's BIC plot: one line with markers per model (covariance type or
    family) over the numbers of components, a gap where a fit failed (NaN),
    and the best point circled. Lower is better (scikit-learn's sign; mclust
    plots ``-BIC``). In a new figure where some models are far worse than the
    rest, a second panel zooms from the best value to the median one.

    Args:
        selection: a model selection with ``criterion`` (``"bic"``, ``"aic"``
            or ``"icl"``), ``models`` (``M`` names), ``n_components`` (``R``
            numbers), ``values`` ``(R, M)`` (NaN where a fit failed) and
            ``best.model``, ``best.n_components``.
        path_or_ax: ``None`` (a new pyplot figure), a file path to save to, or
            a matplotlib ``Axes`` to draw into.
        title: the title over the panel.
        figsize, dpi: size in inches and resolution (a PNG is ``figsize * dpi`` pixels).

    Example:
        >>> from jaxem.plot import plot_bic
        >>> selection = em.select_model(X, n_components=range(1, 10))
        >>> plot_bic(selection, "bic.png")
    """
    _require_matplotlib()
    criterion = str(selection.criterion).upper()
    models = [str(m) for m in selection.models]
    ks = [int(k) for k in selection.n_components]
    values = np.asarray(selection.values, dtype=np.float64)
    if values.shape != (len(ks), len(models)):
        raise ValueError(
            f"plot_bic: selection.values has shape {values.shape}, expected (len(n_components), "
            f"len(models)) = ({len(ks)}, {len(models)})."
        )
    if len(set(ks)) != len(ks):
        raise ValueError(f"plot_bic: selection.n_components has repeated entries: {ks}.")
    order = np.argsort(ks, kind="stable")  # lines run left to right
    ks, values = [ks[i] for i in order], values[order]
    best_model, best_k = str(selection.best.model), int(selection.best.n_components)
    if best_model not in models or best_k not in ks:
        raise ValueError(
            f"plot_bic: the best fit ({best_model}, K={best_k}) is not in the table of "
            f"models {models} and n_components {ks}."
        )
    best = values[ks.index(best_k), models.index(best_model)]
    finite = values[np.isfinite(values)]
    # Where some models are far worse (mclust's spherical ones often are), a second
    # panel zooms on the competitive range: from the best to the median fit.
    middle = float(np.median(finite)) if finite.size else np.nan
    zoom = (
        not _is_axes(path_or_ax)
        and np.isfinite(best)
        and middle > best
        and float(np.max(finite)) - best > 4 * (middle - best)
    )
    size = figsize or ((12.4, 4.8) if zoom else (7.6, 4.8))
    fig, axes, path = _figure(path_or_ax, 2 if zoom else 1, size, dpi)
    colors = _colors(len(models))
    for i, ax in enumerate(axes):
        for j, name in enumerate(models):
            failed = np.isnan(values[:, j])
            label = name if not failed.all() else f"{name} (every fit failed)"
            ax.plot(
                ks,
                values[:, j],
                color=colors[j],
                marker=_MARKERS[j % len(_MARKERS)],
                ms=5,
                lw=1.4,
                label=label if i == 0 else None,
            )
        if np.isfinite(best):
            ax.plot(
                [best_k],
                [best],
                ls="none",
                marker="o",
                ms=16,
                mfc="none",
                mec="black",
                mew=2,
                label=f"best: {best_model}, K={best_k}" if i == 0 else None,
            )
        ax.set_xticks(ks)
        ax.set_xlabel("number of components")
        ax.set_ylabel(f"{criterion} (lower is better)")
        ax.grid(alpha=0.3)
    axes[0].set_title(title if title is not None else f"{criterion} of each model")
    if zoom:
        pad = 0.08 * (middle - best)
        axes[1].set_ylim(best - pad, middle + pad)
        axes[1].set_title("near the best (up to the median fit)")
    if _is_axes(path_or_ax):
        axes[0].legend(fontsize="small", frameon=False, loc="best")
    else:
        fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    return _finish(fig, path, dpi)
