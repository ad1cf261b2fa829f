"""Camera sources of the portable backend: one GStreamer pipeline per source.

Each pipeline decodes, limits the rate to the source's ``analyze_fps``, letterboxes
to the model input in GStreamer (videoscale add-borders, in Y'CbCr 4:4:4) and hands
the frames to the source's FrameSlot; they become RGB, exactly, as the batcher copies
them into the model input. A pipeline that errors, stalls, or (for a live source)
ends is torn down and rebuilt with capped exponential backoff; the other sources
never notice.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from appliance.clock import Clock
from appliance.config.schema import SourceConfig
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SourceImage
from appliance.metrics import ApplianceMetrics
from appliance.pipeline import planes
from appliance.pipeline.backoff import Backoff
from appliance.pipeline.frames import Frame, FrameSlot
from appliance.pipeline.gst import Gst
from appliance.pipeline.outage import StreamOutage
from appliance.types import Event

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]
RTSP_LATENCY_MS = 200
RTSP_TCP_TIMEOUT_US = 5_000_000
TEARDOWN_TIMEOUT_S = 5.0  # at shutdown
RETRY_TEARDOWN_WAIT_S = 1.0  # before a rebuild: the supervisor serves the other streams too


class StreamState(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    WAITING = "waiting"  # failed; rebuilt when its backoff delay is over
    ENDED = "ended"  # a file that played to its end without loop
    STOPPED = "stopped"


@dataclass(frozen=True)
class InputSize:
    width: int
    height: int


def describe_pipeline(source: SourceConfig, size: InputSize) -> str:
    """The gst-launch description of a source's pipeline."""
    parts = urlsplit(source.uri)
    scheme = source.scheme
    if scheme == "test":
        params = dict(parse_qsl(parts.query))
        pattern = parts.netloc or parts.path.strip("/") or "smpte"
        head = (
            f"videotestsrc is-live=true pattern={pattern} ! "
            f"video/x-raw,width={params.get('width', 640)},height={params.get('height', 480)},"
            f"framerate={params.get('fps', 30)}/1"
        )
    elif scheme == "v4l2":
        head = f'v4l2src device="{parts.path}" ! decodebin'
    else:  # file, rtsp, rtsps
        head = f'uridecodebin uri="{source.uri}" caps="video/x-raw(ANY)" expose-all-streams=false name=decode'
    max_rate = max(1, math.ceil(source.analyze_fps))
    sync = "true" if scheme == "file" and source.realtime else "false"
    if not source.is_live and not source.realtime:
        # Read as fast as possible: let decoding run ahead while a frame waits for the batcher.
        head += " ! queue max-size-buffers=4 max-size-bytes=0 max-size-time=0"
    return (
        f"{head} ! videorate drop-only=true max-rate={max_rate} name=rate ! {letterbox_chain(size)}"
        f" ! appsink name=sink emit-signals=true max-buffers=1 drop=false sync={sync} qos=false"
    )


def letterbox_chain(size: InputSize) -> str:
    """The elements that turn a decoded frame into a model input, for ``SamplePixels`` to read.

    Scaled in 4:4:4: on a 4:2:0 frame videoscale puts the picture on an even row (8 rows of border above
    a 640x360 frame letterboxed to 480x288, where Letterbox and the models' training have 9), so the
    models would see it a row higher than their boxes are mapped back from. Kept in Y'CbCr: RGB is made
    from it exactly (``planes``), where videoconvert's own RGB is a few levels off, green most.
    """
    return (
        "videoconvert ! video/x-raw,format=Y444 ! videoscale add-borders=true name=scale"
        f" ! video/x-raw,format=Y444,width={size.width},height={size.height},pixel-aspect-ratio=1/1"
    )


class SamplePixels:
    """A decoded, letterboxed GStreamer sample (``letterbox_chain``'s); converted to RGB when copied."""

    __slots__ = ("_sample",)

    def __init__(self, sample: Gst.Sample) -> None:
        self._sample = sample

    def copy_into(self, out: np.ndarray) -> None:
        caps = self._sample.get_caps().to_string()
        layout = planes.layout_of(caps)
        if layout is None:
            raise RuntimeError(f"cannot read a model input of caps {caps}")
        planes.read_frame(self._sample.get_buffer(), layout, out)


class FrameTimes:
    """What /readyz reads of a stream, on either backend: how old its last frame is."""

    config: SourceConfig
    _clock: Clock
    _last_frame_at: float | None

    @property
    def stall_timeout_s(self) -> float:
        return self.config.reconnect.stall_timeout_s

    def last_frame_age(self) -> float | None:
        """Seconds since the stream's last frame (None before its first, or since it went down)."""
        last = self._last_frame_at
        return None if last is None else self._clock.monotonic() - last


class CameraStream(FrameTimes):
    """One source: its pipeline, its health, and the rebuilding of it."""

    def __init__(
        self,
        config: SourceConfig,
        size: InputSize,
        slot: FrameSlot,
        metrics: ApplianceMetrics,
        events: EventFactory,
        emit: EventSink,
        clock: Clock,
    ) -> None:
        self.config = config
        self.id = config.id
        self.size = size
        self.slot = slot
        self._metrics = metrics
        self._clock = clock
        self._backoff = Backoff(config.reconnect.initial_s, config.reconnect.max_s)
        self._pipeline: Gst.Pipeline | None = None
        self._rate: Gst.Element | None = None
        self._scale_pad: Gst.Pad | None = None
        self.state = StreamState.STOPPED
        self.reason = ""
        self.reconnects = 0
        self._retry_at = 0.0
        self._started_at = 0.0
        self._last_frame_at: float | None = None
        self._frames_before = 0  # decoded by earlier pipelines of this stream
        self._count_lock = threading.Lock()
        self._count_base = 0
        self._last_count = 0
        self._decoded_reported = 0
        self._dropped_reported = 0
        self._last_pts = -1
        self._next_due_pts = 0
        self._period_ns = int(1e9 / config.analyze_fps)
        self._outage = StreamOutage(self.id, events, emit, clock)
        self._source_image: SourceImage | None = None

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.slot.reopen()
        self._started_at = self._clock.monotonic()
        self._last_frame_at = None
        self.state = StreamState.STARTING
        try:
            pipeline = Gst.parse_launch(describe_pipeline(self.config, self.size))
        except Exception as exc:  # GLib.Error: an element is missing or the description is bad
            self._fail(f"cannot build pipeline: {exc}")
            return
        self._pipeline = pipeline
        self._rate = pipeline.get_by_name("rate")
        self._scale_pad = pipeline.get_by_name("scale").get_static_pad("sink")
        decode = pipeline.get_by_name("decode")
        if decode is not None:
            decode.connect("source-setup", _configure_network_source)
        pipeline.get_by_name("sink").connect("new-sample", self._on_sample)
        self._rate.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._keep_source_frame)
        self._last_pts = -1
        self._next_due_pts = 0
        if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            message = self._pop_error()
            self._fail(message or "pipeline refused to start")

    def stop(self) -> None:
        self._teardown()
        self.state = StreamState.STOPPED
        self._metrics.stream_up.labels(self.id).set(0)

    def _teardown(self, keep_waiting_frame: bool = False, wait_s: float = TEARDOWN_TIMEOUT_S) -> None:
        if not keep_waiting_frame:
            self.slot.close()  # drops a stale frame, unblocks a streaming thread waiting in put()
        if self._pipeline is not None:
            self._frames_before += self._decoded_in_pipeline()
            _stop_pipeline(self._pipeline, self.id, wait_s)
            self._count_base = self._last_count = 0
        self._pipeline = None
        self._rate = None
        self._scale_pad = None

    # -- the streaming thread -------------------------------------------------------------

    def _keep_source_frame(self, pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        """Holds (a reference to, no copy of) the full-resolution frame that is being
        letterboxed, so that events about it can carry a snapshot."""
        self._source_image = SourceImage(info.get_buffer(), pad.get_current_caps())
        return Gst.PadProbeReturn.OK

    def _on_sample(self, sink: Gst.Element) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        if sample is None:
            return Gst.FlowReturn.OK
        now = self._clock.monotonic()
        self._last_frame_at = now
        pts = sample.get_buffer().pts
        pts = 0 if pts == Gst.CLOCK_TIME_NONE else int(pts)
        if pts < self._last_pts:  # looped or restarted: timestamps begin again
            self._next_due_pts = 0
        self._last_pts = pts
        if pts + self._period_ns // 4 < self._next_due_pts:
            return Gst.FlowReturn.OK  # finer rate limit than videorate's whole frames per second
        self._next_due_pts = max(self._next_due_pts + self._period_ns, pts + self._period_ns // 2)
        width, height = self._source_size()
        frame = Frame(
            stream_id=self.id,
            frame_number=self._frames_before + self._decoded_in_pipeline(),
            pts_ns=pts,
            wall_time=self._clock.wall(),
            arrived=now,
            width=width,
            height=height,
            pixels=SamplePixels(sample),
            image=self._source_image,
        )
        self.slot.put(frame)
        return Gst.FlowReturn.OK

    def _source_size(self) -> tuple[int, int]:
        pad = self._scale_pad
        caps = pad.get_current_caps() if pad is not None else None
        if caps is None:
            return self.size.width, self.size.height
        structure = caps.get_structure(0)
        return structure.get_value("width"), structure.get_value("height")

    def _decoded_in_pipeline(self) -> int:
        """Frames into videorate since this pipeline was built (kept counting across loops)."""
        rate = self._rate
        if rate is None:
            return 0
        with self._count_lock:
            count = int(rate.get_property("in"))
            if count < self._last_count:  # videorate restarted its count after a flushing seek
                self._count_base += self._last_count
            self._last_count = count
            return self._count_base + count

    # -- supervision (one thread polls every stream) ------------------------------------------

    def poll(self) -> None:
        now = self._clock.monotonic()
        if self._pipeline is not None:
            self._drain_bus()
        if self.state is StreamState.WAITING and now >= self._retry_at:
            self.reconnects += 1
            self._metrics.reconnects.labels(self.id).inc()
            log.info("stream %s: reconnecting (attempt %d)", self.id, self._backoff.attempts)
            self.start()
        elif self.state in (StreamState.STARTING, StreamState.RUNNING):
            self._check_progress(now)
        self._report(now)

    def _check_progress(self, now: float) -> None:
        last = self._last_frame_at
        timeout = self.config.reconnect.stall_timeout_s
        if last is None:
            if now - self._started_at > max(timeout, 10.0):
                self._fail(f"no frame within {max(timeout, 10.0):.0f} s of start")
            return
        if now - last > timeout:
            self._fail(f"no frame for {now - last:.1f} s (stalled)")
            return
        if self.state is StreamState.STARTING:
            self.state = StreamState.RUNNING
            self._backoff.reset()
            log.info("stream %s: running", self.id)
            self._outage.end(self.reconnects)

    def _drain_bus(self) -> None:
        bus = self._pipeline.get_bus()
        while self._pipeline is not None:
            message = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.WARNING)
            if message is None:
                return
            if message.type == Gst.MessageType.ERROR:
                err, debug = message.parse_error()
                self._fail(f"{err.message} ({message.src.get_name()})", debug)
            elif message.type == Gst.MessageType.WARNING:
                warn, _ = message.parse_warning()
                log.warning("stream %s: %s", self.id, warn.message)
            elif message.type == Gst.MessageType.EOS:
                self._on_end_of_stream()

    def _on_end_of_stream(self) -> None:
        if self._last_frame_at is None:  # looping or waiting on a file with no frame in it helps nobody
            self._fail("stream ended before its first frame")
        elif self.config.scheme == "file" and self.config.loop:
            flags = Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT
            if self._pipeline.seek_simple(Gst.Format.TIME, flags, 0):
                return
            self._fail("could not seek to the start to loop")
        elif self.config.is_live:
            self._fail("stream ended")
        else:
            log.info("stream %s: end of file", self.id)
            self._teardown(keep_waiting_frame=True)  # the last frame is still analyzed
            self.state = StreamState.ENDED

    def _pop_error(self) -> str:
        bus = self._pipeline.get_bus() if self._pipeline is not None else None
        message = bus.pop_filtered(Gst.MessageType.ERROR) if bus is not None else None
        return message.parse_error()[0].message if message is not None else ""

    def _fail(self, reason: str, debug: str | None = None) -> None:
        now = self._clock.monotonic()
        was_running = self.state is StreamState.RUNNING
        self.state = StreamState.WAITING
        self._metrics.stream_up.labels(self.id).set(0)  # before the teardown, which may take a while
        self._teardown(wait_s=RETRY_TEARDOWN_WAIT_S)
        delay = self._backoff.next_delay()
        self.reason = reason
        self._retry_at = now + delay
        self._metrics.stream_errors.labels(self.id).inc()
        log.error("stream %s: %s; retrying in %.1f s", self.id, reason, delay)
        if debug:
            log.debug("stream %s: %s", self.id, debug)
        self._outage.begin(reason, was_running)

    def _report(self, now: float) -> None:
        last = self._last_frame_at
        up = (
            self.state is StreamState.RUNNING
            and last is not None
            and now - last <= self.config.reconnect.stall_timeout_s
        )
        labels = self.id
        self._metrics.stream_up.labels(labels).set(1 if up else 0)
        decoded = self._frames_before + self._decoded_in_pipeline()
        if decoded > self._decoded_reported:
            self._metrics.frames_decoded.labels(labels).inc(decoded - self._decoded_reported)
            self._decoded_reported = decoded
            self._metrics.last_frame.labels(labels).set(self._clock.wall() - (now - (last or now)))
        if self.slot.dropped > self._dropped_reported:
            self._metrics.frames_dropped.labels(labels).inc(self.slot.dropped - self._dropped_reported)
            self._dropped_reported = self.slot.dropped


def _stop_pipeline(pipeline: Gst.Pipeline, stream_id: str, timeout_s: float = TEARDOWN_TIMEOUT_S) -> None:
    """Sets a pipeline to NULL without letting a stuck element (an RTSP session that
    does not close) hold up the supervisor or the shutdown: after ``timeout_s`` the
    pipeline is left to finish on its own and the caller goes on."""
    done = threading.Event()

    def stop() -> None:
        pipeline.set_state(Gst.State.NULL)
        pipeline.get_bus().set_flushing(True)
        done.set()

    threading.Thread(target=stop, name=f"teardown-{stream_id}", daemon=True).start()
    if not done.wait(timeout_s):
        log.warning("stream %s: pipeline did not stop within %.0f s; left to finish in the background",
                    stream_id, timeout_s)


def _configure_network_source(_decodebin: Gst.Element, source: Gst.Element) -> None:
    """Settings for rtspsrc inside uridecodebin: TCP, bounded latency, fast failure."""
    factory = source.get_factory()
    if factory is None or factory.get_name() != "rtspsrc":
        return
    source.set_property("latency", RTSP_LATENCY_MS)
    source.set_property("tcp-timeout", RTSP_TCP_TIMEOUT_US)
    Gst.util_set_object_arg(source, "protocols", "tcp")
