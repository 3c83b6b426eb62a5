"""The pytest plugin as a user's project meets it: ``kafka_broker_factory``
in its three scopes, the properties a test gives, and the developer
defaults (a new group's first member is not kept waiting for the initial
rebalance delay). Each project runs in its own pytest process."""

from __future__ import annotations

import textwrap

pytest_plugins = ["pytester"]

USER_TESTS = textwrap.dedent(
    """
    import socket
    import time
    import uuid

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    STARTED = {}


    def reachable(broker):
        try:
            socket.create_connection((broker.host, broker.port), timeout=2).close()
            return True
        except OSError:
            return False


    def test_properties_of_the_test(kafka_broker_factory):
        broker = kafka_broker_factory({"num.partitions": "3"})
        STARTED["function"] = broker
        topic = "t-" + uuid.uuid4().hex[:8]
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce(topic, b"one")
        assert producer.flush(30) == 0
        meta = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(topic, timeout=10)
        assert len(meta.topics[topic].partitions) == 3


    def test_dev_defaults_and_a_new_groups_first_message(kafka_broker_factory):
        broker = kafka_broker_factory()
        assert broker.broker.config["group.initial.rebalance.delay.ms"] == 0
        topic = "t-" + uuid.uuid4().hex[:8]
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce(topic, b"first")
        assert producer.flush(30) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "g-" + topic,
                             "auto.offset.reset": "earliest"})
        try:
            consumer.subscribe([topic])
            deadline = time.monotonic() + 30
            message = None
            while time.monotonic() < deadline and (message is None or message.error()):
                message = consumer.poll(0.2)
            assert message is not None and message.value() == b"first"
        finally:
            consumer.close()


    def test_a_function_scoped_broker_is_gone_after_its_test():
        assert not reachable(STARTED["function"])


    def test_module_scope_first(kafka_broker_factory_module):
        STARTED["module"] = kafka_broker_factory_module({"num.partitions": "2"})


    def test_module_scope_still_serving():
        assert reachable(STARTED["module"])


    def test_session_scope(kafka_broker_factory_session):
        broker = kafka_broker_factory_session()
        assert reachable(broker)
    """
)


def test_a_user_project_with_the_factory_fixtures(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-q")
    result.assert_outcomes(passed=6)


def test_a_property_pybroker_refuses_fails_the_test_with_the_reason(pytester):
    pytester.makepyfile(
        test_bad="""
        def test_bad(kafka_broker_factory):
            kafka_broker_factory({"num.partitions": "0"})
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-q")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Invalid value 0 for configuration num.partitions*"])
