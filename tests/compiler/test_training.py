"""Compiled training: forward and backward programs behind one autograd node.

What a user of eager autograd relies on must hold for a compiled call too: gradients equal
eager's, ``grad_fn`` and hooks, ``retain_graph`` and the error of a second backward,
``autograd.grad``, accumulation into ``.grad``, the version check of saved tensors,
``detach`` and ``no_grad`` inside the function, in-place ops, buffers updated as eager
does, the same dropout masks from the same seed; and a model trained compiled ends where
the same model trained eagerly does.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc import autograd


@pytest.fixture(autouse=True, scope="module")
def private_cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAPHC_CACHE_DIR", str(tmp_path_factory.mktemp("graphc-cache")))
        yield


def close(a, b, tol=1e-5):
    a = a.detach().numpy() if isinstance(a, graphc.Tensor) else a
    b = b.detach().numpy() if isinstance(b, graphc.Tensor) else b
    scale = max(1.0, float(np.abs(b).max()) if np.size(b) else 1.0)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


def leaves(*shapes, seed=0):
    graphc.manual_seed(seed)
    return [graphc.randn(*s, requires_grad=True) for s in shapes]


def ran_compiled(cf) -> None:
    assert cf.eager_runs == [], [str(r) for r in cf.eager_runs]
    assert cf.last_training is not None


# ---- the autograd node ---------------------------------------------------------------------

def f(x, w):
    h = (x @ w).tanh()
    return h * h.detach() + x.sum(), h.sum()


def test_outputs_carry_one_compiled_node_and_gradients_equal_eager():
    x, w = leaves((3, 4), (4, 5))
    cf = graphc.compile(f)
    a, b = cf(x, w)
    assert a.grad_fn is b.grad_fn and a.grad_fn.name() == "CompiledFunctionBackward"
    assert [fn is not None for fn, _ in a.grad_fn.next_functions] == [True, True]
    (a.sum() * 2 + b).backward()
    got = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    a, b = f(x, w)
    (a.sum() * 2 + b).backward()
    close(got[0], x.grad)
    close(got[1], w.grad)
    ran_compiled(cf)


def test_hooks_retain_graph_second_backward_and_autograd_grad():
    x, w = leaves((3, 4), (4, 5))
    cf = graphc.compile(f)
    a, b = cf(x, w)
    seen = []
    a.register_hook(lambda g: seen.append(("a", tuple(g.shape))))
    b.register_hook(lambda g: seen.append(("b", tuple(g.shape))) or g * 3)  # replaces b's grad
    (a.sum() + b).backward(retain_graph=True)
    assert sorted(seen) == [("a", (3, 5)), ("b", ())]
    once = w.grad.clone()
    (a.sum() + b).backward()  # accumulates into .grad, as eager does
    close(w.grad, once * 2)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        (a.sum() + b).backward()
    x.grad = w.grad = None
    a, b = cf(x, w)
    (gw,) = autograd.grad(b, [w])
    assert x.grad is None and w.grad is None  # autograd.grad leaves .grad alone
    ea, eb = f(x, w)
    close(gw, autograd.grad(eb, [w])[0])


def test_an_output_unused_by_the_loss_gets_zeros_and_an_input_only_some_outputs_read():
    x, w = leaves((3, 4), (4, 5))
    cf = graphc.compile(f)
    a, _ = cf(x, w)
    a.mean().backward()
    got = w.grad.clone()
    w.grad = None
    f(x, w)[0].mean().backward()
    close(got, w.grad)


def test_an_input_changed_in_place_before_backward_is_eagers_error():
    x, w = leaves((3, 4), (4, 5))
    a, _ = graphc.compile(f)(x, w)
    with graphc.no_grad():
        w.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        a.sum().backward()


def test_detach_no_grad_and_inplace_ops_inside_the_function():
    def g(x, w):
        y = x @ w
        y.relu_()
        y += x[:, :1]  # broadcast in place
        with graphc.no_grad():
            scale = y.abs().max()  # a constant to autograd
        z = y / scale + y.detach().sigmoid()
        z[:, 0] = z[:, 1] * 2  # a write through a view
        return z
    x, w = leaves((4, 3), (3, 5))
    cf = graphc.compile(g)
    cf(x, w).square().sum().backward()
    got = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    g(x, w).square().sum().backward()
    close(got[0], x.grad)
    close(got[1], w.grad)
    ran_compiled(cf)


def test_only_the_inputs_that_require_grad_get_gradients_and_flags_are_guards():
    x, w = leaves((3, 4), (4, 5))
    frozen = w.detach()
    cf = graphc.compile(f)
    cf(x, frozen)[1].backward()
    assert x.grad is not None and frozen.grad is None
    cf(x, w)[1].backward()  # other requires_grad flags: other programs
    assert w.grad is not None
    entry = next(iter(cf.entries.values()))
    assert len(entry.training) == 2
    (r,) = cf.recompiles
    assert (r.guard, r.name, r.old, r.new) == ("requires_grad", "w", "False", "True"), str(r)
    with graphc.no_grad():  # the values program still serves inference
        assert not cf(x, w)[0].requires_grad


def test_double_backward_through_a_compiled_call_says_it_is_not_supported():
    x, w = leaves((3, 4), (4, 5))
    a, _ = graphc.compile(f)(x, w)
    with pytest.raises(RuntimeError, match="create_graph=True.*not differentiable"):
        autograd.grad(a.sum(), [w], create_graph=True)


def test_a_returned_input_keeps_its_own_history():
    x, w = leaves((3,), (3,))
    cf = graphc.compile(lambda x, w: (x, x * w))
    same, prod = cf(x, w)
    assert same is x
    (same.sum() + prod.sum()).backward()
    close(x.grad, 1 + w.detach())
    close(w.grad, x.detach())
    ran_compiled(cf)


def test_a_write_into_an_input_that_requires_grad_runs_eagerly_with_the_reason():
    def g(x):
        y = x * 2
        y.add_(1)
        x.mul_(3)  # x is not a leaf here (it is made by the caller from a leaf)
        return y
    (w,) = leaves((3,))
    x = w * 1
    cf = graphc.compile(g)
    with pytest.warns(UserWarning, match="writes in place into"):
        cf(x).sum().backward()
    assert "compiled training" in cf.eager_runs[0].reason
    close(w.grad, graphc.full((3,), 2.0))


# ---- modules -------------------------------------------------------------------------------

def test_batch_norm_running_statistics_and_dropout_masks_follow_eager():
    def make():
        graphc.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(8, 2))
    eager, twin = make(), make()
    cm = graphc.compile(twin)
    x = graphc.randn(5, 6)
    for step in range(3):
        for m, call in ((eager, eager), (twin, cm)):
            graphc.manual_seed(100 + step)  # dropout draws the same masks from the same seed
            m.zero_grad()
            call(x).square().mean().backward()
        for p, q in zip(eager.parameters(), twin.parameters()):
            close(q.grad, p.grad)
        for b, c in zip(eager.buffers(), twin.buffers()):
            close(c, b)
    ran_compiled(cm.compiled)


class TinyGPT(nn.Module):
    def __init__(self, vocab=17, dim=16, heads=2, block=8):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(graphc.randn(block, dim) * 0.1)
        self.block = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=32, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        mask = graphc.triu(graphc.full((t, t), float("-inf")), diagonal=1)
        h = self.block(self.tok(idx) + self.pos[:t], src_mask=mask)
        return self.head(self.norm(h))


ZOO = {
    "mlp": (lambda: nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 32), nn.ReLU(),
                                  nn.Linear(32, 5)),
            lambda: graphc.randn(16, 12), lambda: graphc.randint(0, 5, (16,))),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                  nn.Conv2d(6, 8, 3, padding=1, groups=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)),
            lambda: graphc.randn(4, 3, 8, 8), lambda: graphc.randint(0, 5, (4,))),
    "transformer": (lambda: nn.Sequential(
        nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True),
        nn.Flatten(), nn.Linear(16 * 6, 5)),
        lambda: graphc.randn(3, 6, 16), lambda: graphc.randint(0, 5, (3,))),
    "gpt": (TinyGPT, lambda: graphc.randint(0, 17, (2, 8)), lambda: graphc.randint(0, 17, (2, 8))),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_fifty_training_steps_compiled_end_where_eager_ends(name):
    make, data, target = ZOO[name]
    graphc.manual_seed(0)
    eager = make()
    graphc.manual_seed(0)
    twin = make()
    compiled = graphc.compile(twin)
    graphc.manual_seed(1)
    batches = [(data(), target()) for _ in range(5)]
    losses = {}
    for label, model, call in (("eager", eager, eager), ("compiled", twin, compiled)):
        # (SGD: Adam would turn gradients that are rounding noise, such as an attention's
        # key bias's, into full-size steps, in eager and compiled alike but differently)
        opt = graphc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for step in range(50):
            x, y = batches[step % len(batches)]
            out = call(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.setdefault(label, []).append(loss.item())
    assert np.mean(losses["compiled"][-5:]) < np.mean(losses["compiled"][:5])  # it learns
    np.testing.assert_allclose(losses["compiled"], losses["eager"], rtol=2e-3, atol=2e-4)
    for p, q in zip(eager.parameters(), twin.parameters()):
        close(q, p, tol=2e-3)
    ran_compiled(compiled.compiled)


# sizes per step: the batch (and for the GPT, the sequence length) changes every call
SIZES = {"mlp": [16, 9, 13, 4, 16, 2], "cnn": [4, 3, 6, 2, 5], "transformer": [3, 5, 2, 4],
         "gpt": [(2, 8), (3, 5), (2, 6), (4, 7), (3, 3), (2, 8)]}


def batch_of(name, size):
    if name == "gpt":
        return graphc.randint(0, 17, size), graphc.randint(0, 17, size)
    make, data, target = ZOO[name]
    return graphc.randn(size, *data().shape[1:]), graphc.randint(0, 5, (size,))


@pytest.mark.parametrize("name", list(ZOO))
def test_one_pair_of_training_programs_serves_every_batch_size(name):
    make = ZOO[name][0]
    graphc.manual_seed(0)
    eager = make()
    graphc.manual_seed(0)
    twin = make()
    compiled = graphc.compile(twin)
    for step, size in enumerate(SIZES[name]):
        graphc.manual_seed(10 + step)
        x, y = batch_of(name, size)
        for model, call in ((eager, eager), (twin, compiled)):
            model.zero_grad()
            out = call(x)
            F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1)).backward()
        for p, q in zip(eager.parameters(), twin.parameters()):
            close(q.grad, p.grad, tol=1e-4)
        for b, c in zip(eager.buffers(), twin.buffers()):  # BatchNorm's running statistics
            close(c, b)
    cf = compiled.compiled
    ran_compiled(cf)
    assert cf.static_reasons == [], [str(r) for r in cf.static_reasons]
    programs = [(e, k) for e in cf.entries.values() for k in e.training]
    # the first size's fixed programs, then one pair with symbolic sizes for the rest
    sized = [(e, k) for e, k in programs if k[0] is e.pattern]
    assert len(sized) == 1 and len(programs) == 2, programs
    assert "s0" in cf.last_training.describe()


def mutating(x, y, w):
    h = x @ w
    h.relu_()                 # in place
    h[:, 0] = y[:, 0] * 2.0   # a write through a view
    out = h.clone()
    out += x @ w              # an in-place add of a value that requires grad
    return out.tanh().sum() + (y * x).sum()


def test_symbolic_training_programs_with_in_place_ops_views_and_aliased_inputs():
    (w,) = leaves((4, 4))
    cf = graphc.compile(mutating)
    for n in (5, 8, 3, 11):
        x, y = graphc.randn(n, 4, requires_grad=True), graphc.randn(n, 4)
        for args in ((x, y, w), (x, x, w)):  # separate, then aliased inputs
            cf(*args).backward()
            got = [t.grad.clone() for t in (x, w)]
            x.grad = w.grad = None
            mutating(*args).backward()
            for g, t in zip(got, (x, w)):
                close(g, t.grad)
            x.grad = w.grad = None
    ran_compiled(cf)
    assert any(k[0] is e.pattern for e in cf.entries.values() for k in e.training)
    assert not cf.static_reasons, [str(r) for r in cf.static_reasons]


def test_a_backward_program_whose_inputs_do_not_carry_every_size():
    def f(x, w, z):  # z's size is in no input of the backward program (only x and w are)
        return (x @ w).tanh().sum() * z.sum()

    (w,) = leaves((4, 3))
    cf = graphc.compile(f, dynamic=True)
    for n, m in ((5, 7), (8, 2), (3, 9)):
        x, z = graphc.randn(n, 4), graphc.randn(m)
        cf(x, w, z).backward()
        got = w.grad.clone()
        w.grad = None
        close(got, autograd.grad(f(x, w, z), [w])[0])
    ran_compiled(cf)
    assert not cf.static_reasons, [str(r) for r in cf.static_reasons]
    assert [k[0] is e.pattern for e in cf.entries.values() for k in e.training] == [True]


def test_sizes_across_a_guard_and_sizes_a_training_program_refuses(monkeypatch):
    from graphc.compiler.training import TrainingProgram

    def head(x, w):
        return (x[:4] @ w).tanh().sum()  # keeps 4 rows of a batch of at least 4: a guard

    (w,) = leaves((3, 2))
    cf = graphc.compile(head)
    fits = TrainingProgram.fits  # and, as if the training programs' own guards said so,
    monkeypatch.setattr(TrainingProgram, "fits",  # batch 7 does not fit them
                        lambda self, tensors: tensors[0].shape[0] != 7 and fits(self, tensors))
    for batch in (6, 5, 9, 3, 2, 7, 8, 7):
        x = graphc.randn(batch, 3)
        cf(x, w).backward()
        got = w.grad.clone()
        w.grad = None
        close(got, autograd.grad(head(x, w), [w])[0])
    ran_compiled(cf)
    by_entry = {e.signature[1][1]: sorted("sized" if k[0] is e.pattern else "fixed"
                                          for k in e.training) for e in cf.entries.values()}
    assert by_entry[(6, 3)] == ["fixed"]
    assert by_entry[(5, 3)] == ["fixed", "sized"]  # 5, 9 and 8 (sized); 7 (fixed)
    big = next(e for e in cf.entries.values() if e.signature[1][1] == (5, 3))
    sized = next(p for k, p in big.training.items() if k[0] is big.pattern)
    assert fits(sized, [graphc.randn(9, 3), w]) and not fits(sized, [graphc.randn(3, 3), w])
    assert len(cf.entries) == 3  # batch 3 and 2 fail the inference guard too


def test_check_mode_keeps_fixed_sizes_for_training_programs():
    (w,) = leaves((3, 2))
    cf = graphc.compile(lambda x, w: (x @ w).tanh().sum(), check=True)
    for batch in (5, 6, 7):
        cf(graphc.randn(batch, 3), w).backward()
    assert all(k[0] is not e.pattern for e in cf.entries.values() for k in e.training)
    assert len([k for e in cf.entries.values() for k in e.training]) == 3


def test_check_mode_checks_the_backward_programs_kernels(monkeypatch, tmp_path):
    from graphc.compiler import CheckError
    from graphc.ops import OPS

    def g(x, w):
        return (x @ w).tanh().sum()  # no mul in the function; tanh's gradient has one

    x, w = leaves((3, 4), (4, 5))
    checked = graphc.compile(g, check=True)
    checked(x, w).backward()
    close(w.grad, autograd.grad(g(x, w), [w])[0])
    mul = OPS["mul"].emit

    def wrong(s, a, b):  # a product 0.5 too large: a wrong backward kernel
        value = mul(s, a, b)
        return s.b.fadd(value, s.c(0.5)) if s.is_float else value

    monkeypatch.setattr(OPS["mul"], "emit", wrong)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    checked = graphc.compile(g, check=True)
    with pytest.raises(CheckError) as info:  # (1 - tanh^2 may run in either program)
        checked(x, w).backward()
    assert "mul" in info.value.subgraph
    assert any("test_training.py" in loc for loc in info.value.locations)  # g's line


def test_a_replaced_weight_recompiles_the_training_programs():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    cm = graphc.compile(m)
    x = graphc.randn(5, 4)
    cm(x).sum().backward()
    m[0].weight = nn.Parameter(graphc.randn(3, 4))
    m.zero_grad()
    cm(x).sum().backward()
    got = m[0].weight.grad.clone()
    m.zero_grad()
    m(x).sum().backward()
    close(got, m[0].weight.grad)
    assert [r.guard for r in cm.compiled.recompiles] == ["weight"]
    ran_compiled(cm.compiled)


def test_module_backward_hooks_run_eagerly_and_fire():
    m = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    seen = []
    m[0].register_full_backward_hook(lambda mod, grad_in, grad_out: seen.append(mod))
    cm = graphc.compile(m)
    x = graphc.randn(5, 4, requires_grad=True)
    with pytest.warns(UserWarning, match="has backward hooks"):
        cm(x).sum().backward()
    assert seen == [m[0]]


def test_a_model_only_trained_costs_no_llvm_time_for_its_inference_program():
    """The inference program of a signature is lowered (its entry needs the weights it
    reads) but LLVM runs on its first call: a training loop pays only for the forward and
    backward programs; the first call under no_grad then compiles it."""
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2))
    compiled = graphc.compile(model)
    x = graphc.randn(4, 6)
    compiled(x).sum().backward()
    (entry,) = compiled.compiled.entries.values()
    assert entry.spec._compiled is None and entry.spec.stage_seconds["llvm"] == 0.0
    assert compiled.compiled.last_training.forward._last._compiled is not None
    with graphc.no_grad():
        got = compiled(x)
    assert entry.spec._compiled is not None and entry.spec.stage_seconds["llvm"] > 0
    np.testing.assert_allclose(got.numpy(), model(x).detach().numpy(), rtol=1e-6, atol=1e-6)
