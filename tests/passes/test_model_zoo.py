"""The default pipeline and fusion on the model zoo of the tracing tests: every pass lints
and keeps the outputs; the fused graph equals eager."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.passes import PassManager, fuse
from tests.trace.test_trace import MODELS


@pytest.mark.parametrize("name, make, shape", MODELS, ids=[m[0] for m in MODELS])
def test_pipeline_and_fusion_on_models(name, make, shape):
    graphc.manual_seed(0)
    model = make()
    x = graphc.randn(*shape)
    gm = graphc.trace(model, x)
    history = PassManager.default().run(gm, check_inputs=(x,), rtol=1e-4, atol=1e-5)
    decomposed = next(r for r in history.records if r.name == "decompose")
    assert decomposed.changed or name == "mlp"
    writes = next(r for r in history.records if r.name == "functionalize")
    assert writes.changed == (name == "cnn_bn_train")  # its running statistics
    plan = fuse(gm)
    gm.graph.lint(gm, require_meta=True)
    assert plan.kernels
    with graphc.no_grad():
        np.testing.assert_allclose(gm(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
