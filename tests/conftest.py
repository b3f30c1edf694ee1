"""Shared references for the tests: float64 NumPy/SciPy implementations, no jaxem code."""

import os

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

# Tests compile thousands of small programs: keep them out of the user's persistent
# cache (tests/test_cache.py checks the cache itself, in subprocesses).
os.environ.setdefault("JAXEM_CACHE_DIR", "off")
# The command line cuts tables to the terminal's width: the tests see a fixed one.
os.environ["COLUMNS"] = "100"


def gaussian_hmm_sequences(rng, trans, mean, sd, lengths) -> np.ndarray:
    """Concatenated sequences of a Gaussian HMM (NumPy, for references), each starting in a
    uniformly drawn state: ``trans (K, K)``, ``mean``/``sd`` ``(K,)``, one length per sequence."""
    trans, mean, sd = np.asarray(trans), np.asarray(mean), np.asarray(sd)
    k = len(mean)
    parts = []
    for t in lengths:
        z = [rng.integers(k)]
        for _ in range(t - 1):
            z.append(rng.choice(k, p=trans[z[-1]]))
        parts.append(rng.normal(mean[z], sd[z]))
    return np.concatenate(parts)


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
def faithful_csv(tmp_path_factory):
    """Old Faithful's two columns as a CSV with a header (the CLI tests' data file)."""
    from jaxem.datasets import load_faithful

    path = tmp_path_factory.mktemp("faithful") / "faithful.csv"
    lines = ["duration,waiting"] + [f"{a!r},{b!r}" for a, b in load_faithful().tolist()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def seed_data():
    """The seed example: 500/500/250 points at means 30/25/40, sd 1.75/1/0.25."""
    from jaxem.demos import three_normals

    return three_normals()


# -- the default suite's budget ---------------------------------------------------------------
# Tests that each took more than 5 s on 2 cores (`pytest --durations`, 2026-12-01, two
# xdist workers: first those above 7 s under AVX2, then those above 5 s natively). They
# run in the slow pass (`pytest -m slow`, which CI runs as well), so the README's test
# command stays near five minutes. A listed test that no longer exists is an error, so
# the list cannot rot silently.
TIMED_SLOW = {
    "test_cli_labels.py": (
        "test_wide_data_prints_a_table_that_fits_and_names_every_component",
        "test_labels_keep_rows_with_missing_values_in_place",
    ),
    "test_cli_select.py": (
        "test_select_prints_the_matrix_and_the_winner",
        "test_fit_with_an_mclust_model",
    ),
    "test_parsimonious.py": ("test_the_four_sklearn_models_fit_as_sklearn[tied]",),
    "test_uncertainty.py": ("test_wald_intervals_natural_and_unconstrained",),
    "test_chunks.py": (
        "test_chunked_equals_one_pass[closed form]",
        "test_chunked_equals_one_pass[missing]",
        "test_chunked_equals_one_pass[labels]",
    ),
    "test_cli.py": (
        "test_fit_hmm_with_a_sequence_column_equals_the_library",
        "test_demo_prints_the_fits_and_writes_the_plot",
        "test_huge_values_one_line_in_float32_and_fit_with_float64",
        "test_demo_without_matplotlib_still_succeeds",
        "test_fit_poisson_counts_with_progress_and_plot",
        "test_fit_one_column_normal_with_plot",
    ),
    "test_coins.py": ("test_float64",),
    "test_custom_family.py": ("test_weibull_mixture_is_the_scipy_maximum",),
    "test_degenerate.py": ("test_property_monotone_and_responsibilities_sum_to_one[gradient]",),
    "test_estimators.py": (
        "test_convergence_warning_is_both_jaxems_and_sklearns",
        "test_mixture_estimator_poisson_with_missing_counts",
    ),
    "test_family_mvn.py": (
        "test_same_em_as_sklearn_float64[1e-06-full]",
        "test_tied_init_and_helpers",
    ),
    "test_fit.py": (
        "test_changing_a_prior_after_a_fit_recompiles",
        "test_zero_weight_rows_do_not_seed_random_starts",
        "test_float32_default_and_float64_under_x64",
        "test_restarts_draw_different_starts_and_same_key_repeats",
    ),
    "test_fixed.py": (
        "test_a_reference_component_of_a_gaussian_mixture",
        "test_fixed_weights_on_the_ecm_path",
        "test_counts_of_free_parameters",
        "test_fixed_weights_with_a_custom_m_step",
        "test_fixed_fit_equals_the_conditional_numpy_em[means by name (gradient)]",
    ),
    "test_hmm.py": (
        "test_baum_welch_equals_float64_numpy_with_unequal_lengths_and_weights[None-scaled]",
        "test_baum_welch_equals_float64_numpy_with_unequal_lengths_and_weights[None-log]",
        "test_baum_welch_equals_float64_numpy_with_unequal_lengths_and_weights[2-log]",
        "test_fitted_zeros_are_not_structural_and_priors_see_the_support",
        "test_public_functions_are_the_chain_posteriors_concatenated",
    ),
    "test_hmm_estimators.py": (
        "test_restarts_never_lose_and_attributes_follow_the_dtype",
        "test_generic_estimator_with_poisson_emissions",
        "test_baum_welch_iterates_equal_hmmlearns[full-0.01]",
        "test_baum_welch_iterates_equal_hmmlearns[diag-0.0]",
        "test_bad_data_and_unfitted_use",
        "test_params_letters_hold_parameters_and_priors_match",
        "test_baum_welch_iterates_equal_hmmlearns[spherical-0.01]",
    ),
    "test_input_limits.py": (
        "test_scoring_one_row_with_fitted_parameters",
        "test_more_restarts_include_the_first_start",
        "test_large_data_fits_in_float64_where_float32_refuses",
    ),
    "test_labels_weights.py": (
        "test_stacked_starts_run_as_restarts",
        "test_progress_reports_from_the_compiled_loop",
    ),
    "test_missing.py": (
        "test_mvn_fit_is_a_maximum_of_the_observed_likelihood",
        "test_gradient_path_with_missing_matches_the_closed_form",
        "test_mvn_observed_loglik_matches_scipy_marginals[full]",
        "test_mcar_on_old_faithful_recovers_the_complete_data_clustering",
        "test_mvn_observed_loglik_matches_scipy_marginals[diag]",
        "test_mvn_observed_loglik_matches_scipy_marginals[tied]",
        "test_mvn_observed_loglik_matches_scipy_marginals[spherical]",
        "test_independent_features_drop_missing_terms",
    ),
    "test_monotone.py": (
        "test_objective_never_decreases[float64-normal-map-gradient]",
        "test_objective_never_decreases[float32-normal-map-gradient]",
    ),
    "test_normal_map.py": (
        "test_gradient_path_reaches_the_same_map",
        "test_non_conjugate_prior_is_honoured",
        "test_hand_written_model_reaches_the_same_map",
    ),
    "test_regression.py": (
        "test_integer_sample_weight_equals_repeated_rows",
        "test_fixed_gating_entries_are_held_and_counted_once",
        "test_custom_regression_family_reaches_the_closed_form_fit",
    ),
    "test_regression_estimator.py": (
        "test_cli_regression_matches_em_fit",
        "test_estimator_matches_em_fit_and_its_own_predictions",
    ),
    "test_squarem.py": (
        "test_same_fixed_point_as_plain_em[normal-map]",
        "test_evaluation_count_is_reported",
        "test_same_fixed_point_as_plain_em[normal-overlap-ml]",
        "test_same_fixed_point_as_plain_em[binomial-beta]",
    ),
    "test_stream.py": (
        "test_factory_batches_are_all_used_once_per_pass",
        "test_exact_stream_reproduces_in_memory_em",
        "test_a_last_batch_shorter_than_n_components_is_used",
    ),
    "test_units.py": (
        "test_covariate_model_equals_float64_numpy_em_from_the_same_start",
        "test_inference_is_the_models",
        "test_lists_none_and_tuples_of_numbers_in_data",
        "test_a_model_with_its_own_statistics_equals_the_numpy_em_chunked_or_not",
    ),
}

# 2026-12-06: above 4.5 s in a default run (`--durations`, two workers, 4:58 in all).
for _file, _tests in {
    "test_labels_weights.py": ("test_gradient_restarts_run_in_turn_on_a_cpu",),
    "test_fit.py": (
        "test_a_model_changed_after_its_fit_never_serves_an_equal_model",
        "test_nearby_row_counts_share_one_compiled_program",
        "test_an_equal_new_model_reuses_the_compiled_program",
    ),
    "test_estimators.py": (
        "test_grid_search_over_n_components_picks_three",
        "test_init_schemes_draw_valid_starts",
    ),
    "test_model_selection.py": ("test_mclust_faithful_result_and_icl",),
    "test_uncertainty.py": (
        "test_bootstrap_with_squarem_reaches_the_same_replicates",
        "test_cli_se_is_the_library_at_the_printed_estimates",
    ),
    "test_cli_labels.py": ("test_regression_labels_are_the_library_map_components",),
    "test_regression.py": ("test_chunked_equals_unchunked[gating]",),
    "test_family_mvn.py": ("test_float32_expanded_forms_fall_back_where_they_would_cancel[full]",),
}.items():
    TIMED_SLOW[_file] = (*TIMED_SLOW.get(_file, ()), *_tests)


# 2026-12-06 (second session, a 2-core AMD EPYC): the default run took 5:00 with two new
# bootstrap tests; these were above 4.4 s there in one run or another (the Newton start
# stays covered by default through test_bootstrap_undoes_label_switching, which runs it).
for _file, _tests in {
    "test_uncertainty.py": (
        "test_newton_start_holds_fixed_entries_and_falls_back_where_it_cannot_step",
        "test_newton_started_replicates_are_the_em_fits_in_fewer_iterations",
    ),
    "test_monotone.py": ("test_objective_never_decreases[float32-binomial-map-closed]",),
    "test_regression.py": ("test_predict_mean_matches_numpy[gating]",),
    "test_fit.py": ("test_user_functions_reading_globals_are_not_shared_across_models",),
    "test_squarem.py": (
        "test_squarem_fit_is_monotone_on_random_mixtures",
        "test_fewer_evaluations_on_an_overlapping_mixture",
    ),
    "test_parsimonious.py": ("test_standard_errors_refuse_tied_models_and_point_to_the_bootstrap",),
    "test_regression_estimator.py": ("test_estimator_float32_and_validation",),
}.items():
    TIMED_SLOW[_file] = (*TIMED_SLOW.get(_file, ()), *_tests)


def _narrowed_files(config) -> set:
    """Test files the command line named with some of their tests (``file::test``): their
    other tests are not collected, which says nothing about whether they exist."""
    out = set()
    for arg in config.args:
        if "::" in arg:
            path = os.path.abspath(arg.split("::")[0])
            out.add(os.path.relpath(path, config.rootpath).replace(os.sep, "/"))
    return out


@pytest.hookimpl(tryfirst=True)  # before -m 'not slow' deselects
def pytest_collection_modifyitems(config, items):
    slow = {f"tests/{name}::{test}" for name, tests in TIMED_SLOW.items() for test in tests}
    collected = {item.nodeid for item in items}
    files = {nid.split("::")[0] for nid in collected} - _narrowed_files(config)
    stale = sorted(nid for nid in slow if nid.split("::")[0] in files and nid not in collected)
    if stale:
        raise pytest.UsageError(f"conftest.TIMED_SLOW names tests that do not exist: {stale}")
    for item in items:
        if item.nodeid in slow:
            item.add_marker(pytest.mark.slow)
