"""Writes the matrix as Markdown (for people) and JSON (for tools)."""

from __future__ import annotations

import json
from pathlib import Path

MARK = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}


def write_matrix(results: list, scenarios: list, md_path: Path, json_path: Path) -> None:
    json_path.write_text(json.dumps({"clients": results}, indent=2) + "\n")
    header = "| scenario | " + " | ".join(f"{r['client']} {r['version']}" for r in results) + " |"
    lines = [
        "# Compatibility matrix",
        "",
        "Written by `python -m compat` (do not edit): every client's scenario program run",
        "against a fresh pybroker. `n/a` means the client lacks the feature (the note says why).",
        "",
        header,
        "|" + " --- |" * (len(results) + 1),
    ]
    notes: dict[str, int] = {}  # note text -> its number, so that a repeated reason is listed once
    for scenario in scenarios:
        row = [f"`{scenario.name}`"]
        for r in results:
            cell = next((c for c in r["cells"] if c["scenario"] == scenario.name), None)
            if cell is None:
                row.append("")
                continue
            text = MARK[cell["result"]]
            if cell["result"] != "pass" and cell["detail"] and not scenario.only:
                note = f"{r['client']}: {_first_line(cell['detail'])}"
                text += f" [{notes.setdefault(note, len(notes) + 1)}]"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{s.name}`: {s.summary}" for s in scenarios]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{i}. {note}" for note, i in notes.items()]
    md_path.write_text("\n".join(lines) + "\n")


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.replace("|", "\\|")[:300]
