"""AlterConfigs v0-2 (api key 33).

v1 is v0 (throttling); v2 is flexible. The legacy, non-incremental API: a
topic's overrides become exactly the configs given (those left out return
to the broker defaults); validate_only checks without changing anything.

Checks, as Kafka's broker then controller (apache/kafka ConfigAdminManager
``preprocess``, ControllerConfigurationValidator, ConfigurationControlManager
``legacyAlterConfigs``): a resource given twice, a key given twice, or a null
value gets INVALID_REQUEST; an empty topic name INVALID_REQUEST; an illegal
topic name INVALID_TOPIC_EXCEPTION; an unknown or invalid config
INVALID_CONFIG, with ConfigDef's message naming the key and the rule
(``pybroker.topic_configs``); then a missing topic UNKNOWN_TOPIC_OR_PARTITION.

Broker resources (empty name, or this node's id; another id gets
INVALID_REQUEST): every broker property here is static, so setting any
gets INVALID_REQUEST "Cannot update these configs dynamically", which is
what Kafka answers for its static properties. BROKER_LOGGER is not part of
this API (INVALID_REQUEST, as with Kafka); GROUP and CLIENT_METRICS are not
supported (INVALID_REQUEST).

In cluster mode a topic's configs are written to ZooKeeper
(``/config/topics/<t>`` and a change notification, Kafka's AdminZkClient
``changeTopicConfig``) and the answer waits until this broker has applied
them; every broker applies them as the notification reaches it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.alter_configs_response import AlterConfigsResourceResponse, AlterConfigsResponse
from pybroker.protocol.registry import ApiKey

from .. import topic_configs as tc
from ..cluster.admin import TopicAdmin, topic_name_problem
from ..cluster.metadata import MetadataView
from ..config import BrokerConfig
from . import Later, handles


@handles(ApiKey.ALTER_CONFIGS, 0, 2)
def alter_configs(ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, authorizer):
    def alter(r):
        check_access(ctx, authorizer, r, Operation.ALTER_CONFIGS)
        check_keys([c.name for c in r.configs])
        nulls = [c.name for c in r.configs if c.value is None]
        if nulls:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(nulls))
        if r.resource_type == tc.TOPIC_RESOURCE:
            overrides = {c.name: c.value for c in r.configs}
            return alter_topic(config, metadata, topics, r.resource_name, overrides, req.validate_only)
        if r.resource_type == tc.BROKER_RESOURCE:
            check_broker_change(config, r.resource_name, [c.name for c in r.configs])
            return None
        raise KafkaError(ErrorCode.INVALID_REQUEST, unsupported(r.resource_type))

    responses, pending = answer_each(req.resources, alter, AlterConfigsResourceResponse)
    return when_applied(AlterConfigsResponse(responses=responses), pending)


def check_access(ctx, authorizer, resource, op: Operation) -> None:
    """``op`` (ALTER_CONFIGS or DESCRIBE_CONFIGS) on the topic, or on the
    cluster for a broker or its loggers, else Kafka's authorization error."""
    if authorizer is None:
        return
    kind, name = resource.resource_type, resource.resource_name
    if kind == tc.TOPIC_RESOURCE and not authorizer.allowed(ctx, op, ResourceType.TOPIC, name):
        raise KafkaError(ErrorCode.TOPIC_AUTHORIZATION_FAILED, None)
    if kind in (tc.BROKER_RESOURCE, tc.BROKER_LOGGER_RESOURCE) and not authorizer.cluster(ctx, op):
        raise KafkaError(ErrorCode.CLUSTER_AUTHORIZATION_FAILED, None)


def answer_each(resources, alter, response_class) -> tuple[list, list]:
    """Run ``alter(resource)`` for each resource (one given twice is refused
    whole) and answer each with its own error: the loop both AlterConfigs
    APIs share. Also returns the changes still being applied (cluster
    mode): (response, awaitable) for each ``alter`` that returned one."""
    repeated = Counter((r.resource_type, r.resource_name) for r in resources)
    responses, pending = [], []
    for r in resources:
        code, message, applying = ErrorCode.NONE, None, None
        try:
            if repeated[(r.resource_type, r.resource_name)] > 1:
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Each resource must appear at most once.")
            applying = alter(r)
        except KafkaError as exc:
            code, message = exc.code, exc.message
        response = response_class(
            error_code=code, error_message=message, resource_type=r.resource_type, resource_name=r.resource_name
        )
        responses.append(response)
        if applying is not None:
            pending.append((response, applying))
    return responses, pending


def when_applied(response, pending: list):
    """The response now, or once every pending change has applied, each
    failure answered on its own resource."""
    if not pending:
        return response

    async def wait():
        for resource, applying in pending:
            try:
                await applying
            except KafkaError as exc:
                resource.error_code, resource.error_message = exc.code, exc.message
        return response

    return Later(wait)


def unsupported(resource_type: int) -> str:
    if resource_type in (tc.GROUP_RESOURCE, tc.CLIENT_METRICS_RESOURCE):
        return f"Unsupported resource type {resource_type}"
    return f"Unknown resource type {resource_type}"


def check_keys(names: list[str]) -> None:
    if len(set(names)) != len(names):
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")


def alter_topic(
    config: BrokerConfig,
    metadata: MetadataView,
    topics: TopicAdmin,
    name: str,
    overrides: dict[str, str],
    validate_only: bool,
) -> Awaitable[None] | None:
    """Make ``overrides`` the topic's configs, after Kafka's checks; what
    ``TopicAdmin.set_topic_configs`` returns (cluster mode: the change
    still applying)."""
    if not name:
        raise KafkaError(ErrorCode.INVALID_REQUEST, "Default topic resources are not allowed.")
    problem = topic_name_problem(name)
    if problem:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
    problem = tc.topic_config_problem(overrides, config.log_config)
    if problem:
        raise KafkaError(ErrorCode.INVALID_CONFIG, problem)
    info = metadata.topic(name)
    if info is None:
        raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")
    if not validate_only and overrides != info.configs:
        return topics.set_topic_configs(name, overrides)
    return None


def check_broker_change(config: BrokerConfig, name: str, changed: list[str]) -> None:
    """A broker resource is this node (or the cluster default, empty name);
    nothing in it can change at run time."""
    if name:
        try:
            node = int(name)
        except ValueError:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}") from None
        if node != config.node_id:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, f"Unexpected broker id, expected {config.node_id}, but received {name}"
            )
    problem = tc.broker_change_problem(changed)
    if problem:
        raise KafkaError(ErrorCode.INVALID_REQUEST, problem)
