"""How one block of a mixture's components is updated in the M-step.

A mixture's components come in *blocks* (one family each). Which M-step a
block gets depends on its family, its priors, the data's rank and whether
entries are missing; :func:`choose` decides that once and returns an update
object that knows

* what the E-step must hand over: additive sufficient statistics
  (``stats``) or the responsibilities (``needs_resp``), and
* how to turn that into new parameters (``update``).

The gradient M-step (:data:`GRADIENT`) needs the model's optimiser and the
data's chunking, so the mixture runs it; the object only marks the choice.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxem import priors as _priors
from jaxem.families.base import Family, closed_form_for

__all__ = ["BlockUpdate", "choose", "GRADIENT"]


class BlockUpdate:
    """One way to update a block; subclasses say which.

    Attributes:
        needs_resp: whether ``update`` reads the ``(N, K_block)``
            responsibilities (then the E-step carries them) rather than
            statistics summed over rows.
        gradient: whether this is the gradient M-step (run by the mixture).
    """

    needs_resp = False
    gradient = False

    def stats(self, family, block, x, resp, sample_weight, observed):
        """Additive statistics of some rows (``None``: ``update`` reads the responsibilities)."""
        return None

    def update(self, family, block, stats, x, resp, sample_weight, observed):
        """New block parameters. ``resp`` is a function returning ``(N, K_block)``."""
        raise NotImplementedError


class _FromStats(BlockUpdate):
    """The registered closed form from the family's sufficient statistics."""

    def stats(self, family, block, x, resp, sample_weight, observed):
        return closed_form_for(family).sufficient_stats(family, block, x, resp, sample_weight)

    def update(self, family, block, stats, x, resp, sample_weight, observed):
        return closed_form_for(family).update(family, block, stats)


class _FromMissingStats(_FromStats):
    """The family's own expected statistics with missing entries integrated out."""

    def stats(self, family, block, x, resp, sample_weight, observed):
        return family.missing_sufficient_stats(block, x, resp, sample_weight, observed)


class _FeatureStats(BlockUpdate):
    """The closed form feature by feature, each column's missing rows weighted 0."""

    def stats(self, family, block, x, resp, sample_weight, observed):
        cf = closed_form_for(family)
        if x.ndim == 1:
            return cf.sufficient_stats(family, block, x, resp, sample_weight * observed)

        def one(b, column, seen):
            return cf.sufficient_stats(family, b, column, resp, sample_weight * seen)

        return jax.vmap(one, in_axes=(1, 1, 1))(block, x, observed)

    def update(self, family, block, stats, x, resp, sample_weight, observed):
        cf = closed_form_for(family)
        if x.ndim == 1:
            return cf.update(family, block, stats)
        return jax.vmap(lambda b, st: cf.update(family, b, st), in_axes=(1, 0), out_axes=1)(
            block, stats
        )


class _FromResp(BlockUpdate):
    """A registered closed form written on the responsibilities (it sees every row)."""

    needs_resp = True

    def update(self, family, block, stats, x, resp, sample_weight, observed):
        return closed_form_for(family).update(family, block, x, resp(), sample_weight)


class _FeatureResp(BlockUpdate):
    """A responsibility closed form feature by feature, missing rows weighted 0."""

    needs_resp = True

    def update(self, family, block, stats, x, resp, sample_weight, observed):
        cf = closed_form_for(family)
        r = resp()
        if x.ndim == 1:
            return cf.update(family, block, x, r, sample_weight * observed)

        def one(b, column, seen):
            return cf.update(family, b, column, r, sample_weight * seen)

        return jax.vmap(one, in_axes=(1, 1, 1), out_axes=1)(block, x, observed)


class _Gradient(BlockUpdate):
    """The gradient M-step on ``Σ r log f + log prior`` (run by the mixture)."""

    needs_resp = True
    gradient = True


FROM_STATS = _FromStats()
GRADIENT = _Gradient()
_FROM_MISSING_STATS = _FromMissingStats()
_FEATURE_STATS = _FeatureStats()
_FROM_RESP = _FromResp()
_FEATURE_RESP = _FeatureResp()


def _scalar_hyperparameters(family) -> bool:
    """Whether every prior hyper-parameter is shared by all features.

    Then the closed form can be run feature by feature on ``(N,)`` columns.
    A Dirichlet's concentration may keep its category axis.
    """
    for prior in getattr(family, "priors", {}).values():
        if prior is None:
            continue
        for name, value in vars(prior).items():
            if not isinstance(value, np.ndarray) or name.startswith("_"):
                continue
            allowed = 1 if isinstance(prior, _priors.Dirichlet) else 0
            if value.ndim > allowed:
                return False
    return True


def choose(family: Family, ndim: int, missing: bool) -> BlockUpdate:
    """The best available M-step for a block of ``family`` on ``ndim``-D data.

    A registered closed form when the family's priors are covered: from
    sufficient statistics, or from responsibilities; with ``missing``
    entries, the family's own expected statistics, else the closed form
    column by column (independent features whose prior hyper-parameters are
    shared by all features); otherwise the gradient M-step.
    """
    cf = closed_form_for(family)
    if cf is None:
        return GRADIENT
    if not missing:
        return FROM_STATS if cf.sufficient_stats is not None else _FROM_RESP
    overrides = type(family).missing_sufficient_stats is not Family.missing_sufficient_stats
    if cf.sufficient_stats is not None and overrides:
        return _FROM_MISSING_STATS
    if ndim == 1 or (family.independent_features and _scalar_hyperparameters(family)):
        return _FEATURE_STATS if cf.sufficient_stats is not None else _FEATURE_RESP
    return GRADIENT
