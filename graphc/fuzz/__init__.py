"""A differential fuzzer: random graphs over the op table, compiled by the LLVM backend
and compared with the interpreter under a written tolerance policy.

    from graphc.fuzz import generate_case, check_case, shrink_case, fuzz
    case = generate_case(seed=0, index=17)     # deterministic
    outcome = check_case(case)                 # ok / crash / mismatch (and why)
    summary = fuzz(1000, seed=0, save="fails") # shrinks and saves every failure

From the command line: ``python3 -m graphc fuzz --count 10000 [--seed N] [--save DIR]``.

- ``case``: the case format (inputs with exact layouts, op-table steps) and its JSON;
- ``generate``: the seeded generator over the op table;
- ``tolerance``: the tolerance policy (read its docstring) and the comparison;
- ``bounds``: the analysis giving every output element its error bound;
- ``run``: checking one case, and the fuzzing loop;
- ``shrink``: making a failing case small.

Shrunk failures live in ``tests/fuzz_repros/`` as JSON, replayed by ``tests/fuzz``.
"""

from .case import Case, Input, Ref, Step, load_case, save_case
from .generate import fuzzed_ops, generate_case
from .run import Outcome, Summary, check_case, fuzz
from .shrink import shrink_case
from .bounds import Bound, output_bounds
from .tolerance import compare

__all__ = ["Case", "Input", "Ref", "Step", "load_case", "save_case", "fuzzed_ops",
           "generate_case", "Outcome", "Summary", "check_case", "fuzz", "shrink_case",
           "Bound", "compare", "output_bounds"]
