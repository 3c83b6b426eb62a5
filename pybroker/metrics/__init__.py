"""Prometheus metrics: the counts kept on the request path (``stats``),
the collector that reads them and the services' state at scrape time
(``collector``), and the HTTP endpoint (``endpoint``). Only the endpoint
and the collector import prometheus-client, and only when
``metrics.listener`` is set. docs/METRICS.md maps every name to Kafka's.
"""
