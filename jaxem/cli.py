"""Command line: ``jaxem demo`` and ``jaxem fit DATA -k K``.

``jaxem fit`` reads a CSV (header detected) or ``.npy`` file, fits a mixture of
one family by EM with parallel restarts, prints one row per component, and
writes the estimates as JSON (``--out``) and a plot (``--plot``, needs
matplotlib). The JSON is strict: a number that is not finite (NaN, ±inf) is
written as ``null``. ``--float64`` fits in double precision: data whose sums of
squares overflow float32 (values of order 1e17 and up; jaxem refuses them in
float32) fit that way. ``--labels`` writes each row's most probable component
and its uncertainty as CSV, in the file's row order. A table wider than the
terminal (or than 100 characters, when the output is not one) shows its first
columns and says so; the JSON has every parameter. Bad input ends with one line
on stderr and a non-zero exit: 2 for bad arguments, 1 for data that cannot be
fitted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import io
import json
import math
import os
import re
import shutil
import sys
import textwrap
import time
import warnings

import numpy as np

from jaxem import codec as _codec
from jaxem.families.mvn import COVARIANCE_TYPES
from jaxem.families.parsimonious import MCLUST_MODELS
from jaxem.families.parsimonious import SKLEARN_EQUIVALENT as SKLEARN_TO_MCLUST

# The built-in families' names (``Family.name``), in the registry's order.
FAMILIES = tuple(_codec.FAMILIES)
# ``--model regression``: the regression families by name.
REGRESSION_FAMILIES = ("linear", "poisson", "logistic")
# Cells that mean "no value" in a CSV; they become NaN.
MISSING_CELLS = frozenset({"", "na", "nan", "n/a", "null", "none", "?"})
MAX_CATEGORIES = 1000
# jax.random.key keeps the low 32 bits of a seed (without x64): 2**32 would repeat seed 0.
SEED_LIMIT = 2**32
DEMO_PLOT = "jaxem-demo.png"
# Where no terminal says its width (a pipe, a file, a test), tables are cut to this many
# characters; a terminal narrower than MIN_WIDTH is taken as MIN_WIDTH.
DEFAULT_WIDTH = 100
MIN_WIDTH = 40


class CLIError(Exception):
    """A one-line message for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and no SystemExit."""

    def error(self, message: str):
        raise CLIError(f"{message} (see {self.prog} --help)", code=2)


def _table(headers, rows) -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "   " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
    rule = "   " + "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def _terminal_width() -> int:
    """The terminal's width in characters (``COLUMNS`` when set), DEFAULT_WIDTH when the
    output is not a terminal."""
    return max(MIN_WIDTH, shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns)


def _too_wide(headers, rows, width: int) -> bool:
    """Whether :func:`_table` has a line wider than ``width``."""
    return max(map(len, _table(headers, rows).splitlines())) > width


def _narrow_table(headers, rows, width: int, keep: int = 2) -> tuple[str, int]:
    """``(text, n_hidden)``: :func:`_table`, or when it is wider than ``width``, its first
    ``keep`` columns and as many of the next as fit, then a column of "…".

    ``n_hidden`` is the number of columns left out (0: the table is whole, unchanged).
    Every row stays, so every component is still named.
    """
    if not _too_wide(headers, rows, width):
        return _table(headers, rows), 0
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    used = 3 + sum(widths[:keep]) + 2 * keep + 1  # the kept columns and the "…" column
    shown = keep
    while shown < len(headers) and used + widths[shown] + 2 <= width:
        used += widths[shown] + 2
        shown += 1
    cut = lambda r: list(r[:shown]) + ["…"]
    return _table(cut(headers), [cut(r) for r in rows]), len(headers) - shown


def _print_wrapped(line: str) -> None:
    """``line`` (indented by three spaces), wrapped at spaces when wider than the terminal."""
    width = _terminal_width()
    if len(line) <= width:
        print(line)
        return
    print(
        textwrap.fill(
            line.strip(),
            width,
            initial_indent="   ",
            subsequent_indent="   ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


def _print_note(text: str, width: int) -> None:
    """``   (text)``, wrapped to ``width``."""
    print(textwrap.fill(f"({text})", width, initial_indent="   ", subsequent_indent="    "))


def _print_table(args, headers, rows, keep: int = 2, width: int | None = None) -> None:
    """Print the table cut to the terminal's width; say so, and where the rest is, if cut."""
    width = _terminal_width() if width is None else width
    text, hidden = _narrow_table(headers, rows, width, keep)
    print(text)
    if hidden:
        rest = "the JSON has them all" if args.out is not None else "--out FILE.json has all"
        shown = len(headers) - keep - hidden
        _print_note(f"{shown} of {len(headers) - keep} parameter columns shown; {rest}", width)


def _listed(names: list[str], room: int) -> str:
    """``names`` joined by commas, or when longer than ``room``, the first few, "…" and the
    last."""
    text = ", ".join(names)
    for head in range(len(names) - 2, 0, -1):
        if len(text) <= room:
            return text
        text = ", ".join(names[:head] + ["…", names[-1]])
    return text if len(text) <= room else "…"


def _print_header(
    full: str, lead: str, names: list[str], what: str, width: int | None, noun="columns"
) -> None:
    """The first line of a report: ``full``, or for data too wide for the terminal
    (``width`` given), ``lead``, then ``what`` and the column names (abbreviated to fit)
    on lines of their own."""
    if width is None:
        print(full)
        return
    print(lead)
    print(f"   {what}")
    lead = f"   {len(names)} {noun}: "
    print(lead + _listed(names, width - len(lead)))


def _fmt(v) -> str:
    return f"{float(v):.5g}"  # "inf", "nan" and 1e+300 format too


def _seed(text: str) -> int:
    """argparse type of ``--seed``: an integer in [0, 2**32)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2**32), got {text}")
    return value


def _one_line(message: str) -> str:
    """``message`` on one line (a library error may carry an array's multi-line repr)."""
    return re.sub(r"\s*\n\s*", " ", message.strip())


# -- reading data ------------------------------------------------------------------------
def _number(cell: str) -> float | None:
    """The cell's value, NaN for an empty/NA cell, None if it is not a number."""
    text = cell.strip()
    if text.lower() in MISSING_CELLS:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def _split_rows(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` of the non-blank, non-comment lines."""
    lines = [
        (i + 1, line)
        for i, line in enumerate(text.splitlines())
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        return []
    first = lines[0][1]
    delimiter = next((d for d in (",", "\t", ";") if d in first), None)
    if delimiter is None:  # whitespace-separated (or a single column)
        return [(n, line.split()) for n, line in lines]
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)), delimiter=delimiter)
    return [(n, cells) for (n, _), cells in zip(lines, reader, strict=True)]


def _select(
    columns: str | None, names: list[str], has_header: bool, option: str = "--columns"
) -> list[int]:
    if columns is None:
        return list(range(len(names)))
    picked = []
    for token in (t.strip() for t in columns.split(",")):
        if has_header and token in names:
            j = names.index(token)
        elif token.lstrip("-").isdigit() and 0 <= int(token) < len(names):
            j = int(token)
        else:
            known = ", ".join(names) if has_header else f"indices 0..{len(names) - 1}"
            raise CLIError(
                f"unknown column {token!r} in {option}; the columns are: {known}.", code=2
            )
        if j in picked:
            raise CLIError(f"column {token!r} is selected twice in {option}.", code=2)
        picked.append(j)
    return picked


def _labels_only(rows, j: int) -> bool:
    """Whether column ``j`` holds text only (labels, ids): no cell is a number."""
    seen = False
    for _, cells in rows:
        if j < len(cells):
            value = _number(cells[j])
            if value is not None and not math.isnan(value):
                return False
            seen = seen or value is None
    return seen


def _read_csv(path: str, text: str, columns: str | None):
    rows = _split_rows(text)
    if not rows:
        raise CLIError(f"{path}: the file is empty (no data rows).")
    first = rows[0][1]
    has_header = any(_number(c) is None for c in first)
    if has_header:
        names = [c.strip() or f"col{j}" for j, c in enumerate(first)]
        rows = rows[1:]
        if not rows:
            raise CLIError(f"{path}: the file has a header but no data rows.")
    else:
        names = [f"col{j}" for j in range(len(first))]
    width = len(names)
    if columns is None and has_header:
        picked = [j for j in range(width) if not _labels_only(rows, j)]
        skipped = [names[j] for j in range(width) if j not in picked]
        if not picked:
            raise CLIError(f"{path}: no column holds numbers.")
        if skipped:
            print(
                f"jaxem fit: note: skipping non-numeric column(s) {', '.join(skipped)} "
                "(choose columns with --columns)",
                file=sys.stderr,
            )
    else:
        picked = _select(columns, names, has_header)
    x = np.empty((len(rows), len(picked)))
    for i, (line_no, cells) in enumerate(rows):
        if len(cells) != width:
            raise CLIError(
                f"{path}: line {line_no} has {len(cells)} fields, expected {width}"
                + (" (as in the header)." if has_header else " (as in the first row).")
            )
        for c, j in enumerate(picked):
            value = _number(cells[j])
            if value is None:
                raise CLIError(
                    f"{path}: line {line_no}, column {names[j]!r}: {cells[j].strip()!r} is not "
                    "a number."
                )
            x[i, c] = value
    return x, [names[j] for j in picked]


def _read_npy(path: str, columns: str | None):
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise CLIError(f"{path}: cannot read it as a .npy array ({err}).") from None
    if arr.dtype.kind not in "biuf":
        raise CLIError(f"{path}: the array holds {arr.dtype} values; jaxem needs numbers.")
    if arr.ndim not in (1, 2):
        raise CLIError(f"{path}: the array has shape {arr.shape}; jaxem needs (N,) or (N, D).")
    if arr.shape[0] == 0:
        raise CLIError(f"{path}: the array has no rows (shape {arr.shape}).")
    if arr.size == 0:
        raise CLIError(f"{path}: the array has no columns (shape {arr.shape}).")
    arr = arr.reshape(arr.shape[0], -1).astype(np.float64)
    names = [f"col{j}" for j in range(arr.shape[1])]
    picked = _select(columns, names, has_header=False)
    return arr[:, picked], [names[j] for j in picked]


def read_data(path: str, columns: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Read ``path`` (CSV with an optional header, or ``.npy``; ``-`` is CSV on stdin).

    Returns ``(x (N, D) float64, column names)``; empty or NA cells are NaN.
    ``columns`` is ``"a,b"`` (header names) or ``"0,2"`` (0-based indices).
    Raises :class:`CLIError` with a one-line message on bad input.
    """
    if path == "-":
        return _read_csv("<stdin>", sys.stdin.read(), columns)
    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise CLIError(f"{path}: is a directory, not a data file.")
    if path.endswith(".npy"):
        return _read_npy(path, columns)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not a text (UTF-8) CSV file; use .csv or .npy.") from None
    except OSError as err:
        raise CLIError(f"{path}: cannot read it ({err.strerror}).") from None
    return _read_csv(path, text, columns)


# -- the model ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _model(
    family: str, k: int, covariance_type: str, n_categories: int, n_trials: int, kind="mixture"
):
    """One model instance per configuration: a repeated fit reuses its compiled program.

    The family is built from the options among its ``hyperparameters``; ``kind``
    is ``"mixture"`` or ``"hmm"`` (K hidden states with that emission family).
    """
    import jaxem as em

    cls = _codec.FAMILIES[family]
    options = {
        "covariance_type": covariance_type,
        "model": covariance_type,
        "n_categories": n_categories,
        "n_trials": n_trials,
    }
    kwargs = {name: options[name] for name in cls.hyperparameters if name in options}
    if kind == "hmm":
        return em.HMM(cls(**kwargs), k)
    return em.Mixture(cls(**kwargs), n_components=k)


@functools.lru_cache(maxsize=16)
def _regression_model(family: str, k: int):
    """A mixture of K regressions of one family (one per configuration, as :func:`_model`)."""
    import jaxem as em

    cls = {
        "linear": em.LinearRegression,
        "poisson": em.PoissonRegression,
        "logistic": em.LogisticRegression,
    }[family]
    return em.Mixture(cls(), n_components=k)


def _sequence_lengths(path: str, column: str, columns: str | None):
    """``(x, names, lengths, order)``: rows grouped by ``column`` (ids), in order of first
    appearance; row ``i`` of ``x`` is the file's data row ``order[i]``.

    Each sequence keeps its rows in file order; ``column`` is a header name or a
    0-based index and is not a data column.
    """
    if path.endswith(".npy"):
        raw, all_names = _read_npy(path, None)
        (j,) = _select(column, all_names, False)
        ids = [str(v) for v in raw[:, j]]
        picked = (
            [i for i in range(raw.shape[1]) if i != j]
            if columns is None
            else _select(columns, all_names, False)
        )
        if j in picked or not picked:
            raise CLIError("--columns must name data columns besides --sequence-column.", code=2)
        x, names = raw[:, picked], [all_names[i] for i in picked]
    else:
        if path == "-":
            text = sys.stdin.read()
        else:
            if not os.path.isfile(path):
                raise CLIError(f"{path}: no such file.")
            try:
                with open(path, encoding="utf-8-sig") as f:
                    text = f.read()
            except UnicodeDecodeError:
                raise CLIError(f"{path}: not a text (UTF-8) CSV file; use .csv or .npy.") from None
        rows = _split_rows(text)
        if not rows:
            raise CLIError(f"{path}: the file is empty (no data rows).")
        has_header = any(_number(c) is None for c in rows[0][1])
        width = len(rows[0][1])
        all_names = (
            [c.strip() or f"col{i}" for i, c in enumerate(rows[0][1])]
            if has_header
            else [f"col{i}" for i in range(width)]
        )
        body = rows[1:] if has_header else rows
        (j,) = _select(column, all_names, has_header)
        if columns is None:
            others = [str(i) for i in range(width) if i != j and not _labels_only(body, i)]
            if not others:
                raise CLIError(f"{path}: no column besides the sequence column holds numbers.")
            columns = ",".join(others)
        elif j in _select(columns, all_names, has_header):
            raise CLIError("--columns must not include the --sequence-column.", code=2)
        x, names = _read_csv(path, text, columns)
        ids = [cells[j].strip() if j < len(cells) else "" for _, cells in body]
    first: dict[str, int] = {}
    group = np.array([first.setdefault(v, len(first)) for v in ids])
    order = np.argsort(group, kind="stable")
    return x[order], names, np.bincount(group), order


def _sorted_hmm(model, params):
    """HMM parameters with the states in order of their emission's location."""
    from jaxem import HMMParams

    emissions = params.emissions
    order = np.argsort(_sort_key(model.emission, emissions), kind="stable")
    axes = model.emission.component_axes(emissions)
    fields = {
        f: np.asarray(v)[order] if getattr(axes, f) == 0 else np.asarray(v)
        for f, v in emissions._asdict().items()
    }
    transition = np.asarray(params.transition)[np.ix_(order, order)]
    return HMMParams(np.asarray(params.initial)[order], transition, type(emissions)(**fields))


@np.errstate(all="ignore")  # NaN/inf estimates sort and print (as nan/inf) without warnings
def _sort_key(family, comps) -> np.ndarray:
    """Each component's location (``family.location``, of the first column): components
    are listed by it."""
    location = np.asarray(family.location(comps), dtype=np.float64)
    return location.reshape(location.shape[0], -1)[:, 0]


def _sorted(model, params):
    """``params`` with the components in order of :func:`_sort_key`."""
    from jaxem import MixtureParams

    comps = params.components
    order = np.argsort(_sort_key(model.family, comps), kind="stable")
    axes = model.family.component_axes(comps)
    fields = {
        f: np.asarray(v)[order] if getattr(axes, f) == 0 else np.asarray(v)
        for f, v in comps._asdict().items()
    }
    return MixtureParams(np.asarray(params.weights)[order], type(comps)(**fields))


@np.errstate(all="ignore")
def _parameter_rows(model, family: str, params, names: list[str]):
    """``(headers, rows, notes)``: one row per component of the (sorted) parameters."""
    comps = params.components
    k = len(params.weights)
    headers = ["component", "weight"]
    cols: list[list[str]] = []
    notes: list[str] = []
    one = len(names) == 1

    def add(header, values):
        headers.append(header)
        cols.append([_fmt(v) for v in values])

    for field, value in comps._asdict().items():
        v = np.asarray(value, dtype=np.float64)
        if family in ("mvn", "mclust") and field == "cov":
            kind = model.family.covariance_type  # "full" for mclust's models
            if kind == "tied":
                var = np.broadcast_to(np.diag(v), (k, v.shape[0]))
                notes.append("covariance tied (shared by every component)")
                covs = np.broadcast_to(v, (k,) + v.shape)
            elif kind == "full":
                var, covs = np.diagonal(v, axis1=1, axis2=2), v
            elif kind == "diag":
                var, covs = v, None
            else:
                var, covs = np.repeat(v[:, None], len(names), axis=1), None
            if kind == "spherical":
                add("sd", np.sqrt(v))
            else:
                for j, name in enumerate(names):
                    add(f"sd {name}", np.sqrt(var[:, j]))
            if covs is not None and len(names) == 2:
                add("corr", covs[:, 0, 1] / np.sqrt(covs[:, 0, 0] * covs[:, 1, 1]))
            elif covs is not None and len(names) > 2:
                notes.append("full covariance matrices are in the JSON (--out)")
        elif family == "categorical" and v.ndim == 2 and v.shape[1] <= 10:
            for c in range(v.shape[1]):
                add(f"P({c})", v[:, c])
        elif v.ndim == 1:
            add(field, v)
        elif v.ndim == 2:
            for j, name in enumerate(names):
                add(f"{field} {name}", v[:, j])
        else:
            headers.append(field)
            cols.append([str(np.round(v[i], 3).tolist()) for i in range(k)])
        if family == "normal" and field == "var" and one:
            add("sd", np.sqrt(v))
    weights = np.asarray(params.weights, dtype=np.float64)
    rows = [[i + 1, f"{weights[i]:.4f}"] + [c[i] for c in cols] for i in range(k)]
    return headers, rows, notes


def _json_number(value) -> float | None:
    """A float, or None (null) when it is not finite: the JSON stays strict."""
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """Lists of floats, with non-finite values as null (strict JSON)."""
    arr = np.asarray(value, dtype=np.float64)
    out = arr.tolist()
    if np.all(np.isfinite(arr)):
        return out
    fix = lambda v: (
        [fix(u) for u in v] if isinstance(v, list) else (v if math.isfinite(v) else None)
    )
    return fix(out)


def _check_writable(option: str, path: str | None) -> None:
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CLIError(f"cannot write {option} {path}: directory {parent} does not exist.")
    if os.path.isdir(path):
        raise CLIError(f"cannot write {option} {path}: it is a directory.")


def _need_matplotlib(what: str) -> None:
    from jaxem import plot

    try:
        plot._require_matplotlib()
    except ImportError:
        raise CLIError(f"{what} needs matplotlib: pip install matplotlib") from None


def _report_hmm(
    args, model, family, res, xx, names, lengths, order, n_nan, elapsed, dtype, fit_kwargs
) -> int:
    """Print (and write) a fitted HMM: one row per state, then the transition matrix.

    ``order``: the file's data row of each row of ``xx`` (rows grouped by sequence), or
    ``None`` when they are in file order; ``fit_kwargs``: ``lengths`` / ``missing`` as
    ``em.fit`` had them (for ``--se``).
    """
    import types

    import jaxem as em

    params = _sorted_hmm(model, res.params)
    missing = "marginalize" if n_nan else None
    n = xx.shape[0]
    n_params = em.n_parameters(model, params)
    ll = float(em.log_likelihood(model, params, xx, lengths=lengths, missing=missing))
    bic, aic = -2 * ll + n_params * math.log(n), -2 * ll + 2 * n_params
    post = np.asarray(em.responsibilities(model, params, xx, lengths=lengths, missing=missing))
    occupancy = post.mean(axis=0)
    n_seq = 1 if lengths is None else len(lengths)
    shim = types.SimpleNamespace(family=model.emission)
    as_mixture = em.MixtureParams(occupancy, params.emissions)
    headers, rows, notes = _parameter_rows(shim, family, as_mixture, names)
    headers = ["state", "occupancy", "initial"] + headers[2:]
    initial = np.asarray(params.initial, np.float64)
    rows = [[r[0], r[1], f"{initial[i]:.4f}"] + r[2:] for i, r in enumerate(rows)]
    width = _terminal_width()
    what = f"hidden Markov model, {model.emission!r} emissions, K={args.k}"
    _print_header(
        f"jaxem fit {args.data}: {n} rows in {n_seq} sequence(s), columns {', '.join(names)}; "
        + what,
        f"jaxem fit {args.data}: {n} rows in {n_seq} sequence(s)",
        names,
        what,
        width if _too_wide(headers, rows, width) else None,
    )
    if n_nan:
        print(f"   {n_nan} missing values integrated out")
    _print_table(args, headers, rows, keep=3, width=width)
    for note in notes:
        print(f"   ({note})")
    transition = np.asarray(params.transition, np.float64)
    print("   transition probabilities (row: from, column: to):")
    _print_transition(args, transition, lambda v: f"{v:.4f}")
    args._se_names = names
    se = _standard_errors(args, model, params, xx, **fit_kwargs)
    _print_summary(args, res, elapsed, ll, bic, aic, n_params)
    if args.out is not None:
        _write_record(
            args,
            {
                "jaxem_version": em.__version__,
                "data": args.data,
                "columns": names,
                "n_samples": n,
                "lengths": [int(v) for v in (lengths if lengths is not None else [n])],
                "n_missing": n_nan,
                "model": repr(model),
                "family": family,
                "n_states": args.k,
                "params": {
                    "initial": _jsonable(params.initial),
                    "transition": _jsonable(params.transition),
                    **{f: _jsonable(v) for f, v in params.emissions._asdict().items()},
                },
                **_criteria(args, res, ll, bic, aic, n_params, dtype),
                **_se_record(se),
            },
        )
    if args.labels is not None:
        labels = em.predict(model, params, xx, lengths=lengths, missing=missing)
        _write_labels(args, labels, post, order=order, unit="state")
    title = f"{os.path.basename(args.data)}: HMM with {family} emissions, K={args.k}"
    _write_plot(args, model, params, xx, names, title, lengths=lengths)
    return 0


def _criteria(args, res, ll, bic, aic, n_params: int, dtype: str) -> dict:
    """The JSON entries every report shares: criteria, iterations and the run's settings."""
    return {
        "log_likelihood": _json_number(ll),
        "objective": _json_number(res.objective),
        "bic": _json_number(bic),
        "aic": _json_number(aic),
        "n_parameters": int(n_params),
        "n_iter": int(res.n_iter),
        "converged": bool(res.converged),
        "restarts": args.restarts,
        "seed": args.seed,
        "dtype": dtype,
    }


def _write_record(args, record: dict) -> None:
    """Write ``record`` as strict JSON to ``--out`` (when given) and say so."""
    if args.out is None:
        return
    with open(args.out, "w") as f:
        json.dump(record, f, indent=2, allow_nan=False)
        f.write("\n")
    print(f"   wrote {args.out}")


def _write_plot(args, model, params, xx, names, title, dims=None, **kwargs) -> None:
    """Draw the fit to ``--plot`` (when given) and say so; ``dims``: ``--plot-columns``."""
    if args.plot is None:
        return
    if dims is not None:
        kwargs["dims"] = dims
    import matplotlib

    matplotlib.use("Agg")
    from jaxem.plot import plot_fit

    try:
        plot_fit(model, params, xx, args.plot, names=names, title=title, **kwargs)
    except ValueError as err:  # an option the picture cannot honour
        raise CLIError(f"--plot: {err}", code=2) from None
    print(f"   wrote {args.plot}")


def _write_labels(
    args, labels, post, order=None, unlabelled=None, unit="component", legend=None
) -> None:
    """Write ``--labels``: ``row,label,uncertainty`` for every data row, in file order.

    ``labels`` ``(N,)``: the MAP component of each row (``em.predict``), 0-based in the
    table's order; ``post`` ``(N, K)``: the responsibilities; ``order``: the file's data row
    of each row (default: file order); ``unlabelled`` ``(N,)``: rows written with an empty
    label and uncertainty.
    """
    post = np.asarray(post, np.float64)
    # 1 - max r, summed from the other responsibilities: in float32 a confident row's
    # max rounds to 1 (1 - r = 0), while the small ones keep their digits.
    uncertainty = np.sort(post, axis=1)[:, :-1].sum(axis=1)
    blank = np.zeros(len(post), bool) if unlabelled is None else np.asarray(unlabelled)
    labels = np.asarray(labels)
    if order is not None:  # back to the file's order
        back = np.argsort(order)
        labels, uncertainty, blank = labels[back], uncertainty[back], blank[back]
    with open(args.labels, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["row", "label", "uncertainty"])
        for i, (label, u) in enumerate(zip(labels.tolist(), uncertainty.tolist(), strict=True)):
            out.writerow([i, "", ""] if blank[i] else [i, label, f"{u:.6g}"])
    note = f"; {int(blank.sum())} row(s) with nothing observed left blank" if blank.any() else ""
    legend = f"label k: {unit} k+1 above" if legend is None else legend
    print(f"   wrote {args.labels} ({legend}{note})")


def _plot_dims(spec: str | None, names: list[str]):
    """``--plot-columns``: ``None``, ``"pca"`` or the indices of fitted columns to plot."""
    if spec is None:
        return None
    if len(names) < 2:
        raise CLIError("--plot-columns needs data with two or more columns.", code=2)
    if spec.strip().lower() == "pca":
        return "pca"
    dims = _select(spec, names, has_header=True, option="--plot-columns")
    if len(dims) < 2:
        raise CLIError("--plot-columns needs two or more columns (or pca).", code=2)
    return dims


def _run_fit(args, model, data, response: str | None = None, **kwargs):
    """``em.fit`` with the command line's options: ``(FitResult, seconds)``.

    Errors become one line (``response``: the name the data's ``y`` field had
    in the file); warnings are printed to stderr.
    """
    import jax

    import jaxem as em

    if args.max_iter is not None:
        kwargs["max_iter"] = args.max_iter
    if args.tol is not None:
        kwargs["tol"] = args.tol
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = em.fit(
                model,
                data,
                key=jax.random.key(args.seed),
                restarts=args.restarts,
                progress=args.progress,
                **kwargs,
            )
    except (ValueError, TypeError) as err:
        message = _one_line(str(err))
        if response is not None:
            message = message.replace("data['y']", f"the response {response!r}")
        if not args.float64 and re.search(r"float64|x64", message):
            message += " With jaxem fit: pass --float64."
        raise CLIError(message) from None
    elapsed = time.perf_counter() - t0
    if not math.isfinite(res.objective):
        # Data too large for float32's statistics is refused by em.fit before
        # this point (with the --float64 advice above), so the cause lies elsewhere.
        raise CLIError(
            f"{args.data}: the fit failed: the log-likelihood is not finite at any of the "
            f"{args.restarts} starts (check the data's scale and the family)."
        )
    for w in caught:
        print(f"jaxem fit: warning: {_one_line(str(w.message))}", file=sys.stderr)
    return res, elapsed


def _print_summary(args, res, elapsed: float, ll: float, bic, aic, n_params: int) -> None:
    """The lines under the table: criteria, and how the restarts went."""
    reached = int(np.sum(np.isclose(res.restart_objectives, res.objective, rtol=1e-6, atol=1e-3)))
    _print_wrapped(
        f"   log-likelihood {ll:.6g}, objective {res.objective:.6g}, BIC {bic:.6g}, "
        f"AIC {aic:.6g} ({n_params} free parameters)"
    )
    _print_wrapped(
        f"   best of {args.restarts} restarts ({reached} reached it): {res.n_iter} iterations, "
        f"converged={res.converged}; {elapsed:.2f} s incl. compilation"
    )


def _standard_errors(args, model, params, data, **kwargs):
    """``em.standard_errors`` at the fit, in float64 (``--se``), or ``None``.

    ``kwargs``: ``lengths`` / ``missing`` exactly as the fit used them.
    Printed as a table below the estimates: one row per component (HMM:
    per state, with the initial probabilities; the transition matrix's
    standard errors follow as a K×K block), a column per parameter entry
    (matrices are left to the JSON).
    """
    if not args.se:
        return None
    import jax

    import jaxem as em

    with jax.enable_x64(True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        se = em.standard_errors(model, params, data, **kwargs)
    for w in caught:
        print(f"jaxem fit: warning: {_one_line(str(w.message))}", file=sys.stderr)
    hmm = isinstance(se, em.HMMParams)
    first = np.asarray(se.initial if hmm else se.weights, np.float64)
    comps = se.emissions if hmm else se.components
    k = len(first)
    headers = ["state", "se initial"] if hmm else ["component", "se weight"]
    cols, skipped = [], []
    for field, value in comps._asdict().items():
        v = np.asarray(value, np.float64)
        if v.ndim == 1:
            headers.append(f"se {field}")
            cols.append(v)
        elif v.ndim == 2:
            labels = names if (names := getattr(args, "_se_names", None)) else None
            for j in range(v.shape[1]):
                tag = labels[j] if labels is not None and len(labels) == v.shape[1] else f"[{j}]"
                headers.append(f"se {field} {tag}")
                cols.append(v[:, j])
        else:
            skipped.append(field)
    rows = [[i + 1, _fmt(first[i])] + [_fmt(c[i]) for c in cols] for i in range(k)]
    print("   standard errors (observed information, float64):")
    _print_table(args, headers, rows)
    if hmm:
        print("   standard errors of the transition probabilities (row: from, column: to):")
        _print_transition(args, np.asarray(se.transition, np.float64), _fmt)
    if skipped:
        print(f"   (standard errors of {', '.join(skipped)} are in the JSON, --out)")
    return se


def _print_transition(args, matrix: np.ndarray, fmt) -> None:
    """A ``(K, K)`` matrix over states as a table, rows "from", columns "to"."""
    k = matrix.shape[0]
    rows = [[i + 1] + [fmt(v) for v in matrix[i]] for i in range(k)]
    _print_table(args, ["from"] + [f"to {j + 1}" for j in range(k)], rows, keep=1)


def _se_record(se) -> dict:
    """The standard errors for the JSON (``{}`` without ``--se``), keyed like ``params``."""
    if se is None:
        return {}
    if hasattr(se, "transition"):  # an HMM
        fields = {f: _jsonable(v) for f, v in se.emissions._asdict().items()}
        head = {"initial": _jsonable(se.initial), "transition": _jsonable(se.transition)}
        return {"standard_errors": {**head, **fields}}
    fields = {f: _jsonable(v) for f, v in se.components._asdict().items()}
    return {"standard_errors": {"weights": _jsonable(se.weights), **fields}}


def _check_ranges(args, bounds) -> None:
    """``--restarts``, ``--max-iter``, … at least their lower bound; ``--tol`` >= 0."""
    for name, value, low in bounds:
        if value is not None and value < low:
            raise CLIError(f"{name} must be >= {low}, got {value}.", code=2)
    if args.tol is not None and not args.tol >= 0:
        raise CLIError(f"--tol must be >= 0, got {args.tol}.", code=2)


def _check_fit_args(args) -> None:
    _check_ranges(
        args,
        (
            ("-k", args.k, 1),
            ("--restarts", args.restarts, 1),
            ("--max-iter", args.max_iter, 0),
            ("--progress", args.progress, 0),
        ),
    )
    regression = args.model == "regression"
    if args.response is not None and not regression:
        raise CLIError("--response applies to --model regression only.", code=2)
    if args.plot_columns is not None:
        if args.model != "mixture":
            raise CLIError("--plot-columns applies to --model mixture only.", code=2)
        if args.plot is None:
            raise CLIError("--plot-columns needs --plot PNG (the plot to draw).", code=2)
    if regression:
        if args.response is None:
            raise CLIError("--model regression needs --response COL (the response column).", code=2)
        if args.family is not None and args.family not in REGRESSION_FAMILIES:
            raise CLIError(
                f"unknown regression family {args.family!r}; choose one of: "
                f"{', '.join(REGRESSION_FAMILIES)}.",
                code=2,
            )
        for option, value in (
            ("--covariance-type", args.covariance_type),
            ("--n-trials", args.n_trials),
            ("--sequence-column", args.sequence_column),
        ):
            if value is not None:
                raise CLIError(f"{option} does not apply to --model regression.", code=2)
        if args.missing == "marginalize":
            raise CLIError(
                "--missing marginalize does not apply to --model regression; remove the rows "
                "with missing values.",
                code=2,
            )
        return
    if args.family is not None and args.family not in FAMILIES:
        raise CLIError(
            f"unknown family {args.family!r}; choose one of: {', '.join(FAMILIES)}.", code=2
        )
    if args.covariance_type is not None:
        if args.covariance_type not in COVARIANCE_TYPES + MCLUST_MODELS:
            raise CLIError(
                f"unknown covariance type {args.covariance_type!r}; choose one of: "
                f"{', '.join(COVARIANCE_TYPES)}, or mclust's {', '.join(MCLUST_MODELS)}.",
                code=2,
            )
        if args.family not in (None, "mvn", "mclust"):
            raise CLIError("--covariance-type applies to --family mvn or mclust only.", code=2)
        if args.family == "mvn" and args.covariance_type in MCLUST_MODELS:
            raise CLIError(
                f"--covariance-type {args.covariance_type} is one of mclust's models: use "
                "--family mclust (or no --family).",
                code=2,
            )
    if args.family == "binomial" and args.n_trials is None:
        raise CLIError("--family binomial needs --n-trials N (trials per observation).", code=2)
    if args.n_trials is not None and args.family != "binomial":
        raise CLIError("--n-trials applies to --family binomial only.", code=2)
    if args.n_trials is not None and args.n_trials < 1:
        raise CLIError(f"--n-trials must be >= 1, got {args.n_trials}.", code=2)


def fit_command(args) -> int:
    """``jaxem fit``: read, fit, print the table; write JSON and the plot when asked."""
    precision = contextlib.nullcontext()
    if args.float64:
        import jax

        precision = jax.enable_x64(True)
    with precision:
        return _fit(args)


def _fit(args) -> int:
    _check_fit_args(args)
    _check_writable("--out", args.out)
    _check_writable("--plot", args.plot)
    _check_writable("--labels", args.labels)
    if args.plot is not None:
        _need_matplotlib("--plot")
    if args.model == "regression":
        return _fit_regression(args)
    hmm = args.model == "hmm"
    if args.sequence_column is not None and not hmm:
        raise CLIError("--sequence-column applies to --model hmm only.", code=2)
    lengths = order = None
    if hmm and args.sequence_column is not None:
        x, names, lengths, order = _sequence_lengths(args.data, args.sequence_column, args.columns)
    else:
        x, names = read_data(args.data, args.columns)
    n, d = x.shape
    dims = _plot_dims(args.plot_columns, names)
    family = args.family or (
        "normal" if d == 1 else "mclust" if args.covariance_type in MCLUST_MODELS else "mvn"
    )
    if args.covariance_type is not None and family not in ("mvn", "mclust"):
        raise CLIError("--covariance-type applies to --family mvn or mclust only.", code=2)
    if dims is not None and _codec.FAMILIES[family].support_kind in ("counts", "categories"):
        raise CLIError(
            f"--plot-columns draws scatter plots of continuous columns; --family {family} is "
            "plotted item by item: remove --plot-columns.",
            code=2,
        )
    covariance = args.covariance_type or "full"
    if family == "mclust":
        covariance = SKLEARN_TO_MCLUST.get(covariance, covariance)
    n_nan = int(np.isnan(x).sum())
    if n_nan and args.missing != "marginalize":
        rows = int(np.isnan(x).any(axis=1).sum())
        raise CLIError(
            f"{args.data}: {n_nan} missing values (empty or NaN cells) in {rows} rows; pass "
            "--missing marginalize to integrate them out, or remove those rows."
        )
    if args.k > n:
        raise CLIError(f"-k {args.k} is larger than the number of rows ({n}); use -k <= {n}.")
    n_categories = 0
    if family == "categorical":
        top = np.nanmax(x)
        if top >= MAX_CATEGORIES:
            raise CLIError(
                f"{args.data}: category codes go up to {top:g}; the categorical family expects "
                f"codes 0..C-1 with C <= {MAX_CATEGORIES}."
            )
        n_categories = max(2, int(top) + 1) if np.isfinite(top) else 2
    # One column is (N,) data, except for the multivariate normal.
    xx = x[:, 0] if d == 1 and family not in ("mvn", "mclust") else x

    import jaxem as em
    from jaxem._validation import float_dtype

    model = _model(
        family,
        args.k,
        covariance,
        n_categories,
        args.n_trials or 0,
        "hmm" if hmm else "mixture",
    )
    kwargs = {}
    if hmm:
        kwargs["lengths"] = lengths
    if args.missing == "marginalize":
        kwargs["missing"] = "marginalize"
    res, elapsed = _run_fit(args, model, xx, **kwargs)
    dtype = np.dtype(float_dtype()).name  # float64 with --float64 (or JAX_ENABLE_X64=1)

    if hmm:
        return _report_hmm(
            args, model, family, res, xx, names, lengths, order, n_nan, elapsed, dtype, kwargs
        )
    params = _sorted(model, res.params)
    n_params = em.n_parameters(model, params)
    # em.bic/aic evaluate complete data; with missing values, or estimates outside the
    # support (NaN), the criteria come from the fit's own (observed) log-likelihood.
    bic = aic = None
    if not n_nan:
        try:
            with warnings.catch_warnings():  # e.g. 1e300 estimates cast to float32: inf
                warnings.simplefilter("ignore", RuntimeWarning)
                bic, aic = float(em.bic(model, params, xx)), float(em.aic(model, params, xx))
        except ValueError:
            pass
    if bic is None:
        ll = float(res.log_likelihood)
        bic, aic = -2 * ll + n_params * math.log(n), -2 * ll + 2 * n_params

    extra = f"{model.family!r}, K={args.k}"
    headers, rows, notes = _parameter_rows(model, family, params, names)
    width = _terminal_width()
    _print_header(
        f"jaxem fit {args.data}: {n} rows, columns {', '.join(names)}; mixture of {extra}",
        f"jaxem fit {args.data}: {n} rows",
        names,
        f"mixture of {extra}",
        width if _too_wide(headers, rows, width) else None,
    )
    if n_nan:
        print(f"   {n_nan} missing values integrated out")
    _print_table(args, headers, rows, width=width)
    for note in notes:
        print(f"   ({note})")
    args._se_names = names
    se = _standard_errors(args, model, params, xx, **kwargs)  # the fit's missing=
    _print_summary(args, res, elapsed, res.log_likelihood, bic, aic, n_params)

    if args.out is not None:
        _write_record(
            args,
            {
                "jaxem_version": em.__version__,
                "data": args.data,
                "columns": names,
                "n_samples": n,
                "n_missing": n_nan,
                "family": family,
                "model": repr(model),
                "n_components": args.k,
                **({"covariance_type": model.family.covariance_type} if family == "mvn" else {}),
                **({"covariance_model": model.family.model} if family == "mclust" else {}),
                **({"n_categories": n_categories} if family == "categorical" else {}),
                **({"n_trials": args.n_trials} if family == "binomial" else {}),
                "params": {
                    "weights": _jsonable(params.weights),
                    **{f: _jsonable(v) for f, v in params.components._asdict().items()},
                },
                **_criteria(args, res, res.log_likelihood, bic, aic, n_params, dtype),
                "restart_objectives": _jsonable(res.restart_objectives),
                **_se_record(se),
            },
        )
    if args.labels is not None:
        missing = "marginalize" if n_nan else None
        _write_labels(
            args,
            em.predict(model, params, xx, missing=missing),
            em.responsibilities(model, params, xx, missing=missing),
            # A row with nothing observed has the weights for responsibilities: no label.
            unlabelled=np.isnan(x).all(axis=1),
        )
    title = f"{os.path.basename(args.data)}: {family} mixture, K={args.k}"
    _write_plot(args, model, params, xx, names, title, dims=dims)
    return 0


def _column(token: str, names: list[str], option: str) -> int:
    """The index of the column named (or numbered, from 0) ``token``."""
    token = token.strip()
    if token in names:
        return names.index(token)
    if token.isdigit() and int(token) < len(names):
        return int(token)
    raise CLIError(
        f"unknown column {token!r} in {option}; the columns are: {', '.join(names)}.", code=2
    )


def _fit_regression(args) -> int:
    """``jaxem fit --model regression``: a mixture of regressions of one column on others."""
    x_all, names_all = read_data(args.data, None)
    j_y = _column(args.response, names_all, "--response")
    if args.columns is not None:
        cols = [_column(t, names_all, "--columns") for t in args.columns.split(",")]
    else:
        cols = [j for j in range(len(names_all)) if j != j_y]
    if j_y in cols:
        raise CLIError("the response column is also among --columns (the covariates).", code=2)
    if not cols:
        raise CLIError(f"{args.data}: no covariate columns besides the response.", code=2)
    if len(set(cols)) != len(cols):
        raise CLIError("a column is selected twice in --columns.", code=2)
    x, y = x_all[:, cols], x_all[:, j_y]
    names = [names_all[j] for j in cols]
    bad = np.isnan(x).any(axis=1) | np.isnan(y)
    if bad.any():
        raise CLIError(
            f"{args.data}: {int(bad.sum())} rows have missing values (empty or NaN cells); "
            "remove them (regression mixtures do not integrate them out)."
        )
    n = x.shape[0]
    if args.k > n:
        raise CLIError(f"-k {args.k} is larger than the number of rows ({n}); use -k <= {n}.")
    family = args.family or "linear"

    import jaxem as em
    from jaxem._validation import float_dtype

    model = _regression_model(family, args.k)
    data = {"x": x, "y": y}
    res, elapsed = _run_fit(args, model, data, response=names_all[j_y])
    comps = res.params.components
    order = np.argsort(np.asarray(comps.intercept, np.float64), kind="stable")
    weights = np.asarray(res.params.weights, np.float64)[order]
    fields = {f: np.asarray(v, np.float64)[order] for f, v in comps._asdict().items()}
    params = em.MixtureParams(weights, type(comps)(**fields))
    n_params = em.n_parameters(model, params)
    bic, aic = float(em.bic(model, params, data)), float(em.aic(model, params, data))
    headers = ["component", "weight", "intercept"] + [f"coef {name}" for name in names]
    headers += ["sd"] if family == "linear" else []
    rows = []
    for i in range(args.k):
        row = [i + 1, f"{weights[i]:.4f}", _fmt(fields["intercept"][i])]
        row += [_fmt(v) for v in fields["coef"][i]]
        if family == "linear":
            row.append(_fmt(math.sqrt(fields["var"][i])))
        rows.append(row)
    width = _terminal_width()
    _print_header(
        f"jaxem fit {args.data}: {n} rows; mixture of {family} regressions of "
        f"{names_all[j_y]} on {', '.join(names)}, K={args.k}",
        f"jaxem fit {args.data}: {n} rows; response {names_all[j_y]}",
        names,
        f"mixture of {family} regressions, K={args.k}",
        width if _too_wide(headers, rows, width) else None,
        noun="covariates",
    )
    _print_table(args, headers, rows, width=width)
    args._se_names = names
    se = _standard_errors(args, model, params, data)
    _print_summary(args, res, elapsed, res.log_likelihood, bic, aic, n_params)
    if args.out is not None:
        _write_record(
            args,
            {
                "jaxem_version": em.__version__,
                "data": args.data,
                "response": names_all[j_y],
                "covariates": names,
                "n_samples": n,
                "family": family,
                "model": repr(model),
                "n_components": args.k,
                "params": {
                    "weights": _jsonable(weights),
                    **{f: _jsonable(v) for f, v in fields.items()},
                },
                **_criteria(
                    args,
                    res,
                    res.log_likelihood,
                    bic,
                    aic,
                    n_params,
                    np.dtype(float_dtype()).name,
                ),
                "restart_objectives": _jsonable(res.restart_objectives),
                **_se_record(se),
            },
        )
    if args.labels is not None:
        _write_labels(
            args, em.predict(model, params, data), em.responsibilities(model, params, data)
        )
    title = f"{os.path.basename(args.data)}: {family} regressions, K={args.k}"
    _write_plot(args, model, params, data, [names[0], names_all[j_y]], title)
    return 0


# -- the demo ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _demo_models():
    """The demo's models, built once per process (their compiled programs are cached on them)."""
    from jaxem import demos

    return demos.three_normals_model(), demos.coin_model(), _model("mvn", 2, "full", 0, 0)


def demo(restarts: int = 64, seed: int = 0, plot: str | None = DEMO_PLOT) -> int:
    """Fit the bundled examples, print the estimates and write a plot to ``plot``."""
    import jax

    import jaxem as em
    from jaxem import demos

    if plot is not None:
        _check_writable("--plot", plot)
    print("jaxem demo: EM on JAX", f"(jax {jax.__version__}, {jax.default_backend()})\n")
    model, coin, faithful_model = _demo_models()

    x = demos.three_normals()
    t0 = time.perf_counter()
    res = em.fit(model, x, key=jax.random.key(seed), restarts=restarts)
    elapsed = time.perf_counter() - t0
    comp = res.params.components
    order = np.argsort(np.asarray(comp.mean))
    print(
        f"1. Three normals, MAP ({len(x)} points; truth: means 25/30/40, sd 1/1.75/0.25, "
        "weights 0.4/0.4/0.2)"
    )
    print(f"   {model}")
    rows = [
        [
            k + 1,
            f"{float(res.params.weights[i]):.4f}",
            f"{float(comp.mean[i]):.4f}",
            f"{float(comp.var[i]):.4f}",
            f"{float(np.sqrt(comp.var[i])):.4f}",
        ]
        for k, i in enumerate(order)
    ]
    print(_table(["component", "weight", "mean", "var", "sd"], rows))
    print(
        f"   objective (log posterior) {res.objective:.4f}, log-likelihood {res.log_likelihood:.4f}"
    )
    print(
        f"   best of {restarts} parallel restarts: {res.n_iter} iterations, converged="
        f"{res.converged}; {np.sum(np.isclose(res.restart_objectives, res.objective, atol=1e-3))}"
        f"/{restarts} restarts reached it; {elapsed:.2f} s incl. compilation\n"
    )

    print(
        "2. Two coins (Do & Batzoglou 2008), heads in five sets of 10 tosses:",
        demos.COIN_HEADS.astype(int).tolist(),
    )
    rows = []
    for n_iter in (1, 10):
        r = em.fit(coin, demos.COIN_HEADS, init=demos.COIN_INIT, max_iter=n_iter, tol=0.0)
        p = np.asarray(r.params["p"])
        rows.append([n_iter, f"{p[0]:.4f}", f"{p[1]:.4f}", f"{r.objective:.4f}"])
    # It converges in about a dozen iterations; max_iter <= 15 keeps the history
    # buffer (sized by max_iter) and so the compiled program of the two runs above.
    r = em.fit(coin, demos.COIN_HEADS, init=demos.COIN_INIT, max_iter=15)
    p = np.asarray(r.params["p"])
    status = "converged" if r.converged else "max_iter"
    rows.append([f"{r.n_iter} ({status})", f"{p[0]:.4f}", f"{p[1]:.4f}", f"{r.objective:.4f}"])
    print(_table(["iterations", "p_A", "p_B", "log-likelihood"], rows))
    print("   textbook: 0.71/0.58 after 1 iteration, 0.80/0.52 after 10\n")

    xf = em.datasets.load_faithful()
    names = ["duration", "waiting"]
    t0 = time.perf_counter()
    rf = em.fit(faithful_model, xf, key=jax.random.key(seed), restarts=restarts)
    elapsed = time.perf_counter() - t0
    params_f = _sorted(faithful_model, rf.params)
    print(
        f"3. Old Faithful ({len(xf)} eruptions: duration and waiting time in minutes), "
        f"{faithful_model}"
    )
    headers, rows, _ = _parameter_rows(faithful_model, "mvn", params_f, names)
    print(_table(headers, rows))
    bic = em.bic(faithful_model, params_f, xf)
    print(
        f"   log-likelihood {rf.log_likelihood:.4f}, BIC {bic:.4f}; "
        f"{rf.n_iter} iterations, converged={rf.converged}; {elapsed:.2f} s incl. compilation"
    )

    if plot is None:
        return 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print(f"\n   (no plot: pip install matplotlib to get {plot})")
        return 0
    from matplotlib.figure import Figure

    from jaxem.plot import plot_fit

    fig = Figure(figsize=(15, 4.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    params_n = _sorted(model, res.params)  # numbered as in the table
    plot_fit(model, params_n, x, axes[:2], names=["x"], title="1. three normals (MAP)")
    plot_fit(faithful_model, params_f, xf, axes[2], names=names, title="3. Old Faithful, K=2")
    fig.savefig(plot)
    print(f"\n   wrote {plot}")
    return 0


# -- entry point -------------------------------------------------------------------------
def _component_range(spec: str) -> list[int]:
    """``-k`` of ``jaxem select``: ``'1..9'`` (inclusive) or ``'2,3,5'``."""
    try:
        if ".." in spec:
            lo, hi = (int(t) for t in spec.split(".."))
            ks = list(range(lo, hi + 1))
        else:
            ks = [int(t) for t in spec.split(",")]
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        raise CLIError(
            f"-k {spec!r}: give a range like 1..9 or a list like 2,3,5 of integers >= 1.", code=2
        )
    return sorted(set(ks))


def _select_models(spec: str) -> list[str] | str:
    if spec.strip().lower() == "mclust":
        return "mclust"
    if spec.strip().lower() == "sklearn":
        return list(COVARIANCE_TYPES)
    names = [t.strip() for t in spec.split(",") if t.strip()]
    bad = [t for t in names if t not in COVARIANCE_TYPES + MCLUST_MODELS]
    if not names or bad:
        raise CLIError(
            f"--models {spec!r}: use mclust (all 14), sklearn ({', '.join(COVARIANCE_TYPES)}) or "
            f"a list of names among {', '.join(COVARIANCE_TYPES + MCLUST_MODELS)}.",
            code=2,
        )
    return names


def select_command(args: argparse.Namespace) -> int:
    """``jaxem select``: the K × model BIC matrix of Gaussian mixtures, its winner, a plot."""
    ks = _component_range(args.k)
    models = _select_models(args.models)
    _check_ranges(args, (("--restarts", args.restarts, 1), ("--max-iter", args.max_iter, 1)))
    for option in ("out", "plot", "labels"):
        _check_writable(f"--{option}", getattr(args, option))
    if args.plot is not None:
        _need_matplotlib("--plot")
    x, names = read_data(args.data, args.columns)
    n, d = x.shape
    if np.isnan(x).any():
        raise CLIError(f"{args.data}: missing values (empty or NaN cells); remove those rows.")
    if max(ks) >= n:
        raise CLIError(f"-k {args.k}: {max(ks)} components need more than {n} rows.", code=2)
    import jaxem as em

    start = time.perf_counter()
    result = em.select_model(
        x,
        ks,
        models,
        criterion=args.criterion,
        n_init=args.restarts,
        max_iter=args.max_iter,
        tol=args.tol,
        random_state=args.seed,
    )
    elapsed = time.perf_counter() - start
    print(f"jaxem select {args.data}: {n} rows, {d} columns ({_listed(names, 60)})")
    print(result.to_string(_terminal_width()))
    if not result.rows:
        raise CLIError("every fit of the grid failed (singular covariances); try fewer components.")
    best = result.best
    name = args.criterion.upper()
    print(
        f"best: {best.model} with {best.n_components} components ({name} "
        f"{best.criterion:.2f}, log-likelihood {best.log_likelihood:.2f}); "
        f"{args.restarts} k-means restarts per cell; {elapsed:.2f} s incl. compilation"
    )
    record = {
        "jaxem_version": em.__version__,
        "data": args.data,
        "columns": names,
        "n_samples": n,
        **result.as_dict(),
        "rows": [
            {
                field: getattr(r, field)
                for field in (
                    "model",
                    "n_components",
                    "bic",
                    "icl",
                    "aic",
                    "log_likelihood",
                    "n_parameters",
                    "converged",
                    "n_iter",
                )
            }
            for r in result.rows
        ],
    }
    _write_record(args, record)
    if args.labels is not None:
        post = result.best_estimator.predict_proba(x)
        legend = f"label k: component k of the best model, {best.model} with K={best.n_components}"
        _write_labels(args, np.argmax(post, axis=1), post, legend=legend)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        em.plot_bic(result, args.plot, title=f"{args.data}: {name} by K and model")
        print(f"   wrote {args.plot}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxem", description="Expectation-Maximization on JAX.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_demo = sub.add_parser("demo", help="fit the bundled examples, print them and plot them")
    p_demo.add_argument("--restarts", type=int, default=64, help="random restarts (default 64)")
    p_demo.add_argument(
        "--seed", type=_seed, default=0, help="PRNG seed for the restarts, in [0, 2**32)"
    )
    p_demo.add_argument(
        "--plot",
        metavar="PATH",
        default=DEMO_PLOT,
        help=f"where to write the plot (default {DEMO_PLOT}; needs matplotlib)",
    )
    p_demo.add_argument("--no-plot", action="store_true", help="do not write a plot")

    p_fit = sub.add_parser(
        "fit",
        help="fit a mixture to a CSV or .npy file",
        description="Fit a K-component mixture by EM with parallel restarts. DATA is a CSV "
        "(header optional, detected; comma, tab, semicolon or whitespace separated; '-' reads "
        "stdin) or a .npy array. Prints one row per component (sorted by location); a table wider "
        "than the terminal shows its first columns (all are in the JSON, --out).",
    )
    p_fit.add_argument("data", metavar="DATA", help="CSV or .npy file")
    p_fit.add_argument("-k", type=int, required=True, help="number of components (or states)")
    p_fit.add_argument(
        "--model",
        choices=("mixture", "hmm", "regression"),
        default="mixture",
        help="mixture (default), hmm (a hidden Markov model over the rows in order) or "
        "regression (a mixture of regressions of --response on the other columns)",
    )
    p_fit.add_argument(
        "--response",
        metavar="COL",
        help="for regression: the response column (name or 0-based index); the covariates "
        "are --columns, or all other columns",
    )
    p_fit.add_argument(
        "--sequence-column",
        metavar="COL",
        help="for hmm: the column (name or 0-based index) naming each row's sequence; "
        "rows of one sequence stay in file order (default: all rows are one sequence)",
    )
    p_fit.add_argument(
        "--family",
        metavar="NAME",
        help=f"component family: {', '.join(FAMILIES)} (default: normal for one column, mvn "
        f"for several); for regression: {', '.join(REGRESSION_FAMILIES)} (default linear)",
    )
    p_fit.add_argument(
        "--covariance-type",
        metavar="TYPE",
        help=f"for mvn: {', '.join(COVARIANCE_TYPES)} (default full)",
    )
    p_fit.add_argument("--n-trials", type=int, help="for binomial: trials per observation")
    p_fit.add_argument("--columns", help="columns to use: names 'a,b' or 0-based indices '0,2'")
    p_fit.add_argument("--restarts", type=int, default=16, help="random restarts (default 16)")
    p_fit.add_argument(
        "--seed", type=_seed, default=0, help="PRNG seed for the restarts, in [0, 2**32)"
    )
    p_fit.add_argument("--max-iter", type=int, help="EM iterations per restart (default 1000)")
    p_fit.add_argument("--tol", type=float, help="per-sample objective tolerance (default 1e-8)")
    p_fit.add_argument(
        "--missing",
        choices=("raise", "marginalize"),
        default="raise",
        help="empty/NaN cells: raise (default) or marginalize (integrate them out)",
    )
    p_fit.add_argument(
        "--float64",
        action="store_true",
        help="fit in double precision (slower; for data too large for float32, whose sums "
        "of squares overflow: values of order 1e17 and up)",
    )
    p_fit.add_argument(
        "--out",
        metavar="JSON",
        help="write the estimates and criteria as JSON (non-finite numbers as null)",
    )
    p_fit.add_argument("--plot", metavar="PNG", help="write a plot of the fit (needs matplotlib)")
    p_fit.add_argument(
        "--plot-columns",
        metavar="COLS",
        help="for --plot of a mixture: the columns to draw, names 'a,b' or 0-based indices "
        "'0,2' among the fitted columns, or pca (the first principal components)",
    )
    p_fit.add_argument(
        "--labels",
        metavar="CSV",
        help="write the rows' components as CSV: row,label,uncertainty, one line per data row "
        "in file order. row: 0-based (header, blank and comment lines not counted); label: the "
        "MAP component, 0-based (label 0 is component 1 in the table); uncertainty: 1 - the "
        "largest responsibility. In a mixture, a row with nothing observed (--missing "
        "marginalize) has an empty label and uncertainty. For --model hmm: the Viterbi path's "
        "state, and 1 - the largest smoothed state probability (the two can name different "
        "states: the path is the best sequence, the probabilities are per row)",
    )
    p_fit.add_argument(
        "--se",
        action="store_true",
        help="standard errors from the observed information (a table, and in the JSON); "
        "mixtures, regressions and HMMs, with --missing marginalize too",
    )
    p_fit.add_argument(
        "--progress",
        type=int,
        default=0,
        metavar="N",
        help="print the iteration and objective to stderr every N iterations",
    )
    p_sel = sub.add_parser(
        "select",
        help="rank Gaussian mixtures by BIC over K and covariance models (mclust's grid)",
        description="Fit Gaussian mixtures for every number of components in -k and every "
        "covariance model, with k-means restarts, and print the K x model matrix of the "
        "criterion (lower is better) and the best model. One compiled program per model.",
    )
    p_sel.add_argument("data", metavar="DATA", help="CSV or .npy file")
    p_sel.add_argument(
        "-k", default="1..9", help="numbers of components: 1..9 (default) or a list 2,3,5"
    )
    p_sel.add_argument(
        "--models",
        default="mclust",
        help="mclust (its 14 models, default), sklearn (full, tied, diag, spherical) or a "
        "comma-separated list, e.g. EEE,VVV,VEV",
    )
    p_sel.add_argument(
        "--criterion",
        choices=("bic", "icl", "aic"),
        default="bic",
        help="rank by bic (default), icl or aic",
    )
    p_sel.add_argument("--columns", help="columns to use: names 'a,b' or 0-based indices '0,2'")
    p_sel.add_argument("--restarts", type=int, default=8, help="k-means restarts per cell (8)")
    p_sel.add_argument("--seed", type=_seed, default=0, help="PRNG seed, in [0, 2**32)")
    p_sel.add_argument("--max-iter", type=int, default=1000, help="EM iterations (default 1000)")
    p_sel.add_argument(
        "--tol", type=float, default=1e-5, help="per-sample log-likelihood tolerance (1e-5)"
    )
    p_sel.add_argument("--out", metavar="JSON", help="write the matrix and every fit as JSON")
    p_sel.add_argument("--plot", metavar="PNG", help="write the BIC plot (needs matplotlib)")
    p_sel.add_argument(
        "--labels",
        metavar="CSV",
        help="write the best model's rows as CSV: row,label,uncertainty (as jaxem fit --labels)",
    )

    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 1 bad data, 2 bad arguments)."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "demo":
            if args.restarts < 1:
                raise CLIError("--restarts must be >= 1", code=2)
            return demo(args.restarts, args.seed, None if args.no_plot else args.plot)
        if args.command == "select":
            return select_command(args)
        return fit_command(args)
    except CLIError as err:
        print(f"jaxem{_command(argv)}: error: {err}", file=sys.stderr)
        return err.code
    except BrokenPipeError:  # e.g. `jaxem demo | head`: not an error of ours
        sys.stderr.close()
        return 0


def _command(argv) -> str:
    argv = sys.argv[1:] if argv is None else argv
    return next((f" {a}" for a in argv if a in ("demo", "fit", "select")), "")


if __name__ == "__main__":
    sys.exit(main())
