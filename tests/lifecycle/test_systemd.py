"""The systemd units: what the issue asks of each, ``systemd-analyze verify`` and ``security`` thresholds."""

from __future__ import annotations

import configparser
import subprocess

from tests.lifecycle.test_provision import fresh_root, provision
from tests.support import REPO

UNITS = REPO / "systemd"
#: ``systemd-analyze security --threshold`` takes the exposure level × 10; lower is safer.
THRESHOLDS = {"appliance.service": 20, "appliance-engines.service": 10, "appliance-agent.service": 15}


def unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string((UNITS / name).read_text())
    return parser


def test_pipeline_unit_is_notify_watched_restarted_and_confined_but_sees_the_gpu():
    u = unit("appliance.service")
    service = u["Service"]
    assert service["Type"] == "notify" and int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert "StartLimitIntervalSec" in u["Unit"] and "StartLimitBurst" in u["Unit"]
    assert "StartLimitIntervalSec" not in service  # systemd only reads it in [Unit]
    assert service["User"] == "appliance" and service["StateDirectory"] == "appliance"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "yes"
    assert "PrivateDevices" not in service  # the GPU device nodes stay reachable
    assert "appliance-engines.service" in u["Unit"]["After"]
    assert service["ExecStart"].endswith("run -c /var/lib/appliance/config/current.yaml")


def test_engine_build_is_a_oneshot_before_the_pipeline():
    u = unit("appliance-engines.service")
    assert u["Service"]["Type"] == "oneshot"
    assert "appliance.service" in u["Unit"]["Before"]
    assert " engines build -c /var/lib/appliance/config/current.yaml" in u["Service"]["ExecStart"]
    assert "PrivateDevices" not in u["Service"]


def test_agent_has_no_gpu_and_does_not_depend_on_the_pipeline():
    u = unit("appliance-agent.service")
    service = u["Service"]
    assert service["PrivateDevices"] == "yes" and service["DevicePolicy"] == "closed"
    assert "appliance.service" not in " ".join(u["Unit"].values())  # it keeps running while the pipeline restarts
    assert service["ExecStart"].endswith("agent -c /var/lib/appliance/config/current.yaml")
    assert service["User"] == "appliance" and service["ProtectSystem"] == "strict"


def test_units_as_provisioned_verify_and_stay_under_their_exposure_threshold(tmp_path):
    # tools/provision renders the units for its --prefix; give it one where the command exists.
    prefix = tmp_path / "prefix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "appliance").symlink_to(REPO / ".venv" / "bin" / "appliance")
    config = tmp_path / "site.yaml"
    config.write_text("sources: [{id: a, uri: 'test://ball'}]\n")
    root = fresh_root(tmp_path / "root")
    done = provision("--root", str(root), "--prefix", str(prefix), "--config", str(config), "--no-venv")
    assert done.returncode == 0, done.stderr
    rendered = sorted((root / "etc" / "systemd" / "system").glob("*.service"))
    assert [p.name for p in rendered] == sorted(THRESHOLDS)
    assert f"ExecStart={prefix}/venv/bin/appliance run" in (root / "etc/systemd/system/appliance.service").read_text()

    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, rendered)],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    for path in rendered:
        security = subprocess.run(
            ["systemd-analyze", "security", "--offline=true", f"--threshold={THRESHOLDS[path.name]}", str(path)],
            capture_output=True, text=True, timeout=60,
        )
        assert security.returncode == 0, security.stdout[-600:]


def test_verify_catches_a_broken_unit(tmp_path):
    broken = tmp_path / "appliance.service"
    broken.write_text((UNITS / "appliance.service").read_text().replace("Type=notify", "Type=notifyy"))
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(broken)], capture_output=True, text=True)
    assert "notifyy" in done.stderr
