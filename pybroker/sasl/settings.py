"""Which SASL mechanisms a listener enables, and their users, from Kafka's
properties: ``sasl.enabled.mechanisms`` (or the listener's own
``listener.name.<listener>.sasl.enabled.mechanisms``) and, per mechanism,
``listener.name.<listener>.<mechanism>.sasl.jaas.config`` or else
``sasl.jaas.config`` (Kafka's lookup order)."""

from __future__ import annotations

from .jaas import JaasError
from .session import SUPPORTED_MECHANISMS, plain_users


def listener_mechanisms(listener: str, values, prefixed: dict[str, str]) -> dict[str, dict[str, str]]:
    """{mechanism: users}; ValueError naming the property at fault. The
    listener-prefixed keys used are taken out of ``prefixed``."""
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
        if not text:
            raise ValueError(f"listener {listener}: no JAAS configuration for {mechanism}: set {key} or sasl.jaas.config")
        try:
            found[mechanism] = plain_users(text)
        except JaasError as exc:
            raise ValueError(f"listener {listener}: {exc}") from None
    return found
