"""Output: plain aligned columns for people, JSON for scripts."""

from __future__ import annotations

import json
import sys


def table(headers: list[str], rows: list[list]) -> str:
    """Columns as wide as their widest cell, two spaces apart."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def out(text: str = "") -> None:
    print(text, file=sys.stdout, flush=True)


def out_json(data) -> None:
    out(json.dumps(data, indent=2, sort_keys=False))


def nodes(ids) -> str:
    return ",".join(str(i) for i in ids)


def report(items: list, as_json: bool, show) -> int:
    """``items`` as one JSON array, or each ``show``n with a blank line between."""
    if as_json:
        out_json(items)
        return 0
    for i, item in enumerate(items):
        if i:
            out()
        show(item)
    return 0
