"""Training workloads of the backend's benchmark: one step is forward, loss, backward,
optimizer step and zero_grad, timed for graphc eager, graphc compiled, torch eager and
torch.compile in one run.

    python3 benchmarks/run.py --training              # T1..T3 (and no inference workload)
    python3 benchmarks/run.py T2 T3 --steps 5 --no-torch
    python3 benchmarks/run.py W4 T1 --no-torch-compile

- T1: 3x(Linear 1024->1024 + ReLU) + Linear 1024->10, batch 256, cross-entropy, AdamW;
- T2: 2x(Conv 3x3 + BatchNorm + ReLU + MaxPool 2) + Linear head to 10 classes, batch 32
  of 3x32x32, cross-entropy, SGD with momentum 0.9;
- T3: TransformerEncoderLayer(256, 4 heads, feed-forward 1024, dropout 0, batch_first)
  + Linear head to 64 classes, 8x128 tokens, cross-entropy per token, AdamW.

Every column trains its own copy of the model from the same initial weights (graphc's
seeded ones, loaded into torch through the state dict) on the same fixed batch for the
same steps: one first step, ``warmup`` more, then ``steps`` timed ones, one column after
another (see ``run_steps``); the time is the median timed step. graphc runs
first, torch after it (its OpenMP threads keep spinning after a call and would slow what
runs next). The loss shown is each column's at the last timed step: graphc compiled
should equal graphc eager to rounding, torch should be close (float32 rounding, grown
over the steps).

- **compiled**: ``model = graphc.compile(model)`` and the optimizer with ``fused=True``,
  then the same step (the loss and the optimizer step stay outside the compiled model).
  A call that autograd records may still run eagerly; the reasons graphc recorded
  (``model.compiled.eager_runs``) are printed, and "ran compiled" counts the calls
  whose output carries the compiled program's autograd node (see ``CountedCalls``),
  over every call of the column, first and memory steps included.
  A compiled first step that raises is reported and the column left out.
- **step**: the whole step compiled (``@graphc.compile`` on a function of the batch that
  calls ``loss.backward()``, ``optimizer.step()`` with ``fused=True`` and ``zero_grad()``):
  its forward and backward programs in one call, then the optimizer (``graphc/compiler/
  step.py``); "step cold" is its first call minus its median one, measured as "cold".
- **cold**: the first compiled step minus the median warm one: capture, passes and LLVM
  for what the first call compiles, measured in this process with an empty disk cache
  (a temporary ``GRAPHC_CACHE_DIR``) after a trivial graph has absorbed the process's
  one-time LLVM start-up. torch.compile's is the same difference for its column, with
  an empty ``TORCHINDUCTOR_CACHE_DIR``, after a trivial function compiled with
  torch.compile (forward and backward) has absorbed its start-up.
- **peak**: tracemalloc's peak during one step above what was allocated before it
  (numpy registers its buffers with tracemalloc; weights, optimizer state and the
  previous loss are held before). Buffers a compiled program allocated when it was
  compiled and holds between calls are therefore not in it (graphc exposes no size of
  a training program's workspace). torch allocates outside tracemalloc: not measured.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc.compiler.benchmark import peak_bytes  # noqa: E402
from table import fmt_time, print_table  # noqa: E402

LOSS_RTOL = 1e-3  # compiled against eager graphc, after the same steps


@dataclass
class TrainingWorkload:
    """A model built the same way with graphc or torch (``lib``), its optimizer and loss,
    one fixed batch, and the initial weights every column starts from."""

    name: str
    title: str
    model: Callable      # lib -> lib.nn.Module; its state_dict keys do not depend on lib
    optimizer: Callable  # (lib, parameters) -> optimizer
    loss: Callable       # (lib, model output, target) -> scalar loss
    x: np.ndarray
    target: np.ndarray   # int64 class indices
    state: dict | None = None  # name -> numpy array: graphc's seeded initial weights

    def graphc_model(self):
        model = self.model(graphc)
        model.load_state_dict({k: graphc.from_numpy(v.copy()) for k, v in self.state.items()})
        return model

    def torch_model(self, torch):
        model = self.model(torch)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.state.items()})
        return model


# ---- the models, written once for both libraries ------------------------------------------
def mlp(width: int, classes: int):
    def make(lib):
        nn, layers = lib.nn, []
        for _ in range(3):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(width, classes))
    return make


def cnn(channels: tuple[int, int], side: int, classes: int):
    def make(lib):
        nn, layers, c_in = lib.nn, [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * (side // 4) ** 2, classes))
    return make


def encoder(width: int, heads: int, classes: int):
    def make(lib):
        nn = lib.nn
        return nn.Sequential(nn.TransformerEncoderLayer(width, heads, dim_feedforward=4 * width,
                                                        dropout=0.0, batch_first=True),
                             nn.Linear(width, classes))
    return make


# learning rates small enough that a dozen steps on one fixed batch keep the losses far
# from zero, where comparing them would say little
def adamw(lib, params, fused=None):
    return lib.optim.AdamW(params, lr=1e-4, weight_decay=1e-2, fused=fused)


def sgd_momentum(lib, params, fused=None):
    return lib.optim.SGD(params, lr=1e-3, momentum=0.9, fused=fused)


def cross_entropy(lib, out, target):
    return lib.nn.functional.cross_entropy(out, target)


def token_cross_entropy(lib, out, target):
    return lib.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


def build_training(names=None, small: bool = False) -> list[TrainingWorkload]:
    """The training workloads named (all by default); ``small``: tiny sizes, for tests."""
    rng = np.random.default_rng(0)
    want = lambda n: names is None or n in names
    out = []
    if want("T1"):
        width, batch = (32, 8) if small else (1024, 256)
        out.append(TrainingWorkload(
            "T1", f"3x(Linear {width}->{width} + ReLU) + Linear {width}->10, batch {batch}, AdamW",
            mlp(width, 10), adamw, cross_entropy,
            rng.standard_normal((batch, width), dtype=np.float32), rng.integers(0, 10, batch)))
    if want("T2"):
        channels, side, batch = ((4, 8), 8, 4) if small else ((16, 32), 32, 32)
        out.append(TrainingWorkload(
            "T2", f"2x(Conv3x3 + BN + ReLU + MaxPool) + Linear, batch {batch}x3x{side}x{side}, SGD",
            cnn(channels, side, 10), sgd_momentum, cross_entropy,
            rng.standard_normal((batch, 3, side, side), dtype=np.float32),
            rng.integers(0, 10, batch)))
    if want("T3"):
        width, heads, batch, tokens = (32, 2, 2, 8) if small else (256, 4, 8, 128)
        out.append(TrainingWorkload(
            "T3", f"TransformerEncoderLayer({width}, {heads} heads) + Linear, {batch}x{tokens} "
                  "tokens, AdamW",
            encoder(width, heads, 64), adamw, token_cross_entropy,
            rng.standard_normal((batch, tokens, width), dtype=np.float32),
            rng.integers(0, 64, (batch, tokens))))
    for w in out:
        graphc.manual_seed(0)
        w.state = {k: v.numpy().copy() for k, v in w.model(graphc).state_dict().items()}
    return out


# ---- one column: a model training --------------------------------------------------------
def training_step(lib, model, optimizer, loss, x, target) -> Callable:
    """One step on this batch, the way a training loop writes it; returns the loss tensor."""
    step = step_function(lib, model, optimizer, loss)
    return lambda: step(x, target)


def step_function(lib, model, optimizer, loss) -> Callable:
    """The training step as a function of the batch (what ``@graphc.compile`` compiles
    whole in the "step" column)."""
    def step(x, target):
        value = loss(lib, model(x), target)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        return value
    return step


COMPILED_NODE = "CompiledFunctionBackward"  # graphc.compiler.training's autograd node


class CountedCalls:
    """A graphc compiled model, counting its calls that ran compiled.

    graphc keeps no such count: ``eager_runs`` records a reason once per run of equal
    reasons, and a signature known to run eagerly runs so without a new record. A call
    that autograd records ran compiled when its output carries the compiled program's
    autograd node (``grad_fn.name()``), and eagerly when it carries an eager op's."""

    def __init__(self, compiled):
        self.compiled = compiled
        self.calls = self.ran_compiled = 0

    def __call__(self, *args):
        out = self.compiled(*args)
        self.calls += 1
        node = getattr(out, "grad_fn", None)
        if node is not None and node.name() == COMPILED_NODE:
            self.ran_compiled += 1
        return out


def first_step(step: Callable) -> float:
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def run_steps(steps: dict[str, Callable], warmup: int, timed: int) -> dict:
    """After each column's first step, column by column: ``warmup`` more steps, then
    ``timed`` timed ones; per column the median timed step and the loss of the last one.
    A training loop runs one kind of step: interleaved step by step, the eager column's
    OpenBLAS threads, still spinning after its matmuls, slowed the compiled step after it
    (T2's whole step: 33 ms interleaved, 12 ms in a loop of its own)."""
    times = {name: [] for name in steps}
    losses = {}
    for name, step in steps.items():
        for _ in range(warmup):
            step()
        for _ in range(timed):
            t0 = time.perf_counter()
            losses[name] = step()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median": statistics.median(times[name]), "loss": losses[name].item()}
            for name in steps}


@contextlib.contextmanager
def empty_cache_dir(variable: str):
    """The environment variable naming a compiler's disk cache set to a new empty
    directory while the block runs (then removed, and the variable restored)."""
    saved = os.environ.get(variable)
    with tempfile.TemporaryDirectory() as cache:
        os.environ[variable] = cache
        try:
            yield cache
        finally:
            if saved is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = saved


def absorb_llvm_start_up() -> None:
    """Compile one trivial graph: LLVM's target and engine, libm, BLAS and the passes
    start once per process, and would otherwise count in the first workload's cold."""
    x = graphc.ones(3)
    with graphc.no_grad():
        graphc.compile(lambda x: x * (1.0 + time.time() % 1))(x)


def absorb_torch_compile_start_up(torch) -> None:
    """torch.compile's once-per-process start-up (imports, its C++ toolchain checks),
    through a trivial function's forward and backward."""
    x = torch.ones(3, requires_grad=True)
    with empty_cache_dir("TORCHINDUCTOR_CACHE_DIR"):
        try:
            torch.compile(lambda x: (x * 2.0).sum())(x).backward()
        except Exception:  # the torch.compile column will say why
            pass


def run_graphc(w: TrainingWorkload, warmup: int, timed: int) -> dict:
    """graphc eager and compiled, each training its own copy of the model. A compiled
    first step that raises leaves the compiled column out (``compiled_error``)."""
    eager_model, model = w.graphc_model(), w.graphc_model()
    compiled = graphc.compile(model)
    counted = CountedCalls(compiled)
    x, target = graphc.from_numpy(w.x), graphc.from_numpy(w.target)
    steps = {
        "eager": training_step(graphc, eager_model, w.optimizer(graphc, eager_model.parameters()),
                               w.loss, x, target),
        # (the step the README shows: a compiled model and a fused optimizer)
        "compiled": training_step(graphc, counted, w.optimizer(graphc, model.parameters(),
                                                               fused=True), w.loss, x, target),
    }
    # (the whole step compiled: forward, backward and the fused optimizer in one call)
    step_model = w.graphc_model()
    whole = graphc.compile(step_function(
        graphc, step_model, w.optimizer(graphc, step_model.parameters(), fused=True), w.loss))
    steps["step"] = lambda: whole(x, target)
    row = {"name": w.name, "title": w.title}
    first = {"eager": first_step(steps["eager"])}
    for col in ("compiled", "step"):
        with empty_cache_dir("GRAPHC_CACHE_DIR"):  # cold: nothing on disk
            try:
                first[col] = first_step(steps[col])
            except Exception as e:  # a bug of graphc's: shown, the other columns still run
                row[f"{col}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
                del steps[col]
    with empty_cache_dir("GRAPHC_CACHE_DIR"):
        res = run_steps(steps, warmup, timed)
    for col in steps:
        row[col] = res[col]["median"]
        row[f"{col}_loss"] = res[col]["loss"]
        row[f"{col}_peak_bytes"] = peak_bytes(steps[col])
    fn = compiled.compiled
    row["eager_runs"] = [str(r) for r in fn.eager_runs]
    row["recompiles"] = [str(r) for r in fn.recompiles]
    row["ran_compiled"], row["compiled_calls"] = counted.ran_compiled, counted.calls
    if "compiled" in steps:
        row["cold"] = first["compiled"] - row["compiled"]
        row["loss_matches"] = _close(row["compiled_loss"], row["eager_loss"])
    row["step_eager_runs"] = [str(r) for r in whole.eager_runs]
    if "step" in steps:
        row["step_cold"] = first["step"] - row["step"]
        row["step_loss_matches"] = _close(row["step_loss"], row["eager_loss"])
    return row



def run_torch(w: TrainingWorkload, row: dict, torch, warmup: int, timed: int,
              with_compile: bool = True) -> None:
    """torch eager and (when it works here) torch.compile, from the same weights."""
    x, target = torch.from_numpy(w.x), torch.from_numpy(w.target)

    def column(model):
        return training_step(torch, model, w.optimizer(torch, model.parameters()), w.loss, x, target)

    steps = {"torch": column(w.torch_model(torch))}
    first = {"torch": first_step(steps["torch"])}
    with empty_cache_dir("TORCHINDUCTOR_CACHE_DIR"):  # cold, as graphc's
        if with_compile:
            step = column(torch.compile(w.torch_model(torch)))
            try:  # no C++ compiler, an unsupported op, ...: the column is n/a
                first["torch.compile"] = first_step(step)
                steps["torch.compile"] = step
            except Exception as e:
                row["torch.compile_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
        for col, r in run_steps(steps, warmup, timed).items():
            row[col] = r["median"]
            row[f"{col}_loss"] = r["loss"]
    if "torch.compile" in steps:
        row["torch.compile_cold"] = first["torch.compile"] - row["torch.compile"]


def print_training(rows: list[dict], timed: int) -> None:
    """Two tables (time per step; memory, compiled calls and losses), then notes."""
    cols = [c for c in ("eager", "compiled", "step", "torch", "torch.compile")
            if any(r.get(c) is not None for r in rows)]
    names = {"eager": "graphc eager", "compiled": "graphc compiled", "step": "graphc step"}
    print(f"training: one step = forward + loss + backward + optimizer step + zero_grad; "
          f"median of {timed} steps (compiled: the model compiled; step: the whole step)")
    head = ["workload"] + [names.get(c, c) for c in cols] + ["eager/compiled", "eager/step"]
    if "torch" in cols:
        head += ["torch/compiled", "torch/step"]
    head += ["cold", "step cold"] + (["torch.compile cold"] if "torch.compile" in cols else [])
    table = []
    for r in rows:
        line = [r["name"]] + [fmt_time(r.get(c), "n/a") for c in cols]
        line += [_ratio(r["eager"], r.get("compiled")), _ratio(r["eager"], r.get("step"))]
        if "torch" in cols:
            line += [_ratio(r.get("torch"), r.get("compiled")), _ratio(r.get("torch"), r.get("step"))]
        line += [fmt_time(r.get("cold"), "n/a"), fmt_time(r.get("step_cold"), "n/a")]
        if "torch.compile" in cols:
            line.append(fmt_time(r.get("torch.compile_cold"), "n/a"))
        table.append(line)
    print_table(head, table)

    head = ["workload", "peak eager", "peak compiled", "peak step", "ran compiled"] + \
        [f"loss {names.get(c, c)}" for c in cols]
    table = []
    for r in rows:
        line = [r["name"], fmt_bytes(r["eager_peak_bytes"]), fmt_bytes(r.get("compiled_peak_bytes")),
                fmt_bytes(r.get("step_peak_bytes")), f"{r['ran_compiled']}/{r['compiled_calls']} calls"]
        losses = [_fmt_loss(r.get(f"{c}_loss")) for c in cols]
        for c, k in (("compiled", "loss_matches"), ("step", "step_loss_matches")):
            if r.get(k) is False:
                losses[cols.index(c)] += " DIFFERS"
        table.append(line + losses)
    print_table(head, table)
    for r in rows:
        for col in ("compiled", "step"):
            if r.get(f"{col}_error"):
                print(f"{r['name']}: the {col} column failed: {r[f'{col}_error']}")
        for run in r["eager_runs"]:
            print(f"{r['name']}: compiled call {run}")
        for run in r["step_eager_runs"]:
            print(f"{r['name']}: compiled step {run}")
        for rc in r["recompiles"]:
            print(f"{r['name']}: recompiled: {rc}")
        if r.get("torch.compile_error"):
            print(f"{r['name']}: torch.compile failed: {r['torch.compile_error']}")
    print("peak: tracemalloc's peak during a step above what was held before it (compiled "
          "programs' buffers held between calls not included)"
          + ("; torch's: n/a, its allocator is not traced" if "torch" in cols else ""))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def _fmt_loss(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= LOSS_RTOL * max(1.0, abs(b))
