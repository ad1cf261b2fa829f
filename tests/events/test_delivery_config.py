"""A malformed broker, outbox or sink config is refused as file:line: key: reason, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config.loader import ConfigError, load_config
from tests.support import REPO

HEAD = """\
device: {id: pack-line-3}
sources:
  - id: line-1
    uri: test://ball
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in error.value.problems]


def test_each_bad_sink_is_pinned_to_its_line(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
mqtt: {host: broker.plant.local}
events:
  sinks:
    - type: kafka
    - type: mqtt
      topic: appliance/{device}/{camera}
    - type: webhook
      url: ftp://mes.local/events
    - type: webhook
      url: https://mes.local/events
      timeout_s: fast
    - type: mqtt
      qos: 3
""")
    assert found == [
        "8: events.sinks.0: Input tag 'kafka' found using 'type' does not match any of the expected tags: "
        "'mqtt', 'webhook', 'jsonl'",
        "10: events.sinks.1.topic: unknown topic field(s) camera (use device, kind, stream, phase, severity)",
        "12: events.sinks.2.url: webhook url must be http:// or https:// with a host, e.g. https://mes.local/events",
        "15: events.sinks.3.timeout_s: Input should be a valid number, unable to parse string as a number "
        "(got 'fast')",
        "17: events.sinks.4.qos: Input should be 0, 1 or 2 (got 3)",
    ]


def test_broker_settings_are_checked(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
mqtt:
  host: broker.plant.local
  port: 70000
  protocol: "4"
  password: secret
  tls: {ca: missing-ca.pem, cert: client.pem}
""")
    ca = tmp_path / "missing-ca.pem"
    assert found[:4] == [
        "7: mqtt.port: Input should be less than or equal to 65535 (got 70000)",
        "8: mqtt.protocol: Input should be '5' or '3.1.1' (got '4')",
        f"10: mqtt.tls.ca: file not found: {ca}",
        f"10: mqtt.tls.cert: file not found: {tmp_path / 'client.pem'}",
    ]


def test_an_mqtt_sink_needs_the_broker_and_sink_ids_are_unique(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
events:
  sinks:
    - {type: jsonl, path: events.jsonl}
    - {type: mqtt}
""") == ["8: events.sinks.1.type: an mqtt sink needs the broker in the top-level 'mqtt:' section"]
    assert problems(tmp_path, """\
events:
  sinks:
    - {type: jsonl, path: a.jsonl, id: archive}
    - {type: jsonl, path: b.jsonl, id: archive}
""") == ["8: events.sinks.1.id: duplicate sink id 'archive' (already used by sinks.0)"]


def test_tls_files_resolve_against_the_config_file(tmp_path: Path) -> None:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / "certs").mkdir(exist_ok=True)
        (tmp_path / "certs" / name).write_text("x")
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + """\
mqtt: {host: broker.plant.local, port: 8883, protocol: 3.1.1,
       tls: {ca: certs/ca.pem, cert: certs/client.pem, key: certs/client.key}}
events:
  outbox: {path: var/outbox.sqlite, max_bytes: 1000000}
  sinks: [{type: mqtt}, {type: jsonl, path: out/events.jsonl, max_bytes: 100000}]
""")
    config = load_config(path)
    assert config.mqtt is not None and config.mqtt.tls is not None
    assert config.mqtt.tls.key == tmp_path / "certs" / "client.key"
    assert config.mqtt.protocol == "3.1.1"
    assert config.events.outbox.path == tmp_path / "var" / "outbox.sqlite"
    assert [s.id for s in config.events.sinks] == ["mqtt", "jsonl"]
    path.write_text(HEAD + "mqtt: {host: b, tls: {ca: certs/ca.pem, cert: certs/client.pem}}\n")
    with pytest.raises(ConfigError, match="cert and key go together"):
        load_config(path)


def test_validate_reports_them_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + "events:\n  sinks:\n    - {type: webhook, url: 'mes.local/events'}\n")
    done = subprocess.run([sys.executable, "-m", "appliance", "validate", str(path)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 1
    assert done.stdout.strip() == f"{path}:7: events.sinks.0.url: webhook url must be http:// or https:// with a " \
                                  "host, e.g. https://mes.local/events"
    assert "Traceback" not in done.stderr
