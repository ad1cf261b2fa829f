"""/healthz and /readyz of a running appliance, and the readiness checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from appliance.app import Appliance
from appliance.health import CheckResult, PathWritable, Readiness
from tests.ops.conftest import PATTERN, appliance_config, wait_until


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()) if exc.headers.get("Content-Type") == "application/json" else {}


def test_readyz_says_which_stream_is_not_producing(running_appliance):
    status, body = get(running_appliance.url + "/readyz")
    assert status == 503
    assert body["status"] == "not ready"
    checks = {c["name"]: c for c in body["checks"]}
    assert checks["stream:pattern"]["ok"] and checks["stream:pattern"]["detail"].startswith("running, last frame")
    assert not checks["stream:dead"]["ok"]
    assert checks["stream:dead"]["detail"].startswith(("waiting", "starting"))
    assert checks["model:blobs"] == {"name": "model:blobs", "ok": True, "detail": "loaded"}
    assert checks["results"]["ok"] and checks["events"]["ok"] and checks["outbox"]["ok"]
    assert body["problems"] == [f"stream:dead: {checks['stream:dead']['detail']}"]


def test_healthz_is_alive_with_device_and_versions(running_appliance):
    status, body = get(running_appliance.url + "/healthz")
    assert status == 200
    assert body["status"] == "alive"
    assert (body["device"], body["config_version"]) == ("ops-device", "ops-7")
    assert body["uptime_s"] > 0
    assert get(running_appliance.url + "/nothing")[0] == 404


def test_readyz_turns_ready_when_every_stream_produces_and_unready_after_stop(tmp_path, blob_model):
    app = Appliance(appliance_config(tmp_path, blob_model, [PATTERN]))
    page = app.health.readiness.page
    assert page()[0] == 503  # not started: no frame yet
    app.start()
    try:
        assert wait_until(lambda: get(f"http://127.0.0.1:{app.metrics_port}/readyz")[0] == 200, timeout=15)
        status, body = get(f"http://127.0.0.1:{app.metrics_port}/readyz")
        assert body["status"] == "ready" and body["problems"] == []
    finally:
        app.stop()
    status, body = page()
    assert status == 503
    assert "model:blobs: not loaded" in body["problems"]
    assert any(p.startswith("stream:pattern: stopped") for p in body["problems"])


def test_a_check_is_added_with_one_line_and_a_broken_check_makes_not_ready(tmp_path):
    readiness = Readiness([lambda: [CheckResult("camera-power", True, "on")]])
    readiness.add(PathWritable("outbox", tmp_path / "outbox.sqlite"))
    assert readiness.page()[0] == 200

    def broken() -> list[CheckResult]:
        raise RuntimeError("database is locked")

    readiness.add(broken)
    status, body = readiness.page()
    assert status == 503
    assert body["problems"] == ["broken: check failed: database is locked"]


def test_path_writable_reports_a_missing_directory_and_a_full_disk(tmp_path):
    ok = PathWritable("outbox", tmp_path / "outbox.sqlite")()
    assert ok[0].ok and str(tmp_path) in ok[0].detail
    missing = PathWritable("outbox", tmp_path / "gone" / "outbox.sqlite")()
    assert missing == [CheckResult("outbox", False, f"{tmp_path / 'gone'} does not exist")]
    full = PathWritable("snapshots", tmp_path, is_directory=True, min_free_bytes=1 << 62)()
    assert not full[0].ok and "free" in full[0].detail
