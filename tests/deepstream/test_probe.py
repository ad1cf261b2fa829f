"""The DeepStream probes against the pyds double: batch metadata in, FrameResults out."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pytest

from appliance.clock import ManualClock
from appliance.config.schema import ModelConfig
from appliance.inference.letterbox import Letterbox
from appliance.inference.parsers import make_parser
from appliance.metrics import ApplianceMetrics
from appliance.pipeline.ds_probe import (
    UNTRACKED_OBJECT_ID,
    DetectionProbe,
    LabelTable,
    ModelOutputs,
    TrackProbe,
    walk,
)
from appliance.pipeline.gst import Gst
from tests.deepstream import pyds_double as pyds

MUXER = (1280, 720)
NETWORK = (320, 320)
ANCHORS = 50


def model(tmp_path, ident: str, labels: list[str]) -> ModelConfig:
    onnx = tmp_path / f"{ident}.onnx"
    onnx.write_bytes(b"not needed by the probe")
    return ModelConfig(id=ident, onnx=onnx, labels=labels, input={"width": 320, "height": 320},
                       confidence=0.5, iou=0.45)


def yolo_output(boxes: list[tuple[float, float, float, float, int, float]], classes: int) -> np.ndarray:
    """A YOLOv8 raw head ``[4+nc, anchors]`` (no batch dim, as nvinfer hands it) with
    one anchor per box: (cx, cy, w, h) in network pixels, class, score."""
    out = np.zeros((4 + classes, ANCHORS), dtype=np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[:4, anchor] = (cx, cy, w, h)
        out[4 + cls, anchor] = score
    return out


class Harness:
    """Both probes of one pipeline, wired as the DeepStream backend wires them."""

    def __init__(self, models: list[ModelConfig], streams: list[str], max_batch: int = 8) -> None:
        self.metrics = ApplianceMetrics()
        self.results = []
        self.labels = LabelTable(models)
        pending: OrderedDict = OrderedDict()
        outputs = [ModelOutputs.create(m, uid, max_batch) for uid, m in enumerate(models, start=1)]
        self.detect = DetectionProbe(pyds, outputs, self.labels, MUXER, streams, pending, self.metrics)
        self.track = TrackProbe(pyds, self.labels, [o.unique_id for o in outputs], MUXER, streams, pending,
                                lambda result, image: self.results.append((result, image)), self.metrics,
                                ManualClock())
        self.buffers = []

    def address(self) -> int:
        buffer = Gst.Buffer.new()
        self.buffers.append(buffer)
        return hash(buffer)


@pytest.fixture
def line_model(tmp_path):
    return model(tmp_path, "defects", ["vial", "crack", "chip"])


def test_walk_advances_past_other_user_meta_and_ends_either_way():
    for stop_iteration in (False, True):
        metas = [pyds.user_meta(pyds.NvDsMetaType.NVDS_CROP_IMAGE_META, object()) for _ in range(3)]
        seen = []
        for item in walk(pyds.glist(metas, stop_iteration), pyds.NvDsUserMeta.cast):
            if item.base_meta.meta_type != pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                seen.append(item)
                continue  # NVIDIA's samples loop forever here
        assert seen == metas


def test_a_batch_of_frames_gives_the_portable_parsers_results_in_source_pixels(line_model):
    h = Harness([line_model], ["line-1", "line-2"])
    # frame 0 of line-1 (1920x1080): a vial and a crack; frame 0 of line-2 (640x360): a chip;
    # frame 1 of line-1: nothing found
    heads = [
        yolo_output([(160, 160, 64, 32, 0, 0.9), (100, 120, 10, 10, 1, 0.8)], 3),
        yolo_output([(200, 150, 20, 20, 2, 0.7)], 3),
        yolo_output([], 3),
    ]
    sizes = [(1920, 1080), (640, 360), (1920, 1080)]
    specs = [
        pyds.FrameSpec(0, 0, *sizes[0], [pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META,
                                                        pyds.tensor_meta(1, [heads[0]], NETWORK))], pts_ns=10),
        pyds.FrameSpec(1, 0, *sizes[1], [pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META,
                                                        pyds.tensor_meta(1, [heads[1]], NETWORK))], pts_ns=20),
        pyds.FrameSpec(0, 1, *sizes[2], [pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META,
                                                        pyds.tensor_meta(1, [heads[2]], NETWORK))], pts_ns=30),
    ]
    address = h.address()
    meta = pyds.batch(address, specs)
    h.detect.process(address)
    pyds.track(meta, {(0, 0): [7, 8], (1, 0): [9]})
    results = [r for r, _ in h.results] if h.results else []
    assert results == []  # nothing is published before the tracker has run
    h.track.process(address)
    results = [r for r, image in h.results]
    assert [(r.stream_id, r.frame_number, r.pts_ns, r.width, r.height) for r in results] == [
        ("line-1", 0, 10, 1920, 1080), ("line-2", 0, 20, 640, 360), ("line-1", 1, 30, 1920, 1080)]
    # what the portable backend's parser finds on the same tensors, in muxer pixels, scaled to each source
    parser = make_parser("yolov8", ["vial", "crack", "chip"], 0.5, 0.45, 100, "defects")
    letterbox = Letterbox.compute(*MUXER, *NETWORK)
    expected = parser.parse([np.stack(heads)], [letterbox] * 3)
    for result, found, (width, height) in zip(results, expected, sizes, strict=True):
        sx, sy = width / MUXER[0], height / MUXER[1]
        assert [(d.label, d.model) for d in result.detections] == [(d.label, d.model) for d in found]
        for got, want in zip(result.detections, found, strict=True):
            assert got.confidence == pytest.approx(want.confidence)
            assert got.box == pytest.approx((want.box[0] * sx, want.box[1] * sy, want.box[2] * sx, want.box[3] * sy))
    # the vial: 64x32 network pixels at the network centre; the letterbox scale is 1/4 (1280x720 -> 320x180)
    vial = results[0].detections[0]
    assert vial.label == "vial"
    assert vial.box == pytest.approx((1920 / 2 - 64 * 4 * 1.5 / 2, 1080 / 2 - 32 * 4 * 1.5 / 2,
                                      1920 / 2 + 64 * 4 * 1.5 / 2, 1080 / 2 + 32 * 4 * 1.5 / 2), abs=1e-3)
    assert results[2].detections == [] and results[2].tracks == []
    assert [(t.track_id, t.label) for t in results[0].tracks] == [(7, "vial"), (8, "crack")]
    assert results[0].tracks[0].box == pytest.approx(vial.box, abs=1e-3)
    assert [(t.track_id, t.label) for t in results[1].tracks] == [(9, "chip")]
    assert h.metrics.frames_analyzed.labels("line-1")._value.get() == 2
    assert h.metrics.detections.labels("line-1", "vial")._value.get() == 1


def test_objects_come_from_the_pool_in_muxer_pixels_for_the_tracker(line_model):
    h = Harness([line_model], ["cam"])
    address = h.address()
    head = yolo_output([(160, 160, 64, 32, 0, 0.9)], 3)
    meta = pyds.batch(address, [pyds.FrameSpec(0, 5, 1280, 720, [
        pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, pyds.tensor_meta(1, [head], NETWORK))])])
    h.detect.process(address)
    frame = pyds.frames_of(meta)[0]
    assert meta._pool_taken == 1 and frame.num_obj_meta == 1
    obj = frame._objects[0]
    assert obj.object_id == UNTRACKED_OBJECT_ID and obj.unique_component_id == 1
    assert (obj.rect_params.left, obj.rect_params.top, obj.rect_params.width, obj.rect_params.height) == \
        pytest.approx((640 - 128, 360 - 64, 256, 128))
    with pytest.raises(RuntimeError, match="use a pool"):
        pyds.NvDsObjectMeta()


def test_other_user_meta_before_the_tensor_meta_and_old_style_list_ends(line_model):
    for stop_iteration in (False, True):
        h = Harness([line_model], ["cam"])
        address = h.address()
        head = yolo_output([(160, 160, 40, 40, 1, 0.95)], 3)
        metas = [
            pyds.user_meta(pyds.NvDsMetaType.NVDS_CROP_IMAGE_META, object()),
            pyds.user_meta(pyds.NvDsMetaType.NVDS_TRACKER_PAST_FRAME_META, object()),
            pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, pyds.tensor_meta(1, [head], NETWORK)),
            pyds.user_meta(pyds.NvDsMetaType.NVDS_START_USER_META + 3, object()),
        ]
        meta = pyds.batch(address, [pyds.FrameSpec(0, 0, 1280, 720, metas)], stop_iteration=stop_iteration)
        worker = threading.Thread(target=h.detect.process, args=(address,), daemon=True)
        worker.start()
        worker.join(10)
        assert not worker.is_alive(), "the probe did not get past the other user meta"
        pyds.track(meta, {(0, 0): [3]})
        h.track.process(address)
        (result, image), = h.results
        assert image is None
        assert [d.label for d in result.detections] == ["crack"]
        assert [t.track_id for t in result.tracks] == [3]


def test_frames_nvinfer_skipped_give_no_result_and_two_models_keep_their_labels(tmp_path, line_model):
    ppe = model(tmp_path, "ppe", ["person", "helmet"])
    h = Harness([line_model, ppe], ["a", "b"])
    address = h.address()
    line_head = yolo_output([(100, 160, 30, 30, 2, 0.8)], 3)
    ppe_head = yolo_output([(200, 160, 30, 60, 1, 0.9)], 2)
    both = [pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, pyds.tensor_meta(2, [ppe_head], NETWORK)),
            pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, pyds.tensor_meta(1, [line_head], NETWORK))]
    only_one = [pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META,
                               pyds.tensor_meta(1, [line_head], NETWORK))]
    meta = pyds.batch(address, [pyds.FrameSpec(0, 4, 1280, 720, both), pyds.FrameSpec(1, 4, 1280, 720, []),
                                pyds.FrameSpec(1, 5, 1280, 720, only_one)])
    h.detect.process(address)
    pyds.track(meta, {(0, 4): [1, 2]})
    h.track.process(address)
    (result, _), = h.results
    assert result.stream_id == "a"
    assert sorted((d.model, d.label) for d in result.detections) == [("defects", "chip"), ("ppe", "helmet")]
    assert sorted(t.label for t in result.tracks) == ["chip", "helmet"]
    objects = pyds.frames_of(meta)[0]._objects
    wanted = [h.labels.class_id("defects", "chip"), h.labels.class_id("ppe", "helmet")]
    assert sorted(o.class_id for o in objects) == wanted
    assert h.labels.class_id("ppe", "helmet") == 4  # after the 3 labels of the first model
    assert h.metrics.frames_decoded.labels("b")._value.get() == 2


def test_half_precision_outputs_are_read_as_float16(line_model):
    h = Harness([line_model], ["cam"])
    address = h.address()
    head = yolo_output([(160, 160, 64, 64, 0, 0.75)], 3)
    tensor = pyds.tensor_meta(1, [head], NETWORK, data_type=pyds.NvDsInferDataType.HALF)
    meta = pyds.batch(address, [pyds.FrameSpec(0, 0, 1280, 720, [
        pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, tensor)])])
    h.detect.process(address)
    pyds.track(meta, {(0, 0): [1]})
    h.track.process(address)
    (result, _), = h.results
    assert [d.label for d in result.detections] == ["vial"]
    assert result.detections[0].confidence == pytest.approx(0.75, abs=1e-3)


def test_the_probes_run_as_pad_probes_of_a_real_pipeline(line_model):
    """The probes' GStreamer entry point, on buffers flowing through a real pipeline; the
    batch meta is attached upstream (as nvstreammux and nvinfer do), keyed by the buffer."""
    h = Harness([line_model], ["cam"])
    head = yolo_output([(160, 160, 64, 32, 0, 0.9)], 3)
    frame_numbers = iter(range(100))

    def attach_meta(pad, info):
        buffer = info.get_buffer()
        pyds.batch(hash(buffer), [pyds.FrameSpec(0, next(frame_numbers), 1280, 720, [
            pyds.user_meta(pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META, pyds.tensor_meta(1, [head], NETWORK))])])
        return Gst.PadProbeReturn.OK

    pipeline = Gst.parse_launch("appsrc name=src format=time ! identity name=infer ! identity name=tracker "
                                "! fakesink sync=false")
    pipeline.get_by_name("infer").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, attach_meta)
    pipeline.get_by_name("infer").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, h.detect)
    pipeline.get_by_name("tracker").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, h.track)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        for frame_num in range(3):
            buffer = Gst.Buffer.new_wrapped(bytes([frame_num]) * 16)
            assert pipeline.get_by_name("src").emit("push-buffer", buffer) == Gst.FlowReturn.OK
        pipeline.get_by_name("src").emit("end-of-stream")
        message = pipeline.get_bus().timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        assert message is not None and message.type == Gst.MessageType.EOS
    finally:
        pipeline.set_state(Gst.State.NULL)
    assert [(r.frame_number, [d.label for d in r.detections]) for r, _ in h.results] == [
        (0, ["vial"]), (1, ["vial"]), (2, ["vial"])]
