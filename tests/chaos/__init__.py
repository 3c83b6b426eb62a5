"""Fault injection against a real three-broker cluster, and a Jepsen-style
checker of what the clients saw (CLUSTER.md, section D, "Proving it").

A run is: a LocalCluster (3 brokers, a topic with RF 3 and
min.insync.replicas=2), idempotent acks=all producers of two client
libraries and consumers logging everything to a history (``history``),
faults on a schedule drawn from a seed (``faults``, ``scenarios``; network
partitions through cutting proxies in front of ZooKeeper and of every
broker's listener: ``network``, ``proxy``), a heal
until every ISR is full again, a final read of every partition and of every
replica's files, and the checker (``checker``), pure Python over the
history, which counts each anomaly and the availability gaps.

``python -m tests.chaos --list`` names the scenarios; ``python -m
tests.chaos smoke --seed 1`` runs one. ``buggy_broker`` runs a broker with
a bug put in on purpose, to show that the checker catches a real one.
"""
