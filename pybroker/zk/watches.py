"""The watch callables handed to kazoo, one per (kind, path, callback).

kazoo keeps a path's watchers in a set and calls each once per event, so
the same callback asked for twice on a path must reach kazoo as the same
object: this registry hands out that object while kazoo may hold it (armed,
or a request that arms it is in flight) and forgets it afterwards, so
watching many short-lived paths does not grow it for ever.

Used from two threads: the Trio thread arms watches, kazoo's connection
thread reports them armed and fired.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

DATA = "data"  # set by get and exists; fired by created, deleted, changed
CHILD = "child"  # set by get_children; fired by child, deleted


class Watch:
    """What kazoo calls when the watch fires; ``fire`` is given by the client."""

    __slots__ = ("absent", "armed", "callback", "fire", "inflight", "kind", "path")

    def __init__(self, kind: str, path: str, callback: Callable, fire: Callable):
        self.kind, self.path, self.callback, self.fire = kind, path, callback, fire
        self.inflight = 0  # requests carrying this watch, not yet answered
        self.armed = False  # kazoo holds it (a request carrying it succeeded since it last fired)
        self.absent = False  # set by an exists() that found no node: it waits for creation

    @property
    def key(self):
        return (self.kind, self.path, self.callback)

    def __call__(self, event) -> None:  # kazoo's thread
        self.fire(self, event)


class WatchRegistry:
    def __init__(self, fire: Callable[[Watch, object], None]):
        self._fire = fire
        self._lock = threading.Lock()
        self._watches: dict[tuple, Watch] = {}

    def arming(self, kind: str, path: str, callback: Callable) -> Watch:
        """The watch to send with a request about to go out."""
        with self._lock:
            watch = self._watches.get((kind, path, callback))
            if watch is None:
                watch = self._watches[(kind, path, callback)] = Watch(kind, path, callback, self._fire)
            watch.inflight += 1
            return watch

    def answered(self, watch: Watch, armed: bool, absent: bool = False) -> None:
        """The request carrying ``watch`` is answered; ``armed`` when kazoo
        now registers it (it does so right after this, on the same thread)."""
        with self._lock:
            watch.inflight -= 1
            if armed:
                watch.armed, watch.absent = True, absent
            self._forget_if_idle(watch)

    def fired(self, watch: Watch) -> None:
        """kazoo dropped ``watch``: it fired, or the connection was lost."""
        with self._lock:
            watch.armed = False
            self._forget_if_idle(watch)

    def __len__(self) -> int:
        return len(self._watches)

    def _forget_if_idle(self, watch: Watch) -> None:
        if not watch.armed and not watch.inflight and self._watches.get(watch.key) is watch:
            del self._watches[watch.key]
