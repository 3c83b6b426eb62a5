"""The clients of a chaos run, each a thread logging everything it is told
to the history: idempotent acks=all producers of two libraries
(confluent-kafka and kafka-python) at a bounded rate, an ``assign()``
consumer reading every partition from the beginning, a group consumer
committing every second, and a Metadata watcher recording each change of
leader, epoch or ISR. Then the final read: every partition's records
[log start, high watermark) through a fresh consumer, and each replica's
batches from its files.

Producers write ``"<producer>-<seq>"`` to partition ``seq % partitions``,
so the checker can tell each producer's send order. Every thread stops
within a bound once asked (``Workload.stop``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable

from pybroker.local_cluster import wait_for

from ..cluster import replica_files
from .cluster import ChaosCluster
from .history import History, value_of

DELIVERY_TIMEOUT_MS = 120_000
DRAIN_S = 30  # what a producer is given at the end for its last acks
# librdkafka logs each failed connection to stderr; the errors reach the
# history through error_cb anyway, so only its critical lines are printed.
QUIET = {"log_level": 2}
MAX_RESETS = 20  # re-assignments of the reader after truncations, each recorded


class Client(threading.Thread):
    """A thread that runs until ``stop`` and records what killed it, if anything."""

    def __init__(self, name: str, history: History):
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.client = name
        self.history = history
        self.stopping = threading.Event()
        self.crashed: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # noqa: BLE001 - a harness bug or a client's refusal: kept for the report
            self.crashed = exc
            self.history.record(
                "client_error",
                client=self.client,
                error=type(exc).__name__,
                retriable=False,
                fatal=True,
                truncation=False,
                message=str(exc)[:500],
            )

    def work(self) -> None:
        raise NotImplementedError

    # librdkafka errors (a KafkaError) that mean the client saw its log cut back.
    TRUNCATION: frozenset[str] = frozenset()

    def _client_error(self, err) -> None:
        """librdkafka's error callback: every client error goes into the history."""
        self.history.record(
            "client_error",
            client=self.client,
            error=err.name(),
            retriable=err.retriable(),
            fatal=err.fatal(),
            truncation=err.name() in self.TRUNCATION,
            message=err.str(),
        )

    def pace(self, rate: float) -> Callable[[], float]:
        """Seconds to wait before the next send, to hold ``rate`` sends/s."""
        interval = 1 / rate
        next_at = time.monotonic()

        def wait() -> float:
            nonlocal next_at
            next_at = max(next_at + interval, time.monotonic() - 1)  # no burst after a stall
            return max(0.0, next_at - time.monotonic())

        return wait


# -- producers -------------------------------------------------------------------------


class ConfluentProducer(Client):
    # Errors after which the message is certainly not in the log (librdkafka's
    # NOT_PERSISTED): refused before it was sent or by a check of the batch.
    DEFINITE = frozenset(
        {"MSG_SIZE_TOO_LARGE", "_MSG_SIZE_TOO_LARGE", "INVALID_RECORD", "RECORD_LIST_TOO_LARGE", "CORRUPT_MESSAGE"}
    )

    def __init__(self, name, history, bootstrap, topic, partitions, rate, acks="all", **conf):
        super().__init__(name, history)
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.conf = {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "enable.idempotence": acks == "all",
            "linger.ms": 5,
            "message.timeout.ms": DELIVERY_TIMEOUT_MS,
            "error_cb": self._client_error,
            **QUIET,
            **conf,
        }

    def _report(self, partition: int, value: str) -> Callable:
        def on_delivery(err, msg) -> None:
            if err is None:
                self.history.record("ack", producer=self.client, value=value, partition=partition, offset=msg.offset())
            else:
                self.history.record(
                    "fail",
                    producer=self.client,
                    value=value,
                    partition=partition,
                    error=err.name(),
                    retriable=err.retriable(),
                    definite=err.name() in self.DEFINITE,
                )

        return on_delivery

    def work(self) -> None:
        from confluent_kafka import KafkaException, Producer

        producer = Producer(self.conf)
        wait = self.pace(self.rate)
        seq = 0
        try:
            while not self.stopping.is_set():
                partition, value = seq % self.partitions, value_of(self.client, seq)
                self.history.record("send", producer=self.client, value=value, partition=partition)
                while not self.stopping.is_set():
                    try:
                        producer.produce(
                            self.topic,
                            value=value.encode(),
                            partition=partition,
                            on_delivery=self._report(partition, value),
                        )
                        break
                    except BufferError:  # the local queue is full: serve callbacks and try again
                        producer.poll(0.05)
                seq += 1
                producer.poll(wait())  # callbacks, and the pause that holds the rate
        except KafkaException as exc:
            # A fatal error (e.g. the idempotent producer's sequence out of
            # order: the broker lost what it had acknowledged) ends this
            # producer, as it ends any application's; error_cb has recorded
            # it, and the last send is marked refused.
            err = exc.args[0]
            self.history.record(
                "fail",
                producer=self.client,
                value=value,
                partition=partition,
                error=err.name(),
                retriable=False,
                definite=True,
            )
        producer.flush(DRAIN_S)


class KafkaPythonProducer(Client):
    def __init__(self, name, history, bootstrap, topic, partitions, rate, acks="all"):
        super().__init__(name, history)
        self.topic, self.partitions, self.rate = topic, partitions, rate
        self.conf = {
            "bootstrap_servers": bootstrap.split(","),
            "acks": "all" if acks == "all" else int(acks),
            "enable_idempotence": acks == "all",
            "linger_ms": 5,
            "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
            "request_timeout_ms": 30_000,
            "client_id": name,
        }

    def work(self) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        producer = KafkaProducer(**self.conf)
        retries = _RetriedErrors(self)
        logging.getLogger("kafka.producer.sender").addHandler(retries)
        wait = self.pace(self.rate)
        seq = 0
        try:
            while not self.stopping.is_set():
                partition, value = seq % self.partitions, value_of(self.client, seq)
                self.history.record("send", producer=self.client, value=value, partition=partition)
                try:
                    future = producer.send(self.topic, value=value.encode(), partition=partition)
                except KafkaError as exc:  # refused before it left: certainly not written
                    self._failed(partition, value, exc, definite=True)
                else:
                    future.add_callback(self._acked, partition, value)
                    future.add_errback(self._failed, partition, value)
                seq += 1
                self.stopping.wait(wait())  # the pause that holds the rate
            producer.flush(DRAIN_S)
        finally:
            producer.close(timeout=5)
            logging.getLogger("kafka.producer.sender").removeHandler(retries)

    def _acked(self, partition: int, value: str, metadata) -> None:
        self.history.record("ack", producer=self.client, value=value, partition=partition, offset=metadata.offset)

    def _failed(self, partition: int, value: str, exc, definite: bool = False) -> None:
        self.history.record(
            "fail",
            producer=self.client,
            value=value,
            partition=partition,
            error=type(exc).__name__,
            retriable=bool(getattr(exc, "retriable", False)),
            definite=definite,
        )


class _RetriedErrors(logging.Handler):
    """kafka-python retries a retriable produce error (NOT_ENOUGH_REPLICAS,
    NOT_LEADER_OR_FOLLOWER) without telling the application, and logs it:
    each such line goes into the history as a retriable client error, so the
    report shows what the producer was answered during a fault."""

    PREFIX = "%s: Got error produce response"

    def __init__(self, producer: Client):
        super().__init__(logging.WARNING)
        self.producer = producer

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith(self.PREFIX) and len(record.args or ()) >= 4:
            self.producer.history.record(
                "client_error",
                client=self.producer.client,
                error=str(record.args[3]),
                retriable=True,
                fatal=False,
                truncation=False,
                message=record.getMessage()[:500],
            )


# -- consumers ---------------------------------------------------------------------------


class AssignConsumer(Client):
    """confluent-kafka, ``assign()`` of every partition from the beginning,
    no group. ``auto.offset.reset=error``, so that the client says so
    rather than silently jumping when its position is gone (a truncation)."""

    TRUNCATION = frozenset({"_LOG_TRUNCATION", "_AUTO_OFFSET_RESET", "OFFSET_OUT_OF_RANGE"})

    def __init__(self, name, history, bootstrap, topic, partitions):
        super().__init__(name, history)
        self.topic, self.partitions = topic, partitions
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-{name}",  # required by the client; nothing is committed
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
            "error_cb": self._client_error,
            **QUIET,
        }

    def work(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(self.conf)
        try:
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
            position: dict[int, int] = {}
            poll = resets = 0
            while not self.stopping.is_set():
                poll += 1
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    err = msg.error()
                    if err is not None:
                        self._client_error(err)
                        if err.name() in self.TRUNCATION and resets < MAX_RESETS:
                            # Go on from where we were (the client has dropped its
                            # position); the error is in the history.
                            resets += 1
                            consumer.assign(
                                [
                                    TopicPartition(self.topic, p, position.get(p, OFFSET_BEGINNING))
                                    for p in range(self.partitions)
                                ]
                            )
                        continue
                    p, o = msg.partition(), msg.offset()
                    position[p] = o + 1
                    self.history.record(
                        "poll",
                        consumer=self.client,
                        mode="assign",
                        poll=poll,
                        partition=p,
                        offset=o,
                        value=msg.value().decode(),
                    )
        finally:
            consumer.close()


class GroupConsumer(Client):
    """confluent-kafka, subscribed in a group, committing every second."""

    TRUNCATION = frozenset({"_LOG_TRUNCATION"})

    def __init__(self, name, history, bootstrap, topic):
        super().__init__(name, history)
        self.topic = topic
        self.conf = {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-{name}",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "auto.offset.reset": "earliest",
            "error_cb": self._client_error,
            **QUIET,
        }

    def work(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer(self.conf)
        try:
            consumer.subscribe([self.topic])
            poll = 0
            while not self.stopping.is_set():
                poll += 1
                for msg in consumer.consume(num_messages=500, timeout=0.2):
                    if msg.error() is not None:
                        self._client_error(msg.error())
                        continue
                    self.history.record(
                        "poll",
                        consumer=self.client,
                        mode="group",
                        poll=poll,
                        partition=msg.partition(),
                        offset=msg.offset(),
                        value=msg.value().decode(),
                    )
        finally:
            consumer.close()


class MetadataWatcher(Client):
    """Records each change of a partition's (leader, epoch, ISR) as some live broker reports it."""

    def __init__(self, history, cluster: ChaosCluster, topic: str, interval: float = 0.2):
        super().__init__("metadata", history)
        self.cluster, self.topic, self.interval = cluster, topic, interval
        self.last: dict[int, tuple] = {}

    def work(self) -> None:
        while not self.stopping.wait(self.interval):
            states = self.cluster.states(self.topic, timeout=1) or {}
            for p, state in sorted(states.items()):
                if self.last.get(p) != state:
                    self.last[p] = state
                    leader, epoch, isr = state
                    self.history.record("leader", partition=p, leader=leader, epoch=epoch, isr=list(isr))


# -- all of them ----------------------------------------------------------------------------


class Workload:
    """The clients of one run, started and stopped together."""

    def __init__(
        self,
        cluster: ChaosCluster,
        history: History,
        topic: str,
        partitions: int,
        rate: float = 100,
        acks: str = "all",
        group: bool = True,
    ):
        bootstrap = cluster.bootstrap_servers
        self.clients: list[Client] = [
            MetadataWatcher(history, cluster, topic),
            ConfluentProducer("ck", history, bootstrap, topic, partitions, rate, acks=acks),
            KafkaPythonProducer("kp", history, bootstrap, topic, partitions, rate, acks=acks),
            AssignConsumer("reader", history, bootstrap, topic, partitions),
        ]
        if group:
            self.clients.append(GroupConsumer("group", history, bootstrap, topic))

    def start(self) -> None:
        for c in self.clients:
            c.start()

    def stop(self, timeout: float = DRAIN_S + 20) -> list[str]:
        """Ask every client to stop and wait for them; the names of those that did not stop in time."""
        for c in self.clients:
            c.stopping.set()
        deadline = time.monotonic() + timeout
        for c in self.clients:
            c.join(max(0.0, deadline - time.monotonic()))
        return [c.client for c in self.clients if c.is_alive()]

    def crashed(self) -> dict[str, BaseException]:
        return {c.client: c.crashed for c in self.clients if c.crashed is not None}


# -- the final read ------------------------------------------------------------------------


def final_read(cluster: ChaosCluster, history: History, topic: str, partitions: int, timeout: float = 60) -> None:
    """Every partition's records [log start, high watermark) through a fresh
    consumer, then each replica's batches below that high watermark from its files."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": "chaos-final",
            "enable.auto.commit": False,
            "auto.offset.reset": "error",
            **QUIET,
        }
    )
    try:
        for p in range(partitions):
            low, high = _settled_watermarks(cluster, consumer, topic, p)
            records: list[list] = []
            consumer.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + timeout
            while (records[-1][0] if records else low - 1) < high - 1 and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=1000, timeout=0.5):
                    if msg.error() is not None:
                        history.record(
                            "client_error",
                            client="final",
                            error=msg.error().name(),
                            retriable=True,
                            fatal=False,
                            truncation=False,
                            message=msg.error().str(),
                        )
                    elif msg.offset() < high:
                        records.append([msg.offset(), msg.value().decode()])
            history.record("final", partition=p, log_start=low, hw=high, records=records)
            replicas(cluster, history, topic, p, high)
    finally:
        consumer.close()


def _settled_watermarks(cluster: ChaosCluster, consumer, topic: str, partition: int, timeout: float = 30):
    """(log start, high watermark) once the high watermark has reached the
    log end of every replica's files. The workload has stopped and the
    ISRs are full, but the high watermark follows the followers' next
    fetch (and fsync): read too early, an acks=1 write the leader has
    acknowledged and every replica holds would be missing from the final
    log and counted lost. As found when the deadline passes."""
    from confluent_kafka import TopicPartition

    def log_end() -> int:
        ends = []
        for b in cluster.brokers:
            try:
                ends.append(replica_files.read_replica(b.data_dir, topic, partition, broker=b.node_id).log_end_offset)
            except replica_files.ReplicaFormatError:
                return -1  # a batch being written as it is read
        return max(ends)

    def settled():
        marks = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
        return marks if marks[1] >= log_end() else None

    try:
        return wait_for(
            settled, timeout, f"the high watermark of {topic}-{partition} to reach the log end", interval=0.1
        )
    except TimeoutError:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)


def replicas(cluster: ChaosCluster, history: History, topic: str, partition: int, hw: int, timeout: float = 30) -> None:
    """Each broker's batches of the partition below ``hw``, once every
    replica's files reach it (followers copy up to the leader's log end
    on their next fetch), or as they are when the deadline passes."""

    def read(broker):
        return replica_files.read_replica(broker.data_dir, topic, partition, broker=broker.node_id)

    def all_reach() -> bool:
        try:
            return all(read(b).log_end_offset >= hw for b in cluster.brokers)
        except replica_files.ReplicaFormatError:
            return False  # a batch being written as it is read

    try:
        wait_for(all_reach, timeout, f"every replica of {topic}-{partition} to reach {hw}", interval=0.25)
    except TimeoutError:
        pass  # recorded as found; the checker says which replica is short
    for b in cluster.brokers:
        try:
            r = read(b)
        except replica_files.ReplicaFormatError as exc:
            history.record("replica", partition=partition, broker=b.node_id, log_end=-1, batches=[], error=str(exc))
            continue
        batches = [[x.base_offset, x.last_offset, hashlib.sha1(x.data).hexdigest()] for x in r.below(hw)]
        history.record(
            "replica", partition=partition, broker=b.node_id, log_end=r.log_end_offset, batches=batches, error=None
        )
