"""Listeners as Kafka configures them: ``listeners`` and
``advertised.listeners`` (``NAME://host:port``), the security protocol of
each name from ``listener.security.protocol.map``, the inter-broker
listener (``inter.broker.listener.name`` or ``security.inter.broker.protocol``)
and KRaft's controller listeners (``controller.listener.names``), with
Kafka's rules and messages (KafkaConfig's listener validation).

Listeners are PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, the
inter-broker one too (pybroker.inter_broker); a KRaft controller listener
is not opened (there is no controller quorum to serve), so Kafka 4's
sample files start as a single node.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SUPPORTED_PROTOCOLS = SECURITY_PROTOCOLS
DEFAULT_PROTOCOL_MAP = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
NON_ROUTABLE = "0.0.0.0"
_ENDPOINT = re.compile(r"([A-Za-z0-9_\-]+)://\[?([0-9A-Za-z\-%._:]*?)\]?:([0-9]+)")


@dataclass(frozen=True)
class Listener:
    name: str
    host: str  # "" binds every interface
    port: int
    protocol: str = "PLAINTEXT"

    @classmethod
    def parse(cls, url: str) -> Listener:
        """Kafka's endpoint syntax (``NAME://host:port``, ``NAME://[::1]:port``,
        ``NAME://:port``); a name may hold underscores, as SASL_SSL does,
        which URL schemes may not."""
        m = _ENDPOINT.fullmatch(url.strip())
        if m is None or not 0 <= int(m.group(3)) <= 65535:
            raise ValueError(f"Unable to parse {url} to a broker endpoint")
        return cls(m.group(1).upper(), m.group(2), int(m.group(3)))

    @property
    def bind_host(self) -> str | None:
        return self.host or None

    @property
    def advertised_host(self) -> str:
        """Kafka advertises a listener without a host under this machine's
        canonical host name."""
        return self.host or socket.getfqdn()

    def url(self) -> str:
        return f"{self.name}://{self.host}:{self.port}"


@dataclass
class Listeners:
    bound: list[Listener]  # what is opened: every listener but the controller ones
    advertised: list[Listener]
    inter_broker: str
    controller: list[Listener]  # named by controller.listener.names: not opened


def _items(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def protocol_map(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in _items(text):
        name, sep, protocol = item.partition(":")
        name, protocol = name.strip().upper(), protocol.strip().upper()
        if not sep or not name or protocol not in SECURITY_PROTOCOLS:
            raise ValueError(
                f"Invalid value {text} for configuration listener.security.protocol.map:"
                f" map entry {item!r} is not NAME:PROTOCOL with PROTOCOL one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        if name in out:
            raise ValueError(f"Invalid value {text} for configuration listener.security.protocol.map: {name} twice")
        out[name] = protocol
    return out


def resolve(values: dict, explicit: set[str]) -> tuple[Listeners | None, list[str], list[str]]:
    """(listeners, problems, warnings) from the parsed properties."""
    problems: list[str] = []
    warnings: list[str] = []

    def parsed(key: str, text: str | None) -> list[Listener]:
        out = []
        for url in _items(text):
            try:
                out.append(Listener.parse(url))
            except ValueError as exc:
                problems.append(f"{key}: {exc}")
        return out

    try:
        protocols = protocol_map(values["listener.security.protocol.map"] or "")
    except ValueError as exc:
        problems.append(str(exc))
        protocols = protocol_map(DEFAULT_PROTOCOL_MAP)
    listeners = parsed("listeners", values["listeners"])
    advertised = parsed("advertised.listeners", values["advertised.listeners"]) if values["advertised.listeners"] else None
    if problems:
        return None, problems, warnings
    names = [lst.name for lst in listeners]
    if len(set(names)) != len(names):
        problems.append(f"Each listener must have a different name, listeners: {values['listeners']}")
    controller_names = [n.upper() for n in _items(values["controller.listener.names"])]
    typed = []
    for lst in listeners:
        protocol = protocols.get(lst.name)
        if protocol is None and lst.name in controller_names:
            protocol = "PLAINTEXT"  # Kafka's KRaft default for a controller listener
        if protocol is None:
            problems.append(f"No security protocol defined for listener {lst.name}")
            continue
        typed.append(Listener(lst.name, lst.host, lst.port, protocol))
    controller = [lst for lst in typed if lst.name in controller_names]
    bound = [lst for lst in typed if lst.name not in controller_names]
    for lst in controller:
        warnings.append(
            f"listener {lst.name} is a KRaft controller listener (controller.listener.names):"
            " pybroker runs no controller quorum and does not open it"
        )
    if not bound:
        problems.append("listeners must name at least one listener that is not a controller listener")
    by_name = {lst.name: lst for lst in bound}
    if advertised is None:
        advertised = list(bound)
    else:
        valid = ", ".join(lst.name for lst in typed)
        unknown = [lst.name for lst in advertised if lst.name not in {t.name for t in typed}]
        if unknown:
            problems.append(
                "advertised.listeners listener names must be equal to or a subset of the ones defined in listeners."
                f" Found {','.join(unknown)}. The valid options based on currently configured listeners are {valid}"
            )
        advertised = [
            Listener(lst.name, lst.host, lst.port, by_name[lst.name].protocol) for lst in advertised if lst.name in by_name
        ]
    if any(lst.host == NON_ROUTABLE for lst in advertised):
        problems.append(
            "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0. Use a routable IP address."
        )
    inter = _inter_broker(values, explicit, protocols, advertised, problems)
    for lst in bound:
        if lst.protocol not in SUPPORTED_PROTOCOLS:
            problems.append(
                f"listener {lst.name}: security protocol {lst.protocol} is not supported"
            )
    ports = [lst.port for lst in bound if lst.port]
    if len(set(ports)) != len(ports):
        problems.append(f"Each listener must have a different port, listeners: {values['listeners']}")
    if problems:
        return None, problems, warnings
    return Listeners(bound, advertised, inter, controller), problems, warnings


def _inter_broker(values, explicit, protocols, advertised, problems) -> str:
    if "inter.broker.listener.name" in explicit and "security.inter.broker.protocol" in explicit:
        problems.append("Only one of inter.broker.listener.name and security.inter.broker.protocol should be set.")
    name = values["inter.broker.listener.name"]
    if name:
        name = name.upper()
    else:
        protocol = (values["security.inter.broker.protocol"] or "PLAINTEXT").upper()
        if protocol not in SECURITY_PROTOCOLS:
            problems.append(
                f"Invalid value {protocol} for configuration security.inter.broker.protocol:"
                f" String must be one of: {', '.join(SECURITY_PROTOCOLS)}"
            )
            return ""
        name = protocol  # Kafka: the listener named after the protocol
    if advertised and name not in {lst.name for lst in advertised}:
        valid = ",".join(lst.name for lst in advertised)
        problems.append(
            "inter.broker.listener.name must be a listener name defined in advertised.listeners."
            f" The valid options based on currently configured listeners are {valid}"
        )
    return name


def parse_http_url(key: str, value: str, example: str) -> tuple[str, int, str]:
    """(host, port, path) of an ``http://host:port[/path]`` property (the
    metrics and console listeners); ValueError naming ``key`` and showing
    ``example``."""
    try:
        url = urlsplit(value.strip())
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{key} {value!r}: {exc}; expected {example}") from None
    if url.scheme != "http":
        raise ValueError(f"{key} {value!r}: only http is served; expected {example}")
    if not url.hostname or port is None:
        raise ValueError(f"{key} {value!r}: a host and a port are needed; expected {example}")
    if url.query or url.fragment or url.username or url.password:
        raise ValueError(f"{key} {value!r}: no query, fragment or user may be given; expected {example}")
    return url.hostname, port, url.path
