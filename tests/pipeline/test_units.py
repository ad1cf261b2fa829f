"""Backoff, frame slots, pipeline descriptions and the batcher, without GStreamer running."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from appliance.clock import ManualClock
from appliance.config.schema import ApplianceConfig, ModelConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.inference.engine import TensorSpec
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.backoff import Backoff
from appliance.pipeline.batching import Batcher
from appliance.pipeline.frames import ArrayPixels, Frame, FrameSlot
from appliance.pipeline.portable import input_size_for
from appliance.pipeline.sources import CameraStream, InputSize, StreamState, describe_pipeline, letterbox_chain
from appliance.types import FrameResult


def test_backoff_doubles_up_to_its_cap_and_resets():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def frame(stream: str, number: int, image: np.ndarray | None = None, width: int = 640, height: int = 480) -> Frame:
    pixels = ArrayPixels(image if image is not None else np.zeros((32, 32, 3), np.uint8))
    return Frame(stream, number, number * 1000, 0.0, 0.0, width, height, pixels)


def test_live_slot_keeps_newest_frame_and_counts_stale_ones():
    ready = threading.Condition()
    slot = FrameSlot("cam", wait_when_full=False, ready=ready)
    for n in range(5):
        slot.put(frame("cam", n))
    with ready:
        taken = slot.take()
    assert taken is not None and taken.frame_number == 4
    assert slot.dropped == 4
    with ready:
        assert slot.take() is None


def test_file_slot_makes_the_decoder_wait_instead_of_dropping():
    ready = threading.Condition()
    slot = FrameSlot("file", wait_when_full=True, ready=ready)
    slot.put(frame("file", 0))
    second_done = threading.Event()
    threading.Thread(target=lambda: (slot.put(frame("file", 1)), second_done.set()), daemon=True).start()
    assert not second_done.wait(0.3)  # blocked: the first frame was not taken yet
    with ready:
        assert slot.take().frame_number == 0
    assert second_done.wait(2)
    with ready:
        assert slot.take().frame_number == 1
    assert slot.dropped == 0


def test_closing_a_slot_releases_a_waiting_decoder():
    ready = threading.Condition()
    slot = FrameSlot("file", wait_when_full=True, ready=ready)
    slot.put(frame("file", 0))
    done = threading.Event()
    threading.Thread(target=lambda: (slot.put(frame("file", 1)), done.set()), daemon=True).start()
    time.sleep(0.1)
    slot.close()
    assert done.wait(2)
    assert not slot.has_frame


def source(uri: str, **kw) -> SourceConfig:
    return SourceConfig.model_validate({"id": "s", "uri": uri, **kw})


def test_pipeline_descriptions_letterbox_in_gstreamer():
    size = InputSize(320, 320)
    test = describe_pipeline(source("test://ball?width=800&height=600&fps=25", analyze_fps=5), size)
    assert test.startswith("videotestsrc is-live=true pattern=ball ! video/x-raw,width=800,height=600,framerate=25/1")
    assert "videorate drop-only=true max-rate=5" in test
    assert "videoscale add-borders=true" in test
    assert "format=Y444,width=320,height=320,pixel-aspect-ratio=1/1" in test
    assert "sync=false" in test
    rtsp = describe_pipeline(source("rtsp://10.0.0.5:554/stream1", analyze_fps=2.5), size)
    assert rtsp.startswith('uridecodebin uri="rtsp://10.0.0.5:554/stream1"')
    assert "max-rate=3" in rtsp  # whole frames per second; the finer limit is applied on timestamps
    v4l2 = describe_pipeline(source("v4l2:///dev/video2"), size)
    assert v4l2.startswith('v4l2src device="/dev/video2" ! decodebin')


def model_input(head: str, dst: tuple[int, int], push: np.ndarray | None = None) -> np.ndarray:
    """``[3, H, W]`` RGB 0..1: what the camera pipeline's letterbox gives the models of one frame from
    ``head`` (an appsrc named ``src`` is fed ``push``)."""
    from appliance.pipeline.gst import Gst
    from appliance.pipeline.sources import SamplePixels, letterbox_chain

    Gst.init(None)
    pipeline = Gst.parse_launch(f"{head} ! {letterbox_chain(InputSize(*dst))} ! appsink name=sink sync=false")
    sink = pipeline.get_by_name("sink")
    pipeline.set_state(Gst.State.PLAYING)
    try:
        if push is not None:
            buffer = Gst.Buffer.new_wrapped(push.tobytes())
            buffer.pts, buffer.duration = 0, Gst.SECOND // 5
            pipeline.get_by_name("src").emit("push-buffer", buffer)
            pipeline.get_by_name("src").emit("end-of-stream")
        sample = sink.emit("try-pull-sample", 5 * Gst.SECOND)
        assert sample is not None, "no frame came out of the pipeline"
        out = np.zeros((3, dst[1], dst[0]), np.float32)
        SamplePixels(sample).copy_into(out)
        return out
    finally:
        pipeline.set_state(Gst.State.NULL)


def test_the_camera_pipeline_uses_the_letterbox_chain():
    description = describe_pipeline(source("test://white?width=640&height=360&fps=5"), InputSize(480, 288))
    assert f"max-rate=5 name=rate ! {letterbox_chain(InputSize(480, 288))} ! appsink name=sink" in description


@pytest.mark.parametrize(("src", "dst"), [((640, 360), (480, 288)), ((640, 360), (640, 384)), ((800, 600), (320, 320))])
def test_the_model_input_holds_the_picture_where_the_letterbox_says(src, dst):
    """GStreamer's own letterbox, row for row: the models were trained, and their boxes are mapped back,
    with ``Letterbox`` (9 rows of border above a 640x360 frame at 480x288, which videoscale would put at 8
    on a 4:2:0 frame)."""
    from appliance.inference.letterbox import Letterbox

    # one white frame, 4:2:0 as decoders give them
    image = model_input(f"videotestsrc pattern=white num-buffers=1 ! video/x-raw,format=I420,width={src[0]},"
                        f"height={src[1]},framerate=5/1", dst)
    lit_rows = np.flatnonzero(image.max(axis=(0, 2)) > 0.5)
    lit_cols = np.flatnonzero(image.max(axis=(0, 1)) > 0.5)
    box = Letterbox.compute(*src, *dst)
    assert (lit_rows[0], lit_rows[-1]) == (box.pad_y, box.pad_y + box.scaled_h - 1)
    assert (lit_cols[0], lit_cols[-1]) == (box.pad_x, box.pad_x + box.scaled_w - 1)
    assert image[:, : box.pad_y].max() == 0.0  # black borders


# the clean room's wall, a flame, a glove, a gown, skin, the floor, a bright and a dark grey
BANDS_RGB = np.array([[184, 196, 186], [228, 148, 67], [60, 120, 200], [150, 200, 230],
                      [224, 180, 150], [153, 172, 171], [235, 235, 235], [40, 40, 40]], dtype=np.float64)


def bt601_i420(rgb: np.ndarray) -> np.ndarray:
    """An ``[H, W, 3]`` RGB image as an I420 frame, by the exact BT.601 limited-range formulas."""
    r, g, b = (rgb[..., c] / 255.0 for c in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb, cr = (b - y) / 1.772, (r - y) / 1.402
    h, w = y.shape
    half = [(v.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) * 224 + 128) for v in (cb, cr)]
    planes = [y * 219 + 16, *half]
    return np.concatenate([np.rint(p).ravel() for p in planes]).astype(np.uint8)


def test_the_model_input_has_the_colours_of_the_frame():
    """A decoded frame's colours reach the models as they are: videoconvert's own fixed-point RGB is
    several levels off (green 4 levels darker on the clean room's wall), a cast the models never saw in
    training, which made a fire's glow look like smoke."""
    width, height = 640, 360
    band = width // len(BANDS_RGB)
    rgb = np.repeat(BANDS_RGB, band, axis=0)[None, :, :].repeat(height, axis=0)
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate=5/1,colorimetry=bt601"
    image = model_input(f"appsrc name=src format=time caps={caps}", (480, 288), push=bt601_i420(rgb))
    scale = 480 / width
    for index, colour in enumerate(BANDS_RGB):
        x0, x1 = int((index * band + 6) * scale), int(((index + 1) * band - 6) * scale)
        inside = image[:, 9 + 4:9 + 270 - 4, x0:x1] * 255.0
        assert np.abs(inside.mean(axis=(1, 2)) - colour).max() <= 1.5, (colour, inside.mean(axis=(1, 2)))
        assert np.abs(inside - colour[:, None, None]).max() <= 2.0


def test_realtime_file_plays_at_its_rate_and_fast_file_does_not(tmp_path):
    clip = tmp_path / "x.mp4"
    clip.write_bytes(b"not decoded here")
    size = InputSize(320, 320)
    assert "sync=true" in describe_pipeline(source(f"file://{clip}"), size)
    assert "sync=false" in describe_pipeline(source(f"file://{clip}", realtime=False), size)


class ScriptedEngine:
    """An engine whose YOLOv8 output puts one box at a known input position per image."""

    def __init__(self, model: ModelConfig) -> None:
        self.name = model.id
        self.input = TensorSpec("images", (None, 3, 64, 64), "float32")
        self.outputs = (TensorSpec("output0", (None, 5, 4), "float32"),)
        self.max_batch = 4
        self.batches: list[int] = []
        self.closed = False

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        self.batches.append(len(batch))
        out = np.zeros((len(batch), 5, 4), np.float32)
        out[:, 0:4, 0] = [32.0, 32.0, 16.0, 16.0]  # cx, cy, w, h
        out[:, 4, 0] = batch[:, 0, 0, 0]  # score = red value of the top-left pixel
        return [out]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def model_config(tmp_path) -> ModelConfig:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    return ModelConfig.model_validate({
        "id": "m", "onnx": str(onnx), "labels": ["part"], "input": {"width": 64, "height": 64},
        "confidence": 0.5,
    })


def test_batcher_batches_streams_and_maps_boxes_to_source_pixels(model_config):
    ready = threading.Condition()
    slots = [FrameSlot(f"s{i}", wait_when_full=False, ready=ready) for i in range(6)]
    engines: list[ScriptedEngine] = []
    results: list[FrameResult] = []
    done = threading.Event()

    def make_engine(model: ModelConfig) -> ScriptedEngine:
        engines.append(ScriptedEngine(model))
        return engines[-1]

    def on_result(result: FrameResult, image: object) -> None:
        results.append(result)
        if len(results) == 6:
            done.set()

    batcher = Batcher(slots, {f"s{i}": ["m"] for i in range(6)}, [model_config], make_engine, on_result,
                      ApplianceMetrics(), ManualClock(), ready, workers=1, max_batch=8)
    bright = np.full((64, 64, 3), 255, np.uint8)
    dark = np.zeros((64, 64, 3), np.uint8)
    for i, slot in enumerate(slots):
        # a 128x128 source maps the 64x64 input 2:1, without borders
        slot.put(frame(f"s{i}", i, bright if i % 2 == 0 else dark, width=128, height=128))
    batcher.start()
    assert done.wait(5)
    batcher.stop()
    assert engines[0].batches == [4, 2]  # six frames, the engine takes four at a time
    assert engines[0].closed
    by_stream = {r.stream_id: r for r in results}
    for i in range(6):
        found = by_stream[f"s{i}"].detections
        if i % 2:
            assert found == []
        else:
            assert len(found) == 1
            assert found[0].label == "part" and found[0].model == "m"
            assert found[0].box == pytest.approx((48.0, 48.0, 80.0, 80.0), abs=1e-3)


def test_one_stream_is_analyzed_in_frame_order_by_many_workers(model_config):
    ready = threading.Condition()
    slot = FrameSlot("cam", wait_when_full=True, ready=ready)
    results: list[int] = []
    batcher = Batcher([slot], {"cam": ["m"]}, [model_config], ScriptedEngine,
                      lambda r, _: results.append(r.frame_number), ApplianceMetrics(), ManualClock(), ready, workers=3)
    batcher.start()
    for n in range(40):
        slot.put(frame("cam", n, np.zeros((64, 64, 3), np.uint8)))
    deadline = time.monotonic() + 5
    while len(results) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    batcher.stop()
    assert results == list(range(40))


def test_models_of_a_source_must_share_an_input_size(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    models = [
        {"id": "a", "onnx": str(onnx), "labels": ["x"], "input": {"width": 320, "height": 320}},
        {"id": "b", "onnx": str(onnx), "labels": ["x"], "input": {"width": 640, "height": 640}},
    ]
    with pytest.raises(ValidationError, match="must share an input size"):
        ApplianceConfig.model_validate({"models": models, "sources": [{"id": "s", "uri": "test://ball"}]})
    config = ApplianceConfig.model_validate(
        {"models": models, "sources": [{"id": "s", "uri": "test://ball", "models": ["b"]}]}
    )
    assert input_size_for(config, config.sources[0]) == InputSize(640, 640)


def test_a_looping_file_that_ends_before_its_first_frame_is_retried_not_looped(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    clock = ManualClock()
    metrics = ApplianceMetrics()
    events = []
    config = SourceConfig.model_validate(
        {"id": "empty", "uri": f"file://{tmp_path}/empty.mp4", "loop": True, "reconnect": {"initial_s": 2}}
    )
    stream = CameraStream(
        config, InputSize(320, 320), FrameSlot("empty", wait_when_full=True, ready=threading.Condition()), metrics,
        EventFactory("dev", "1", clock), events.append, clock,
    )
    stream.state = StreamState.STARTING
    stream._on_end_of_stream()
    assert stream.state is StreamState.WAITING
    assert stream.reason == "stream ended before its first frame"
    assert metrics.stream_errors.labels("empty")._value.get() == 1
    assert [(e.kind, e.phase) for e in events] == [("stream.down", "start")]
