"""Command line entry point."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pybroker", description="A Kafka broker in Python.")
    parser.add_argument("--version", action="version", version=f"pybroker {__version__}")
    parser.parse_args(argv)
    print(f"pybroker {__version__}: the broker itself is not built yet (see README, 'Status').")
    return 0


if __name__ == "__main__":
    sys.exit(main())
