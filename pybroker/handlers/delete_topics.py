"""DeleteTopics v1-6 (api key 20).

v1 adds throttle time; v2 and v3 are v1 (v3: TOPIC_DELETION_DISABLED exists);
v4 is flexible; v5 adds per-topic error messages; v6 names topics by name
or by id (KIP-516) and returns the id.

As Kafka's KRaft controller (apache/kafka ControllerApis ``deleteTopics``,
ReplicationControlManager ``findTopicIds`` / ``findTopicNames``): with
``delete.topic.enable=false`` every topic gets INVALID_REQUEST before v3 and
TOPIC_DELETION_DISABLED from v3; a v6 entry with neither name nor id, or
with both, INVALID_REQUEST; a name or id given twice INVALID_REQUEST; an
unknown name UNKNOWN_TOPIC_OR_PARTITION, an unknown id UNKNOWN_TOPIC_ID; a
name that resolves to an id also given INVALID_REQUEST. Internal topics may
be deleted, as with Kafka. The topic leaves the metadata at once; the
response is sent once its partitions' logs are closed and their
directories renamed ``*-delete`` (a chunk of partitions per turn of the
event loop; the name counts as taken until then), and a worker thread then
removes the files (Kafka too deletes them after answering). Incremental fetch sessions
keep the deleted partitions, as Kafka's do (FetchSession.scala): their next
fetch reports the error, which is how a consumer learns of the deletion;
dropping them silently would leave it waiting on a partition the broker no
longer answers for.

In cluster mode the topic is marked for deletion in ZooKeeper
(``/admin/delete_topics/<t>``, Kafka's AdminZkClient ``deleteTopic``), the
controller deletes it, and the answer waits until this broker's cache no
longer has it (its logs removed here), or is REQUEST_TIMED_OUT at the
request's timeout, as Kafka's ``ZkAdminManager.deleteTopics``.
"""

from __future__ import annotations

from collections import Counter

import trio

from pybroker.acl import Operation, ResourceType
from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.protocol.messages.delete_topics_response import DeletableTopicResult, DeleteTopicsResponse
from pybroker.protocol.primitives import ZERO_UUID
from pybroker.protocol.registry import ApiKey

from ..cluster.admin import TopicAdmin
from ..cluster.metadata import MetadataView
from ..config import BrokerConfig
from . import Later, handles


@handles(ApiKey.DELETE_TOPICS, 1, 6)
def delete_topics(ctx, req, *, config: BrokerConfig, metadata: MetadataView, topics: TopicAdmin, authorizer):
    version = ctx.api_version
    wanted = [(t.name, t.topic_id) for t in req.topics] if version >= 6 else [(n, ZERO_UUID) for n in req.topic_names]
    results = []

    def answer(name, topic_id, code, message=None):
        r = DeletableTopicResult(name=name, error_code=code)
        if version >= 5:
            r.error_message = message
        if version >= 6:
            r.topic_id = topic_id
        results.append(r)

    if not config["delete.topic.enable"]:
        code = ErrorCode.TOPIC_DELETION_DISABLED if version >= 3 else ErrorCode.INVALID_REQUEST
        for name, topic_id in wanted:
            answer(name, topic_id, code)
        return DeleteTopicsResponse(responses=results)

    names = Counter(n for n, i in wanted if n is not None and i == ZERO_UUID)
    ids = Counter(i for n, i in wanted if n is None and i != ZERO_UUID)
    to_delete: dict = {}  # topic id -> name, in request order
    done_names, done_ids = set(), set()
    for name, topic_id in wanted:
        if name is None and topic_id == ZERO_UUID:
            answer(None, ZERO_UUID, ErrorCode.INVALID_REQUEST, "Neither topic name nor id were specified.")
        elif name is not None and topic_id != ZERO_UUID:
            answer(name, topic_id, ErrorCode.INVALID_REQUEST, "You may not specify both topic name and topic id.")
        elif name is None:
            if topic_id in done_ids:
                continue
            done_ids.add(topic_id)
            info = metadata.topic_by_id(topic_id)
            if ids[topic_id] > 1:
                answer(None, topic_id, ErrorCode.INVALID_REQUEST, "Duplicate topic id.")
            elif info is None:
                answer(None, topic_id, ErrorCode.UNKNOWN_TOPIC_ID, ErrorCode.UNKNOWN_TOPIC_ID.message)
            else:
                to_delete[topic_id] = info.name
    for name, topic_id in wanted:
        if name is None or topic_id != ZERO_UUID or name in done_names:
            continue
        done_names.add(name)
        info = metadata.topic(name)
        if names[name] > 1:
            answer(name, ZERO_UUID, ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
        elif info is None:
            answer(name, ZERO_UUID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION.message)
        elif info.topic_id in to_delete or ids[info.topic_id] > 1:
            to_delete.pop(info.topic_id, None)
            answer(
                name,
                info.topic_id,
                ErrorCode.INVALID_REQUEST,
                "The provided topic name maps to an ID that was already supplied.",
            )
        else:
            to_delete[info.topic_id] = name
    deleted = []  # (topic, its result)
    for topic_id, name in to_delete.items():
        if authorizer is not None and not authorizer.allowed(ctx, Operation.DELETE, ResourceType.TOPIC, name):
            answer(name, topic_id, ErrorCode.TOPIC_AUTHORIZATION_FAILED, ErrorCode.TOPIC_AUTHORIZATION_FAILED.message)
            continue
        try:
            info = topics.delete_topic(name)
        except KafkaError as exc:
            answer(name, topic_id, exc.code, exc.message)
            continue
        answer(name, topic_id, ErrorCode.NONE)
        deleted.append((info, results[-1]))
    response = DeleteTopicsResponse(responses=results)
    if not deleted:
        return response

    async def detach():
        deadline = trio.current_time() + max(req.timeout_ms, 0) / 1000
        for info, result in deleted:
            try:
                await topics.detach_logs(info, deadline=deadline)
            except KafkaError as exc:
                result.error_code = exc.code
                if version >= 5:
                    result.error_message = exc.message
        return response

    return Later(detach)
