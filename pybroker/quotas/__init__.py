"""Client quotas (KIP-13, KIP-124, KIP-219): produce and fetch byte rates
and request time per user and client id, as Kafka's ClientQuotaManager
and ClientRequestQuotaManager keep them. Pure: the caller gives the time
and acts on the throttle times (the server mutes the connection)."""

from .manager import (
    CONSUMER_BYTE_RATE,
    CONTROLLER_MUTATION_RATE,
    DEFAULT,
    PRODUCER_BYTE_RATE,
    QUOTA_KEYS,
    REQUEST_PERCENTAGE,
    ClientQuotas,
)

__all__ = [
    "CONSUMER_BYTE_RATE",
    "CONTROLLER_MUTATION_RATE",
    "DEFAULT",
    "PRODUCER_BYTE_RATE",
    "QUOTA_KEYS",
    "REQUEST_PERCENTAGE",
    "ClientQuotas",
]
