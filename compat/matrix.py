"""Writes the matrix as Markdown (for people) and JSON (for tools).

One table per setup (a single broker; a local cluster), the same rows and
columns in each, and one list of notes that both tables point into.
"""

from __future__ import annotations

import json
from pathlib import Path

MARK = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a"}
TITLES = {
    "single": "Single node",
    "cluster": "Cluster ({brokers} brokers and ZooKeeper; each client bootstrapped from one broker)",
}


def write_matrix(setups: list, scenarios: list, md_path: Path, json_path: Path) -> None:
    json_path.write_text(json.dumps({"setups": setups}, indent=2) + "\n")
    lines = [
        "# Compatibility matrix",
        "",
        "Written by `python -m compat` (do not edit): every client's scenario program run",
        "against a fresh pybroker, and against a fresh local cluster (`pybroker.local_cluster`).",
        "`n/a` means the client lacks the feature (the note says why).",
    ]
    notes: dict[str, int] = {}  # note text -> its number, so that a repeated reason is listed once
    for setup in setups:
        lines += ["", f"## {TITLES[setup['setup']].format(brokers=setup['brokers'])}", ""]
        lines += _table(setup["clients"], scenarios, notes)
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{s.name}`: {s.summary}" for s in scenarios]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"{i}. {note}" for note, i in notes.items()]
    md_path.write_text("\n".join(lines) + "\n")


def _table(results: list, scenarios: list, notes: dict[str, int]) -> list[str]:
    header = "| scenario | " + " | ".join(f"{r['client']} {r['version']}" for r in results) + " |"
    lines = [header, "|" + " --- |" * (len(results) + 1)]
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
    return lines


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.replace("|", "\\|")[:300]
