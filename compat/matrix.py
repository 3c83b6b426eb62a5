"""Writes the matrix as Markdown (for people) and JSON (for tools).

One table per setup (a single broker; a local cluster), the same rows and
columns in each, then one security table per setup (a row per security mode
and scenario), and one list of notes that every table points into.
"""

from __future__ import annotations

import json
from pathlib import Path

MARK = {"pass": "pass", "fail": "**FAIL**", "n/a": "n/a", "not run": "not run"}
TITLES = {
    "single": "Single node",
    "cluster": "Cluster ({brokers} brokers and ZooKeeper; each client bootstrapped from one broker)",
}


def write_matrix(setups: list, scenarios: list, security_rows: list, md_path: Path, json_path: Path) -> None:
    """``security_rows``: (mode, scenario) pairs, in the order of the security tables."""
    json_path.write_text(json.dumps({"setups": setups}, indent=2) + "\n")
    lines = [
        "# Compatibility matrix",
        "",
        "Written by `python -m compat` (do not edit): every client's scenario program run",
        "against a fresh pybroker, and against a fresh local cluster (`pybroker.local_cluster`),",
        "then a few scenarios in each security mode over the brokers' secured listeners.",
        "`n/a` means the client lacks the feature (the note says why); `not run` means the",
        "broker lacks the mode's SASL mechanism (not in `pybroker.sasl.SUPPORTED_MECHANISMS`).",
    ]
    notes: dict[str, int] = {}  # note text -> its number, so that a repeated reason is listed once
    for setup in setups:
        lines += ["", f"## {TITLES[setup['setup']].format(brokers=setup['brokers'])}", ""]
        lines += _table(setup["clients"], scenarios, notes)
    for setup in setups if security_rows else []:
        lines += ["", f"## Security: {TITLES[setup['setup']].format(brokers=setup['brokers'])}", ""]
        lines += _security_table(setup["clients"], security_rows, notes)
    lines += ["", "Scenarios:", ""]
    lines += [f"- `{s.name}`: {s.summary}" for s in scenarios]
    if security_rows:
        lines += ["", "Security modes (each client given a file of Kafka client properties, `--security`):", ""]
        lines += [f"- `{m.name}`: {m.summary}" for m in dict.fromkeys(m for m, _ in security_rows)]
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


def _security_table(results: list, rows: list, notes: dict[str, int]) -> list[str]:
    header = "| mode | scenario | " + " | ".join(f"{r['client']}" for r in results) + " |"
    lines = [header, "|" + " --- |" * (len(results) + 2)]
    for mode, scenario in rows:
        row = [f"`{mode.name}`", f"`{scenario.name}`"]
        for r in results:
            cell = next((c for c in r.get("security", []) if (c["mode"], c["scenario"]) == (mode.name, scenario.name)),
                        None)
            if cell is None:
                row.append("")
                continue
            text = MARK[cell["result"]]
            if cell["result"] != "pass" and cell["detail"]:
                # The broker's lack is the same for every client: one note.
                who = f"{mode.name}" if cell["result"] == "not run" else f"{r['client']}, {mode.name}"
                note = f"{who}: {_first_line(cell['detail'])}"
                text += f" [{notes.setdefault(note, len(notes) + 1)}]"
            row.append(text)
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.replace("|", "\\|")[:300]
