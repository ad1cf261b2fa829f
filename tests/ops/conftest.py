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
    """``pattern`` runs; ``dead`` points at a closed loopback port and keeps reconnecting."""
    folder = tmp_path_factory.mktemp("ops-appliance")
    dead = {"id": "dead", "uri": f"rtsp://127.0.0.1:{free_port()}/cam", "reconnect": DEAD_RECONNECT}
    app = Appliance(appliance_config(folder, blob_model, [PATTERN, dead]))
    app.start()
    running = Running(app, app.metrics_port or 0)
    try:
        analyzed = wait_until(
            lambda: (metric(scrape(running.port), "appliance_stream_frames_analyzed_total", stream="pattern") or 0)
            >= 3, timeout=20)
        assert analyzed, "the test pattern was not analyzed"
        yield running
    finally:
        app.stop()
