"""The whole training step as one compiled function: ``loss.backward()``, the optimizer and
the scheduler inside ``@graphc.compile``, checked against the same step run eagerly."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


@pytest.fixture(autouse=True)
def private_cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def close(a, b, tol=1e-5):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


def mlp(seed=0, batch_norm=False):
    graphc.manual_seed(seed)
    norm = [nn.BatchNorm1d(16)] if batch_norm else []
    # (no bias before the norm: its gradient is rounding noise, which Adam's normalised
    # step turns into updates of ±lr that differ between any two correct programs)
    return nn.Sequential(nn.Linear(8, 16, bias=not batch_norm), *norm, nn.ReLU(inplace=True),
                         nn.Linear(16, 4))


def batch(seed=1, n=24):
    graphc.manual_seed(seed)
    return graphc.randn(n, 8), graphc.randint(0, 4, (n,))


def step_of(model, opt, sched=None, zero_first=False):
    def step(x, y):
        if zero_first:
            opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if not zero_first:
            opt.zero_grad()
        if sched is not None:
            sched.step()
        return loss
    return step


@pytest.mark.parametrize("make_opt", [
    lambda p: graphc.optim.AdamW(p, lr=1e-2, fused=True),
    lambda p: graphc.optim.Adam(p, lr=1e-2),
    lambda p: graphc.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
], ids=["adamw-fused", "adam", "sgd-nesterov"])
def test_the_whole_step_compiles_and_trains_as_eager(make_opt):
    model, ref = mlp(batch_norm=True), mlp(batch_norm=True)
    opt, ref_opt = make_opt(model.parameters()), make_opt(ref.parameters())
    first_lr = opt.param_groups[0]["lr"]
    sched = graphc.optim.lr_scheduler.StepLR(opt, 2, gamma=0.5)
    ref_sched = graphc.optim.lr_scheduler.StepLR(ref_opt, 2, gamma=0.5)
    train_step = graphc.compile(step_of(model, opt, sched))
    eager_step = step_of(ref, ref_opt, ref_sched)
    x, y = batch()
    for _ in range(5):
        got, want = train_step(x, y), eager_step(x, y)
        close(got, want)
        assert not got.requires_grad  # the step ran its backward already
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        close(p, q)
        assert p.grad is None and q.grad is None, name
    close(model[1].running_var, ref[1].running_var)
    assert int(model[1].num_batches_tracked) == int(ref[1].num_batches_tracked) == 5
    assert opt.param_groups[0]["lr"] == ref_opt.param_groups[0]["lr"] == pytest.approx(first_lr / 4)
    assert not train_step.eager_runs and not train_step.recompiles
    text = train_step.last_step.describe()
    assert "after the programs, in order: backward (gradients into .grad)" in text
    assert "StepLR.step" in text and "saved for backward" in text


def test_gradients_accumulate_into_grad_as_eager_when_no_zero_grad_runs():
    model, ref = mlp(), mlp()

    def accumulate(m):
        def step(x, y):
            F.cross_entropy(m(x), y).backward()
            return m[0].weight.sum()  # a weight read before any optimizer step: fine
        return step

    compiled, eager = graphc.compile(accumulate(model)), accumulate(ref)
    x, y = batch()
    for _ in range(3):
        close(compiled(x, y), eager(x, y))
        for p, q in zip(model.parameters(), ref.parameters()):
            close(p.grad, q.grad)
    model[0].weight.register_hook(lambda g: g * 2)  # leaf hooks run as eager's
    ref[0].weight.register_hook(lambda g: g * 2)
    compiled(x, y), eager(x, y)
    close(model[0].weight.grad, ref[0].weight.grad)
    assert not compiled.eager_runs


def test_a_steps_gradients_become_grad_without_copies_and_stay_the_users():
    """The backward program's gradients become .grad as they are (no clone per weight),
    and a .grad the user keeps is not overwritten by the next step (the program does not
    reuse its memory while it is referred to)."""
    from graphc.ops.dispatch import DispatchMode, redispatch

    model, ref = mlp(), mlp()
    opt, ref_opt = (graphc.optim.SGD(m.parameters(), lr=0.1) for m in (model, ref))

    compiled = graphc.compile(step_of(model, opt, zero_first=True))
    eager = step_of(ref, ref_opt, zero_first=True)
    x, y = batch()
    compiled(x, y), eager(x, y)
    kept = model[0].weight.grad
    kept_values = kept.numpy().copy()

    class Clones(DispatchMode):
        count = 0

        def handle(self, op, inputs, attrs):
            Clones.count += op.name == "clone"
            return redispatch(op, inputs, attrs)

    with Clones():
        compiled(x, y)
    eager(x, y)
    assert Clones.count == 0
    np.testing.assert_array_equal(kept.numpy(), kept_values)
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p.grad, q.grad)
        close(p, q)
    assert not compiled.eager_runs


def test_zero_grad_before_the_forward_and_a_global_model():
    global step_model, step_opt
    step_model, ref = mlp(3), mlp(3)
    step_opt = graphc.optim.SGD(step_model.parameters(), lr=0.05)
    ref_opt = graphc.optim.SGD(ref.parameters(), lr=0.05)

    @graphc.compile
    def train(x, y):
        step_opt.zero_grad()
        loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        step_opt.step()
        return loss

    x, y = batch(4)
    for _ in range(3):
        close(train(x, y), step_of(ref, ref_opt, zero_first=True)(x, y))
    for p, q in zip(step_model.parameters(), ref.parameters()):
        close(p, q)
        close(p.grad, q.grad)  # the last step's gradients stay, as in eager
    assert not train.eager_runs


@pytest.mark.parametrize("case", ["clip", "weight_after_step", "item", "closure", "two_backwards"])
def test_what_a_step_cannot_capture_runs_eagerly_with_the_reason_and_state_intact(case):
    model, ref = mlp(5), mlp(5)
    opt = graphc.optim.Adam(model.parameters(), lr=1e-2)
    ref_opt = graphc.optim.Adam(ref.parameters(), lr=1e-2)
    words = {"clip": "of a gradient after backward()", "weight_after_step": "after an optimizer step",
             "item": ".item()", "closure": "closure", "two_backwards": "second backward()"}[case]

    def make(m, o):
        def step(x, y):
            loss = F.cross_entropy(m(x), y)
            if case == "two_backwards":
                (loss * 2).backward(retain_graph=True)
            loss.backward()
            if case == "clip":
                nn.utils.clip_grad_norm_(m.parameters(), 0.1)
            if case == "closure":
                o.step(lambda: loss)
            else:
                o.step()
            o.zero_grad()
            if case == "item":
                return loss.item()
            if case == "weight_after_step":
                return loss + m[0].weight.sum()
            return loss
        return step

    compiled, eager = graphc.compile(make(model, opt)), make(ref, ref_opt)
    x, y = batch(6)
    with pytest.warns(UserWarning, match="runs eagerly"):
        for _ in range(2):
            a, b = compiled(x, y), eager(x, y)
            if isinstance(a, float):
                assert a == pytest.approx(b, rel=1e-6)
            else:
                close(a, b)
    assert len(compiled.eager_runs) == 1 and words in compiled.eager_runs[0].reason
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p, q)
        assert type(opt.state[p]["exp_avg"]) is graphc.Tensor  # no traced value left behind


def test_under_no_grad_a_step_runs_eagerly_and_raises_as_eager():
    model = mlp()
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    train = graphc.compile(step_of(model, opt))
    x, y = batch()
    train(x, y)
    with graphc.no_grad(), pytest.raises(RuntimeError, match="does not require grad"):
        train(x, y)


def test_a_replaced_weight_or_a_frozen_layer_builds_the_step_again():
    model, ref = mlp(7), mlp(7)
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = graphc.optim.SGD(ref.parameters(), lr=0.1)
    train, eager = graphc.compile(step_of(model, opt)), step_of(ref, ref_opt)
    x, y = batch()
    close(train(x, y), eager(x, y))
    model[0].weight.requires_grad_(False)
    ref[0].weight.requires_grad_(False)
    close(train(x, y), eager(x, y))
    assert train.recompiles[-1].guard == "requires_grad"
    assert model[0].weight.grad is None
    with graphc.no_grad():
        new = graphc.randn(4, 16)
        model[2].weight = nn.Parameter(new.clone())
        ref[2].weight = nn.Parameter(new.clone())
    opt.param_groups[0]["params"][2] = model[2].weight
    ref_opt.param_groups[0]["params"][2] = ref[2].weight
    close(train(x, y), eager(x, y))
    assert train.recompiles[-1].guard == "weight"
    for p, q in zip(model.parameters(), ref.parameters()):
        close(p, q)
    assert not train.eager_runs


def test_one_step_serves_every_batch_size():
    model, ref = mlp(3, batch_norm=True), mlp(3, batch_norm=True)
    opt = graphc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    ref_opt = graphc.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    train, eager = graphc.compile(step_of(model, opt)), step_of(ref, ref_opt)
    for k, n in enumerate([24, 10, 17, 5, 24, 31]):  # (a DataLoader's last batch is smaller)
        x, y = batch(k, n)
        close(train(x, y), eager(x, y))
        for p, q in zip(model.parameters(), ref.parameters()):
            close(p, q, 1e-4)
        for p, q in zip(model.buffers(), ref.buffers()):  # running statistics
            close(p, q, 1e-4)
    # the first size's step, then one with a symbolic batch for all the others
    assert [k[0] == "step" for k in train.steps] == [False, True]
    assert not train.eager_runs and not train.static_reasons
    assert "s0" in train.last_step.describe()
    text = str(graphc.explain(train, *batch(9, 13)))  # a size it serves: its step
    assert "s0 = 13" in text and "f32[s0, 8]" in text
    fixed = graphc.compile(step_of(model, opt), dynamic=False)
    for n in (8, 9):
        fixed(*batch(0, n))
    assert len(fixed.steps) == 2 and all(k[0] != "step" for k in fixed.steps)


def test_explain_and_dump_show_a_compiled_step_without_running_it(tmp_path):
    model = mlp()
    opt = graphc.optim.SGD(model.parameters(), lr=0.1)
    train_step = graphc.compile(step_of(model, opt))
    x, y = batch()
    with pytest.raises(ValueError, match="calls backward\\(\\), so it is a training step.*"
                                         "call it once with these arguments"):
        graphc.explain(train_step, x, y)  # before the first call: what to do, not eager's error
    train_step(x, y)
    weights = [p.detach().clone() for p in model.parameters()]
    e = graphc.explain(train_step, x, y)
    text = str(e)
    assert e.compiled and "SGD.step" in text and "saved for backward" in text
    assert {k["name"].split(":")[0] for k in e.kernels} == {"forward", "backward"}
    assert "# forward program" in e.graphs["optimized"] and "# backward program" in e.graphs["optimized"]
    assert "tangent" in e.graphs["traced"]  # the joint graph
    out = graphc.dump(train_step, str(tmp_path / "dump"), x, y)
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert out == str(tmp_path / "dump")
    assert files == ["9_step_backward.ll", "9_step_backward.txt", "9_step_forward.ll",
                     "9_step_forward.txt", "9_step_joint.txt", "explain.txt"]
    assert "define" in (tmp_path / "dump" / "9_step_backward.ll").read_text()
    for p, w in zip(model.parameters(), weights):  # neither explain nor dump trained it
        close(p, w, tol=0)


def test_check_mode_checks_a_compiled_steps_kernels(monkeypatch, tmp_path):
    from graphc.compiler import CheckError
    from graphc.ops import OPS

    def run(check):
        model = mlp()
        opt = graphc.optim.SGD(model.parameters(), lr=0.1)
        return graphc.compile(step_of(model, opt), check=check)(*batch())

    want = run(False)
    close(run(True), want)  # correct kernels pass the check
    mul = OPS["mul"].emit

    def wrong(s, a, b):  # a product 0.5 too large: a wrong kernel in the step's programs
        value = mul(s, a, b)
        return s.b.fadd(value, s.c(0.5)) if s.is_float else value

    monkeypatch.setattr(OPS["mul"], "emit", wrong)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    with pytest.raises(CheckError) as info:
        run(True)
    assert "mul" in info.value.subgraph
