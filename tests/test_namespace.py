"""``dir(graphc)``, ``graphc.__all__`` and ``from graphc import *`` show the public,
torch-like API only: no helper modules or names leaked by star imports."""

from __future__ import annotations

import types

import graphc
import graphc.ops.functions as functions

LEAKED = """
    np builtins annotations math operator namedtuple size_args normalize_dim dt tril_mask
    infer_size operand as_shape cast layout creation tensor_repr serialization dispatch
    symbolic passes codegen compiler errors OPS view_scatter bool_ MinMax
""".split()


def test_no_leaked_helpers():
    listed = set(dir(graphc))
    assert not listed & set(LEAKED), sorted(listed & set(LEAKED))
    assert set(graphc.__all__) <= listed
    assert not set(LEAKED) & set(graphc.__all__)


def test_every_public_name_resolves():
    for name in graphc.__all__:
        assert hasattr(graphc, name), name
    for name in functions.__all__:
        assert callable(getattr(functions, name)), name
        assert getattr(graphc, name) is getattr(functions, name), name


def test_only_public_submodules():
    modules = {n for n in dir(graphc) if isinstance(getattr(graphc, n), types.ModuleType)}
    assert modules <= set(graphc._PUBLIC_MODULES), modules
    assert {"nn", "optim", "autograd", "ops", "ir"} <= modules


def test_public_api_is_listed():
    expected = """
        Tensor Size device Generator tensor zeros randn add sum cat einsum flip roll float32
        float64 float int long bool no_grad compile explain dump benchmark ShapeError
        OpError manual_seed save load isclose allclose log10 exp
    """.split()
    assert set(expected) <= set(dir(graphc)), sorted(set(expected) - set(dir(graphc)))


def test_star_import_takes_the_public_names():
    namespace: dict = {}
    exec("from graphc import *", namespace)
    names = {n for n in namespace if not n.startswith("__")}
    assert names == set(graphc.__all__)
    assert "np" not in names and "einsum" in names
