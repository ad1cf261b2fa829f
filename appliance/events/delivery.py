"""Delivery: one thread per sink, taking events from the outbox to their destination.

Independent of the pipeline: ``appliance run`` starts one beside the backend, and
any other process (``appliance events replay --deliver``, a delivery agent) can
run one on the same outbox file. A sink that fails is retried with capped
exponential backoff; its events wait in the outbox meanwhile, and the failure is
logged with its reason and counted in ``appliance_events_delivery_failures_total``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.clock import Clock, SystemClock
from appliance.config.delivery import JsonlSinkConfig, MqttSinkConfig, WebhookSinkConfig
from appliance.config.schema import ApplianceConfig
from appliance.events.outbox import Outbox, OutboxError
from appliance.events.sinks import Sink, SinkUnavailable
from appliance.events.sinks.jsonl import JsonlSink
from appliance.events.sinks.mqtt import MqttSink
from appliance.events.sinks.webhook import WebhookSink
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.backoff import Backoff
from appliance.types import Event

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often an idle sink looks for events written by another process
REPORT_INTERVAL_S = 1.0
FILE_BACKOFF = (1.0, 60.0)


@dataclass
class SinkRunner:
    sink: Sink
    backoff: Backoff
    thread: threading.Thread | None = None
    connected: bool = False


def open_outbox(config: ApplianceConfig, metrics: ApplianceMetrics | None = None, clock: Clock | None = None,
                **options: bool) -> Outbox:
    """The outbox of ``config``, pending for each of its sinks."""
    events = config.events
    return Outbox(events.outbox.path, [s.id for s in events.sinks], events.outbox.max_bytes, metrics, clock,
                  synchronous=events.outbox.synchronous, **options)


def make_sinks(config: ApplianceConfig, stop: threading.Event, client_id: str | None = None) -> list[SinkRunner]:
    """The sinks of ``config``, each with its backoff."""
    runners = []
    for sink in config.events.sinks:
        if isinstance(sink, MqttSinkConfig):
            assert config.mqtt is not None  # the schema refuses an mqtt sink without a broker
            reconnect = config.mqtt.reconnect
            runners.append(SinkRunner(MqttSink(sink, config.mqtt, config.device.id, stop, client_id),
                                      Backoff(reconnect.initial_s, reconnect.max_s)))
        elif isinstance(sink, WebhookSinkConfig):
            runners.append(SinkRunner(WebhookSink(sink, stop), Backoff(sink.backoff.initial_s, sink.backoff.max_s)))
        elif isinstance(sink, JsonlSinkConfig):
            runners.append(SinkRunner(JsonlSink(sink), Backoff(*FILE_BACKOFF)))
    return runners


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        runners: Sequence[SinkRunner],
        stop: threading.Event,
        metrics: ApplianceMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.outbox = outbox
        self.runners = list(runners)
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self._stop = stop
        if metrics is not None:
            for runner in self.runners:
                metrics.events_delivered.labels(runner.sink.id)
                metrics.delivery_failures.labels(runner.sink.id)
            metrics.events_dropped.labels("quota")

    @classmethod
    def from_config(
        cls, config: ApplianceConfig, outbox: Outbox, metrics: ApplianceMetrics | None = None,
        clock: Clock | None = None, client_id: str | None = None,
    ) -> Delivery:
        stop = threading.Event()
        return cls(outbox, make_sinks(config, stop, client_id), stop, metrics, clock)

    def start(self) -> None:
        for runner in self.runners:
            runner.thread = threading.Thread(target=self._run, args=(runner,), name=f"sink-{runner.sink.id}",
                                             daemon=True)
            runner.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops every sink; what is not acknowledged yet stays in the outbox for the next start."""
        self._stop.set()
        self.outbox.wake()
        for runner in self.runners:
            if runner.thread is not None:
                runner.thread.join(timeout)

    def drain(self, timeout: float) -> bool:
        """Waits until no event is pending for any sink; False when ``timeout`` passed first."""
        deadline = self.clock.monotonic() + timeout
        while any(self.outbox.backlog(r.sink.id)[0] for r in self.runners):
            if self.clock.monotonic() >= deadline or self._stop.wait(0.05):
                return False
        return True

    def _run(self, runner: SinkRunner) -> None:
        sink = runner.sink
        next_report = 0.0

        def ack(seqs: list[int]) -> None:
            self.outbox.delivered(sink.id, seqs)
            if self.metrics is not None:
                self.metrics.events_delivered.labels(sink.id).inc(len(seqs))

        while not self._stop.is_set():
            now = self.clock.monotonic()
            if now >= next_report:
                self._report(sink.id)
                next_report = now + REPORT_INTERVAL_S
            if not runner.connected:
                try:
                    sink.connect()
                except SinkUnavailable as exc:
                    self._failed(runner, str(exc))
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug in a sink must not stop its delivery for good
                    log.exception("sink %s: cannot connect", sink.id)
                    self._failed(runner, f"{type(exc).__name__}: {exc}")
                    continue
                runner.connected = True
                if runner.backoff.attempts:
                    log.info("sink %s: delivering again", sink.id)
                runner.backoff.reset()
            rows = self.outbox.pending(sink.id, sink.batch)
            if not rows:
                self.outbox.wait_for_write(POLL_S)
                continue
            try:
                sink.send(rows, ack)
            except Exception as exc:  # noqa: BLE001 - SinkUnavailable, or a bug: the events stay pending
                if not isinstance(exc, SinkUnavailable):
                    log.exception("sink %s: sending failed", sink.id)
                sink.close()
                runner.connected = False
                if self._stop.is_set():
                    log.info("sink %s: %s", sink.id, exc)
                    break
                self._failed(runner, str(exc))
        sink.close()
        self._report(sink.id)

    def _failed(self, runner: SinkRunner, reason: str) -> None:
        sink_id = runner.sink.id
        if self.metrics is not None:
            self.metrics.delivery_failures.labels(sink_id).inc()
        delay = runner.backoff.next_delay()
        pending, _ = self.outbox.backlog(sink_id)
        log.error("sink %s: %s; %d events wait in the outbox; retrying in %.1f s", sink_id, reason, pending, delay)
        self._stop.wait(delay)

    def _report(self, sink_id: str) -> None:
        if self.metrics is None:
            return
        pending, oldest = self.outbox.backlog(sink_id)
        self.metrics.outbox_pending.labels(sink_id).set(pending)
        self.metrics.outbox_oldest_age.labels(sink_id).set(0.0 if oldest is None else
                                                           max(0.0, self.clock.wall() - oldest))


def store_event(outbox: Outbox, event: Event) -> bool:
    """Writes ``event`` to the outbox; a failure (disk full, I/O error) is logged and counted, never raised."""
    try:
        return outbox.write(event) >= 0
    except OutboxError as exc:
        log.error("event %s (%s) could not be stored and will not be delivered: %s", event.id, event.kind, exc)
        if outbox.metrics is not None:
            outbox.metrics.events_dropped.labels("outbox_error").inc()
        return False
