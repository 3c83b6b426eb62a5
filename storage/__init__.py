"""Partition logs on disk in Kafka's layout (synchronous; never imports trio or pybroker)."""
