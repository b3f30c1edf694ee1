"""jaxem: Expectation-Maximization on JAX.

Declare a model by its log complete-likelihood (and optionally a log prior),
then fit it by EM with many restarts in parallel:

    >>> import jax, jaxem as em
    >>> from jaxem import priors
    >>> model = em.Mixture(em.Normal(), n_components=3, weights_prior=priors.Dirichlet(1.5))
    >>> res = em.fit(model, x, key=jax.random.key(0), restarts=64)
"""

from jaxem import _cache, chunks, constraints, datasets, priors
from jaxem.bootstrap import BootstrapResult, bootstrap
from jaxem.check import MStepCheck, PieceCheck, check_m_step
from jaxem.estep import log_likelihood, predict, responsibilities
from jaxem.families import (
    Bernoulli,
    Binomial,
    BinomialParams,
    Categorical,
    CategoricalParams,
    ClosedForm,
    Exponential,
    ExponentialParams,
    Family,
    Gamma,
    GammaParams,
    LinearRegression,
    LinearRegressionParams,
    LogisticRegression,
    LogisticRegressionParams,
    MultivariateNormal,
    MultivariateNormalParams,
    Normal,
    NormalParams,
    ParsimoniousGaussian,
    Poisson,
    PoissonParams,
    PoissonRegression,
    PoissonRegressionParams,
    RegressionFamily,
    StudentT,
    StudentTParams,
    VonMises,
    VonMisesParams,
    register_m_step,
)
from jaxem.fit import ConvergenceWarning, FitResult, fit
from jaxem.gating import GatingParams, SoftmaxGating
from jaxem.hmm import HMM, HMMParams, HMMStats, Sequences, sequences
from jaxem.mixture import Mixture, MixtureParams, MixtureStats
from jaxem.model import NO_EXTRA, Expectation, Extra, Model
from jaxem.mstep import GradientOptions
from jaxem.selection import aic, bic, n_parameters
from jaxem.stream import StreamResult, fit_stream
from jaxem.uncertainty import Covariance, covariance, standard_errors, wald_intervals

__version__ = "0.1.0"

# The scikit-learn-style estimators, model selection and save/load are imported
# on first use: with scikit-learn installed they derive from its BaseEstimator,
# and importing scikit-learn would add most of a second to every `import jaxem`.
#: Where JAX's persistent compilation cache lives for this process (``None``: off);
#: see ``JAXEM_CACHE_DIR`` in the README.
compilation_cache_dir = _cache.enable()

_LAZY = {
    "GaussianMixture": "jaxem.estimators",
    "MixtureEstimator": "jaxem.estimators",
    "GaussianHMM": "jaxem.estimators",
    "HMMEstimator": "jaxem.estimators",
    "MixtureRegressor": "jaxem.estimators",
    "NotFittedError": "jaxem.estimators",
    "select_model": "jaxem.model_selection",
    "ModelSelection": "jaxem.model_selection",
    "save": "jaxem.io",
    "load": "jaxem.io",
    "plot_fit": "jaxem.plot",
    "plot_history": "jaxem.plot",
    "plot_bic": "jaxem.plot",
    "SelectionRow": "jaxem.model_selection",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxem' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "datasets",
    "check_m_step",
    "MStepCheck",
    "PieceCheck",
    "Model",
    "Expectation",
    "Extra",
    "NO_EXTRA",
    "chunks",
    "Mixture",
    "MixtureParams",
    "HMM",
    "HMMParams",
    "HMMStats",
    "Sequences",
    "sequences",
    "MixtureStats",
    "fit",
    "fit_stream",
    "StreamResult",
    "FitResult",
    "ConvergenceWarning",
    "responsibilities",
    "log_likelihood",
    "predict",
    "GradientOptions",
    "n_parameters",
    "bic",
    "aic",
    "standard_errors",
    "bootstrap",
    "BootstrapResult",
    "covariance",
    "wald_intervals",
    "Covariance",
    "Family",
    "ClosedForm",
    "register_m_step",
    "Normal",
    "NormalParams",
    "Binomial",
    "Bernoulli",
    "BinomialParams",
    "Poisson",
    "PoissonParams",
    "Exponential",
    "ExponentialParams",
    "Categorical",
    "CategoricalParams",
    "StudentT",
    "StudentTParams",
    "Gamma",
    "GammaParams",
    "VonMises",
    "VonMisesParams",
    "MultivariateNormal",
    "MultivariateNormalParams",
    "ParsimoniousGaussian",
    "RegressionFamily",
    "LinearRegression",
    "LinearRegressionParams",
    "PoissonRegression",
    "PoissonRegressionParams",
    "LogisticRegression",
    "LogisticRegressionParams",
    "SoftmaxGating",
    "GatingParams",
    "constraints",
    "priors",
    "GaussianMixture",
    "MixtureEstimator",
    "GaussianHMM",
    "HMMEstimator",
    "MixtureRegressor",
    "NotFittedError",
    "select_model",
    "ModelSelection",
    "SelectionRow",
    "save",
    "load",
    "plot_fit",
    "plot_history",
    "plot_bic",
]
