"""The command line: `jaxem demo` fits the bundled examples and prints the estimates."""

import re
import subprocess
import sys

import numpy as np
from test_coins import numpy_coin_em

from jaxem import cli


def test_demo_prints_the_fits(capsys):
    assert cli.main(["demo", "--restarts", "8"]) == 0
    out = capsys.readouterr().out
    normals, coins = out.split("2. Two coins")
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
    assert "converged=True" in out


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "demo" in out


def test_bad_arguments_exit_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxem.cli", "demo", "--restarts", "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "--restarts must be >= 1" in proc.stderr
    assert "Traceback" not in proc.stderr
