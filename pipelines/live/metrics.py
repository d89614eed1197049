"""`--metrics-port`: Prometheus metrics on /metrics and a health check on /healthz, for the local live job.

A process supervisor (systemd, Kubernetes) restarts what it cannot see working:
/healthz answers 200 while every subscription's threads are alive and a pull has
succeeded within `unhealthy_after_secs`, and 503 with the reason otherwise. The
read's own figures (received, acknowledged, redelivered, leases expired, …) are read
from `pipelines.plumbing.lease` at scrape time; the rest are `worker.telemetry`'s counters.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from model.errors import UserError
from pipelines.plumbing import lease
from worker import telemetry

LEASE_COUNTS = {  # LeasedSubscription.counts key → (metric name, help)
    "received": ("complaints_messages_received", "Messages pulled from the subscription"),
    "acknowledged": ("complaints_acknowledged", "Acknowledgements Pub/Sub confirmed"),
    "ack_failed": ("complaints_ack_failed", "Acknowledgements that failed (those messages are redelivered)"),
    "redelivered": ("complaints_redelivered", "Messages handed back to Pub/Sub for redelivery"),
    "leases_expired": ("complaints_leases_expired", "Messages held past --max-lease-secs and handed back"),
    "pull_retries": ("complaints_pull_retries", "Pulls tried again after an error"),
}


class LeaseCollector:
    """The read's counters and its outstanding messages, per subscription, read when scraped."""

    def collect(self):
        subscriptions = lease.opened()
        for key, (name, doc) in LEASE_COUNTS.items():
            family = CounterMetricFamily(name, doc, labels=["subscription"])
            for leased in subscriptions:
                family.add_metric([leased.subscription], leased.counts[key])
            yield family
        outstanding = GaugeMetricFamily("complaints_outstanding_messages", "Pulled and not yet acknowledged",
                                        labels=["subscription"])
        for leased in subscriptions:
            outstanding.add_metric([leased.subscription], leased.outstanding)
        yield outstanding


def health(unhealthy_after_secs: float) -> tuple[bool, str]:
    """(healthy, why) for the process's subscriptions."""
    now = time.monotonic()
    for leased in lease.opened():
        if leased.failure:
            return False, leased.failure
        quiet = now - leased.last_pull_ok
        if quiet > unhealthy_after_secs:
            return False, f"no pull of {leased.subscription} has succeeded for {quiet:.0f} s"
    return True, "ok"


class MetricsServer:
    """A small threaded HTTP server; `close()` stops it."""

    def __init__(self, host: str, port: int, unhealthy_after_secs: float):
        collector = LeaseCollector()
        telemetry.REGISTRY.register(collector)
        self._collector = collector
        unhealthy_after = unhealthy_after_secs

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/metrics"):
                    self._answer(200, generate_latest(telemetry.REGISTRY), CONTENT_TYPE_LATEST)
                elif self.path.startswith("/healthz"):
                    healthy, why = health(unhealthy_after)
                    self._answer(200 if healthy else 503, (why + "\n").encode(), "text/plain; charset=utf-8")
                else:
                    self._answer(404, b"try /metrics or /healthz\n", "text/plain")

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not news
                pass

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            telemetry.REGISTRY.unregister(collector)
            raise UserError(f"cannot serve metrics on {host}:{port} ({exc.strerror}): choose another "
                            "--metrics-port") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        telemetry.REGISTRY.unregister(self._collector)
