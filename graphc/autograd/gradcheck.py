"""Check a function's gradients against central differences (use float64 inputs)."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from .engine import grad
from .grad_mode import no_grad


def _outputs(fn, inputs) -> list[Tensor]:
    out = fn(*inputs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.is_floating_point]


def gradcheck(fn, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-4,
              seed: int = 0, raise_exception: bool = True) -> bool:
    """Compare vᵀJ from autograd with vᵀJ from central differences, for a random v.

    ``inputs`` are tensors (those with ``requires_grad`` are checked) and other values.
    Returns True, or raises AssertionError naming the input and the largest error.
    """
    rng = np.random.default_rng(seed)
    wrt = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    outs = _outputs(fn, inputs)
    vs = [Tensor_like(rng.standard_normal(o.shape), o) for o in outs]
    analytic = grad(outs, [inputs[i] for i in wrt], vs, allow_unused=True)

    def objective() -> float:
        with no_grad():
            return sum(float((o.detach().numpy().astype(np.float64) * v.numpy()).sum())
                       for o, v in zip(_outputs(fn, inputs), vs))

    for k, i in enumerate(wrt):
        x = inputs[i]
        data = x.detach().numpy()  # perturbed in place: the same memory the function reads
        numeric = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            old = data[idx]
            data[idx] = old + eps
            plus = objective()
            data[idx] = old - eps
            minus = objective()
            data[idx] = old
            numeric[idx] = (plus - minus) / (2 * eps)
        got = np.zeros(x.shape) if analytic[k] is None else analytic[k].detach().numpy()
        if not np.allclose(got, numeric, atol=atol, rtol=rtol):
            err = np.abs(got - numeric).max()
            if raise_exception:
                raise AssertionError(f"gradcheck: input {i} ({x.dtype.name}{list(x.shape)}): "
                                     f"autograd and central differences differ by up to {err:.3g}"
                                     f"\nautograd:\n{got}\nnumerical:\n{numeric}")
            return False
    return True


def Tensor_like(values: np.ndarray, like: Tensor) -> Tensor:
    from ..tensor import wrap_array
    return wrap_array(values.astype(like.dtype.np))
