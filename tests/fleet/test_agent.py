"""The fleet agent end to end: a real Mosquitto on 127.0.0.1, ``appliance agent`` in a subprocess
running ``appliance run`` on a test pattern, bundles signed and pushed as an operator does
(the device and the operator are those of ``tools/fleet_trial.py``)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from appliance.cli import main
from appliance.fleet.keys import load_private
from tests.support import REPO, free_port
from tools.fleet_trial import GOOD_URI, TrialDevice, TrialOperator, scrape_values, wait_until

APPLIANCE = [sys.executable, "-m", "appliance"]
WINDOW_S = 2.0


@pytest.fixture
def device(tmp_path, broker, fleet_keys, blob_model):
    made = TrialDevice(tmp_path / "device", broker.port, fleet_keys.public, blob_model, WINDOW_S)
    made.current.write_text(made.config("v0"))
    yield made
    made.stop()


@pytest.fixture
def operator(fleet_keys, broker):
    made = TrialOperator(fleet_keys.private, broker.port)
    yield made
    made.close()


def test_offline_push_good_update_and_every_refusal(tmp_path, device, operator, fleet_keys, broker):
    # Pushed with the operator's commands while the device is offline: applied when it connects.
    site = tmp_path / "v1.yaml"
    site.write_text(device.config("v1"))
    v1_file = tmp_path / "v1.bundle"
    signed = subprocess.run([*APPLIANCE, "fleet", "sign", str(site), "--key", str(fleet_keys.private),
                             "--version", "1", "--device", "dev-1", "-o", str(v1_file)],
                            capture_output=True, text=True, cwd=REPO)
    assert signed.returncode == 0, signed.stderr
    broker_file = tmp_path / "broker.yaml"
    broker_file.write_text(f"host: 127.0.0.1\nport: {broker.port}\nprotocol: 3.1.1\n")
    pushed = subprocess.run([*APPLIANCE, "fleet", "push", str(v1_file), "--broker", str(broker_file)],
                            capture_output=True, text=True, cwd=REPO)
    assert pushed.returncode == 0, pushed.stderr
    assert "fleet/dev-1/config/desired" in pushed.stdout
    v1 = v1_file.read_bytes()
    device.start()
    report = operator.report(v1, timeout=30)
    assert report is not None, device.log.read_text()
    assert (report["status"], report["version"], report["running_version"]) == ("applied", 1, 1), report["reason"]
    assert device.current.read_text() == device.config("v1")
    assert device.pipeline_version() == "v1"

    # A good bundle for the device's group, pushed while it is online: applied and reported within 10 s.
    v2 = operator.bundle(2, device.config("v2"), devices=(), groups=("line-3",))
    operator.push(v2, "fleet/group/line-3/config/desired")
    report = operator.report(v2, timeout=10)
    assert report is not None and report["status"] == "applied", report
    assert device.pipeline_version() == "v2"
    assert device.agent_metric("appliance_fleet_config_version") == 2

    unmanaged = device.config("v7").split("fleet:")[0]  # no fleet: section: the agent could not start again
    refused = [
        ("bad_signature", operator.bundle(3, device.config("forged"), key=load_private(fleet_keys.rogue_private)),
         "bad signature"),
        ("replayed", v1, "version 1 is not newer than version 2"),
        ("expired", operator.bundle(4, device.config("late"), expires_in=timedelta(seconds=-5)), "expired"),
        ("invalid_config", operator.bundle(5, "sources:\n  - id: cam\n    uri: ftp://camera/1\n"),
         "line 3: sources.0.uri: unsupported URI scheme 'ftp'"),
        ("not_for_this_device", operator.bundle(6, device.config("other"), devices=("dev-2",)),
         "not for device dev-1"),
        ("invalid_config", operator.bundle(7, unmanaged), "the fleet: and mqtt: sections must stay"),
        ("invalid_config", operator.bundle(8, device.config("v8").replace("state_dir: ", "state_dir: /tmp/elsewhere")),
         "fleet.state_dir cannot change by a push"),
    ]
    for code, envelope, reason in refused:
        operator.push(envelope)
        report = operator.report(envelope, timeout=10)
        assert report is not None, code
        assert (report["status"], report["code"], report["running_version"]) == ("rejected", code, 2), report
        assert reason in report["reason"], report
        assert device.current.read_text() == device.config("v2")  # the running config is untouched
    assert device.pipeline_version() == "v2"
    assert device.agent_metric("appliance_fleet_bundles_total", status="rejected") == len(refused)


def test_a_camera_that_never_produces_frames_is_rolled_back(tmp_path, capsys, device, operator):
    device.start()
    assert wait_until(lambda: device.pipeline_version() == "v0", 20), device.log.read_text()
    dead_camera = f"rtsp://127.0.0.1:{free_port()}/cam"
    bad = operator.bundle(1, device.config("v1-dead-camera", uri=dead_camera))
    bundle_file = tmp_path / "v1.bundle"
    bundle_file.write_bytes(bad)
    port = str(device.broker_port)
    assert main(["fleet", "push", str(bundle_file), "--port", port, "--wait", str(WINDOW_S + 30)]) == 1
    assert "dev-1: rolled_back version 1: stream pattern produced no frames" in capsys.readouterr().out
    report = operator.report(bad, timeout=5)
    assert report is not None, device.log.read_text()
    assert report["status"] == "rolled_back"
    assert report["reason"] == f"stream pattern produced no frames in the {WINDOW_S:g} s health window"
    assert report["running_version"] == 0
    assert device.current.read_text() == device.config("v0")
    assert device.agent_metric("appliance_fleet_config_rollbacks_total") == 1
    assert wait_until(lambda: device.pipeline_version() == "v0", 20)
    # The rolled-back version stays refused: it was accepted once.
    operator.push(bad)
    report = operator.report(bad, timeout=10)
    assert report is not None and report["code"] == "replayed"


def test_sigkill_during_apply_leaves_one_whole_config(device, operator):
    device.start()
    assert wait_until(lambda: device.pipeline_version() == "v0", 20), device.log.read_text()
    v1 = operator.bundle(1, device.config("v1"))
    operator.push(v1)
    assert wait_until(lambda: device.state().get("pending_version") == 1, 10, interval=0.02)
    device.kill()  # in the middle of the health window
    assert device.current.read_text() in (device.config("v0"), device.config("v1"))
    assert wait_until(lambda: device.pipeline_version() is None, 10), "the pipeline outlived its agent"

    device.start()
    report = operator.report(v1, timeout=WINDOW_S + 20)
    assert report is not None, device.log.read_text()
    assert report["status"] == "applied"
    assert device.current.read_text() == device.config("v1")
    assert device.pipeline_version() == "v1"
    assert device.state()["pending_version"] is None


def test_a_crash_between_recording_a_version_and_the_swap_keeps_the_old_config(device, fleet_keys):
    """The state says version 2 was being applied, but the swap never happened (its digest does not match)."""
    from appliance.clock import SystemClock
    from appliance.config.loader import load_config
    from appliance.fleet.agent import FleetAgent
    from appliance.fleet.pipeline import ChildPipeline
    from appliance.fleet.state import FleetState, StateStore

    settings = load_config(device.current).fleet
    assert settings is not None
    StateStore(settings.state_dir).save(FleetState(highest_version=2, running_version=1, pending_version=2,
                                                   pending_digest="0" * 64, pending_bundle="b2"))
    sleeper = ChildPipeline(device.current, command=[sys.executable, "-c", "import time; time.sleep(30)"])
    agent = FleetAgent(device.current, "dev-1", settings, sleeper, SystemClock())
    try:
        report = agent.start()
    finally:
        sleeper.stop()
    assert report is not None
    assert (report.status, report.version, report.code, report.bundle) == ("rolled_back", 2, "interrupted", "b2")
    assert report.running_version == 1
    assert device.current.read_text() == device.config("v0")
    state = StateStore(settings.state_dir).load()
    assert (state.highest_version, state.pending_version) == (2, None)  # version 2 stays refused


def test_the_agent_refuses_a_config_without_fleet_settings(tmp_path, capsys):
    config = tmp_path / "site.yaml"
    config.write_text(f"sources: [{{id: a, uri: '{GOOD_URI}'}}]\n")
    assert main(["agent", "-c", str(config)]) == 1
    assert "needs both a fleet: and an mqtt: section" in capsys.readouterr().err


def test_the_running_version_signed_again_is_not_a_replay(device, operator, fleet_keys):
    """A canary widened to 100 % re-signs the same version: devices that run it already stay quiet."""
    from appliance.clock import SystemClock
    from appliance.config.loader import load_config
    from appliance.fleet.agent import FleetAgent
    from appliance.fleet.pipeline import ChildPipeline
    from appliance.fleet.state import FleetState, StateStore

    settings = load_config(device.current).fleet
    assert settings is not None
    StateStore(settings.state_dir).save(FleetState(highest_version=3, running_version=3))
    sleeper = ChildPipeline(device.current, command=[sys.executable, "-c", "import time; time.sleep(30)"])
    agent = FleetAgent(device.current, "dev-1", settings, sleeper, SystemClock())
    try:
        agent.start()
        assert agent.handle(operator.bundle(3, device.config("v3"), groups=("line-3",))) is None
        older = agent.handle(operator.bundle(2, device.config("v2")))
        assert older is not None and older.code == "replayed"
        assert agent.handle(operator.bundle(2, device.config("v2")), stored=True) is None  # retained history
    finally:
        sleeper.stop()
    assert device.current.read_text() == device.config("v0")


def test_the_agent_delivers_the_events_the_pipeline_writes(tmp_path, device):
    """events.outbox.delivered_by: agent — the pipeline only writes the outbox; the agent's sinks deliver."""
    import json

    dead = f"rtsp://127.0.0.1:{free_port()}/cam"  # a camera that is not there: a stream.down event
    delivered = tmp_path / "delivered.jsonl"
    device.current.write_text(device.config("v0", uri=dead) + f"""\
events:
  outbox: {{path: {tmp_path / 'outbox.sqlite'}, delivered_by: agent}}
  sinks: [{{type: jsonl, id: file, path: {delivered}}}]
""")
    device.start()

    def down_delivered() -> bool:
        lines = delivered.read_text().splitlines() if delivered.exists() else []
        return any(json.loads(line)["kind"] == "stream.down" for line in lines)

    assert wait_until(down_delivered, timeout=30), device.log.read_text()
    assert (device.agent_metric("appliance_events_delivered_total", sink="file") or 0) >= 1
    assert wait_until(lambda: device.pipeline_version() == "v0", timeout=10)
    assert scrape_values(device.pipeline_port, "appliance_events_delivered_total") == []  # not the pipeline's


def test_new_rules_are_taken_without_restarting_the_pipeline(device, operator):
    device.start()
    assert wait_until(lambda: device.pipeline_version() == "v0", 20), device.log.read_text()
    started = scrape_values(device.pipeline_port, "appliance_process_start_time_seconds")
    zoned = device.config("v1").replace(
        "analyze_fps: 5,", "analyze_fps: 5, zones: [{id: bench, polygon: [[0, 0], [1, 0], [1, 1]]}],")
    envelope = operator.bundle(1, zoned)
    operator.push(envelope)
    report = operator.report(envelope, timeout=20)
    assert report is not None and report["status"] == "applied", report
    assert device.pipeline_version() == "v1"
    assert scrape_values(device.pipeline_port, "appliance_process_start_time_seconds") == started  # same process
    assert "hot reload of analytics of pattern" in device.log.read_text()
