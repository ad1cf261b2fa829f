"""A group pipeline's runtime (building, linking sources to the muxer's request pads,
per-source end of stream, bus errors), run with GStreamer's own elements standing in
for the NVIDIA ones: ``uridecodebin`` for ``nvurisrcbin`` (both add their video pad
late), ``funnel`` for ``nvstreammux`` (``sink_%u`` request pads), ``identity`` for
``nvinfer`` and ``nvtracker``."""

from __future__ import annotations

import time

from appliance.clock import SystemClock
from appliance.config.schema import SourceConfig
from appliance.events.factory import EventFactory
from appliance.media import make_clip
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.deepstream import DeepStreamStream, ElementSpec, GroupPipeline, ModelGroup, PipelineSpec
from appliance.pipeline.gst import Gst
from appliance.pipeline.sources import StreamState


def wait_for(condition, timeout: float = 20.0, poll=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_source_that_ends_ends_alone_and_buffers_flow_through_both_probes(tmp_path):
    short = make_clip(tmp_path / "short.mp4", width=320, height=180, fps=15, seconds=1)
    long = make_clip(tmp_path / "long.mp4", width=320, height=180, fps=15, seconds=6)
    sources = (SourceConfig(id="short", uri=f"file://{short}", realtime=False),
               SourceConfig(id="long", uri=f"file://{long}", realtime=False))
    group = ModelGroup("stand-in", sources, ())
    spec = PipelineSpec(
        group,
        [ElementSpec("uridecodebin", f"source-{i}", {"uri": s.uri}) for i, s in enumerate(sources)],
        [ElementSpec("funnel", "mux"), ElementSpec("identity", "infer"), ElementSpec("identity", "tracker"),
         ElementSpec("fakesink", "sink", {"sync": True})],
        "infer", "tracker")
    clock = SystemClock()
    metrics = ApplianceMetrics()
    emitted = []
    streams = [DeepStreamStream(s, EventFactory("d", "1", clock), emitted.append, clock, metrics) for s in sources]
    seen = {"infer": 0, "tracker": 0}

    def counter(name):
        def probe(pad, info, *_):
            seen[name] += 1
            for stream in streams:
                stream.frame()
            return Gst.PadProbeReturn.OK
        return probe

    pipeline = GroupPipeline(group, spec, streams, counter("infer"), counter("tracker"), clock)
    pipeline.prepare()
    pipeline.start()
    try:
        assert pipeline.running
        assert wait_for(lambda: streams[0].state is StreamState.ENDED, poll=pipeline.poll)
        assert streams[1].state is not StreamState.ENDED  # the other file still plays
        assert seen["infer"] > 0 and seen["infer"] == seen["tracker"]
        assert wait_for(lambda: streams[1].state is StreamState.ENDED, poll=pipeline.poll)
        assert seen["tracker"] >= 15 * 7 - 4  # both clips' frames went through
        assert emitted == []  # files that end are no outage
    finally:
        pipeline.stop()
    assert not pipeline.running


def test_an_error_inside_one_source_takes_down_that_stream_only(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", width=320, height=180, fps=15, seconds=4)
    sources = (SourceConfig(id="good", uri=f"file://{clip}", realtime=True, loop=True),
               SourceConfig(id="camera", uri="rtsp://127.0.0.1:9/none"))
    group = ModelGroup("stand-in", sources, ())
    spec = PipelineSpec(
        group,
        [ElementSpec("uridecodebin", "source-0", {"uri": sources[0].uri}),
         ElementSpec("uridecodebin", "source-1", {"uri": "rtsp://127.0.0.1:9/none"})],
        [ElementSpec("funnel", "mux"), ElementSpec("identity", "infer"), ElementSpec("identity", "tracker"),
         ElementSpec("fakesink", "sink", {"sync": True})],
        "infer", "tracker")
    clock = SystemClock()
    emitted = []
    streams = [DeepStreamStream(s, EventFactory("d", "1", clock), emitted.append, clock, ApplianceMetrics())
               for s in sources]

    def frames(pad, info, *_):
        streams[0].frame()
        return Gst.PadProbeReturn.OK

    pipeline = GroupPipeline(group, spec, streams, frames, lambda pad, info, *_: Gst.PadProbeReturn.OK, clock)
    pipeline.start()
    try:
        assert wait_for(lambda: streams[1].state is StreamState.WAITING, poll=pipeline.poll)
        assert [(e.kind, e.phase, e.stream_id) for e in emitted] == [("stream.down", "start", "camera")]
        assert "Could not open resource" in emitted[0].attributes["reason"]
        assert pipeline.running  # the group's pipeline is not torn down for one camera
        assert wait_for(lambda: streams[0].state is StreamState.RUNNING, poll=pipeline.poll)
    finally:
        pipeline.stop()


def test_a_shared_element_that_fails_rebuilds_the_group_with_backoff(tmp_path, caplog):
    clip = make_clip(tmp_path / "clip.mp4", width=320, height=180, fps=15, seconds=4)
    sources = (SourceConfig(id="a", uri=f"file://{clip}", realtime=True, reconnect={"initial_s": 0.5, "max_s": 2}),)
    group = ModelGroup("stand-in", sources, ())
    spec = PipelineSpec(
        group,
        [ElementSpec("uridecodebin", "source-0", {"uri": sources[0].uri})],
        [ElementSpec("funnel", "mux"), ElementSpec("identity", "infer", {"error-after": 10}),
         ElementSpec("identity", "tracker"), ElementSpec("fakesink", "sink", {"sync": True})],
        "infer", "tracker")
    clock = SystemClock()
    emitted = []
    stream = DeepStreamStream(sources[0], EventFactory("d", "1", clock), emitted.append, clock, ApplianceMetrics())
    seen = []

    def frames(pad, info, *_):
        seen.append(time.monotonic())
        stream.frame()
        return Gst.PadProbeReturn.OK

    pipeline = GroupPipeline(group, spec, [stream], frames, lambda pad, info, *_: Gst.PadProbeReturn.OK, clock)
    pipeline.start()
    try:
        assert wait_for(lambda: stream.state is StreamState.WAITING, poll=pipeline.poll)
        assert not pipeline.running  # the inference element failed: the group's pipeline is down
        assert emitted[0].phase == "start" and "(infer)" in emitted[0].attributes["reason"]
        failed_at = len(seen)
        assert wait_for(lambda: stream.reconnects >= 1 and len(seen) > failed_at, poll=pipeline.poll)
        # rebuilt, frames flow again, and it fails again after 10: the delay doubles
        assert wait_for(lambda: "rebuilding in 1.0 s" in caplog.text, poll=pipeline.poll)
        assert caplog.text.index("rebuilding in 0.5 s") < caplog.text.index("rebuilding in 1.0 s")
    finally:
        pipeline.stop()
