"""Component densities. One family per module; closed forms registered beside them.

Each family class says what the rest of jaxem needs to know about it (its
``name``, ``hyperparameters``, ``params_type``, ``support_kind`` and
``location``); a new built-in family is its module plus its import and its
entry in :data:`BUILT_IN` here.
"""

from jaxem.families.base import ClosedForm, Family, register_m_step
from jaxem.families.binomial import Bernoulli, Binomial, BinomialParams
from jaxem.families.categorical import Categorical, CategoricalParams
from jaxem.families.exponential import Exponential, ExponentialParams
from jaxem.families.gamma import Gamma, GammaParams
from jaxem.families.glm import (
    LogisticRegression,
    LogisticRegressionParams,
    PoissonRegression,
    PoissonRegressionParams,
)
from jaxem.families.mvn import MultivariateNormal, MultivariateNormalParams
from jaxem.families.normal import Normal, NormalParams
from jaxem.families.parsimonious import ParsimoniousGaussian
from jaxem.families.poisson import Poisson, PoissonParams
from jaxem.families.regression import LinearRegression, LinearRegressionParams, RegressionFamily
from jaxem.families.studentt import StudentT, StudentTParams
from jaxem.families.vonmises import VonMises, VonMisesParams

#: The built-in families, in the order the command line lists them: the registry
#: ``jaxem.codec.FAMILIES`` (command line, em.save / em.load) is filled from it.
BUILT_IN = (
    Normal,
    MultivariateNormal,
    Poisson,
    Exponential,
    Bernoulli,
    Binomial,
    Categorical,
    StudentT,
    Gamma,
    VonMises,
    ParsimoniousGaussian,
)

__all__ = [
    "Family",
    "ParsimoniousGaussian",
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
    "RegressionFamily",
    "LinearRegression",
    "LinearRegressionParams",
    "PoissonRegression",
    "PoissonRegressionParams",
    "LogisticRegression",
    "LogisticRegressionParams",
]
