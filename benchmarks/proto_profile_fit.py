"""Profile where one vmapped ``em.fit`` spends its time, per XLA op (CPU).

Runs ``em.fit(Mixture(Normal(), K), x, key=0, restarts=R, max_iter=M, tol=0)`` once to compile,
then once under ``jax.profiler.trace``, reads the trace back with ``jax.profiler.ProfileData``
and sums the durations of each XLA thunk (fusion, dot, copy, ...) over the XLA threads. Each op
is matched with its line in the optimized HLO of the same program, which XLA writes to a
temporary directory (``--xla_dump_to``, set before jax is imported; the largest module is the
EM program): that gives its output shape, the jax operation it came from and the HLO opcodes
inside it.

Usage:
    python benchmarks/proto_profile_fit.py --case 1e5,16,8,16 --iters 10
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
from pathlib import Path

DUMP = tempfile.mkdtemp(prefix="jaxem_hlo_")
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={DUMP}".strip()
os.environ.setdefault("JAXEM_CACHE_DIR", "off")  # compile here, so that the HLO is dumped

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxem as em  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_restarts import jaxem_data, make_data  # noqa: E402

SKIP = ("ThunkExecutor", "while", "conditional", "call")


def hlo_index(text: str):
    """name -> (shape, opcode, op_name, opcodes inside a fusion)."""
    comps, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^%?(\S+) .*\{$", line)
        if m and not line.startswith(" "):
            current = comps.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\s+(?:ROOT )?%(\S+) = (\S+) (\S+?)\(", line)
        if m and current is not None:
            current.append((m.group(1), m.group(2), m.group(3), line))
    index = {}
    for instrs in comps.values():
        for name, shape, opcode, line in instrs:
            op_name = re.search(r'op_name="([^"]*)"', line)
            inner = ""
            calls = re.search(r"calls=%(\S+?)[,\s]", line)
            if calls and calls.group(1) in comps:
                ops = collections.Counter(i[2] for i in comps[calls.group(1)])
                for boring in ("parameter", "constant", "broadcast", "bitcast"):
                    ops.pop(boring, None)
                inner = " ".join(f"{k}x{v}" if v > 1 else k for k, v in ops.most_common(6))
            index[name] = (shape, opcode, op_name.group(1) if op_name else "", inner)
    return index


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="1e5,16,8,16", help="N,D,K,R")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args(argv)
    n, d, k, r = (int(float(s)) for s in args.case.split(","))
    x = jaxem_data(make_data(n, d, k))
    model = em.Mixture(em.Normal(), n_components=k)

    def fit():
        res = em.fit(model, x, key=0, restarts=r, max_iter=args.iters, tol=0.0)
        jax.block_until_ready(res.params)
        return res

    fit()
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            res = fit()
        (path,) = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)
        prof = jax.profiler.ProfileData.from_file(path)

    totals, counts, wall = collections.Counter(), collections.Counter(), 0.0
    for plane in prof.planes:
        for line in plane.lines:
            for ev in line.events:
                if ev.name.startswith("ThunkExecutor::Execute (wait"):
                    wall = max(wall, ev.duration_ns / 1e9)
                if not line.name.startswith("tf_XLA") or ev.name.startswith(SKIP):
                    continue
                totals[ev.name] += ev.duration_ns / 1e9
                counts[ev.name] += 1

    dumps = glob.glob(f"{DUMP}/*after_optimizations.txt")
    text = max((Path(f).read_text() for f in dumps), key=len)  # the EM program
    index = hlo_index(text)

    its = int(np.max(res.restart_n_iter))
    op_sum = sum(totals.values())
    loop_ops = {name: t for name, t in totals.items() if counts[name] >= its}
    loop_sum = sum(loop_ops.values())
    print(
        f"N={n:.0e} D={d} K={k} R={r}: {its} iterations, program wall {wall:.3f} s; "
        f"ops summed over XLA threads {op_sum:.3f} s, of which {loop_sum:.3f} s in ops run "
        f"every iteration ({1e3 * loop_sum / (its * r):.2f} ms per restart-iteration) and "
        f"{op_sum - loop_sum:.3f} s once (k-means++ draws, first E-step)"
    )
    print(
        "| op | calls | total ms | ms per call | % of op time | output shape | jax op "
        "| HLO inside |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, t in totals.most_common(args.top):
        shape, opcode, op_name, inner = index.get(name, ("?", "?", "?", ""))
        src = op_name.split("/")[-1] if op_name else ""
        print(
            f"| {name} | {counts[name]} | {1e3 * t:.0f} | {1e3 * t / counts[name]:.1f} "
            f"| {100 * t / op_sum:.0f} | {shape} | {src} | {inner or opcode} |"
        )


if __name__ == "__main__":
    main()
