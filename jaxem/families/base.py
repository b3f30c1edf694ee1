"""The component-density protocol and the registry of closed-form M-steps.

A family describes one component density. ``log_prob(params, x)`` takes the
parameters of *one* component and data ``x`` of shape ``(N,)`` or ``(N, D)``
and returns ``(N,)`` log densities; ``init(key, x, n_components)`` returns
parameters with a leading ``(n_components,)`` axis on every leaf. A mixture
evaluates ``log_prob`` for all components with ``jax.vmap``.

A closed-form M-step is attached with :func:`register_m_step`. It is used only
for the exact class it was registered for (a subclass that changes
``log_prob`` must not inherit an update that maximises another density), and
only when its ``applies(family)`` says the family's priors are covered.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxem import constraints as _constraints
from jaxem.priors import Prior

__all__ = ["Family", "ClosedForm", "register_m_step", "closed_form_for"]


class Family:
    """Base class for component densities.

    Subclasses define ``constraints`` (a dict: field -> constraint; missing
    fields are real), ``log_prob`` and ``init``. Built-in families take a
    ``<field>_prior`` keyword per field; a custom family may set
    ``self.priors = {"field": prior_or_function}`` to get the same behaviour.

    Example:
        >>> class Laplace(em.Family):
        ...     constraints = {"scale": constraints.positive}
        ...     def log_prob(self, params, x):
        ...         b = params["scale"]
        ...         return -jnp.abs(x - params["loc"]) / b - jnp.log(2 * b)
        ...     def init(self, key, x, n_components):
        ...         return {"loc": jax.random.choice(key, x, (n_components,)),
        ...                 "scale": jnp.full(n_components, jnp.std(x))}
    """

    constraints: dict = {}
    #: True when, for ``(N, D)`` data, ``log_prob`` is a sum of per-feature
    #: terms and every parameter leaf of one component has a leading ``(D,)``
    #: feature axis. Missing entries are then integrated out by dropping their
    #: terms (``em.fit(..., missing="marginalize")``).
    independent_features: bool = False

    # -- what the rest of jaxem knows about a family: the command line, em.save /
    # em.load (jaxem.codec) and the plots read these instead of keeping tables.
    # The defaults suit a custom family.

    #: Short name (``jaxem fit --family NAME``) of a built-in family, under which
    #: ``jaxem.codec.FAMILIES`` lists it. ``None``: not a built-in family, so not
    #: on the command line and not savable by name.
    name: str | None = None
    #: The constructor arguments, besides the ``<field>_prior`` ones, that rebuild
    #: an instance: saved from its attributes of the same names.
    hyperparameters: tuple[str, ...] = ()
    #: The NamedTuple class of the parameters, or ``None`` (e.g. a dict of arrays).
    params_type: type | None = None
    #: The kind of support, for plots: ``"continuous"``, ``"circular"`` (angles
    #: in ``[-π, π]``), ``"counts"`` (0, 1, 2, …) or ``"categories"`` (codes).
    support_kind: str = "continuous"

    def log_prob(self, params, x):
        """Log density of one component at each row of ``x``: ``(N,)``."""
        raise NotImplementedError(f"{type(self).__name__} must define log_prob(params, x)")

    def init(self, key, x, n_components: int):
        """Random start: parameters with a leading ``(n_components,)`` axis."""
        raise NotImplementedError(
            f"{type(self).__name__} must define init(key, x, n_components) to draw restarts"
        )

    def validate_data(self, x) -> None:
        """Raise ``ValueError`` when ``x`` (a host array) is outside the support."""

    def condition_number(self, components) -> float | None:
        """The worst condition number of the components' linear algebra, or ``None``.

        Host-side, on fitted parameters (leading K axis): how a stopped fit
        tells float32 conditioning (e.g. duplicate columns) from a broken
        update. ``None``: the family solves no linear systems.
        """
        return None

    def log_prob_components(self, components, x) -> jax.Array:
        """``(N, K)`` log densities under every component (``components`` has the K axis).

        The default maps :meth:`log_prob` over the components; families
        override it to share work across components (e.g. one GEMM).
        """
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), components)
        out = jax.eval_shape(self.log_prob, one, jax.ShapeDtypeStruct(x.shape, x.dtype))
        if out.shape != x.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}.log_prob(params, x) must return one log density per row "
                f"of x, shape ({x.shape[0]},); it returned shape {out.shape} for x of shape "
                f"{x.shape}. For (N, D) data with independent features, sum over the last axis."
            )
        return jax.vmap(self.log_prob, in_axes=(0, None), out_axes=1)(components, x)

    def log_prob_components_missing(self, components, x, observed) -> jax.Array:
        """``(N, K)`` log densities of the observed entries of each row.

        ``observed`` is a boolean array of ``x``'s shape; missing entries of
        ``x`` hold placeholders inside the support. A row with nothing observed
        gets 0 under every component. The default covers ``(N,)`` data (a row is
        observed or not) and families with ``independent_features``: each
        feature's term is evaluated separately and the missing ones dropped.
        Families with dependent features override it (``MultivariateNormal``).
        """
        if x.ndim == 1:
            return jnp.where(observed[:, None], self.log_prob_components(components, x), 0)
        if not self.independent_features:
            raise ValueError(
                f"{type(self).__name__} cannot integrate out missing entries of (N, D) data: "
                "set independent_features = True if log_prob sums independent per-feature "
                "terms, or override log_prob_components_missing."
            )
        per_feature = jax.vmap(self.log_prob_components, in_axes=(1, 1))(components, x)
        return jnp.sum(jnp.where(observed.T[:, :, None], per_feature, 0), axis=0)

    def supports_missing(self, ndim: int) -> bool:
        """Whether :meth:`log_prob_components_missing` works for data of this ndim."""
        overridden = (
            type(self).log_prob_components_missing is not Family.log_prob_components_missing
        )
        return ndim == 1 or self.independent_features or overridden

    def missing_sufficient_stats(self, components, x, resp, sample_weight, observed):
        """Expected sufficient statistics of the registered closed form with missing entries.

        ``None`` (the default) lets the mixture handle missing entries itself
        (per feature for independent features, else the gradient M-step).
        ``MultivariateNormal`` returns the conditional expectations of the
        missing entries' statistics.
        """
        return None

    def component_axes(self, components):
        """The component axis of each leaf: ``0``, or ``None`` for a leaf shared by all.

        A pytree like ``components`` (``None`` marks a shared leaf), usable as
        ``jax.vmap``'s ``in_axes``. Default: every leaf has the leading K axis.
        """
        return jax.tree.map(lambda _: 0, components)

    def sample(self, key, params, n: int) -> jax.Array:
        """``n`` draws from one component: ``(n,)`` plus the event shape."""
        raise NotImplementedError(f"{type(self).__name__} does not define sample(key, params, n)")

    def support_top(self, x) -> int | None:
        """The largest value of a discrete support worth drawing for data ``x``; ``None``
        for a continuous one.

        Default: a few standard deviations past the largest count for
        ``"counts"``, the largest code for ``"categories"``.
        """
        if self.support_kind == "counts":
            top = float(np.max(x)) if x.size else 0.0
            return int(math.ceil(top + 3.0 * math.sqrt(top + 1.0) + 2.0))
        if self.support_kind == "categories":
            return int(np.max(x)) if x.size else 0
        return None

    def location(self, components) -> np.ndarray:
        """Each component's location, ``(K,)`` or ``(K, D)`` (host-side, float64).

        What the command line lists components by. Default: the first
        parameter field.
        """
        return np.asarray(jax.tree.leaves(components)[0], dtype=np.float64)

    def gaussian_marginal(self, components, index: int | None, dims: tuple[int, ...]):
        """``(mean (m,), cov (m, m))`` of a Gaussian component on the ``m`` columns ``dims``.

        ``None`` when the component is not Gaussian.

        What the plots draw as ellipses. ``components`` has the K axis and
        ``index`` picks one component, or ``index`` is ``None`` and
        ``components`` is one component's. Default: ``None`` (not Gaussian).
        """
        return None

    @property
    def field_priors(self) -> dict:
        """The priors per parameter field (``None`` entries mean flat)."""
        return {k: v for k, v in getattr(self, "priors", {}).items() if v is not None}

    def log_prior(self, params) -> jax.Array:
        """Sum of the field priors over all components (``params`` has the K axis)."""
        total = jnp.zeros((), jnp.result_type(float))
        for field, prior in self.field_priors.items():
            value = params[field] if isinstance(params, dict) else getattr(params, field)
            total = total + jnp.sum(prior(value))
        return total

    def __repr__(self) -> str:
        fp = ", ".join(f"{k}_prior={v!r}" for k, v in self.field_priors.items())
        return f"{type(self).__name__}({fp})"


def check_prior(owner: str, field: str, prior) -> Any:
    """Validate a ``<field>_prior`` argument: None, a ``Prior``, or a callable."""
    if prior is None or isinstance(prior, Prior) or callable(prior):
        return prior
    raise TypeError(
        f"{owner}: {field}_prior must be a jaxem.priors object or a function "
        f"value -> log density, got {type(prior).__name__}."
    )


class ClosedForm(NamedTuple):
    """A registered closed-form (or ECM) M-step for one family class.

    Two kinds:

    * statistics-based: ``sufficient_stats(family, params, x, resp, sample_weight)``
      returns a pytree with a leading ``(K,)`` axis that is a *sum over rows*
      (so data can be chunked or sharded and the pieces added), and
      ``update(family, params, stats)`` returns the new component parameters;
    * responsibility-based (``sufficient_stats is None``):
      ``update(family, params, x, resp, sample_weight)`` sees the data directly.

    ``applies(family)`` says whether the family's priors are ones this update
    is written for; otherwise the gradient M-step is used. ``exact(family)``
    says whether the update is the maximiser itself (the gradient of
    ``Q + log prior`` vanishes there) rather than an ascent step (ECM, a few
    sweeps of coordinate ascent): :func:`jaxem.check_m_step` tests accordingly.
    """

    update: Callable
    sufficient_stats: Callable | None = None
    applies: Callable = lambda family: True
    exact: Callable = lambda family: True


_REGISTRY: dict[type, ClosedForm] = {}


def register_m_step(
    family_cls: type,
    update: Callable | None = None,
    *,
    sufficient_stats: Callable | None = None,
    applies: Callable | None = None,
    exact: Callable | None = None,
):
    """Attach a closed-form M-step to ``family_cls``.

    The update must never decrease the component part of
    ``Q(θ|θt) + log prior``; where it is exact, the gradient of that objective
    vanishes at its output.

    Used as a decorator for a responsibility-based update::

        @em.register_m_step(Weibull)
        def weibull_update(family, params, x, resp, sample_weight):
            ...  # resp: (N, K), sample_weight: (N,) -> params with the K axis
            return new_params

    or directly, with additive sufficient statistics (which later chunked or
    sharded fits need)::

        em.register_m_step(MyFamily, update=update_from_stats,
                           sufficient_stats=stats, applies=lambda fam: True)

    ``applies(family) -> bool`` restricts it to the priors it handles;
    ``exact(family) -> bool`` says whether it is the exact maximiser.
    Check any registered update with :func:`jaxem.check_m_step`.
    """
    if not isinstance(family_cls, type) or not issubclass(family_cls, Family):
        raise TypeError(
            f"register_m_step: family_cls must be a subclass of em.Family, got {family_cls!r}."
        )
    applies = applies if applies is not None else (lambda family: True)
    exact = exact if exact is not None else (lambda family: True)

    def register(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError("register_m_step: update must be callable.")
        if sufficient_stats is not None and not callable(sufficient_stats):
            raise TypeError("register_m_step: sufficient_stats must be callable.")
        _REGISTRY[family_cls] = ClosedForm(fn, sufficient_stats, applies, exact)
        return fn

    if update is None:
        return register
    register(update)
    return update


def closed_form_for(family: Family) -> ClosedForm | None:
    """The closed form registered for ``type(family)``, if it covers its priors."""
    cf = _REGISTRY.get(type(family))
    if cf is None or not cf.applies(family):
        return None
    return cf


def host_component(a, index: int | None) -> np.ndarray:
    """``a`` as a float64 NumPy array, its row ``index`` unless ``index`` is ``None``."""
    a = np.asarray(a, dtype=np.float64)
    return a if index is None else a[index]


def component_constraints(family: Family, params):
    """Constraint per leaf of a family's parameters."""
    return _constraints.broadcast(dict(family.constraints), params)
