"""``python -m tests.chaos SCENARIO [--seed N] [--duration S] [--out DIR]``
from the repository's root; ``--list`` names the scenarios; ``all`` runs
every scenario but the smoke one, one after the other, and ends with a
table of each one's verdict and its failover times. Exits 0 only when
every run found no anomaly (and the harness did all it had to)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .cluster import buggy_command
from .scenarios import SCENARIOS

ALL = "all"
# The smoke run repeats three of the others: not part of ``all``.
FULL_SUITE = [name for name in SCENARIOS if name != "smoke"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="Fault injection against a local 3-broker cluster, checked as Jepsen checks Kafka.",
    )
    parser.add_argument("scenario", nargs="?", choices=[*sorted(SCENARIOS), ALL], metavar="SCENARIO")
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
        print(f"{ALL:<22} every scenario above but smoke, one after the other, and a summary")
        return 0 if args.list else 2
    names = FULL_SUITE if args.scenario == ALL else [args.scenario]
    results = [_run_one(name, args) for name in names]
    if len(results) > 1:
        print(_summary(results))
    return 0 if all(r.ok for r in results) else 1


def _run_one(name: str, args):
    from .runner import run

    out = (args.out / name if args.scenario == ALL else args.out) if args.out else None
    out = out or Path(tempfile.mkdtemp(prefix=f"pybroker-chaos-{name}-"))
    result = None
    try:
        result = run(
            SCENARIOS[name],
            args.seed,
            out,
            duration=args.duration,
            partitions=args.partitions,
            rate=args.rate,
            command=buggy_command(args.bug) if args.bug else None,
        )
        print(result.format(), flush=True)
    finally:
        if args.out is None:
            if result is not None and result.ok:
                shutil.rmtree(out, ignore_errors=True)
            else:
                print(f"kept for a look: {out}", file=sys.stderr)
    return result


def _summary(results) -> str:
    lines = ["", f"{'scenario':<22} {'verdict':<8} {'seconds':>7}  failover (longest gap between acks per fault)"]
    for r in results:
        kinds = r.report.by_kind() or ["-"]
        verdict = "PASS" if r.ok else "FAIL"
        lines.append(f"{r.scenario:<22} {verdict:<8} {r.seconds:>7.0f}  {kinds[0]}")
        lines += [f"{'':<40}{k}" for k in kinds[1:]]
    passed = sum(r.ok for r in results)
    lines.append(f"{passed} of {len(results)} scenarios passed in {sum(r.seconds for r in results) / 60:.1f} min")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
