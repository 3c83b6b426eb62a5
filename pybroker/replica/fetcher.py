"""Followers copying their leaders: one Trio task per leader broker.

``ReplicaFetchers`` keeps, for each broker this one follows, the
partitions it follows there, and runs one task per such leader (Kafka's
ReplicaFetcherThread, with num.replica.fetchers = 1): started when the
first partition of that leader is followed, stopped when the last goes.
``follow`` and ``unfollow`` come from the cluster metadata (zk_state) as
roles change; a partition whose leader epoch changed is re-followed at
the new epoch, its back-off forgotten.

Each task keeps one TCP connection to its leader (the address the
leader registered; client id ``broker-<id>-fetcher``) and loops:

1. the partitions not backing off; a log with data but no epoch cache
   first asks OffsetForLeaderEpoch and truncates (follower.py);
2. one Fetch v12 for all of them — replica id, the replica.fetch.*
   limits, and per partition the current leader epoch, the log end as
   the fetch offset, the last fetched epoch and the log start;
3. per partition of the answer, if it still is this task's at the epoch
   asked and the log has not moved meanwhile: records appended with
   Origin.REPLICATION and the leader's high watermark and log start
   followed; DivergingEpoch truncates (KIP-279); OFFSET_OUT_OF_RANGE
   asks the leader's log start (ListOffsets) and log end
   (OffsetForLeaderEpoch at the current epoch) and truncates to them;
   FENCED_LEADER_EPOCH (this broker's metadata is behind) backs off
   until follow() brings the new epoch; UNKNOWN_LEADER_EPOCH and
   NOT_LEADER_OR_FOLLOWER (the leader's metadata is behind: it has not
   seen the state that names it yet, and nothing here will tell when it
   has) are asked again after LEADER_BEHIND_BACKOFF; any other error
   backs off replica.fetch.backoff.ms;
4. before the next Fetch, the logs appended to that must be durable (more
   than one replica, no write.caching) are fsynced in one group-commit
   round, so the fetch offset the next Fetch reports — which the leader
   counts toward its high watermark — is on disk.

A broken connection or a failed request makes every partition of the
task back off and the task reconnect; an unexpected exception is logged
with its traceback and does the same. Nothing ends a task but its last
partition going, or the broker stopping.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import CorruptRecordError, KafkaError, ProtocolError
from pybroker.protocol.messages.fetch_request import FetchPartition, FetchRequest, FetchTopic, ForgottenTopic

from ..cluster.model import BrokerInfo
from . import follower, leader_offsets
from .fetch_session import FollowerSession
from .link import Link, LinkError
from .partition import Role

log = logging.getLogger("pybroker.replica")

FETCH_VERSION = 12
# Answers of a leader that has not caught up with the metadata naming it:
# asked again after LEADER_BEHIND_BACKOFF (at most replica.fetch.backoff.ms).
_LEADER_BEHIND = frozenset({ErrorCode.UNKNOWN_LEADER_EPOCH, ErrorCode.NOT_LEADER_OR_FOLLOWER})
LEADER_BEHIND_BACKOFF = 0.05
# Framing and per-partition fields beyond the records' bytes in an answer;
# an answer larger still (a first batch over the limit) is simply not pooled.
_ANSWER_SLACK = 64 * 1024
_SESSION_ERRORS = frozenset({ErrorCode.FETCH_SESSION_ID_NOT_FOUND, ErrorCode.INVALID_FETCH_SESSION_EPOCH})
_CONNECTION_ERRORS = (
    OSError,
    LinkError,
    ProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
)


def now_ms() -> int:
    return int(time.time() * 1000)


class Followed:
    """One partition a fetcher copies: the Partition, the leader epoch it is
    followed at, and until when it backs off (trio time)."""

    __slots__ = ("delay_until", "epoch", "epoch_checked", "part")

    def __init__(self, part, epoch: int):
        self.part = part
        self.epoch = epoch
        self.delay_until = 0.0
        self.epoch_checked = False

    @property
    def key(self) -> tuple[str, int]:
        return self.part.topic, self.part.index


class LeaderFetcher:
    """The partitions followed from one leader broker, and its task's state."""

    def __init__(self, leader_id: int):
        self.leader_id = leader_id
        self.partitions: dict[tuple[str, int], Followed] = {}
        self.changed = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.failures = 0  # connection failures in a row
        self.rounds = 0  # Fetch responses handled
        self.session = FollowerSession()

    def wake(self) -> None:
        self.changed.set()


class ReplicaFetchers:
    def __init__(self, replicas, config, brokers: Callable[[int], BrokerInfo | None]):
        self.replicas = replicas
        self.node_id = replicas.node_id
        self.brokers = brokers
        self.client_id = f"broker-{self.node_id}-fetcher"
        self.max_wait_ms = config["replica.fetch.wait.max.ms"]
        self.min_bytes = config["replica.fetch.min.bytes"]
        self.max_bytes = config["replica.fetch.response.max.bytes"]
        self.partition_max_bytes = config["replica.fetch.max.bytes"]
        self.backoff = config["replica.fetch.backoff.ms"] / 1000
        self.timeout = (config["replica.socket.timeout.ms"] + self.max_wait_ms) / 1000
        # The inter-broker listener's TLS and SASL (pybroker.inter_broker).
        self.security = getattr(config, "inter_broker_security", None)
        self.fetchers: dict[int, LeaderFetcher] = {}
        self._followed: dict[tuple[str, int], tuple[int, Followed]] = {}
        self._nursery: trio.Nursery | None = None

    # -- what is followed --------------------------------------------------------

    def leader_of(self, part) -> int | None:
        """The leader this broker fetches ``part`` from, None if none."""
        found = self._followed.get((part.topic, part.index))
        return None if found is None or found[1].part is not part else found[0]

    def follow(self, part, leader_id: int) -> None:
        """Copy ``part`` from ``leader_id``, at the partition's current epoch."""
        key = (part.topic, part.index)
        epoch = part.info.leader_epoch
        found = self._followed.get(key)
        if found is not None:
            current, st = found
            if current == leader_id and st.part is part:
                if st.epoch != epoch:
                    st.epoch = epoch
                    st.delay_until = 0.0
                    st.epoch_checked = False
                    self.fetchers[current].wake()
                return
            self._drop(key)
        fetcher = self.fetchers.get(leader_id)
        if fetcher is None:
            fetcher = self.fetchers[leader_id] = LeaderFetcher(leader_id)
            log.info("fetching from broker %d", leader_id)
            if self._nursery is not None:
                self._start(fetcher)
        st = Followed(part, epoch)
        fetcher.partitions[key] = st
        self._followed[key] = (leader_id, st)
        fetcher.wake()

    def unfollow(self, part) -> None:
        """Stop copying ``part`` (it leads now, is removed, or has no leader)."""
        key = (part.topic, part.index)
        found = self._followed.get(key)
        if found is not None and found[1].part is part:
            self._drop(key)

    def unfollow_all(self) -> None:
        for key in list(self._followed):
            self._drop(key)

    def _drop(self, key) -> None:
        leader_id, _ = self._followed.pop(key)
        fetcher = self.fetchers[leader_id]
        del fetcher.partitions[key]
        if not fetcher.partitions:
            del self.fetchers[leader_id]
            if fetcher.scope is not None:
                fetcher.scope.cancel()
            log.info("no longer fetching from broker %d", leader_id)
        else:
            fetcher.wake()

    # -- the tasks -----------------------------------------------------------------

    async def run(self) -> None:
        """Run a task per leader followed, until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for fetcher in self.fetchers.values():
                    self._start(fetcher)
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def _start(self, fetcher: LeaderFetcher) -> None:
        fetcher.scope = trio.CancelScope()
        self._nursery.start_soon(self._run_fetcher, fetcher)

    async def _run_fetcher(self, fetcher: LeaderFetcher) -> None:
        with fetcher.scope:
            while True:
                try:
                    await self._connected(fetcher)
                except _CONNECTION_ERRORS as exc:
                    fetcher.failures += 1
                    level = logging.WARNING if fetcher.failures == 1 else logging.DEBUG
                    log.log(
                        level, "fetching from broker %d: %s; retrying", fetcher.leader_id, str(exc) or type(exc).__name__
                    )
                except Exception:
                    fetcher.failures += 1
                    log.exception("fetching from broker %d failed", fetcher.leader_id)
                await trio.sleep(self.backoff)

    async def _connected(self, fetcher: LeaderFetcher) -> None:
        """Connect to the leader and fetch until something fails."""
        info = self.brokers(fetcher.leader_id)
        if info is None:
            raise LinkError(f"broker {fetcher.leader_id} is not registered")
        with trio.fail_after(self.timeout):
            link = await Link.open(info.host, info.port, self.client_id, self.max_bytes + _ANSWER_SLACK,
                                   security=self.security)
        fetcher.session.failed()  # a new connection opens a new session
        try:
            while True:
                await self.fetch_round(fetcher, link)
                fetcher.failures = 0
        finally:
            await link.aclose()

    async def _call(self, link: Link, body, version: int):
        with trio.fail_after(self.timeout):
            return await link.call(body, version)

    # -- one round ---------------------------------------------------------------------

    async def fetch_round(self, fetcher: LeaderFetcher, link: Link) -> None:
        """One Fetch to the leader and what follows from its answer; waits
        instead when every partition backs off."""
        fetcher.changed = trio.Event()
        now = trio.current_time()
        ready = [st for st in fetcher.partitions.values() if st.delay_until <= now]
        if not ready:
            until = min((st.delay_until for st in fetcher.partitions.values()), default=math.inf)
            with trio.move_on_at(until):
                await fetcher.changed.wait()
            return
        unchecked = [st for st in ready if not st.epoch_checked and follower.needs_epoch_check(st.part)]
        if unchecked:
            await self._check_epochs(fetcher, link, unchecked)
            return
        sent: dict[tuple[str, int], tuple[Followed, follower.Position]] = {}
        for st in ready:
            if st.part.offline:
                log.error("%s-%d: the log is offline; no longer fetching it", st.part.topic, st.part.index)
                self.unfollow(st.part)
                continue
            pos = follower.position(st.part)
            if pos.current_leader_epoch != st.epoch:
                continue  # the metadata moved on; follow() says where to
            sent[st.key] = (st, pos)
        if not sent:
            with trio.move_on_after(self.backoff):
                await fetcher.changed.wait()
            return
        session = fetcher.session
        ask = session.request({key: pos for key, (_, pos) in sent.items()})
        topics: dict[str, list[FetchPartition]] = {}
        for key in ask.send:
            pos = sent[key][1]
            topics.setdefault(key[0], []).append(
                FetchPartition(
                    partition=key[1],
                    current_leader_epoch=pos.current_leader_epoch,
                    fetch_offset=pos.fetch_offset,
                    last_fetched_epoch=pos.last_fetched_epoch,
                    log_start_offset=pos.log_start_offset,
                    partition_max_bytes=self.partition_max_bytes,
                )
            )
        forgotten: dict[str, list[int]] = {}
        for topic, index in ask.forgotten:
            forgotten.setdefault(topic, []).append(index)
        request = FetchRequest(
            replica_id=self.node_id,
            max_wait_ms=self.max_wait_ms,
            min_bytes=self.min_bytes,
            max_bytes=self.max_bytes,
            session_id=ask.session_id,
            session_epoch=ask.epoch,
            topics=[FetchTopic(topic=name, partitions=parts) for name, parts in topics.items()],
            forgotten_topics_data=[ForgottenTopic(topic=name, partitions=idx) for name, idx in forgotten.items()],
        )
        try:
            response = await self._call(link, request, FETCH_VERSION)
        except BaseException:
            session.failed()
            self._delay(fetcher, [st for st, _ in sent.values()])
            raise
        stands = session.answered(response.error_code, response.session_id)
        fetcher.rounds += 1
        if response.error_code in _SESSION_ERRORS or (not stands and not response.error_code):
            # The leader lost or refused the session (or answered another
            # one): the next request opens a new session at once.
            log.debug("broker %d: fetch session %d refused: %s", fetcher.leader_id, ask.session_id, response.error_code)
            return
        if response.error_code:
            log.warning("broker %d refused a Fetch: %s", fetcher.leader_id, ErrorCode(response.error_code).name)
            self._delay(fetcher, [st for st, _ in sent.values()])
            return
        appended = []
        out_of_range = []
        now_wall = now_ms()
        for topic in response.responses:
            for data in topic.partitions:
                found = sent.pop((topic.topic, data.partition_index), None)
                if found is None:
                    continue
                st, pos = found
                if not self._current(fetcher, st, pos):
                    continue
                try:
                    outcome = self._handle(fetcher, st, data, now_wall)
                    if outcome is follower.Outcome.APPENDED:
                        appended.append(st.part)
                    elif outcome is follower.Outcome.OUT_OF_RANGE:
                        out_of_range.append(st)
                except (KafkaError, CorruptRecordError) as exc:
                    self._failed(fetcher, st, exc)
                except Exception:
                    log.exception("%s-%d: handling the leader's answer failed", st.part.topic, st.part.index)
                    self._delay(fetcher, [st])
        if out_of_range:
            await self._out_of_range(fetcher, link, out_of_range)
        durable = [p for p in appended if follower.durable(p)]
        if durable:
            failed = await self.replicas.flusher.flush([p.log for p in durable])
            for p in durable:
                if p.log in failed:
                    # Never reported to the leader: what it holds is not on disk.
                    log.error("%s-%d: fsync failed (%s); no longer fetching it", p.topic, p.index, failed[p.log])
                    self.unfollow(p)

    def _current(self, fetcher: LeaderFetcher, st: Followed, pos: follower.Position) -> bool:
        """Whether an answer still applies: the partition still followed
        here at the epoch asked, a follower, its log where it was."""
        part = st.part
        return (
            fetcher.partitions.get(st.key) is st
            and st.epoch == pos.current_leader_epoch == part.info.leader_epoch
            and part.role is Role.FOLLOWER
            and part.log.log_end_offset == pos.fetch_offset
            and self.replicas.partition(part.topic, part.index) is part
        )

    def _handle(self, fetcher: LeaderFetcher, st: Followed, data, now: int) -> follower.Outcome:
        """One partition of the answer."""
        div = data.diverging_epoch
        diverging = (div.epoch, div.end_offset) if div is not None and (div.epoch >= 0 or div.end_offset >= 0) else None
        outcome = follower.apply_answer(
            self.replicas,
            st.part,
            data.error_code,
            data.records,
            data.high_watermark,
            data.log_start_offset,
            diverging,
            now,
        )
        if outcome is follower.Outcome.REFUSED:
            self._handle_error(fetcher, st, data.error_code)
        return outcome

    def _failed(self, fetcher: LeaderFetcher, st: Followed, exc: Exception) -> None:
        part = st.part
        if part.offline:
            # Kafka marks the partition failed: nothing can be written to it
            # until a restart, so asking the leader again is pointless.
            log.error("%s-%d: the log is offline; no longer fetching it", part.topic, part.index)
            self.unfollow(part)
            return
        log.warning("%s-%d: cannot take the leader's answer: %s", part.topic, part.index, exc)
        self._delay(fetcher, [st])

    def _delay(self, fetcher: LeaderFetcher, states, seconds: float | None = None) -> None:
        until = trio.current_time() + (self.backoff if seconds is None else seconds)
        for st in states:
            fetcher.session.resend(st.key)
            if fetcher.partitions.get(st.key) is st:
                st.delay_until = until

    # -- asking the leader where its log starts and ends ------------------------------

    async def _check_epochs(self, fetcher: LeaderFetcher, link: Link, states: list[Followed]) -> None:
        """Logs with data and no epoch cache: the leader's end of the epoch
        of each one's last batch, and the truncation it calls for."""
        asked: dict = {}
        for st in states:
            try:
                asked[st.key] = (st, follower.epoch_to_check(st.part), st.part.log.log_end_offset)
            except KafkaError as exc:
                self._failed(fetcher, st, exc)
        if not asked:
            return
        try:
            answers = await leader_offsets.epoch_ends(
                self._caller(link), self.node_id, {k: (st.epoch, max(e, 0)) for k, (st, e, _) in asked.items()}
            )
        except BaseException:
            self._delay(fetcher, [st for st, _, _ in asked.values()])
            raise
        for key, (st, epoch, end) in asked.items():
            found = answers.get(key)
            if found is None:
                self._delay(fetcher, [st])
            elif self._current(fetcher, st, follower.Position(end, -1, -1, st.epoch)):
                if found[0]:
                    self._handle_error(fetcher, st, found[0])
                    continue
                try:
                    follower.truncate_without_epochs(st.part, found[1], found[2], epoch)
                    st.epoch_checked = True
                except KafkaError as exc:
                    self._failed(fetcher, st, exc)

    async def _out_of_range(self, fetcher: LeaderFetcher, link: Link, states: list[Followed]) -> None:
        """The leader refused these fetch offsets: ask its log start
        (ListOffsets earliest) and log end (OffsetForLeaderEpoch for its
        current epoch, which runs to the log end) and truncate to them."""
        ends = {st.key: st.part.log.log_end_offset for st in states}
        call = self._caller(link)
        try:
            starts = await leader_offsets.log_starts(call, self.node_id, {st.key: st.epoch for st in states})
            finals = await leader_offsets.epoch_ends(
                call, self.node_id, {st.key: (st.epoch, st.epoch) for st in states}
            )
        except BaseException:
            self._delay(fetcher, states)
            raise
        for st in states:
            start, final = starts.get(st.key), finals.get(st.key)
            if start is None or final is None:
                self._delay(fetcher, [st])  # left out of an answer
            elif start[0] or final[0]:
                self._handle_error(fetcher, st, start[0] or final[0])
            elif self._current(fetcher, st, follower.Position(ends[st.key], -1, -1, st.epoch)):
                try:
                    follower.recover_out_of_range(st.part, start[1], final[2])
                except KafkaError as exc:
                    self._failed(fetcher, st, exc)

    def _caller(self, link: Link):
        async def call(body, version):
            return await self._call(link, body, version)

        return call

    def _handle_error(self, fetcher: LeaderFetcher, st: Followed, code: int) -> None:
        part = st.part
        if code in _LEADER_BEHIND:
            # The leader has not seen the state that names it (or names
            # this epoch) yet; it will within moments, and nothing here
            # will tell this broker when: look again soon.
            log.debug("%s-%d: broker %d answered %s", part.topic, part.index, fetcher.leader_id, ErrorCode(code).name)
            self._delay(fetcher, [st], min(self.backoff, LEADER_BEHIND_BACKOFF))
            return
        if code == ErrorCode.FENCED_LEADER_EPOCH:
            # This broker's metadata is behind: follow() at the new epoch
            # ends the back-off.
            log.debug("%s-%d: broker %d answered %s", part.topic, part.index, fetcher.leader_id, ErrorCode(code).name)
        else:
            log.info("%s-%d: broker %d answered %s", part.topic, part.index, fetcher.leader_id, ErrorCode(code).name)
        self._delay(fetcher, [st])
