"""Float64 NumPy/SciPy references for mixtures of regressions (tests only, no jaxem code).

EM for mixtures of linear, Poisson and binomial (logistic) regressions, with
constant mixing weights or a softmax gating on covariates (a mixture of
experts). The E-step scores with ``scipy.stats``; the M-steps are written
independently of jaxem's:

* linear: weighted least squares by ``np.linalg.lstsq`` on the rows scaled
  by ``sqrt(weight)``. A Normal (ridge) prior on the coefficients (not the
  intercept) adds ``P`` pseudo-rows ``sqrt(var / scale²) (β - loc) = 0``; with
  it the M-step is ECM, ``ecm_sweeps`` sweeps of coefficients given the
  variance then variance given the coefficients, starting from the current
  variance. An InverseGamma(a, b) prior on the variance gives
  ``var = (rss + 2b) / (n + 2a + 2)``, its conditional mode. The variance is
  floored at ``min_var`` after every update.
* Poisson (log link) and binomial (logit link): ``scipy.optimize.minimize``
  (``trust-exact``, analytic gradient and Hessian) of each component's
  weighted negative log-likelihood, warm-started at the current coefficients.
* softmax gating: the same optimiser on the weighted multinomial logistic
  objective ``Σ_i s_i Σ_k r_ik log π_k(w_i)``, with class 0 as the reference
  (its coefficients and intercept held at 0).

Data are dicts ``{"x": (N, P), "y": (N,), "w": (N, Q) (gating), "n": (N,)
(trials)}``; parameters are dicts of arrays: ``weights (K,)`` or
``gate_coef (K, Q)`` and ``gate_intercept (K,)``, and ``coef (K, P)``,
``intercept (K,)`` and, for the linear family, ``var (K,)``.
"""

import numpy as np
from scipy import optimize, stats
from scipy.special import expit, log_softmax, logsumexp, softmax

FAMILIES = ("linear", "poisson", "logistic")


def _matrix(a):
    a = np.asarray(a, np.float64)
    return a[:, None] if a.ndim == 1 else a


def _augmented(x):
    """``[1, x]``: the intercept's column first."""
    x = _matrix(x)
    return np.column_stack([np.ones(len(x)), x])


def _trials(data):
    return np.asarray(data["n"], np.float64) if "n" in data else np.ones(len(data["y"]))


def linear_predictors(data, params):
    """``(N, K)``: ``x·coef_k + intercept_k``."""
    return _matrix(data["x"]) @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])


def component_log_prob(family, data, params):
    """``(N, K)`` log densities of the responses under each component, by ``scipy.stats``."""
    y = np.asarray(data["y"], np.float64)[:, None]
    eta = linear_predictors(data, params)
    if family == "linear":
        return stats.norm.logpdf(y, eta, np.sqrt(params["var"]))
    if family == "poisson":
        return stats.poisson.logpmf(y, np.exp(eta))
    if family == "logistic":
        return stats.binom.logpmf(y, _trials(data)[:, None], expit(eta))
    raise ValueError(family)


def mean_response(family, data, params):
    """``(N, K)`` mean of the response under each component."""
    eta = linear_predictors(data, params)
    if family == "linear":
        return eta
    if family == "poisson":
        return np.exp(eta)
    return _trials(data)[:, None] * expit(eta)


def log_weights(data, params):
    """``(K,)`` or ``(N, K)`` log mixing weights (the gating's when the params have one)."""
    if "gate_coef" in params:
        logits = _matrix(data["w"]) @ np.asarray(params["gate_coef"]).T + params["gate_intercept"]
        return log_softmax(logits, axis=1)
    return np.log(params["weights"])


def log_joint(family, data, params):
    """``(N, K)``: ``log π_k(w_i) + log f_k(y_i | x_i)``."""
    return log_weights(data, params) + component_log_prob(family, data, params)


def posterior(family, data, params):
    """``(N, K)`` responsibilities."""
    return softmax(log_joint(family, data, params), axis=1)


def predict_mean(family, data, params):
    """``(N,)``: ``Σ_k π_k(w_i) μ_k(x_i)``."""
    weights = np.exp(np.broadcast_to(log_weights(data, params), (len(data["y"]), _k(params))))
    return np.sum(weights * mean_response(family, data, params), axis=1)


def _k(params):
    return len(params["intercept"])


def log_prior(params, coef_prior=None, var_prior=None):
    """Normal(loc, scale) log density of the coefficients + InverseGamma(a, b) of the variances."""
    lp = 0.0
    if coef_prior is not None:
        lp += stats.norm.logpdf(params["coef"], coef_prior[0], coef_prior[1]).sum()
    if var_prior is not None:
        lp += stats.invgamma.logpdf(params["var"], var_prior[0], scale=var_prior[1]).sum()
    return float(lp)


# -- M-steps -----------------------------------------------------------------------------------
def _lstsq(a, t, w):
    root = np.sqrt(w)
    return np.linalg.lstsq(a * root[:, None], t * root, rcond=None)[0]


def linear_m_step(data, wr, params, coef_prior=None, var_prior=None, ecm_sweeps=20, min_var=1e-6):
    """Weighted least squares per component (ECM with a coefficient prior)."""
    a = _augmented(data["x"])  # [1, x]
    y = np.asarray(data["y"], np.float64)
    p = a.shape[1] - 1
    coef, intercept, var = (np.array(params[k], np.float64) for k in ("coef", "intercept", "var"))
    for k in range(wr.shape[1]):
        w = wr[:, k]
        v = var[k]
        for _ in range(ecm_sweeps if coef_prior is not None else 1):
            if coef_prior is None:
                beta = _lstsq(a, y, w)
            else:  # ridge as P pseudo-rows sqrt(v / scale²) (β_j - loc) = 0, not on the intercept
                loc, scale = coef_prior
                rows = np.sqrt(v) / scale * np.eye(p + 1)[1:]
                design = np.vstack([a * np.sqrt(w)[:, None], rows])
                target = np.concatenate([y * np.sqrt(w), rows @ np.full(p + 1, float(loc))])
                beta = np.linalg.lstsq(design, target, rcond=None)[0]
            rss = np.sum(w * (y - a @ beta) ** 2)
            if var_prior is None:
                v = rss / w.sum()
            else:
                v = (rss + 2 * var_prior[1]) / (w.sum() + 2 * var_prior[0] + 2)
            v = max(v, min_var)
        intercept[k], coef[k], var[k] = beta[0], beta[1:], v
    return {"coef": coef, "intercept": intercept, "var": var}


def _glm_terms(family, eta, y, n):
    """Per row: log-likelihood up to a constant in η, its derivative and minus its second one."""
    if family == "poisson":
        mu = np.exp(eta)
        return y * eta - mu, y - mu, mu
    p = expit(eta)
    return y * eta - n * np.logaddexp(0.0, eta), y - n * p, n * p * (1 - p)


def _maximise(fun, x0):
    """Minimise the convex ``fun -> (value, gradient, hessian)`` to a gradient of ~1e-14.

    ``trust-exact`` from the warm start, then ``optimize.root`` on the gradient
    (its Jacobian the Hessian), which does not need the value to resolve the
    last digits.
    """
    res = optimize.minimize(
        lambda b: fun(b)[:2],
        x0,
        jac=True,
        hess=lambda b: fun(b)[2],
        method="trust-exact",
        options={"gtol": 1e-8, "maxiter": 500},
    )
    polished = optimize.root(
        lambda b: fun(b)[1], res.x, jac=lambda b: fun(b)[2], method="hybr", tol=1e-14
    )
    grad = fun(polished.x)[1]
    assert np.max(np.abs(grad)) < 1e-11, (res.message, polished.message, grad)
    return polished.x


def glm_m_step(family, data, wr, params, coef_prior=None):
    """Each component's weighted GLM fit by ``scipy.optimize.minimize``, warm-started."""
    a = _augmented(data["x"])
    y = np.asarray(data["y"], np.float64)
    n = _trials(data)
    p = a.shape[1] - 1
    prec = np.zeros(p + 1)
    loc = np.zeros(p + 1)
    if coef_prior is not None:
        prec[1:], loc[1:] = 1 / coef_prior[1] ** 2, coef_prior[0]
    coef, intercept = (np.array(params[k], np.float64) for k in ("coef", "intercept"))
    for k in range(wr.shape[1]):
        w = wr[:, k]
        total = w.sum()

        def fun(beta, w=w, total=total):
            ll, d1, d2 = _glm_terms(family, a @ beta, y, n)
            value = -(w @ ll - 0.5 * prec @ (beta - loc) ** 2) / total
            grad = -(a.T @ (w * d1) - prec * (beta - loc)) / total
            hess = ((a * (w * d2)[:, None]).T @ a + np.diag(prec)) / total
            return value, grad, hess

        beta = _maximise(fun, np.concatenate([[intercept[k]], coef[k]]))
        intercept[k], coef[k] = beta[0], beta[1:]
    return {"coef": coef, "intercept": intercept}


def gating_m_step(data, sr, params):
    """Weighted multinomial logistic regression of the responsibilities, class 0 the reference."""
    a = _augmented(data["w"])  # [1, w]
    k = sr.shape[1]
    q1 = a.shape[1]
    s = sr.sum(axis=1)
    total = s.sum()

    def full(beta):  # ((K-1) Q1,) -> (K, Q1), row 0 zeros
        return np.vstack([np.zeros(q1), beta.reshape(k - 1, q1)])

    def fun(beta):
        logits = a @ full(beta).T
        logp = log_softmax(logits, axis=1)
        value = -np.sum(sr * logp) / total
        pi = np.exp(logp)[:, 1:]
        grad = -((sr[:, 1:] - s[:, None] * pi).T @ a).ravel() / total
        hess = np.zeros((k - 1, q1, k - 1, q1))
        for j in range(k - 1):
            for m in range(k - 1):
                c = s * pi[:, j] * ((j == m) - pi[:, m])
                hess[j, :, m, :] = (a * c[:, None]).T @ a
        return value, grad, hess.reshape((k - 1) * q1, (k - 1) * q1) / total

    start = np.column_stack([params["gate_intercept"], params["gate_coef"]])[1:].ravel()
    beta = full(_maximise(fun, start))
    return {"gate_coef": beta[:, 1:], "gate_intercept": beta[:, 0]}


# -- EM ----------------------------------------------------------------------------------------
def em(
    family,
    data,
    start,
    n_iter,
    *,
    sample_weight=None,
    coef_prior=None,
    var_prior=None,
    ecm_sweeps=20,
    min_var=1e-6,
):
    """``n_iter`` EM iterations from ``start``.

    ``coef_prior``: ``(loc, scale)`` of a Normal prior on the coefficients (not
    the intercepts); ``var_prior``: ``(a, b)`` of an InverseGamma on the
    variances (linear family only).

    Returns ``(params, log_likelihood (n_iter + 1,), objective (n_iter + 1,))``:
    the weighted log-likelihood and log-likelihood + log prior at the start and
    after every iteration.
    """
    if family not in FAMILIES:
        raise ValueError(family)
    params = {k: np.array(v, np.float64) for k, v in start.items()}
    s = np.ones(len(data["y"])) if sample_weight is None else np.asarray(sample_weight, float)
    lls, objectives = [], []
    for it in range(n_iter + 1):
        lj = log_joint(family, data, params)
        ll = float(s @ logsumexp(lj, axis=1))
        lls.append(ll)
        objectives.append(ll + log_prior(params, coef_prior, var_prior))
        if it == n_iter:
            break
        wr = softmax(lj, axis=1) * s[:, None]
        new = {}
        if "gate_coef" in params:
            new.update(gating_m_step(data, wr, params))
        else:
            new["weights"] = wr.sum(axis=0) / wr.sum()
        if family == "linear":
            new.update(linear_m_step(data, wr, params, coef_prior, var_prior, ecm_sweeps, min_var))
        else:
            new.update(glm_m_step(family, data, wr, params, coef_prior))
        params = new
    return params, np.array(lls), np.array(objectives)


def em_to_convergence(family, data, start, *, tol=1e-12, max_iter=5000, **kwargs):
    """EM until the objective improves by less than ``tol`` (relative); ``(params, objective)``."""
    params = start
    last = -np.inf
    for _ in range(max_iter):
        params, _, objective = em(family, data, params, 1, **kwargs)
        if objective[-1] - last <= tol * abs(objective[-1]):
            return params, objective[-1]
        last = objective[-1]
    raise RuntimeError("the reference EM did not converge")
