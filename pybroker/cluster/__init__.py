"""Cluster metadata behind one interface: topics, partitions, brokers.

``metadata.MetadataView`` (read) and ``metadata.MetadataWriter`` (write)
are what the rest of the broker holds; the records are in ``model``.
Single-node mode keeps the metadata in a file in the data directory
(``local.LocalMetadata``); cluster mode implements the read side as a
cache of ZooKeeper (``zk_metadata.ZkMetadata``), in Kafka's znode layout
(``znodes``), beside the other ZooKeeper-facing services (``zk_*``:
joining the cluster, topic administration, the partitions hosted here,
producer-id blocks) and the controller (``controller``).
``admin.TopicAdmin`` is topic administration as the admin handlers see
it; ``placement`` places new partitions' replicas.
"""

from .metadata import MetadataView, MetadataWriter
from .model import BrokerInfo, PartitionInfo, PartitionState, TopicInfo

__all__ = ["BrokerInfo", "MetadataView", "MetadataWriter", "PartitionInfo", "PartitionState", "TopicInfo"]
