"""Completing the group coordinator's writes in tests that drive a
coordinator without a running broker: the writes are appended at once,
and committed (fsynced, by the broker's group-commit flusher) here."""

from __future__ import annotations

import trio

from pybroker.handlers import Later


def commit_writes(broker, coordinator=None, then=None):
    """Run the flusher until every write of ``coordinator`` (the broker's
    own by default) is committed and its callbacks have run; then await
    ``then()`` if given and return what it returns."""
    coordinator = coordinator or broker.groups

    async def main():
        result = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.replicas.run)
            await coordinator.writer.settle()
            if then is not None:
                result = await then()
            await coordinator.writer.settle()
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


def answer(broker, coordinator, response):
    """A handler's response; a ``Later`` one once its writes are committed."""
    if isinstance(response, Later):
        return commit_writes(broker, coordinator, response.run)
    return response
