"""``python -m graphc <command>``: the demo (and, as later steps land, bench/explain/dump)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

import graphc
import graphc.nn.functional as F
from graphc.ops import OPS, Flag


def transformer_block(x, p):
    """One pre-norm transformer encoder block written with graphc ops."""
    b, s, d = x.shape
    heads = p["heads"]
    h = F.layer_norm(x, (d,), p["ln1_w"], p["ln1_b"])
    qkv = F.linear(h, p["w_qkv"], p["b_qkv"]).view(b, s, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    attn = F.softmax(q @ k.transpose(-2, -1) * (1.0 / (d // heads) ** 0.5), dim=-1)
    ctx = (attn @ v).transpose(1, 2).reshape(b, s, d)
    x = x + F.linear(ctx, p["w_o"], p["b_o"])
    h = F.layer_norm(x, (d,), p["ln2_w"], p["ln2_b"])
    return x + F.linear(F.gelu(F.linear(h, p["w_1"], p["b_1"]), approximate="tanh"), p["w_2"], p["b_2"])


def block_params(d: int, heads: int, ff: int):
    def w(*shape):
        return graphc.randn(*shape) * (1.0 / shape[-1] ** 0.5)
    return {"heads": heads,
            "ln1_w": graphc.ones(d), "ln1_b": graphc.zeros(d),
            "w_qkv": w(3 * d, d), "b_qkv": graphc.zeros(3 * d),
            "w_o": w(d, d), "b_o": graphc.zeros(d),
            "ln2_w": graphc.ones(d), "ln2_b": graphc.zeros(d),
            "w_1": w(ff, d), "b_1": graphc.zeros(ff), "w_2": w(d, ff), "b_2": graphc.zeros(d)}


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
    params = block_params(d, heads, 4 * d)
    x = graphc.randn(batch, seq, d)
    say(f"2. A transformer encoder block in eager mode (d_model {d}, {heads} heads, seq {seq}, "
        f"batch {batch})")
    y = transformer_block(x, params)
    ms = _median_ms(lambda: transformer_block(x, params), 5)
    say(f"   output {tuple(y.shape)} {y.dtype.name}, mean {y.mean().item():+.5f}, "
        f"std {y.std().item():.5f}")
    say(f"   eager: {ms:.1f} ms per call (median of 5)\n")

    say("3. Meta mode: the same code on meta tensors gives shapes and dtypes, no data")
    meta_params = {k: v.to("meta") if isinstance(v, graphc.Tensor) else v for k, v in params.items()}
    t0 = time.perf_counter()
    m = transformer_block(x.to("meta"), meta_params)
    say(f"   {m!r}  in {1e3 * (time.perf_counter() - t0):.2f} ms")
    say("\nNext steps of graphc capture this block into a graph IR and compile it with LLVM.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the demo: views, an eager transformer block, meta mode")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
