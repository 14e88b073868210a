"""``fused=True`` for SGD, Adam and AdamW: each parameter group's update is one native program
call, bitwise equal to the eager update, with the same state (checkpoints load either way),
and one program while schedulers move lr, momentum and betas.

The reference is the eager optimizer (``fused=False``), itself compared with torch.optim in
``test_optim_torch.py``; ``test_fused_agrees_with_torch_fused`` runs only with torch.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import graphc
from graphc.ops.dispatch import DispatchMode, redispatch
from graphc.optim import SGD, Adam, AdamW
from graphc.compiler.compiled import _sharing_memory
from graphc.optim.lr_scheduler import ExponentialLR, OneCycleLR

CASES = [
    (SGD, {"lr": 0.1}),
    (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1}),
    (SGD, {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1.0, "maximize": True}),
    (SGD, {"lr": 0.05, "momentum": 1.0}),  # momentum 1: the eager step skips a multiply by 1
    (Adam, {}),
    (Adam, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    (Adam, {"lr": 0.01, "betas": (0.3, 0.9), "eps": 1e-3}),  # lerp weight > 0.5: its other formula
    (Adam, {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    (AdamW, {}),
    (AdamW, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
]
SHAPES = [(5, 3), (), (7,), (2, 3, 4)]
SCALES = [3.0, 0.1, 1.0, 1e-3, 2.0]  # AMSGrad's running maximum then differs from Adam's
DTYPES = [graphc.float32, graphc.float64]


def case_id(case) -> str:
    cls, options = case
    return cls.__name__ + "".join(f"-{k}={v}" for k, v in options.items())


def start_params(dtype, seed: int = 0) -> list[graphc.Tensor]:
    rng = np.random.default_rng(seed)
    return [graphc.tensor(rng.standard_normal(s), dtype=dtype).requires_grad_() for s in SHAPES]


def gradients(dtype, steps: int = len(SCALES), seed: int = 1) -> list[list[np.ndarray | None]]:
    """Per step, one array per parameter; the last parameter has none on steps 1 and 3."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(steps):
        grads = [np.asarray(SCALES[step % len(SCALES)] * rng.standard_normal(s), dtype.np) for s in SHAPES]
        if step in (1, 3):
            grads[-1] = None
        out.append(grads)
    return out


def set_grads(params, arrays) -> None:
    """Grads as the arrays say, some non-contiguous: the (5, 3) one is a transpose and the
    (7,) one takes every other element."""
    for p, a in zip(params, arrays):
        if a is None:
            p.grad = None
        elif a.shape == (5, 3):
            p.grad = graphc.from_numpy(np.ascontiguousarray(a.T)).t()
        elif a.shape == (7,):
            p.grad = graphc.from_numpy(np.repeat(a, 2))[::2]
        else:
            p.grad = graphc.from_numpy(a.copy())
    assert not params[0].grad.is_contiguous() and not params[2].grad.is_contiguous()


def train(opt, params, steps, scheduler=None) -> None:
    for arrays in steps:
        set_grads(params, arrays)
        opt.step()
        if scheduler is not None:
            scheduler.step()


def bits(t: graphc.Tensor) -> bytes:
    return np.ascontiguousarray(t.detach().numpy()).tobytes()


def assert_same(eager, fused, eager_params, fused_params) -> None:
    """Parameters and every state tensor, bit for bit, and the same state layout."""
    for i, (p, q) in enumerate(zip(eager_params, fused_params)):
        assert bits(p) == bits(q), f"parameter {i}: {p} != {q}"
        a, b = eager.state[p], fused.state[q]
        assert sorted(a) == sorted(b), f"parameter {i}: state {sorted(a)} != {sorted(b)}"
        for key in a:
            assert (a[key].dtype, tuple(a[key].shape)) == (b[key].dtype, tuple(b[key].shape)), key
            assert bits(a[key]) == bits(b[key]), f"parameter {i}: state[{key!r}] differs"


def assert_native(opt) -> None:
    for program in opt.fused_programs:
        assert program.entries and not program.eager_runs, program.eager_runs
        for entry in program.entries.values():
            assert not entry.spec.program.fallbacks, [f.reason for f in entry.spec.program.fallbacks]


# ---- the fused update is the eager update ----------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_update_is_the_eager_update_bit_for_bit(case, dtype):
    cls, options = case
    eager_params, fused_params = start_params(dtype), start_params(dtype)
    eager, fused = cls(eager_params, **options), cls(fused_params, fused=True, **options)
    steps = gradients(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no eager run of the compiled update, no warning
        train(eager, eager_params, steps)
        train(fused, fused_params, steps)
    assert_same(eager, fused, eager_params, fused_params)
    assert bits(eager_params[0]) != bits(start_params(dtype)[0])  # the steps moved it
    # the parameter without a grad on steps 1 and 3 was skipped: that list has its own program
    assert len(fused.fused_programs) == 1 and len(fused.fused_programs[0].entries) == 2
    assert_native(fused)


def test_one_group_fused_and_one_eager():
    a, b = start_params(graphc.float32), start_params(graphc.float32)
    groups = lambda ps: [{"params": ps[:2], "fused": True}, {"params": ps[2:], "lr": 0.5}]
    eager, mixed = Adam([{"params": a[:2]}, {"params": a[2:], "lr": 0.5}]), Adam(groups(b))
    steps = gradients(graphc.float32)
    train(eager, a, steps)
    train(mixed, b, steps)
    assert_same(eager, mixed, a, b)
    assert [g["fused"] for g in mixed.param_groups] == [True, None]
    assert len(mixed.fused_programs) == 1  # group 1 never compiled
    assert_native(mixed)


# ---- one program, one native call -------------------------------------------------------

SCHEDULED = [(SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
             (Adam, {"lr": 0.01, "weight_decay": 0.1}), (AdamW, {"lr": 0.01, "amsgrad": True})]


@pytest.mark.parametrize("case", SCHEDULED, ids=case_id)
@pytest.mark.parametrize("make_scheduler", [
    lambda opt: ExponentialLR(opt, gamma=0.7),
    lambda opt: OneCycleLR(opt, max_lr=0.2, total_steps=8),  # lr and momentum (or beta1)
], ids=["ExponentialLR", "OneCycleLR"])
def test_one_program_while_a_scheduler_moves_the_numbers(case, make_scheduler):
    cls, options = case
    eager_params, fused_params = start_params(graphc.float32), start_params(graphc.float32)
    eager, fused = cls(eager_params, **options), cls(fused_params, fused=True, **options)
    eager_schedule, fused_schedule = make_scheduler(eager), make_scheduler(fused)
    steps = [[a if a is not None else np.ones(SHAPES[-1], np.float32) for a in arrays]
             for arrays in gradients(graphc.float32)]  # every parameter has a grad
    lrs = []
    for arrays in steps:
        lrs.append(fused.param_groups[0]["lr"])
        train(eager, eager_params, [arrays], eager_schedule)
        train(fused, fused_params, [arrays], fused_schedule)
    assert len(set(lrs)) == len(steps)  # a new lr every step
    program = fused.fused_programs[0]
    assert len(program.entries) == 1 and not program.recompiles
    assert_same(eager, fused, eager_params, fused_params)
    assert_native(fused)


class _CountOps(DispatchMode):
    def __init__(self):
        self.ops: list[str] = []

    def handle(self, op, inputs, attrs):
        self.ops.append(op.name)
        return redispatch(op, inputs, attrs)


@pytest.mark.parametrize("case", SCHEDULED, ids=case_id)
def test_a_step_is_one_native_call_per_group_and_no_eager_op(case, monkeypatch):
    cls, options = case
    params = start_params(graphc.float64)
    opt = cls([{"params": params[:3]}, {"params": params[3:]}], fused=True, **options)
    set_grads(params, gradients(graphc.float64)[0])
    opt.step()  # compiles both groups' programs (and makes the state: eager ops)
    runs = []
    for program in opt.fused_programs:
        (entry,) = program.entries.values()
        run = entry.spec.run
        monkeypatch.setattr(entry.spec, "run", lambda tensors, run=run: runs.append(1) or run(tensors))
    opt.param_groups[0]["lr"] /= 2  # a new lr: a new 0-d tensor, the same program
    with _CountOps() as counted:
        opt.step()
    assert counted.ops == [] and len(runs) == 2


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_step_writes_parameters_and_state_in_place_without_copies(case):
    """The update kernel stores each parameter and state tensor straight into its memory
    (several outputs of one kernel, each over its own argument): no copy kernel after it."""
    cls, options = case
    params = start_params(graphc.float32)
    opt = cls(params, fused=True, **options)
    for grads in gradients(graphc.float32)[:3]:  # the first step makes the state (eagerly)
        set_grads(params, grads)
        opt.step()
    (program,) = opt.fused_programs
    kinds = [k.kind for entry in program.entries.values()
             for _, k in entry.spec.program.kernels]
    assert kinds and "copy" not in kinds, kinds


# ---- state dicts ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", [CASES[2], CASES[5], CASES[9]], ids=case_id)
def test_checkpoints_load_across_fused_and_eager(case):
    cls, options = case
    dtype = graphc.float32
    steps = gradients(dtype, steps=6)
    eager_params, fused_params = start_params(dtype), start_params(dtype)
    eager, fused = cls(eager_params, **options), cls(fused_params, fused=True, **options)
    train(eager, eager_params, steps[:3])
    train(fused, fused_params, steps[:3])
    saved_eager, saved_fused = eager.state_dict(), fused.state_dict()
    assert [{k: v for k, v in g.items() if k != "fused"} for g in saved_eager["param_groups"]] == \
        [{k: v for k, v in g.items() if k != "fused"} for g in saved_fused["param_groups"]]
    assert saved_fused["param_groups"][0]["fused"] is True  # saved, as PyTorch saves it

    # a checkpoint without the flag: the loading optimizer keeps its own way of stepping
    for saved in (saved_eager, saved_fused):
        for group in saved["param_groups"]:
            del group["fused"]
    eager_from_fused_params = [p.detach().clone().requires_grad_() for p in fused_params]
    fused_from_eager_params = [p.detach().clone().requires_grad_() for p in eager_params]
    eager_from_fused = cls(eager_from_fused_params, lr=0.7, **{k: v for k, v in options.items() if k != "lr"})
    fused_from_eager = cls(fused_from_eager_params, fused=True, **options)
    eager_from_fused.load_state_dict(saved_fused)
    fused_from_eager.load_state_dict(saved_eager)
    assert eager_from_fused.param_groups[0]["lr"] == options.get("lr", 1e-3)
    assert not eager_from_fused.param_groups[0]["fused"] and fused_from_eager.param_groups[0]["fused"]

    runs = [(eager, eager_params), (fused, fused_params), (eager_from_fused, eager_from_fused_params),
            (fused_from_eager, fused_from_eager_params)]
    for opt, params in runs:
        train(opt, params, steps[3:])
    for opt, params in runs[1:]:
        assert_same(eager, opt, eager_params, params)
    assert not eager_from_fused.fused_programs
    assert_native(fused_from_eager)


def test_a_saved_fused_flag_is_loaded_as_pytorch_loads_it():
    p, q = start_params(graphc.float64)[:1], start_params(graphc.float64)[:1]
    p[0].grad = graphc.ones(5, 3, dtype=graphc.float64)
    fused = Adam(p, fused=True)
    fused.step()
    eager = Adam(q)
    eager.load_state_dict(fused.state_dict())  # saved options win, "fused" among them
    assert eager.param_groups[0]["fused"] is True


# ---- grad mode, aliasing ---------------------------------------------------------------------

def _fit_with_closure(cls, fused: bool):
    """Four steps with a closure, in grad mode: (losses, w's bits, b's bits, the optimizer)."""
    rng = np.random.default_rng(3)
    x = graphc.tensor(rng.standard_normal((8, 4)), dtype=graphc.float32)
    y = graphc.tensor(rng.standard_normal(8), dtype=graphc.float32)
    w = graphc.full((4,), 0.5).requires_grad_()
    b = graphc.zeros(()).requires_grad_()
    opt = cls([w, b], lr=0.05, fused=fused)

    def closure():
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        return loss

    assert graphc.is_grad_enabled()
    losses = [opt.step(closure).item() for _ in range(4)]
    assert w.is_leaf and w.grad_fn is None and w.requires_grad and b.grad_fn is None
    return losses, bits(w), bits(b), opt


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW], ids=lambda c: c.__name__)
def test_a_step_in_grad_mode_updates_under_no_grad(cls):
    *eager, _ = _fit_with_closure(cls, fused=False)
    *fused, opt = _fit_with_closure(cls, fused=True)
    assert eager == fused and fused[0][-1] < fused[0][0]
    assert_native(opt)


def test_a_grad_sharing_its_parameters_memory_runs_eagerly_with_the_reason():
    results = []
    for fused in (False, True):
        p = graphc.tensor([1.0, -2.0, 3.0]).requires_grad_()
        opt = SGD([p], lr=0.1, momentum=0.9, fused=fused)
        for step in range(2):
            p.grad = p.detach()  # reads what the update writes
            if fused and step == 0:
                with pytest.warns(UserWarning, match="shares memory"):  # (warned once)
                    opt.step()
            else:
                opt.step()
        results.append(bits(p))
    assert results[0] == results[1]
    assert "shares memory" in opt.fused_programs[0].eager_runs[-1].reason


def _view(base, offset, shape, stride):
    return graphc.as_strided(base, shape, stride, offset)


def _written_overlap(tensors, written):
    return _sharing_memory(tensors, written, ()) is not None


def test_written_overlap_compares_byte_ranges():
    """The compiled call's check that no written argument shares memory with another (one
    sweep over sorted byte ranges: an optimizer's update has a hundred arguments)."""
    base = graphc.zeros(20)
    a, b = _view(base, 0, (5,), (1,)), _view(base, 5, (5,), (1,))
    evens, odds = _view(base, 10, (5,), (2,)), _view(base, 11, (4,), (2,))
    scalar = graphc.tensor(1.0)
    assert not _written_overlap([a, b], [0, 1])  # neighbours
    assert not _written_overlap([a, scalar, scalar, b], [0, 3])  # a 0-d read twice is fine
    assert _written_overlap([a, a], [0])  # written and read
    assert _written_overlap([a, _view(base, 4, (3,), (1,))], [1])  # one element in common
    assert _written_overlap([evens, odds], [0])  # interleaved ranges count as overlapping
    assert not _written_overlap([a, graphc.zeros(0), b], [1])
    assert _written_overlap([_view(base, 9, (3,), (-1,)), _view(base, 7, (1,), (1,))], [0])
    assert _sharing_memory([a, b, _view(base, 2, (2,), (1,))], (1, 2), ()) == (2, 0)


# ---- what fused=True refuses ------------------------------------------------------------------

P32 = graphc.zeros(3).requires_grad_()

REFUSED = [
    (lambda: SGD([P32], fused=True, differentiable=True),
     "SGD: fused=True does not support differentiable=True"),
    (lambda: Adam([P32], fused=True, foreach=True), "Adam: fused=True does not support foreach=True"),
    (lambda: AdamW([graphc.zeros(3, dtype=graphc.float16).requires_grad_()], fused=True),
     "AdamW: fused=True compiles float32 and float64 updates, but parameter 0 of the group is float16"),
    (lambda: SGD([{"params": [P32, graphc.zeros(2, dtype=graphc.bfloat16).requires_grad_()],
                   "fused": True}]), "parameter 1 of the group is bfloat16"),
]


@pytest.mark.parametrize("make, match", REFUSED, ids=[m.split(": ")[-1][:40] for _, m in REFUSED])
def test_fused_refuses_what_it_cannot_do_and_names_it(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_without_fused_those_options_are_accepted():
    SGD([P32], differentiable=True)
    Adam([P32], foreach=True, capturable=True)
    AdamW([graphc.zeros(3, dtype=graphc.float16).requires_grad_()], fused=False)


def test_a_grad_in_another_dtype_is_refused_at_the_step():
    p = graphc.zeros(3).requires_grad_()
    p.grad = graphc.ones(3, dtype=graphc.float64)
    with pytest.raises(ValueError, match="dtype float32 has a grad of dtype float64"):
        Adam([p], fused=True).step()


# ---- against PyTorch's fused kernels (only with torch) -----------------------------------

@pytest.mark.parametrize("case", [CASES[2], CASES[5], CASES[9]], ids=case_id)
def test_fused_agrees_with_torch_fused(case):
    torch = pytest.importorskip("torch")
    cls, options = case
    ours = start_params(graphc.float32)
    theirs = [torch.from_numpy(p.detach().numpy().copy()).requires_grad_() for p in ours]
    opt = cls(ours, fused=True, **options)
    torch_opt = getattr(torch.optim, cls.__name__)(theirs, fused=True, **options)
    for arrays in gradients(graphc.float32):
        set_grads(ours, arrays)
        for t, a in zip(theirs, arrays):
            t.grad = None if a is None else torch.from_numpy(a.copy())
        opt.step()
        torch_opt.step()
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-5, atol=1e-6)
