"""``python -m graphc demo``: views, an eager transformer block, meta mode, its traced and
fused graph, the block compiled with ``graphc.compile`` against eager, and code that
writes in place made functional and compiled."""

from __future__ import annotations

import copy
import sys
import time
from collections import Counter

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.ops import OPS, Flag


class TransformerBlock(nn.Module):
    """A pre-norm transformer encoder block written with graphc ops."""

    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        ctx = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(ctx)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def demo(out=sys.stdout) -> None:
    say = lambda *a: print(*a, file=out)
    say(f"graphc {graphc.__version__} - dynamic mode: ops run at once on numpy\n")

    kinds = Counter(f.value for op in OPS for f in op.flags if f in (
        Flag.ELEMENTWISE, Flag.REDUCTION, Flag.VIEW, Flag.MATMUL, Flag.COMPOSITE, Flag.FACTORY))
    say(f"The op table: {len(OPS)} ops, each declared once ("
        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")\n")

    say("1. Views are strided windows onto one storage")
    A = graphc.arange(12).reshape(3, 4)
    say(f"   A = arange(12).reshape(3, 4)   stride {A.stride()}")
    say(f"   A.T                            stride {A.T.stride()}, contiguous {A.T.is_contiguous()}, "
        f"shares A's storage {A.T.untyped_storage().data_ptr() == A.untyped_storage().data_ptr()}")
    say(f"   A[1:3, 0:2]                    storage_offset {A[1:3, 0:2].storage_offset()}")
    try:
        A.T.view(1, 12)
    except graphc.ShapeError as e:
        say(f"   A.T.view(1, 12)  ->  ShapeError: {e}")
    A[0, ::2] = -1
    say(f"   after A[0, ::2] = -1, A.T[0] is {A.T[0].tolist()} (writes go through views)\n")

    graphc.manual_seed(0)
    batch, seq, d, heads = 8, 128, 256, 4
    block = TransformerBlock(d, heads, 4 * d).eval()
    x = graphc.randn(batch, seq, d)
    say(f"2. A transformer encoder block in eager mode (d_model {d}, {heads} heads, seq {seq}, "
        f"batch {batch})")
    with graphc.no_grad():
        y = block(x)
        ms = _median_ms(lambda: block(x), 5)
    say(f"   output {tuple(y.shape)} {y.dtype.name}, mean {y.mean().item():+.5f}, "
        f"std {y.std().item():.5f}")
    say(f"   eager: {ms:.1f} ms per call (median of 5)\n")

    say("3. Meta mode: the same code on meta tensors gives shapes and dtypes, no data")
    t0 = time.perf_counter()
    with graphc.no_grad():
        m = copy.deepcopy(block).to("meta")(x.to("meta"))
    say(f"   {m!r}  in {1e3 * (time.perf_counter() - t0):.2f} ms\n")

    say("4. Static mode begins: graphc.trace records the block into the graph IR")
    t0 = time.perf_counter()
    gm = graphc.trace(block, graphc.TensorSpec((batch, seq, d)))
    ms_trace = 1e3 * (time.perf_counter() - t0)
    for line in str(gm.graph).splitlines():
        say("   " + line)
    with graphc.no_grad():
        diff = (gm(x) - y).abs().max().item()
    say(f"   {len(gm.graph.nodes)} nodes, traced in {ms_trace:.1f} ms; the GraphModule's output "
        f"differs from eager by {diff:.1e}\n")

    say("5. Passes (functionalize, decompose, simplify, CSE, constant folding, DCE) and the "
        "fusion planner")
    from graphc.passes import PassManager, fuse

    history = PassManager.default().run(gm)
    for line in str(history).splitlines():
        say("   " + line)
    plan = fuse(gm)
    before, after = plan.bytes_moved()
    say(f"   {len(plan.kernels)} kernels; intermediate traffic {before / 2**20:.1f} MiB unfused, "
        f"{after / 2**20:.1f} MiB fused:")
    for target, kernel, members in plan.kernels:
        say(f"     {target:<9} {kernel.name:<22} {kernel.kind:<11} {len(members)} ops")
    for line in str(gm.graph).splitlines():
        say("   " + line)
    with graphc.no_grad():
        diff = (gm(x) - y).abs().max().item()
    say(f"   the fused graph (run by the interpreter) differs from eager by {diff:.1e}\n")

    say("6. graphc.compile: the block compiled; each kernel native code, the graph one call")
    compiled = graphc.compile(block)
    t0 = time.perf_counter()
    with graphc.no_grad():
        got = compiled(x)
    ms_compile = 1e3 * (time.perf_counter() - t0)
    e = graphc.explain(compiled, x)
    say(f"   first call (trace, passes, fusion, LLVM) {ms_compile:.0f} ms: " + ", ".join(
        f"{k} {v:.1f}" for k, v in e.stages_ms.items()) + " ms" +
        (" (LLVM from the disk cache)" if e.llvm_from_cache else ""))
    say(f"   guards checked on every call: {len(e.guards)} (" + "; ".join(e.guards[:4]) + "; ...)")
    say(f"   {len(e.kernels)} native kernels, {len(e.fallbacks)} numpy fallbacks; estimated cost:")
    for k in e.kernels:
        say(f"     {k['name']:<22} {k['kind']:<11} {k['bytes'] / 2**20:7.2f} MiB "
            f"{k['flops'] / 1e6:8.1f} MFLOP")
    kernels = compiled.compiled.stage_text("kernels").split("\n\n")
    say("   the kernel IR of one kernel (all stages: graphc.dump(compiled, dir); or "
        "GRAPHC_DEBUG=1..4):")
    row = next((k for k in kernels if k.startswith("kernel R_")), kernels[0])
    for line in row.splitlines():
        say("     " + line)
    with graphc.no_grad():
        diff = (got - y).abs().max().item()
        compiled(graphc.randn(2, seq, d))  # a new batch size: a guard miss, explained
        x3 = graphc.randn(3, seq, d)  # and another: the batch is a symbol by now
        diff3 = (compiled(x3) - block(x3)).abs().max().item()
        ms_eager = _median_ms(lambda: block(x), 5)
        ms_compiled = _median_ms(lambda: compiled(x), 20)
    say(f"   differs from eager by {diff:.1e}")
    cf = compiled.compiled
    say(f"   a call with batch 2: {cf.recompiles[-1]}")
    say(f"   a call with batch 3 ran that program (sizes read per call), {diff3:.1e} from "
        f"eager: {len(cf.entries)} programs for 3 batch sizes, {len(cf.recompiles)} recompile\n")
    say("   speed, median per call (eager: numpy op by op; compiled: one native call)")
    say(f"     eager    {ms_eager:8.2f} ms")
    ratio = ms_eager / ms_compiled
    say(f"     compiled {ms_compiled:8.2f} ms   " + (f"{ratio:.1f}x faster" if ratio >= 1
                                                     else f"{1 / ratio:.1f}x slower"))
    _writes_demo(say)
    say("\n   More: python3 -m graphc bench|explain|dump FILE:OBJ, and python3 benchmarks/run.py "
        "(W1-W6 against numpy, and torch when installed)")


def _residual(x, skip):
    """Model code that writes: an in-place ReLU, a residual +=, a write through a view, and
    the caller's own tensor scaled in place."""
    out = x * 2 - 1
    out.relu_()
    out += skip
    out[:, 0] = 0.0
    skip.mul_(0.5)
    return out


def _writes_demo(say) -> None:
    from graphc.passes import functionalize

    say("\n7. Code that writes in place: made functional first, then compiled")
    x, skip = graphc.randn(4, 3), graphc.randn(4, 3)
    gm = graphc.trace(_residual, x, skip)
    say("   traced (copy_ is every in-place write):")
    for line in str(gm.graph).splitlines():
        say("     " + line)
    functionalize(gm)
    say("   functional (pure ops; the caller's tensor written back at the end):")
    for line in str(gm.graph).splitlines():
        say("     " + line)
    eager_skip, compiled_skip = skip.clone(), skip.clone()
    with graphc.no_grad():
        want = _residual(x.clone(), eager_skip)
        got = graphc.compile(_residual, fullgraph=True)(x.clone(), compiled_skip)
    say(f"   compiled vs eager: output differs by {(got - want).abs().max().item():.1e}, the "
        f"written argument by {(compiled_skip - eager_skip).abs().max().item():.1e}")
