"""ZooKeeper for pybroker: a Trio client over kazoo (``client``), the
operations of a multi (``ops``) and ZooKeeper as a child process
(``server``). Only this package imports kazoo; the rest of pybroker sees
ZooKeeper's errors through the names re-exported here.
"""

from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError, SessionExpiredError
from kazoo.exceptions import ConnectionLoss as ConnectionLossError

from . import ops
from .client import ZkClient, ZkConnectTimeout, ZkEvent

__all__ = [
    "BadVersionError",
    "ConnectionLossError",
    "NoNodeError",
    "NodeExistsError",
    "NotEmptyError",
    "SessionExpiredError",
    "ZkClient",
    "ZkConnectTimeout",
    "ZkEvent",
    "ops",
]
