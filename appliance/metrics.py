"""Prometheus metrics of the appliance, and the HTTP endpoint that serves them.

Labels are bounded: stream ids, model ids and detection labels come from the
config and the model's label file, never from URLs or free text.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from appliance import __version__

if TYPE_CHECKING:
    from appliance.config.schema import ApplianceConfig

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (
    0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0,
)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class ApplianceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build = Info("appliance_build", "Appliance build", registry=r)
        self.build.info({"version": __version__})
        self.config = Info("appliance_config", "Loaded configuration", registry=r)
        self.frames_decoded = Counter(
            "appliance_stream_frames_decoded", "Frames decoded per stream", ["stream"], registry=r
        )
        self.frames_analyzed = Counter(
            "appliance_stream_frames_analyzed", "Frames analyzed per stream", ["stream"], registry=r
        )
        self.frames_dropped = Counter(
            "appliance_stream_frames_dropped",
            "Frames ready for analysis but replaced by a newer one before analysis",
            ["stream"],
            registry=r,
        )
        self.stream_up = Gauge(
            "appliance_stream_up", "1 while the stream delivers frames, else 0", ["stream"], registry=r
        )
        self.reconnects = Counter(
            "appliance_stream_reconnects", "Times the stream's pipeline was rebuilt", ["stream"], registry=r
        )
        self.stream_errors = Counter(
            "appliance_stream_errors", "Stream failures (errors, stalls, unexpected ends)", ["stream"], registry=r
        )
        self.last_frame = Gauge(
            "appliance_stream_last_frame_timestamp_seconds",
            "Unix time of the stream's last decoded frame",
            ["stream"],
            registry=r,
        )
        self.inference_latency = Histogram(
            "appliance_inference_latency_seconds",
            "Time of one batched inference",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "appliance_inference_batch_size", "Frames per batched inference", ["model"],
            buckets=BATCH_BUCKETS, registry=r,
        )
        self.inference_errors = Counter(
            "appliance_inference_errors", "Batches that failed in inference or parsing", ["model"], registry=r
        )
        self.frame_latency = Histogram(
            "appliance_frame_latency_seconds",
            "Time from a frame's arrival (decoded and scaled) to its result",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.frame_age = Histogram(
            "appliance_frame_age_seconds",
            "Age of a frame (since it was decoded and scaled) when its analysis starts",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.detections = Counter(
            "appliance_detections", "Detections per stream and label", ["stream", "label"], registry=r
        )

        self.events = Counter(
            "appliance_events", "Events emitted, by kind, phase and severity", ["kind", "phase", "severity"], registry=r
        )
        self.parts_inspected = Counter(
            "appliance_parts_inspected", "Parts counted at an inspection line, ok or defective",
            ["stream", "line", "result"], registry=r,
        )
        self.defect_rate = Gauge(
            "appliance_defect_rate_ratio", "Defective fraction of the recent parts at an inspection line",
            ["stream", "line"], registry=r,
        )
        self.zone_occupancy = Gauge(
            "appliance_zone_objects", "Tracked objects inside a zone (rules.presence)", ["stream", "zone"], registry=r,
        )
        self.line_crossings = Counter(
            "appliance_line_crossings", "Tracked objects that crossed a line, by direction (rules.presence)",
            ["stream", "line", "direction"], registry=r,
        )
        # Event delivery (appliance/events/delivery.py); sink = the sink's configured id.
        self.outbox_pending = Gauge("appliance_outbox_pending_events", "Events in the outbox not yet delivered",
                                    ["sink"], registry=r)
        self.outbox_oldest_age = Gauge("appliance_outbox_oldest_pending_age_seconds",
                                       "Age of the oldest event not yet delivered (0 when none)", ["sink"], registry=r)
        self.events_delivered = Counter("appliance_events_delivered", "Events acknowledged by the sink", ["sink"],
                                        registry=r)
        self.delivery_failures = Counter("appliance_events_delivery_failures",
                                         "Times a sink failed (refused, connection lost, error answers after retries)",
                                         ["sink"], registry=r)
        self.events_dropped = Counter("appliance_events_dropped", "Events removed from the outbox undelivered",
                                      ["reason"], registry=r)
        self.outbox_bytes = Gauge("appliance_outbox_bytes", "Bytes of event JSON held in the outbox", registry=r)
        self.anomaly_score = Histogram(
            "appliance_part_anomaly_score", "Anomaly model score of each part counted at an inspection line",
            ["stream", "line"], buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2.0), registry=r,
        )
        # Ops view: what the config asks for and which model files run (set by describe_config).
        self.target_fps = Gauge(
            "appliance_stream_target_fps", "Frames per second the config asks to analyze (analyze_fps)",
            ["stream"], registry=r,
        )
        self.model = Info(
            "appliance_model", "A configured model: file, content hash, parser, input size", ["model"], registry=r
        )

    def describe_config(self, config: ApplianceConfig) -> None:
        """Config version, device and site (dashboards join on them), stream targets and model versions."""
        self.config.info({"version": config.version, "device": config.device.id, "site": config.device.site})
        for source in config.sources:
            self.target_fps.labels(source.id).set(source.analyze_fps)
        for model in config.models:
            self.model.labels(model.id).info({
                "file": model.onnx.name, "sha256": _sha256(model.onnx)[:12], "parser": model.parser,
                "input": f"{model.input.width}x{model.input.height}",
            })

    def declare_stream(self, stream: str) -> None:
        """Make a stream's series exist from start-up (a stream that never worked shows up 0)."""
        for family in (self.frames_decoded, self.frames_analyzed, self.frames_dropped,
                       self.reconnects, self.stream_errors):
            family.labels(stream)
        self.stream_up.labels(stream).set(0)

    def declare_model(self, model: str) -> None:
        self.inference_errors.labels(model)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


JsonPages = Mapping[str, Callable[[], tuple[int, dict[str, Any]]]]  # path -> (HTTP status, JSON body)


class MetricsServer:
    """Serves the registry at ``path`` on ``address:port`` (port 0 picks a free one), and JSON
    ``pages`` (``/healthz``, ``/readyz`` from appliance/health.py) beside it."""

    def __init__(
        self, metrics: ApplianceMetrics, address: str, port: int, path: str, pages: JsonPages | None = None
    ) -> None:
        metrics_path = path
        json_pages = dict(pages or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                route = self.path.split("?", 1)[0]
                if route in json_pages:
                    status, payload = json_pages[route]()
                    self._reply(status, "application/json", json.dumps(payload).encode())
                elif route == metrics_path:
                    self._reply(200, CONTENT_TYPE_LATEST, metrics.exposition())
                else:
                    self.send_error(404, "not found")

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                log.debug("metrics request: " + format, *args)

        self._server = ThreadingHTTPServer((address, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
