"""Events through the outbox to a real Mosquitto on 127.0.0.1, with outages, faults and a SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.clock import SystemClock
from appliance.config.loader import load_config
from appliance.config.schema import ApplianceConfig
from appliance.events.delivery import Delivery, open_outbox
from appliance.events.factory import EventFactory
from appliance.events.outbox import Outbox
from appliance.metrics import ApplianceMetrics
from appliance.mosquitto import Mosquitto
from tests.events.broker import Pki, Subscriber
from tests.support import REPO, free_port

DEVICE = "pack-line-3"
FAST_RECONNECT = {"initial_s": 0.2, "max_s": 1.0}


def site_config(tmp_path: Path, broker: dict[str, Any], sink: dict[str, Any] | None = None) -> Path:
    """A config file with one source, the broker and an mqtt sink; relative paths as an integrator writes them."""
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "device": {"id": DEVICE},
        "sources": [{"id": "line-1", "uri": "test://ball"}],
        "mqtt": {"host": "127.0.0.1", "reconnect": FAST_RECONNECT, "keepalive": 10, **broker},
        "events": {"outbox": {"path": "var/outbox.sqlite"}, "sinks": [{"type": "mqtt", **(sink or {})}]},
    }))
    return path


@contextmanager
def delivering(config: ApplianceConfig) -> Iterator[tuple[Outbox, Delivery, ApplianceMetrics]]:
    metrics = ApplianceMetrics()
    outbox = open_outbox(config, metrics)
    delivery = Delivery.from_config(config, outbox, metrics)
    delivery.start()
    try:
        yield outbox, delivery, metrics
    finally:
        delivery.stop()
        outbox.close()


def emit(outbox: Outbox, count: int, kind: str = "defect.part") -> list[str]:
    factory = EventFactory(DEVICE, "v1", SystemClock())
    events = [factory.make(kind, "start", "line-1", time.time(), attributes={"n": n}) for n in range(count)]
    for event in events:
        outbox.write(event)
    return [e.id for e in events]


def sample(metrics: ApplianceMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def retained(port: int, topic: str, count: int) -> dict[str, str]:
    """What a newcomer subscribing to ``topic`` is told at once: the retained messages."""
    late = Subscriber(port, topic, client_id=f"late-{time.monotonic_ns()}")
    try:
        assert late.wait_for(lambda ms: len(ms) >= count, 10), [m.topic for m in late.messages]
        return {m.topic: m.payload.decode() for m in late.messages if m.retain}
    finally:
        late.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_events_arrive_once_acknowledged_on_their_topics(tmp_path: Path, mosquitto: Mosquitto, protocol: str) -> None:
    subscriber = Subscriber(mosquitto.port)
    config = load_config(site_config(tmp_path, {"port": mosquitto.port, "protocol": protocol}))
    assert config.events.outbox.path == tmp_path / "var" / "outbox.sqlite"
    with delivering(config) as (outbox, delivery, metrics):
        ids = emit(outbox, 30) + emit(outbox, 20, kind="ppe.missing_item")
        assert delivery.drain(20)
        assert subscriber.wait_for(lambda ms: len(subscriber.event_ids()) >= 50, 10)
        assert sample(metrics, "appliance_events_delivered_total", sink="mqtt") == 50
    events = [m for m in subscriber.messages if "/events/" in m.topic]
    assert sorted(subscriber.event_ids()) == sorted(ids)
    assert {m.topic for m in events} == {f"appliance/{DEVICE}/events/defect.part",
                                         f"appliance/{DEVICE}/events/ppe.missing_item"}
    assert {m.qos for m in events} == {1}
    first = json.loads(events[0].payload)
    assert first["schema"] == "appliance.event/1" and first["device_id"] == DEVICE
    # stopped cleanly: the retained device status says so
    assert retained(mosquitto.port, f"appliance/{DEVICE}/status", 1) == {f"appliance/{DEVICE}/status": "offline"}
    subscriber.close()


def test_topic_templates_name_stream_and_severity(tmp_path: Path, mosquitto: Mosquitto) -> None:
    subscriber = Subscriber(mosquitto.port, "plant/#")
    config = load_config(site_config(tmp_path, {"port": mosquitto.port},
                                     {"topic": "plant/{device}/{stream}/{severity}/{kind}"}))
    factory = EventFactory(DEVICE, "v1", SystemClock())
    with delivering(config) as (outbox, delivery, _):
        outbox.write(factory.make("fire.detected", "start", "cleanroom-2", 5.0, severity="critical"))
        assert delivery.drain(20)
    assert subscriber.wait_for(lambda ms: len(ms) == 1, 10)
    assert subscriber.messages[0].topic == f"plant/{DEVICE}/cleanroom-2/critical/fire.detected"
    subscriber.close()


def test_device_and_camera_status_are_retained(tmp_path: Path, mosquitto: Mosquitto) -> None:
    config = load_config(site_config(tmp_path, {"port": mosquitto.port}))
    factory = EventFactory(DEVICE, "v1", SystemClock())
    with delivering(config) as (outbox, delivery, _):
        outage = factory.make("stream.down", "start", "cam-1", 100.0, attributes={"reason": "connection refused"})
        outbox.write(outage)
        outbox.write(factory.make("stream.down", "end", "cam-1", 100.0, ended_at=160.0,
                                  attributes={"reason": "connection refused"}))
        outbox.write(factory.make("stream.down", "start", "cam-2", 170.0, attributes={"reason": "no frame for 3.0 s"}))
        outbox.write(factory.make("stream.down", "start", "cam-1", 90.0, attributes={"reason": "older outage"}))
        assert delivery.drain(20)
        status = retained(mosquitto.port, f"appliance/{DEVICE}/#", 3)
    assert status[f"appliance/{DEVICE}/status"] == "online"
    cam1 = json.loads(status[f"appliance/{DEVICE}/cameras/cam-1/status"])
    cam2 = json.loads(status[f"appliance/{DEVICE}/cameras/cam-2/status"])
    assert cam1 == {"state": "up", "reason": "recovered from: connection refused", "at": 160.0}  # not the older one
    assert cam2 == {"state": "down", "reason": "no frame for 3.0 s", "at": 170.0}


def test_a_thousand_events_survive_a_ten_second_broker_outage(tmp_path: Path, mosquitto: Mosquitto,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    subscriber = Subscriber(mosquitto.port)  # a persistent session: the broker keeps it across the restart
    config = load_config(site_config(tmp_path, {"port": mosquitto.port}))
    with caplog.at_level(logging.INFO), delivering(config) as (outbox, delivery, metrics):
        assert delivery.drain(10)
        mosquitto.stop()
        stopped = time.monotonic()
        ids = emit(outbox, 1000)
        assert outbox.backlog("mqtt")[0] == 1000  # they wait in the outbox
        time.sleep(max(0.0, 10.0 - (time.monotonic() - stopped)))
        assert outbox.backlog("mqtt")[0] == 1000
        mosquitto.start()
        assert delivery.drain(60)
        assert subscriber.wait_for(lambda ms: set(ids) <= set(subscriber.event_ids()), 30)
        assert sample(metrics, "appliance_events_delivery_failures_total", sink="mqtt") >= 1
    assert len(set(subscriber.event_ids()) & set(ids)) == 1000
    assert f"sink mqtt: broker 127.0.0.1:{mosquitto.port} refused the connection" in caplog.text
    assert "sink mqtt: delivering again" in caplog.text
    subscriber.close()


def test_tls_with_a_client_certificate(tmp_path: Path, mosquitto: Mosquitto, pki: Pki) -> None:
    subscriber = Subscriber(mosquitto.port)
    tls = {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key)}
    config = load_config(site_config(tmp_path, {"port": mosquitto.tls_port, "tls": tls}))
    with delivering(config) as (outbox, delivery, _):
        ids = emit(outbox, 20)
        assert delivery.drain(20)
    assert subscriber.wait_for(lambda ms: set(ids) <= set(subscriber.event_ids()), 10)
    subscriber.close()


def test_username_and_password(tmp_path: Path, pki: Pki) -> None:
    broker = Mosquitto(tmp_path / "broker", password=("device", "s3cret"))
    broker.start()
    try:
        config = load_config(site_config(tmp_path, {"port": broker.port, "username": "device",
                                                    "password": "s3cret"}))
        with delivering(config) as (outbox, delivery, _):
            emit(outbox, 5)
            assert delivery.drain(20)
    finally:
        broker.stop()


BAD_BROKERS = {
    "wrong port": (lambda b, pki: {"port": free_port()}, "refused the connection (nothing listens on that port?)"),
    "untrusted broker certificate": (
        lambda b, pki: {"port": b.tls_port, "tls": {"ca": str(pki.rogue_ca), "cert": str(pki.client_cert),
                                                    "key": str(pki.client_key)}},
        "TLS certificate of broker 127.0.0.1:{port} not accepted: self-signed certificate in certificate chain"),
    "no client certificate": (lambda b, pki: {"port": b.tls_port, "tls": {"ca": str(pki.ca)}},
                              "closed the connection before accepting it"),
    "plain MQTT to the TLS port": (lambda b, pki: {"port": b.tls_port}, "closed the connection before accepting it"),
}


@pytest.mark.parametrize("case", sorted(BAD_BROKERS))
def test_an_unusable_broker_is_a_clear_error_and_events_wait(tmp_path: Path, mosquitto: Mosquitto, pki: Pki,
                                                              caplog: pytest.LogCaptureFixture, case: str) -> None:
    broker, expected = BAD_BROKERS[case]
    settings = broker(mosquitto, pki)
    config = load_config(site_config(tmp_path, settings))
    with caplog.at_level(logging.ERROR), delivering(config) as (outbox, delivery, metrics):
        emit(outbox, 25)
        deadline = time.monotonic() + 10
        while sample(metrics, "appliance_events_delivery_failures_total", sink="mqtt") < 2:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
        assert outbox.backlog("mqtt")[0] == 25
    failures = [r.getMessage() for r in caplog.records if r.name == "appliance.events.delivery"]
    assert failures and "25 events wait in the outbox" in failures[-1]
    assert expected.format(port=settings["port"]) in failures[0]


def test_wrong_credentials_are_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Mosquitto(tmp_path / "broker", password=("device", "s3cret"))
    broker.start()
    try:
        config = load_config(site_config(tmp_path, {"port": broker.port, "username": "device", "password": "nope"}))
        with caplog.at_level(logging.ERROR), delivering(config) as (outbox, delivery, metrics):
            emit(outbox, 3)
            deadline = time.monotonic() + 10
            while not sample(metrics, "appliance_events_delivery_failures_total", sink="mqtt"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert outbox.backlog("mqtt")[0] == 3
    finally:
        broker.stop()
    assert f"broker 127.0.0.1:{broker.port} refused the connection: " in caplog.text
    assert "Not authorized" in caplog.text or "Bad user name or password" in caplog.text


def test_an_event_the_broker_refuses_stays_in_the_outbox(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    acl = f"user device\ntopic write appliance/{DEVICE}/status\ntopic write appliance/{DEVICE}/cameras/#\n"
    broker = Mosquitto(tmp_path / "broker", password=("device", "s3cret"), acl=acl)
    broker.start()
    try:
        # one at a time: Mosquitto 2.0 answers the first refused PUBLISH with a PUBACK "Not authorized",
        # and closes the connection on the next one
        config = load_config(site_config(tmp_path, {"port": broker.port, "username": "device", "password": "s3cret"},
                                         {"max_inflight": 1}))
        with caplog.at_level(logging.ERROR), delivering(config) as (outbox, delivery, metrics):
            ids = emit(outbox, 5)
            deadline = time.monotonic() + 10
            while not sample(metrics, "appliance_events_delivery_failures_total", sink="mqtt"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert outbox.backlog("mqtt")[0] == 5
            assert sample(metrics, "appliance_events_delivered_total", sink="mqtt") == 0
    finally:
        broker.stop()
    assert f"broker refused event {ids[0]} on appliance/{DEVICE}/events/defect.part: Not authorized" in caplog.text


def test_every_event_written_before_a_sigkill_arrives_after_the_restart(tmp_path: Path,
                                                                       mosquitto: Mosquitto) -> None:
    subscriber = Subscriber(mosquitto.port)
    config = site_config(tmp_path, {"port": mosquitto.port})
    command = [sys.executable, "-m", "tests.events.emitter", str(config)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    emitter = subprocess.Popen([*command, "--count", "100000"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert emitter.stdout is not None
    stored = []
    for line in emitter.stdout:
        stored.append(line.strip())
        if len(stored) == 400:
            break
    emitter.send_signal(signal.SIGKILL)
    stored += [line.strip() for line in emitter.stdout]  # what it printed before it died
    emitter.wait()
    assert emitter.returncode == -signal.SIGKILL
    left = Outbox(tmp_path / "var" / "outbox.sqlite", (), 2**30, forget_other_sinks=False)
    assert left.backlog("mqtt")[0] > 0  # killed with events written and not yet acknowledged
    left.close()
    # the broker publishes the killed device's last will
    assert retained(mosquitto.port, f"appliance/{DEVICE}/status", 1)[f"appliance/{DEVICE}/status"] == "offline"
    restarted = subprocess.run([*command, "--drain", "60"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    assert subscriber.wait_for(lambda ms: set(stored) <= set(subscriber.event_ids()), 30)
    subscriber.close()
