"""einsum: against numpy.einsum and torch.einsum, compiled against eager, gradients
against torch, and errors that name the equation and the shapes."""

from __future__ import annotations

import numpy as np
import pytest

import graphc
from graphc.errors import ShapeError

RNG = np.random.default_rng(1)
CASES = [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]),
    ("bi,bi->b", [(4, 5), (4, 5)]),
    ("ii->i", [(4, 4)]),
    ("ii", [(4, 4)]),
    ("...ij->...ji", [(2, 3, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]),
    ("b...d,d->b...", [(2, 3, 4), (4,)]),
    ("i,j->ij", [(3,), (4,)]),
    ("ijk->", [(2, 3, 4)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("bij , bjk -> bik", [(2, 3, 4), (2, 4, 5)]),
    ("ijj,j->ij", [(2, 3, 3), (3,)]),
    ("ij,ij->", [(1, 4), (3, 4)]),  # a size-1 label broadcasts (torch), summed after
]


def _operands(shapes):
    return [RNG.standard_normal(s) for s in shapes]


@pytest.mark.parametrize("equation, shapes", CASES, ids=[c[0] for c in CASES])
def test_matches_numpy(equation, shapes):
    arrays = _operands(shapes)
    ours = graphc.einsum(equation, *[graphc.from_numpy(a) for a in arrays])
    if equation == "ij,ij->":
        expected = np.einsum("ij,ij->", np.broadcast_to(arrays[0], (3, 4)), arrays[1])
    else:
        expected = np.einsum(equation.replace(" ", ""), *arrays)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12, atol=1e-12)
    listed = graphc.einsum(equation, [graphc.from_numpy(a) for a in arrays])
    np.testing.assert_allclose(listed.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("equation, shapes", CASES, ids=[c[0] for c in CASES])
def test_values_and_gradients_match_torch(equation, shapes):
    torch = pytest.importorskip("torch")
    arrays = _operands(shapes)
    ours = [graphc.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, expected = graphc.einsum(equation, *ours), torch.einsum(equation, *theirs)
    assert tuple(out.shape) == tuple(expected.shape)
    np.testing.assert_allclose(out.detach().numpy(), expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    cot = RNG.standard_normal(tuple(out.shape))
    out.backward(graphc.tensor(cot))
    expected.backward(torch.tensor(cot))
    for o, t in zip(ours, theirs):
        np.testing.assert_allclose(o.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_integer_dtypes_follow_torch():
    a = graphc.ones(3, 3, dtype=graphc.int32)
    assert graphc.einsum("ij,jk->ik", a, a).dtype is graphc.int32  # a product keeps int32
    assert graphc.einsum("ii", a).dtype is graphc.int64            # a sum alone promotes
    assert graphc.einsum("ii", a).item() == 3


def test_compiled_matches_eager():
    q, k, v = (graphc.from_numpy(RNG.standard_normal((2, 3, 4, 8)).astype(np.float32))
               for _ in range(3))

    def attention(q, k, v):
        w = graphc.einsum("bhqd,bhkd->bhqk", q, k).softmax(-1)
        return graphc.einsum("bhqk,bhkd->bqhd", w, v), graphc.einsum("...ii->...i", w[..., :4])

    eager = attention(q, k, v)
    compiled = graphc.compile(attention, fullgraph=True)
    for e, c in zip(eager, compiled(q, k, v)):
        np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("equation, shapes, message", [
    ("ij,jk->ik", [(3, 4), (5, 6)], r"subscript 'j' has sizes 4 and 5"),
    ("ij->ik", [(3, 4)], r"output subscript 'k' is not in any operand"),
    ("ij,jk->ik", [(3, 4)], r"2 operand term\(s\) for 1 operand"),
    ("ijk->i", [(3, 4)], r"names 3 dims for an operand with 2"),
    ("i1->i", [(3, 4)], r"'1' is not a subscript"),
])
def test_errors_name_the_equation_and_shapes(equation, shapes, message):
    with pytest.raises(ShapeError, match=r"einsum: equation .* with operand shapes .*" + message):
        graphc.einsum(equation, *[graphc.zeros(s) for s in shapes])
