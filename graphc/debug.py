"""``GRAPHC_DEBUG``: one switch that shows the stages of compilation on stderr.

    GRAPHC_DEBUG=1   traced and fused graphs, the fusion plan, recompiles (and every pass
                     is linted and checked against the interpreter on random inputs)
    GRAPHC_DEBUG=2   + each pass's time and IR diff
    GRAPHC_DEBUG=3   + the kernel IR
    GRAPHC_DEBUG=4   + LLVM IR before and after optimisation, and the assembly
"""

from __future__ import annotations

import os
import sys


def debug_level() -> int:
    try:
        return int(os.environ.get("GRAPHC_DEBUG", "0"))
    except ValueError:
        return 0


def show(level: int, title: str, body: str) -> None:
    """Print ``body`` under a header when ``GRAPHC_DEBUG >= level``."""
    if debug_level() >= level:
        print(f"---- graphc [{level}] {title} " + "-" * max(0, 60 - len(title)), file=sys.stderr)
        print(body, file=sys.stderr, flush=True)
