"""scikit-learn–style estimators: ``em.GaussianMixture``, ``em.MixtureEstimator`` and friends.

Both are thin layers over ``em.Mixture`` + ``em.fit``: ``fit`` validates on the
host, then runs the first start alone (as ``n_init=1`` does) and the other
``n_init - 1`` together under ``vmap``; fitted attributes and method results
are NumPy arrays.

Design decisions:

* **The data's dtype is the fit's dtype**, as in scikit-learn: float64 ``X``
  (and integer ``X``) is fitted in float64, with ``jax_enable_x64`` switched on
  for the duration of the call only (``jax.enable_x64``), and gives float64
  attributes; float32 ``X`` is fitted in float32 and gives float32 attributes.
  ``em.fit`` itself keeps its float32 default (the accelerator's native
  precision); the estimators follow scikit-learn because their users compare
  against it and expect its iterates.
* **More restarts are never worse.** XLA's rounding depends on how many
  restarts share a batch, so the first start runs in a batch of its own,
  exactly as with ``n_init=1``: ``n_init=10`` then never ends below
  ``n_init=1`` with the same ``random_state``, to the last bit.

* **scikit-learn is optional.** When it is importable the estimators derive from
  ``sklearn.base.DensityMixin`` and ``BaseEstimator`` (so ``clone``,
  ``Pipeline``, ``GridSearchCV`` and ``check_estimator`` work) and raise its
  ``NotFittedError``; otherwise a small stand-in base provides
  ``get_params``/``set_params``/``repr`` and ``NotFittedError`` is a
  ``ValueError`` subclass. Input validation is jaxem's own in both cases (the
  messages follow scikit-learn's where its checks look for them), so behaviour
  does not depend on which base is used.
* **Compiled programs are reused.** XLA compiles one program per model and data
  shape (seconds on a CPU). Models are kept in a small module-level cache keyed
  by their settings (an estimator holds none, so it pickles), and the rows
  handed to ``em.fit`` are padded to a bucket size (a power of two from 64 up to
  32768 rows, then a multiple of 4096) by repeating rows at a fraction of their
  weight: the weighted fit is the same fit, and cross-validation folds,
  refits and pipelines reuse one program. Seeding sees the repeated rows, so a
  row repeated for padding is (at most twice) as likely to seed a component.
* **GaussianMixture evaluates in float64 NumPy.** ``predict``,
  ``predict_proba``, ``score_samples``, ``score``, ``bic`` and ``aic`` use the
  fitted attributes (promoted to float64) with scikit-learn's formulas
  (through ``precisions_cholesky_``): no compilation, results independent of
  the batch, and identical to scikit-learn's for the same parameters.
  ``MixtureEstimator`` evaluates its family's ``log_prob`` with JAX, in the
  dtype of its fit.
* **Missing values are opt-in.** With ``missing=None`` (the default) NaN in
  ``X`` raises, as in scikit-learn. With ``missing="marginalize"`` NaN entries
  are missing values, integrated out exactly: ``fit`` runs
  ``em.fit(..., missing="marginalize")``, and every method scores the observed
  entries of each row. ``GaussianMixture`` evaluates the marginal normal of
  the observed block (one Cholesky factor per component and missingness
  pattern, shared by the rows with that pattern); ``MixtureEstimator`` masks
  the missing entries out of its family's densities. A row with nothing
  observed has log-likelihood 0 and the weights as its posterior. ``score``,
  ``bic`` and ``aic`` use the observed-data log-likelihood and ``N`` rows.

Layout: ``_compat`` (scikit-learn's bases and exceptions, or stand-ins),
``_checks`` (host-side validation of arguments, ``X`` and ``sample_weight``),
``_cache`` (the model cache and row padding), ``_gaussian`` (Gaussian starts in
JAX, float64 NumPy scoring and precisions), ``_saving`` (the saved form),
``base`` (the shared fit/predict/score machinery), ``gaussian``
(``GaussianMixture``), ``generic`` (``MixtureEstimator``), ``hmm``
(``GaussianHMM``, ``HMMEstimator``: hmmlearn's interface),
``_hmm_gaussian`` (hmmlearn's Gaussian emissions and their MAP update) and
``regressor`` (``MixtureRegressor``, a regressor's interface).
"""

from jaxem.estimators._cache import _CACHE as _CACHE
from jaxem.estimators._compat import HAVE_SKLEARN, NotFittedError
from jaxem.estimators._compat import _FitConvergenceWarning as _FitConvergenceWarning
from jaxem.estimators._gaussian import INIT_PARAMS as INIT_PARAMS
from jaxem.estimators._gaussian import _GaussianStarts as _GaussianStarts
from jaxem.estimators.gaussian import GaussianMixture
from jaxem.estimators.generic import MixtureEstimator
from jaxem.estimators.hmm import GaussianHMM, HMMEstimator
from jaxem.estimators.regressor import MixtureRegressor

__all__ = [
    "GaussianMixture",
    "MixtureEstimator",
    "GaussianHMM",
    "HMMEstimator",
    "MixtureRegressor",
    "NotFittedError",
    "HAVE_SKLEARN",
]
