"""Cluster metadata behind one interface: topics, partitions, brokers.

Single-node mode keeps it in a file in the data directory
(``local.LocalMetadata``); cluster mode (ZooKeeper) implements the same
interface later.
"""

from .model import BrokerInfo, PartitionInfo, TopicInfo

__all__ = ["BrokerInfo", "PartitionInfo", "TopicInfo"]
