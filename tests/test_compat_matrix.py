"""The client compatibility matrix (compat/) as a test: every cell must pass or be n/a.

Runs `python -m compat` (all clients, all scenarios, on a single broker and
on a three-broker local cluster with ZooKeeper, then the security modes over
the brokers' secured listeners) in a child process, the way a person would,
but writes MATRIX.md and matrix.json into a temporary directory so the
committed compat/MATRIX.md is left alone. The runner installs what a client
needs when it is missing; .ci/run installs the Debian packages and npm trees
ahead of time.

A security mode whose SASL mechanism the broker lacks is `not run`: that is
allowed only while the mechanism is missing from SUPPORTED_MECHANISMS, and
it is listed as a warning, never counted as a pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

from compat.clients import CLIENTS
from compat.security import MODES, NOT_RUN, SCENARIOS, broker_lacks, supported_mechanisms

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 60  # seconds, the runner's own limit for each cell
MATRIX_TIMEOUT = 30 * 60  # the whole matrix takes a few minutes; this bounds a hang


def test_compat_matrix(tmp_path):
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "compat", "--output", str(tmp_path), "--timeout", str(CELL_TIMEOUT)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=MATRIX_TIMEOUT,
            check=False,  # the verdicts are read from matrix.json below
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"the matrix did not finish in {MATRIX_TIMEOUT} s:\n{e.output or ''}") from None
    matrix = tmp_path / "matrix.json"
    assert matrix.exists(), f"python -m compat wrote no matrix (exit {proc.returncode}):\n{proc.stdout}"
    setups = json.loads(matrix.read_text())["setups"]
    assert [(s["setup"], s["brokers"]) for s in setups] == [("single", 1), ("cluster", 3)]
    supported = supported_mechanisms()
    for setup in setups:
        # Both tables hold every client: a cluster that did not start fails its cells, it does not drop them.
        assert [r["client"] for r in setup["clients"]] == [c.name for c in CLIENTS]
        print(f"{setup['setup']}: {setup['seconds']} s")
        for r in setup["clients"]:
            # Every mode × scenario, each run unless (and only unless) the broker lacks the mechanism.
            cells = {(c["mode"], c["scenario"]): c["result"] for c in r["security"]}
            assert sorted(cells) == sorted((m.name, s) for m in MODES for s in SCENARIOS), r["client"]
            for mode in MODES:
                for scenario in SCENARIOS:
                    ran = cells[mode.name, scenario] != NOT_RUN
                    assert ran == (broker_lacks(mode, supported) is None), (r["client"], mode.name, scenario)
    not_run = sorted({c["mode"] for s in setups for r in s["clients"] for c in r["security"] if c["result"] == NOT_RUN})
    if not_run:
        warnings.warn(f"security modes not run, the broker lacks their mechanism: {', '.join(not_run)}", stacklevel=1)
    failing = [
        f"{s['setup']} / {r['client']} {r['version']} / {c.get('mode', 'PLAINTEXT')} {c['scenario']}: {c['detail']}"
        for s in setups
        for r in s["clients"]
        for c in r["cells"] + r["security"]
        if c["result"] == "fail"
    ]
    # A client whose setup failed shows as n/a on every row; that hides the
    # whole column, so it counts as a failure too.
    unavailable = sorted(
        {
            f"{s['setup']} / {r['client']}: {c['detail']}"
            for s in setups
            for r in s["clients"]
            for c in r["cells"] + r["security"]
            if "client not available" in c["detail"]
        }
    )
    problems = failing + unavailable
    assert not problems, f"{len(problems)} failing cell(s) or client(s) (logs in compat/out/):\n" + "\n".join(problems)
    assert proc.returncode == 0, proc.stdout
