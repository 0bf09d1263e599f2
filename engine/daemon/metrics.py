"""The daemon's Prometheus metrics (one registry per daemon, served at /metrics)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class Metrics:
    def __init__(self, counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("ruledesk_events_received", "Events accepted into the inbox", ["event"], registry=r)
        self.duplicates = Counter("ruledesk_events_duplicate", "Events acknowledged and ignored (id seen before)",
                                  registry=r)
        self.refused = Counter("ruledesk_events_refused", "Intake bodies or lines refused", ["status"], registry=r)
        self.processed = Counter("ruledesk_events_processed", "Inbox events processed", ["event"], registry=r)
        self.failed = Counter("ruledesk_events_failed", "Inbox event runs that raised", ["event"], registry=r)
        self.latency = Histogram("ruledesk_processing_seconds", "Time to process one inbox event",
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.job_runs = Counter("ruledesk_job_runs", "Job attempts", ["kind"], registry=r)
        self.job_retries = Counter("ruledesk_job_retries", "Job attempts that will be tried again", ["kind"],
                                   registry=r)
        self.job_failures = Counter("ruledesk_job_failures", "Jobs that failed for good", ["kind"], registry=r)
        self.reload_ok = Gauge("ruledesk_config_last_reload_successful",
                               "1 if the last reload of the rules and configuration succeeded", registry=r)
        self.reload_time = Gauge("ruledesk_config_last_reload_success_timestamp_seconds",
                                 "When the last successful reload happened", registry=r)
        self.reloads = Counter("ruledesk_config_reloads", "Reloads by result", ["result"], registry=r)
        self.ruleset = Gauge("ruledesk_ruleset_active", "1 for the active ruleset", ["version", "source"], registry=r)
        self.store_up = Gauge("ruledesk_store_up", "1 if the store answered the last time it was used", registry=r)
        self.store_errors = Counter("ruledesk_store_errors", "Store operations that failed", ["operation"],
                                    registry=r)
        if counts is not None:
            r.register(_QueueCollector(counts))

    def activate(self, version: str, source: str) -> None:
        self.ruleset.clear()
        self.ruleset.labels(version=version, source=source).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _QueueCollector:
    """Queue depths read from the store when /metrics is scraped."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self):
        depth = GaugeMetricFamily("ruledesk_queue_depth", "Inbox events and jobs by status", labels=["queue", "status"])
        try:
            counts = self.counts()
        except Exception:  # the store is down: /readyz says so; the scrape still answers
            counts = {}
        for key, value in sorted(counts.items()):
            queue, _, status = key.partition("_")
            depth.add_metric([queue, status], value)
        yield depth

    def describe(self):
        return []
