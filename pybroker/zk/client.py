"""ZooKeeper for Trio code: a client over kazoo whose every call is async
and never blocks the Trio thread.

Theory of operation. kazoo talks to ZooKeeper on a thread of its own. Each
operation is sent with kazoo's ``*_async`` method; its result, every watch
event and every session change is handed to Trio with
``TrioToken.run_sync_soon`` right on kazoo's connection thread (the
``_InlineHandler`` below skips kazoo's two worker queues, which would
reorder them), so Trio sees them in the order ZooKeeper sent them: a watch
event before the answer of a read issued after the change.

Sessions. kazoo reports CONNECTED, SUSPENDED (connection lost, the session
may live on) and LOST (expired, or closed by us). After an expiry kazoo
opens a new session by itself; listeners hear "expired" and then
"connected" with a new ``session_id``. The session timeout ZooKeeper grants
is read from the handshake's answer, which kazoo keeps to itself.

Watches. ZooKeeper's own client re-sends its watches when it reconnects
within a session (SetWatches) and the server fires those whose node changed
meanwhile; kazoo instead drops them on connection loss. This client makes
up for it: on reconnecting to the same session it re-arms each dropped
watch and fires it if its node changed after the last zxid seen before the
loss, as the server would have. After an expiry nothing is re-armed:
callers re-read everything, as with ZooKeeper's own client. One callback
used as both the data and the child watch of a path hears its deletion
twice (kazoo keeps the two apart).

Errors. A request in flight when the connection drops fails with
ConnectionLossError (it may or may not have been applied); one made while
disconnected waits for the connection to come back, or fails with
SessionExpiredError if the session did not survive. Nothing is retried
here: whether a retry is safe is the caller's business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Self

import trio
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, NoNodeError, NotEmptyError, RolledBackError
from kazoo.handlers.threading import AsyncResult, SequentialThreadingHandler
from kazoo.protocol.serialization import Connect
from kazoo.protocol.states import EventType, KazooState
from kazoo.retry import KazooRetry

from . import ops
from .watches import CHILD, DATA, Watch, WatchRegistry

log = logging.getLogger(__name__)

_EVENT_TYPES = {
    EventType.CREATED: "created",
    EventType.DELETED: "deleted",
    EventType.CHANGED: "changed",
    EventType.CHILD: "child",
}


class ZkConnectTimeout(Exception):
    """No session within the connection timeout (Kafka's ZooKeeperClientTimeoutException)."""


class ZkEvent(NamedTuple):
    type: str  # "created", "deleted", "changed" or "child"
    path: str


class _InlineResult(AsyncResult):
    def _do_callbacks(self):
        for callback in self._callbacks:
            _run_safely(callback, self)


class _InlineHandler(SequentialThreadingHandler):
    """Calls back on the thread that produced the result or event. Every
    callback given to kazoo here only posts to Trio, so none blocks it."""

    def async_result(self):
        return _InlineResult(self)

    def dispatch_callback(self, callback):
        _run_safely(callback.func, *callback.args)


def _run_safely(fn, *args) -> None:
    # An exception here would end kazoo's connection loop.
    try:
        fn(*args)
    except Exception:
        log.exception("ZooKeeper callback %r failed", fn)


class _Pending:
    __slots__ = ("done", "error", "value")

    def __init__(self):
        self.done = trio.Event()
        self.value = self.error = None

    def resolve(self, value, error) -> None:
        self.value, self.error = value, error
        self.done.set()


class ZkClient:
    def __init__(self, connect: str, session_timeout_ms: int = 6000, connection_timeout_ms: int | None = None):
        hosts, _, chroot = connect.partition("/")
        self.hosts = hosts
        self.chroot = "/" + chroot.strip("/") if chroot.strip("/") else ""
        self.session_timeout_ms = session_timeout_ms
        self.connection_timeout_ms = session_timeout_ms if connection_timeout_ms is None else connection_timeout_ms
        self.negotiated_timeout_ms: int | None = None
        self.session_id: int | None = None
        self.connected = False
        self._kazoo: KazooClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._listeners: list[Callable[[str], Any]] = []
        self._closing = False
        self._first_session = trio.Event()
        self._granted_ms: int | None = None  # written on kazoo's thread by the handshake
        self._watches = WatchRegistry(self._watch_fired)
        self._lost: dict[tuple, Watch] = {}  # dropped by kazoo on connection loss, to re-arm
        self._lost_zxid = 0  # the last zxid seen before the connection was lost
        self._announce = True  # log each new session and its timeout

    # --- session ---------------------------------------------------------

    async def connect(self) -> None:
        """Opens the session; creates the chroot first if it is missing, as Kafka does."""
        if self._kazoo is not None:
            raise RuntimeError("ZkClient.connect() is called once")
        self._token = trio.lowlevel.current_trio_token()
        with trio.move_on_after(self.connection_timeout_ms / 1000):
            if self.chroot:
                root = ZkClient(self.hosts, self.session_timeout_ms, self.connection_timeout_ms)
                root._announce = False
                await root._open()
                try:
                    await root.ensure_path(self.chroot)
                finally:
                    await root.close()
            await self._open()
            return
        raise ZkConnectTimeout("Timed out waiting for connection while in state: CONNECTING")

    async def _open(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        # Kafka's client retries for ever, at most a second apart; kazoo's
        # default backoff would grow to an hour during a long outage.
        retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0, sleep_func=time.sleep)
        self._kazoo = KazooClient(
            hosts=self.hosts + self.chroot,
            timeout=self.session_timeout_ms / 1000,
            handler=_InlineHandler(),
            connection_retry=retry,
            logger=logging.getLogger(f"{__name__}.kazoo"),
        )
        self._capture_handshake(self._kazoo)
        self._kazoo.add_listener(self._kazoo_state)
        try:
            # Starting only spawns kazoo's threads; the connecting happens on them.
            self._kazoo.start_async()
            await self._first_session.wait()
        except BaseException:
            await self.close()
            raise

    def _capture_handshake(self, kazoo: KazooClient) -> None:
        connection = kazoo._connection
        invoke = connection._invoke

        def invoke_and_keep_timeout(timeout, request, xid=None):
            answer = invoke(timeout, request, xid)
            if isinstance(request, Connect):
                self._granted_ms = answer[0].time_out
            return answer

        connection._invoke = invoke_and_keep_timeout

    async def close(self) -> None:
        """Closes the session (its ephemerals go at once)."""
        if self._kazoo is None or self._closing:
            return
        self._closing = True
        self.connected = False
        kazoo = self._kazoo

        def stop():
            kazoo.stop()
            kazoo.close()

        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stop)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def add_session_listener(self, fn: Callable[[str], Any]) -> None:
        """``fn(state)`` in the Trio thread, state "connected", "suspended" or "expired"."""
        self._listeners.append(fn)

    def remove_session_listener(self, fn: Callable[[str], Any]) -> None:
        self._listeners.remove(fn)

    def _kazoo_state(self, state) -> None:  # kazoo's connection thread
        kazoo = self._kazoo
        if state == KazooState.CONNECTED:
            self._post(self._connected, kazoo._session_id, self._granted_ms)
        elif state == KazooState.SUSPENDED:
            # Called before kazoo drops the watches, so no event is missed past this zxid.
            self._post(self._suspended, kazoo.last_zxid)
        elif not self._closing:
            self._post(self._expired)

    def _connected(self, session_id: int, granted_ms: int | None) -> None:
        same_session = session_id == self.session_id
        if granted_ms is None:
            log.warning("the session timeout ZooKeeper granted was not seen (kazoo changed?); assuming the one asked")
            granted_ms = self.session_timeout_ms
        if not same_session or granted_ms != self.negotiated_timeout_ms:
            level = logging.WARNING if granted_ms != self.session_timeout_ms else logging.INFO
            log.log(
                level if self._announce else logging.DEBUG,
                "ZooKeeper session 0x%x: session timeout %d ms granted, %d ms requested",
                session_id,
                granted_ms,
                self.session_timeout_ms,
            )
        self.session_id, self.negotiated_timeout_ms, self.connected = session_id, granted_ms, True
        lost, self._lost = self._lost, {}
        if same_session:
            for watch in lost.values():
                self._rearm(watch, self._lost_zxid)
        self._first_session.set()
        self._tell_listeners("connected")

    def _suspended(self, last_zxid: int) -> None:
        self.connected = False
        self._lost_zxid = last_zxid
        self._tell_listeners("suspended")

    def _expired(self) -> None:
        self.connected = False
        self._lost.clear()
        self._tell_listeners("expired")

    def _tell_listeners(self, state: str) -> None:
        for fn in list(self._listeners):
            self._call_back(fn, state)

    # --- operations ------------------------------------------------------

    async def get(self, path: str, watch: Callable[[ZkEvent], Any] | None = None) -> tuple[bytes, Any]:
        return await self._watched(DATA, path, watch, lambda w: self._kz.get_async(path, watch=w))

    async def get_children(self, path: str, watch: Callable[[ZkEvent], Any] | None = None) -> list[str]:
        return await self._watched(CHILD, path, watch, lambda w: self._kz.get_children_async(path, watch=w))

    async def exists(self, path: str, watch: Callable[[ZkEvent], Any] | None = None):
        return await self._watched(DATA, path, watch, lambda w: self._kz.exists_async(path, watch=w))

    async def create(
        self, path: str, data: bytes = b"", ephemeral: bool = False, sequence: bool = False, makepath: bool = False
    ) -> str:
        return await self._result(
            self._kz.create_async(path, data, ephemeral=ephemeral, sequence=sequence, makepath=makepath)
        )

    async def ensure_path(self, path: str) -> None:
        await self._result(self._kz.ensure_path_async(path))

    async def set(self, path: str, data: bytes, version: int = -1):
        return await self._result(self._kz.set_async(path, data, version))

    async def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        if not recursive:
            await self._result(self._kz.delete_async(path, version))
            return
        if version != -1:
            raise ValueError("a recursive delete takes no version: its children go first")
        while True:
            try:
                await self._delete_tree(path)
                return
            except NotEmptyError:
                continue  # a child was created meanwhile: delete what is there now

    async def _delete_tree(self, path: str) -> None:
        # Level by level, each level's reads sent together, then the
        # deletions deepest first in one pipeline (ZooKeeper runs a
        # session's requests in order).
        levels = [[path]]
        while levels[-1]:
            asked = [(parent, self._kz.get_children_async(parent)) for parent in levels[-1]]
            below = []
            for parent, answer in asked:
                try:
                    below += [f"{parent.rstrip('/')}/{child}" for child in await self._result(answer)]
                except NoNodeError:
                    pass
            levels.append(below)
        deletions = [self._kz.delete_async(node) for level in reversed(levels) for node in level]
        for answer in deletions:
            try:
                await self._result(answer)
            except NoNodeError:
                pass

    async def multi(self, operations: Iterable[ops.Op]) -> list:
        """All or nothing. On failure raises the exception of the first failing
        operation, with ``op_index`` set to its position."""
        transaction = self._kz.transaction()
        for op in operations:
            if isinstance(op, ops.Check):
                transaction.check(op.path, op.version)
            elif isinstance(op, ops.Create):
                transaction.create(op.path, op.data, ephemeral=op.ephemeral, sequence=op.sequence)
            elif isinstance(op, ops.SetData):
                transaction.set_data(op.path, op.data, op.version)
            elif isinstance(op, ops.Delete):
                transaction.delete(op.path, op.version)
            else:
                raise TypeError(f"not a ZooKeeper operation: {op!r}")
        if not transaction.operations:
            return []
        results = await self._result(transaction.commit_async())
        for index, result in enumerate(results):
            if isinstance(result, Exception) and not isinstance(result, RolledBackError):
                result.op_index = index
                raise result
        return results

    # --- the bridge ------------------------------------------------------

    @property
    def _kz(self) -> KazooClient:
        if self._kazoo is None:
            raise RuntimeError("ZkClient is not connected: call connect() first")
        return self._kazoo

    def _post(self, fn, *args) -> None:  # any thread
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    async def _result(self, answer, on_answer=None):
        """Waits in Trio for kazoo's answer; ``on_answer(value, error)`` runs
        on kazoo's thread before kazoo registers the request's watch."""
        pending = _Pending()

        def answered(result):
            value, error = result.value, result.exception
            if on_answer is not None:
                on_answer(value, error)
            self._post(pending.resolve, value, error)

        answer.rawlink(answered)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value

    async def _watched(self, kind: str, path: str, callback, send):
        if callback is None:
            return await self._result(send(None))
        watch = self._watches.arming(kind, path, callback)
        try:
            answer = send(watch)
        except BaseException:
            self._watches.answered(watch, armed=False)
            raise

        def on_answer(value, error):
            # kazoo keeps the watch when the read succeeded, or when exists() found nothing.
            self._watches.answered(watch, armed=error is None, absent=value is None)

        return await self._result(answer, on_answer)

    def _watch_fired(self, watch: Watch, event) -> None:  # kazoo's thread
        self._watches.fired(watch)
        if event.type == EventType.NONE:
            # The connection was lost (kazoo forgets its watches) or the session ended.
            self._post(self._watch_lost, watch, self._kazoo._session_id)
        else:
            self._post(self._call_back, watch.callback, ZkEvent(_EVENT_TYPES[event.type], event.path))

    def _watch_lost(self, watch: Watch, session_id) -> None:
        if session_id is not None and session_id == self.session_id and not self._closing:
            self._lost[watch.key] = watch

    def _rearm(self, lost: Watch, zxid: int) -> None:
        """Sets a dropped watch again, firing it when its node changed after ``zxid``."""
        kind, path, callback, absent = lost.kind, lost.path, lost.callback, lost.absent
        watch = self._watches.arming(kind, path, callback)
        if kind == CHILD:
            answer = self._kz.get_children_async(path, watch=watch, include_data=True)
        elif absent:
            answer = self._kz.exists_async(path, watch=watch)
        else:
            answer = self._kz.get_async(path, watch=watch)

        def rearmed(result):  # kazoo's thread
            value, error = result.value, result.exception
            event = None
            if error is None:
                if kind == CHILD:
                    event = "child" if value[1].pzxid > zxid else None
                elif absent:
                    event = "created" if value is not None else None
                else:
                    event = "changed" if value[1].mzxid > zxid else None
                self._watches.answered(watch, armed=True, absent=value is None)
            else:
                self._watches.answered(watch, armed=False)
                if isinstance(error, NoNodeError):
                    event = "deleted"
                elif isinstance(error, ConnectionLoss):
                    watch.absent = absent
                    self._post(self._watch_lost, watch, self._kazoo._session_id)
            if event is not None:
                self._post(self._call_back, callback, ZkEvent(event, path))

        answer.rawlink(rearmed)

    @staticmethod
    def _call_back(fn, arg) -> None:
        # Raising out of run_sync_soon would crash Trio itself.
        try:
            fn(arg)
        except Exception:
            log.exception("ZooKeeper callback %r failed", fn)
