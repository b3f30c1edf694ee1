"""scikit-learn, when it is installed: its bases, ``NotFittedError`` and warning class.

Otherwise small stand-ins with the same behaviour for jaxem's purposes
(``get_params``/``set_params``/``repr``; ``NotFittedError`` a ``ValueError``).
"""

from __future__ import annotations

import inspect

from jaxem.fit import ConvergenceWarning

__all__ = ["HAVE_SKLEARN", "NotFittedError"]

try:  # optional: scikit-learn is a test extra, never a runtime dependency
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import DensityMixin as _DensityMixin
    from sklearn.base import RegressorMixin as _RegressorMixin
    from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
    from sklearn.exceptions import DataConversionWarning as _DataConversionWarning
    from sklearn.exceptions import NotFittedError

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    HAVE_SKLEARN = False
    _SklearnConvergenceWarning = None

    class _DataConversionWarning(UserWarning):
        """Stand-in for scikit-learn's: input converted to the expected shape."""

    class NotFittedError(ValueError, AttributeError):
        """An estimator was used before ``fit`` (scikit-learn's class when it is installed)."""

    class _DensityMixin:
        """Stand-in for ``sklearn.base.DensityMixin`` (nothing to add without sklearn)."""

    class _RegressorMixin:
        """Stand-in for ``sklearn.base.RegressorMixin`` (the estimator defines ``score``)."""

    class _BaseEstimator:
        """Stand-in for ``sklearn.base.BaseEstimator``: parameters from ``__init__``'s signature."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(
                p.name
                for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            )

        def get_params(self, deep: bool = True) -> dict:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(
                        f"Invalid parameter {name!r} for estimator {type(self).__name__}; "
                        f"valid parameters are {valid}."
                    )
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            sig = inspect.signature(type(self).__init__)
            shown = [
                f"{name}={value!r}"
                for name, value in self.get_params().items()
                if sig.parameters[name].default is inspect.Parameter.empty
                or not _same(value, sig.parameters[name].default)
            ]
            return f"{type(self).__name__}({', '.join(shown)})"


def _same(a, b) -> bool:
    try:
        return bool(a is b or a == b)
    except Exception:  # arrays and other objects without a truthy ==
        return False


if HAVE_SKLEARN:

    class _FitConvergenceWarning(ConvergenceWarning, _SklearnConvergenceWarning):
        """jaxem's ConvergenceWarning that scikit-learn's warning filters also catch."""

else:  # pragma: no cover
    _FitConvergenceWarning = ConvergenceWarning
