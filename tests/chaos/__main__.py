"""``python -m tests.chaos SCENARIO [--seed N] [--duration S] [--out DIR]``
from the repository's root; ``--list`` names the scenarios. Exits 0 only
when the run found no anomaly (and the harness did all it had to)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .cluster import buggy_command
from .scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Fault injection against a local 3-broker cluster, checked as Jepsen checks Kafka.",
    )
    parser.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS), metavar="SCENARIO")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--seed", type=int, default=1, help="draws the schedule (default 1)")
    parser.add_argument("--duration", type=float, help="least seconds the workload runs (random: seconds of faults)")
    parser.add_argument("--rate", type=float, default=100, help="sends per second per producer (default 100)")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument(
        "--out",
        type=Path,
        help="keep the history, logs and report here (default: a temporary dir, kept only on failure)",
    )
    parser.add_argument("--bug", help="run the brokers as tests.chaos.buggy_broker with this bug (e.g. hw-is-leo)")
    args = parser.parse_args(argv)
    if args.list or args.scenario is None:
        for s in SCENARIOS.values():
            print(f"{s.name:<22} {s.description}")
        return 0 if args.list else 2
    from .runner import run

    out = args.out or Path(tempfile.mkdtemp(prefix="pybroker-chaos-"))
    ok = False
    try:
        result = run(
            SCENARIOS[args.scenario],
            args.seed,
            out,
            duration=args.duration,
            partitions=args.partitions,
            rate=args.rate,
            command=buggy_command(args.bug) if args.bug else None,
        )
        print(result.format())
        ok = result.ok
    finally:
        if args.out is None:
            if ok:
                shutil.rmtree(out, ignore_errors=True)
            else:
                print(f"kept for a look: {out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
