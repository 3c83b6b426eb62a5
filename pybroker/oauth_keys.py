"""The JWKS of OAUTHBEARER listeners that check signed tokens, kept
current: a ``file:`` URL is read once at start (as Kafka's
JwksFileVerificationKeyResolver does), an ``http(s):`` URL is fetched at
start and again every ``sasl.oauthbearer.jwks.endpoint.refresh.ms``, and
sooner when a token names a key id the set lacks (at most once a minute
per id, as RefreshingHttpsJwks does). A failed refresh keeps the keys
already known and is retried with backoff.

Fetches run in a worker thread, never on the event loop. A JWKS that
cannot be had at start stops the broker, as it stops Kafka.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import trio

from .sasl.jwks import JsonWebKeys, JwksError, parse_jwks

log = logging.getLogger("pybroker.sasl")

FETCH_TIMEOUT_S = 10.0
# RefreshingHttpsJwks.MISSING_KEY_ID_CACHE_IN_FLIGHT_MS.
MISSING_KID_INTERVAL_S = 60.0
_MAX_KID_LENGTH = 1000


class JwksUnavailable(Exception):
    """The keys of a listener's JWKS could not be had at start."""


def key_sets(sasl: dict[str, dict[str, object]]) -> list[JsonWebKeys]:
    """Every JWKS the listeners' validators check signatures with."""
    found = []
    for mechanisms in sasl.values():
        keys = getattr(mechanisms.get("OAUTHBEARER"), "keys", None)
        if isinstance(keys, JsonWebKeys):
            found.append(keys)
    return found


def _read(location: str) -> bytes:
    url = urlparse(location)
    if url.scheme.lower() == "file":
        return Path(unquote(url.path)).read_bytes()
    with urllib.request.urlopen(location, timeout=FETCH_TIMEOUT_S) as answer:
        return answer.read()


async def fetch(keys: JsonWebKeys) -> None:
    """Read ``keys.location`` and replace its keys; OSError or JwksError."""
    data = await trio.to_thread.run_sync(_read, keys.location, abandon_on_cancel=True)
    keys.keys = parse_jwks(data)


class _Refresher:
    def __init__(self, keys: JsonWebKeys):
        self.keys = keys
        self.soon = trio.Event()
        self.missing: dict[str, float] = {}
        keys.on_missing = self.missing_kid

    def missing_kid(self, kid: str) -> None:
        now = time.monotonic()
        if len(kid) > _MAX_KID_LENGTH or self.missing.get(kid, 0.0) > now:
            return
        if len(self.missing) >= 16:
            self.missing.pop(next(iter(self.missing)))
        self.missing[kid] = now + MISSING_KID_INTERVAL_S
        self.soon.set()

    async def run(self) -> None:
        keys = self.keys
        while True:
            with trio.move_on_after(keys.refresh_ms / 1000):
                await self.soon.wait()
            self.soon = trio.Event()
            problem = await fetch_with_retries(keys)
            if problem is None:
                log.info("OAuth JWKS refresh of %s complete: %d keys", keys.location, len(keys.keys))
            else:
                log.warning("OAuth JWKS refresh of %s failed (%s); keeping the %d keys known",
                            keys.location, problem, len(keys.keys))


async def fetch_with_retries(keys: JsonWebKeys) -> Exception | None:
    """Fetch, retrying after sasl.oauthbearer.jwks.endpoint.retry.backoff.ms,
    doubled each time, until retry.backoff.max.ms would pass (Kafka's
    Retry); the last problem, or None once fetched."""
    backoff = keys.backoff_ms / 1000
    deadline = trio.current_time() + keys.backoff_max_ms / 1000
    while True:
        try:
            await fetch(keys)
            return None
        except (OSError, JwksError) as exc:
            if urlparse(keys.location).scheme.lower() == "file" or trio.current_time() + backoff > deadline:
                return exc
            await trio.sleep(backoff)
            backoff *= 2


async def keep_current(sets: list[JsonWebKeys], task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Read every set, report started, then refresh the http(s) ones until cancelled."""
    for keys in sets:
        problem = await fetch_with_retries(keys)
        if problem is not None:
            raise JwksUnavailable(f"cannot read the JWKS at {keys.location}: {problem}")
        log.info("OAuth JWKS of %s: %d keys", keys.location, len(keys.keys))
    task_status.started()
    async with trio.open_nursery() as nursery:
        for keys in sets:
            if urlparse(keys.location).scheme.lower() in ("http", "https"):
                nursery.start_soon(_Refresher(keys).run)
