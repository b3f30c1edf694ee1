"""Shared references for the tests: float64 NumPy/SciPy implementations, no jaxem code."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp


def normal_mixture_log_posterior(
    x,
    weights,
    means,
    variances,
    mean_prior=None,
    var_prior=None,
    dirichlet=None,
    var_prior_kind="invgamma",
):
    """log p(x | θ) + log p(θ) for a 1-D normal mixture, in float64 with scipy.stats."""
    x = np.asarray(x, np.float64)
    comp = stats.norm.logpdf(x[:, None], means[None, :], np.sqrt(variances)[None, :])
    ll = logsumexp(comp + np.log(weights)[None, :], axis=1).sum()
    lp = 0.0
    if mean_prior is not None:
        lp += stats.norm.logpdf(means, mean_prior[0], mean_prior[1]).sum()
    if var_prior is not None:
        a, b = var_prior
        if var_prior_kind == "invgamma":
            lp += stats.invgamma.logpdf(variances, a, scale=b).sum()
        else:  # gamma(concentration, rate)
            lp += stats.gamma.logpdf(variances, a, scale=1.0 / b).sum()
    if dirichlet is not None:
        lp += stats.dirichlet.logpdf(weights, np.full(len(weights), dirichlet))
    return ll + lp, ll


@pytest.fixture(scope="session")
def seed_data():
    """The seed example: 500/500/250 points at means 30/25/40, sd 1.75/1/0.25."""
    from jaxem.demos import three_normals

    return three_normals()
