"""The running appliance: config → backend → results, events and metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from appliance.analytics.assembly import analytics_for
from appliance.analytics.stream import StreamAnalytics
from appliance.clock import Clock, SystemClock
from appliance.config.loader import ConfigError
from appliance.config.schema import ApplianceConfig, SourceConfig
from appliance.events.delivery import Delivery, open_outbox, store_event
from appliance.events.factory import EventFactory
from appliance.events.outbox import Outbox
from appliance.events.snapshots import SnapshotStore, SourceImage
from appliance.health import ApplianceHealth
from appliance.inference.onnx_engine import load_engine
from appliance.inference.tensorrt_engine import load_tensorrt_engine
from appliance.jsonl import JsonlWriter
from appliance.metrics import ApplianceMetrics, MetricsServer
from appliance.pipeline.backend import make_backend
from appliance.pipeline.batching import EngineFactory, ResultSink
from appliance.reload import ReloadPlan, plan_reload
from appliance.types import Event, FrameResult

log = logging.getLogger(__name__)

SUMMARY_INTERVAL_S = 10.0
LOG_OMITS = frozenset({"heat_map"})  # attributes too long for the console (they are in the event itself)


class Appliance:
    def __init__(
        self,
        config: ApplianceConfig,
        clock: Clock | None = None,
        metrics: ApplianceMetrics | None = None,
        make_engine: EngineFactory | None = None,
        on_result: ResultSink | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = metrics or ApplianceMetrics()
        self.metrics.describe_config(config)
        threads = config.inference.threads_per_worker
        self._make_engine = make_engine or (  # engines.runtime: ONNX Runtime, or TensorRT on NVIDIA
            (lambda model: load_tensorrt_engine(config, model)) if config.engines.runtime == "tensorrt"
            else (lambda model: load_engine(model, threads=threads)))
        self.events = EventFactory(config.device.id, config.version, self.clock)
        self._results = JsonlWriter(config.results.jsonl) if config.results.jsonl else None
        self._event_log = JsonlWriter(config.events.jsonl) if config.events.jsonl else None
        # events.sinks: every event goes to the SQLite outbox first; one delivery thread per sink reads it
        self._outbox_lock = threading.Lock()  # a reload may replace the outbox and its delivery
        self.outbox, self.delivery = self._open_delivery(config)
        self._server: MetricsServer | None = None
        self._observe_result = on_result
        self._tally: dict[str, tuple[int, int]] = {}  # stream -> (frames, detections) since the last summary
        self._tally_lock = threading.Lock()
        shots = config.events.snapshots
        self.snapshots = (
            SnapshotStore(shots.directory, shots.max_count, shots.max_age_h * 3600) if shots.directory else None
        )
        # crop-scoring models run in the analytics, one engine each, shared by the streams
        self.second_stage = {m.id: self._make_engine(m) for m in config.models if m.second_stage}
        self.backend = make_backend(  # portable or deepstream (auto: logs which, and why)
            config, self._make_engine, self._on_result, self._on_event, self.events, self.metrics, self.clock
        )
        self.analytics = {s.id: self._analytics_for(config, s) for s in config.sources}
        self._analytics_locks = {s.id: threading.Lock() for s in config.sources}  # a reload swaps them
        # /healthz, /readyz (add a check: self.health.readiness.add(...)), host metrics, systemd notification
        self.health = ApplianceHealth(config, self.backend, self.metrics, self.clock,
                                      lambda: [*self.backend.loaded_models, *self.second_stage])

    def _analytics_for(self, config: ApplianceConfig, source: SourceConfig) -> StreamAnalytics:
        return analytics_for(config, source, self.events, self._on_event, self.metrics, self.snapshots,
                             self.second_stage, backend_tracks=self.backend.tracks_objects)

    def _open_delivery(self, config: ApplianceConfig) -> tuple[Outbox | None, Delivery | None]:
        if not config.events.sinks:
            return None, None
        outbox = open_outbox(config, self.metrics, self.clock)
        if config.events.outbox.delivered_by != "pipeline":  # appliance agent delivers
            return outbox, None
        return outbox, Delivery.from_config(config, outbox, self.metrics, self.clock)

    def reload(self, config: ApplianceConfig) -> ReloadPlan:
        """Takes a new config without a restart where it can (see ``appliance/reload.py``);
        where it cannot, changes nothing and says why in the plan."""
        plan = plan_reload(self.config, config)
        if not plan.hot:
            log.warning("config %s not taken: %s", config.version, plan.describe())
            return plan
        for source in config.sources:
            if source.id in plan.analytics:
                with self._analytics_locks[source.id]:  # between two of the stream's frames
                    self.analytics[source.id].close()
                    self.analytics[source.id] = self._analytics_for(config, source)
        if plan.sinks:
            with self._outbox_lock:
                self._close_delivery()
                self.outbox, self.delivery = self._open_delivery(config)
                if self.delivery is not None:
                    self.delivery.start()
        self.config = config
        self.events.config_version = config.version
        self.metrics.describe_config(config)
        log.info("config %s taken: %s", config.version, plan.describe())
        return plan

    @property
    def metrics_port(self) -> int | None:
        return self._server.port if self._server else None

    def start(self) -> None:
        m = self.config.metrics
        if m.enabled:
            self._server = MetricsServer(self.metrics, m.address, m.port, m.path, pages=self.health.pages)
            self._server.start()
            log.info("metrics at http://%s:%d%s", m.address, self._server.port, m.path)
        if self.delivery is not None:
            self.delivery.start()
        self.backend.start()
        log.info("running %d streams, %d models", len(self.config.sources), len(self.config.models))
        self.health.started()

    def run(
        self,
        duration: float | None = None,
        stop: threading.Event | None = None,
        reload: threading.Event | None = None,
        load: Callable[[], ApplianceConfig] | None = None,
    ) -> None:
        """Runs until ``stop`` is set, ``duration`` seconds pass, or every file source ended.
        When ``reload`` is set (SIGHUP), the config from ``load`` is taken where it can be."""
        stop = stop or threading.Event()
        deadline = None if duration is None else self.clock.monotonic() + duration
        next_summary = self.clock.monotonic() + SUMMARY_INTERVAL_S
        while not stop.wait(0.2):
            now = self.clock.monotonic()
            if deadline is not None and now >= deadline:
                break
            if self.backend.finished:
                log.info("every source reached its end")
                break
            if now >= next_summary:
                self._log_summary(SUMMARY_INTERVAL_S)
                next_summary = now + SUMMARY_INTERVAL_S
            self.health.tick()
            if reload is not None and load is not None and reload.is_set():
                reload.clear()
                self._reload_from(load)

    def _reload_from(self, load: Callable[[], ApplianceConfig]) -> None:
        try:
            config = load()
        except ConfigError as exc:
            log.error("config not reloaded, it has problems:\n%s", exc)
            return
        self.reload(config)

    def _log_summary(self, interval: float) -> None:
        """One line per stream for the person watching the console."""
        with self._tally_lock:
            tally, self._tally = self._tally, {}
        for stream in self.backend.streams:
            frames, detections = tally.get(stream.id, (0, 0))
            state = stream.state.value + (f" ({stream.reason})" if stream.reason and frames == 0 else "")
            log.info(
                "stream %-14s %-10s %5.1f frames/s analyzed, %4.1f detections/frame, %d reconnects",
                stream.id, state, frames / interval, detections / frames if frames else 0.0, stream.reconnects,
            )

    def stop(self) -> None:
        self.health.stopping()
        self.backend.stop()
        for analytics in self.analytics.values():
            analytics.close()
        for engine in self.second_stage.values():
            engine.close()
        if self.snapshots is not None:
            self.snapshots.close()
        if self._server is not None:
            self._server.stop()
        self.health.close()
        for writer in (self._results, self._event_log):
            if writer is not None:
                writer.close()
        with self._outbox_lock:  # last: the analytics above may end events
            self._close_delivery()

    def _close_delivery(self) -> None:
        if self.delivery is not None:
            self.delivery.stop()
        if self.outbox is not None:
            self.outbox.close()
        self.outbox = self.delivery = None

    def _on_result(self, result: FrameResult, image: SourceImage | None = None) -> None:
        """Called by the batcher, in frame order for each stream."""
        with self._analytics_locks[result.stream_id]:
            self.analytics[result.stream_id].process(result, image)
        with self._tally_lock:
            frames, detections = self._tally.get(result.stream_id, (0, 0))
            self._tally[result.stream_id] = (frames + 1, detections + len(result.detections))
        if self._results is not None:
            self._results.write(result.to_json())
        if self._observe_result is not None:
            self._observe_result(result, image)

    def _on_event(self, event: Event) -> None:
        with self._outbox_lock:
            if self.outbox is not None:
                store_event(self.outbox, event)  # durable before it counts as emitted
        self.metrics.events.labels(event.kind, event.phase, event.severity).inc()
        shown = {k: v for k, v in event.attributes.items() if k not in LOG_OMITS}
        log.info("event %s %s stream=%s %s", event.kind, event.phase, event.stream_id, shown)
        if self._event_log is not None:
            self._event_log.write(event.to_json())
