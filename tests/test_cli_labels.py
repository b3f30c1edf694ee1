"""`jaxem fit --labels`, `--plot-columns`, and tables cut to the terminal's width.

The labels are checked against the library (`em.predict`, `em.responsibilities`) and
scikit-learn at the parameters the same run wrote to its JSON, so the check holds for
whatever optimum the fit reached. The 2-D fits share the shapes of test_cli.py's (Old
Faithful, full covariances, K=2, 8 restarts): one compiled program per process.
"""

import csv
import json
import re

import numpy as np
import pytest
from test_cli import FAITHFUL, run, sklearn_mixture

import jaxem as em
import jaxem.plot
from jaxem import cli


def read_labels(path):
    """(row, label, uncertainty) as lists of strings, after checking the header."""
    with open(path, newline="") as f:
        header, *body = list(csv.reader(f))
    assert header == ["row", "label", "uncertainty"]
    assert all(len(r) == 3 for r in body)
    return [list(c) for c in zip(*body, strict=True)]


def mvn_params(record):
    p = record["params"]
    comps = em.MultivariateNormalParams(np.asarray(p["mean"]), np.asarray(p["cov"]))
    return em.MixtureParams(np.asarray(p["weights"]), comps)


# -- --labels -----------------------------------------------------------------------------
def test_labels_are_the_map_components_and_their_uncertainty(faithful_csv, tmp_path, capsys):
    js, labels_csv = tmp_path / "fit.json", tmp_path / "labels.csv"
    argv = ["fit", faithful_csv, "-k", 2, "--restarts", 8, "--out", js, "--labels", labels_csv]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert f"wrote {labels_csv} (label k: component k+1 above)" in out
    record = json.loads(js.read_text())
    rows, labels, uncertainty = read_labels(labels_csv)
    assert rows == [str(i) for i in range(272)]  # every data row, in file order
    labels, uncertainty = np.array(labels, int), np.array(uncertainty, float)

    model = em.Mixture(em.MultivariateNormal("full"), n_components=2)
    params = mvn_params(record)
    np.testing.assert_array_equal(labels, em.predict(model, params, FAITHFUL))
    post = np.asarray(em.responsibilities(model, params, FAITHFUL), np.float64)
    np.testing.assert_allclose(uncertainty, 1 - post.max(axis=1), atol=1e-6)
    # The same from scikit-learn at the JSON's parameters (mclust's uncertainty).
    gm = sklearn_mixture(*(record["params"][f] for f in ("weights", "mean", "cov")))
    np.testing.assert_array_equal(labels, gm.predict(FAITHFUL))
    np.testing.assert_allclose(uncertainty, 1 - gm.predict_proba(FAITHFUL).max(1), atol=1e-5)
    assert uncertainty.min() >= 0 and uncertainty.max() <= 0.5  # K=2
    # Label 0 is the table's component 1: the short eruptions.
    assert FAITHFUL[labels == 0, 0].mean() < 3 < FAITHFUL[labels == 1, 0].mean()


def test_labels_keep_rows_with_missing_values_in_place(tmp_path, capsys):
    # A comment and a blank line are not data rows; a row with one cell missing is
    # labelled from the other; a row with nothing observed stays, blank.
    x = FAITHFUL[:60].copy()
    x[3, 0] = np.nan
    x[7] = np.nan
    cells = [",".join("NA" if np.isnan(v) else repr(v) for v in row) for row in x.tolist()]
    data = tmp_path / "gaps.csv"
    data.write_text("\n".join(["a,b"] + cells[:5] + ["# a comment", ""] + cells[5:]) + "\n")
    js, labels_csv = tmp_path / "fit.json", tmp_path / "labels.csv"
    argv = ["fit", data, "-k", 2, "--restarts", 4, "--missing", "marginalize"]
    code, out, err = run(argv + ["--out", js, "--labels", labels_csv], capsys)
    assert code == 0, err
    assert "1 row(s) with nothing observed left blank" in out
    rows, labels, uncertainty = read_labels(labels_csv)
    assert rows == [str(i) for i in range(60)]
    assert labels[7] == uncertainty[7] == ""
    kept = np.arange(60) != 7
    model = em.Mixture(em.MultivariateNormal("full"), n_components=2)
    params = mvn_params(json.loads(js.read_text()))
    expect = np.asarray(em.predict(model, params, x, missing="marginalize"))
    post = np.asarray(em.responsibilities(model, params, x, missing="marginalize"), np.float64)
    np.testing.assert_array_equal(np.array(labels)[kept].astype(int), expect[kept])
    np.testing.assert_allclose(
        np.array(uncertainty)[kept].astype(float), 1 - post[kept].max(axis=1), atol=1e-6
    )


def test_hmm_labels_follow_the_file_not_the_sequences(tmp_path, capsys, monkeypatch):
    # Two sequences interleaved in the file: the CLI groups them to fit, and must write
    # the labels back in the file's order, numbered as its (sorted) table. The fit is
    # stubbed (an HMM's compilation costs ~8 s): it returns the generating parameters
    # with the states in the reverse of the table's order.
    rng = np.random.default_rng(0)
    states = [np.repeat([0, 1, 0, 1], n) for n in (20, 15)]
    seqs = [np.where(z == 0, 0.0, 4.0) + rng.normal(size=z.size) for z in states]
    file_rows, where = [], []  # where: (sequence, step) of each file row
    for t in range(len(seqs[0])):
        for b, s in enumerate(seqs):
            if t < len(s):
                file_rows.append(f"s{b},{float(s[t])!r}")
                where.append((b, t))
    data = tmp_path / "seqs.csv"
    data.write_text("id,value\n" + "\n".join(file_rows) + "\n")

    model = em.HMM(em.Normal(), 2)
    transition = np.array([[0.9, 0.1], [0.2, 0.8]])
    truth = em.HMMParams(
        np.array([0.3, 0.7]), transition, em.NormalParams(np.array([4.0, 0.0]), np.ones(2))
    )
    seen = []

    def fit(model, x, **kwargs):
        seen.append((np.asarray(x), kwargs["lengths"]))
        return em.FitResult(
            params=truth,
            objective=-1.0,
            log_likelihood=-1.0,
            n_iter=1,
            n_evals=1,
            converged=True,
            history=np.array([-1.0]),
            restart_objectives=np.array([-1.0]),
            restart_n_iter=np.array([1]),
            restart_converged=np.array([True]),
        )

    monkeypatch.setattr(em, "fit", fit)
    labels_csv = tmp_path / "labels.csv"
    argv = ["fit", data, "--model", "hmm", "-k", 2, "--sequence-column", "id", "--restarts", 2]
    code, out, err = run(argv + ["--labels", labels_csv], capsys)
    assert code == 0, err
    assert f"wrote {labels_csv} (label k: state k+1 above)" in out
    np.testing.assert_array_equal(seen[0][0], np.concatenate(seqs))  # grouped to fit
    assert list(seen[0][1]) == [20 * 4, 15 * 4]

    table_order = em.HMMParams(
        truth.initial[::-1],
        transition[::-1, ::-1],
        em.NormalParams(np.array([0.0, 4.0]), np.ones(2)),
    )
    viterbi = np.asarray(em.predict(model, table_order, seqs))
    post = np.asarray(em.responsibilities(model, table_order, seqs), np.float64)
    offset = [0, len(seqs[0])]  # the library concatenates the sequences
    fitted = [offset[b] + t for b, t in where]
    rows, labels, uncertainty = read_labels(labels_csv)
    assert rows == [str(i) for i in range(len(where))]
    labels = np.array(labels, int)
    np.testing.assert_array_equal(labels, viterbi[fitted])
    np.testing.assert_allclose(
        np.array(uncertainty, float), 1 - post[fitted].max(axis=1), atol=1e-6
    )
    # State 1 of the table (label 0) has mean 0: the Viterbi path recovers the states.
    assert np.mean(labels == np.concatenate(states)[fitted]) > 0.95


def test_regression_labels_are_the_library_map_components(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, size=(120, 1))
    z = rng.integers(0, 2, size=120)
    y = np.where(z == 0, 1 + 2 * x[:, 0], -1 - x[:, 0]) + 0.2 * rng.normal(size=120)
    data = tmp_path / "reg.csv"
    np.savetxt(data, np.column_stack([x, y]), delimiter=",", header="x,y", comments="")
    js, labels_csv = tmp_path / "fit.json", tmp_path / "labels.csv"
    argv = ["fit", data, "--model", "regression", "--response", "y", "-k", 2, "--restarts", 4]
    code, out, err = run(argv + ["--out", js, "--labels", labels_csv], capsys)
    assert code == 0, err
    p = json.loads(js.read_text())["params"]
    model = em.Mixture(em.LinearRegression(), n_components=2)
    comps = em.LinearRegressionParams(*(np.asarray(p[f]) for f in ("coef", "intercept", "var")))
    params = em.MixtureParams(np.asarray(p["weights"]), comps)
    units = {"x": x, "y": y}
    rows, labels, uncertainty = read_labels(labels_csv)
    assert rows == [str(i) for i in range(120)]
    np.testing.assert_array_equal(np.array(labels, int), em.predict(model, params, units))
    post = np.asarray(em.responsibilities(model, params, units), np.float64)
    np.testing.assert_allclose(np.array(uncertainty, float), 1 - post.max(1), atol=1e-6)


def test_labels_to_a_missing_directory_is_one_line(faithful_csv, tmp_path, capsys):
    target = tmp_path / "nope" / "labels.csv"
    code, out, err = run(["fit", faithful_csv, "-k", 2, "--labels", target], capsys)
    assert code == 1 and out == ""
    assert err == (
        f"jaxem fit: error: cannot write --labels {target}: directory {target.parent} does "
        "not exist.\n"
    )


# -- tables and the terminal's width -------------------------------------------------------
def test_a_table_that_fits_is_unchanged():
    headers, rows = ["component", "weight", "mean"], [[1, "0.5000", "2.5"], [2, "0.5000", "7"]]
    assert cli._narrow_table(headers, rows, 40) == (cli._table(headers, rows), 0)
    text, hidden = cli._narrow_table(headers + ["sd"] * 10, [r + ["1"] * 10 for r in rows], 40)
    assert hidden > 0 and max(map(len, text.splitlines())) <= 40
    assert [line.split()[0] for line in text.splitlines()] == ["component", "-" * 9, "1", "2"]


def test_wide_data_prints_a_table_that_fits_and_names_every_component(
    tmp_path, capsys, monkeypatch
):
    rng = np.random.default_rng(2)
    centers = rng.normal(scale=4.0, size=(3, 40))
    x = centers[np.arange(150) % 3] + rng.normal(size=(150, 40))
    monkeypatch.chdir(tmp_path)  # a short path in the header, as a user would type it
    np.savetxt("wide.csv", x, delimiter=",")
    argv = ["fit", "wide.csv", "-k", 3, "--covariance-type", "diag", "--restarts", 2]
    argv += ["--max-iter", 50, "--out", "fit.json"]
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(argv, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, out
    assert lines[0] == "jaxem fit wide.csv: 150 rows"
    assert lines[2].startswith("   40 columns: col0, col1, ") and lines[2].endswith(", …, col39")
    # One row per component, with its weight as in the JSON.
    rows = re.findall(r"^\s+(\d+)\s+(0\.\d{4})\s.*…$", out, re.M)
    assert [r[0] for r in rows] == ["1", "2", "3"], out
    weights = json.loads((tmp_path / "fit.json").read_text())["params"]["weights"]
    np.testing.assert_allclose([float(r[1]) for r in rows], weights, atol=1e-4)
    shown = re.search(r"\((\d+) of 80 parameter columns shown; the JSON has them all\)", out)
    assert shown and 0 < int(shown[1]) < 80, out

    # In a terminal wide enough, the whole table: the cut one's columns are its first.
    monkeypatch.setenv("COLUMNS", "2000")
    code, full, err = run(argv, capsys)
    assert code == 0, err
    assert "…" not in full and "parameter columns shown" not in full
    assert full.splitlines()[0].startswith("jaxem fit wide.csv: 150 rows, columns col0, col1,")
    cut = [line for line in lines if line.endswith(("…", "-")) and line.startswith("   ")]
    whole = [line for line in full.splitlines() if line.startswith(("   comp", "   ---", "     "))]
    assert len(cut) == len(whole) == 5  # header, rule and the 3 components
    for short, long in zip(cut, whole, strict=True):
        assert long.startswith(short[:-3]) and len(long) > 80


def test_narrow_data_prints_the_same_at_any_width(faithful_csv, capsys, monkeypatch):
    argv = ["fit", faithful_csv, "-k", 2, "--restarts", 8]
    outputs = []
    for width in ("100", "1000"):
        monkeypatch.setenv("COLUMNS", width)
        code, out, err = run(argv, capsys)
        assert code == 0, err
        outputs.append(re.sub(r"[0-9.]+ s incl", "T s incl", out))
    assert outputs[0] == outputs[1]
    assert "…" not in outputs[0] and "corr" in outputs[0]


# -- --plot-columns -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, dims",
    [("waiting,duration", [1, 0]), ("0,1", [0, 1]), ("duration,1", [0, 1]), ("pca", "pca")],
)
def test_plot_columns_are_passed_to_plot_fit(
    faithful_csv, tmp_path, capsys, monkeypatch, spec, dims
):
    calls = []
    monkeypatch.setattr(jaxem.plot, "plot_fit", lambda *args, **kwargs: calls.append(kwargs))
    argv = ["fit", faithful_csv, "-k", 2, "--restarts", 8, "--plot", tmp_path / "fit.png"]
    code, _, err = run(argv + ["--plot-columns", spec], capsys)
    assert code == 0, err
    assert calls[0]["dims"] == dims and calls[0]["names"] == ["duration", "waiting"]
    code, _, err = run(argv, capsys)  # without the option, plot_fit chooses
    assert code == 0, err
    assert "dims" not in calls[1]


def test_plot_columns_draw_a_plot(faithful_csv, tmp_path, capsys):
    png = tmp_path / "fit.png"
    argv = ["fit", faithful_csv, "-k", 2, "--restarts", 8, "--plot", png]
    code, out, err = run(argv + ["--plot-columns", "waiting,duration"], capsys)
    assert code == 0, err
    assert f"wrote {png}" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD_PLOT_COLUMNS = [
    (["--plot-columns", "duration,depth"], "unknown column 'depth' in --plot-columns; the columns are: duration, waiting."),  # noqa: E501
    (["--plot-columns", "0,2"], "unknown column '2' in --plot-columns"),
    (["--plot-columns", "waiting"], "--plot-columns needs two or more columns (or pca)."),
    (["--plot-columns", "1,waiting"], "column 'waiting' is selected twice in --plot-columns."),
    (["--plot-columns", "pca", "--columns", "waiting"], "--plot-columns needs data with two or more columns."),  # noqa: E501
    (["--plot-columns", "0,1", "--model", "hmm"], "--plot-columns applies to --model mixture only."),  # noqa: E501
]  # fmt: skip


@pytest.mark.parametrize("extra, message", BAD_PLOT_COLUMNS)
def test_bad_plot_columns_are_one_line_before_fitting(
    faithful_csv, tmp_path, capsys, extra, message
):
    png = tmp_path / "fit.png"
    code, out, err = run(["fit", faithful_csv, "-k", 2, "--plot", png] + extra, capsys)
    assert code == 2 and out == ""  # nothing fitted, nothing printed
    assert err.startswith(f"jaxem fit: error: {message}") and err.count("\n") == 1, err
    assert not png.exists()


def test_plot_columns_without_a_plot_is_one_line(faithful_csv, capsys):
    code, out, err = run(["fit", faithful_csv, "-k", 2, "--plot-columns", "0,1"], capsys)
    assert code == 2 and out == ""
    assert err == "jaxem fit: error: --plot-columns needs --plot PNG (the plot to draw).\n"
