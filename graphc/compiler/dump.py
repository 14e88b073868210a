"""``graphc.dump(compiled, directory)``: every stage of one compiled signature, on disk,
with a repro script that needs nothing but graphc and the files next to it.

    graphc.dump(model, "dump/", x)     # compiles for x if needed
    python3 dump/repro.py              # eager vs compiled on the saved inputs and weights

Files: ``explain.txt`` (guards, fusion, kernels, fallbacks, times), ``1_traced.txt``,
``2_passes.txt`` (each pass's IR diff), ``3_fusion.txt``, ``4_optimized.txt``,
``5_kernels.txt`` (kernel IR), ``6_llvm.ll``, ``7_llvm_opt.ll``, ``8_asm.s``,
``inputs.gcz``, ``weights.gcz`` and ``expected.gcz`` (the original code's eager outputs;
``graphc.save`` files), ``repro.py``; for each training program of the signature (calls
with gradients), ``9_training<k>_joint.txt``, ``..._forward.txt`` and ``..._backward.txt``
(graph and kernel IR). For a compiled training step (a function that calls ``backward()``,
called once in grad mode): ``explain.txt``, ``9_step_joint.txt``, ``9_step_forward``/
``9_step_backward`` ``.txt`` (graph and kernel IR) and ``.ll`` (LLVM IR).
"""

from __future__ import annotations

import os
import weakref

from ..autograd import no_grad
from ..ir.graph_module import _CodeWriter, fetch
from ..serialization import save
from ..tensor import Tensor, tensors_in

_REPRO = '''"""Repro written by graphc.dump: {name}, graphc {version}.

Rebuilds the traced graph from its Python form, loads the saved weights and inputs,
runs it eagerly (compared with the original code's saved outputs) and compiled (check
mode: every fused kernel against a float64 interpreter), and compares. Exit code 1 on a
mismatch.

    python3 repro.py
"""

import os
import sys

import graphc
import graphc.nn as nn
from graphc.ir.graph_module import OP_CALLERS as ops, fetch  # noqa: F401 (used by forward)
from graphc.tensor import tensors_in

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINING = {training}


{source}

class Repro(nn.Module):
    """The weights at their dotted names; forward is the traced graph."""

    def __init__(self, weights):
        super().__init__()
        for target, value in weights.items():
            *path, last = target.split(".")
            owner = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            owner.register_buffer(last, value)


Repro.forward = forward


def main() -> int:
    model = Repro(graphc.load(os.path.join(HERE, "weights.gcz"))).train(TRAINING)
    inputs = os.path.join(HERE, "inputs.gcz")  # loaded for each run: it may write into them
    saved = graphc.load(os.path.join(HERE, "expected.gcz"))  # the original code's outputs
    with graphc.no_grad():
        expected = tensors_in(model(*graphc.load(inputs)))
        compiled = graphc.compile(model, check=True)
        got = tensors_in(compiled(*graphc.load(inputs)))
    if compare(expected, saved, "the rebuilt graph (eager) vs the original code"):
        return 1
    if compare(got, expected, "compiled vs eager"):
        return 1
    for run in compiled.compiled.eager_runs:
        print(run)
    return 0


def compare(got, expected, what) -> float:
    """Print the largest difference; True on a mismatch."""
    worst = 0.0
    for i, (a, b) in enumerate(zip(got, expected)):
        if a.shape != b.shape or a.dtype != b.dtype:
            print(f"{{what}}: output {{i}} is {{a.dtype}}{{list(a.shape)}}, expected "
                  f"{{b.dtype}}{{list(b.shape)}}")
            return True
        if a.numel():
            a64, b64 = a.double(), b.double()
            same_nan = bool((a64.isnan() == b64.isnan()).all())
            finite = ~(a64.isnan() | b64.isnan())
            diff = (a64 - b64).abs()[finite]
            err = diff.max().item() if diff.numel() else 0.0
            worst = max(worst, err)
            scale = max(1.0, b64.abs()[finite].max().item() if diff.numel() else 1.0)
            if not same_nan or not err <= {rtol} * scale:
                print(f"{{what}}: output {{i}} MISMATCH, max abs diff {{err:.3e}} (nan "
                      f"positions {{'agree' if same_nan else 'differ'}})")
                return True
    print(f"{{what}}: {{len(got)}} outputs agree; max abs diff {{worst:.3e}}")
    return False


if __name__ == "__main__":
    sys.exit(main())
'''


def dump(compiled, directory: str, *args, **kwargs) -> str:
    """Write every stage of ``compiled`` (what ``graphc.compile`` returned, or a function or
    module to compile) for ``args`` (default: the inputs of the call that compiled its
    last signature) into ``directory``, with a repro script; returns the directory."""
    from .check import copies_of
    from .compiled import compiled_function
    from .explain import _step_for, explain

    fn = compiled_function(compiled)
    if not args and not kwargs:
        if fn._last is None:
            raise ValueError(f"graphc.dump: {fn.__name__} has not been called yet; pass example "
                             "inputs: graphc.dump(compiled, directory, *inputs)")
        example = fn._last.example
        args = tuple(a() if isinstance(a, weakref.ref) else a for a in example)
        if any(isinstance(r, weakref.ref) and a is None for r, a in zip(example, args)):
            # a compiled function does not keep its inputs alive
            raise ValueError(f"graphc.dump: the tensors {fn.__name__} was compiled with are "
                             "gone; pass inputs: graphc.dump(compiled, directory, *inputs)")
    step = _step_for(fn, args, kwargs)
    with no_grad():  # on copies: a program may write into its inputs
        e = explain(fn, *copies_of(args), **{k: copies_of([v])[0] for k, v in kwargs.items()})
    if step is not None:
        return _dump_step(step, e, directory)
    if not e.compiled:
        raise ValueError(f"graphc.dump: {fn.__name__} ran eagerly for these inputs, nothing "
                         "was compiled: " + "; ".join(e.eager_runs))
    entry = fn.last
    spec = entry.spec
    os.makedirs(directory, exist_ok=True)
    cg = entry.compiled
    files = {
        "explain.txt": str(e),
        "1_traced.txt": str(entry.traced.graph) + "\n\n" + entry.traced.code,
        "2_passes.txt": spec.history.format(ir=True),
        "3_fusion.txt": str(spec.plan),
        "4_optimized.txt": str(spec.gm.graph),
        "5_kernels.txt": spec.program.kernel_ir(),
        "6_llvm.ll": cg.dump("llvm"),
        "7_llvm_opt.ll": cg.dump("llvm_opt"),
        "8_asm.s": cg.dump("asm"),
        "repro.py": _repro(fn, entry),
    }
    for key, program in entry.training.items():  # training programs of this signature
        if key[0] not in (entry.signature, entry.pattern) or not hasattr(program, "partition"):
            continue
        part, k = program.partition, len([f for f in files if f.startswith("9_")]) // 3
        files[f"9_training{k}_joint.txt"] = str(program.joint.graph)
        files[f"9_training{k}_forward.txt"] = str(part.forward.graph) + "\n\n" + _kernels_of(
            program.forward)
        files[f"9_training{k}_backward.txt"] = str(part.backward.graph) + "\n\n" + _kernels_of(
            program.backward)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    traced = entry.traced
    weights = {n.target: _plain(fetch(traced, n.target))
               for n in traced.graph.nodes if n.op == "get_attr"}
    save(weights, os.path.join(directory, "weights.gcz"))
    bound = fn._bind(args, kwargs)
    save([_plain(a) for a in bound if isinstance(a, Tensor)],
         os.path.join(directory, "inputs.gcz"))
    with no_grad():
        expected = [_plain(t) for t in tensors_in(fn._eager_call(tuple(copies_of(bound)), {}))]
    save(expected, os.path.join(directory, "expected.gcz"))
    return directory


def _dump_step(step, e, directory: str) -> str:
    """A compiled training step: explain.txt, its joint graph, and each program's graph,
    kernel IR and LLVM IR (no repro: running a step trains the model)."""
    files = {"explain.txt": str(e), "9_step_joint.txt": str(step.gm.graph)}
    for name, cg, graph in (("forward", step.forward, step.partition.forward.graph),
                            ("backward", step.backward, step.partition.backward.graph)):
        files[f"9_step_{name}.txt"] = str(graph) + "\n\n" + _kernels_of(cg)
        if cg._last is not None:
            files[f"9_step_{name}.ll"] = cg.dump("llvm")
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(directory, name), "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    return directory


def _kernels_of(cg) -> str:
    spec = cg._last
    return spec.program.kernel_ir() if spec is not None else "(not compiled yet: no backward ran)"


def _repro(fn, entry) -> str:
    from .. import __version__

    graph = entry.traced.graph
    modules = [n.target for n in graph.nodes if n.op == "call_module"]
    writer = _CodeWriter(graph)
    source = writer.source()
    if modules or writer.constants:
        what = modules or sorted(writer.constants)
        source += (f"\n\nraise SystemExit('this repro cannot rebuild {what}: leaf modules and "
                   "non-literal constants are not saved')\n")
    return _REPRO.format(name=fn.__name__, version=__version__, source=source.rstrip() + "\n",
                         training=bool(entry.signature[0]), rtol=1e-4)


def _plain(t: Tensor) -> Tensor:
    return t.detach().clone()
