"""Graph capture: ``trace`` records a function or module into a GraphModule."""

from .proxy import Proxy, TensorSpec, TraceError
from .tracer import Tracer, trace

__all__ = ["trace", "Tracer", "Proxy", "TensorSpec", "TraceError"]
