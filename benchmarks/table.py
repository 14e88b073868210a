"""How the benchmarks print: times with their unit, tables with right-aligned columns."""

from __future__ import annotations


def fmt_time(s: float | None, missing: str = "-") -> str:
    if s is None:
        return missing
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def print_table(head: list[str], table: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for line in [head] + table:
        print("  ".join(str(x).rjust(wd) for x, wd in zip(line, widths)))
