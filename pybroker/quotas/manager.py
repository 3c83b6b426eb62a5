"""Which quota applies to a request, and the throttle time it earns.

Configs are kept per entity as Kafka's ZooKeeper mode keeps them
(pybroker.cluster.client_quotas): ``/config/users/<user>``,
``/config/clients/<client-id>``, ``/config/users/<user>/clients/<client-id>``,
``<default>`` standing for every user or client id. The most specific
entity holding a quota key wins, in ClientQuotaManager's order:

1. /config/users/<user>/clients/<client-id>
2. /config/users/<user>/clients/<default>
3. /config/users/<user>
4. /config/users/<default>/clients/<client-id>
5. /config/users/<default>/clients/<default>
6. /config/users/<default>
7. /config/clients/<client-id>
8. /config/clients/<default>

The level found decides who shares a rate (Kafka's metric tags): a quota
on a user (3, 6) is shared by all that user's client ids; one on a client
id (7, 8) by every user of it; the others count per user and client id.
The user is the principal's name ("alice" of "User:alice").

Three quota types, each with its own rates: produce bytes (the request's
size), fetch bytes (a consumer's response; followers are replication,
not clients) and request time (``request_percentage``: percent of one
thread, recorded as seconds x 100). ``controller_mutation_rate`` is
stored and described but not enforced.

The server calls ``charge_request`` as it takes a request (the request
time, a Produce's bytes: before the next request is read, as Kafka reads
one at a time) and ``charge_response`` once the answer is known (a
consumer Fetch's bytes); the latter writes the throttle time into the
response (every response with a ``throttle_time_ms`` field, from its
first version with one). A throttled consumer Fetch is answered empty and
its bytes are taken back, as Kafka does (KIP-219). Nothing is recorded while no quota
is configured: ``active`` is the server's one check.
"""

from __future__ import annotations

from functools import cache

from pybroker.protocol.registry import ApiKey, api_info

from .rates import Rate, record_and_throttle

DEFAULT = "<default>"  # Kafka's ConfigEntityName.Default
# Kafka drops a client's sensors after an hour without a request
# (InactiveSensorExpirationTimeSeconds); looked for, once a minute at most,
# while this many are kept.
INACTIVE_MS = 3600 * 1000
SENSORS_BEFORE_PURGE = 10_000
PURGE_EVERY_MS = 60_000
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
REQUEST_PERCENTAGE = "request_percentage"
CONTROLLER_MUTATION_RATE = "controller_mutation_rate"
# Kafka's DynamicConfig.Client keys and their types.
QUOTA_KEYS = {
    PRODUCER_BYTE_RATE: "LONG",
    CONSUMER_BYTE_RATE: "LONG",
    REQUEST_PERCENTAGE: "DOUBLE",
    CONTROLLER_MUTATION_RATE: "DOUBLE",
}
ENFORCED = (PRODUCER_BYTE_RATE, CONSUMER_BYTE_RATE, REQUEST_PERCENTAGE)


def user_of(principal: str) -> str:
    """KafkaPrincipal.getName: "User:alice" -> "alice"."""
    return principal.partition(":")[2] if ":" in principal else principal


@cache
def throttle_field_from(api_key: int) -> int | None:
    """The first version of ``api_key``'s response with throttle_time_ms
    (None: it never has one; such APIs are not throttled, as Kafka exempts
    the inter-broker ones and the SASL exchange)."""
    from pybroker.protocol.codegen import SCHEMA_DIR, load_json, parse_versions

    name = api_info(api_key).response.NAME
    try:
        schema = load_json(SCHEMA_DIR / f"{name}.json")
    except OSError:
        return None
    for f in schema.get("fields", ()):
        if f.get("name") == "ThrottleTimeMs":
            versions = parse_versions(f["versions"])
            return versions[0] if versions else None
    return None


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


class ClientQuotas:
    """The quotas of one broker: limits from the entity configs, the rates
    (sensors) they are measured with, and the throttle arithmetic."""

    def __init__(self, samples: int = 11, window_seconds: int = 1):
        self.samples = samples
        self.window_ms = window_seconds * 1000.0
        # Checked by the server before anything else: any quota at all.
        self.active = False
        # {quota key: {(user or None, client or None): bound}}
        self._limits: dict[str, dict[tuple[str | None, str | None], float]] = {k: {} for k in ENFORCED}
        # {(quota key, user tag, client tag): Rate}, kept across config
        # changes as Kafka keeps its sensors (only the bound changes).
        self._rates: dict[tuple[str, str, str], Rate] = {}
        # {(quota key, user, client id): (rate, bound, tags) or None}: the
        # precedence walk once per client, redone after a config change.
        self._resolved: dict[tuple[str, str, str], tuple[Rate, float, tuple] | None] = {}
        # {(quota key, user tag, client tag): last record}: what the purge goes by.
        self._used: dict[tuple[str, str, str], float] = {}
        self._next_purge = 0.0

    # -- configs -----------------------------------------------------------------

    def update(self, users: dict, clients: dict, user_clients: dict) -> None:
        """New entity configs: ``users`` {user: configs}, ``clients``
        {client id: configs}, ``user_clients`` {user: {client id: configs}};
        "<default>" names the defaults."""
        limits: dict[str, dict[tuple[str | None, str | None], float]] = {k: {} for k in ENFORCED}
        entities = [((u, None), c) for u, c in users.items()]
        entities += [((None, c), cfg) for c, cfg in clients.items()]
        entities += [((u, c), cfg) for u, by_client in user_clients.items() for c, cfg in by_client.items()]
        for entity, configs in entities:
            for key in ENFORCED:
                bound = _number(configs.get(key))
                if bound is not None:
                    limits[key][entity] = bound
        self._limits = limits
        self._resolved = {}
        self.active = any(limits.values())

    def quota(self, key: str, user: str, client_id: str) -> tuple[tuple[str, str], float] | None:
        """The metric tags and bound of ``key`` for this user and client
        id, by Kafka's precedence; None: unlimited."""
        found = self._limits[key]
        if not found:
            return None
        for entity, tags in (
            ((user, client_id), (user, client_id)),
            ((user, DEFAULT), (user, client_id)),
            ((user, None), (user, "")),
            ((DEFAULT, client_id), (user, client_id)),
            ((DEFAULT, DEFAULT), (user, client_id)),
            ((DEFAULT, None), (user, "")),
            ((None, client_id), ("", client_id)),
            ((None, DEFAULT), ("", client_id)),
        ):
            bound = found.get(entity)
            if bound is not None:
                return tags, bound
        return None

    def _sensor(self, key: str, user: str, client_id: str) -> tuple[Rate, float, tuple] | None:
        k = (key, user, client_id)
        try:
            return self._resolved[k]
        except KeyError:
            pass
        found = self.quota(key, user, client_id)
        sensor = None
        if found is not None:
            (user_tag, client_tag), bound = found
            rate = self._rates.get((key, user_tag, client_tag))
            if rate is None:
                rate = self._rates[key, user_tag, client_tag] = Rate(self.samples, self.window_ms)
            sensor = (rate, bound, (key, user_tag, client_tag))
        if len(self._resolved) >= SENSORS_BEFORE_PURGE:
            self._resolved = {}  # a cache: many client ids without a quota must not grow it
        self._resolved[k] = sensor
        return sensor

    def _purge(self, now_ms: float) -> None:
        """Forget the rates of clients idle for an hour (a client id per
        connection must not grow the broker without end)."""
        idle = [tags for tags, last in self._used.items() if now_ms - last >= INACTIVE_MS]
        for tags in idle:
            del self._used[tags]
            self._rates.pop(tags, None)
        if idle:
            self._resolved = {}
        self._next_purge = now_ms + PURGE_EVERY_MS

    # -- recording ---------------------------------------------------------------

    def record(self, key: str, user: str, client_id: str, value: float, now_ms: float) -> int:
        """Record ``value`` against ``key``'s quota; the throttle time in ms."""
        sensor = self._sensor(key, user, client_id)
        if sensor is None:
            return 0
        rate, bound, tags = sensor
        self._used[tags] = now_ms
        if len(self._rates) >= SENSORS_BEFORE_PURGE and now_ms >= self._next_purge:
            self._purge(now_ms)
        # The request-time quota holds a client back one window at most
        # (ClientRequestQuotaManager); the byte rates are not capped.
        cap = int(self.window_ms) if key == REQUEST_PERCENTAGE else None
        return record_and_throttle(rate, bound, value, now_ms, cap)

    def unrecord(self, key: str, user: str, client_id: str, value: float, now_ms: float) -> None:
        sensor = self._sensor(key, user, client_id)
        if sensor is not None:
            sensor[0].record(-value, now_ms)

    def charge_request(
        self, api_key: int, version: int, request, principal: str, client_id: str | None, request_bytes: int,
        busy_seconds: float, now_ms: float, answered: bool = True,
    ) -> int:
        """Record a request as it is taken: its handler's time (unless it
        is not answered: a Produce with acks=0) and a Produce's bytes.
        The throttle time in ms."""
        if throttle_field_from(api_key) is None or _from_follower(api_key, version, request):
            return 0
        user = user_of(principal)
        client = client_id or ""
        throttle = 0
        if answered:
            throttle = self.record(REQUEST_PERCENTAGE, user, client, busy_seconds * 100.0, now_ms)
        if api_key == ApiKey.PRODUCE:
            throttle = max(throttle, self.record(PRODUCER_BYTE_RATE, user, client, request_bytes, now_ms))
        return throttle

    def charge_response(
        self, api_key: int, version: int, request, response, principal: str, client_id: str | None,
        throttle: int, now_ms: float,
    ) -> int:
        """Record a consumer Fetch's answer (``throttle``: what its request
        earned already); put the throttle time in ``response`` (from the
        first version with the field) and return it. A throttled consumer
        Fetch is answered empty and its bytes are taken back, as Kafka does
        (KIP-219)."""
        first = throttle_field_from(api_key)
        if first is None:
            return 0
        if api_key == ApiKey.FETCH and not _from_follower(api_key, version, request):
            user = user_of(principal)
            client = client_id or ""
            size = _records_size(response)
            fetch = self.record(CONSUMER_BYTE_RATE, user, client, size, now_ms)
            if fetch or throttle:
                self.unrecord(CONSUMER_BYTE_RATE, user, client, size, now_ms)
                response.responses = []
                if version >= 7 and request.session_epoch in (0, -1):
                    response.session_id = 0  # Kafka's throttled full fetch opens no session
            throttle = max(throttle, fetch)
        if throttle and version >= first:
            response.throttle_time_ms = throttle
        return throttle


def _from_follower(api_key: int, version: int, request) -> bool:
    """A follower's Fetch: replication, which client quotas do not cover."""
    if api_key != ApiKey.FETCH:
        return False
    return (request.replica_state.replica_id if version >= 15 else request.replica_id) >= 0


def _records_size(response) -> int:
    total = 0
    for topic in response.responses:
        for p in topic.partitions:
            if p.records is not None:
                total += len(p.records)
    return total
