"""A real Prometheus scrapes a running appliance; every PromQL expression of the dashboard and of the
alert rules is evaluated through its HTTP API."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ops.conftest import COUNTED, Running, wait_until
from tests.support import REPO, free_port, scrape

RULES = REPO / "monitoring" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "monitoring" / "grafana" / "appliance.json"
VARIABLES = {"$site": ".*", "$device": ".*", "$__rate_interval": "1m", "${datasource}": ""}
NAME = re.compile(r"\b(appliance_[a-z0-9_]+|up)\b")
NOT_SERVED_BY_THE_PIPELINE = {"appliance_fleet_config_rollbacks_total"}  # the fleet agent serves it


class Prometheus:
    def __init__(self, folder: Path, target_port: int) -> None:
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "appliance",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}],
        }))
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=(folder / "prometheus.log").open("w"),
        )

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> dict:
        """The query's answer; a PromQL error comes back as status "error" (HTTP 400/422)."""
        try:
            return self.api("query", query=expr)
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read())

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def prometheus(running_appliance: Running, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), running_appliance.port)
    try:
        assert wait_until(server.ready, timeout=20), "prometheus did not start"

        def scraped_enough() -> bool:  # rates need a few samples; the rules need an evaluation
            answer = server.query('count_over_time(up{job="appliance"}[1m]) >= 6 and up{job="appliance"} == 1')
            return answer["status"] == "success" and bool(answer["data"]["result"])

        assert wait_until(scraped_enough, timeout=30, interval=0.5), "prometheus did not scrape the appliance"
        yield server
    finally:
        server.stop()


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def served_names(port: int) -> set[str]:
    """Sample names the appliance serves right now (plus Prometheus's own ``up``)."""
    return {name for name, _ in scrape(port)} | {"up"}


def test_every_dashboard_expression_evaluates_and_panels_of_served_series_have_data(prometheus, running_appliance):
    served = served_names(running_appliance.port)
    assert set(COUNTED) <= served  # the use-case panels of parts, zones and lines are checked too
    queries = dashboard_queries()
    assert len(queries) >= 30
    empty, checked = [], 0
    for title, expr in queries:
        answer = prometheus.query(expr)
        assert answer["status"] == "success", (title, expr, answer.get("error"))
        if set(NAME.findall(expr)) <= served:  # GPU, temperatures, outbox sinks: only where they exist
            checked += 1
            if not answer["data"]["result"]:
                empty.append((title, expr))
    assert not empty, empty
    assert checked >= 25  # streams, frames, latency, events, host, versions at least


def test_every_alert_expression_evaluates_and_names_only_series_that_exist(prometheus, running_appliance):
    served = served_names(running_appliance.port)
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        answer = prometheus.query(rule["expr"])
        assert answer["status"] == "success", (rule["alert"], answer.get("error"))
        for name in set(NAME.findall(rule["expr"])) - NOT_SERVED_BY_THE_PIPELINE:
            if name.startswith(("appliance_outbox_", "appliance_gpu_", "appliance_host_temperature")) \
                    and name not in served:
                continue  # present only with an outbox sink, a GPU, thermal zones
            assert prometheus.query(f"count({name})")["data"]["result"], (rule["alert"], name)
    # The dead camera is what the stream-down alert sees, with the device and site of its appliance.
    down = prometheus.query(next(r["expr"] for r in rules if r["alert"] == "ApplianceStreamDown"))
    labels = [series["metric"] for series in down["data"]["result"]]
    assert [(s["stream"], s["device"], s["site"]) for s in labels] == [("dead", "ops-device", "plant-t")]


def test_prometheus_loads_the_rules_and_raises_the_stream_down_alert(prometheus):
    def evaluated() -> list[dict]:
        rules = [r for g in prometheus.api("rules")["data"]["groups"] for r in g["rules"]]
        return rules if rules and all(r["lastEvaluation"] > "2000" for r in rules) else []

    rules = wait_until(evaluated, timeout=10)
    assert len(rules) == 7
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    time.sleep(1.5)
    alerts = prometheus.api("alerts")["data"]["alerts"]
    down = [a for a in alerts if a["labels"]["alertname"] == "ApplianceStreamDown"]
    assert [a["labels"]["stream"] for a in down] == ["dead"]
    assert down[0]["state"] in ("pending", "firing")  # pending for its first 2 minutes
    assert all(a["labels"]["alertname"] != "ApplianceDeviceAbsent" for a in alerts)
