"""Targets (codegen/target.py): what the same generated kernels become for the AVX2 path,
the host's own CPU, AVX-512 at either vector width and AArch64 (read as assembly, never
run unless this CPU can run them), and GRAPHC_CPU / GRAPHC_CPU_FEATURES /
GRAPHC_VECTOR_WIDTH in fresh processes: values, refusals, errors, cache keys, explain()."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest

import graphc
from graphc.compiler import compile_graph
from graphc.codegen import target as T
from tests.codegen.vectors import X86, lanes, needs_x86, packed, vector_lanes

ROOT = Path(__file__).resolve().parents[2]
HOST = llvm.get_host_cpu_features()
FMA = r"vfn?m(?:add|sub)\d+{t}"


def _mul_add(x, y):
    return x * 1.5 + y


KERNELS = {  # name: (function, arity, the packed instruction expected with FMA)
    "mul_add": (_mul_add, 2, r"vmul{t}|" + FMA),
    "sum": (lambda x: x.sum(-1), 1, r"vadd{t}"),
    **{name: (getattr(graphc, name), 1, FMA) for name in ("exp", "log", "tanh", "sigmoid")},
}
CASES = [(name, dtype) for name in KERNELS for dtype in ("float32", "float64")]


@functools.cache
def kernel_ir(name: str, dtype: str) -> str:
    """The LLVM IR graphc generates for one kernel over (64, 4096) inputs (before LLVM's
    optimisation: the same text whatever the target)."""
    fn, arity, _ = KERNELS[name]
    rng = np.random.default_rng(0)
    xs = [graphc.from_numpy(rng.uniform(0.5, 2.0, (64, 4096)).astype(dtype)) for _ in range(arity)]
    return compile_graph(graphc.trace(fn, *xs), *xs, dump=True).dump("llvm")


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh Python with these GRAPHC_* variables (and no others of the target)."""
    base = {k: v for k, v in os.environ.items() if k not in (T.CPU_VAR, T.FEATURES_VAR, T.WIDTH_VAR)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**base, "GRAPHC_CACHE": "0", "PYTHONPATH": str(ROOT), **env})


# ---- (a) the AVX2 path, on any x86-64 host -------------------------------------------------

AVX2 = T.describe("x86-64-v3")


@needs_x86
@pytest.mark.parametrize("name, dtype", CASES)
def test_avx2_code_of_each_kernel(name, dtype):
    optimized, asm = T.emit_assembly(kernel_ir(name, dtype), AVX2)
    assert AVX2.vector_bits() == 256 and lanes(np.float32, AVX2) == 8
    assert max(vector_lanes(optimized, dtype), default=0) >= lanes(dtype, AVX2)
    assert packed(asm, KERNELS[name][2], dtype, 256), f"{name}: no packed instruction on ymm"
    assert "%zmm" not in asm


RUN_KERNELS = """
import numpy as np, graphc
from graphc.compiler import compile_graph
from graphc.codegen.target import current
print(current().summary())
rng = np.random.default_rng(1)
for dtype in ("float32", "float64"):
    x = graphc.from_numpy(rng.uniform(-3, 3, (64, 1000)).astype(dtype))
    y = graphc.from_numpy(rng.uniform(-3, 3, (64, 1000)).astype(dtype))
    for fn in (lambda x, y: x * 1.5 + y, lambda x, y: (x * y).sum(-1), lambda x, y: graphc.exp(x) + y,
               lambda x, y: graphc.log(x.abs() + 0.5), lambda x, y: graphc.tanh(x) * graphc.sigmoid(y)):
        cg = compile_graph(graphc.trace(fn, x, y), x, y, dump=True)
        got, want = cg(x, y).numpy(), fn(x, y).numpy()
        eps = 64 * np.finfo(dtype).eps  # a few ulps; the sum's order differs from numpy's
        np.testing.assert_allclose(got, want, rtol=eps, atol=eps * np.abs(want).max())
print("ymm" if "%ymm" in cg.dump("asm") else "no ymm", "zmm" if "%zmm" in cg.dump("asm") else "no zmm")
print("values match eager")
"""


@pytest.mark.skipif(not (X86 and HOST.get("avx2") and HOST.get("fma")),
                    reason="runs AVX2 + FMA code: needs an x86-64 CPU that has both")
def test_avx2_code_gives_eagers_values():
    r = run(RUN_KERNELS, GRAPHC_CPU="x86-64-v3")
    assert r.returncode == 0, r.stderr
    summary, registers, verdict = r.stdout.splitlines()
    assert "cpu x86-64-v3 (GRAPHC_CPU)" in summary and "avx2 fma" in summary
    assert (registers, verdict) == ("ymm no zmm", "values match eager")


# ---- (b) the host's own target ---------------------------------------------------------------

def test_the_hosts_own_target():
    host = T.describe()
    assert (host.triple, host.cpu) == (llvm.get_process_triple(), llvm.get_host_cpu_name())
    assert host.missing_here() == []
    host.check_runs_here()
    bits = host.vector_bits()
    if X86:  # what LLVM may choose, from the host's features
        assert bits in ((256, 512) if HOST.get("avx512f") else (256,) if HOST.get("avx") else (128,))
    else:
        assert bits >= 128
    if not any(v for k, v in os.environ.items() if k in (T.CPU_VAR, T.FEATURES_VAR, T.WIDTH_VAR)):
        assert T.current() == host
        assert host.vector_width == ("512" if host.has("avx512f") else "host")


@pytest.mark.parametrize("name, dtype", [("mul_add", "float32"), ("sum", "float64"), ("exp", "float32")])
def test_the_hosts_code_of_a_kernel(name, dtype):
    host = T.describe()
    optimized, asm = T.emit_assembly(kernel_ir(name, dtype), host)
    assert max(vector_lanes(optimized, dtype), default=0) >= lanes(dtype, host) > 1
    if X86 and (name != "exp" or host.has("fma")):
        assert packed(asm, KERNELS[name][2].replace("vmul", "v?mul"), dtype, host.vector_bits())


# ---- (c) AVX-512, read on any x86-64 host ----------------------------------------------------

@needs_x86
@pytest.mark.parametrize("width", ["512", "256"])
@pytest.mark.parametrize("name, dtype", CASES)
def test_avx512_code_at_each_vector_width(name, dtype, width):
    t = T.describe("skylake-avx512", vector_width=width)
    bits = int(width)
    assert t.vector_bits() == bits
    optimized, asm = T.emit_assembly(kernel_ir(name, dtype), t)
    assert f'"prefer-vector-width"="{width}"' in optimized
    assert max(vector_lanes(optimized, dtype), default=0) >= lanes(dtype, t) == bits // (
        8 * np.dtype(dtype).itemsize)
    assert packed(asm, KERNELS[name][2], dtype, bits), f"{name}: no packed instruction on {bits} bits"
    if bits == 256:
        assert "%zmm" not in asm


@needs_x86
@pytest.mark.parametrize("cpu, width, bits", [("skylake-avx512", "512", 512), ("znver4", "512", 512),
                                             ("sapphirerapids", "512", 512),
                                             ("haswell", "host", 256), ("x86-64-v3", "host", 256)])
def test_the_default_vector_width_is_512_bits_with_avx512(cpu, width, bits):
    """Measured (benchmarks/vector_width.py, Sapphire Rapids): 512 bits are faster for
    graphc's kernels where LLVM's Intel tuning would pick 256; elsewhere LLVM chooses."""
    t = T.describe(cpu)
    assert (t.vector_width, t.vector_bits()) == (width, bits)
    optimized, asm = T.emit_assembly(kernel_ir("exp", "float32"), t)
    assert packed(asm, KERNELS["exp"][2], np.float32, bits)
    assert ("%zmm" in asm) == (bits == 512)


@needs_x86
@pytest.mark.parametrize("name", ["mul_add", "exp"])
def test_znver4_keeps_to_ymm_at_256_bits(name):
    """LLVM's own choice for znver4 is 512-bit vectors (what the AVX-512 host of issue 16 got);
    GRAPHC_VECTOR_WIDTH=256 must hold there too."""
    wide, narrow = (T.describe("znver4", vector_width=w) for w in ("512", "256"))
    assert (wide.vector_bits(), narrow.vector_bits()) == (512, 256)
    _, asm = T.emit_assembly(kernel_ir(name, "float32"), narrow)
    assert packed(asm, KERNELS[name][2], np.float32, 256) and "%zmm" not in asm
    _, asm = T.emit_assembly(kernel_ir(name, "float32"), wide)
    assert packed(asm, KERNELS[name][2], np.float32, 512)


# ---- (d) a target this CPU cannot run is refused, (e) names LLVM does not know -------------

REFUSED = """
import graphc
from graphc.compiler import compile_graph
x = graphc.randn(64)
try:
    compile_graph(graphc.trace(lambda x: x.exp() * 2, x), x)(x)
except Exception as e:
    raise SystemExit(f"{type(e).__name__}: {e}")
print("ran")
"""


def _lacking(*features: str) -> list[str]:
    return [f for f in features if not HOST.get(f)]


@needs_x86
@pytest.mark.parametrize("env", [{"GRAPHC_CPU": "skylake-avx512"}, {"GRAPHC_CPU": "znver4"},
                                 {"GRAPHC_CPU_FEATURES": "+avx512f"},
                                 {"GRAPHC_CPU_FEATURES": "+avx512fp16"}], ids=str)
def test_a_target_this_cpu_cannot_run_is_refused(env):
    missing = T.from_environment(env).missing_here()
    if not missing:
        pytest.skip(f"this CPU can run code for {env}")
    r = run(REFUSED, **env)
    assert r.returncode == 1, (r.returncode, r.stderr)  # an error, not SIGILL (-4)
    message = r.stderr.strip().splitlines()[-1]
    assert message.startswith("TargetError: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    assert all(f in message for f in missing) and "SIGILL" in message
    # the way out the message names works
    fix = re.search(r"GRAPHC_CPU_FEATURES=(-\S+?)\.? ", message).group(1)
    features = ",".join(filter(None, (env.get("GRAPHC_CPU_FEATURES"), fix)))
    r = run(REFUSED, **{**env, "GRAPHC_CPU_FEATURES": features})
    assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr


def test_reading_code_for_a_cpu_this_one_lacks_is_fine():
    t = T.describe("znver4") if X86 else T.describe(triple="x86_64-unknown-linux-gnu", cpu="znver4")
    if X86 and _lacking("avx512f"):
        assert "avx512f" in t.missing_here()
        with pytest.raises(T.TargetError, match="avx512f.*SIGILL"):
            t.check_runs_here()
    _, asm = T.emit_assembly(kernel_ir("exp", "float32"), t)
    assert "%zmm" in asm


@pytest.mark.parametrize("env, message", [
    ({"GRAPHC_CPU": "nosuchcpu"}, "GRAPHC_CPU=nosuchcpu: LLVM \\d+ knows no processor 'nosuchcpu'"),
    ({"GRAPHC_CPU_FEATURES": "+nosuchfeature"},
     "GRAPHC_CPU_FEATURES=\\+nosuchfeature: LLVM \\d+ knows no feature '\\+nosuchfeature'"),
    ({"GRAPHC_CPU_FEATURES": "avx2"}, "GRAPHC_CPU_FEATURES must be comma-separated \\+feature "
                                      "or -feature items .* got 'avx2'"),
    ({"GRAPHC_VECTOR_WIDTH": "384"}, "GRAPHC_VECTOR_WIDTH must be one of 256, 512, host, got '384'"),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_values_llvm_does_not_know_are_errors(env, message):
    with pytest.raises(T.TargetError, match=message):
        T.from_environment(env).machine()  # what current() does once per process


def test_an_unknown_cpu_stops_a_compile_with_its_name():
    r = run(REFUSED, GRAPHC_CPU="nosuchcpu")
    assert r.returncode == 1, r.stderr  # LLVM alone warns, then fails or emits garbage
    assert r.stderr.strip().splitlines()[-1].startswith(
        "TargetError: GRAPHC_CPU=nosuchcpu: LLVM ") and "knows no processor 'nosuchcpu'" in r.stderr


# ---- (f) the cache key follows the target ----------------------------------------------------

KEY = "from graphc.codegen.cache import cache_key; print(cache_key('the same program'))"


@needs_x86
def test_the_cache_key_differs_with_the_target():
    keys = {str(env): run(KEY, **env).stdout for env in (
        {}, {"GRAPHC_CPU": "x86-64-v3"}, {"GRAPHC_CPU": "haswell"},
        {"GRAPHC_CPU": "haswell", "GRAPHC_VECTOR_WIDTH": "512"})}
    assert all(len(k) == 65 for k in keys.values()), keys
    assert len(set(keys.values())) == len(keys), keys
    assert run(KEY, GRAPHC_CPU="haswell").stdout == keys[str({"GRAPHC_CPU": "haswell"})]


def test_host_description_is_the_target_in_use():
    from graphc.codegen import host_description
    assert host_description() == {**T.current().as_dict(),
                                  "llvm": ".".join(map(str, llvm.llvm_version_info))}


# ---- other architectures: the package's code for AArch64 -----------------------------------

@functools.cache
def aarch64() -> T.Target:
    t = T.describe("generic", triple="aarch64-unknown-linux-gnu")  # NEON, on any host
    try:
        t.machine()
    except RuntimeError as e:
        pytest.skip(f"llvmlite's LLVM has no AArch64 target: {e}")
    return t


@pytest.mark.parametrize("name, dtype", [("mul_add", "float32"), ("sum", "float32"),
                                         ("exp", "float32"), ("tanh", "float64"),
                                         ("sigmoid", "float32")])
def test_aarch64_code_of_generated_kernels(name, dtype):
    t = aarch64()
    optimized, asm = T.emit_assembly(kernel_ir(name, dtype), t)
    assert t.vector_bits() == 128
    assert 'target triple = "aarch64' in optimized
    assert max(vector_lanes(optimized, dtype), default=0) >= lanes(dtype, t) == 16 // np.dtype(dtype).itemsize
    arrangement = "4s" if dtype == "float32" else "2d"  # NEON: v0.4s holds 4 floats
    assert re.search(rf"^\s*f(?:mla|mls|mul|add)\s+v\d+\.{arrangement}", asm, re.M), asm[:2000]


# ---- explain() and the function attribute ---------------------------------------------------

def test_explain_names_the_target():
    e = graphc.explain(lambda x: graphc.exp(x) * 2, graphc.randn(64))
    lines = [line for line in str(e).splitlines() if line.startswith("target: ")]
    assert lines == [f"target: {T.current().summary()}"] and e.as_dict()["target"] == e.target
    assert f"cpu {T.current().cpu}" in e.target and re.search(r"\d+-bit vectors", e.target)
    if not any(os.environ.get(k) for k in (T.CPU_VAR, T.FEATURES_VAR, T.WIDTH_VAR)):
        assert "(this host)" in e.target and "GRAPHC_" not in e.target
    if X86 and HOST.get("avx2") and T.current() == T.describe():
        assert " avx2 " in e.target


EXPLAIN = """
import graphc
e = graphc.explain(lambda x: graphc.exp(x) * 2, graphc.randn(4096))
print(e.target)
from graphc.compiler import compile_graph
x = graphc.randn(4096)
print(compile_graph(graphc.trace(lambda x: x * 3, x), x, dump=True).dump("llvm_opt"))
"""


@pytest.mark.skipif(not (X86 and HOST.get("avx2")), reason="runs AVX2 code")
def test_explain_says_what_came_from_the_variables():
    r = run(EXPLAIN, GRAPHC_CPU="x86-64-v3", GRAPHC_CPU_FEATURES="-fma", GRAPHC_VECTOR_WIDTH="256")
    assert r.returncode == 0, r.stderr
    line, _, optimized = r.stdout.partition("\n")
    assert line == ("x86_64-unknown-linux-gnu, cpu x86-64-v3 (GRAPHC_CPU), sse4.2 avx avx2 "
                    "(GRAPHC_CPU_FEATURES=-fma), 256-bit vectors (GRAPHC_VECTOR_WIDTH=256)"), line
    assert '"prefer-vector-width"="256"' in optimized  # on the functions the JIT compiled


def test_function_attributes_follow_the_parameter_list():
    text = ('define void @"a(b"(i8* %".1", void (i32)* %".2") nounwind\n{\n  ret void\n}\n'
            'declare float @"llvm.fma.f32"(float %".1", float %".2", float %".3")\n'
            'define internal i32 @f() #0 {\n  ret i32 0\n}\n')
    got = T.with_function_attributes(text, '"prefer-vector-width"="512"')
    assert got.splitlines()[0] == ('define void @"a(b"(i8* %".1", void (i32)* %".2") '
                                   '"prefer-vector-width"="512" nounwind')
    assert 'define internal i32 @f() "prefer-vector-width"="512" #0 {' in got
    assert got.count("prefer-vector-width") == 2  # not on the declaration
    assert T.with_function_attributes(text, "") == text
