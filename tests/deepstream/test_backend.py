"""Backend choice, the DeepStream backend's wiring and its per-stream health."""

from __future__ import annotations

import json
import logging

import pytest

from appliance.clock import ManualClock
from appliance.config.schema import ApplianceConfig
from appliance.events.factory import EventFactory
from appliance.inference.engine_builder import Platform, plan_engines
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.backend import BackendChoice, BackendUnavailable, choose_backend, make_backend
from appliance.pipeline.deepstream import DeepStreamBackend, DeepStreamStream
from appliance.pipeline.gst import Gst
from appliance.pipeline.portable import PortableBackend
from appliance.pipeline.sources import StreamState
from tests.deepstream import pyds_double
from tests.deepstream.site import site_config

ORIN = Platform("NVIDIA Jetson Orin Nano Developer Kit", "10.3.0")


def test_auto_picks_deepstream_only_when_pyds_and_nvinfer_exist():
    assert choose_backend("auto", (True, "pyds and the nvinfer element are present")) == BackendChoice(
        "deepstream", "auto: pyds and the nvinfer element are present")
    assert choose_backend("auto", (False, "pyds is not importable")) == BackendChoice(
        "portable", "auto: pyds is not importable")
    assert choose_backend("portable", (True, "present")).name == "portable"
    with pytest.raises(BackendUnavailable, match="deepstream was requested but the nvinfer GStreamer element"):
        choose_backend("deepstream", (False, "the nvinfer GStreamer element is missing"))
    # this machine: no DeepStream
    choice = choose_backend("auto")
    assert choice.name == "portable" and choice.reason in ("auto: pyds is not importable",
                                                           "auto: the nvinfer GStreamer element is missing")


def test_auto_falls_back_to_portable_and_says_why_but_deepstream_refuses(caplog):
    config = ApplianceConfig.model_validate({"sources": [{"id": "pattern", "uri": "test://ball"}]})
    clock = ManualClock()
    parts = (lambda model: None, lambda result, image: None, lambda event: None,
             EventFactory("d", "1", clock), ApplianceMetrics(), clock)
    with caplog.at_level(logging.INFO, logger="appliance.pipeline.backend"):
        backend = make_backend(config, *parts, choice=BackendChoice("deepstream", "auto: present"))
    assert isinstance(backend, PortableBackend)
    assert "backend: portable (auto: present, but sources.0.uri: test:// sources are not read" in caplog.text
    forced = config.model_copy(update={"backend": "deepstream"})
    with pytest.raises(BackendUnavailable, match="test:// sources are not read by the deepstream backend"):
        make_backend(forced, *parts, choice=BackendChoice("deepstream", "requested in the config"))


def test_the_deepstream_backend_needs_built_engines_then_writes_its_configs(tmp_path):
    config = site_config(tmp_path)
    clock = ManualClock()
    metrics = ApplianceMetrics()
    args = (config, lambda result, image: None, lambda event: None, EventFactory("d", "1", clock), metrics, clock,
            ORIN)
    with pytest.raises(BackendUnavailable, match="no TensorRT engine .*run `appliance engines build` first"):
        DeepStreamBackend(*args, pyds=pyds_double)
    for plan in plan_engines(config, ORIN):
        plan.engine.parent.mkdir(parents=True, exist_ok=True)
        plan.engine.write_bytes(b"engine")
        plan.record_path.write_text(json.dumps(plan.spec.record()))
    if Gst.ElementFactory.find("nvurisrcbin") is None:  # this machine: the configs are written, then refused
        with pytest.raises(BackendUnavailable, match="GStreamer element 'nvurisrcbin' is missing"):
            DeepStreamBackend(*args, pyds=pyds_double)
    else:
        backend = DeepStreamBackend(*args, pyds=pyds_double)
        assert [g.group.name for g in backend.groups] == ["defects", "defects+ppe"]
        assert [s.id for s in backend.streams] == ["line-0", "line-1", "cleanroom"]
        assert backend.loaded_models == [] and not backend.finished  # nothing runs before start()
    generated = sorted(p.name for p in (tmp_path / "generated").iterdir())
    assert generated == ["defects+ppe.defects.nvinfer.txt", "defects+ppe.ppe.nvinfer.txt", "defects+ppe.tracker.yml",
                         "defects.defects.nvinfer.txt", "defects.tracker.yml"]


def test_a_stream_that_stalls_is_reported_down_and_up_again_alone(tmp_path):
    config = site_config(tmp_path)
    clock = ManualClock()
    metrics = ApplianceMetrics()
    emitted = []
    streams = [DeepStreamStream(s, EventFactory("d", "1", clock), emitted.append, clock, metrics)
               for s in config.sources[:2]]
    for stream in streams:
        stream.start()
    for _ in range(5):
        clock.advance(1.0)
        for stream in streams:
            stream.frame()
            stream.poll()
    assert [s.state for s in streams] == [StreamState.RUNNING] * 2
    assert metrics.stream_up.labels("line-0")._value.get() == 1
    clock.advance(4.0)  # line-0 stops delivering; stall timeout is 3 s
    streams[1].frame()
    for stream in streams:
        stream.poll()
    assert [s.state for s in streams] == [StreamState.WAITING, StreamState.RUNNING]
    assert [(e.kind, e.phase, e.stream_id) for e in emitted] == [("stream.down", "start", "line-0")]
    assert emitted[0].attributes["reason"] == "no frame for 4.0 s (stalled)"
    clock.advance(1.0)
    streams[0].frame()
    streams[0].poll()
    assert streams[0].state is StreamState.RUNNING and streams[0].reconnects == 1
    assert [(e.phase, e.attributes.get("reconnects")) for e in emitted] == [("start", None), ("end", 1)]
    streams[1].ended()  # a file (no loop) reached its end: only that stream ends
    assert streams[1].state is StreamState.ENDED and streams[0].state is StreamState.RUNNING
