"""Load a model file of ``examples/`` for graphc or, with its imports changed, for torch.

The zoo's files are PyTorch programs whose imports name graphc (``import graphc as
torch``, ``import graphc.nn as nn``, ``from graphc.utils.data import ...``). ``load(name,
"torch")`` changes exactly those top-level import lines and nothing else, which is what a
user porting a model file does in the other direction.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
_IMPORT = re.compile(r"^(import|from) graphc(\b.*)$", re.M)


def source(name: str, framework: str) -> str:
    text = (EXAMPLES / f"{name}.py").read_text()
    if framework == "torch":
        text, changed = _IMPORT.subn(lambda m: f"{m.group(1)} torch{m.group(2)}", text)
        assert changed >= 1, f"{name}.py imports nothing from graphc at top level"
    return text


def load(name: str, framework: str = "graphc") -> types.ModuleType:
    """The model file ``examples/<name>.py`` as a module, for graphc or for torch."""
    module = types.ModuleType(f"zoo_{name}_{framework}")
    module.__file__ = str(EXAMPLES / f"{name}.py")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source(name, framework), module.__file__, "exec"), module.__dict__)
    return module

