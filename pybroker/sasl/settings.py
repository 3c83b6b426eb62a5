"""Which SASL mechanisms a listener enables, and their users, from Kafka's
properties: ``sasl.enabled.mechanisms`` (or the listener's own
``listener.name.<listener>.sasl.enabled.mechanisms``) and, per mechanism,
``listener.name.<listener>.<mechanism>.sasl.jaas.config`` or else
``sasl.jaas.config`` (Kafka's lookup order)."""

from __future__ import annotations

from .jaas import JaasError, parse_jaas
from .mechanisms import SUPPORTED_MECHANISMS
from .plain import plain_users
from .scram import HASHES


def listener_mechanisms(listener: str, values, prefixed: dict[str, str]) -> dict[str, object]:
    """{mechanism: its settings} (PLAIN: its users; SCRAM: None, the
    credentials are the cluster's); ValueError naming the property at
    fault. The listener-prefixed keys used are taken out of ``prefixed``."""
    prefix = f"listener.name.{listener.lower()}."
    own = prefixed.pop(prefix + "sasl.enabled.mechanisms", None)
    enabled = [m.strip() for m in own.split(",") if m.strip()] if own is not None else values["sasl.enabled.mechanisms"]
    if not enabled:
        raise ValueError(f"listener {listener}: sasl.enabled.mechanisms is empty")
    unsupported = [m for m in enabled if m not in SUPPORTED_MECHANISMS]
    if unsupported:
        raise ValueError(
            f"listener {listener}: SASL mechanism {', '.join(unsupported)} is not supported"
            f" (sasl.enabled.mechanisms may name {', '.join(SUPPORTED_MECHANISMS)})"
        )
    found = {}
    for mechanism in enabled:
        key = f"{prefix}{mechanism.lower()}.sasl.jaas.config"
        text = prefixed.pop(key, None) or values["sasl.jaas.config"]
        if mechanism in HASHES:
            # ScramLoginModule's options only serve the broker's own
            # logins: the users are the stored credentials.
            found[mechanism] = None
            if text:
                try:
                    parse_jaas(text)
                except JaasError as exc:
                    raise ValueError(f"listener {listener}: {exc}") from None
            continue
        if not text:
            raise ValueError(f"listener {listener}: no JAAS configuration for {mechanism}: set {key} or sasl.jaas.config")
        try:
            found[mechanism] = plain_users(text)
        except JaasError as exc:
            raise ValueError(f"listener {listener}: {exc}") from None
    return found
