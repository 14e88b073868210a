"""Capture a small CNN into graphc's graph IR and look at it every way there is.

Run: python3 examples/trace_model.py
"""

import graphc
import graphc.nn as nn
import graphc.nn.functional as F
from graphc.ir import Interpreter, to_networkx


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.log_softmax(self.head(x), dim=-1)


graphc.manual_seed(0)
model = SmallCNN().eval()
x = graphc.randn(4, 3, 16, 16)

gm = graphc.trace(model, x)                      # symbolic: shapes from x, values unused
print(gm.graph.format(locations=True))           # the text IR, with the line of each op
print()
gm.graph.print_tabular()                         # the same as a table
print()
print(gm.code)                                   # the Python the GraphModule runs

with graphc.no_grad():
    eager, traced, interpreted = model(x), gm(x), Interpreter(gm).run(x)
print("max |graph - eager|:", (traced - eager).abs().max().item(),
      "| interpreter:", (interpreted - eager).abs().max().item())

g = to_networkx(gm.graph)
print(f"networkx: {g.number_of_nodes()} nodes, {g.number_of_edges()} edges")


# Control flow on tensor values cannot be traced symbolically...
def gate(t):
    return t * 2 if t.mean() > 0 else t


try:
    graphc.trace(gate, x)
except graphc.TraceError as e:
    print("TraceError:", str(e)[:90], "...")

# ...but the example-input mode follows the example and says what it assumed.
gm_gate = graphc.trace(gate, x.abs(), mode="example")
print("specialised on:", gm_gate.specializations)
