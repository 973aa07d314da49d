"""Router figures for operators: plain counters on the hot path, read by Prometheus on scrape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(slots=True)
class RouterCounters:
    """Incremented inline by the router; a Prometheus counter per field costs too much there."""

    connections_total: int = 0
    auth_failures: int = 0
    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0
    denials: int = 0


class RouterCollector(Collector):
    """Exposes one router's counters and gauges as ``cohub_conat_*`` metrics."""

    def __init__(
        self,
        counters: RouterCounters,
        connections: Callable[[], int],
        subscriptions: Callable[[], int],
        server_id: str,
    ) -> None:
        self._counters = counters
        self._connections = connections
        self._subscriptions = subscriptions
        self._labels = [server_id]

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        gauges = [
            ("cohub_conat_connections", "Open socket.io connections.", self._connections()),
            (
                "cohub_conat_subscriptions",
                "Subscriptions held for all connections.",
                self._subscriptions(),
            ),
        ]
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc, labels=["server"])
            g.add_metric(self._labels, value)
            yield g
        counters = [
            # not "cohub_conat_connections": that is the gauge, and OpenMetrics names a
            # counter's family without "_total", so the two would clash
            (
                "cohub_conat_connections_accepted",
                "Connections accepted.",
                c.connections_total,
            ),
            ("cohub_conat_auth_failures", "Connections refused at sign-in.", c.auth_failures),
            ("cohub_conat_messages_in", "Published chunks received.", c.messages_in),
            ("cohub_conat_bytes_in", "Payload bytes received.", c.bytes_in),
            ("cohub_conat_messages_out", "Chunks delivered to subscribers.", c.messages_out),
            ("cohub_conat_bytes_out", "Payload bytes delivered.", c.bytes_out),
            ("cohub_conat_denials", "Publish or subscribe requests denied.", c.denials),
        ]
        for name, doc, value in counters:
            m = CounterMetricFamily(name, doc, labels=["server"])
            m.add_metric(self._labels, value)
            yield m
