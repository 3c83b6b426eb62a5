"""What the TLS and SASL tests do once connected: a message produced and
consumed back in a new group, with librdkafka's settings given; and the
settings of a SASL client, librdkafka's and kafka-python's (aiokafka's
are the same)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

WAIT_S = 30


def round_trip(conf: dict, consumer_conf: dict | None = None, text: bytes = b"secured") -> None:
    topic = f"secured-{uuid.uuid4().hex[:8]}"
    producer = Producer(conf)
    producer.produce(topic, key=b"k", value=text)
    assert producer.flush(WAIT_S) == 0
    consumer = Consumer({**(consumer_conf or conf), "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        message = None
        while time.monotonic() < deadline and (message is None or message.error()):
            message = consumer.poll(0.2)
        assert message is not None and not message.error() and message.value() == text
    finally:
        consumer.close()


def librdkafka_sasl(port: int, mechanism: str, user: str, password: str, **more) -> dict:
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": mechanism, "sasl.username": user, "sasl.password": password, **more}


def kafka_python_sasl(port: int, mechanism: str, user: str, password: str, **more) -> dict:
    return {"bootstrap_servers": f"127.0.0.1:{port}", "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": mechanism, "sasl_plain_username": user, "sasl_plain_password": password, **more}
