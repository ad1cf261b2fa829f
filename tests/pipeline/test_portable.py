"""The portable backend end to end: real GStreamer decode, real ONNX Runtime, real RTSP."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from appliance.app import Appliance
from appliance.config.schema import ApplianceConfig
from tests.support import free_port, metric, scrape


def make_config(tmp_path: Path, sources: list[dict[str, Any]], model: Path | None, **extra: Any) -> ApplianceConfig:
    data: dict[str, Any] = {
        "device": {"id": "test-device"},
        "backend": "portable",
        "sources": sources,
        "results": {"jsonl": str(tmp_path / "results.jsonl")},
        "events": {"jsonl": str(tmp_path / "events.jsonl")},
        "metrics": {"port": free_port()},
        **extra,
    }
    if model is not None:
        data["models"] = [{
            "id": "blobs", "onnx": str(model), "labels": str(model.with_suffix(".labels")),
            "input": {"width": 320, "height": 320}, "parser": "yolov8", "confidence": 0.3,
        }]
    return ApplianceConfig.model_validate(data, context={"base_dir": tmp_path})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


FAST_RECONNECT = {"initial_s": 0.5, "max_s": 2.0, "stall_timeout_s": 2.0}


def test_three_streams_file_test_pattern_and_rtsp(tmp_path, clips, rtsp_camera, blob_model):
    config = make_config(tmp_path, [
        {"id": "line-file", "uri": f"file://{clips['ball']}", "loop": True, "analyze_fps": 5},
        {"id": "pattern", "uri": "test://ball?width=640&height=480&fps=15", "analyze_fps": 5},
        {"id": "cam-rtsp", "uri": rtsp_camera.url, "analyze_fps": 5, "reconnect": FAST_RECONNECT},
    ], blob_model)
    app = Appliance(config)
    app.start()
    try:
        app.run(duration=6)
    finally:
        app.stop()
    results = read_jsonl(tmp_path / "results.jsonl")
    by_stream: dict[str, list[dict]] = {}
    for r in results:
        by_stream.setdefault(r["stream_id"], []).append(r)
    assert set(by_stream) == {"line-file", "pattern", "cam-rtsp"}
    for stream, rows in by_stream.items():
        numbers = [r["frame_number"] for r in rows]
        assert len(numbers) >= 10, (stream, len(numbers))
        assert all(b > a for a, b in zip(numbers, numbers[1:])), (stream, numbers)
        assert rows[0]["schema"] == "appliance.frame/1"
    # The ball is found, in source pixel coordinates.
    for stream, (w, h) in {"line-file": (640, 360), "pattern": (640, 480), "cam-rtsp": (640, 360)}.items():
        rows = by_stream[stream]
        assert all((r["width"], r["height"]) == (w, h) for r in rows)
        with_ball = [r for r in rows if r["detections"]]
        assert len(with_ball) >= 0.8 * len(rows), stream
        for r in with_ball:
            x1, y1, x2, y2 = r["detections"][0]["box"]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert r["detections"][0]["label"] == "bright_object"


def test_rtsp_camera_killed_goes_down_and_comes_back(tmp_path, clips, rtsp_camera, blob_model):
    config = make_config(tmp_path, [
        {"id": "pattern", "uri": "test://ball?width=640&height=480&fps=15", "analyze_fps": 5},
        {"id": "line-file", "uri": f"file://{clips['ball']}", "loop": True, "analyze_fps": 5},
        {"id": "cam", "uri": rtsp_camera.url, "analyze_fps": 5, "reconnect": FAST_RECONNECT},
    ], blob_model)
    app = Appliance(config)
    app.start()
    port = app.metrics_port
    try:
        assert wait_until(lambda: metric(scrape(port), "appliance_stream_up", stream="cam") == 1, 15)
        before = scrape(port)
        rtsp_camera.kill()
        killed_at = time.monotonic()
        assert wait_until(lambda: metric(scrape(port), "appliance_stream_up", stream="cam") == 0, 5)
        down_after = time.monotonic() - killed_at
        assert down_after <= 5
        time.sleep(3)
        during = scrape(port)
        # The other streams kept their rate while the camera was gone.
        for other in ("pattern", "line-file"):
            assert metric(during, "appliance_stream_up", stream=other) == 1
        elapsed = time.monotonic() - killed_at
        for other in ("pattern", "line-file"):
            gained = (metric(during, "appliance_stream_frames_analyzed_total", stream=other)
                      - metric(before, "appliance_stream_frames_analyzed_total", stream=other))
            assert gained >= 0.6 * 5 * elapsed, (other, gained, elapsed)
        reconnects_before = metric(during, "appliance_stream_reconnects_total", stream="cam")
        rtsp_camera.start()
        restarted_at = time.monotonic()
        assert wait_until(lambda: metric(scrape(port), "appliance_stream_up", stream="cam") == 1, 10)
        assert time.monotonic() - restarted_at <= 10
        after = scrape(port)
        assert metric(after, "appliance_stream_reconnects_total", stream="cam") > reconnects_before
        assert metric(after, "appliance_stream_reconnects_total", stream="cam") >= 1
    finally:
        app.stop()
    events = read_jsonl(tmp_path / "events.jsonl")
    phases = [(e["kind"], e["phase"]) for e in events if e["stream_id"] == "cam"]
    assert phases == [("stream.down", "start"), ("stream.down", "end")]
    assert all(e["schema"] == "appliance.event/1" and e["device_id"] == "test-device" for e in events)


def test_truncated_file_and_unserved_rtsp_fail_alone(tmp_path, clips, blob_model, caplog):
    truncated = tmp_path / "truncated.mp4"
    data = clips["ball"].read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    dead_port = free_port()
    config = make_config(tmp_path, [
        {"id": "good", "uri": "test://ball?width=640&height=480&fps=15", "analyze_fps": 5},
        {"id": "broken-file", "uri": f"file://{truncated}", "loop": True, "reconnect": FAST_RECONNECT},
        {"id": "nobody", "uri": f"rtsp://127.0.0.1:{dead_port}/cam", "reconnect": FAST_RECONNECT},
    ], blob_model)
    caplog.set_level(logging.INFO)
    app = Appliance(config)
    app.start()
    port = app.metrics_port
    bad_streams = ("broken-file", "nobody")

    def both_retried() -> bool:
        samples = scrape(port)
        return all((metric(samples, "appliance_stream_reconnects_total", stream=bad) or 0) >= 1 for bad in bad_streams)

    try:
        time.sleep(3)
        assert wait_until(both_retried, timeout=20), "the broken streams were not retried"
        samples = scrape(port)
    finally:
        app.stop()
    assert metric(samples, "appliance_stream_up", stream="good") == 1
    assert metric(samples, "appliance_stream_frames_analyzed_total", stream="good") >= 15
    for bad in bad_streams:
        assert metric(samples, "appliance_stream_up", stream=bad) == 0
        assert metric(samples, "appliance_stream_errors_total", stream=bad) >= 1
        assert metric(samples, "appliance_stream_reconnects_total", stream=bad) >= 1
        assert metric(samples, "appliance_stream_frames_analyzed_total", stream=bad) == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and bad in r.getMessage()]
        assert errors, f"no error logged for {bad}"
        assert "retrying in" in errors[0]
    events = read_jsonl(tmp_path / "events.jsonl")
    down = {e["stream_id"] for e in events if e["kind"] == "stream.down" and e["phase"] == "start"}
    assert down == {"broken-file", "nobody"}


def test_file_read_as_fast_as_possible_loses_no_frame(tmp_path, clips, blob_model):
    config = make_config(tmp_path, [
        {"id": "clip", "uri": f"file://{clips['ball']}", "realtime": False, "analyze_fps": 5},
    ], blob_model, inference={"workers": 1})
    app = Appliance(config)
    app.start()
    port = app.metrics_port
    try:
        app.run(duration=60)
        assert app.backend.finished
        samples = scrape(port)
    finally:
        app.stop()
    total = 12 * 15
    assert metric(samples, "appliance_stream_frames_decoded_total", stream="clip") == total
    results = read_jsonl(tmp_path / "results.jsonl")
    # 15 fps analyzed at 5 fps: every third frame, none dropped.
    assert len(results) == total // 3
    assert metric(samples, "appliance_stream_frames_dropped_total", stream="clip") == 0
    assert [r["frame_number"] for r in results] == sorted({r["frame_number"] for r in results})
