"""graphc.optim.lr_scheduler: lr sequences equal to torch's (exactly, same float
arithmetic) for 50 steps, chaining, closed forms computed by hand, state dicts, warnings."""

from __future__ import annotations

import math
import warnings

import pytest

import graphc
from graphc.optim import lr_scheduler as G

STEPS = 50


def make_optimizer(lib, kind: str = "SGD"):
    """Two parameter groups with different lrs."""
    w, b = lib.zeros(2), lib.zeros(1)
    w.requires_grad_()
    b.requires_grad_()
    groups = [{"params": [w]}, {"params": [b], "lr": 0.05}]
    if kind == "SGD":
        return lib.optim.SGD(groups, lr=0.1, momentum=0.9)
    return lib.optim.Adam(groups, lr=0.1)


def momentum_of(group):
    return group["betas"] if "betas" in group else group.get("momentum")


def trajectory(lib, build, kind: str = "SGD", steps: int = STEPS, metric=None):
    opt = make_optimizer(lib, kind)
    sched = build(lib.optim.lr_scheduler, opt)
    out = [(tuple(sched.get_last_lr()), tuple(momentum_of(g) for g in opt.param_groups))]
    for i in range(steps):
        opt.step()
        sched.step(metric(i)) if metric else sched.step()
        lrs = tuple(sched.get_last_lr())
        assert lrs == tuple(g["lr"] for g in opt.param_groups)
        out.append((lrs, tuple(momentum_of(g) for g in opt.param_groups)))
    return out


SCHEDULES = {
    "StepLR": lambda L, o: L.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda L, o: L.MultiStepLR(o, milestones=[3, 10, 10, 30], gamma=0.3),
    "ExponentialLR": lambda L, o: L.ExponentialLR(o, gamma=0.93),
    "CosineAnnealingLR": lambda L, o: L.CosineAnnealingLR(o, T_max=12, eta_min=0.001),
    "LambdaLR": lambda L, o: L.LambdaLR(o, lr_lambda=lambda e: 1 / (e + 1)),
    "LambdaLR-per-group": lambda L, o: L.LambdaLR(o, [lambda e: 0.9 ** e, lambda e: e % 4 + 1]),
    "MultiplicativeLR": lambda L, o: L.MultiplicativeLR(o, lr_lambda=lambda e: 0.97),
    "LinearLR": lambda L, o: L.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=13),
    "ConstantLR": lambda L, o: L.ConstantLR(o, factor=0.4, total_iters=6),
    "PolynomialLR": lambda L, o: L.PolynomialLR(o, total_iters=20, power=2.0),
    "OneCycleLR-cos": lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=STEPS),
    "OneCycleLR-three-phase-linear": lambda L, o: L.OneCycleLR(
        o, max_lr=[1.0, 0.5], total_steps=60, three_phase=True, anneal_strategy="linear",
        pct_start=0.25, div_factor=10.0, final_div_factor=100.0),
    "OneCycleLR-no-momentum": lambda L, o: L.OneCycleLR(o, max_lr=0.3, epochs=5, steps_per_epoch=10,
                                                        cycle_momentum=False),
    "CosineAnnealingWarmRestarts": lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2,
                                                                              eta_min=0.01),
    "CyclicLR-triangular2": lambda L, o: L.CyclicLR(o, 0.01, 0.1, step_size_up=4, mode="triangular2"),
    "CyclicLR-exp_range": lambda L, o: L.CyclicLR(o, [0.01, 0.02], 0.1, step_size_up=3, step_size_down=5,
                                                  mode="exp_range", gamma=0.97),
    "SequentialLR": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=5), L.CosineAnnealingLR(o, T_max=20),
            L.ExponentialLR(o, gamma=0.9)], milestones=[5, 25]),
    "ChainedScheduler": lambda L, o: L.ChainedScheduler(
        [L.LinearLR(o, start_factor=0.1, total_iters=5), L.ExponentialLR(o, gamma=0.9),
         L.CosineAnnealingLR(o, T_max=10)]),
    "two-schedulers-stepped-by-hand": lambda L, o: _Both(L.StepLR(o, 4, 0.5), L.CosineAnnealingLR(o, 9)),
}


class _Both:
    """Two schedulers on one optimizer, stepped one after the other (their factors compose)."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def step(self):
        self.a.step()
        self.b.step()

    def get_last_lr(self):
        return self.b.get_last_lr()


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_lr_and_momentum_sequences_equal_torchs(name, kind):
    torch = pytest.importorskip("torch")
    build = SCHEDULES[name]
    assert trajectory(graphc, build, kind) == trajectory(torch, build, kind)


def test_reduce_lr_on_plateau_equals_torchs():
    torch = pytest.importorskip("torch")

    def metric(i):
        return [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8][i % 7] - i * 0.001

    for options in [dict(patience=2, factor=0.5, cooldown=1, min_lr=[0.001, 0.01]),
                    dict(mode="max", threshold_mode="abs", threshold=0.01, patience=1),
                    dict(patience=0, factor=0.9, eps=1e-3)]:
        def build(L, o, options=options):
            return L.ReduceLROnPlateau(o, **options)
        assert trajectory(graphc, build, metric=metric) == trajectory(torch, build, metric=metric)


def test_step_with_epoch_uses_the_closed_form_like_torch():
    torch = pytest.importorskip("torch")

    def run(lib):
        opt = make_optimizer(lib)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in [4, 9, 2, 10]:
                opt.step()
                sched.step(epoch)
                out.append(tuple(sched.get_last_lr()))
        return out
    assert run(graphc) == run(torch)


# ---- closed forms by hand (no torch) ---------------------------------------------------

def lrs_of(build, steps=STEPS):
    return [lrs[0] for lrs, _ in trajectory(graphc, build, steps=steps)]


def test_step_and_multistep_by_hand():
    got = lrs_of(lambda L, o: L.StepLR(o, step_size=7, gamma=0.5))
    assert got == pytest.approx([0.1 * 0.5 ** (e // 7) for e in range(STEPS + 1)], rel=1e-12)
    got = lrs_of(lambda L, o: L.MultiStepLR(o, milestones=[30, 3, 10, 10], gamma=0.3))
    want = [0.1 * 0.3 ** sum(m <= e for m in [3, 10, 10, 30]) for e in range(STEPS + 1)]
    assert got == pytest.approx(want, rel=1e-12)


def test_cosine_follows_the_closed_form_by_hand():
    got = lrs_of(lambda L, o: L.CosineAnnealingLR(o, T_max=12, eta_min=0.001))
    want = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 12)) / 2 for e in range(STEPS + 1)]
    assert got == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_linear_warmup_and_constant_by_hand():
    got = lrs_of(lambda L, o: L.LinearLR(o, start_factor=0.2, end_factor=0.9, total_iters=13))
    want = [0.1 * (0.2 + 0.7 * min(e, 13) / 13) for e in range(STEPS + 1)]
    assert got == pytest.approx(want, rel=1e-12)
    got = lrs_of(lambda L, o: L.ConstantLR(o, factor=0.4, total_iters=6))
    assert got == pytest.approx([0.04 if e < 6 else 0.1 for e in range(STEPS + 1)], rel=1e-12)


def test_one_cycle_by_hand():
    got = lrs_of(lambda L, o: L.OneCycleLR(o, max_lr=1.0, total_steps=STEPS), steps=STEPS - 1)
    up = 0.3 * STEPS - 1  # last step of the rising phase

    def cos_anneal(start, end, pct):
        return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))

    want = [cos_anneal(1 / 25, 1.0, s / up) if s <= up else
            cos_anneal(1.0, 1 / 25 / 1e4, (s - up) / (STEPS - 1 - up)) for s in range(STEPS)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[0] == pytest.approx(0.04) and got[-1] == pytest.approx(4e-6)


def test_warm_restarts_by_hand():
    got = lrs_of(lambda L, o: L.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=0.01))
    want = []
    for e in range(STEPS + 1):
        t, period = e, 5
        while t >= period:  # periods of 5, 10, 20, ...
            t, period = t - period, period * 2
        want.append(0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / period)) / 2)
    assert got == pytest.approx(want, rel=1e-12)


def test_sequential_switches_at_milestones_by_hand():
    got = lrs_of(lambda L, o: L.SequentialLR(o, [L.ConstantLR(o, factor=0.5, total_iters=100),
                                                 L.ExponentialLR(o, gamma=0.9)], milestones=[4]))
    want = [0.05] * 4 + [0.1 * 0.9 ** (e - 4) for e in range(4, STEPS + 1)]
    assert got == pytest.approx(want, rel=1e-12)


def test_chained_factors_multiply():
    got = lrs_of(lambda L, o: L.ChainedScheduler([L.ConstantLR(o, factor=0.5, total_iters=3),
                                                  L.ExponentialLR(o, gamma=0.9)]))
    want = [0.1 * (0.5 if e < 3 else 1.0) * 0.9 ** e for e in range(STEPS + 1)]
    assert got == pytest.approx(want, rel=1e-12)


def test_plateau_reduces_after_patience():
    opt = make_optimizer(graphc)
    sched = G.ReduceLROnPlateau(opt, patience=2, factor=0.5)
    lrs = []
    for metric in [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5]:
        sched.step(metric)
        lrs.append(sched.get_last_lr()[0])
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025])


# ---- the base class: state, resuming, warnings ------------------------------------------

@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "OneCycleLR-cos", "LambdaLR",
                                  "CyclicLR-exp_range", "SequentialLR", "ChainedScheduler"])
def test_state_dict_resumes_the_same_sequence(name):
    build = SCHEDULES[name]
    opt = make_optimizer(graphc)
    sched = build(G, opt)
    for _ in range(10):
        opt.step()
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in state
    rest = []
    for _ in range(20):
        opt.step()
        sched.step()
        rest.append(sched.get_last_lr())

    opt2 = make_optimizer(graphc)
    sched2 = build(G, opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    rest2 = []
    for _ in range(20):
        opt2.step()
        sched2.step()
        rest2.append(sched2.get_last_lr())
    assert rest2 == rest


def test_initial_lr_base_lrs_and_last_epoch():
    opt = make_optimizer(graphc)
    sched = G.ExponentialLR(opt, gamma=0.5)
    assert sched.last_epoch == 0 and sched.base_lrs == [0.1, 0.05]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.05]
    opt.step()
    sched.step()
    assert sched.last_epoch == 1 and sched.get_last_lr() == [0.05, 0.025]


def test_resuming_needs_initial_lr():
    opt = make_optimizer(graphc)
    with pytest.raises(KeyError, match="initial_lr"):
        G.StepLR(opt, step_size=2, last_epoch=5)


def test_warns_when_scheduler_steps_before_the_optimizer():
    opt = make_optimizer(graphc)
    sched = G.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"lr_scheduler.step\(\)` before `optimizer.step\(\)"):
        sched.step()
    opt = make_optimizer(graphc)
    sched = G.StepLR(opt, step_size=2)
    opt.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()
        with pytest.warns(UserWarning, match="get_last_lr"):
            sched.get_lr()


def test_bad_arguments():
    opt = make_optimizer(graphc)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        G.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="total_steps OR"):
        G.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="same length as optimizer.param_groups"):
        G.OneCycleLR(opt, max_lr=[1.0], total_steps=10)
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        sched = G.OneCycleLR(make_optimizer(graphc), max_lr=1.0, total_steps=10)
        for _ in range(11):
            sched.optimizer.step()
            sched.step()
    with pytest.raises(ValueError, match="Expected positive integer T_0"):
        G.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        G.ChainedScheduler([G.ReduceLROnPlateau(opt)])
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        G.ReduceLROnPlateau(opt, factor=1.0)
