"""``appliance run`` with sinks: a camera that is gone is announced on MQTT; ``appliance events`` reads the outbox."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from appliance.mosquitto import Mosquitto
from tests.events.broker import Subscriber
from tests.support import REPO, free_port, metric, scrape, wait_for_port

APPLIANCE = [sys.executable, "-m", "appliance"]


def write_site(tmp_path: Path, broker_port: int, metrics_port: int) -> Path:
    config = tmp_path / "site.yaml"
    config.write_text(f"""\
device: {{id: pack-line-3}}
sources:
  - id: cam-1
    uri: rtsp://127.0.0.1:{free_port()}/cam   # nothing listens: the camera is gone
    reconnect: {{initial_s: 0.2, max_s: 0.5}}
mqtt: {{host: 127.0.0.1, port: {broker_port}, reconnect: {{initial_s: 0.2, max_s: 1}}}}
events:
  outbox: {{path: var/outbox.sqlite}}
  sinks:
    - {{type: mqtt}}
    - {{type: jsonl, id: archive, path: out/events.jsonl}}
metrics: {{port: {metrics_port}}}
""")
    return config


def events(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*APPLIANCE, "events", *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_a_gone_camera_is_announced_and_its_events_can_be_listed_and_replayed(tmp_path: Path,
                                                                              mosquitto: Mosquitto) -> None:
    subscriber = Subscriber(mosquitto.port)
    metrics_port = free_port()
    config = write_site(tmp_path, mosquitto.port, metrics_port)
    run = subprocess.Popen([*APPLIANCE, "run", "-c", str(config)], cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(metrics_port, timeout=30)
        status_topic = "appliance/pack-line-3/cameras/cam-1/status"
        assert subscriber.wait_for(lambda ms: any(m.topic == status_topic for m in ms), 30)
        deadline = time.monotonic() + 10
        while metric(scrape(metrics_port), "appliance_events_delivered_total", sink="archive") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        samples = scrape(metrics_port)
        assert metric(samples, "appliance_events_delivered_total", sink="mqtt") == 1
        assert metric(samples, "appliance_outbox_pending_events", sink="mqtt") is not None
        assert metric(samples, "appliance_outbox_bytes") > 0
    finally:
        run.terminate()
        _, stderr = run.communicate(timeout=30)
    assert run.returncode == 0, stderr
    status = json.loads(next(m.payload for m in subscriber.messages if m.topic == status_topic))
    assert status["state"] == "down" and "Could not open resource" in status["reason"]
    device = [m.payload.decode() for m in subscriber.messages if m.topic == "appliance/pack-line-3/status"]
    assert device[0] == "online" and device[-1] == "offline"
    subscriber.close()

    archived = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in archived] == ["stream.down"]
    listed = events("list", "-c", str(config))
    assert listed.returncode == 0, listed.stderr
    assert f"{archived[0]['id']} stream.down start stream=cam-1 [delivered]" in listed.stdout
    tail = events("tail", "-n", "1", "--json", "-c", str(config))
    assert json.loads(tail.stdout)["id"] == archived[0]["id"]

    replay = events("replay", "-c", str(config), "--sink", "archive", "--kind", "stream", "--deliver", "20")
    assert replay.returncode == 0, replay.stderr
    assert "1 events queued for sink archive" in replay.stdout and "all delivered" in replay.stdout
    again = [json.loads(line)["id"] for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    assert again == [archived[0]["id"]] * 2  # a duplicate, recognisable by its id

    unknown = events("replay", "-c", str(config), "--sink", "kafka", "--kind", "stream")
    assert unknown.returncode == 1
    assert "no sink 'kafka' (configured: mqtt, archive)" in unknown.stderr
