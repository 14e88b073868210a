"""Passes over the graph IR (each ``pass_(gm) -> changed``), the pass manager, and the
fusion planner. Passes never import codegen: a fused group is a FusedKernel holding its
sub-graph."""

from .constant_fold import fold_constants, freeze_parameters
from .cse import cse
from .dce import dce
from .decompose import decompose
from .functionalize import FunctionalizeError, functionalize, is_functional
from .fusion import FusionPlan, fuse, fusion_pass
from .manager import PassCheckError, PassHistory, PassManager
from .memory import MemoryPlan, plan_memory
from .pattern import replace_pattern
from .shape_prop import refresh_shapes
from .simplify import simplify

__all__ = ["PassManager", "PassHistory", "PassCheckError", "decompose", "refresh_shapes", "cse",
           "fold_constants", "freeze_parameters", "simplify", "dce", "replace_pattern",
           "plan_memory", "MemoryPlan", "fuse", "fusion_pass", "FusionPlan", "functionalize",
           "FunctionalizeError", "is_functional"]
