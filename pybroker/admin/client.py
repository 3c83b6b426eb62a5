"""A blocking Kafka client on pybroker's own codec, for the admin CLI.

One ``Connection`` is one socket to one broker: it asks ApiVersions first
and then sends every request in the highest version that the broker, the
codec and the calling code all know (``call(body, lo, hi)``: the caller
names the range whose fields it fills and reads). ``Client`` holds the
connections of one command and routes: partition requests to the leader
Metadata names, group requests to the coordinator FindCoordinator names,
topic creation and deletion to the controller.

Failures reach the user as one ``AdminError`` line that starts with Kafka's
error name (``TOPIC_ALREADY_EXISTS: Topic 'x' already exists.``).
"""

from __future__ import annotations

import socket
import time
from typing import Self

from pybroker.protocol.error_codes import ErrorCode
from pybroker.protocol.errors import DecodeError
from pybroker.protocol.framing import FrameDecoder, decode_response, encode_request
from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.find_coordinator_request import FindCoordinatorRequest
from pybroker.protocol.messages.metadata_request import MetadataRequest, MetadataRequestTopic
from pybroker.protocol.registry import ApiKey, api_info
from pybroker.sasl.client import SaslLogin, SaslRefused

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
CLIENT_ID = "pybroker-cli"
GROUP_KEY = 0


class AdminError(Exception):
    """A failure to report in one line: ``NAME: what happened``."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


def kafka_error(code: int, message: str | None = None, subject: str = "") -> AdminError:
    error = ErrorCode.for_code(code)
    text = message or error.message
    return AdminError(error.name, f"{text} ({subject})" if subject and not message else text)


def check(code: int, message: str | None = None, subject: str = "") -> None:
    if code:
        raise kafka_error(code, message, subject)


def api_name(api_key: int) -> str:
    """Kafka's CamelCase name of an API (``CreatePartitions``)."""
    return api_info(api_key).request.NAME.removesuffix("Request")


def parse_hosts(bootstrap: str) -> list[tuple[str, int]]:
    hosts = []
    for item in bootstrap.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise AdminError("INVALID_CONFIG", f"bootstrap server '{item}' is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    return hosts


class Connection:
    def __init__(self, host: str, port: int, timeout: float = 30, security=None):
        self.address = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise AdminError("NETWORK_EXCEPTION", f"cannot connect to {self.address}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # --command-config's TLS and SASL (admin/security.py), if any.
        self.sock = security.wrap(sock, host) if security is not None else sock
        self.timeout = timeout
        self.frames = FrameDecoder()
        self.correlation = 0
        self.versions: dict[int, tuple[int, int]] = {}
        self._negotiate()
        if security is not None and security.sasl:
            self._authenticate(security)

    def _authenticate(self, security) -> None:
        login = SaslLogin(security.mechanism, security.username, security.password)
        try:
            self._send(login.handshake(), 1)
            request = login.next(self._receive(ApiKey.SASL_HANDSHAKE, 1))
            version = self.version(ApiKey.SASL_AUTHENTICATE, 0, 2)
            while request is not None:
                self._send(request, version)
                request = login.next(self._receive(ApiKey.SASL_AUTHENTICATE, version))
        except SaslRefused as exc:
            message = exc.message
            if exc.api == "SaslHandshake":
                message = (f"{self.address} does not enable {security.mechanism} "
                           f"(it enables {', '.join(exc.enabled) or 'nothing'})")
            raise kafka_error(exc.error_code, message, subject=exc.api or "") from None

    def _negotiate(self) -> None:
        # v3 first; a broker that lacks it answers in v0 with
        # UNSUPPORTED_VERSION (and its ranges), which v0 decodes.
        for version in (3, 0):
            self._send(ApiVersionsRequest(client_software_name="pybroker-cli", client_software_version="1")
                       if version == 3 else ApiVersionsRequest(), version)
            try:
                response = self._receive(ApiKey.API_VERSIONS, version)
            except DecodeError:
                continue
            if response.error_code == ErrorCode.UNSUPPORTED_VERSION and version:
                continue
            check(response.error_code, subject="ApiVersions")
            self.versions = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
            return
        raise AdminError("UNSUPPORTED_VERSION", f"{self.address} answers no ApiVersions version this client knows")

    def version(self, api_key: int, lo: int = 0, hi: int | None = None) -> int:
        """The highest version the broker, the codec and the caller share."""
        ours = api_info(api_key).valid_versions
        hi = ours[1] if hi is None else min(hi, ours[1])
        theirs = self.versions.get(api_key)
        if theirs is None:
            raise AdminError("UNSUPPORTED_VERSION", f"broker does not support {api_name(api_key)}")
        if theirs[1] < lo or theirs[0] > hi:
            raise AdminError(
                "UNSUPPORTED_VERSION",
                f"broker supports {api_name(api_key)} v{theirs[0]}-{theirs[1]}, this client v{lo}-{hi}",
            )
        return min(hi, theirs[1])

    def supports(self, api_key: int) -> bool:
        return api_key in self.versions

    def call(self, body, lo: int = 0, hi: int | None = None, *, expect_response: bool = True):
        """Send ``body`` in the best shared version in [lo, hi]; returns
        (response, version used). acks=0 produce expects no response."""
        version = self.send(body, lo, hi)
        if not expect_response:
            return None, version
        return self.receive(body.API_KEY, version), version

    def send(self, body, lo: int = 0, hi: int | None = None) -> int:
        """The first half of ``call`` (the version used): send to several
        brokers, then receive from each, and they work at once."""
        version = self.version(body.API_KEY, lo, hi)
        self._send(body, version)
        return version

    def receive(self, api_key: int, version: int):
        return self._receive(api_key, version)

    def _send(self, body, version: int) -> None:
        self.correlation += 1
        try:
            self.sock.sendall(encode_request(body, version, self.correlation, CLIENT_ID))
        except OSError as exc:
            raise AdminError("NETWORK_EXCEPTION", f"lost {self.address}: {exc}") from None

    def _receive(self, api_key: int, version: int):
        deadline = time.monotonic() + self.timeout
        while (frame := self.frames.next_frame()) is None:
            if time.monotonic() > deadline:
                raise AdminError("REQUEST_TIMED_OUT", f"no answer from {self.address} to {api_name(api_key)}")
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                data = None
            except OSError as exc:
                raise AdminError("NETWORK_EXCEPTION", f"lost {self.address}: {exc}") from None
            if data == b"":
                raise AdminError("NETWORK_EXCEPTION", f"{self.address} closed the connection ({api_name(api_key)})")
            if data:
                self.frames.feed(data)
        header, body = decode_response(api_key, version, frame)
        if header.correlation_id != self.correlation:
            raise AdminError("CORRUPT_MESSAGE", f"{self.address} answered request {header.correlation_id}, "
                             f"expected {self.correlation}")
        return body

    def close(self) -> None:
        self.sock.close()


class Client:
    """The connections of one command, routed by Metadata."""

    def __init__(self, bootstrap: str = DEFAULT_BOOTSTRAP, timeout: float = 30, security=None):
        self.bootstrap = parse_hosts(bootstrap)
        self.timeout = timeout
        self.security = security
        self._bootstrap_conn: Connection | None = None
        self._by_node: dict[int, Connection] = {}
        self.brokers: dict[int, tuple[str, int, str | None]] = {}
        self.controller_id = -1
        self.cluster_id: str | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection; later calls open new ones (after Ctrl-C
        a connection may hold half a response)."""
        for conn in {id(c): c for c in [self._bootstrap_conn, *self._by_node.values()] if c}.values():
            conn.close()
        self._bootstrap_conn = None
        self._by_node = {}

    def any(self) -> Connection:
        """A connection to some broker of the bootstrap list."""
        if self._bootstrap_conn is None:
            failure = None
            for host, port in self.bootstrap:
                try:
                    self._bootstrap_conn = Connection(host, port, self.timeout, self.security)
                    break
                except AdminError as exc:
                    failure = exc
            else:
                raise failure
        return self._bootstrap_conn

    def metadata(self, topics: list[str] | None = None, auto_create: bool = False):
        """Metadata of ``topics`` (None: every topic); refreshes the brokers."""
        body = MetadataRequest(
            topics=None if topics is None else [MetadataRequestTopic(name=t) for t in topics],
            allow_auto_topic_creation=auto_create,
        )
        response, _ = self.any().call(body, 1, 12)
        self.brokers = {b.node_id: (b.host, b.port, b.rack) for b in response.brokers}
        self.controller_id = response.controller_id
        self.cluster_id = response.cluster_id
        return response

    def broker(self, node_id: int) -> Connection:
        conn = self._by_node.get(node_id)
        if conn is None:
            if node_id not in self.brokers:
                self.metadata([])
            if node_id not in self.brokers:
                raise kafka_error(ErrorCode.LEADER_NOT_AVAILABLE, subject=f"broker {node_id} is not in the metadata")
            host, port, _ = self.brokers[node_id]
            boot = self.any()
            if boot.address == f"{host}:{port}":
                conn = boot
            else:
                conn = Connection(host, port, self.timeout, self.security)
            self._by_node[node_id] = conn
        return conn

    def controller(self) -> Connection:
        """The controller (Kafka in ZooKeeper mode wants topic changes
        there); any broker when the metadata names none."""
        if self.controller_id < 0:
            self.metadata([])
        return self.broker(self.controller_id) if self.controller_id >= 0 else self.any()

    def coordinator(self, group: str) -> Connection:
        """The group's coordinator, asked until it is known (a fresh
        cluster answers COORDINATOR_NOT_AVAILABLE for a moment)."""
        deadline = time.monotonic() + self.timeout
        while True:
            conn = self.any()
            version = conn.version(ApiKey.FIND_COORDINATOR, 0, 6)
            if version >= 4:
                body = FindCoordinatorRequest(key_type=GROUP_KEY, coordinator_keys=[group])
            else:
                body = FindCoordinatorRequest(key=group, key_type=GROUP_KEY)
            response, _ = conn.call(body, version, version)
            if version >= 4:
                (found,) = response.coordinators
            else:
                found = response
            if found.error_code == 0:
                self.brokers.setdefault(found.node_id, (found.host, found.port, None))
                return self.broker(found.node_id)
            if not ErrorCode.for_code(found.error_code).retriable or time.monotonic() > deadline:
                check(found.error_code, found.error_message, subject=f"group {group}")
            time.sleep(0.1)  # a retry pause, not synchronisation

    def partitions(self, topic: str, auto_create: bool = False) -> dict[int, int]:
        """partition -> leader id, waiting out LEADER_NOT_AVAILABLE (a topic
        just created); UNKNOWN_TOPIC_OR_PARTITION when it does not exist."""
        deadline = time.monotonic() + self.timeout
        while True:
            (meta,) = self.metadata([topic], auto_create).topics
            error = meta.error_code
            if not error and meta.partitions and all(p.leader_id >= 0 for p in meta.partitions):
                return {p.partition_index: p.leader_id for p in meta.partitions}
            retriable = error in (0, ErrorCode.LEADER_NOT_AVAILABLE) or (
                auto_create and error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            )
            if not retriable or time.monotonic() > deadline:
                check(error or ErrorCode.LEADER_NOT_AVAILABLE, subject=f"topic '{topic}'")
            time.sleep(0.1)  # a retry pause, not synchronisation
