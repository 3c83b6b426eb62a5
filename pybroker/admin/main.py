"""The admin commands of ``pybroker``: topics, produce, consume, groups,
configs and ``cluster describe``, against any Kafka-compatible cluster.

The parser is argparse: it is in the standard library (the broker's
``pip install`` gains no dependency), and Kafka's long options
(``--bootstrap-server``, ``--replication-factor``), repeatable ones
(``--config k=v``, ``--property``) and nested subcommands
(``topics create``) are what it does natively. Usage errors exit 2 (argparse's
code), Kafka and connection errors exit 1 with one line on stderr that
starts with Kafka's error name.
"""

from __future__ import annotations

import argparse
import os
import sys

from .client import DEFAULT_BOOTSTRAP, AdminError, Client
from .security import load as load_security

ADMIN_COMMANDS = ("topics", "produce", "consume", "groups", "configs", "scram-credentials", "acls")


def _common(json_output: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bootstrap-server", default=DEFAULT_BOOTSTRAP, metavar="HOST:PORT[,HOST:PORT]",
                        help=f"brokers to connect to (default {DEFAULT_BOOTSTRAP})")
    common.add_argument("--request-timeout-ms", type=int, default=30_000, metavar="MS",
                        help="how long to wait for a broker's answer (default 30000)")
    common.add_argument("--command-config", metavar="FILE",
                        help="client properties: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.* (PEM)")
    if json_output:
        common.add_argument("--json", action="store_true", help="print JSON for scripts")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pybroker", description="Kafka admin commands (any Kafka-compatible cluster).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    read, write = _common(), _common(json_output=False)
    _topics(commands, read, write)
    _produce(commands, write)
    _consume(commands, read)
    _groups(commands, read)
    _configs(commands, read)
    _acls(commands, read, write)
    _scram(commands, read, write)
    cluster = commands.add_parser("cluster", help="describe a cluster (`pybroker cluster --brokers 3` starts one)")
    cluster_commands = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    cluster_commands.add_parser("describe", parents=[read], help="brokers, controller, partitions needing attention")
    return parser


def _topics(commands, read, write) -> None:
    topics = commands.add_parser("topics", help="list, describe, create, delete and alter topics")
    actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[read], help="topic names")
    describe = actions.add_parser("describe", parents=[read], help="partitions, leaders, replicas, ISR, offsets, configs")
    describe.add_argument("--topic", help="one topic (default: all)")
    create = actions.add_parser("create", parents=[write], help="create a topic")
    create.add_argument("--topic", required=True)
    create.add_argument("--partitions", type=int, help="default: the broker's num.partitions")
    create.add_argument("--replication-factor", type=int, help="default: the broker's default.replication.factor")
    create.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="topic config (repeatable)")
    create.add_argument("--if-not-exists", action="store_true")
    delete = actions.add_parser("delete", parents=[write], help="delete a topic")
    delete.add_argument("--topic", required=True)
    delete.add_argument("--if-exists", action="store_true")
    alter = actions.add_parser("alter", parents=[write], help="add partitions, set or delete configs")
    alter.add_argument("--topic", required=True)
    alter.add_argument("--partitions", type=int, help="new total partition count (CreatePartitions)")
    alter.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="set a config (repeatable)")
    alter.add_argument("--delete-config", action="append", default=[], metavar="KEY", help="remove a config (repeatable)")


def _produce(commands, write) -> None:
    produce = commands.add_parser("produce", parents=[write], help="write records from arguments or stdin lines")
    produce.add_argument("values", nargs="*", help="record values (default: one per line of stdin)")
    produce.add_argument("--topic", required=True)
    produce.add_argument("--partition", type=int, help="default: murmur2(key) like Kafka's client, round-robin without key")
    produce.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                         help="parse.key=true, key.separator=SEP (Kafka's console producer)")
    produce.add_argument("-K", dest="kcat_separator", metavar="SEP", help="key and value split at SEP (kcat's -K)")
    produce.add_argument("--header", "-H", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    produce.add_argument("--acks", default="-1", choices=["0", "1", "-1", "all"])
    produce.add_argument("--compression-type", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])


def _consume(commands, read) -> None:
    consume = commands.add_parser("consume", parents=[read], help="print records (follows the topic by default)")
    consume.add_argument("--topic", required=True)
    consume.add_argument("--partition", type=int, action="append", help="only this partition (repeatable)")
    start = consume.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true")
    start.add_argument("--offset", metavar="earliest|latest|N")
    start.add_argument("--timestamp", type=int, metavar="MS", help="from the first record at or after this time")
    consume.add_argument("--group", help="consume as a member of this consumer group, committing on exit")
    consume.add_argument("--max-messages", type=int, metavar="N", help="exit after N records")
    consume.add_argument("--timeout-ms", type=int, metavar="MS", help="exit after this long without a record")
    consume.add_argument("--format", choices=["text", "json"], default="text")
    consume.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                         help="print.key, print.partition, print.offset, print.timestamp, print.headers,"
                              " key.separator, line.separator (Kafka's console consumer)")
    consume.add_argument("--isolation-level", choices=["read_uncommitted", "read_committed"], default="read_uncommitted")


def _groups(commands, read) -> None:
    groups = commands.add_parser("groups", help="list, describe, delete consumer groups and reset their offsets")
    actions = groups.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", parents=[read], help="group ids")
    describe = actions.add_parser("describe", parents=[read], help="state, members, lag per partition")
    describe.add_argument("--group", action="append", required=True, help="repeatable")
    delete = actions.add_parser("delete", parents=[read], help="delete empty groups")
    delete.add_argument("--group", action="append", required=True, help="repeatable")
    reset = actions.add_parser("reset-offsets", parents=[read], help="move committed offsets (kafka-consumer-groups.sh)")
    reset.add_argument("--group", required=True)
    scope = reset.add_mutually_exclusive_group(required=True)
    scope.add_argument("--topic", action="append", metavar="TOPIC[:P,P...]", help="repeatable")
    scope.add_argument("--all-topics", action="store_true", help="every topic the group has offsets for")
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true")
    target.add_argument("--to-latest", action="store_true")
    target.add_argument("--to-current", action="store_true")
    target.add_argument("--to-offset", type=int, metavar="N")
    target.add_argument("--to-datetime", metavar="YYYY-MM-DDTHH:mm:SS.sss", help="ISO 8601; local time without zone")
    target.add_argument("--shift-by", type=int, metavar="N")
    mode = reset.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the plan only (the default)")
    mode.add_argument("--execute", action="store_true", help="commit the new offsets")


def _configs(commands, read) -> None:
    configs = commands.add_parser("configs", help="describe and alter topic and broker configs, and client quotas")
    actions = configs.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name in ("describe", "alter"):
        action = actions.add_parser(name, parents=[read])
        # Repeated for a quota of a user's client id (users, then clients), as kafka-configs.sh takes it.
        action.add_argument("--entity-type", required=True, action="append",
                            choices=["topics", "brokers", "users", "clients"])
        action.add_argument("--entity-name", dest="entity_names", action="append",
                            help="topic name, broker id, user or client id (describe: default all)")
        action.add_argument("--entity-default", dest="entity_names", action="append_const", const=None,
                            help="the default user or client id (quotas)")
        if name == "describe":
            action.add_argument("--all", action="store_true", help="every config, not only those set on the entity")
        else:
            action.add_argument("--add-config", action="append", default=[], metavar="K=V[,K2=V2]")
            action.add_argument("--delete-config", action="append", default=[], metavar="K[,K2]")


def _scram(commands, read, write) -> None:
    scram = commands.add_parser("scram-credentials", help="list, add and delete SCRAM users (KIP-554)")
    actions = scram.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[read], help="users and their mechanisms and iterations")
    listing.add_argument("--user", action="append", help="only this user (repeatable; default every user)")
    add = actions.add_parser("add", parents=[write], help="set a user's password for a mechanism")
    delete = actions.add_parser("delete", parents=[write], help="delete a user's credential for a mechanism")
    for action in (add, delete):
        action.add_argument("--user", required=True)
        action.add_argument("--mechanism", default="SCRAM-SHA-512", help="SCRAM-SHA-256 or SCRAM-SHA-512 (default)")
    add.add_argument("--password", required=True)
    add.add_argument("--iterations", type=int, default=4096, help="4096 to 16384 (default 4096)")


def _acls(commands, read, write) -> None:
    acls = commands.add_parser("acls", help="list, add and remove ACLs (kafka-acls.sh)")
    from .acls import add_arguments

    add_arguments(acls.add_subparsers(dest="action", required=True, metavar="ACTION"), read, write)


def _handler(args):
    # Imported here: each command loads only the modules it uses.
    if args.command == "topics":
        from . import topics as module
    elif args.command == "produce":
        from . import produce as module
    elif args.command == "consume":
        from . import consume as module
    elif args.command == "groups":
        from . import groups as module
    elif args.command == "configs":
        from . import configs as module
    elif args.command == "acls":
        from . import acls as module
    elif args.command == "scram-credentials":
        from . import scram as module
    else:
        from . import cluster as module
    action = getattr(args, "action", None) or "run"
    return getattr(module, f"{action.replace('-', '_')}_command")


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    command = _handler(args)
    try:
        security = load_security(getattr(args, "command_config", None))
        with Client(args.bootstrap_server, timeout=args.request_timeout_ms / 1000, security=security) as client:
            return command(client, args)
    except AdminError as exc:
        print(f"pybroker: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `pybroker consume ... | head` closed our stdout: stop quietly, and
        # keep the interpreter's last flush from complaining about it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
