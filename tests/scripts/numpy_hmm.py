"""Float64 NumPy references for hidden Markov models (tests only).

Forward–backward in log space (logsumexp, no scaling), Viterbi, and
Baum–Welch for Gaussian (diagonal) and categorical emissions, written from
Rabiner (1989) independently of jaxem's scaled filter.
"""

import numpy as np
from scipy.special import logsumexp


def forward_backward(log_pi, log_a, log_e):
    """One sequence: ``(log-likelihood, gamma (T, K), xi summed (K, K))``."""
    t_len, k = log_e.shape
    alpha = np.empty((t_len, k))
    beta = np.zeros((t_len, k))
    alpha[0] = log_pi + log_e[0]
    for t in range(1, t_len):
        alpha[t] = logsumexp(alpha[t - 1][:, None] + log_a, axis=0) + log_e[t]
    for t in range(t_len - 2, -1, -1):
        beta[t] = logsumexp(log_a + (log_e[t + 1] + beta[t + 1])[None, :], axis=1)
    ll = logsumexp(alpha[-1])
    gamma = np.exp(alpha + beta - ll)
    xi = np.zeros((k, k))
    for t in range(t_len - 1):
        xi += np.exp(alpha[t][:, None] + log_a + (log_e[t + 1] + beta[t + 1])[None, :] - ll)
    return ll, gamma, xi


def viterbi(log_pi, log_a, log_e):
    t_len, k = log_e.shape
    delta = log_pi + log_e[0]
    back = np.zeros((t_len, k), int)
    for t in range(1, t_len):
        scores = delta[:, None] + log_a
        back[t] = np.argmax(scores, axis=0)
        delta = scores.max(axis=0) + log_e[t]
    path = [int(np.argmax(delta))]
    for t in range(t_len - 1, 0, -1):
        path.append(back[t][path[-1]])
    return np.array(path[::-1]), float(delta.max())


def gaussian_log_e(x, means, variances):
    """``(T, K)`` diagonal-Gaussian log densities; x ``(T, D)``."""
    return -0.5 * (
        np.log(2 * np.pi * variances)[None] + (x[:, None, :] - means[None]) ** 2 / variances[None]
    ).sum(-1)


def baum_welch_gaussian(seqs, pi, a, means, variances, n_iter, weights=None, labels=None):
    """Diagonal-Gaussian Baum–Welch (maximum likelihood); returns params and log-likelihoods.

    NaN entries of a sequence are missing: dropped from the emission density,
    and in the M-step replaced by their conditional moments under each state
    (E[x] = mean, E[x²] = mean² + variance at the current parameters).
    ``labels``: per sequence, ``(T,)`` known states (-1 unknown).
    """
    pi, a, means, variances = (np.array(v, np.float64) for v in (pi, a, means, variances))
    weights = np.ones(len(seqs)) if weights is None else np.asarray(weights, np.float64)
    lls = []
    for _ in range(n_iter):
        c_pi = np.zeros_like(pi)
        c_a = np.zeros_like(a)
        s0 = np.zeros(len(pi))
        s1 = np.zeros_like(means)
        s2 = np.zeros_like(means)
        total = 0.0
        for b, (w, x) in enumerate(zip(weights, seqs, strict=True)):
            seen = ~np.isnan(x)
            filled = np.where(seen, x, 0.0)
            log_e = -0.5 * (
                (
                    np.log(2 * np.pi * variances)[None]
                    + (filled[:, None] - means[None]) ** 2 / variances[None]
                )
                * seen[:, None]
            ).sum(-1)
            if labels is not None:
                known = labels[b] >= 0
                pin = known[:, None] & (np.arange(len(pi))[None] != labels[b][:, None])
                log_e = np.where(pin, -np.inf, log_e)
            ll, gamma, xi = forward_backward(np.log(pi), np.log(a), log_e)
            total += w * ll
            c_pi += w * gamma[0]
            c_a += w * xi
            s0 += w * gamma.sum(0)
            # per state k: observed entries, or the state's current moments
            ex = np.where(seen[:, None], filled[:, None], means[None])  # (T, K, D)
            ex2 = np.where(seen[:, None], filled[:, None] ** 2, means[None] ** 2 + variances[None])
            s1 += w * np.einsum("tk,tkd->kd", gamma, ex)
            s2 += w * np.einsum("tk,tkd->kd", gamma, ex2)
        lls.append(total)
        pi = c_pi / c_pi.sum()
        a = c_a / c_a.sum(1, keepdims=True)
        means = s1 / s0[:, None]
        variances = s2 / s0[:, None] - means**2
    return (pi, a, means, variances), np.array(lls)
