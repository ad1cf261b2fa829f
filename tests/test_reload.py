"""Taking a new config: what can change without a restart, and the running appliance doing it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from appliance.app import Appliance
from appliance.config.schema import ApplianceConfig
from appliance.reload import plan_reload
from tests.support import free_port, metric, scrape

ZONE = {"id": "bench", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]}


def config(tmp_path: Path, model: Path, port: int = 0, version: str = "v1", events: dict | None = None,
           **source: Any) -> ApplianceConfig:
    sources = [
        {"id": "line", "uri": "test://ball?width=320&height=240&fps=10", "analyze_fps": 5,
         "lines": [{"id": "inspect", "points": [[0.5, 0], [0.5, 1]]}],
         "rules": {"defects": {"inspection_line": "inspect"}}, **source},
        {"id": "other", "uri": "test://smpte?width=320&height=240&fps=10", "analyze_fps": 5},
    ]
    return ApplianceConfig.model_validate({
        "version": version, "device": {"id": "dev"}, "backend": "portable", "sources": sources,
        "models": [{"id": "blobs", "onnx": str(model), "labels": str(model.with_suffix(".labels")),
                    "input": {"width": 320, "height": 320}}],
        "metrics": {"port": port}, "inference": {"workers": 1}, "events": events or {},
    }, context={"base_dir": tmp_path})


def test_rules_zones_and_sinks_are_hot_the_rest_needs_a_restart(tmp_path, blob_model) -> None:
    old = config(tmp_path, blob_model)
    assert plan_reload(old, config(tmp_path, blob_model, version="v2")).describe() == \
        "hot reload of nothing but the version"
    zones = plan_reload(old, config(tmp_path, blob_model, zones=[ZONE], rules={"defects": {"tool_zone": "bench"}}))
    assert zones.hot and zones.analytics == ("line",) and not zones.sinks
    sinks = config(tmp_path, blob_model, events={"sinks": [{"type": "jsonl", "path": str(tmp_path / "e.jsonl")}]})
    plan = plan_reload(old, sinks)
    assert plan.hot and plan.sinks and plan.analytics == ()
    uri = plan_reload(old, config(tmp_path, blob_model, uri="test://smpte", analyze_fps=2))
    assert not uri.hot and uri.restart == ("sources.line.uri", "sources.line.analyze_fps")
    assert plan_reload(old, config(tmp_path, blob_model, port=9999)).restart == ("metrics",)
    fewer = old.model_copy(update={"sources": old.sources[:1]})
    assert plan_reload(old, fewer).describe() == "restart needed for sources (added, removed or reordered)"


def test_the_running_appliance_takes_new_rules_between_frames(tmp_path, blob_model) -> None:
    port = free_port()
    app = Appliance(config(tmp_path, blob_model, port=port))
    app.start()
    try:
        time.sleep(2)
        before = app.analytics["line"]
        other = app.analytics["other"]
        frames = metric(scrape(port), "appliance_stream_frames_analyzed_total", stream="line")
        plan = app.reload(config(tmp_path, blob_model, port=port, version="v2", zones=[ZONE],
                                 rules={"defects": {"inspection_line": "inspect", "tool_zone": "bench"}}))
        assert plan.hot and plan.analytics == ("line",)
        assert app.analytics["line"] is not before and app.analytics["other"] is other
        assert app.analytics["line"].rules[0].settings.tool_zone == "bench"
        assert app.config.version == "v2" and app.events.config_version == "v2"
        time.sleep(1.5)
        samples = scrape(port)
        assert metric(samples, "appliance_config_info", device="dev", site="", version="v2") == 1
        assert metric(samples, "appliance_stream_frames_analyzed_total", stream="line") > frames  # never stopped
        delivered = tmp_path / "delivered.jsonl"
        sinks = {"outbox": {"path": str(tmp_path / "outbox.sqlite")},
                 "sinks": [{"type": "jsonl", "path": str(delivered)}]}
        assert app.reload(config(tmp_path, blob_model, port=port, version="v2", zones=[ZONE], events=sinks,
                                 rules={"defects": {"inspection_line": "inspect", "tool_zone": "bench"}})).sinks
        app._on_event(app.events.make("stream.down", "start", "other", 0.0, attributes={"reason": "test"}))
        deadline = time.monotonic() + 10
        while not (delivered.exists() and "stream.down" in delivered.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "stream.down" in delivered.read_text()
        refused = app.reload(config(tmp_path, blob_model, port=port, version="v3", uri="test://smpte"))
        assert not refused.hot and app.config.version == "v2"
    finally:
        app.stop()
