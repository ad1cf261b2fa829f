"""The alert rules under promtool, the example Prometheus config, and the Grafana dashboard file."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.support import REPO

PROMETHEUS = REPO / "monitoring" / "prometheus"
DASHBOARD = REPO / "monitoring" / "grafana" / "appliance.json"
REQUIRED_ALERTS = {
    "ApplianceStreamDown", "ApplianceFrameRateBelowTarget", "ApplianceFramesStale", "ApplianceOutboxBacklogTooOld",
    "ApplianceEventRateSpike", "ApplianceDeviceAbsent", "ApplianceConfigRolledBack",
}


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_unit_tests_of_the_alerts_pass():
    done = subprocess.run(["promtool", "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_not_firing_unit_test():
    names = {rule["alert"] for rule in alert_rules()}
    assert names == REQUIRED_ALERTS
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    firing, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == names, names - firing
    assert quiet == names, names - quiet


def test_alerts_carry_severity_summary_and_description():
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_example_prometheus_config_and_its_rules_are_valid():
    done = subprocess.run(["promtool", "check", "config", "prometheus.yml"], cwd=PROMETHEUS,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 rules found" in done.stdout


def test_dashboard_file_is_what_its_generator_makes():
    done = subprocess.run([sys.executable, "tools/make_dashboard.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_dashboard_has_site_and_device_variables_and_every_panel_queries_the_chosen_prometheus():
    board = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "label_values(appliance_config_info, site)" == variables["site"]["definition"]
    assert "$site" in variables["device"]["definition"]
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    titles = " ".join(p["title"] for p in panels).lower()
    for topic in ("stream up", "frames/s", "latency", "events", "outbox", "gpu", "temperatures"):
        assert topic in titles, topic
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            if "appliance_" in target["expr"] and "up{" not in target["expr"]:
                assert '$device' in target["expr"] and '$site' in target["expr"], target["expr"]
        right = panel["gridPos"]["x"] + panel["gridPos"]["w"]
        assert right <= 24, panel["title"]
