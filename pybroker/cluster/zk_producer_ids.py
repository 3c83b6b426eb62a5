"""Cluster mode: blocks of producer ids from ZooKeeper, as Kafka's
``ZkProducerIdManager.getNewProducerIdBlock``.

``/latest_producer_id_block`` holds the last block taken
(``{"version":1,"broker":N,"block_start":"…","block_end":"…"}``). A
broker reads it with its version, and takes the next
PRODUCER_ID_BLOCK_SIZE ids by writing their block expecting that
version: a BadVersion means another broker took a block meanwhile, so it
reads again. No two brokers ever take the same block.
"""

from __future__ import annotations

import logging

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
    ZkClient,
)

from . import znodes

log = logging.getLogger("pybroker.cluster")

# Producer ids are int64; Kafka refuses a block that would pass the largest.
LAST_PRODUCER_ID = 2**63 - 1


async def next_block(zk: ZkClient, broker_id: int) -> range:
    """The next block of producer ids, this broker's from now on; KafkaError
    COORDINATOR_NOT_AVAILABLE when ZooKeeper cannot give one (the client
    retries InitProducerId)."""
    try:
        return await _take_block(zk, broker_id)
    except (ConnectionLossError, SessionExpiredError) as exc:
        raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"ZooKeeper: {exc!r}") from None


async def _take_block(zk: ZkClient, broker_id: int) -> range:
    path = znodes.PRODUCER_ID_BLOCK
    size = znodes.PRODUCER_ID_BLOCK_SIZE
    while True:
        try:
            data, stat = await zk.get(path)
        except NoNodeError:
            data, stat = b"", None
        start = 0
        if data:
            try:
                _, _, last = znodes.decode_producer_id_block(data)
            except ValueError as exc:
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot read {path}: {exc}") from None
            if last > LAST_PRODUCER_ID - size:
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "Have exhausted all producerIds.")
            start = last + 1
        block = znodes.encode_producer_id_block(broker_id, start, start + size - 1)
        try:
            if stat is None:
                await zk.create(path, block, makepath=True)
            else:
                await zk.set(path, block, version=stat.version)
        except (BadVersionError, NodeExistsError, NoNodeError):
            continue  # another broker took a block meanwhile: read again
        log.info("Acquired new producerId block %d..%d", start, start + size - 1)
        return range(start, start + size)
