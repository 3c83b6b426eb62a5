"""``pybroker``: run a broker from the command line."""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
import traceback

import trio

from pybroker.storage.dirs import LogDirError

from . import __version__
from .broker import ListenerError, LogDirsFailed
from .cluster.zk_registration import ClusterJoinError
from .config import BROKER_PROPERTIES, BrokerConfig, ConfigError, default_text
from .zk import ZkConnectTimeout

# Errors that name something the operator must fix (a full disk stops the
# broker on purpose too); printed as one line.
OPERATOR_PROBLEMS = (ConfigError, LogDirError, ListenerError, LogDirsFailed, ZkConnectTimeout, ClusterJoinError)

MAIN_PROPERTIES = (
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "node.id",
    "num.partitions",
    "auto.create.topics.enable",
    "log.retention.hours",
    "log.segment.bytes",
    "message.max.bytes",
    "zookeeper.connect",
)


def _epilog() -> str:
    lines = ["main properties (Kafka names; any broker property works with --override):"]
    for key in MAIN_PROPERTIES:
        prop = BROKER_PROPERTIES[key]
        lines.append(f"  {key:<28} {prop.doc} (default: {default_text(prop) or 'none'})")
    lines.append("environment: PYBROKER_LOG_DIRS=... sets log.dirs, and so on for every property")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pybroker",
        description="A Kafka broker in Python. Serves PLAINTEXT on 127.0.0.1:9092 with data in ./pybroker-data by default.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pybroker {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", help="server.properties-style file")
    parser.add_argument("--override", metavar="KEY=VALUE", action="append", default=[], help="set a property (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = BrokerConfig.load(args.config, args.override)
    except ConfigError as exc:
        print(f"pybroker: configuration error: {exc}", file=sys.stderr)
        return 2
    _raise_open_files_limit()
    try:
        trio.run(_serve, config)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        # A port in use or a log dir in use is the operator's to fix: say so
        # in one line. Anything else is our bug: print the whole traceback.
        cause = _find(exc, OPERATOR_PROBLEMS)
        if cause is None:
            traceback.print_exception(exc)
            print(f"pybroker: stopped by an unexpected error: {exc!r}", file=sys.stderr)
        else:
            print(f"pybroker: {cause}", file=sys.stderr)
        return 1
    return 0


def _raise_open_files_limit() -> None:
    """Every partition holds its active segment open, every client a socket:
    the usual soft limit of 1024 descriptors is far below what a broker with
    thousands of partitions needs (Kafka's docs ask for 100,000). Take what
    the hard limit allows, as a broker's service unit would."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        logging.getLogger("pybroker").warning("could not raise the open files limit: %s", exc)


def _find(exc: BaseException, kind) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


async def _serve(config: BrokerConfig) -> None:
    from .broker import Broker

    broker = Broker(config, load=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_signals, broker)
        await broker.run()
        nursery.cancel_scope.cancel()


async def _signals(broker) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
