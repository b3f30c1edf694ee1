"""Choosing the number of components and the model by BIC or AIC (mclust-style).

:func:`select_model` fits every combination of a grid (numbers of components ×
Gaussian covariance types, or × families) and returns a
:class:`ModelSelection`: one row per fit, sorted by the criterion, with the best
fitted estimator. Criteria follow scikit-learn's sign convention: *lower is
better* (mclust reports ``-BIC``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from jaxem.estimators import GaussianMixture, MixtureEstimator
from jaxem.families.base import Family
from jaxem.families.mvn import COVARIANCE_TYPES

__all__ = ["select_model", "ModelSelection", "SelectionRow"]

CRITERIA = ("bic", "aic")


class SelectionRow(NamedTuple):
    """One fitted model of the grid.

    Attributes:
        model: ``"full"``, ``"diag"``, … for Gaussian mixtures, else the family's name.
        n_components: K.
        criterion: the value of the chosen criterion (lower is better).
        bic, aic: both criteria on the data.
        log_likelihood: summed over the rows of ``X``.
        n_parameters: free parameters (``em.n_parameters``).
        converged: whether EM stopped by ``tol``.
        n_iter: EM iterations of the best restart.
        estimator: the fitted estimator.
    """

    model: str
    n_components: int
    criterion: float
    bic: float
    aic: float
    log_likelihood: float
    n_parameters: int
    converged: bool
    n_iter: int
    estimator: Any


@dataclasses.dataclass(frozen=True)
class ModelSelection:
    """The result of :func:`select_model`: rows sorted by the criterion, best first.

    Attributes:
        criterion: ``"bic"`` or ``"aic"``.
        rows: every fit as a :class:`SelectionRow`, sorted (lower criterion first);
            ``pandas.DataFrame(result.rows)`` gives a table.
        best: the first row.
        best_estimator: its fitted estimator.
    """

    criterion: str
    rows: tuple[SelectionRow, ...]

    @property
    def best(self) -> SelectionRow:
        return self.rows[0]

    @property
    def best_estimator(self):
        return self.rows[0].estimator

    def __str__(self) -> str:
        name = self.criterion.upper()
        head = (
            f"{'rank':>4}  {'model':<16}{'K':>3}  {name:>12}  {'log-lik':>12}  "
            f"{'params':>6}  {'iter':>4}  converged"
        )
        lines = [f"Model selection by {name} (lower is better)", head]
        for i, r in enumerate(self.rows, 1):
            lines.append(
                f"{i:>4}  {r.model:<16}{r.n_components:>3}  {r.criterion:>12.2f}  "
                f"{r.log_likelihood:>12.2f}  {r.n_parameters:>6d}  {r.n_iter:>4d}  "
                f"{'yes' if r.converged else 'no'}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
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
    return [int(k) for k in values]


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


def select_model(
    X,
    n_components: int | Iterable[int] = range(1, 7),
    covariance_types: Iterable[str] = COVARIANCE_TYPES,
    families=None,
    *,
    criterion: str = "bic",
    n_init: int = 1,
    init_params: str = "kmeans",
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-3,
    random_state=None,
) -> ModelSelection:
    """Fit a grid of mixtures to ``X`` and rank them by BIC or AIC (lower is better).

    Without ``families``, fits ``em.GaussianMixture`` for every number of
    components × covariance type (mclust's model table). With ``families``
    (a list of ``em.Family`` instances, or a dict name -> family), fits
    ``em.MixtureEstimator`` for every family × number of components, and
    ``covariance_types`` is ignored.

    The grid is fitted **sequentially**, one compiled program per model and
    number of components (each program runs its ``n_init`` restarts in
    parallel); fits of the same settings on data of the same shape reuse their
    programs.

    Args:
        X: ``(N, D)`` data (``(N,)`` also works with ``families``).
        n_components: an int or iterable of ints, e.g. ``range(1, 7)``.
        covariance_types: subset of ``("full", "diag", "spherical", "tied")``.
        families: ``None`` or the families to compare.
        criterion: ``"bic"`` or ``"aic"``.
        n_init, init_params, reg_covar, max_iter, tol, random_state: passed to
            each estimator (``init_params`` and ``reg_covar`` to Gaussian ones).

    Returns:
        A :class:`ModelSelection`; ``print(result)`` shows the table,
        ``result.best_estimator`` is the chosen fitted estimator.

    Example:
        >>> result = em.select_model(X, n_components=range(1, 5), random_state=0)
        >>> print(result)
        >>> result.best_estimator.predict(X)
    """
    if criterion not in CRITERIA:
        raise ValueError(f"select_model: criterion must be 'bic' or 'aic', got {criterion!r}.")
    ks = _components(n_components)
    candidates = []  # (model name, estimator)
    if families is None:
        types = [covariance_types] if isinstance(covariance_types, str) else covariance_types
        types = list(types)
        bad = [t for t in types if t not in COVARIANCE_TYPES]
        if not types or bad:
            raise ValueError(
                f"select_model: covariance_types must be a non-empty subset of "
                f"{COVARIANCE_TYPES}; got {covariance_types!r}."
            )
        for kind in types:
            for k in ks:
                est = GaussianMixture(
                    k,
                    covariance_type=kind,
                    n_init=n_init,
                    init_params=init_params,
                    reg_covar=reg_covar,
                    max_iter=max_iter,
                    tol=tol,
                    random_state=random_state,
                )
                candidates.append((kind, est))
    else:
        for name, family in _families(families):
            for k in ks:
                est = MixtureEstimator(
                    family,
                    k,
                    n_init=n_init,
                    max_iter=max_iter,
                    tol=tol,
                    random_state=random_state,
                )
                candidates.append((name, est))

    rows = []
    for name, est in candidates:
        est.fit(X)
        n = est._validate_X(X).shape[0]
        ll = float(np.sum(est.score_samples(X)))
        p = est._n_parameters()
        bic = -2 * ll + p * math.log(n)
        aic = -2 * ll + 2 * p
        rows.append(
            SelectionRow(
                model=name,
                n_components=est.n_components,
                criterion=bic if criterion == "bic" else aic,
                bic=bic,
                aic=aic,
                log_likelihood=ll,
                n_parameters=p,
                converged=est.converged_,
                n_iter=est.n_iter_,
                estimator=est,
            )
        )
    rows.sort(key=lambda r: (r.criterion, r.n_parameters))
    return ModelSelection(criterion=criterion, rows=tuple(rows))
