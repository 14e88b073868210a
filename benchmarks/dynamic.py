"""What symbolic sizes cost: the same workloads compiled with fixed sizes and with
symbolic ones, timed in one run.

    python3 benchmarks/dynamic.py            # W1..W6
    python3 benchmarks/dynamic.py W2 W5

For each workload three compiled versions of the same model run on the same inputs:
- ``fixed``: ``graphc.compile(model, dynamic=False)``, every size a constant;
- ``batch``: dim 0 of each input symbolic, as ``graphc.compile(model)`` compiles it after
  seeing two batch sizes (here: first called with a smaller batch);
- ``all``: ``dynamic=True``, every dim symbolic (the guards pin what the weights fix).
Times are medians of interleaved rounds (``run.medians``); the ratios are fixed / dynamic
(above 1: the symbolic program is faster). Each result is checked against eager first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc.compiler.compiled import compiled_function  # noqa: E402
from run import check, medians  # noqa: E402
from workloads import build  # noqa: E402


def smaller(t):
    """The same tensor with half the rows (at least 2): the call that makes dim 0 dynamic."""
    return t[: max(2, t.shape[0] // 2)].contiguous()


def main(argv: list[str]) -> int:
    want = set(argv) or None
    print(f"graphc {graphc.__version__}; times per call, fixed / dynamic ratios")
    print(f"{'workload':>8} {'fixed':>10} {'batch':>10} {'all':>10}  {'fixed/batch':>11} "
          f"{'fixed/all':>9}  symbolic sizes")
    for w in build(want):
        with graphc.no_grad():
            versions = {"fixed": graphc.compile(w.model, dynamic=False),
                        "batch": graphc.compile(w.model),
                        "all": graphc.compile(w.model, dynamic=True)}
            versions["batch"](*(smaller(t) for t in w.inputs))
            eager = w.model(*w.inputs)
            sizes = []
            for name, c in versions.items():
                check(w, c(*w.inputs), eager)
                if name != "fixed":
                    sizes.append(f"{name}: {_symbols(compiled_function(c))}")
            t = medians({name: (lambda c=c, x=w.inputs: c(*x)) for name, c in versions.items()})
        print(f"{w.name:>8} {_ms(t['fixed'])} {_ms(t['batch'])} {_ms(t['all'])}  "
              f"{t['fixed'] / t['batch']:>10.2f}x {t['fixed'] / t['all']:>8.2f}x  "
              f"{'; '.join(sizes)}")
    return 0


def _symbols(fn) -> str:
    """The symbols left in the program that ran, or why it has fixed sizes."""
    env = fn.last.spec.program.shape_env
    if env is not None:
        return ", ".join(env.free())
    if fn.static_reasons:
        return "fixed: " + fn.static_reasons[-1].reason.split(": ", 1)[1][:70]
    return "fixed: no dim of size >= 2 to make symbolic"


def _ms(s: float) -> str:
    return f"{s * 1e3:7.3f} ms" if s >= 1e-4 else f"{s * 1e6:7.1f} us"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
