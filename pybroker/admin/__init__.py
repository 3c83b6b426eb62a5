"""The admin CLI: ``pybroker topics|produce|consume|groups|configs`` and
``pybroker cluster describe``, a client of any Kafka-compatible cluster
built on pybroker's own codec (see docs/CLI.md)."""
