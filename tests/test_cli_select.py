"""`jaxem select` (mclust's BIC grid on the command line) and `jaxem fit` with mclust's models.

The numbers are checked against the library: the JSON's matrix is `em.select_model`'s
for the same settings, and a fitted mclust model counts mclust's free parameters.
"""

import json

import numpy as np
import pytest
from test_cli import FAITHFUL, run

import jaxem as em


def test_select_prints_the_matrix_and_the_winner(faithful_csv, tmp_path, capsys):
    js, png, labels = tmp_path / "sel.json", tmp_path / "bic.png", tmp_path / "labels.csv"
    argv = ["select", faithful_csv, "-k", "2..4", "--models", "EEE,VVV", "--restarts", 4]
    code, out, err = run(argv + ["--out", js, "--plot", png, "--labels", labels], capsys)
    assert code == 0, err
    assert "BIC by number of components (rows) and model (columns)" in out
    assert "best: EEE with 3 components (BIC 2314.3" in " ".join(out.split())
    record = json.loads(js.read_text())
    assert record["models"] == ["EEE", "VVV"] and record["n_components"] == [2, 3, 4]
    assert record["best"] == {"model": "EEE", "n_components": 3}
    direct = em.select_model(FAITHFUL, [2, 3, 4], ("EEE", "VVV"), n_init=4, random_state=0)
    np.testing.assert_allclose(np.array(record["values"], float), direct.values, rtol=1e-12)
    assert [r["model"] for r in record["rows"]] == [r.model for r in direct.rows]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = labels.read_text().splitlines()
    assert rows[0] == "row,label,uncertainty" and len(rows) == 1 + len(FAITHFUL)
    post = direct.best_estimator.predict_proba(FAITHFUL)
    got = np.array([r.split(",")[1] for r in rows[1:]], int)
    np.testing.assert_array_equal(got, post.argmax(axis=1))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-k", "0..3"], "give a range like 1..9"),
        (["-k", "two"], "give a range like 1..9"),
        (["--models", "EEE,XYZ"], "--models 'EEE,XYZ'"),
        (["--restarts", "0"], "--restarts must be >= 1"),
        (["-k", "1..400"], "need more than 272 rows"),
    ],
)
def test_select_rejects_bad_arguments(faithful_csv, capsys, extra, message):
    code, out, err = run(["select", faithful_csv] + extra, capsys)
    assert code == 2 and message in err and out == ""


def test_fit_with_an_mclust_model(faithful_csv, tmp_path, capsys):
    js = tmp_path / "fit.json"
    argv = ["fit", faithful_csv, "-k", 3, "--covariance-type", "EEE", "--restarts", 4]
    code, out, err = run(argv + ["--float64", "--out", js], capsys)
    assert code == 0, err
    record = json.loads(js.read_text())
    assert record["family"] == "mclust" and record["covariance_model"] == "EEE"
    assert "11 free parameters" in " ".join(
        out.split()
    )  # 2 weights + 6 means + 3 for one shared covariance
    cov = np.asarray(record["params"]["cov"])
    np.testing.assert_allclose(cov, np.broadcast_to(cov[0], cov.shape), rtol=1e-12)
    code, out, err = run(
        ["fit", faithful_csv, "-k", 2, "--family", "mvn", "--covariance-type", "VEV"], capsys
    )
    assert code == 2 and "--family mclust" in err


def test_select_validates_its_numbers_and_sorts_k(faithful_csv, capsys):
    for extra, message in (
        (["--max-iter", "0"], "--max-iter must be >= 1, got 0."),
        (["--tol", "-1"], "--tol must be >= 0, got -1.0."),
    ):
        code, out, err = run(["select", faithful_csv] + extra, capsys)
        assert code == 2 and message in err and out == ""
    from jaxem.cli import _component_range

    assert _component_range("3,1,2,2") == [1, 2, 3] and _component_range("2..4") == [2, 3, 4]
    with pytest.raises(ValueError, match="n_components has repeated entries"):
        em.select_model(FAITHFUL, [2, 2])
