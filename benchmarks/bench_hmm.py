"""Baum–Welch per iteration: jaxem against hmmlearn, same data, same start, same iteration count.

Diagonal-Gaussian HMMs in float64 (hmmlearn computes in float64) and, for
jaxem, also float32 (the accelerator's precision). Each side runs ``n`` and
``1`` iterations with ``tol=0`` from the same start; the time per iteration is
``(t(n) - t(1)) / (n - 1)`` (best of ``repeats``), so compilation and setup
cancel. jaxem's compile time is reported separately. The relative gap of the
final log-likelihoods checks that both ran the same iterations.

Cases (the issue's): 100 sequences x 1000 steps (K = 8, D = 4); one sequence
of 1e6 steps; 10 000 short sequences of 20 steps. ``--quick`` shrinks them.
With dynamax importable (it needs tensorflow-probability; not a test
dependency), its ``DiagonalGaussianHMM.fit_em`` is timed too, in float32 from
the same start (its own default priors, so its log-likelihoods differ a
little; ``num_iters`` is static there, so each count is compiled first).
Run from the repository root: ``python benchmarks/bench_hmm.py [--quick]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time
import warnings

import jax
import numpy as np

import jaxem as em


def _data(rng, n_seq, t_len, k, d):
    a = np.full((k, k), 0.1 / (k - 1)) + np.eye(k) * (0.9 - 0.1 / (k - 1))
    means = rng.normal(0, 3, (k, d))
    z = np.empty((n_seq, t_len), int)
    z[:, 0] = rng.integers(k, size=n_seq)
    cum = np.cumsum(a, axis=1)
    for t in range(1, t_len):
        z[:, t] = (rng.random(n_seq)[:, None] > cum[z[:, t - 1]]).sum(1)
    x = means[z] + rng.normal(0, 1, (n_seq, t_len, d))
    return x.reshape(-1, d), [t_len] * n_seq


def _start(rng, x, k):
    d = x.shape[1]
    return dict(
        startprob=np.full(k, 1.0 / k),
        transmat=np.full((k, k), 0.5 / (k - 1)) + np.eye(k) * (0.5 - 0.5 / (k - 1)),
        means=x[rng.choice(len(x), k, replace=False)],
        covars=np.tile(np.var(x, axis=0), (k, 1)),
        d=d,
    )


def _hmmlearn(x, lengths, start, n_iter):
    from hmmlearn import hmm

    model = hmm.GaussianHMM(len(start["startprob"]), "diag", n_iter=n_iter, tol=0.0,
                            init_params="", covars_prior=0.0)  # fmt: skip
    model.startprob_, model.transmat_ = start["startprob"], start["transmat"]
    model.means_, model.covars_ = start["means"], start["covars"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        model.fit(x, lengths)
        return time.perf_counter() - t, model.score(x, lengths) if n_iter > 1 else None


_MODELS: dict = {}
#: jaxem's forward–backward form: "log" (the default, exact for any transition
#: matrix) or "scaled" (what hmmlearn's implementation="scaling" is); --estep.
ESTEP = "log"


def _jaxem(x, lengths, start, n_iter, dtype):
    k = len(start["startprob"])
    # One model per K, so that its compiled program is reused across calls.
    hmm = _MODELS.setdefault(
        (k, ESTEP), em.HMM(em.MultivariateNormal("diag", reg_covar=0.0), k, estep=ESTEP)
    )
    init = em.HMMParams(
        start["startprob"],
        start["transmat"],
        em.MultivariateNormalParams(start["means"], start["covars"]),
    )
    with jax.enable_x64(dtype == np.float64):
        data = em.sequences(x.astype(dtype), lengths)
        t = time.perf_counter()
        res = em.fit(hmm, data, init=init, max_iter=n_iter, tol=0.0)
        return time.perf_counter() - t, res.log_likelihood


def _dynamax(x, lengths, start, n_iter, dtype):
    """dynamax's DiagonalGaussianHMM.fit_em from the same start (its default priors: MAP)."""
    import jax.numpy as jnp
    from dynamax.hidden_markov_model import DiagonalGaussianHMM

    k, d = len(start["startprob"]), x.shape[1]
    model = DiagonalGaussianHMM(k, d)
    params, props = model.initialize(
        initial_probs=jnp.asarray(start["startprob"], dtype),
        transition_matrix=jnp.asarray(start["transmat"], dtype),
        emission_means=jnp.asarray(start["means"], dtype),
        emission_scale_diags=jnp.asarray(np.sqrt(start["covars"]), dtype),
    )
    batch = jnp.asarray(x.reshape(len(lengths), lengths[0], d), dtype)  # equal lengths only
    t = time.perf_counter()
    params, lps = model.fit_em(params, props, batch, num_iters=n_iter, verbose=False)
    jax.block_until_ready(lps)
    return time.perf_counter() - t, float(lps[-1])


def _have_dynamax() -> bool:
    try:
        import dynamax.hidden_markov_model  # noqa: F401
    except Exception:  # not installed, or not for this jax
        return False
    return True


def _per_iteration(run, n_iter, repeats):
    one = min(run(1)[0] for _ in range(repeats))
    many = []
    for _ in range(repeats):
        many.append(run(n_iter))
    best = min(t for t, _ in many)
    return (best - one) / (n_iter - 1), many[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--estep", default="log", choices=("log", "scaled", "blocked"))
    args = parser.parse_args()
    global ESTEP
    ESTEP = args.estep
    scale = 10 if args.quick else 1
    cases = [
        ("100 seq x 1000 steps", 100 // scale, 1000, 8, 4, 6, 2),
        ("1 seq x 1e6 steps", 1, 1_000_000 // scale, 8, 4, 3, 1),
        ("10000 seq x 20 steps", 10_000 // scale, 20, 8, 4, 6, 2),
    ]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  jax {jax.__version__} ({jax.default_backend()})  "
        f"cpus {os.cpu_count()}  {platform.machine()}  load {os.getloadavg()}  "
        f"jaxem estep={ESTEP!r}"
    )
    dyn = _have_dynamax()
    print(
        "| case | K | D | hmmlearn s/iter | jaxem f64 s/iter | ratio f64 | jaxem f32 s/iter | "
        "ratio f32 | jaxem compile s | rel. LL gap f64 | dynamax f32 s/iter | dynamax / jaxem f32 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n_seq, t_len, k, d, n_iter, repeats in cases:
        rng = np.random.default_rng(0)
        x, lengths = _data(rng, n_seq, t_len, k, d)
        start = _start(rng, x, k)
        t0 = time.perf_counter()
        _jaxem(x, lengths, start, 1, np.float64)
        compile_s = time.perf_counter() - t0
        _jaxem(x, lengths, start, 1, np.float32)
        case = functools.partial
        ours64, ll64 = _per_iteration(
            case(_jaxem, x, lengths, start, dtype=np.float64), n_iter, repeats
        )
        ours32, _ = _per_iteration(
            case(_jaxem, x, lengths, start, dtype=np.float32), n_iter, repeats
        )
        theirs, ll_ref = _per_iteration(case(_hmmlearn, x, lengths, start), n_iter, repeats)
        dyn_s = "n/a"
        dyn_ratio = "n/a"
        if dyn:
            _dynamax(x, lengths, start, 1, np.float32)  # compile
            _dynamax(x, lengths, start, n_iter, np.float32)  # num_iters is static: compile
            t_dyn, _ = _per_iteration(
                case(_dynamax, x, lengths, start, dtype=np.float32), n_iter, repeats
            )
            dyn_s, dyn_ratio = f"{t_dyn:.4g}", f"{t_dyn / ours32:.2f}"
        # hmmlearn's score is after its last M-step; jaxem's log_likelihood is at its last
        # parameters too (the same n_iter M-steps from the same start).
        gap = abs(ll64 - ll_ref) / abs(ll_ref)
        print(
            f"| {name} | {k} | {d} | {theirs:.4g} | {ours64:.4g} | {theirs / ours64:.2f} | "
            f"{ours32:.4g} | {theirs / ours32:.2f} | {compile_s:.2f} | {gap:.1e} | "
            f"{dyn_s} | {dyn_ratio} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
