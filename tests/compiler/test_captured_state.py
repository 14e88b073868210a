"""A compiled function reads the modules and tensors it finds outside its arguments (a
global model, a closure's tensor) live, as eager does: in-place updates are seen, a
replaced weight or a global name bound to another object recompiles, and training
reaches their parameters. (Before, a global model's weights were folded as constants.)"""

from __future__ import annotations

import numpy as np

import graphc
import graphc.nn as nn
import graphc.nn.functional as F


def close(a, b):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_global_models_weights_are_read_live_not_folded():
    global model, scale
    graphc.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    scale = graphc.tensor(2.0)

    @graphc.compile
    def f(x):
        return model(x) * scale + model[0].weight.t().sum()  # a weight-only subexpression

    x = graphc.randn(5, 3)
    with graphc.no_grad():
        close(f(x), model(x) * scale + model[0].weight.t().sum())
        model[0].weight.add_(1.0)  # an optimizer's in-place update
        scale.fill_(3.0)
        close(f(x), model(x) * 3.0 + model[0].weight.t().sum())
        model[2].weight = nn.Parameter(graphc.zeros(2, 4))  # a replaced weight
        close(f(x), model(x) * 3.0 + model[0].weight.t().sum())
        assert f.recompiles[-1].guard == "weight"
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # another model
        close(f(x), model(x) * 3.0 + model[0].weight.t().sum())
        r = f.recompiles[-1]
        assert (r.guard, r.name) == ("global", "'model'"), str(r)
        scale = graphc.tensor(-1.0)
        close(f(x), model(x) * -1.0 + model[0].weight.t().sum())
    assert not f.eager_runs


def test_a_closure_model_is_read_live_and_trained():
    graphc.manual_seed(1)
    net = nn.Linear(4, 3)
    reference = nn.Linear(4, 3)
    reference.load_state_dict(net.state_dict())

    @graphc.compile
    def loss_of(x, y):
        return F.cross_entropy(net(x), y)

    x, y = graphc.randn(8, 4), graphc.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    opt = graphc.optim.SGD(net.parameters(), lr=0.5)
    ref_opt = graphc.optim.SGD(reference.parameters(), lr=0.5)
    for _ in range(3):
        loss = loss_of(x, y)
        assert loss.grad_fn.name() == "CompiledFunctionBackward"
        loss.backward()
        opt.step()
        opt.zero_grad()
        ref = F.cross_entropy(reference(x), y)
        ref.backward()
        ref_opt.step()
        ref_opt.zero_grad()
        close(loss, ref)
    close(net.weight, reference.weight)
    assert not loss_of.eager_runs and not loss_of.recompiles


def test_tensors_made_inside_the_function_stay_constants():
    @graphc.compile
    def f(x):
        return x + graphc.tensor([1.0, 2.0]).exp()

    x = graphc.zeros(2)
    with graphc.no_grad():
        close(f(x), graphc.tensor([1.0, 2.0]).exp())
    gm = f.last.spec.gm
    assert not [n for n in gm.graph.nodes if n.op == "get_attr" and "_captured" in n.target]
