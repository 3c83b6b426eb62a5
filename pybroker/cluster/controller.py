"""The cluster controller on ZooKeeper (Kafka's ZooKeeper-mode KafkaController).

Every broker runs a ``Controller``; the one whose ephemeral ``/controller``
exists is the active controller. It is elected as Kafka's is
(``KafkaZkClient.registerControllerAndIncrementControllerEpoch``): read
``/controller_epoch`` (created with 0 when missing), then one multi-op
creates ``/controller`` and sets the epoch to +1 expecting the version just
read. The epoch znode's version is the fencing token: every write of the
controller is a multi whose first op checks it, and a failed check means
another controller has been elected since, so this one stops acting at
once (drops its view) and competes again. It also never overwrites a
partition state written by a newer controller.

What the active controller does, reading and writing only ZooKeeper (the
brokers learn everything by watching it; there are no controller RPCs):

- rebuilds its view from ZooKeeper when elected (live brokers and their
  epochs, topics, partition states, deletion markers), then keeps it
  current from watches;
- gives every new partition its first state (first live replica leads,
  every live replica in the ISR, leader epoch 0); a partition with no live
  replica stays without one until one of its brokers registers;
- deletes a topic marked under ``/admin/delete_topics`` (its znodes, its
  config, the marker) in one fenced multi. Kafka waits for every replica to
  be deleted through StopReplica first; here each broker removes its
  replicas when it sees the topic znode disappear, and a broker that is down
  meanwhile finds those logs unknown at its restart and moves them aside.
  With ``delete.topic.enable=false`` markers are removed and nothing is
  deleted, as Kafka does;
- elects preferred leaders on request (``elect_leaders``), and unclean ones
  when an administrator asks for them, as Kafka's ZooKeeper controller does
  (such a request is unclean whatever ``unclean.leader.election.enable``
  says; KIP-704's leader recovery state is not written). It elects from the
  states as ZooKeeper holds them, and writes each expecting the version it
  read, so that an ISR change its leader made meanwhile is not lost.

- on broker failure (a registration gone, or replaced with a higher czxid:
  a bounced broker, taken as failed first), elects for every partition it
  led the first live in-sync replica in assignment order and takes it out
  of every ISR, bumping leader epochs (Kafka's onBrokerFailure); with no
  live ISR member a partition keeps no leader and its last ISR member
  until that broker returns, unless unclean.leader.election.enable. A new
  controller does the same for brokers that died while none acted.
- crash detection (beyond Kafka, crash_detection.py): it probes every
  registered broker's listener, and deletes the registration of one whose
  listener keeps refusing connections (its process is gone though its
  session lives), then fails it over as above; a broker that is not the
  controller probes the controller and frees /controller when its
  process is gone. docs/FAILOVER.md argues why this is safe.

Like Kafka's controller event thread, one task processes every event in
order; watch and session callbacks only enqueue. An event interrupted by a
lost connection is handled again once connected (each handler reads before
it writes). The work of the active controller is ``controller_active``;
its decisions are pure functions over its view (``controller_state``);
its reads of ZooKeeper are ``controller_reads``. Stopping ``run`` leaves
``/controller`` to the session: closing the session hands it over at once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import KafkaError
from pybroker.zk import BadVersionError, ConnectionLossError, NodeExistsError, NoNodeError, SessionExpiredError, ops

from . import znodes as zn
from .controller_active import ActiveController, ControllerMoved, Watches
from .crash_detection import Probes, Target

__all__ = ["Controller", "ControllerMoved"]

log = logging.getLogger("pybroker.controller")

# How often an event is tried again after the connection to ZooKeeper was lost mid-way.
RECONNECT_ATTEMPTS = 10
# How often the probed brokers are matched to the view again (addresses
# reach the metadata cache a little after a registration).
PROBE_SYNC_S = 1.0


@dataclass(eq=False)
class _Request:
    """A request the event loop answers (ElectLeaders, ControlledShutdown)."""

    done: trio.Event = field(default_factory=trio.Event, init=False)
    results: object = field(default=None, init=False)
    error: Exception | None = field(default=None, init=False)


@dataclass(eq=False)
class _Election(_Request):
    partitions: list[tuple[str, int]] | None
    preferred: bool


@dataclass(eq=False)
class _Shutdown(_Request):
    broker_id: int
    broker_epoch: int


class Controller:
    """Competes for /controller and, while it holds it, acts as the
    cluster's controller (``run``); ``elect_leaders`` serves ElectLeaders."""

    def __init__(
        self,
        zk,
        node_id: int,
        config,
        *,
        clock: Callable[[], float] = time.time,
        brokers: Callable[[int], object | None] | None = None,
        log_dirs_of: Callable | None = None,
    ):
        self._zk = zk
        self.node_id = node_id
        self._delete_enabled = bool(config["delete.topic.enable"])
        self._unclean_default = bool(config["unclean.leader.election.enable"])
        # Kafka's auto leader rebalance task: None when disabled.
        self._rebalance_every = (
            config["leader.imbalance.check.interval.seconds"] if config["auto.leader.rebalance.enable"] else None
        )
        self._imbalance_percentage = config["leader.imbalance.per.broker.percentage"]
        self._clock = clock
        self._acting: ActiveController | None = None
        # Who holds /controller, as last read (-1: nobody), and its session.
        self.active_id = -1
        self._active_owner = 0
        # Crash detection (crash_detection.py): the active controller probes
        # every registered broker, every other broker the controller; the
        # addresses come from ``brokers(id)`` (the metadata cache).
        self._brokers = brokers
        # How the controller learns which replicas a failed log dir took
        # offline (ActiveController.log_dirs_of).
        self._log_dirs_of = log_dirs_of
        self._probes = Probes(self._on_refused) if brokers is not None else None
        self._send, self._receive = trio.open_memory_channel(math.inf)
        self._connected = trio.Event()
        self._session_id = None
        # The epoch of this broker's last election attempt.
        self._tried_epoch: int | None = None
        self._waiting: set[_Election] = set()
        # One callable per watch, kept, so that reading again with it registers it once.
        self._watch_controller = self._on_controller_event
        self._watches = Watches(
            brokers=self._enqueuer("brokers"),
            topics=self._enqueuer("topics"),
            deletions=self._enqueuer("deletions"),
            topic=self._on_topic_event,
            log_dirs=self._enqueuer("log_dirs"),
        )
        self._handlers = {
            "reelect": self._reelect,
            "controller_change": self._maybe_resign,
            "expire": self._expire,
            "elect": self._election,
            "shutdown": self._shutdown,
            "brokers": self._when_active(ActiveController.broker_change),
            "topics": self._when_active(ActiveController.topic_change),
            "partitions": self._when_active(ActiveController.partition_modifications),
            "deletions": self._when_active(ActiveController.topic_deletion),
            "log_dirs": self._when_active(ActiveController.log_dir_events),
            "refused": self._refused,
            "rebalance": self._when_active(self._rebalance),
        }

    # -- what the broker sees ------------------------------------------------

    @property
    def active(self) -> bool:
        return self._acting is not None and not self._acting.view.fenced

    @property
    def epoch(self) -> int:
        """The controller epoch this broker holds (-1 when it is not the controller)."""
        return self._acting.view.epoch if self.active else -1

    async def elect_leaders(
        self, partitions: list[tuple[str, int]] | None, preferred: bool = True
    ) -> dict[tuple[str, int], KafkaError | None]:
        """Elect the preferred leader (or, not ``preferred``, a leader for a
        partition whose leader is gone, unclean if need be) of each
        partition; None: every partition. Each partition's answer is None
        when its new state is written, else the error Kafka answers."""
        return await self._ask("elect", _Election(None if partitions is None else list(partitions), preferred))

    async def controlled_shutdown(self, broker_id: int, broker_epoch: int) -> list[tuple[str, int]]:
        """ControlledShutdown: move the broker's leaderships away and take
        it out of the ISRs; the partitions it still leads. KafkaError
        NOT_CONTROLLER, BROKER_NOT_AVAILABLE or STALE_BROKER_EPOCH."""
        return await self._ask("shutdown", _Shutdown(broker_id, broker_epoch))

    async def _ask(self, kind: str, request: _Request):
        if not self.active:
            raise KafkaError(ErrorCode.NOT_CONTROLLER, None)
        self._waiting.add(request)
        try:
            self._send.send_nowait((kind, request))
            await request.done.wait()
        finally:
            self._waiting.discard(request)
        if request.error is not None:
            raise request.error
        return request.results

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED):
        """Compete for /controller and act while holding it, until cancelled."""
        self._zk.add_session_listener(self._on_session)
        self._session_id = self._zk.session_id
        if self._zk.connected:
            self._connected.set()
        self._send.send_nowait(("reelect", None))
        try:
            async with trio.open_nursery() as nursery:
                if self._probes is not None:
                    await nursery.start(self._probes.run)
                    nursery.start_soon(self._keep_probing)
                if self._rebalance_every is not None:
                    nursery.start_soon(self._keep_rebalancing)
                task_status.started()
                async for kind, arg in self._receive:
                    await self._process(kind, arg)
                    self._sync_probes()
        finally:
            self._acting = None
            for request in list(self._waiting):
                request.error = KafkaError(ErrorCode.NOT_CONTROLLER, None)
                request.done.set()

    # -- auto leader rebalance -----------------------------------------------

    async def _keep_rebalancing(self) -> None:
        # Queued like every controller event, so it never runs beside one.
        while True:
            await trio.sleep(self._rebalance_every)
            if self.active:
                self._send.send_nowait(("rebalance", None))

    async def _rebalance(self, acting: ActiveController) -> None:
        await acting.auto_rebalance(self._imbalance_percentage)

    # -- crash detection -----------------------------------------------------

    def _sync_probes(self) -> None:
        if self._probes is None:
            return
        targets = {}
        if self.active:
            for node_id, epoch in self._acting.view.live.items():
                if node_id != self.node_id:
                    targets[Target("broker", node_id, epoch)] = node_id
        elif self.active_id not in (-1, self.node_id):
            targets[Target("controller", self.active_id, self._active_owner)] = self.active_id
        addresses = {}
        for target, node_id in targets.items():
            info = self._brokers(node_id)
            if info is not None:
                addresses[target] = (info.host, info.port)
        self._probes.watch(addresses)

    async def _keep_probing(self) -> None:
        while True:
            await trio.sleep(PROBE_SYNC_S)
            self._sync_probes()

    def _on_refused(self, target: Target) -> None:
        self._send.send_nowait(("refused", target))

    async def _refused(self, target: Target) -> None:
        if target.kind == "broker":
            if self._acting is not None:
                await self._acting.broker_refused(target.node_id, target.epoch)
            return
        # The controller's process is gone while its session lives: free
        # /controller for an election now (versioned: only that holder's).
        try:
            data, stat = await self._zk.get(zn.CONTROLLER)
        except NoNodeError:
            return
        if zn.decode_controller(data) != target.node_id or stat.ephemeralOwner != target.epoch:
            return
        log.warning(
            "Deleting %s of broker %d: its listener refuses connections, so its process is gone "
            "(its ZooKeeper session would only expire after the session timeout)",
            zn.CONTROLLER,
            target.node_id,
        )
        try:
            await self._zk.delete(zn.CONTROLLER, version=stat.version)
        except (NoNodeError, BadVersionError):
            pass

    # -- callbacks (Trio thread; they only enqueue) --------------------------

    def _enqueuer(self, kind: str):
        def enqueue(event):
            self._send.send_nowait((kind, None))

        return enqueue

    def _on_controller_event(self, event):
        # Kafka's ControllerChangeHandler: a deleted /controller starts an election.
        self._send.send_nowait(("reelect" if event.type == "deleted" else "controller_change", None))

    def _on_topic_event(self, event):
        # Kafka's PartitionModificationsHandler; a deletion is looked at too,
        # in case the topic is created again before the topics event is read.
        if event.type in ("changed", "deleted"):
            self._send.send_nowait(("partitions", event.path.rsplit("/", 1)[-1]))

    def _on_session(self, state: str):
        if state == "connected":
            self._connected.set()
            if self._zk.session_id != self._session_id:
                self._session_id = self._zk.session_id
                self._send.send_nowait(("reelect", None))
        elif state == "suspended":
            if self._connected.is_set():
                self._connected = trio.Event()
        elif state == "expired":
            if self._connected.is_set():
                self._connected = trio.Event()
            # The ephemeral /controller is gone with the session: stop writing now.
            if self._acting is not None:
                self._acting.view.fenced = True
            self._send.send_nowait(("expire", None))

    # -- the event loop ------------------------------------------------------

    async def _process(self, kind: str, arg) -> None:
        handler = self._handlers[kind]
        try:
            for _ in range(RECONNECT_ATTEMPTS):
                try:
                    await (handler(arg) if arg is not None else handler())
                    return
                except ControllerMoved as exc:
                    log.info("Controller moved to another broker when processing %s: %s", kind, exc)
                    _answer(arg, ErrorCode.NOT_CONTROLLER)
                    self._resign()
                    self._tried_epoch = None
                    self._send.send_nowait(("reelect", None))
                    return
                except ConnectionLossError:
                    # Every handler reads before it writes, so running it again
                    # once connected acts on what ZooKeeper holds by then.
                    session = self._session_id
                    await self._connected.wait()
                    if self._session_id != session:
                        return  # a new session: the queued re-election rebuilds everything
                except SessionExpiredError:
                    # The session listener has queued the resignation and, once a
                    # new session is up, the election.
                    log.info("The ZooKeeper session expired while processing %s", kind)
                    return
                except Exception:
                    log.exception("Error processing event %s", kind)
                    return
            log.error("Giving up on event %s: the connection to ZooKeeper kept failing", kind)
        finally:
            _answer(arg, ErrorCode.NOT_CONTROLLER if not self.active else ErrorCode.UNKNOWN_SERVER_ERROR)

    # -- election ------------------------------------------------------------

    async def _reelect(self) -> None:
        await self._maybe_resign()
        await self._elect()

    async def _read_controller(self):
        """(broker id, ephemeral owner) of /controller, watching it; None when absent."""
        stat = await self._zk.exists(zn.CONTROLLER, watch=self._watch_controller)
        if stat is None:
            return None
        try:
            data, stat = await self._zk.get(zn.CONTROLLER, watch=self._watch_controller)
        except NoNodeError:
            return None
        self._active_owner = stat.ephemeralOwner
        return zn.decode_controller(data), stat.ephemeralOwner, stat.version

    async def _maybe_resign(self) -> None:
        was_active = self._acting is not None
        held = await self._read_controller()
        self.active_id = held[0] if held else -1
        if was_active and not self._holds(held):
            self._resign()

    def _holds(self, held) -> bool:
        return held is not None and held[0] == self.node_id and held[1] == self._zk.session_id

    async def _elect(self) -> None:
        held = await self._read_controller()
        if held is not None:
            self.active_id = held[0]
            if self._holds(held) and self._acting is None:
                await self._held_without_view(held)
            else:
                log.debug("Broker %d has been elected as the controller, so stopping the election process.", held[0])
            return
        epoch, version = await self._read_epoch()
        self._tried_epoch = new_epoch = epoch + 1
        try:
            results = await self._zk.multi(
                [
                    ops.create(zn.CONTROLLER, zn.encode_controller(self.node_id, self._now_ms()), ephemeral=True),
                    ops.set(zn.CONTROLLER_EPOCH, zn.encode_controller_epoch(new_epoch), version),
                ]
            )
        except (NodeExistsError, BadVersionError):
            new_version = await self._won_anyway(new_epoch)
            if new_version is not None:
                await self._take_over(new_epoch, new_version)
                return
            await self._maybe_resign()
            if self.active_id == -1:
                # Elected and gone already. Kafka waits for the watch; a
                # creation may never come, so compete again.
                log.warning(
                    "A controller has been elected but just resigned, this will result in another round of election"
                )
                self._send.send_nowait(("reelect", None))
            else:
                log.debug("Broker %d was elected as controller instead of broker %d", self.active_id, self.node_id)
            return
        await self._take_over(new_epoch, results[1].version)

    async def _held_without_view(self, held) -> None:
        """/controller is this session's while this controller does not act:
        either its election went through although the answer was lost (a
        dropped connection), or it stepped back after being fenced. The
        first is finished; the second frees /controller for a new election."""
        new_version = None if self._tried_epoch is None else await self._won_anyway(self._tried_epoch)
        if new_version is not None:
            await self._take_over(self._tried_epoch, new_version)
            return
        log.warning("Deleting %s, held by this broker while it is not the controller", zn.CONTROLLER)
        try:
            await self._zk.delete(zn.CONTROLLER, version=held[2])
        except (NoNodeError, BadVersionError):
            pass

    async def _take_over(self, epoch: int, epoch_version: int) -> None:
        self.active_id = self.node_id
        log.info(
            "%d successfully elected as the controller. Epoch incremented to %d and epoch zk version is now %d",
            self.node_id,
            epoch,
            epoch_version,
        )
        try:
            self._acting = await ActiveController.take_over(
                self._zk,
                self.node_id,
                epoch,
                epoch_version,
                delete_enabled=self._delete_enabled,
                watches=self._watches,
                unclean_default=self._unclean_default,
                log_dirs_of=self._log_dirs_of,
            )
            await self._acting.catch_up()
        except (ControllerMoved, ConnectionLossError):
            raise
        except Exception:
            # Kafka's triggerControllerMove: a controller that cannot take over must not hold /controller.
            log.exception(
                "Error while electing or becoming controller on broker %d. Trigger controller movement immediately",
                self.node_id,
            )
            self._acting = None
            self._tried_epoch = None
            self.active_id = -1
            held = await self._read_controller()
            if self._holds(held):
                await self._held_without_view(held)

    async def _read_epoch(self) -> tuple[int, int]:
        try:
            data, stat = await self._zk.get(zn.CONTROLLER_EPOCH)
            return zn.decode_controller_epoch(data), stat.version
        except NoNodeError:
            pass
        try:
            await self._zk.create(zn.CONTROLLER_EPOCH, zn.encode_controller_epoch(0))
            log.info("Successfully created %s with initial epoch 0", zn.CONTROLLER_EPOCH)
            return 0, 0
        except NodeExistsError:
            data, stat = await self._zk.get(zn.CONTROLLER_EPOCH)
            return zn.decode_controller_epoch(data), stat.version

    async def _won_anyway(self, new_epoch: int) -> int | None:
        """After a failed election multi: whether it was ours after all (a
        retried request whose first try went through) -- the epoch
        version if so (Kafka's checkControllerAndEpoch)."""
        try:
            data, stat = await self._zk.get(zn.CONTROLLER)
            if zn.decode_controller(data) != self.node_id or stat.ephemeralOwner != self._zk.session_id:
                return None
            data, stat = await self._zk.get(zn.CONTROLLER_EPOCH)
        except NoNodeError:
            return None
        return stat.version if zn.decode_controller_epoch(data) == new_epoch else None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _resign(self) -> None:
        self._acting = None
        log.info("Resigned")

    async def _expire(self) -> None:
        # Kafka's processExpire; the new session's "connected" queues the re-election.
        self.active_id = -1
        if self._acting is not None:
            self._resign()

    # -- the active controller's events --------------------------------------

    async def _election(self, request: _Election) -> None:
        if self._acting is None:
            request.error = KafkaError(ErrorCode.NOT_CONTROLLER, None)
        else:
            request.results = await self._acting.elect(request.partitions, request.preferred)
        request.done.set()

    async def _shutdown(self, request: _Shutdown) -> None:
        if self._acting is None:
            request.error = KafkaError(ErrorCode.NOT_CONTROLLER, None)
        else:
            try:
                request.results = await self._acting.controlled_shutdown(request.broker_id, request.broker_epoch)
            except KafkaError as exc:
                request.error = exc
        request.done.set()

    def _when_active(self, work):
        async def run(*args):
            # Kafka's "if (!isActive) return": stale watches fire after a resignation.
            if self._acting is not None:
                await work(self._acting, *args)

        return run


def _answer(request, code: ErrorCode) -> None:
    """Answer a request the event loop could not finish."""
    if isinstance(request, _Request) and not request.done.is_set():
        request.error = KafkaError(code, None)
        request.done.set()
