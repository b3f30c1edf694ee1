"""Fit on one device and on 8 (forced CPU) devices; print both as JSON.

Run as a script: the device count must be fixed before JAX starts.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

import jaxem as em  # noqa: E402
from jaxem import priors  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from regression_model import MODEL, data  # noqa: E402


def _flat(res, name: str) -> list:
    """The objective and every parameter leaf as lists (regression lines sorted by b0)."""
    params = res.params
    if name == "covariates":  # two starts may find the same lines in the other order
        order = np.argsort(np.asarray(params["b0"]))
        params = {k: (np.asarray(v)[order] if np.ndim(v) else v) for k, v in params.items()}
        params.pop("mismatch")
    elif name in ("closed form", "gradient", "missing"):  # mixtures: components by location
        first = np.asarray(jax.tree.leaves(params.components)[0])
        order = np.argsort(first if first.ndim == 1 else first[:, 0])
        params = jax.tree.map(lambda a: np.asarray(a)[order], params)
    return [res.objective] + [np.asarray(a).tolist() for a in jax.tree.leaves(params)]


def main() -> None:
    assert len(jax.devices()) == 8
    mesh = Mesh(np.array(jax.devices()), ("data",))
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    r = np.random.default_rng(0)
    # 1536 rows, a bucket size: the one-device fit is not padded (em.fit pads rows
    # on one device only), so both draw their random starts from the same rows;
    # restarts that tie on one optimum in another label order are sorted (_flat).
    x2 = np.concatenate([r.normal(size=(768, 2)), r.normal(size=(768, 2)) + 3]).astype(np.float32)
    x1 = np.concatenate([r.standard_t(4, 768), r.standard_t(4, 768) + 6]).astype(np.float32)
    x_missing = x2.copy()
    x_missing[::7, 1] = np.nan
    cases = {
        "closed form": (em.Mixture(em.MultivariateNormal("full"), 2), x2, {}),
        "gradient": (em.Mixture(em.StudentT(df_prior=priors.Gamma(2.0, 0.1)), 2), x1, {}),
        "missing": (
            em.Mixture(em.MultivariateNormal("full"), 2),
            x_missing,
            {"missing": "marginalize"},
        ),
    }
    # A data pytree: each array sharded over the devices, the covariate with its rows.
    cases["covariates"] = (MODEL, data(1600, dtype=np.float32), {})
    # A mixture of experts: Poisson regressions (Newton M-step on the sharded
    # rows) with softmax gating on a covariate of their own.
    w = r.normal(size=1600).astype(np.float32)
    u = r.normal(size=(1600, 2)).astype(np.float32)
    first = r.random(1600) < 1 / (1 + np.exp(-2 * w))
    rate = np.exp(np.where(first, 1 + u @ [0.5, -0.5], -0.5 + u @ [-0.3, 0.8]))
    experts = {"x": u, "y": r.poisson(rate).astype(np.float32), "w": w}
    gating = em.SoftmaxGating(covariates="w")
    cases["experts"] = (em.Mixture(em.PoissonRegression(), 2, gating=gating), experts, {})
    # An HMM: 16 sequences of unequal lengths, two per device.
    seqs = [x2[i * 100 : i * 100 + 40 + 3 * i] for i in range(16)]
    cases["hmm"] = (em.HMM(em.MultivariateNormal("diag"), 2), em.sequences(seqs), {})
    out = {}
    for name, (model, x, kw) in cases.items():
        xs = jax.device_put(x, sharded)
        assert all(len(a.sharding.device_set) == 8 for a in jax.tree.leaves(xs))
        one = em.fit(model, x, key=jax.random.key(0), restarts=4, **kw)
        many = em.fit(model, xs, key=jax.random.key(0), restarts=4, **kw)
        out[name] = {"one": _flat(one, name), "many": _flat(many, name)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
