"""The replica layer: the partitions this broker hosts, over their logs.

``ReplicaManager`` (manager.py) hosts the ``Partition`` replicas
(partition.py) and is the one way in for appends and their commit: a
leader's append checks and updates producer state in the log, and
``until_committed`` waits for the high watermark and the group-commit
fsync (flusher.py). Storage failures become KafkaError
KAFKA_STORAGE_ERROR here, so handlers never see storage exceptions.
"""

from .manager import Appended, Origin, ReplicaManager
from .partition import Partition, Role

__all__ = ["Appended", "Origin", "Partition", "ReplicaManager", "Role"]
