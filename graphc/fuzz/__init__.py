"""A differential fuzzer: random graphs over the op table, compiled by the LLVM backend
and compared with the interpreter under a written tolerance policy.

    from graphc.fuzz import generate_case, check_case, shrink_case, fuzz
    case = generate_case(seed=0, index=17)     # deterministic
    outcome = check_case(case)                 # ok / crash / mismatch (and why)
    summary = fuzz(1000, seed=0, save="fails") # shrinks and saves every failure

From the command line: ``python3 -m graphc fuzz --count 10000 [--seed N] [--save DIR]``.

The mutation mode (``python3 -m graphc fuzz --mutation``) draws Python programs that write
in place and through views instead, and checks compiled and traced runs against eager,
inputs' final values and output aliasing included:

    case = generate_mutation_case(seed=0, index=17)   # print(case.source())
    outcome = check_mutation_case(case)                # ok / fallback / crash / mismatch

The gradient mode (``python3 -m graphc fuzz --grad``) checks compiled training against eager
autograd: graphs and in-place programs whose float inputs (some of them) require grad,
``loss = sum((out * tangent).sum())``, ``loss.backward()``, outputs and every ``.grad``:

    case = generate_grad_case(seed=0, index=17)       # inputs with requires_grad
    outcome = check_grad_case(case)                    # ok / eager / no gradient / crash / mismatch

- ``case``: the case format (inputs with exact layouts, op-table steps) and its JSON;
- ``generate``: the seeded generator over the op table;
- ``tolerance``: the tolerance policy (read its docstring) and the comparison;
- ``bounds``: the analysis giving every output element its error bound;
- ``run``: checking one case, and the fuzzing loop;
- ``shrink``: making a failing case small;
- ``mutation``: mutation programs as data, their source and JSON, and their generator;
- ``memory_bounds``: the tolerance bounds of a graph that writes in place;
- ``mutation_check``: checking mutation programs, shrinking them, and their fuzzing loop;
- ``grad``: the gradient mode: its cases, check, gradient tolerance, shrinking and loop.

Shrunk failures live in ``tests/fuzz_repros/`` as JSON (``mutation_*.json``: mutation
programs; ``grad_*.json``: gradient mode), replayed by ``tests/fuzz``.
"""

from .case import Case, Input, Ref, Step, load_case, save_case
from .generate import fuzzed_ops, generate_case
from .run import Outcome, Summary, check_case, fuzz
from .shrink import shrink_case
from .bounds import Bound, output_bounds
from .tolerance import compare
from .mutation import MutationCase, generate_mutation_case, load_mutation_case, save_mutation_case
from .mutation_check import check_mutation_case, fuzz_mutation, shrink_mutation_case
from .grad import GradSummary, check_grad_case, fuzz_grad, generate_grad_case, shrink_grad_case

__all__ = ["Case", "Input", "Ref", "Step", "load_case", "save_case", "fuzzed_ops",
           "generate_case", "Outcome", "Summary", "check_case", "fuzz", "shrink_case",
           "Bound", "compare", "output_bounds", "MutationCase", "generate_mutation_case",
           "load_mutation_case", "save_mutation_case", "check_mutation_case", "fuzz_mutation",
           "shrink_mutation_case", "GradSummary", "check_grad_case", "fuzz_grad",
           "generate_grad_case", "shrink_grad_case"]
