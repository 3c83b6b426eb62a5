"""IncrementalAlterConfigs v0-1 (api key 44).

v1 is flexible. Each config names an operation: SET (0) a value, DELETE (1)
the override (back to the broker default), APPEND (2) or SUBTRACT (3)
comma-separated items to or from a LIST config such as cleanup.policy
(starting from Kafka's default when the topic has no override; removing
the last item leaves the empty list, valid for cleanup.policy). The
resulting overrides are validated as a whole; validate_only changes
nothing.

Checks, as Kafka's broker then controller (apache/kafka ConfigAdminManager
``preprocess``, ConfigurationControlManager ``incrementalAlterConfigResource``,
ControllerConfigurationValidator): a resource given twice, a key given
twice, a null value for anything but DELETE, or an unknown operation gets
INVALID_REQUEST; APPEND or SUBTRACT on a config that is not a list
INVALID_CONFIG; then the same topic checks as AlterConfigs.

Broker resources: DELETE of a property is a no-op (nothing is set
dynamically), any other operation gets INVALID_REQUEST "Cannot update these
configs dynamically", as Kafka answers for static properties. BROKER_LOGGER
(8) sets or resets the level of one of the broker's Python loggers under
log4j's level names (Kafka's RuntimeLoggerManager checks: an unknown logger
or level INVALID_CONFIG, APPEND/SUBTRACT or resetting the root logger
INVALID_REQUEST).
"""

from __future__ import annotations

import logging

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.incremental_alter_configs_response import (
    AlterConfigsResourceResponse,
    IncrementalAlterConfigsResponse,
)
from pybroker.protocol.registry import ApiKey

from .. import topic_configs as tc
from ..cluster.admin import TopicAdmin
from ..cluster.metadata import MetadataView
from ..config import BrokerConfig
from . import handles
from .alter_configs import (
    alter_topic,
    answer_each,
    check_access,
    check_broker_change,
    check_keys,
    unsupported,
    when_applied,
)

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
OP_NAMES = {SET: "SET", DELETE: "DELETE", APPEND: "APPEND", SUBTRACT: "SUBTRACT"}

log = logging.getLogger("pybroker.configs")


@handles(ApiKey.INCREMENTAL_ALTER_CONFIGS, 0, 1)
def incremental_alter_configs(
    ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, authorizer
):
    def alter(r):
        check_access(ctx, authorizer, r, Operation.ALTER_CONFIGS)
        return _alter(config, metadata, topics, r, req.validate_only)

    responses, pending = answer_each(
        req.resources,
        alter,
        AlterConfigsResourceResponse,
    )
    return when_applied(IncrementalAlterConfigsResponse(responses=responses), pending)


def _alter(config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, resource, validate_only: bool):
    """Check and apply one resource's operations; a topic change still
    applying (cluster mode) is returned as its awaitable."""
    ops = resource.configs
    check_keys([c.name for c in ops])
    nulls = [c.name for c in ops if c.config_operation != DELETE and c.value is None]
    if nulls:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls))
    for c in ops:
        if c.config_operation not in OP_NAMES:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {c.config_operation}")
    kind, name = resource.resource_type, resource.resource_name
    if kind == tc.TOPIC_RESOURCE:
        info = metadata.topic(name)
        current = dict(info.configs) if info is not None else {}
        return alter_topic(config, metadata, topics, name, apply_ops(current, ops), validate_only)
    if kind == tc.BROKER_RESOURCE:
        check_broker_change(config, name, [c.name for c in ops if c.config_operation != DELETE])
    elif kind == tc.BROKER_LOGGER_RESOURCE:
        _alter_loggers(config.node_id, name, ops, validate_only)
    else:
        raise KafkaError(ErrorCode.INVALID_REQUEST, unsupported(kind))
    return None


def apply_ops(configs: dict[str, str], ops) -> dict[str, str]:
    """The overrides after the operations (Kafka's semantics, including
    APPEND skipping items already present)."""
    configs = dict(configs)
    for c in ops:
        op = c.config_operation
        if op == SET:
            configs[c.name] = c.value
        elif op == DELETE:
            configs.pop(c.name, None)
        else:
            if not tc.is_list(c.name):
                raise KafkaError(
                    ErrorCode.INVALID_CONFIG, f"Can't {OP_NAMES[op]} to key {c.name} because its type is not LIST."
                )
            old = configs.get(c.name)
            if old is None:
                old = tc.default_topic_value(c.name)
            items = [part for part in old.split(",") if part]
            for part in _java_split(c.value):
                if op == APPEND and part not in items:
                    items.append(part)
                elif op == SUBTRACT and part in items:
                    items.remove(part)
            configs[c.name] = ",".join(items)
    return configs


def _java_split(text: str) -> list[str]:
    # Java's String.split(","): trailing empty parts dropped, inner ones kept.
    parts = text.split(",")
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


def _alter_loggers(node_id: int, name: str, ops, validate_only: bool) -> None:
    try:
        node = int(name)
    except ValueError:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}") from None
    if node != node_id:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, f"Unexpected node id. Expected {node_id}, but received {name}"
        )
    loggers = tc.broker_loggers()
    for c in ops:
        if c.config_operation in (APPEND, SUBTRACT):
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"{OP_NAMES[c.config_operation]} operation is not allowed for the BROKER_LOGGER resource",
            )
        if c.name not in loggers:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Logger {c.name} does not exist!")
        if c.config_operation == SET and c.value not in tc.LOG_LEVELS:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                f"Cannot set the log level of {c.name} to {c.value} as it is not a supported log level. "
                f"Valid log levels are {', '.join(sorted(tc.LOG_LEVELS))}",
            )
        if c.config_operation == DELETE and c.name == tc.ROOT_LOGGER:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, f"Removing the log level of the {tc.ROOT_LOGGER} logger is not allowed"
            )
    if validate_only:
        return
    for c in ops:
        logger = loggers[c.name]
        if c.config_operation == SET:
            logger.setLevel(tc.LOG_LEVELS[c.value])
            log.warning("Updated the log level of %s to %s", c.name, c.value)
        else:
            logger.setLevel(logging.NOTSET)
            log.warning("Unset the log level of %s", c.name)
