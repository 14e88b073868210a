"""How compile time grows with the size of the graph: every stage should be linear.

    python3 benchmarks/graph_scale.py                  # ~5k, 10k and 20k traced nodes
    python3 benchmarks/graph_scale.py --nodes 1000 2000 4000
    python3 benchmarks/graph_scale.py --profile 10000  # cProfile of one compile instead

The program is a deep residual MLP written with graphc's public API: per block a Linear
and a chain of 20 elementwise steps, ``h = relu(h) * 0.5 - h * 0.25``, added to the
block's input (~84 traced nodes, one fused matmul kernel: LLVM's time is per kernel,
so nodes are many and kernels few). Each size compiles in a fresh ``graphc.compile``
with the disk cache off (``GRAPHC_CACHE=0``), so LLVM really compiles. The stages are
those ``graphc.explain`` reports (trace, passes, fuse, lower, llvm), each pass of the
pass pipeline, and the first run (the first call's time not spent in those stages:
guards, the runtime's tables and running the program once). The last columns are the
ratio of each stage's time from one size to the next: ~2 per doubling is linear, ~4
quadratic. The machines are shared and noisy: ``--repeat 2`` keeps the fastest of two.
Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("GRAPHC_CACHE", "0")  # measure real compiles, not disk-cache reads
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc import nn  # noqa: E402

WIDTH = 8
BATCH = 4
STEPS = 20  # elementwise steps per block: kernels are few, nodes many (LLVM time is per kernel)


class Block(nn.Module):
    def __init__(self, leak: float):
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)
        self.leak = leak

    def forward(self, x):
        h = self.fc(x)
        for _ in range(STEPS):
            h = graphc.relu(h) * 0.5 - h * self.leak
        return x + h


class DeepMLP(nn.Module):
    def __init__(self, blocks: int, run: int = 0):
        super().__init__()
        # each run's program differs in one constant, so that the process's cache of
        # compiled modules cannot serve a repeated measurement
        self.blocks = nn.ModuleList([Block(0.25 + run * 2 ** -12) for _ in range(blocks)])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def model_of(nodes: int, run: int = 0) -> DeepMLP:
    """A model whose traced graph has about ``nodes`` nodes."""
    x = graphc.TensorSpec((BATCH, WIDTH))
    per_block = len(graphc.trace(DeepMLP(2), x).graph) - len(graphc.trace(DeepMLP(1), x).graph)
    graphc.manual_seed(0)
    return DeepMLP(max(1, round(nodes / per_block)), run)


def measure(nodes: int, run: int = 0) -> tuple[int, dict[str, float]]:
    """(traced nodes, ms per stage) of compiling and first running a model of ~nodes."""
    model = model_of(nodes, run)
    x = graphc.randn(BATCH, WIDTH)
    gc.collect()  # the previous size's garbage is not this one's to collect
    compiled = graphc.compile(model)
    t0 = time.perf_counter()
    with graphc.no_grad():
        compiled(x)
    first_call = 1e3 * (time.perf_counter() - t0)
    e = graphc.explain(compiled, x)
    stages = dict(e.stages_ms)
    stages["first run"] = first_call - sum(stages.values())
    for p in e.passes:
        stages[f"  pass {p['name']}"] = p["ms"]
    traced = e.passes[0]["nodes_before"] if e.passes else 0
    return traced, stages


def table(sizes: list[int], repeat: int = 1) -> str:
    """Each size measured ``repeat`` times (the fastest of each stage is kept: this machine
    is shared, and a slow run says nothing about the code)."""
    results = []
    for n in sizes:
        runs = [measure(n, run) for run in range(repeat)]
        results.append((runs[0][0], {k: min(r[k] for _, r in runs) for k in runs[0][1]}))
    head = f"{'stage':<24}" + "".join(f"{f'{n} nodes':>14}" for n, _ in results)
    head += "".join(f"{_short(b) + '/' + _short(a):>11}" for a, b in zip(sizes, sizes[1:]))
    lines = [head, "-" * len(head)]
    for name in list(results[0][1]) + ["total"]:
        ms = [sum(v for k, v in r.items() if not k.startswith(" ")) if name == "total"
              else r.get(name, 0.0) for _, r in results]
        ratios = [b / a if a > 0.05 else float("nan") for a, b in zip(ms, ms[1:])]
        lines.append(f"{name:<24}" + "".join(f"{m:11.1f} ms" for m in ms)
                     + "".join(f"{r:11.2f}" for r in ratios))
    return "\n".join(lines)


def _short(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def profile(nodes: int) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(measure, nodes)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[5000, 10000, 20000])
    parser.add_argument("--repeat", type=int, default=1, help="runs per size (the fastest counts)")
    parser.add_argument("--profile", type=int, metavar="NODES")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile)
        return
    measure(200, run=-1)  # the one-time start-up (LLVM, BLAS, first use of the passes)
    print(table(args.nodes, args.repeat))


if __name__ == "__main__":
    main()
