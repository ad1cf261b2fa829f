"""Writes the Grafana dashboard monitoring/grafana/appliance.json (or checks that it is up to date).

    python tools/make_dashboard.py            # write it
    python tools/make_dashboard.py --check    # exit 1 if the file differs from what this script makes

The dashboard has a fleet overview and a per-device drill-down, filtered by the
variables ``site`` and ``device``. The appliance's series carry ``instance`` and
``job`` (added by Prometheus); device and site come from ``appliance_config_info``,
joined onto every series by :func:`per_device`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "monitoring" / "grafana" / "appliance.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
INFO = 'appliance_config_info{site=~"$site", device=~"$device"}'
RATE = "[$__rate_interval]"
STARTED = 'appliance_events_total{phase="start"}'
CRITICAL = 'appliance_events_total{phase="start", severity="critical"}'
IDLE = 'appliance_host_cpu_seconds_total{mode="idle"}'


def per_device(expr: str, labels: str = "device") -> str:
    """``expr`` restricted to the chosen sites and devices, each series labelled with its device."""
    return f"({expr}) * on (instance, job) group_left ({labels}) {INFO}"


def quantile(q: float, histogram: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by (le, device, {by}) ({per_device(f'rate({histogram}_bucket{RATE})')}))"


@dataclass
class Query:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    title: str
    queries: list[Query]
    kind: str = "timeseries"  # timeseries | stat | table | state-timeline
    unit: str = "short"
    width: int = 8
    height: int = 8
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def fleet_overview() -> list[Panel]:
    up = per_device("appliance_stream_up", "device, site")
    analyzed = f"rate(appliance_stream_frames_analyzed_total{RATE})"

    def per_site(aggregation: str, expr: str) -> Query:
        return Query(f"{aggregation} by (device, site) ({per_device(expr, 'device, site')})", instant=True)

    return [
        Panel("Devices reporting", [Query(f"count({INFO})", instant=True)], "stat", width=4, height=4,
              description="Appliances whose /metrics Prometheus scraped at the last try"),
        Panel("Devices absent", [Query(
            'count((up{job="appliance"} == 0) * on (instance, job) group_left (device, site) '
            'last_over_time(appliance_config_info{site=~"$site", device=~"$device"}[1d])) or vector(0)',
            instant=True)], "stat", width=4, height=4,
            description="Appliances Prometheus cannot reach (seen within the last day)"),
        Panel("Streams up", [Query(f"sum({up}) or vector(0)", instant=True)], "stat", width=4, height=4),
        Panel("Streams down", [Query(f"count(({up}) == 0) or vector(0)", instant=True)], "stat",
              width=4, height=4),
        Panel("Events started, last hour", [Query(
            f"sum({per_device(f'increase({STARTED}[1h])')}) or vector(0)", instant=True)], "stat",
            width=4, height=4),
        Panel("Oldest undelivered event", [Query(
            f"max({per_device('appliance_outbox_oldest_pending_age_seconds')}) or vector(0)", instant=True)],
            "stat", unit="s", width=4, height=4),
        Panel("Devices", [
            Query(f"max by (device, site, version) ({INFO})", instant=True),
            per_site("sum", "appliance_stream_up"),
            per_site("count", "appliance_stream_up"),
            per_site("sum", analyzed),
            per_site("max", "appliance_host_temperature_celsius"),
            per_site("max", "appliance_outbox_oldest_pending_age_seconds"),
        ], "table", width=24, height=8, options={"columns": [
            "config version", "streams up", "streams configured", "analyzed frames/s", "hottest zone °C",
            "oldest undelivered s"]}),
        Panel("Analyzed frames/s by device", [Query(
            f"sum by (device) ({per_device(analyzed)})", "{{device}}")]),
        Panel("Outbox: oldest undelivered event by device", [Query(
            f"max by (device) ({per_device('appliance_outbox_oldest_pending_age_seconds')})", "{{device}}")],
            unit="s"),
        Panel("GPU busy and hottest zone by device", [
            Query(f"max by (device) ({per_device('appliance_gpu_utilization_ratio')}) * 100", "{{device}} GPU %"),
            Query(f"max by (device) ({per_device('appliance_host_temperature_celsius')})", "{{device}} °C"),
        ]),
    ]


def device_drill_down() -> list[Panel]:
    def stream(metric: str) -> str:
        return per_device(metric)

    return [
        Panel("Stream up", [Query(stream("appliance_stream_up"), "{{device}} {{stream}}")], "state-timeline",
              width=12),
        Panel("Time since the last frame", [Query(
            stream("time() - appliance_stream_last_frame_timestamp_seconds"), "{{device}} {{stream}}")],
            unit="s", width=12),
        Panel("Decoded frames/s", [Query(
            stream(f"rate(appliance_stream_frames_decoded_total{RATE})"), "{{device}} {{stream}}")]),
        Panel("Analyzed frames/s against the target", [
            Query(stream(f"rate(appliance_stream_frames_analyzed_total{RATE})"), "{{device}} {{stream}}"),
            Query(stream("appliance_stream_target_fps"), "{{device}} {{stream}} target"),
        ]),
        Panel("Dropped frames/s and reconnects", [
            Query(stream(f"rate(appliance_stream_frames_dropped_total{RATE})"), "{{device}} {{stream}} dropped/s"),
            Query(stream(f"increase(appliance_stream_reconnects_total{RATE})"), "{{device}} {{stream}} reconnects"),
        ]),
        Panel("Inference latency p50 / p99", [
            Query(quantile(0.5, "appliance_inference_latency_seconds", "model"), "{{device}} {{model}} p50"),
            Query(quantile(0.99, "appliance_inference_latency_seconds", "model"), "{{device}} {{model}} p99"),
        ], unit="s"),
        Panel("Inference batch size (mean)", [Query(
            f"sum by (device, model) ({per_device('rate(appliance_inference_batch_size_sum' + RATE + ')')})"
            f" / sum by (device, model) ({per_device('rate(appliance_inference_batch_size_count' + RATE + ')')})",
            "{{device}} {{model}}")]),
        Panel("Decode-to-result latency p99", [Query(
            quantile(0.99, "appliance_frame_latency_seconds", "stream"), "{{device}} {{stream}}")], unit="s"),
        Panel("Events started per minute, by kind and severity", [Query(
            f"sum by (device, kind, severity) ({per_device(f'rate({STARTED}{RATE})')}) * 60",
            "{{device}} {{kind}} ({{severity}})")], width=12),
        Panel("Outbox backlog", [
            Query(per_device("appliance_outbox_pending_events"), "{{device}} {{sink}} pending"),
            Query(per_device("appliance_outbox_bytes"), "{{device}} bytes"),
        ], width=12),
        Panel("Outbox: oldest undelivered event", [Query(
            per_device("appliance_outbox_oldest_pending_age_seconds"), "{{device}} {{sink}}")], unit="s"),
        Panel("Delivered, failed and dropped events/s", [
            Query(per_device(f"rate(appliance_events_delivered_total{RATE})"), "{{device}} {{sink}} delivered"),
            Query(per_device(f"rate(appliance_events_delivery_failures_total{RATE})"), "{{device}} {{sink}} failed"),
            Query(per_device(f"rate(appliance_events_dropped_total{RATE})"), "{{device}} dropped ({{reason}})"),
        ]),
        Panel("GPU busy and memory", [
            Query(per_device("appliance_gpu_utilization_ratio"), "{{device}} GPU {{gpu}} busy"),
            Query(per_device("appliance_gpu_memory_used_bytes / appliance_gpu_memory_total_bytes"),
                  "{{device}} GPU {{gpu}} memory"),
        ], unit="percentunit"),
        Panel("Temperatures", [
            Query(per_device("appliance_host_temperature_celsius"), "{{device}} {{type}}"),
            Query(per_device("appliance_gpu_temperature_celsius"), "{{device}} GPU {{gpu}}"),
        ], unit="celsius"),
        Panel("CPU and memory", [
            Query(f"1 - sum by (device) ({per_device(f'rate({IDLE}{RATE})')})"
                  f" / sum by (device) ({per_device('appliance_host_cpus')})", "{{device}} CPU busy"),
            Query(f"1 - {per_device('appliance_host_memory_available_bytes / appliance_host_memory_total_bytes')}",
                  "{{device}} memory in use"),
        ], unit="percentunit"),
        Panel("Appliance process resident memory", [Query(
            per_device("appliance_process_resident_memory_bytes"), "{{device}}")], unit="bytes"),
        Panel("Versions: build and models (config versions: the Devices table)", [
            Query(per_device("appliance_build_info", "device, site"), instant=True),
            Query(per_device("appliance_model_info", "device"), instant=True),
        ], "table", width=16),
    ]


def use_cases() -> list[Panel]:
    """What the plant asked the cameras about: parts, zones and lines, safety and animal events."""
    def started(kinds: str) -> str:
        return per_device(f'increase(appliance_events_total{{phase="start", kind=~"{kinds}"}}[1h])')

    return [
        Panel("Parts inspected per minute, ok and defective", [Query(
            f"sum by (device, stream, line, result) ({per_device(f'rate(appliance_parts_inspected_total{RATE})')})"
            " * 60", "{{device}} {{stream}} {{line}} {{result}}")], width=12,
            description="Parts counted once each as they cross an inspection line (rules.defects)"),
        Panel("Defective fraction of the recent parts", [Query(
            per_device("appliance_defect_rate_ratio"), "{{device}} {{stream}} {{line}}")], unit="percentunit",
            width=12, description="Over the sliding window of rules.defects.drift; defect.rate_drift fires above "
                                  "its limit"),
        Panel("Part anomaly score p50 / p95", [
            Query(quantile(0.5, "appliance_part_anomaly_score", "stream, line"), "{{device}} {{stream}} p50"),
            Query(quantile(0.95, "appliance_part_anomaly_score", "stream, line"), "{{device}} {{stream}} p95"),
        ], description="A rising score is the anomaly model's early sign of wear before parts turn defective"),
        Panel("Objects in zones", [Query(
            per_device("appliance_zone_objects"), "{{device}} {{stream}} {{zone}}")],
            description="Tracked objects whose anchor is inside each zone (rules.presence)"),
        Panel("Line crossings per minute, by direction", [Query(
            f"sum by (device, stream, line, direction) "
            f"({per_device(f'rate(appliance_line_crossings_total{RATE})')}) * 60",
            "{{device}} {{stream}} {{line}} {{direction}}")]),
        Panel("Critical events started, last hour", [Query(
            f"sum by (device, kind) ({per_device(f'increase({CRITICAL}[1h])')}) or vector(0)", "{{device}} {{kind}}",
            instant=True)], "stat", width=6, height=6,
            description="Fire and smoke: each one a situation someone must look at now"),
        Panel("Clean-room events started, last hour", [Query(
            f"sum by (device, kind) ({started('ppe[.].*|hygiene[.].*')}) or vector(0)", "{{device}} {{kind}}",
            instant=True)], "stat", width=6, height=6),
        Panel("Animal events started, last hour", [Query(
            f"sum by (device, kind) ({started('animal[.].*')}) or vector(0)", "{{device}} {{kind}}", instant=True)],
            "stat", width=6, height=6, description="Each cage's behaviour alerts and hourly activity summaries"),
        Panel("Tools verified, last hour", [Query(
            f"sum by (device, severity) ({started('tool[.]verified')}) or vector(0)", "{{device}} {{severity}}",
            instant=True)], "stat", width=6, height=6, description="info: clean; warning: dirty or damaged"),
    ]


def panel_json(panel: Panel, ident: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, query in enumerate(panel.queries):
        target: dict[str, Any] = {"refId": chr(ord("A") + index), "datasource": DATASOURCE, "expr": query.expr,
                                  "legendFormat": query.legend or "__auto", "range": not query.instant,
                                  "instant": query.instant}
        if panel.kind == "table":
            target["format"] = "table"
        targets.append(target)
    body: dict[str, Any] = {
        "id": ident, "type": panel.kind, "title": panel.title, "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": targets,
    }
    if panel.description:
        body["description"] = panel.description
    if panel.kind == "table":
        body["transformations"] = [{"id": "merge", "options": {}}, {"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value #A": True},
            "renameByName": {f"Value #{chr(ord('A') + i)}": name
                             for i, name in enumerate(panel.options.get("columns", []), start=1)},
        }}]
    if panel.kind == "stat":
        body["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                           "colorMode": "value", "graphMode": "none"}
    if panel.kind == "state-timeline":
        body["fieldConfig"]["defaults"]["mappings"] = [{"type": "value", "options": {
            "0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}]
    return body


def layout(sections: list[tuple[str, list[Panel]]]) -> list[dict[str, Any]]:
    """Rows of panels, left to right, wrapping at Grafana's 24 columns."""
    panels: list[dict[str, Any]] = []
    ident, y = 1, 0
    for title, members in sections:
        panels.append({"id": ident, "type": "row", "title": title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        ident, y = ident + 1, y + 1
        x, row_height = 0, 0
        for panel in members:
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(panel_json(panel, ident, x, y))
            ident, x, row_height = ident + 1, x + panel.width, max(row_height, panel.height)
        y += row_height
    return panels


def variable(name: str, label: str, query: str, all_value: str | None) -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
        "definition": query, "query": {"query": query, "refId": f"{name}-values", "qryType": 1},
        "refresh": 2, "includeAll": True, "multi": True, "sort": 1, "hide": 0,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [],
    }
    if all_value is not None:
        var["allValue"] = all_value
    return var


def dashboard() -> dict[str, Any]:
    return {
        "uid": "shop-floor-appliances",
        "title": "Shop-floor vision appliances",
        "description": "Fleet overview and per-device drill-down of the shop-floor vision appliance",
        "tags": ["appliance", "vision"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "refresh": 1, "hide": 0, "current": {}, "options": []},
            # Devices without a site (device.site unset) match ".*" but not a listed value.
            variable("site", "Site", "label_values(appliance_config_info, site)", ".*"),
            variable("device", "Device", 'label_values(appliance_config_info{site=~"$site"}, device)', None),
        ]},
        "panels": layout([("Fleet overview", fleet_overview()), ("Devices: $device", device_drill_down()),
                          ("Use cases: $device", use_cases())]),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the dashboard file is not up to date")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is not up to date: run python tools/make_dashboard.py", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
