"""Component densities. One family per module; closed forms registered beside them."""

from jaxem.families.base import ClosedForm, Family, register_m_step
from jaxem.families.binomial import Bernoulli, Binomial, BinomialParams
from jaxem.families.categorical import Categorical, CategoricalParams
from jaxem.families.exponential import Exponential, ExponentialParams
from jaxem.families.gamma import Gamma, GammaParams
from jaxem.families.mvn import MultivariateNormal, MultivariateNormalParams
from jaxem.families.normal import Normal, NormalParams
from jaxem.families.poisson import Poisson, PoissonParams
from jaxem.families.studentt import StudentT, StudentTParams
from jaxem.families.vonmises import VonMises, VonMisesParams

__all__ = [
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
]
