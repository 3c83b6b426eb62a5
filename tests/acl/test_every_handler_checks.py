"""Every API but those Kafka serves before authentication takes the
authorizer: a handler added without it would serve everyone."""

from pybroker.handlers import load_all
from pybroker.protocol.registry import ApiKey

# Kafka authorizes none of these: they come before a principal is known.
UNCHECKED = {ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE}


def test_every_handler_takes_the_authorizer():
    missing = sorted(ApiKey(key).name for key, h in load_all().items()
                     if key not in UNCHECKED and "authorizer" not in h.services)
    assert not missing, f"handlers without ACL checks (add an ``authorizer`` parameter, as KafkaApis checks): {missing}"
