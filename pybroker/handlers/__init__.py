"""Request handlers, one module per API.

A module registers its handler with ``@handles(ApiKey.X, min, max)``; the
range is exactly what ApiVersions advertises. A handler runs on the broker's
Trio thread in request order for its connection and returns either the
response, ``None`` (no response: Produce with acks=0), or ``Later`` wrapping
an async function for a response that must wait (a Fetch long-poll, an
fsync for acks=all): the connection goes on with the next request while it
waits, and responses still leave in request order.

``Hold`` is for work that must finish before the request changes broker
state, but is too long for the event loop (checking a large compressed
batch in a worker thread): the connection reads no further request until
it is done, so its requests still take effect in the order sent, while
every other connection carries on. Its function returns what the handler
would have: a response, None, or a Later.

A handler receives the services it uses, not the broker: its keyword-only
parameters name them (``def produce(ctx, req, *, replicas, config)``), and
``bind`` hands each handler those services, by name, from the composition
root's table. A refusal is raised as ``KafkaError`` (protocol.errors).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pybroker.protocol.registry import ApiKey

MODULES = (
    "api_versions",
    "sasl_handshake",
    "sasl_authenticate",
    "user_scram_credentials",
    "client_quotas",
    "metadata",
    "produce",
    "fetch",
    "list_offsets",
    "init_producer_id",
    "create_topics",
    "delete_topics",
    "create_partitions",
    "delete_records",
    "describe_configs",
    "alter_configs",
    "incremental_alter_configs",
    "describe_cluster",
    "describe_log_dirs",
    "describe_producers",
    "offset_for_leader_epoch",
    "find_coordinator",
    "join_group",
    "sync_group",
    "heartbeat",
    "leave_group",
    "consumer_group_heartbeat",
    "consumer_group_describe",
    "offset_commit",
    "offset_fetch",
    "offset_delete",
    "list_groups",
    "describe_groups",
    "delete_groups",
    "elect_leaders",
    "controlled_shutdown",
    "add_partitions_to_txn",
    "add_offsets_to_txn",
    "end_txn",
    "txn_offset_commit",
    "write_txn_markers",
    "describe_transactions",
    "list_transactions",
    "describe_acls",
    "create_acls",
    "delete_acls",
)


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection instead of answering."""


@dataclass(frozen=True)
class Later:
    """A response still being worked out."""

    run: Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Hold:
    """Work the connection waits for before reading its next request."""

    run: Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Handler:
    api_key: ApiKey
    min_version: int
    max_version: int
    fn: Callable
    # The services ``fn`` takes, by keyword (its keyword-only parameters).
    services: tuple[str, ...] = ()


HANDLERS: dict[int, Handler] = {}


def handles(api_key: ApiKey, min_version: int, max_version: int):
    def register(fn):
        if api_key in HANDLERS:
            raise RuntimeError(f"two handlers for {api_key.name}")
        HANDLERS[api_key] = Handler(api_key, min_version, max_version, fn, services_of(fn))
        return fn

    return register


def load_all() -> dict[int, Handler]:
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return HANDLERS


def services_of(fn: Callable) -> tuple[str, ...]:
    return tuple(p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY)


def bind(services: Mapping[str, Any]) -> dict[int, Handler]:
    """Every handler with the services it names already given: the table a
    connection dispatches on. A service no one provides is a wiring bug,
    found here at start-up rather than on the first request."""
    bound = {}
    for key, handler in load_all().items():
        missing = [name for name in handler.services if name not in services]
        if missing:
            raise LookupError(f"{handler.api_key.name} handler needs {', '.join(missing)}, which nothing provides")
        given = {name: services[name] for name in handler.services}
        bound[key] = replace(handler, fn=functools.partial(handler.fn, **given)) if given else handler
    return bound
