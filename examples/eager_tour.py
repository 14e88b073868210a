"""A tour of graphc's dynamic mode: tensors, views, promotion, in-place ops, meta mode.

Run: python3 examples/eager_tour.py
"""

import numpy as np

import graphc
import graphc.nn.functional as F

graphc.manual_seed(0)

# Tensors are strided views of a flat storage, with PyTorch's layout rules.
A = graphc.arange(12.0).reshape(3, 4)
print("A:", A, sep="\n")
print("A.T stride", A.T.stride(), "| A[1:3, 0:2] offset", A[1:3, 0:2].storage_offset())

# Writes through a view are seen by its base.
column = A[:, 1]
column.mul_(10)
print("after A[:, 1] *= 10:", A[:, 1].tolist())

# numpy interop is zero-copy both ways.
arr = np.ones((2, 3), dtype=np.float32)
t = graphc.from_numpy(arr)
t += 1
print("numpy sees the in-place add:", arr.tolist())

# PyTorch's type promotion.
i = graphc.tensor([1, 2, 3])
print("int64 + 0.5 ->", (i + 0.5).dtype, "| int64 / 2 ->", (i / 2).dtype, "| int64 // 2 ->",
      (i // 2).dtype)

# A small classifier head in eager mode.
x = graphc.randn(5, 8)
w, b = graphc.randn(3, 8) * 0.3, graphc.zeros(3)
logits = F.linear(x, w, b)
target = graphc.tensor([0, 2, 1, 1, 0])
print("probabilities:", F.softmax(logits, dim=-1), sep="\n")
print("cross entropy:", F.cross_entropy(logits, target).item())

# Meta mode: shapes and dtypes without data.
m = F.linear(x.to("meta"), w.to("meta"), b.to("meta")).softmax(-1)
print("meta result:", m)

# Errors say what was expected and where.
try:
    x @ w
except graphc.ShapeError as e:
    print("error:", e)
