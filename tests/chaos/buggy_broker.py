"""A broker with a bug put in on purpose, to show the checker catches real
ones: ``python -m tests.chaos.buggy_broker --bug BUG <pybroker's args>``
patches the broker in this process, then runs pybroker's own entry point.
pybroker's source is not touched.

Bugs:

``hw-is-leo``
    a leader's high watermark is its own log end: the followers and
    min.insync.replicas are not waited for, so acks=all is answered as soon
    as the leader has the batch. Kill the leader while followers trail and
    the new leader lacks writes that were acknowledged: lost writes, and
    the old leader, back as a follower, truncates them away.
"""

from __future__ import annotations

import argparse
import sys


def _hw_is_leo() -> None:
    from pybroker.replica import isr

    original = getattr(isr.LeaderState, "high_watermark", None)
    if original is None:  # the broker changed under us: say so rather than run unpatched
        raise SystemExit("buggy_broker: pybroker.replica.isr.LeaderState.high_watermark is gone; update the bug")

    def high_watermark(self, current, log_start, leader_leo, *args, **kwargs):
        return max(current, log_start, leader_leo)

    isr.LeaderState.high_watermark = high_watermark


BUGS = {"hw-is-leo": _hw_is_leo}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.buggy_broker", add_help=False)
    parser.add_argument("--bug", required=True, choices=sorted(BUGS))
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    BUGS[args.bug]()
    print(f"buggy_broker: running with bug {args.bug}", file=sys.stderr, flush=True)
    from pybroker.cli import main as pybroker_main

    return pybroker_main(rest)


if __name__ == "__main__":
    sys.exit(main())
