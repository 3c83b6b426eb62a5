"""DescribeConfigs v0-4 (api key 32).

v0 marks entries with is_default instead of a source (Kafka 4 dropped v0;
we keep it for older clients such as sarama 1.22, still in Debian); v1 adds include_synonyms and each entry's config_source (replacing v0's
is_default); v2 is v1; v3 adds include_documentation and each entry's
config_type and documentation; v4 is flexible.

Resources, as Kafka's ConfigHelper (apache/kafka
``core/.../server/ConfigHelper.scala``):

* TOPIC (2): every topic config with its effective value; an illegal name
  gets INVALID_TOPIC_EXCEPTION, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
  Sources and synonyms follow ``pybroker.topic_configs``.
* BROKER (4): named by this node's id, every broker property (read-only:
  nothing here is dynamic); the empty name means the cluster-wide dynamic
  defaults, of which we have none. Another id, or a name that is not a
  number, gets INVALID_REQUEST.
* BROKER_LOGGER (8): the broker's Python loggers and their levels under
  log4j's names; the name must be this node's id (INVALID_REQUEST).
* GROUP (32) and CLIENT_METRICS (16) are not supported: INVALID_REQUEST.

An unknown resource type fails the whole request with INVALID_REQUEST, as
with Kafka. ``configuration_keys`` null or empty means every key.
"""

from __future__ import annotations

from pybroker.acl import Operation
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.describe_configs_response import (
    DescribeConfigsResourceResult,
    DescribeConfigsResponse,
    DescribeConfigsResult,
    DescribeConfigsSynonym,
)
from pybroker.protocol.registry import ApiKey

from .. import topic_configs as tc
from ..cluster.admin import topic_name_problem
from ..cluster.metadata import MetadataView
from ..config import BrokerConfig
from . import handles
from .alter_configs import check_access

KNOWN_TYPES = (
    tc.TOPIC_RESOURCE,
    tc.BROKER_RESOURCE,
    tc.BROKER_LOGGER_RESOURCE,
    tc.CLIENT_METRICS_RESOURCE,
    tc.GROUP_RESOURCE,
)


@handles(ApiKey.DESCRIBE_CONFIGS, 0, 4)
def describe_configs(ctx, req, *, config: BrokerConfig, metadata: MetadataView, authorizer):
    for r in req.resources:
        if r.resource_type not in KNOWN_TYPES:
            message = f"Unexpected resource type {r.resource_type} for resource {r.resource_name}"
            return DescribeConfigsResponse(
                results=[_failed(x, ErrorCode.INVALID_REQUEST, message) for x in req.resources]
            )
    return DescribeConfigsResponse(results=[_describe(ctx, config, metadata, r, req, authorizer) for r in req.resources])


def _failed(resource, code: ErrorCode, message: str | None) -> DescribeConfigsResult:
    return DescribeConfigsResult(
        error_code=code,
        error_message=message,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        configs=[],
    )


def _describe(ctx, config: BrokerConfig, metadata: MetadataView, resource, req, authorizer) -> DescribeConfigsResult:
    docs = ctx.api_version >= 3 and req.include_documentation
    try:
        check_access(ctx, authorizer, resource, Operation.DESCRIBE_CONFIGS)
        entries = _entries(config, metadata, resource, docs)
    except KafkaError as exc:
        return _failed(resource, exc.code, exc.message)
    keys = resource.configuration_keys
    if keys:
        entries = [e for e in entries if e.name in keys]
    return DescribeConfigsResult(
        error_code=ErrorCode.NONE,
        error_message=None,
        resource_type=resource.resource_type,
        resource_name=resource.resource_name,
        configs=[_result(e, req.include_synonyms, ctx.api_version) for e in entries],
    )


def _entries(config: BrokerConfig, metadata: MetadataView, resource, docs: bool) -> list[tc.ConfigEntry]:
    kind, name = resource.resource_type, resource.resource_name
    node_id = config.node_id
    if kind == tc.TOPIC_RESOURCE:
        problem = topic_name_problem(name)
        if problem:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, problem)
        info = metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, None)
        return tc.describe_topic(config, info.configs, docs)
    if kind == tc.BROKER_RESOURCE:
        if not name:
            return []
        if _node_id(name, "Broker id must be an integer, but it is: ") != node_id:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Unexpected broker id, expected {node_id} or empty string, but received {name}",
            )
        return tc.describe_broker(config, docs)
    if kind == tc.BROKER_LOGGER_RESOURCE:
        if not name:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Broker id must not be empty")
        if _node_id(name, "Broker id must be an integer, but it is: ") != node_id:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST, f"Unexpected broker id, expected {node_id} but received {name}"
            )
        return tc.describe_loggers()
    raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {kind}")


def _node_id(name: str, complaint: str) -> int:
    try:
        return int(name)
    except ValueError:
        raise KafkaError(ErrorCode.INVALID_REQUEST, complaint + name) from None


def _result(entry: tc.ConfigEntry, synonyms: bool, version: int) -> DescribeConfigsResourceResult:
    result = DescribeConfigsResourceResult(
        name=entry.name,
        value=None if entry.is_sensitive else entry.value,
        read_only=entry.read_only,
        config_source=entry.source,
        is_sensitive=entry.is_sensitive,
        synonyms=[DescribeConfigsSynonym(name=n, value=v, source=s) for n, v, s in entry.synonyms] if synonyms else [],
    )
    if version == 0:
        result.is_default = entry.source == tc.DEFAULT_CONFIG
    if version >= 3:
        result.config_type = entry.config_type
        result.documentation = entry.documentation
    return result
