"""Where compiled programs spend their time: ``GRAPHC_PROFILE=1`` (read when a program is
compiled) makes every program time each of its steps, native kernel or numpy fallback,
with the monotonic clock (two clock reads per step: about 40 ns).

    GRAPHC_PROFILE=1 python3 train.py     # the table is printed when the process exits
    print(graphc.compiler.profile_report())

The steps of every program are listed slowest first, with their calls and time per call.
"""

from __future__ import annotations

import atexit
import os
import sys

from ..codegen.runtime import profile_rows


def profile_report(limit: int = 40) -> str:
    """The slowest ``limit`` steps of the programs compiled with ``GRAPHC_PROFILE=1``."""
    rows = profile_rows()
    if not rows:
        return "profile: no program was compiled with GRAPHC_PROFILE=1"
    total = sum(r[4] for r in rows)
    lines = [f"profile: {len(rows)} steps, {total * 1e3:.2f} ms in all",
             f"  {'program':<24} {'step':<28} {'kind':<12} {'calls':>7} {'ms':>9} "
             f"{'us/call':>9} {'%':>5}"]
    for program, step, kind, calls, seconds in rows[:limit]:
        per_call = seconds / calls * 1e6 if calls else 0.0
        lines.append(f"  {program[:24]:<24} {step[:28]:<28} {kind[:12]:<12} {calls:>7} "
                     f"{seconds * 1e3:>9.3f} {per_call:>9.1f} "
                     f"{100 * seconds / total if total else 0:>5.1f}")
    if len(rows) > limit:
        rest = sum(r[4] for r in rows[limit:])
        lines.append(f"  ... {len(rows) - limit} more steps, {rest * 1e3:.2f} ms")
    return "\n".join(lines)


if os.environ.get("GRAPHC_PROFILE", "0") != "0":
    atexit.register(lambda: print(profile_report(), file=sys.stderr))
