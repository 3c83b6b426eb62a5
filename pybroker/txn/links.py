"""Connections from this broker to the others, one per broker, opened
when first needed and dropped when they fail: how a transaction
coordinator reaches the leaders of its transactions' partitions
(WriteTxnMarkers). One request at a time per broker."""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..replica.link import Link, LinkError

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0


class BrokerLinks:
    def __init__(self, broker_of: Callable[[int], object], client_id: str, security=None):
        """``broker_of(node id)``: its registration (host, port), or None;
        ``security``: the inter-broker listener's (pybroker.inter_broker)."""
        self.broker_of = broker_of
        self.client_id = client_id
        self.security = security
        self._links: dict[int, Link] = {}
        self._locks: dict[int, trio.Lock] = {}

    async def call(self, node: int, request, version: int):
        """The broker's answer; raises OSError, LinkError, ProtocolError or
        trio.TooSlowError when it cannot be had (the link is dropped). A
        link kept from an earlier call that fails at once is opened afresh
        and the request sent again, once: the other broker may have
        restarted since, and every request sent here (verify-only
        AddPartitionsToTxn, WriteTxnMarkers) may be repeated."""
        lock = self._locks.setdefault(node, trio.Lock())
        async with lock:
            kept = self._links.get(node)
            if kept is not None:
                try:
                    return await self._call(node, kept, request, version)
                except (OSError, LinkError):
                    pass
            return await self._call(node, None, request, version)

    async def _call(self, node: int, link: Link | None, request, version: int):
        try:
            if link is None:
                broker = self.broker_of(node)
                if broker is None:
                    raise OSError(f"broker {node} is not registered")
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    link = self._links[node] = await Link.open(
                        broker.host, broker.port, self.client_id, security=self.security)
            with trio.fail_after(REQUEST_TIMEOUT_S):
                return await link.call(request, version)
        except trio.BrokenResourceError as exc:
            await self._drop(node)
            raise LinkError(f"the connection to broker {node} broke") from exc
        except BaseException:
            await self._drop(node)
            raise

    async def _drop(self, node: int) -> None:
        dropped = self._links.pop(node, None)
        if dropped is not None:
            await dropped.aclose()
