"""The command line: `jaxem demo` and `jaxem fit DATA -k K`, against independent references.

Compilation dominates the cost: the 2-D fits below use the demo's shapes (Old
Faithful, MultivariateNormal("full"), K=2, 8 restarts) and the CLI keeps one
model per configuration, so in one process they reuse the demo's program.
"""

import json
import re
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture
from test_coins import numpy_coin_em

import jaxem as em
from jaxem import cli

FAITHFUL = em.datasets.load_faithful()


def png_size(path) -> tuple[int, int]:
    """(width, height) from the PNG header (IHDR), written by anyone."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def sklearn_mixture(weights, means, covs) -> GaussianMixture:
    """A scikit-learn GaussianMixture holding the given parameters (no fitting)."""
    covs = np.asarray(covs, np.float64)
    gm = GaussianMixture(n_components=len(weights), covariance_type="full")
    gm.weights_ = np.asarray(weights, np.float64)
    gm.means_ = np.asarray(means, np.float64)
    gm.covariances_ = covs
    # Any P with P Pᵀ = Σ⁻¹, upper triangular (sklearn takes log det from its diagonal).
    gm.precisions_cholesky_ = np.stack([np.linalg.inv(np.linalg.cholesky(c)).T for c in covs])
    return gm


def run(argv, capsys):
    """(exit code, stdout, stderr) of an in-process `jaxem ...`."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- demo ---------------------------------------------------------------------------------
def test_demo_prints_the_fits_and_writes_the_plot(capsys, tmp_path):
    path = tmp_path / "demo.png"
    code, out, err = run(["demo", "--restarts", "8", "--plot", path], capsys)
    assert code == 0, err
    normals, rest = out.split("2. Two coins")
    coins, faithful = rest.split("3. Old Faithful")
    # The coin rows: iterations then p_A, p_B, checked against the NumPy EM.
    for n_iter in (1, 10):
        row = re.search(rf"^\s*{n_iter}\s+([0-9.]+)\s+([0-9.]+)", coins, re.M)
        assert row, out
        np.testing.assert_allclose(
            [float(row[1]), float(row[2])], numpy_coin_em([0.6, 0.5], n_iter), atol=1e-4
        )
    # The three-normal table: means near the generating 25/30/40, in order.
    means = [float(m) for m in re.findall(r"^\s*\d\s+0\.\d+\s+([0-9.]+)", normals, re.M)]
    np.testing.assert_allclose(means, [24.87, 29.90, 40.00], atol=0.02)
    assert "converged=True" in normals
    # Old Faithful: weight and means of each component against scikit-learn's EM.
    rows = re.findall(r"^\s*\d\s+(0\.\d+)\s+([0-9.]+)\s+([0-9.]+)", faithful, re.M)
    assert len(rows) == 2, out
    ref = GaussianMixture(2, n_init=4, tol=1e-10, max_iter=2000, random_state=0).fit(FAITHFUL)
    order = np.argsort(ref.means_[:, 0])
    expect = np.column_stack([ref.weights_[order], ref.means_[order]])
    np.testing.assert_allclose(np.array(rows, float), expect, rtol=2e-3)
    assert f"wrote {path}" in out
    assert png_size(path) == (1500, 460)


def test_demo_without_matplotlib_still_succeeds(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    code, out, err = run(["demo", "--restarts", "8"], capsys)
    assert code == 0, err
    assert "pip install matplotlib" in out
    code, out, _ = run(["demo", "--restarts", "8", "--no-plot"], capsys)
    assert code == 0 and "pip install" not in out and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


# -- fit: real files end to end -----------------------------------------------------------
@pytest.fixture(scope="module")
def faithful_files(tmp_path_factory):
    """The same (duration, waiting) data as CSV with a header and a text column, as a
    header-less CSV with a column in between, and as .npy."""
    d = tmp_path_factory.mktemp("faithful")
    with_header = d / "faithful.csv"
    lines = ["duration,kind,waiting"] + [
        f"{a!r},{'long' if a > 3 else 'short'},{b!r}" for a, b in FAITHFUL.tolist()
    ]
    with_header.write_text("\n".join(lines) + "\n")
    no_header = d / "plain.csv"
    np.savetxt(no_header, np.column_stack([FAITHFUL[:, 0], -FAITHFUL[:, 1], FAITHFUL[:, 1]]))
    npy = d / "faithful.npy"
    np.save(npy, FAITHFUL)
    return {"header": with_header, "plain": no_header, "npy": npy}


@pytest.fixture(scope="module")
def faithful_fit(faithful_files, tmp_path_factory):
    """`jaxem fit faithful.csv -k 2 --columns duration,waiting` and its JSON."""
    out = tmp_path_factory.mktemp("fit") / "fit.json"
    code = cli.main(
        [
            "fit",
            str(faithful_files["header"]),
            "-k",
            "2",
            "--columns",
            "duration,waiting",
            "--restarts",
            "8",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return json.loads(out.read_text())


def test_fit_json_matches_scikit_learn(faithful_fit):
    r = faithful_fit
    assert r["family"] == "mvn" and r["covariance_type"] == "full"
    assert r["columns"] == ["duration", "waiting"] and r["n_samples"] == 272
    p = r["params"]
    gm = sklearn_mixture(p["weights"], p["mean"], p["cov"])
    # scikit-learn's log-likelihood at the JSON's parameters, and its BIC/AIC formulas.
    np.testing.assert_allclose(r["log_likelihood"], gm.score_samples(FAITHFUL).sum(), rtol=1e-5)
    np.testing.assert_allclose(r["bic"], gm.bic(FAITHFUL), rtol=1e-5)
    np.testing.assert_allclose(r["aic"], gm.aic(FAITHFUL), rtol=1e-5)
    assert r["n_parameters"] == gm._n_parameters() == 11
    # And the optimum: scikit-learn's own EM, run to a tight tolerance.
    ref = GaussianMixture(2, n_init=4, tol=1e-10, max_iter=2000, random_state=0).fit(FAITHFUL)
    np.testing.assert_allclose(r["log_likelihood"], ref.score(FAITHFUL) * 272, atol=2e-3)
    assert np.all(np.diff(np.array(p["mean"])[:, 0]) > 0)  # listed by the first column's mean
    assert r["converged"] and r["restarts"] == 8 and len(r["restart_objectives"]) == 8
    assert r["objective"] == r["log_likelihood"]  # no prior


@pytest.mark.parametrize(
    "source, columns",
    [("header", None), ("header", "0,2"), ("plain", "0,2"), ("npy", None)],
)
def test_fit_reads_every_layout_alike(
    faithful_files, faithful_fit, source, columns, tmp_path, capsys
):
    # Header detected (its text column skipped by default) or absent, columns by name
    # or index, .npy: the same data must give the same fit (same program, same key).
    out = tmp_path / "fit.json"
    argv = ["fit", faithful_files[source], "-k", 2, "--restarts", 8, "--out", out]
    code, stdout, err = run(argv + (["--columns", columns] if columns else []), capsys)
    assert code == 0, err
    assert ("skipping non-numeric column(s) kind" in err) == (source == "header" and not columns)
    r = json.loads(out.read_text())
    names = {"header": ["duration", "waiting"], "plain": ["col0", "col2"], "npy": ["col0", "col1"]}
    assert r["columns"] == names[source]
    for name in ("weights", "mean", "cov"):
        np.testing.assert_array_equal(r["params"][name], faithful_fit["params"][name])
    assert r["log_likelihood"] == faithful_fit["log_likelihood"]


def test_fit_table_lists_components_in_order(faithful_files, capsys):
    code, out, _ = run(
        ["fit", faithful_files["npy"], "-k", 2, "--restarts", 8, "--columns", "0,1"], capsys
    )
    assert code == 0
    rows = re.findall(r"^\s*(\d)\s+(0\.\d+)\s+([0-9.]+)\s+([0-9.]+)", out, re.M)
    assert [r[0] for r in rows] == ["1", "2"]
    np.testing.assert_allclose([float(r[2]) for r in rows], [2.036, 4.290], atol=2e-3)
    assert "BIC" in out and "converged=True" in out


def test_fit_one_column_normal_with_plot(faithful_files, tmp_path, capsys):
    out, png = tmp_path / "fit.json", tmp_path / "fit.png"
    argv = ["fit", faithful_files["header"], "-k", 2, "--columns", "waiting", "--restarts", 8]
    code, stdout, err = run(argv + ["--out", out, "--plot", png], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["family"] == "normal" and r["columns"] == ["waiting"]
    w, mean, var = (np.array(r["params"][k]) for k in ("weights", "mean", "var"))
    gm = sklearn_mixture(w, mean[:, None], var[:, None, None])
    x = FAITHFUL[:, 1:]
    np.testing.assert_allclose(r["log_likelihood"], gm.score_samples(x).sum(), rtol=1e-5)
    np.testing.assert_allclose(r["bic"], gm.bic(x), rtol=1e-5)
    ref = GaussianMixture(2, n_init=4, tol=1e-10, max_iter=2000, random_state=0).fit(x)
    np.testing.assert_allclose(r["log_likelihood"], ref.score(x) * 272, atol=2e-3)
    assert png_size(png) == (960, 380) and f"wrote {png}" in stdout


def numpy_poisson_em(x, rate, weights, n_iter=2000):
    """Float64 EM for a Poisson mixture (exact M-step)."""
    for _ in range(n_iter):
        log_r = stats.poisson.logpmf(x[:, None], rate) + np.log(weights)
        r = np.exp(log_r - logsumexp(log_r, axis=1, keepdims=True))
        weights, rate = r.mean(0), (r * x[:, None]).sum(0) / r.sum(0)
    return weights, rate


def test_fit_poisson_counts_with_progress_and_plot(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.poisson(2.0, 200), rng.poisson(9.0, 100)])
    data = tmp_path / "counts.csv"
    data.write_text("count\n" + "\n".join(map(str, x)) + "\n")
    out, png = tmp_path / "fit.json", tmp_path / "fit.png"
    argv = ["fit", data, "-k", 2, "--family", "poisson", "--restarts", 8, "--progress", 5]
    code, stdout, err = run(argv + ["--out", out, "--plot", png], capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    w, rate = np.array(r["params"]["weights"]), np.array(r["params"]["rate"])
    ll = logsumexp(stats.poisson.logpmf(x[:, None], rate) + np.log(w), axis=1).sum()
    np.testing.assert_allclose(r["log_likelihood"], ll, rtol=1e-5)
    np.testing.assert_allclose(r["bic"], -2 * ll + 3 * np.log(300), rtol=1e-5)
    w_ref, rate_ref = numpy_poisson_em(x.astype(float), np.array([1.0, 5.0]), np.full(2, 0.5))
    np.testing.assert_allclose(rate, rate_ref, rtol=1e-3)  # listed by rate
    np.testing.assert_allclose(w, w_ref, rtol=1e-3)
    assert re.search(r"jaxem: iteration\s+5\s+best objective", err), err
    assert png_size(png) == (960, 380)


@pytest.mark.slow
def test_fit_missing_values_marginalized(faithful_files, tmp_path, capsys):
    # One column: a NaN row carries nothing, so the fit is the fit of the other rows.
    x = FAITHFUL[:, 1].copy()
    x[::10] = np.nan
    data = tmp_path / "gaps.csv"
    data.write_text("waiting\n" + "\n".join("NA" if np.isnan(v) else repr(v) for v in x.tolist()))
    out = tmp_path / "fit.json"
    argv = ["fit", data, "-k", 2, "--restarts", 8, "--missing", "marginalize", "--out", out]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["n_missing"] == 28
    kept = x[~np.isnan(x)][:, None]
    ref = GaussianMixture(2, n_init=4, tol=1e-10, max_iter=2000, random_state=0).fit(kept)
    np.testing.assert_allclose(r["log_likelihood"], ref.score(kept) * len(kept), atol=2e-3)
    np.testing.assert_allclose(r["bic"], -2 * r["log_likelihood"] + 5 * np.log(272), rtol=1e-6)


# -- fit: bad input -----------------------------------------------------------------------
BAD = [
    # (file contents or None for no file, extra arguments, exit code, message)
    (None, [], 1, "no such file"),
    ("", [], 1, "the file is empty"),
    ("# only a comment\n\n", [], 1, "the file is empty"),
    ("a,b\n", [], 1, "has a header but no data rows"),
    ("a,b\n1,2\n3,x4\n", [], 1, "line 3, column 'b': 'x4' is not a number"),
    ("1,2\n3,4\n5\n", [], 1, "line 3 has 1 fields, expected 2"),
    ("a,b\n1,2\n3,4\n", ["-k", "3"], 1, "-k 3 is larger than the number of rows (2)"),
    ("a,b\n1,2\n3,4\n", ["-k", "0"], 2, "-k must be >= 1, got 0"),
    ("a\n1\n2\n", ["--family", "weibull"], 2, "choose one of: normal, mvn, poisson"),
    ("a,b\n1,2\n3,4\n", ["--columns", "a,c"], 2, "unknown column 'c' in --columns; the columns are: a, b"),  # noqa: E501
    ("1,2\n3,4\n", ["--columns", "2"], 2, "the columns are: indices 0..1"),
    ("a\n1\n-2\n3\n", ["--family", "exponential"], 1, "x must be >= 0"),
    ("a\n1.5\n2\n3\n", ["--family", "poisson"], 1, "non-negative integer counts"),
    ("a,b\n1,\n3,NA\n5,6\n", [], 1, "2 missing values (empty or NaN cells) in 2 rows; pass --missing marginalize"),  # noqa: E501
    ("a\n1\n2\n", ["--family", "poisson", "--covariance-type", "diag"], 2, "mvn or mclust only"),
    ("a\n1\n2\n", ["--family", "binomial"], 2, "needs --n-trials"),
    ("a\n1\n2\n", ["--restarts", "0"], 2, "--restarts must be >= 1"),
    ("a\n1\n2\n", ["--bogus"], 2, "unrecognized arguments: --bogus"),
    ("a\n1\n2\n", ["--seed", "99999999999999999999999"], 2, "argument --seed: seed must be in [0, 2**32), got 99999999999999999999999"),  # noqa: E501
    ("a\n1\n2\n", ["--seed", str(2**32)], 2, "seed must be in [0, 2**32)"),
    ("a\n1\n2\n", ["--seed", "-1"], 2, "seed must be in [0, 2**32), got -1"),
    ("a\n1\n2\n", ["--seed", "1.5"], 2, "argument --seed: invalid int value: '1.5'"),
]  # fmt: skip


@pytest.mark.parametrize("contents, extra, code, message", BAD)
def test_bad_input_one_line_and_exit_code(tmp_path, capsys, contents, extra, code, message):
    data = tmp_path / "data.csv"
    if contents is not None:
        data.write_text(contents)
    argv = ["fit", data] + (extra if "-k" in extra else ["-k", "1"] + extra)
    got, out, err = run(argv, capsys)
    assert got == code, err
    assert message in err
    assert err.startswith("jaxem fit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""


def test_demo_bad_arguments(capsys):
    code, out, err = run(["demo", "--restarts", "0"], capsys)
    assert code == 2 and out == ""
    assert err == "jaxem demo: error: --restarts must be >= 1\n"
    code, out, err = run(["demo", "--seed", "99999999999999999999999"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("jaxem demo: error: argument --seed: seed must be in [0, 2**32)")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_seed_range_edges_parse():
    # jax.random.key keeps a seed's low 32 bits (2**32 would repeat seed 0): [0, 2**32) is
    # accepted as is.
    for seed in (0, 2**32 - 1):
        args = cli._parser().parse_args(["fit", "data.csv", "-k", "1", "--seed", str(seed)])
        assert args.seed == seed


@pytest.mark.parametrize("shape", [(0, 2), (0,), (3, 0)])
def test_empty_npy_is_one_line(tmp_path, capsys, shape):
    data = tmp_path / "empty.npy"
    np.save(data, np.zeros(shape))
    code, out, err = run(["fit", data, "-k", 2], capsys)
    assert code == 1 and out == ""
    what = "no columns" if shape[0] else "no rows"
    assert err == f"jaxem fit: error: {data}: the array has {what} (shape {shape}).\n"


def test_huge_values_one_line_in_float32_and_fit_with_float64(faithful_fit, tmp_path, capsys):
    # Faithful in units of 1e-20: squares of ~1e21 overflow float32's statistics.
    data = tmp_path / "huge.npy"
    np.save(data, FAITHFUL * 1e20)
    code, out, err = run(["fit", data, "-k", 2, "--restarts", 8], capsys)
    assert code == 1 and out == ""
    assert err.startswith("jaxem fit: error: ") and err.count("\n") == 1, err
    assert "float32" in err and "rescale" in err and "pass --float64" in err
    assert "Traceback" not in err

    # In float64 it fits, and the fit is Faithful's, rescaled.
    import jax

    x64 = jax.config.jax_enable_x64
    js = tmp_path / "fit.json"
    code, out, err = run(["fit", data, "-k", 2, "--restarts", 8, "--float64", "--out", js], capsys)
    assert code == 0, err
    assert jax.config.jax_enable_x64 == x64  # the switch is undone after the fit
    r, ref = json.loads(js.read_text()), faithful_fit
    assert r["dtype"] == "float64" and ref["dtype"] == "float32"
    np.testing.assert_allclose(r["params"]["weights"], ref["params"]["weights"], rtol=1e-3)
    np.testing.assert_allclose(
        np.array(r["params"]["mean"]) / 1e20, ref["params"]["mean"], rtol=1e-3
    )
    np.testing.assert_allclose(np.array(r["params"]["cov"]) / 1e40, ref["params"]["cov"], rtol=5e-3)
    shift = FAITHFUL.size * np.log(1e20)  # the density scales by 1e-20 per coordinate
    np.testing.assert_allclose(r["log_likelihood"], ref["log_likelihood"] - shift, atol=0.05)
    assert re.search(r"^\s*1\s+0\.\d+\s+2\.03\d+e\+20\s", out, re.M), out


def fake_fit(mean, var, objective):
    """An `em.fit` stand-in returning a 2-component normal fit with the given numbers."""

    def fit(model, x, **kwargs):
        return em.FitResult(
            params=em.MixtureParams(
                np.array([0.5, 0.5]), em.NormalParams(np.array(mean), np.array(var))
            ),
            objective=objective,
            log_likelihood=objective,
            n_iter=3,
            n_evals=4,
            converged=False,
            history=np.array([-20.0, -15.0, -12.0, objective]),
            restart_objectives=np.array([objective, np.nan]),
            restart_n_iter=np.array([3, 3]),
            restart_converged=np.array([False, False]),
        )

    return fit


def test_non_finite_estimates_print_and_write_null(tmp_path, capsys, monkeypatch):
    # Whatever numbers a fit returns (huge, inf, NaN), the table and the JSON still come out:
    # the JSON strict, with null for a non-finite number.
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n2\n3\n4\n")
    monkeypatch.setattr(em, "fit", fake_fit([1e300, np.nan], [np.inf, -1.0], -12.0))
    js = tmp_path / "fit.json"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(["fit", data, "-k", 2, "--restarts", 2, "--out", js], capsys)
    assert code == 0, err
    assert "Traceback" not in err and "Warning" not in err, err
    assert [str(w.message) for w in caught] == []  # no NumPy/JAX RuntimeWarning either
    assert "1e+300" in out and "inf" in out and "nan" in out

    def no_constants(name):
        raise AssertionError(f"not strict JSON: {name}")

    r = json.loads(js.read_text(), parse_constant=no_constants)
    assert sorted(map(str, r["params"]["mean"])) == ["1e+300", "None"]
    assert None in r["params"]["var"] and r["restart_objectives"] == [-12.0, None]
    assert r["objective"] == r["log_likelihood"] == -12.0
    np.testing.assert_allclose(r["bic"], 24.0 + 5 * np.log(4))  # from the fit's log-likelihood


def test_fit_without_a_finite_start_is_one_line(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n2\n3\n4\n")
    monkeypatch.setattr(em, "fit", fake_fit([np.nan, np.nan], [np.nan, np.nan], np.nan))
    code, out, err = run(["fit", data, "-k", 2, "--restarts", 2], capsys)
    assert code == 1 and out == ""
    assert err == (
        f"jaxem fit: error: {data}: the fit failed: the log-likelihood is not finite at any of "
        "the 2 starts (check the data's scale and the family).\n"
    )


def test_plot_without_matplotlib_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n2\n3\n")
    code, out, err = run(["fit", data, "-k", 1, "--plot", tmp_path / "x.png"], capsys)
    assert code == 1 and out == ""
    assert err == "jaxem fit: error: --plot needs matplotlib: pip install matplotlib\n"


def test_read_data_delimiters_header_and_missing_cells(tmp_path):
    cases = {
        "a;b\n1;2\n3;NA\n": (["a", "b"], [[1, 2], [3, np.nan]]),
        "# comment\n1\t2\n\n3\t4\n": (["col0", "col1"], [[1, 2], [3, 4]]),
        "1 2\n3 4\n": (["col0", "col1"], [[1, 2], [3, 4]]),
        "\ufeffx,y\n1e3,-2\n": (["x", "y"], [[1000, -2]]),
    }
    for i, (text, (names, values)) in enumerate(cases.items()):
        path = tmp_path / f"d{i}.csv"
        path.write_text(text, encoding="utf-8")
        x, got = cli.read_data(str(path))
        assert got == names
        np.testing.assert_array_equal(x, values)
    x, got = cli.read_data(str(tmp_path / "d0.csv"), "b")
    assert got == ["b"] and x.shape == (2, 1)


# -- the installed entry point (one subprocess each: ~2 s of imports) ----------------------
def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out and "fit" in out


def test_bad_arguments_exit_nonzero_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "fit", str(tmp_path / "nope.csv"), "-k", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr == f"jaxem fit: error: {tmp_path / 'nope.csv'}: no such file.\n"
    assert proc.stdout == ""


def test_fit_hmm_with_a_sequence_column_equals_the_library(tmp_path, capsys):
    """--model hmm --sequence-column: rows grouped by id (interleaved in the file), as em.fit."""
    from test_hmm import SEQS

    rows = [(f"s{b}", t, *r) for b, s in enumerate(SEQS) for t, r in enumerate(s)]
    rows.sort(key=lambda r: (r[1], r[0]))  # interleave the sequences, each in order
    path = tmp_path / "seqs.csv"
    path.write_text("t,id,a,b\n" + "".join(f"{t},{i},{a:.17g},{b:.17g}\n" for i, t, a, b in rows))
    out, png = tmp_path / "hmm.json", tmp_path / "hmm.png"
    argv = ["fit", path, "--model", "hmm", "-k", "3", "--sequence-column", "id",
            "--columns", "a,b", "--covariance-type", "diag", "--restarts", "4",
            "--out", out, "--plot", png]  # fmt: skip
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "426 rows in 4 sequence(s)" in stdout and "transition probabilities" in stdout
    record = json.loads(out.read_text())
    assert record["lengths"] == [len(s) for s in SEQS]
    model = em.HMM(em.MultivariateNormal("diag"), 3)
    res = em.fit(model, SEQS, key=jax.random.key(0), restarts=4)
    assert record["log_likelihood"] == pytest.approx(res.log_likelihood, rel=1e-5)
    means = np.sort(np.asarray(res.params.emissions.mean)[:, 0])
    np.testing.assert_allclose(
        np.sort(np.asarray(record["params"]["mean"])[:, 0]), means, rtol=1e-4
    )
    transition = np.asarray(record["params"]["transition"])
    np.testing.assert_allclose(transition.sum(1), 1, rtol=1e-6)
    assert png_size(png)[0] > 0
    code, _, err = run(["fit", path, "-k", "3", "--sequence-column", "id"], capsys)
    assert code == 2 and "--sequence-column applies to --model hmm only" in err
