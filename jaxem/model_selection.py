"""Choosing the number of components and the model by BIC, ICL or AIC (mclust-style).

:func:`select_model` fits every combination of a grid (numbers of components ×
Gaussian covariance models, or × families) and returns a
:class:`ModelSelection`: the K × model matrix of the criterion, every fit as a
row sorted by the criterion, and the best fitted estimator. Criteria follow
scikit-learn's sign convention: *lower is better* (mclust reports ``-BIC``).

The Gaussian grid compiles one program per covariance model for all its K and
restarts (``jaxem._grid``); a grid of families fits each cell in turn.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import _grid
from jaxem.estimators import GaussianMixture, MixtureEstimator
from jaxem.estimators._checks import _jax_key, _set_feature_names
from jaxem.families.base import Family
from jaxem.families.mvn import COVARIANCE_TYPES, MultivariateNormalParams
from jaxem.families.parsimonious import (
    MCLUST_MODELS,
    SKLEARN_EQUIVALENT,
    ParsimoniousGaussian,
    n_covariance_parameters,
)
from jaxem.mixture import MixtureParams

__all__ = ["select_model", "ModelSelection", "SelectionRow"]

CRITERIA = ("bic", "icl", "aic")


@dataclasses.dataclass(frozen=True, eq=False)
class SelectionRow:
    """One fitted model of the grid.

    Attributes:
        model: ``"full"``, ``"VEV"``, … for Gaussian mixtures, else the family's name.
        n_components: K.
        criterion: the value of the chosen criterion (lower is better).
        bic: ``-2 log L + p log N``.
        icl: BIC plus twice the classification entropy of the MAP labels,
            ``bic - 2 Σ_i log max_k r_ik`` (mclust's ICL, sign flipped).
        aic: ``-2 log L + 2 p``.
        log_likelihood: summed over the rows of ``X``.
        n_parameters: free parameters (mclust's count for its models).
        converged: whether EM stopped by ``tol``.
        n_iter: EM iterations of the best restart.
        estimator: the fitted estimator (built on first access from the grid's
            parameters: no refit).
    """

    model: str
    n_components: int
    criterion: float
    bic: float
    icl: float
    aic: float
    log_likelihood: float
    n_parameters: int
    converged: bool
    n_iter: int
    _build: Any = dataclasses.field(repr=False, default=None)

    @functools.cached_property
    def estimator(self):
        return self._build()


@dataclasses.dataclass(frozen=True, eq=False)
class ModelSelection:
    """The result of :func:`select_model`.

    Attributes:
        criterion: ``"bic"``, ``"icl"`` or ``"aic"``.
        models: the grid's models (columns), in the order given.
        n_components: the grid's numbers of components (rows).
        values: ``(len(n_components), len(models))`` the criterion of each cell
            (lower is better); NaN where every restart failed (a singular
            covariance, as mclust reports NA).
        rows: every successful fit as a :class:`SelectionRow`, sorted (lower
            criterion first).
        best: the first row; ``best_estimator`` its fitted estimator.

    ``print(result)`` shows the matrix and the best fits; :meth:`as_dict` is
    the same as plain lists (JSON-able); ``em.plot_bic(result)`` draws it.
    """

    criterion: str
    models: tuple[str, ...]
    n_components: tuple[int, ...]
    values: np.ndarray
    rows: tuple[SelectionRow, ...]

    @property
    def best(self) -> SelectionRow:
        if not self.rows:
            raise ValueError("select_model: every fit of the grid failed; there is no best model.")
        return self.rows[0]

    @property
    def best_estimator(self):
        return self.best.estimator

    def matrix(self, criterion: str | None = None) -> np.ndarray:
        """``(len(n_components), len(models))`` values of ``criterion`` (default: the chosen)."""
        criterion = self.criterion if criterion is None else criterion
        if criterion not in CRITERIA:
            raise ValueError(f"matrix: criterion must be one of {CRITERIA}, got {criterion!r}.")
        out = np.full((len(self.n_components), len(self.models)), np.nan)
        col = {m: j for j, m in enumerate(self.models)}
        row = {k: i for i, k in enumerate(self.n_components)}
        for r in self.rows:
            out[row[r.n_components], col[r.model]] = getattr(r, criterion)
        return out

    def as_dict(self) -> dict:
        """The matrix as plain lists (keys criterion, models, n_components, values, best)."""
        values = [[None if np.isnan(v) else float(v) for v in line] for line in self.values]
        best = (
            {"model": self.best.model, "n_components": self.best.n_components}
            if self.rows
            else None
        )
        return {
            "criterion": self.criterion,
            "models": list(self.models),
            "n_components": list(self.n_components),
            "values": values,
            "best": best,
        }

    def __str__(self) -> str:
        return self.to_string()

    def to_string(self, width: int = 100) -> str:
        """The matrix (in blocks of models no wider than ``width``) and the three best fits."""
        name = self.criterion.upper()
        cell = max(9, max(len(m) for m in self.models) + 1)
        per_block = max(1, (width - 4) // cell)
        n_blocks = -(-len(self.models) // per_block)
        per_block = -(-len(self.models) // n_blocks)  # balanced blocks
        lines = [f"{name} by number of components (rows) and model (columns); lower is better"]
        for start in range(0, len(self.models), per_block):
            cols = slice(start, start + per_block)
            if start:
                lines.append("")
            lines.append(f"{'K':>3} " + "".join(f"{m:>{cell}}" for m in self.models[cols]))
            for k, line in zip(self.n_components, self.values[:, cols], strict=True):
                cells = "".join(
                    f"{'—':>{cell}}" if np.isnan(v) else f"{v:>{cell}.1f}" for v in line
                )
                lines.append(f"{k:>3} " + cells)
        if not self.rows:
            lines.append("every fit failed")
            return "\n".join(lines)
        lines.append("")
        lines.append(f"Top models by {name}:")
        lines.append(
            f"{'rank':>4}  {'model':<16}{'K':>3}  {name:>12}  {'log-lik':>12}  {'params':>6}"
        )
        for i, r in enumerate(self.rows[:3], 1):
            lines.append(
                f"{i:>4}  {r.model:<16}{r.n_components:>3}  {r.criterion:>12.2f}  "
                f"{r.log_likelihood:>12.2f}  {r.n_parameters:>6d}"
            )
        failed = int(np.isnan(self.values).sum())
        if failed:
            lines.append(f"({failed} cell(s) failed at every restart: shown as —)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        if not self.rows:
            return f"ModelSelection(criterion={self.criterion!r}, fits=0)"
        b = self.best
        return (
            f"ModelSelection(criterion={self.criterion!r}, fits={len(self.rows)}, "
            f"best={b.model!r} with K={b.n_components})"
        )


def _components(n_components) -> list[int]:
    values = [n_components] if isinstance(n_components, numbers.Integral) else n_components
    try:
        values = list(values)
    except TypeError:
        raise TypeError(
            f"select_model: n_components must be an int or an iterable of ints, e.g. "
            f"range(1, 7); got {n_components!r}."
        ) from None
    if not values:
        raise ValueError("select_model: n_components is empty; pass e.g. range(1, 7).")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(
                f"select_model: every entry of n_components must be an integer >= 1, got {k!r}."
            )
    if len(set(values)) != len(values):
        raise ValueError(f"select_model: n_components has repeated entries: {values!r}.")
    return sorted(int(k) for k in values)


def _families(families) -> list[tuple[str, Family]]:
    if isinstance(families, Family):
        families = [families]
    if isinstance(families, Mapping):
        items = list(families.items())
    elif isinstance(families, Iterable):
        items = [(repr(f), f) for f in families]
    else:
        items = None
    if not items:
        raise ValueError(
            "select_model: families must be a non-empty list of em.Family instances or a "
            f"dict name -> family; got {families!r}."
        )
    for name, fam in items:
        if not isinstance(fam, Family):
            raise TypeError(
                f"select_model: families entry {name!r} is not an em.Family instance: {fam!r}."
            )
    return [(str(name), fam) for name, fam in items]


def _model_names(covariance_types) -> list[str]:
    if isinstance(covariance_types, str):
        if covariance_types.lower() == "mclust":
            return list(MCLUST_MODELS)
        covariance_types = [covariance_types]
    try:
        names = list(covariance_types)
    except TypeError:
        names = None
    allowed = COVARIANCE_TYPES + MCLUST_MODELS
    if not names or any(not isinstance(t, str) or t not in allowed for t in names):
        raise ValueError(
            "select_model: covariance_types must be a non-empty subset of scikit-learn's "
            f"{COVARIANCE_TYPES} and mclust's {MCLUST_MODELS}, or 'mclust' for all 14; "
            f"got {covariance_types!r}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"select_model: covariance_types has repeated entries: {names!r}.")
    return names


def _row_criteria(ll: float, p: int, n: int, log_map: float) -> tuple[float, float, float]:
    bic = -2 * ll + p * math.log(n)
    return bic, bic - 2 * log_map, -2 * ll + 2 * p


def _singular(cov: np.ndarray, ks: np.ndarray, dtype) -> np.ndarray:
    """``(R,)``: whether some active covariance of each run is numerically singular.

    mclust's test: the reciprocal condition number at or below the precision.
    """
    eig = np.linalg.eigvalsh(np.asarray(cov, np.float64))  # (R, K_max, D)
    with np.errstate(all="ignore"):
        rcond = eig[..., 0] / eig[..., -1]
    active = np.arange(cov.shape[1])[None, :] < ks[:, None]
    bad = ~(rcond > 10 * np.finfo(dtype).eps)
    return np.any(bad & active, axis=1)


def _gaussian_estimator(name, k, params, fit, settings, X, x):
    """A fitted estimator carrying the grid's parameters (no refit)."""
    weights, mean, cov = params
    d = x.shape[1]
    common = dict(
        n_init=settings["n_init"],
        max_iter=settings["max_iter"],
        tol=settings["tol"],
        random_state=settings["random_state"],
    )
    if name in COVARIANCE_TYPES:
        est = GaussianMixture(k, covariance_type=name, reg_covar=settings["reg_covar"], **common)
        cov = {
            "full": cov,
            "tied": cov[0],
            "diag": np.diagonal(cov, axis1=-2, axis2=-1),
            "spherical": np.trace(cov, axis1=-2, axis2=-1) / d,
        }[name]
    else:
        family = ParsimoniousGaussian(name, reg_covar=settings["reg_covar"])
        est = MixtureEstimator(family, k, **common)
    est._set_params_from(MixtureParams(weights, MultivariateNormalParams(mean, cov)))
    est._cast_attributes(x.dtype)
    ll, converged, n_iter = fit
    est.converged_ = bool(converged)
    est.n_iter_ = int(n_iter)
    est.lower_bound_ = float(ll) / x.shape[0]
    est.lower_bounds_ = np.empty(0)
    est.n_features_in_ = d
    est._fit_ndim_ = 2
    _set_feature_names(est, X)
    return est


def _gaussian_grid(X, ks, names, settings, criterion):
    x = GaussianMixture(max(ks))._validate_fit_X(X)
    if x.ndim != 2:
        raise ValueError(
            f"select_model: Gaussian models need (N, D) data; got shape {x.shape}. Use "
            "x.reshape(-1, 1) for one feature."
        )
    n, d = x.shape
    if n <= max(ks):
        raise ValueError(
            f"select_model: {n} rows cannot support {max(ks)} components; lower n_components."
        )
    n_init = settings["n_init"]
    kvec = np.repeat(np.asarray(ks), n_init)
    rows = []
    with jax.enable_x64(x.dtype == np.float64):
        keys = jax.random.split(_jax_key(settings["random_state"]), len(kvec))
        xj = jnp.asarray(x)
        for name in names:
            model = SKLEARN_EQUIVALENT.get(name, name)
            run = _grid.program(
                model,
                max(ks),
                int(settings["max_iter"]),
                float(settings["tol"]),
                float(settings["reg_covar"]),
                10,
                jax.default_backend() == "cpu",
            )
            out = jax.tree.map(np.asarray, run(xj, keys, jnp.asarray(kvec, jnp.int32)))
            ok = np.isfinite(out.log_likelihood) & ~_singular(out.cov, kvec, x.dtype)
            score = np.where(ok, out.log_likelihood, -np.inf)
            for i, k in enumerate(ks):
                block = slice(i * n_init, (i + 1) * n_init)
                if not ok[block].any():
                    continue
                r = i * n_init + int(np.argmax(score[block]))
                ll = float(out.log_likelihood[r])
                p = (k - 1) + k * d + n_covariance_parameters(model, d, k)
                bic, icl, aic = _row_criteria(ll, p, n, float(out.log_map[r]))
                params = (out.weights[r, :k], out.mean[r, :k], out.cov[r, :k])
                fit = (ll, out.converged[r], out.n_iter[r])
                build = functools.partial(_gaussian_estimator, name, k, params, fit, settings, X, x)
                crit = {"bic": bic, "icl": icl, "aic": aic}[criterion]
                rows.append(
                    SelectionRow(
                        name, k, crit, bic, icl, aic, ll, p, bool(fit[1]), int(fit[2]), build
                    )
                )
    return rows


def _families_grid(X, ks, families, settings, criterion):
    rows = []
    for name, family in families:
        for k in ks:
            est = MixtureEstimator(
                family,
                k,
                n_init=settings["n_init"],
                max_iter=settings["max_iter"],
                tol=settings["tol"],
                random_state=settings["random_state"],
            )
            est.fit(X)
            x = est._validate_X(X)
            ll = float(np.sum(est.score_samples(x)))
            p = est._n_parameters()
            log_map = float(np.sum(np.log(np.max(est.predict_proba(x), axis=1))))
            bic, icl, aic = _row_criteria(ll, p, x.shape[0], log_map)
            crit = {"bic": bic, "icl": icl, "aic": aic}[criterion]
            rows.append(
                SelectionRow(
                    name,
                    k,
                    crit,
                    bic,
                    icl,
                    aic,
                    ll,
                    p,
                    est.converged_,
                    est.n_iter_,
                    functools.partial(lambda e: e, est),
                )
            )
    return rows


def select_model(
    X,
    n_components: int | Iterable[int] = range(1, 7),
    covariance_types: str | Iterable[str] = COVARIANCE_TYPES,
    families=None,
    *,
    criterion: str = "bic",
    n_init: int = 4,
    init_params: str = "kmeans",
    reg_covar: float = 0.0,
    max_iter: int = 1000,
    tol: float = 1e-5,
    random_state=None,
) -> ModelSelection:
    """Fit a grid of mixtures to ``X`` and rank them by BIC, ICL or AIC (lower is better).

    Without ``families``: Gaussian mixtures for every number of components ×
    covariance model. The models are scikit-learn's ``covariance_type`` names
    (``"full"``, ``"tied"``, ``"diag"``, ``"spherical"``, the default) and
    mclust's 14 names (``"EII"`` … ``"VVV"``, see
    :class:`em.ParsimoniousGaussian`); ``covariance_types="mclust"`` is all 14,
    mclust's ``mclustBIC`` grid. Each model compiles **one** program that runs
    every K and all ``n_init`` k-means restarts together; a second grid with the
    same settings and data shape reuses it.

    With ``families`` (a list of ``em.Family`` instances, or a dict name ->
    family): ``em.MixtureEstimator`` for every family × K, fitted one after the
    other; ``covariance_types`` is ignored.

    A fit whose covariance becomes numerically singular (a component on a few
    repeated points) is discarded, as mclust reports NA; a cell where every
    restart is discarded is NaN in ``values`` and has no row.

    Args:
        X: ``(N, D)`` data (``(N,)`` also works with ``families``). float64
            data are fitted in float64, float32 in float32 (as the estimators).
        n_components: an int or iterable of ints, e.g. ``range(1, 10)``.
        covariance_types: model names (see above), or ``"mclust"``.
        families: ``None`` or the families to compare.
        criterion: ``"bic"``, ``"icl"`` (mclust's integrated completed
            likelihood) or ``"aic"``; all three are on every row.
        n_init: k-means restarts per cell; the best log-likelihood is kept.
        init_params: ``"kmeans"`` (the only start of the Gaussian grid).
        reg_covar: added to the covariance as scikit-learn does (``0``: none,
            as mclust; see :class:`em.ParsimoniousGaussian` for the models
            scikit-learn does not have).
        max_iter: EM iterations per restart.
        tol: stop when the per-sample log-likelihood changes by less than
            this (scikit-learn's rule; its default ``1e-3`` stops early).
        random_state: seed (int), ``numpy`` generator or ``None``.

    Returns:
        A :class:`ModelSelection`: ``print(result)`` shows the K × model matrix
        and the best fits, ``result.values`` is the matrix, ``result.best_estimator``
        the chosen fitted estimator, ``em.plot_bic(result)`` the picture.

    Example:
        >>> result = em.select_model(X, n_components=range(1, 10), covariance_types="mclust")
        >>> print(result)
        >>> result.best.model, result.best.n_components
        >>> result.best_estimator.predict(X)
    """
    if criterion not in CRITERIA:
        raise ValueError(
            f"select_model: criterion must be 'bic', 'icl' or 'aic', got {criterion!r}."
        )
    if isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"select_model: n_init must be an integer >= 1, got {n_init!r}.")
    if init_params != "kmeans":
        raise ValueError(
            f"select_model: init_params must be 'kmeans' (the grid's start), got {init_params!r}."
        )
    if (
        isinstance(reg_covar, bool)
        or not isinstance(reg_covar, numbers.Real)
        or not reg_covar >= 0
        or not math.isfinite(reg_covar)
    ):
        raise ValueError(
            f"select_model: reg_covar must be a finite number >= 0, got {reg_covar!r}."
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"select_model: max_iter must be an integer >= 1, got {max_iter!r}.")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
        raise ValueError(f"select_model: tol must be a number >= 0, got {tol!r}.")
    ks = _components(n_components)
    settings = dict(
        n_init=int(n_init),
        reg_covar=float(reg_covar),
        max_iter=int(max_iter),
        tol=float(tol),
        random_state=random_state,
    )
    if families is None:
        names = _model_names(covariance_types)
        rows = _gaussian_grid(X, ks, names, settings, criterion)
    else:
        fams = _families(families)
        names = [name for name, _ in fams]
        rows = _families_grid(X, ks, fams, settings, criterion)
    result = ModelSelection(criterion, tuple(names), tuple(ks), np.empty((0, 0)), ())
    values = dataclasses.replace(result, rows=tuple(rows)).matrix(criterion)
    rows.sort(key=lambda r: (r.criterion, r.n_parameters))
    return ModelSelection(criterion, tuple(names), tuple(ks), values, tuple(rows))
