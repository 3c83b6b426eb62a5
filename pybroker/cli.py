"""``pybroker``: run a broker from the command line."""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
import time
import traceback

import trio

from pybroker.storage.dirs import LogDirError

from . import __version__
from .broker import ListenerError, LogDirsFailed
from .cluster.zk_registration import ClusterJoinError
from .config import BROKER_PROPERTIES, DEV_COMMAND_DEFAULTS, DEV_DEFAULTS, BrokerConfig, ConfigError, default_text
from .kafka_keys import KAFKA_BROKER_KEYS
from .logs import configure_logging
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
    lines.append("`pybroker --list-properties` lists them all; `pybroker topics --help` and docs/CLI.md: the admin CLI")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from .admin.main import ADMIN_COMMANDS  # the admin CLI (docs/CLI.md)
    from .admin.main import main as admin_main

    if argv[:1] and argv[0] in ADMIN_COMMANDS or argv[:2] == ["cluster", "describe"]:
        return admin_main(argv)
    if argv[:1] == ["cluster"]:
        return cluster_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="pybroker",
        description="A Kafka broker in Python. Serves PLAINTEXT on 127.0.0.1:9092 with data in ./pybroker-data by default."
        " `pybroker cluster --brokers 3` runs a local cluster instead (see `pybroker cluster --help`).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pybroker {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", help="server.properties-style file")
    parser.add_argument("--override", metavar="KEY=VALUE", action="append", default=[], help="set a property (repeatable)")
    parser.add_argument(
        "--dev",
        action="store_true",
        help="developer defaults: "
        + ", ".join(f"{k}={v}" for k, v in {**DEV_DEFAULTS, **DEV_COMMAND_DEFAULTS}.items()),
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    parser.add_argument("--list-properties", action="store_true", help="print every property, its default and doc")
    args = parser.parse_args(argv)
    if args.list_properties:
        print(properties_text(), end="")
        return 0
    configure_logging(args.log_level, args.log_format)
    try:
        config = BrokerConfig.load(
            args.config, args.override, dev=args.dev, defaults=DEV_COMMAND_DEFAULTS if args.dev else None
        )
    except ConfigError as exc:
        _print_problems(exc)
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


def _print_problems(exc: ConfigError) -> None:
    for problem in exc.problems:
        print(f"pybroker: configuration error: {problem}", file=sys.stderr)


def properties_text() -> str:
    """Every property pybroker reads: name, default, doc."""
    width = max(map(len, BROKER_PROPERTIES))
    lines = [f"{'property':<{width}}  {'default':<28}  description"]
    for name in sorted(BROKER_PROPERTIES):
        prop = BROKER_PROPERTIES[name]
        default = default_text(prop) or "(none)"
        lines.append(f"{name:<{width}}  {default:<28}  {prop.doc}".rstrip())
    lines.append("")
    others = len(KAFKA_BROKER_KEYS - set(BROKER_PROPERTIES))
    lines.append(f"Kafka's other broker properties ({others}) are accepted with a warning and ignored;"
                 " any other key is an error.")
    return "\n".join(lines) + "\n"


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


def cluster_main(argv: list[str]) -> int:
    """``pybroker cluster``: ZooKeeper and N brokers on this machine until Ctrl-C."""
    from .local_cluster import CHROOT, LocalCluster, consecutive_free_ports, dev_defaults
    from .zk.server import ZooKeeperNotFound

    parser = argparse.ArgumentParser(
        prog="pybroker cluster",
        description="Run a local cluster: one ZooKeeper and N brokers on consecutive ports of 127.0.0.1,"
        " until Ctrl-C or SIGTERM. Needs Java and ZooKeeper (Debian/Ubuntu: apt-get install zookeeper).",
    )
    parser.add_argument("--brokers", type=int, default=3, metavar="N", help="how many brokers (default 3)")
    parser.add_argument(
        "--port", type=int, default=9092, help="port of broker 1, the others follow it (default 9092; 0: any free ones)"
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="keep data and logs here (default: a temporary dir, removed on exit)"
    )
    parser.add_argument(
        "--zookeeper-jar",
        metavar="PATH",
        help="ZooKeeper's jar or lib folder (default: $PYBROKER_ZOOKEEPER_JAR, else Debian's)",
    )
    parser.add_argument(
        "--override", metavar="KEY=VALUE", action="append", default=[], help="a property of every broker"
    )
    parser.add_argument(
        "--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="of the brokers"
    )
    args = parser.parse_args(argv)
    if args.brokers < 1:
        parser.error("--brokers must be at least 1")
    overrides = dict(item.partition("=")[::2] for item in args.override)
    try:
        # Refused here in one line, rather than by every broker in its log.
        BrokerConfig({**dev_defaults(args.brokers), **overrides, "zookeeper.connect": "127.0.0.1:2181" + CHROOT})
    except ConfigError as exc:
        _print_problems(exc)
        return 2
    cluster = LocalCluster(
        args.brokers,
        data_dir=args.data_dir,
        base_port=args.port or consecutive_free_ports(args.brokers),
        zookeeper_jar=args.zookeeper_jar,
        overrides=overrides,
        log_level=args.log_level,
    )
    # SIGTERM ends the wait below the way Ctrl-C does, and both stop the
    # cluster (SIGINT too when started ignoring it, as a shell's `&` does).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cluster.start()
        _print_cluster(cluster, kept=args.data_dir is not None)
        reported: set[int] = set()
        while True:
            for broker in cluster.brokers:
                if not broker.alive() and broker.node_id not in reported:
                    reported.add(broker.node_id)
                    code = broker.process.proc.returncode
                    print(f"broker {broker.node_id} exited with {code}; see {broker.log_path}", flush=True)
            time.sleep(0.5)  # nothing to do but notice a broker dying
    except KeyboardInterrupt:
        print("stopping the cluster", flush=True)
        return 0
    except ZooKeeperNotFound as exc:
        print(f"pybroker: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        print(f"pybroker: the cluster did not start: {exc}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(note, file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C would leave processes behind: stopping is bounded anyway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cluster.stop()


def _print_cluster(cluster, kept: bool) -> None:
    zk = cluster.zookeeper
    print(f"ZooKeeper {zk.connect} (pid {zk.pid}) chroot {cluster.chroot} log {zk.log_path}", flush=True)
    for b in cluster.brokers:
        print(f"broker {b.node_id} {b.bootstrap} (pid {b.pid}) data {b.data_dir} log {b.log_path}")
    print(f"controller: broker {cluster.controller_id()}")
    where = "kept" if kept else "removed on exit; --data-dir keeps them"
    print(f"data and logs in {cluster.data_dir} ({where})")
    print(f"bootstrap servers: {cluster.bootstrap_servers}")
    print("Ctrl-C stops the cluster.", flush=True)


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
