"""The operations of a ZooKeeper multi (``ZkClient.multi``): plain
descriptions, applied all together or not at all.

    await zk.multi([ops.check("/controller_epoch", version), ops.set(path, data, version)])
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    path: str
    version: int


@dataclass(frozen=True)
class Create:
    path: str
    data: bytes = b""
    ephemeral: bool = False
    sequence: bool = False


@dataclass(frozen=True)
class SetData:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True)
class Delete:
    path: str
    version: int = -1


Op = Check | Create | SetData | Delete

# The names callers write, as ZooKeeper's own operations are named.
check = Check
create = Create
set = SetData  # ZooKeeper's name; this module has no use for the builtin
delete = Delete
