"""256- against 512-bit vectors on an AVX-512 CPU: the measurement behind
``graphc.codegen.target.AVX512_VECTOR_WIDTH`` (graphc's default width with AVX-512).

    python3 benchmarks/vector_width.py              # W1-W6, 3 rounds
    python3 benchmarks/vector_width.py W1 W2 --rounds 5

GRAPHC_VECTOR_WIDTH is read once per process, so each width runs in child processes,
started in turns (256, 512, then 512, 256, ...) so that both see the same machine. A child
compiles the workloads of benchmarks/workloads.py, checks them against eager and times the
compiled calls (medians of interleaved samples, as benchmarks/run.py does). Printed: the
median per width over the rounds and the ratio, all measured in this one run. On a CPU
without AVX-512 both widths give the same code; it says so and exits (``--force`` runs
anyway, to check the script).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc.codegen import target as T  # noqa: E402
from run import check, fmt_time, medians  # noqa: E402
from workloads import build  # noqa: E402

WIDTHS = ("256", "512")


def child(names: list[str]) -> int:
    """In a process with GRAPHC_VECTOR_WIDTH set: one JSON line of seconds per workload."""
    seconds = {}
    with graphc.no_grad():
        for w in build(names or None):
            compiled, inputs = graphc.compile(w.model), w.inputs
            check(w, compiled(*inputs), w.model(*inputs))
            call = functools.partial(compiled, *inputs)
            seconds[w.name] = medians({"compiled": call}, budget=1.5)["compiled"]
    t = T.current()
    print(json.dumps({"target": t.summary(), "bits": t.vector_bits(), "seconds": seconds}))
    return 0


def run_child(width: str, names: list[str], strict: bool) -> dict:
    env = {**os.environ, T.WIDTH_VAR: width}
    res = subprocess.run([sys.executable, __file__, "--child", *names], env=env,
                         capture_output=True, text=True, timeout=1800)
    if res.returncode:
        raise SystemExit(f"the child with {T.WIDTH_VAR}={width} failed:\n{res.stderr}")
    out = json.loads(res.stdout.splitlines()[-1])
    if strict and out["bits"] != int(width):
        raise SystemExit(f"{T.WIDTH_VAR}={width} gave {out['bits']}-bit vectors ({out['target']}): "
                         "this target cannot compare the two widths")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workloads", nargs="*", help="W1..W6 (default: all)")
    ap.add_argument("--rounds", type=int, default=3, help="child processes per width")
    ap.add_argument("--force", action="store_true", help="run even without AVX-512")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.workloads)
    avx512 = T.current().has("avx512f")
    if not avx512 and not args.force:
        print(f"{T.current().summary()}\nno AVX-512 here: 256- and 512-bit vectors give the same "
              "code, so there is nothing to measure. Run this on an AVX-512 machine (znver4, "
              "Sapphire Rapids, ...) to choose AVX512_VECTOR_WIDTH; --force runs it anyway.")
        return 0
    times: dict[str, dict[str, list[float]]] = {w: {} for w in WIDTHS}
    targets = {}
    for r in range(args.rounds):
        for width in WIDTHS if r % 2 == 0 else WIDTHS[::-1]:
            print(f"round {r + 1}/{args.rounds}: {T.WIDTH_VAR}={width} ...", file=sys.stderr, flush=True)
            out = run_child(width, args.workloads, strict=avx512)
            targets[width] = out["target"]
            for name, s in out["seconds"].items():
                times[width].setdefault(name, []).append(s)

    print(f"graphc {graphc.__version__}, {args.rounds} rounds of child processes per width")
    for width in WIDTHS:
        print(f"  {T.WIDTH_VAR}={width}: {targets[width]}")
    if not avx512:
        print("  (no AVX-512: --force ran the same code in both columns)")
    head = ["workload", "256-bit", "512-bit", "512 vs 256"]
    rows, ratios = [], []
    for name in times["256"]:
        a, b = (statistics.median(times[w][name]) for w in WIDTHS)
        ratios.append(a / b)
        rows.append([name, fmt_time(a), fmt_time(b),
                     f"{a / b:.2f}x " + ("faster" if b < a else "slower")])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head] + rows:
        print("  ".join(str(x).rjust(wd) for x, wd in zip(line, widths)))
    mean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"geometric mean: 512-bit vectors {mean:.2f}x the speed of 256-bit ones "
          f"(faster on {sum(r > 1 for r in ratios)} of {len(ratios)} workloads); "
          f"graphc's default with AVX-512 is {T.AVX512_VECTOR_WIDTH} bits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
