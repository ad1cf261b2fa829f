"""The DeepStream backend: one GPU pipeline per model group.

Sources that are analyzed with the same models form a group, and each group is one
pipeline, described element by element (:func:`describe_group`) before it is built
(:func:`build_pipeline`)::

    nvurisrcbin (per source; file-loop, rtsp-reconnect-interval) ─┐
    nvurisrcbin ───────────────────────────────────────────────────┴─► nvstreammux (batch = sources)
      ─► nvinfer (one per model, generated config, raw tensors) ─► [DetectionProbe]
      ─► nvtracker (generated config) ─► [TrackProbe] ─► fakesink sync=false
         or, with a preview: ─► nvmultistreamtiler ─► nvvideoconvert ─► nvdsosd ─► nvvideoconvert
                             ─► x264enc | nvv4l2h264enc ─► h264parse ─► matroskamux ─► filesink

The probes (``ds_probe``) turn the batch metadata into the shared ``FrameResult``
and call the same result and event callbacks as the portable backend, so the
analytics, events and metrics downstream do not change.

Failures stay local where DeepStream allows it: ``nvurisrcbin`` reconnects RTSP
cameras itself (``rtsp-reconnect-interval``) and loops files; a source's end of
stream is caught on its own pad, before the muxer, and ends that stream only; a
stream that stops delivering frames is reported (``stream.down``) while the others
go on. An error of a shared element (muxer, inference, tracker) stops its group's
pipeline, which is rebuilt with backoff; the other groups keep running.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.clock import Clock
from appliance.config.nvidia import DeepStreamConfig
from appliance.config.schema import ApplianceConfig, ModelConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.inference.engine_builder import EnginePlan, Platform, plan_engine
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.backend import BackendUnavailable
from appliance.pipeline.backoff import Backoff
from appliance.pipeline.ds_probe import DetectionProbe, LabelTable, ModelOutputs, ResultSink, TrackProbe
from appliance.pipeline.nvconfig import GroupFiles, InferUnit, tracks_by_looks, write_group_configs
from appliance.pipeline.outage import StreamOutage
from appliance.pipeline.sources import EventSink, FrameTimes, StreamState

log = logging.getLogger(__name__)

DEEPSTREAM_SCHEMES = ("file", "rtsp", "rtsps")
POLL_INTERVAL_S = 0.1
TEARDOWN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ModelGroup:
    """Sources analyzed with the same models: one pipeline."""

    name: str
    sources: tuple[SourceConfig, ...]
    models: tuple[ModelConfig, ...]


def model_groups(config: ApplianceConfig) -> list[ModelGroup]:
    groups: dict[tuple[str, ...], list[SourceConfig]] = {}
    for source in config.sources:
        groups.setdefault(tuple(m.id for m in config.models_for(source)), []).append(source)
    by_id = {m.id: m for m in config.models}
    return [
        ModelGroup("+".join(ids) if ids else "no-model", tuple(sources), tuple(by_id[i] for i in ids))
        for ids, sources in groups.items()
    ]


def check_sources(config: ApplianceConfig) -> None:
    """``nvurisrcbin`` reads files and RTSP; other sources need the portable backend."""
    for index, source in enumerate(config.sources):
        if source.scheme not in DEEPSTREAM_SCHEMES:
            raise BackendUnavailable(
                f"sources.{index}.uri: {source.scheme}:// sources are not read by the deepstream backend "
                f"(nvurisrcbin: {', '.join(s + '://' for s in DEEPSTREAM_SCHEMES)}); use backend: portable"
            )


# -- description -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ElementSpec:
    factory: str
    name: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineSpec:
    group: ModelGroup
    sources: list[ElementSpec]  # one per source, in the order of the muxer's sink pads
    chain: list[ElementSpec]  # from the muxer to the sink, linked in this order
    detection_probe_after: str  # element whose src pad gets the DetectionProbe
    track_probe_after: str

    def elements(self) -> list[ElementSpec]:
        return [*self.sources, *self.chain]


def describe_group(group: ModelGroup, settings: DeepStreamConfig, files: GroupFiles) -> PipelineSpec:
    sources = []
    for index, source in enumerate(group.sources):
        props: dict[str, Any] = {"uri": source.uri, "gpu-id": settings.gpu_id}
        if source.scheme == "file":
            props["file-loop"] = bool(source.loop)
        else:
            props["rtsp-reconnect-interval"] = settings.rtsp_reconnect_interval_s
        sources.append(ElementSpec("nvurisrcbin", f"source-{index}", props))
    mux = settings.muxer
    chain = [ElementSpec("nvstreammux", "mux", {
        "batch-size": len(group.sources),
        "width": mux.width,
        "height": mux.height,
        "batched-push-timeout": mux.batched_push_timeout_us,
        "live-source": any(s.is_live for s in group.sources),
    })]
    chain += [ElementSpec("nvinfer", f"infer-{m.id}", {"config-file-path": str(files.nvinfer[m.id])})
              for m in group.models]
    detection_after = chain[-1].name
    tracker = settings.tracker
    chain.append(ElementSpec("nvtracker", "tracker", {
        "tracker-width": tracker.width,
        "tracker-height": tracker.height,
        "gpu-id": settings.gpu_id,
        "ll-lib-file": str(tracker.ll_lib_file),
        "ll-config-file": str(files.tracker),
    }))
    chain += _preview(group, settings) if settings.preview.enabled else [
        ElementSpec("fakesink", "sink", {"sync": False, "enable-last-sample": False, "qos": False})]
    return PipelineSpec(group, sources, chain, detection_after, "tracker")


def _preview(group: ModelGroup, settings: DeepStreamConfig) -> list[ElementSpec]:
    preview = settings.preview
    count = len(group.sources)
    columns = math.ceil(math.sqrt(count))
    rows = -(-count // columns)
    hardware = preview.encoder == "nvv4l2h264enc"
    caps = "video/x-raw(memory:NVMM),format=I420" if hardware else "video/x-raw,format=I420"
    encoder = (ElementSpec("nvv4l2h264enc", "encoder", {"bitrate": preview.bitrate_kbps * 1000}) if hardware
               else ElementSpec("x264enc", "encoder", {"bitrate": preview.bitrate_kbps, "tune": "zerolatency",
                                                        "speed-preset": "ultrafast"}))
    location = preview.file.with_name(f"{preview.file.stem}.{group.name}{preview.file.suffix}")
    return [
        ElementSpec("nvmultistreamtiler", "tiler", {"rows": rows, "columns": columns, "width": preview.width,
                                                    "height": preview.height}),
        ElementSpec("nvvideoconvert", "osd-convert"),
        ElementSpec("nvdsosd", "osd"),
        ElementSpec("nvvideoconvert", "encode-convert"),
        ElementSpec("capsfilter", "encode-caps", {"caps": caps}),
        encoder,
        ElementSpec("h264parse", "parse"),
        ElementSpec("matroskamux", "container"),
        ElementSpec("filesink", "sink", {"location": str(location), "sync": False}),
    ]


# -- building --------------------------------------------------------------------------------


class PipelineBuildError(BackendUnavailable):
    """An element or a property the pipeline needs is missing on this machine."""


def make_element(spec: ElementSpec) -> Any:
    """The element with its properties set; a missing element or property is refused by name."""
    from appliance.pipeline.gst import Gst

    element = Gst.ElementFactory.make(spec.factory, spec.name)
    if element is None:
        raise PipelineBuildError(f"GStreamer element {spec.factory!r} is missing (is DeepStream installed?)")
    for key, value in spec.properties.items():
        pspec = element.find_property(key)
        if pspec is None:
            raise PipelineBuildError(f"element {spec.factory!r} ({spec.name}) has no property {key!r}")
        if pspec.value_type == Gst.Caps.__gtype__:
            element.set_property(key, Gst.Caps.from_string(value))
        elif isinstance(value, str) and pspec.value_type.name != "gchararray":  # enums and flags by nick
            Gst.util_set_object_arg(element, key, value)
        else:
            element.set_property(key, value)
    return element


def build_pipeline(spec: PipelineSpec) -> tuple[Any, dict[str, Any]]:
    """A ``Gst.Pipeline`` of ``spec`` and its elements by name; sources are linked to the
    muxer's ``sink_%u`` request pads when their video pad appears."""
    from appliance.pipeline.gst import Gst

    pipeline = Gst.Pipeline.new(f"group-{spec.group.name}")
    elements = {s.name: make_element(s) for s in spec.elements()}
    for element in elements.values():
        pipeline.add(element)
    chain = [elements[s.name] for s in spec.chain]
    for upstream, downstream in zip(chain, chain[1:]):
        if not upstream.link(downstream):
            raise PipelineBuildError(f"cannot link {upstream.get_name()} to {downstream.get_name()}")
    mux = elements[spec.chain[0].name]
    for index, source in enumerate(spec.sources):
        elements[source.name].connect("pad-added", _link_source, mux, index)
    return pipeline, elements


def _link_source(_source: Any, pad: Any, mux: Any, index: int) -> None:
    caps = pad.get_current_caps() or pad.query_caps(None)
    if caps is None or caps.is_empty() or not caps.get_structure(0).get_name().startswith("video"):
        return
    sink = mux.request_pad_simple(f"sink_{index}")
    if sink is None or pad.link(sink) != 0:  # Gst.PadLinkReturn.OK
        log.error("source %d: cannot link to the muxer", index)


# -- running ---------------------------------------------------------------------------------


class DeepStreamStream(FrameTimes):
    """One source's health, as the console summary and the metrics show it."""

    def __init__(self, source: SourceConfig, events: EventFactory, emit: EventSink, clock: Clock,
                 metrics: ApplianceMetrics) -> None:
        self.config = source
        self.id = source.id
        self.state = StreamState.STOPPED
        self.reason = ""
        self.reconnects = 0
        self._clock = clock
        self._metrics = metrics
        self._started_at = 0.0
        self._last_frame_at: float | None = None
        self._outage = StreamOutage(self.id, events, emit, clock)

    def start(self) -> None:
        self.state = StreamState.STARTING
        self._started_at = self._clock.monotonic()
        self._last_frame_at = None

    def frame(self) -> None:
        """Called by the track probe for each analyzed frame of this stream."""
        self._last_frame_at = self._clock.monotonic()

    def ended(self) -> None:
        if self.config.is_live:
            self.down("stream ended")
        else:
            log.info("stream %s: end of file", self.id)
            self.state = StreamState.ENDED

    def down(self, reason: str) -> None:
        was_running = self.state is StreamState.RUNNING
        self.state = StreamState.WAITING
        self.reason = reason
        self._last_frame_at = None  # only frames that come after this bring it back
        self._metrics.stream_up.labels(self.id).set(0)
        self._metrics.stream_errors.labels(self.id).inc()
        log.error("stream %s: %s", self.id, reason)
        self._outage.begin(reason, was_running)

    def poll(self) -> None:
        if self.state in (StreamState.ENDED, StreamState.STOPPED):
            return
        now = self._clock.monotonic()
        timeout = self.config.reconnect.stall_timeout_s
        last = self._last_frame_at
        if last is not None and now - last <= timeout:
            if self.state is not StreamState.RUNNING:
                if self.state is StreamState.WAITING:
                    self.reconnects += 1
                    self._metrics.reconnects.labels(self.id).inc()
                self.state = StreamState.RUNNING
                self._metrics.stream_up.labels(self.id).set(1)
                self._outage.end(self.reconnects)
            self._metrics.last_frame.labels(self.id).set(self._clock.wall() - (now - last))
            return
        if self.state is StreamState.RUNNING:
            self.down(f"no frame for {now - (last or now):.1f} s (stalled)")
        elif self.state is StreamState.STARTING and now - self._started_at > max(timeout, 10.0):
            self.down(f"no frame within {max(timeout, 10.0):.0f} s of start")


class GroupPipeline:
    """One model group's pipeline: built, watched, rebuilt with backoff after a shared failure."""

    def __init__(self, group: ModelGroup, spec: PipelineSpec, streams: list[DeepStreamStream],
                 detect: DetectionProbe, track: TrackProbe, clock: Clock) -> None:
        self.group = group
        self.spec = spec
        self.streams = streams
        self._detect = detect
        self._track = track
        self._clock = clock
        first = streams[0].config.reconnect if streams else None
        self._backoff = Backoff(first.initial_s if first else 0.5, first.max_s if first else 10.0)
        self._pipeline: Any = None
        self._prepared: tuple[Any, dict[str, Any]] | None = None
        self._sources: dict[str, DeepStreamStream] = {}
        self._retry_at: float | None = None
        self._started_at = 0.0

    def prepare(self) -> None:
        """Builds the pipeline (not started), so a missing element or property fails at
        start-up, where ``auto`` can still fall back to the portable backend."""
        self._prepared = build_pipeline(self.spec)

    def start(self) -> None:
        from appliance.pipeline.gst import Gst

        pipeline, elements = self._prepared or build_pipeline(self.spec)
        self._prepared = None
        self._started_at = self._clock.monotonic()
        elements[self.spec.detection_probe_after].get_static_pad("src").add_probe(
            Gst.PadProbeType.BUFFER, self._detect)
        elements[self.spec.track_probe_after].get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._track)
        self._sources = {}
        for source_spec, stream in zip(self.spec.sources, self.streams, strict=True):
            element = elements[source_spec.name]
            self._sources[source_spec.name] = stream
            element.connect("pad-added", self._watch_end, stream)
            stream.start()
        self._pipeline = pipeline
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            self._fail("the pipeline refused to start")

    @property
    def running(self) -> bool:
        return self._pipeline is not None

    def _watch_end(self, _source: Any, pad: Any, stream: DeepStreamStream) -> None:
        """A source's own end of stream, seen on its pad before the muxer."""
        from appliance.pipeline.gst import Gst

        def on_event(_pad: Any, info: Any) -> Any:
            event = info.get_event()
            if event is not None and event.type == Gst.EventType.EOS:
                stream.ended()
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)

    def poll(self) -> None:
        from appliance.pipeline.gst import Gst

        now = self._clock.monotonic()
        if self._pipeline is None:
            if self._retry_at is not None and now >= self._retry_at:
                self._retry_at = None
                for stream in self.streams:
                    stream.reconnects += 1
                log.info("group %s: rebuilding its pipeline", self.group.name)
                self.start()
            return
        bus = self._pipeline.get_bus()
        while self._pipeline is not None:
            message = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.WARNING | Gst.MessageType.EOS)
            if message is None:
                break
            if message.type == Gst.MessageType.ERROR:
                error, debug = message.parse_error()
                self._on_error(message.src, error.message, debug)
            elif message.type == Gst.MessageType.WARNING:
                log.warning("group %s: %s", self.group.name, message.parse_warning()[0].message)
            else:
                log.info("group %s: every source ended", self.group.name)
        if self._pipeline is None:  # it failed just now
            return
        for stream in self.streams:
            stream.poll()
        stable = now - self._started_at >= self._backoff.maximum
        if stable and any(s.state is StreamState.RUNNING for s in self.streams):
            self._backoff.reset()  # it has worked for a while: the next failure starts from the short delay

    def _on_error(self, origin: Any, message: str, debug: str | None) -> None:
        source = self._source_of(origin)
        if source is not None:  # a camera or a file: that stream only
            source.down(f"{message} ({origin.get_name()})")
            log.debug("%s", debug)
            return
        self._fail(f"{message} ({origin.get_name() if origin is not None else '?'})")

    def _source_of(self, origin: Any) -> DeepStreamStream | None:
        element = origin
        while element is not None:
            stream = self._sources.get(element.get_name())
            if stream is not None and element.get_parent() is self._pipeline:
                return stream
            element = element.get_parent()
        return None

    def _fail(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        log.error("group %s: %s; rebuilding in %.1f s", self.group.name, reason, delay)
        for stream in self.streams:
            stream.down(reason)
        self.stop()
        self._retry_at = self._clock.monotonic() + delay

    def stop(self) -> None:
        from appliance.pipeline.gst import Gst

        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            done = threading.Event()
            threading.Thread(target=lambda: (pipeline.set_state(Gst.State.NULL), done.set()),
                             name=f"teardown-{self.group.name}", daemon=True).start()
            if not done.wait(TEARDOWN_TIMEOUT_S):
                log.warning("group %s: pipeline did not stop within %.0f s", self.group.name, TEARDOWN_TIMEOUT_S)


def import_pyds() -> Any:
    try:
        import pyds
    except ImportError as exc:
        raise BackendUnavailable(f"the deepstream backend needs DeepStream's pyds ({exc})") from None
    return pyds


class DeepStreamBackend:
    name = "deepstream"
    tracks_objects = True  # nvtracker's ids fill FrameResult.tracks; the analytics keep them

    def __init__(
        self,
        config: ApplianceConfig,
        on_result: ResultSink,
        on_event: EventSink,
        events: EventFactory,
        metrics: ApplianceMetrics,
        clock: Clock,
        platform: Platform,
        pyds: Any = None,
    ) -> None:
        check_sources(config)
        self._pyds = pyds or import_pyds()
        self._clock = clock
        self._stopping = threading.Event()
        self.streams: list[DeepStreamStream] = []
        self.groups: list[GroupPipeline] = []
        settings = config.deepstream
        for source in config.sources:
            metrics.declare_stream(source.id)
        for model in config.models:
            metrics.declare_model(model.id)
        for group in model_groups(config):
            plans = {m.id: plan_engine(config, m, platform) for m in group.models}
            missing = [p for p in plans.values() if not p.engine.is_file()]
            if missing:
                raise BackendUnavailable(
                    f"no TensorRT engine {missing[0].engine} for model {missing[0].spec.model!r}; "
                    "run `appliance engines build` first")
            self.groups.append(self._group(config, group, plans, settings, on_result, on_event, events, metrics))
        for pipeline in self.groups:
            pipeline.prepare()
        self._supervisor = threading.Thread(target=self._supervise, name="deepstream-supervisor", daemon=True)

    def _group(self, config: ApplianceConfig, group: ModelGroup, plans: dict[str, EnginePlan],
               settings: DeepStreamConfig, on_result: ResultSink, on_event: EventSink, events: EventFactory,
               metrics: ApplianceMetrics) -> GroupPipeline:
        units = [InferUnit(m, uid, plans[m.id]) for uid, m in enumerate(group.models, start=1)]
        files = write_group_configs(Path(settings.config_dir), group.name, units, len(group.sources), settings,
                                    visual=tracks_by_looks(group.sources))
        streams = [DeepStreamStream(s, events, on_event, self._clock, metrics) for s in group.sources]
        self.streams.extend(streams)
        by_id = {s.id: s for s in streams}
        stream_ids = [s.id for s in group.sources]
        labels = LabelTable(group.models)
        pending: OrderedDict = OrderedDict()
        muxer = (settings.muxer.width, settings.muxer.height)
        outputs = [ModelOutputs.create(u.model, u.unique_id, len(group.sources)) for u in units]
        detect = DetectionProbe(self._pyds, outputs, labels, muxer, stream_ids, pending, metrics)
        track = TrackProbe(self._pyds, labels, [u.unique_id for u in units], muxer, stream_ids, pending, on_result,
                           metrics, self._clock, on_frame=lambda stream_id: by_id[stream_id].frame())
        return GroupPipeline(group, describe_group(group, settings, files), streams, detect, track, self._clock)

    def start(self) -> None:
        for group in self.groups:
            group.start()
        self._supervisor.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=5)
        for group in self.groups:
            group.stop()
        for stream in self.streams:
            stream.state = StreamState.STOPPED

    @property
    def finished(self) -> bool:
        return all(s.state is StreamState.ENDED for s in self.streams)

    @property
    def loaded_models(self) -> list[str]:
        """Models whose nvinfer runs (the engines load with the pipelines)."""
        if self._stopping.is_set():
            return []
        return [m.id for g in self.groups if g.running for m in g.group.models]

    def _supervise(self) -> None:
        while not self._stopping.wait(POLL_INTERVAL_S):
            for group in self.groups:
                try:
                    group.poll()
                except Exception:
                    log.exception("group %s: supervision failed", group.group.name)
