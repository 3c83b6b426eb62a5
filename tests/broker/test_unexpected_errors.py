"""An unexpected error costs the request's connection, never the broker.

A handler that raises, one whose later answer raises, and one whose
response cannot be encoded are put in place of a real handler (a fault
injected into a broker running in this process); the client that sent the
request loses its connection, the broker logs the error once with its
traceback, and other clients, connected before or after, are served.
"""

from __future__ import annotations

import logging

import pytest

from pybroker.protocol.messages.api_versions_request import ApiVersionsRequest
from pybroker.protocol.messages.describe_cluster_request import DescribeClusterRequest
from pybroker.protocol.messages.produce_response import ProduceResponse
from pybroker.protocol.registry import ApiKey
from pybroker.handlers import HANDLERS, Handler, Later, load_all
from pybroker.testing import running_broker

from .wire import Wire


def raises(ctx, req):
    raise RuntimeError("injected fault")


def raises_later(ctx, req):
    async def later():
        raise RuntimeError("injected fault")

    return Later(later)


def answers_what_cannot_be_encoded(ctx, req):
    return ProduceResponse(responses=None)


@pytest.mark.parametrize("fault", [raises, raises_later, answers_what_cannot_be_encoded])
def test_a_faulty_handler_costs_one_connection(monkeypatch, caplog, fault):
    real = load_all()[ApiKey.DESCRIBE_CLUSTER]
    monkeypatch.setitem(HANDLERS, ApiKey.DESCRIBE_CLUSTER, Handler(real.api_key, real.min_version, real.max_version, fault))
    with running_broker() as broker, caplog.at_level(logging.ERROR):
        bystander = Wire(broker.bootstrap_servers)
        victim = Wire(broker.bootstrap_servers)
        victim.send(DescribeClusterRequest(), 0, 1)
        assert victim.closed_by_peer()
        for w in (bystander, Wire(broker.bootstrap_servers)):
            w.send(ApiVersionsRequest(), 3, 7)
            assert w.receive(18, 3)[0].correlation_id == 7
            w.close()
        victim.close()
        failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(failures) == 1 and failures[0].exc_info is not None, [r.getMessage() for r in caplog.records]
    assert broker.error is None
