"""The device's fleet agent: takes signed config bundles from MQTT and applies them safely.

For each bundle on ``fleet/{device}/config/desired`` (or a group's topic) it verifies
the signature, the target, the canary, the expiry and the version; validates the
config exactly as ``appliance validate`` does; stages it beside the running config
and swaps it in atomically; restarts the pipeline; watches its health for a window;
then commits, or restores the last good config. Every decision is reported, retained,
on ``fleet/{device}/config/reported``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from appliance.clock import Clock
from appliance.config.fleet import FleetConfig
from appliance.config.loader import ConfigError, load_config
from appliance.config.schema import ApplianceConfig
from appliance.fleet.bundle import Refusal, check_admissible, envelope_id, open_envelope, utc
from appliance.fleet.health import HealthWatch, Verdict, metrics_url, scrape_streams
from appliance.fleet.keys import load_public
from appliance.fleet.pipeline import Pipeline
from appliance.fleet.state import StateStore, atomic_write, digest, sync_directory
from appliance.reload import ReloadPlan, plan_reload

log = logging.getLogger(__name__)

DESIRED_TOPIC = "fleet/{device}/config/desired"
GROUP_TOPIC = "fleet/group/{group}/config/desired"
REPORTED_TOPIC = "fleet/{device}/config/reported"
REPORT_SCHEMA = "appliance.fleet.report/1"

APPLIED, REJECTED, ROLLED_BACK = "applied", "rejected", "rolled_back"


@dataclass(frozen=True)
class Report:
    device: str
    version: int | None
    status: str
    reason: str
    timestamp: str
    running_version: int
    bundle: str | None = None
    code: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({"schema": REPORT_SCHEMA, **asdict(self)}).encode()


class FleetMetrics:
    """The agent's own metrics, served on its own port (the pipeline restarts, the agent does not)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.version = Gauge(
            "appliance_fleet_config_version", "Version of the fleet config bundle that runs (0: as provisioned)",
            registry=self.registry,
        )
        self.rollbacks = Counter(
            "appliance_fleet_config_rollbacks", "Config bundles rolled back after a failed health window",
            registry=self.registry,
        )
        self.bundles = Counter(
            "appliance_fleet_bundles", "Config bundles decided, by outcome", ["status"], registry=self.registry
        )
        for status in (APPLIED, REJECTED, ROLLED_BACK):
            self.bundles.labels(status)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class AgentStopping(Exception):
    """The agent was asked to stop while it watched a new config; the apply resumes at next start."""


class FleetAgent:
    """Owns ``config_path`` (the config the pipeline runs); decides and applies bundles.

    All methods run on one thread (the one that started the agent); MQTT callbacks only queue.
    """

    def __init__(
        self,
        config_path: Path,
        device: str,
        settings: FleetConfig,
        pipeline: Pipeline,
        clock: Clock,
        metrics: FleetMetrics | None = None,
        stop: threading.Event | None = None,
        scrape: Callable[[str], object] = scrape_streams,
    ) -> None:
        self.config_path = config_path
        self.staged_path = config_path.with_name(f".{config_path.name}.staged")
        self.device = device
        self.settings = settings
        self.key = load_public(settings.public_key)
        self.pipeline = pipeline
        self.clock = clock
        self.metrics = metrics or FleetMetrics()
        self.stop_event = stop or threading.Event()
        self._scrape = scrape
        self.store = StateStore(settings.state_dir)
        self.state = self.store.load()

    # --- start-up ------------------------------------------------------------------

    def start(self) -> Report | None:
        """Finish or undo an apply that a crash interrupted, then start the pipeline."""
        self.metrics.version.set(self.state.running_version)
        current = self._current_bytes()
        if self.store.last_good() is None and self.state.pending_version is None:
            self.store.save_last_good(current)  # the provisioned config is the first good one
        pending = self.state.pending_version
        if pending is None:
            self.pipeline.start()
            return None
        if digest(current) == self.state.pending_digest:
            log.info("resuming the health window of version %d, interrupted by a restart", pending)
            self.pipeline.restart()
            return self._watch_and_decide(pending, self.state.pending_bundle, current)
        log.warning("the apply of version %d was interrupted before its swap; the previous config runs", pending)
        bundle = self.state.pending_bundle
        self._clear_pending()
        self.pipeline.start()
        return self._report(pending, ROLLED_BACK, "apply interrupted before the swap; the previous config runs",
                            bundle, "interrupted")

    def _current_bytes(self) -> bytes:
        try:
            return self.config_path.read_bytes()
        except FileNotFoundError:
            good = self.store.last_good()
            if good is None:
                raise
            log.warning("%s is missing; restoring the last good config", self.config_path)
            atomic_write(self.config_path, good)
            return good

    # --- bundles -------------------------------------------------------------------

    def handle(self, envelope: bytes, stored: bool = False) -> Report | None:
        """Decide and, when admissible, apply one bundle. ``stored``: a retained message
        delivered at subscription (an old version there is history, not a replay attack)."""
        bundle = envelope_id(envelope)
        version: int | None = None
        try:
            body = open_envelope(envelope, self.key)
            version = body.version
            if stored and body.version <= self.state.highest_version:
                log.debug("retained bundle version %d already decided", body.version)
                return None
            if body.version == self.state.running_version:  # e.g. a canary widened to the rest of the group
                log.info("bundle %s: version %d runs already", bundle, body.version)
                return None
            now = utc(self.clock.wall())
            check_admissible(body, self.device, self.settings.groups, self.state.highest_version, now)
            config_text = body.config.encode()
            self._validate(config_text)
        except Refusal as refusal:
            log.warning("bundle %s refused: %s", bundle, refusal.reason)
            self.metrics.bundles.labels(REJECTED).inc()
            return self._report(refusal.version or version, REJECTED, refusal.reason, bundle, refusal.code)
        return self._apply(body.version, config_text, bundle)

    def _validate(self, config_text: bytes) -> ApplianceConfig:
        """Stage the config beside the running one (relative paths resolve alike) and load it."""
        atomic_write(self.staged_path, config_text)
        try:
            config = load_config(self.staged_path)
        except ConfigError as exc:
            self.staged_path.unlink(missing_ok=True)
            problems = "; ".join(f"line {p.line or 1}: {p.path}: {p.reason}" for p in exc.problems)
            raise Refusal("invalid_config", f"invalid config: {problems}") from None
        problem = self._unmanageable(config)
        if problem is not None:
            self.staged_path.unlink(missing_ok=True)
            raise Refusal("invalid_config", f"invalid config: {problem}")
        return config

    def _unmanageable(self, config: ApplianceConfig) -> str | None:
        """Why ``config`` would cut the device off its fleet or blind its health check (None if it would not)."""
        if not config.metrics.enabled or config.metrics.port == 0:
            return "metrics must be enabled on a fixed port (the agent judges the pipeline's health from them)"
        if config.fleet is None or config.mqtt is None:
            return "the fleet: and mqtt: sections must stay (the agent reads them when it starts)"
        if config.fleet.state_dir != self.settings.state_dir:
            return f"fleet.state_dir cannot change by a push (the versions accepted are in {self.settings.state_dir})"
        return None

    def _apply(self, version: int, config_text: bytes, bundle: str) -> Report:
        previous = self._current_bytes()
        plan = self._plan()
        if self.store.last_good() is None:
            self.store.save_last_good(previous)
        self.state.highest_version = version
        self.state.pending_version = version
        self.state.pending_digest = digest(config_text)
        self.state.pending_bundle = bundle
        self.store.save(self.state)  # from here a replay is refused, even after a reboot
        os.replace(self.staged_path, self.config_path)
        sync_directory(self.config_path.parent)
        if plan is not None and plan.hot:
            log.info("version %d swapped in; %s", version, plan.describe())
            self.pipeline.reload()
        else:
            log.info("version %d swapped in; restarting the pipeline (%s)", version,
                     plan.describe() if plan is not None else "it is not running its config yet")
            self.pipeline.restart()
        return self._watch_and_decide(version, bundle, config_text)

    def _plan(self) -> ReloadPlan | None:
        """What the staged config changes against the running one; None where the running one does not
        load or its pipeline does not answer yet (it may not listen for SIGHUP yet: a restart is safe)."""
        try:
            running = load_config(self.config_path)
            if self._scrape(metrics_url(running.metrics)) is None:
                return None
            return plan_reload(running, load_config(self.staged_path))
        except ConfigError:
            return None

    def _watch_and_decide(self, version: int, bundle: str | None, config_text: bytes) -> Report:
        try:
            verdict = self._watch(load_config(self.config_path))
        except ConfigError as exc:  # e.g. a model file deleted while the agent was down
            verdict = Verdict(False, f"config no longer loads: {exc.problems[0].path}: {exc.problems[0].reason}")
        if verdict.healthy:
            self.store.save_last_good(config_text)
            self.state.running_version = version
            self._clear_pending()
            self.metrics.version.set(version)
            self.metrics.bundles.labels(APPLIED).inc()
            log.info("version %d applied: %s", version, verdict.reason)
            return self._report(version, APPLIED, verdict.reason, bundle)
        log.warning("version %d failed its health window (%s); restoring the last good config", version,
                    verdict.reason)
        good = self.store.last_good()
        assert good is not None  # saved before every swap
        atomic_write(self.config_path, good)
        self._clear_pending()
        self.pipeline.restart()
        self.metrics.rollbacks.inc()
        self.metrics.bundles.labels(ROLLED_BACK).inc()
        return self._report(version, ROLLED_BACK, verdict.reason, bundle, "unhealthy")

    def _watch(self, config: ApplianceConfig) -> Verdict:
        health = self.settings.health
        watch = HealthWatch([s.id for s in config.sources], health.window_s, self.clock, health.startup_s,
                            version=config.version)
        url = metrics_url(config.metrics)
        while True:
            verdict = watch.observe(self._scrape(url), self.pipeline.exit_code())  # type: ignore[arg-type]
            if verdict is not None:
                return verdict
            if self.stop_event.wait(health.poll_s):
                raise AgentStopping

    def _clear_pending(self) -> None:
        self.state.pending_version = None
        self.state.pending_digest = None
        self.state.pending_bundle = None
        self.store.save(self.state)

    def _report(self, version: int | None, status: str, reason: str, bundle: str | None,
                code: str | None = None) -> Report:
        timestamp = utc(self.clock.wall()).isoformat().replace("+00:00", "Z")
        return Report(self.device, version, status, reason, timestamp, self.state.running_version, bundle, code)


def topics(device: str, groups: list[str]) -> list[str]:
    return [DESIRED_TOPIC.format(device=device), *(GROUP_TOPIC.format(group=g) for g in groups)]


class MqttLink:
    """The agent's MQTT side: subscribes to the desired topics, queues bundles, publishes reports."""

    def __init__(self, config: ApplianceConfig, device: str, groups: list[str]) -> None:
        from appliance.mqtt import connect_client

        if config.mqtt is None:
            raise ValueError("the fleet agent needs the mqtt: broker in its config")
        broker = config.mqtt
        self.inbox: queue.Queue[tuple[bytes, bool]] = queue.Queue()
        self.topics = topics(device, groups)
        self.reported_topic = REPORTED_TOPIC.format(device=device)
        self.client = connect_client(broker, f"{broker.client_id or device}-fleet-agent")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties=None) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            log.warning("broker refused the fleet agent: %s", reason_code)
            return
        log.info("fleet agent connected; subscribing to %s", ", ".join(self.topics))
        client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, _client, _userdata, message) -> None:  # noqa: ANN001
        self.inbox.put((bytes(message.payload), bool(message.retain)))

    def start(self) -> None:
        self.client.loop_start()

    def publish(self, report: Report) -> None:
        log.info("report: version %s %s: %s", report.version, report.status, report.reason)
        self.client.publish(self.reported_topic, report.to_json(), qos=1, retain=True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_agent(agent: FleetAgent, link: MqttLink) -> None:
    """Until the agent's stop event is set: apply bundles as they come, keep the pipeline running."""
    link.start()
    try:
        report = agent.start()
        if report is not None:
            link.publish(report)
        while not agent.stop_event.is_set():
            try:
                envelope, stored = link.inbox.get(timeout=agent.settings.health.poll_s)
            except queue.Empty:
                agent.pipeline.keep_running(agent.clock.monotonic())
                continue
            report = agent.handle(envelope, stored)
            if report is not None:
                link.publish(report)
    except AgentStopping:
        log.info("stopped during a health window; it resumes at the next start")
    finally:
        agent.pipeline.stop()
        link.stop()
