"""A running appliance for the ops tests: a test-pattern camera that works and an RTSP camera that never answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.app import Appliance
from appliance.config.schema import ApplianceConfig
from tests.support import free_port, metric, scrape

DEAD_RECONNECT = {"initial_s": 0.5, "max_s": 2.0, "stall_timeout_s": 2.0}


def appliance_config(folder: Path, model: Path, sources: list[dict[str, Any]], **extra: Any) -> ApplianceConfig:
    data: dict[str, Any] = {
        "version": "ops-7",
        "device": {"id": "ops-device", "site": "plant-t"},
        "backend": "portable",
        "models": [{
            "id": "blobs", "onnx": str(model), "labels": str(model.with_suffix(".labels")),
            "input": {"width": 320, "height": 320}, "confidence": 0.3,
        }],
        "sources": sources,
        "results": {"jsonl": str(folder / "results.jsonl")},
        "events": {"jsonl": str(folder / "events.jsonl"), "outbox": {"path": str(folder / "outbox.sqlite")},
                   "sinks": [{"id": "file", "type": "jsonl", "path": str(folder / "delivered.jsonl")}]},
        "metrics": {"port": free_port()},
        **extra,
    }
    return ApplianceConfig.model_validate(data, context={"base_dir": folder})


PATTERN = {"id": "pattern", "uri": "test://ball?width=320&height=240&fps=10", "analyze_fps": 5}
# the same camera with the use-case metrics of a line: the ball is a part counted where it crosses the
# middle, and an object in the left half's zone
COUNTED = "appliance_parts_inspected_total", "appliance_line_crossings_total", "appliance_zone_objects"
PATTERN_WITH_RULES = {
    **PATTERN, "use_cases": ["defects"],
    "lines": [{"id": "middle", "points": [[0.5, 0.0], [0.5, 1.0]]}],
    "zones": [{"id": "left", "polygon": [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]}],
    "rules": {"defects": {"inspection_line": "middle", "part_labels": ["bright_object"],
                          "drift": {"window_parts": 5, "min_parts": 1, "limit": 0.5}},
              "presence": {"zones": ["left"], "lines": ["middle"]}},
}


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


@dataclass
class Running:
    app: Appliance
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def running_appliance(tmp_path_factory: pytest.TempPathFactory, blob_model: Path) -> Iterator[Running]:
    """``pattern`` runs, with the use-case metrics of a line; ``dead`` points at a closed loopback port
    and keeps reconnecting."""
    folder = tmp_path_factory.mktemp("ops-appliance")
    dead = {"id": "dead", "uri": f"rtsp://127.0.0.1:{free_port()}/cam", "reconnect": DEAD_RECONNECT}
    app = Appliance(appliance_config(folder, blob_model, [PATTERN_WITH_RULES, dead]))
    app.start()
    running = Running(app, app.metrics_port or 0)
    try:
        analyzed = wait_until(
            lambda: (metric(scrape(running.port), "appliance_stream_frames_analyzed_total", stream="pattern") or 0)
            >= 3, timeout=20)
        assert analyzed, "the test pattern was not analyzed"
        counted = wait_until(lambda: {name for name, _ in scrape(running.port)} >= set(COUNTED), timeout=30)
        assert counted, "the ball was never counted at the middle line"
        yield running
    finally:
        app.stop()
