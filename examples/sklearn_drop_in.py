"""jaxem's GaussianMixture in place of scikit-learn's: same arguments, parallel restarts.

Run: python examples/sklearn_drop_in.py   (needs scikit-learn for the pipeline part)
"""

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import jaxem as em

rng = np.random.default_rng(0)
X = np.vstack(
    [rng.normal(c, s, (200, 2)) for c, s in (([0, 0], 1.0), ([5, 5], 0.7), ([0, 6], 0.5))]
)

# 64 restarts run together in one compiled program (vmap), not one after another.
gm = em.GaussianMixture(n_components=3, covariance_type="full", n_init=64, random_state=0).fit(X)
print("weights", gm.weights_.round(3), "converged", gm.converged_, "iterations", gm.n_iter_)
print("BIC", round(gm.bic(X), 1), "mean log-likelihood", round(gm.score(X), 4))

# Works wherever a scikit-learn estimator does.
pipe = make_pipeline(StandardScaler(), em.GaussianMixture(3, random_state=0)).fit(X)
print("pipeline labels", np.bincount(pipe.predict(X)))

# Choose K and the covariance type by BIC (mclust-style table).
print(
    em.select_model(X, n_components=range(1, 5), covariance_types=("full", "diag"), random_state=0)
)

# Any family: a Poisson mixture of counts; save and load safely (.npz + JSON, no pickle).
counts = np.concatenate([rng.poisson(2.0, 300), rng.poisson(9.0, 200)])
pm = em.MixtureEstimator(em.Poisson(), n_components=2, n_init=16, random_state=0).fit(counts)
pm.save("poisson_mixture.npz")
print("rates", em.load("poisson_mixture.npz").params_.rate.round(2))
