"""Component densities. One family per module; closed forms registered beside them."""

from jaxem.families.base import ClosedForm, Family, register_m_step
from jaxem.families.binomial import Bernoulli, Binomial, BinomialParams
from jaxem.families.normal import Normal, NormalParams

__all__ = [
    "Family",
    "ClosedForm",
    "register_m_step",
    "Normal",
    "NormalParams",
    "Binomial",
    "Bernoulli",
    "BinomialParams",
]
