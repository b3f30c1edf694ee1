"""MAP estimation of a three-component normal mixture, with 64 parallel restarts.

The example of the notebook "Introduction to the EM Algorithm": 500/500/250
points from N(30, 1.75²), N(25, 1²), N(40, 0.25²); a Normal(30, 5) prior on each
mean, an InverseGamma(5, 1) prior on each variance and a Dirichlet(1.5) prior on
the weights. Those priors have a registered closed form (ECM), so no gradient
M-step runs; swap one for, say, priors.Gamma and the gradient M-step takes over
for that family, maximising the same declared posterior.

Run: python examples/normal_mixture_map.py
"""

import jax
import numpy as np

import jaxem as em
from jaxem import priors

rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(30, 1.75, 500), rng.normal(25, 1.0, 500), rng.normal(40, 0.25, 250)])

model = em.Mixture(
    em.Normal(mean_prior=priors.Normal(30.0, 5.0**0.5), var_prior=priors.InverseGamma(5.0, 1.0)),
    n_components=3,
    weights_prior=priors.Dirichlet(1.5),
)
res = em.fit(model, x, key=jax.random.key(0), restarts=64)
print(res)
print("weights:", res.params.weights)
print("means:  ", res.params.components.mean)
print("vars:   ", res.params.components.var)

# Start from your own parameters: weights plus each field of the family, with a
# leading (n_components,) axis.
init = em.MixtureParams(
    weights=np.array([1 / 3, 1 / 3, 1 / 3]),
    components=em.NormalParams(mean=np.array([20.0, 30.0, 45.0]), var=np.array([4.0, 4.0, 4.0])),
)
res_from_init = em.fit(model, x, init=init)
print("from a given start:", res_from_init.objective, "vs best restart:", res.objective)

labels = em.predict(model, res.params, x)
print("cluster sizes:", np.bincount(np.asarray(labels), minlength=3))
