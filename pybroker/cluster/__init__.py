"""Cluster metadata behind one interface: topics, partitions, brokers.

``metadata.MetadataView`` (read) and ``metadata.MetadataWriter`` (write)
are what the rest of the broker holds; the records are in ``model``.
Single-node mode keeps the metadata in a file in the data directory
(``local.LocalMetadata``); cluster mode (ZooKeeper) implements the same
interface later. ``admin.TopicAdmin`` is topic administration as the admin
handlers see it; ``placement`` places new partitions' replicas.
"""

from .metadata import MetadataView, MetadataWriter
from .model import BrokerInfo, PartitionInfo, PartitionState, TopicInfo

__all__ = ["BrokerInfo", "MetadataView", "MetadataWriter", "PartitionInfo", "PartitionState", "TopicInfo"]
