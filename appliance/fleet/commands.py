"""``appliance fleet keygen | sign | push`` for operators, ``appliance agent`` for devices."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from appliance.clock import SystemClock
from appliance.fleet.bundle import BundleBody, Refusal, Targets, envelope_id, in_canary, peek, sign, utc
from appliance.fleet.keys import KeyFileError, generate, load_private

if TYPE_CHECKING:
    from appliance.config.schema import ApplianceConfig

log = logging.getLogger(__name__)


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="fleet_command", required=True)

    keygen = actions.add_parser("keygen", help="make the fleet's Ed25519 key pair")
    keygen.add_argument("--private", type=Path, default=Path("fleet.key"), help="private key (created 0600)")
    keygen.add_argument("--public", type=Path, default=Path("fleet.pub"), help="public key, pinned on devices")
    keygen.set_defaults(handler=_cmd_keygen)

    sign_ = actions.add_parser("sign", help="make a signed, versioned config bundle")
    sign_.add_argument("config", type=Path, help="the config the devices will run")
    sign_.add_argument("--key", type=Path, required=True, help="the fleet's private key")
    sign_.add_argument("--version", type=int, required=True, help="bundle version, higher than any pushed before")
    sign_.add_argument("--device", action="append", default=[], help="a target device id (repeatable)")
    sign_.add_argument("--group", action="append", default=[], help="a target group (repeatable)")
    sign_.add_argument("--expires-in", type=float, default=168.0, metavar="HOURS", help="validity (default 168 h)")
    sign_.add_argument("--canary", type=float, default=100.0, metavar="PERCENT",
                       help="only this stable share of the targeted devices applies it (default 100)")
    sign_.add_argument("--no-validate", action="store_true",
                       help="do not validate the config here (its model paths exist only on the devices)")
    sign_.add_argument("-o", "--output", type=Path, required=True, help="the bundle file to write")
    sign_.set_defaults(handler=_cmd_sign)

    push = actions.add_parser("push", help="publish a bundle, retained, to its targets' desired topics")
    push.add_argument("bundle", type=Path)
    push.add_argument("--broker", type=Path, help="YAML file with the broker settings (keys of the mqtt: section)")
    push.add_argument("--host", default="127.0.0.1", help="broker host when no --broker file (default 127.0.0.1)")
    push.add_argument("--port", type=int, default=1883, help="broker port when no --broker file (default 1883)")
    push.add_argument("--devices", type=Path,
                      help="push to these devices' own topics (one id a line) instead of the group topics")
    push.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="wait this long for the devices' reports; exit 0 only when all applied it")
    push.set_defaults(handler=_cmd_push)


def add_agent_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, required=True,
                        help="the config the agent owns and the pipeline runs (/var/lib/appliance/config/current.yaml)")
    parser.set_defaults(handler=_cmd_agent)


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        generate(args.private, args.public)
    except (KeyFileError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"private key: {args.private} (keep it off the devices)\npublic key:  {args.public} (pin it on every device)")
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    from appliance.config.loader import ConfigError, load_config

    try:
        key = load_private(args.key)
        text = args.config.read_text(encoding="utf-8")
        if not args.no_validate:
            load_config(args.config)
        now = utc(SystemClock().wall())
        body = BundleBody(
            version=args.version, created_at=now, expires_at=now + timedelta(hours=args.expires_in),
            targets=Targets(devices=args.device, groups=args.group), canary_percent=args.canary, config=text,
        )
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            print(f"{'.'.join(str(p) for p in error['loc']) or 'bundle'}: {error['msg']}", file=sys.stderr)
        return 1
    except (KeyFileError, OSError, UnicodeDecodeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    args.output.write_bytes(sign(body, key))
    print(f"{args.output}: version {body.version} for {_describe(body.targets)}, canary {body.canary_percent:g} %, "
          f"expires {body.expires_at.isoformat()}")
    return 0


def _describe(targets: Targets) -> str:
    return ", ".join([*targets.devices, *(f"group {g}" for g in targets.groups)])


def push_topics(body: BundleBody, devices: list[str] | None) -> list[str]:
    """Desired topics for a push: each listed (or named) device inside the canary, else each group."""
    from appliance.fleet.agent import DESIRED_TOPIC, GROUP_TOPIC

    named = devices if devices is not None else body.targets.devices
    chosen = [DESIRED_TOPIC.format(device=d) for d in named if in_canary(d, body.canary_percent)]
    if devices is None:
        chosen += [GROUP_TOPIC.format(group=g) for g in body.targets.groups]
    return chosen


def _read_broker(args: argparse.Namespace):  # noqa: ANN202 (MqttBrokerConfig, imported lazily)
    from appliance.config.delivery import MqttBrokerConfig

    if args.broker is None:
        return MqttBrokerConfig(host=args.host, port=args.port)
    data = yaml.safe_load(args.broker.read_text(encoding="utf-8"))
    return MqttBrokerConfig.model_validate(data, context={"base_dir": args.broker.parent})


def _cmd_push(args: argparse.Namespace) -> int:
    from appliance.mqtt import connect_client, describe_connect_error

    try:
        envelope = args.bundle.read_bytes()
        body = peek(envelope)
        devices = None
        if args.devices is not None:
            lines = args.devices.read_text(encoding="utf-8").splitlines()
            devices = [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
        broker = _read_broker(args)
    except (OSError, Refusal, yaml.YAMLError, ValidationError) as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    targets = push_topics(body, devices)
    if not targets:
        print("no device falls inside the canary: nothing to push", file=sys.stderr)
        return 1
    client = connect_client(broker, "appliance-fleet-push", reconnect_on_failure=False)
    try:
        client.reconnect()
    except OSError as exc:
        print(describe_connect_error(exc, broker), file=sys.stderr)
        return 1
    named = devices if devices is not None else body.targets.devices
    waited = [d for d in named if in_canary(d, body.canary_percent)]
    reports = ReportCollector(envelope_id(envelope), waited if args.wait else [])
    client.on_message = reports.on_message
    client.loop_start()
    try:
        reports.subscribe(client)
        for topic in targets:
            client.publish(topic, envelope, qos=1, retain=True).wait_for_publish(timeout=10)
            print(f"version {body.version} -> {topic}")
        return reports.wait(args.wait) if args.wait else 0
    except (RuntimeError, ValueError) as exc:
        print(f"push failed: {exc}", file=sys.stderr)
        return 1
    finally:
        client.disconnect()
        client.loop_stop()


class ReportCollector:
    """The devices' reports about one pushed bundle (matched by its id), for ``push --wait``."""

    def __init__(self, bundle: str, devices: list[str]) -> None:
        self.bundle = bundle
        self.devices = devices
        self.reports: dict[str, dict[str, object]] = {}
        self._arrived = threading.Condition()

    def subscribe(self, client) -> None:  # noqa: ANN001 (a paho client)
        from appliance.fleet.agent import REPORTED_TOPIC

        if self.devices:
            result, _mid = client.subscribe([(REPORTED_TOPIC.format(device=d), 1) for d in self.devices])
            if result != 0:
                raise RuntimeError(f"cannot subscribe to the reports (code {result})")

    def on_message(self, _client, _userdata, message) -> None:  # noqa: ANN001
        try:
            report = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(report, dict) and report.get("bundle") == self.bundle:
            with self._arrived:
                self.reports[str(report.get("device"))] = report
                self._arrived.notify_all()

    def wait(self, seconds: float) -> int:
        """Print each device's report as it is; 0 when every device applied the bundle."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.reports) >= len(self.devices), timeout=seconds)
            reports = dict(self.reports)
        for device in self.devices:
            report = reports.get(device)
            if report is None:
                print(f"{device}: no report within {seconds:g} s")
            else:
                print(f"{device}: {report.get('status')} version {report.get('version')}: {report.get('reason')}")
        applied = all(reports.get(d, {}).get("status") == "applied" for d in self.devices)
        return 0 if applied else 1


def _cmd_agent(args: argparse.Namespace) -> int:
    from appliance.config.loader import ConfigError, load_config
    from appliance.events.delivery import Delivery, open_outbox
    from appliance.fleet.agent import FleetAgent, FleetMetrics, MqttLink, run_agent
    from appliance.fleet.pipeline import ChildPipeline, Pipeline, SystemdPipeline
    from appliance.fleet.state import StateError
    from appliance.metrics import ApplianceMetrics, MetricsServer
    from appliance.signals import stop_on_signals

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    settings = config.fleet
    if settings is None or config.mqtt is None:
        print(f"{args.config}: the fleet agent needs both a fleet: and an mqtt: section", file=sys.stderr)
        return 1
    mode = settings.pipeline
    if mode == "auto":
        mode = "systemd" if os.environ.get("INVOCATION_ID") else "child"  # systemd sets it for its services
    pipeline: Pipeline = (
        SystemdPipeline(settings.unit) if mode == "systemd"
        else ChildPipeline(args.config.resolve(), settings.health.stop_timeout_s)
    )
    log.info("pipeline: %s", settings.unit if mode == "systemd" else "a child process")
    stop = stop_on_signals("stopping the agent")
    delivery_metrics = ApplianceMetrics() if _delivers(config) else None
    metrics = FleetMetrics(delivery_metrics.registry if delivery_metrics is not None else None)
    try:
        agent = FleetAgent(args.config.resolve(), config.device.id, settings, pipeline, SystemClock(), metrics, stop)
        link = MqttLink(config, config.device.id, settings.groups)
    except (StateError, KeyFileError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    server = None
    if settings.metrics.enabled:
        server = MetricsServer(metrics, settings.metrics.address, settings.metrics.port, "/metrics")  # type: ignore[arg-type]
        server.start()
        log.info("fleet agent metrics at http://%s:%d/metrics", settings.metrics.address, server.port)
    outbox = delivery = None
    if delivery_metrics is not None:  # events.outbox.delivered_by: agent
        outbox = open_outbox(config, delivery_metrics, SystemClock())
        delivery = Delivery.from_config(config, outbox, delivery_metrics, SystemClock())
        delivery.start()
        log.info("delivering the events of %s to %s", config.events.outbox.path,
                 ", ".join(s.id for s in config.events.sinks))
    try:
        run_agent(agent, link)
    except RuntimeError as exc:  # systemctl refused to (re)start the pipeline unit
        print(exc, file=sys.stderr)
        return 1
    finally:
        if delivery is not None and outbox is not None:
            delivery.stop()
            outbox.close()
        if server is not None:
            server.stop()
    return 0


def _delivers(config: ApplianceConfig) -> bool:
    """Whether the agent, not the pipeline, delivers the outbox's events."""
    return bool(config.events.sinks) and config.events.outbox.delivered_by == "agent"
