"""The DeepStream probes: ``NvDsBatchMeta`` -> the shared ``FrameResult``.

Two buffer probes per pipeline, both walking the batch metadata with ``pyds`` as
NVIDIA documents it (``gst_buffer_get_nvds_batch_meta(hash(buffer))``, ``.cast``
of each list node's ``data``):

* :class:`DetectionProbe`, after the last ``nvinfer``: reads each frame's
  ``NvDsInferTensorMeta`` (``network-type=100``, ``output-tensor-meta=1``), copies
  the output layers of all frames of the batch into one reused ``[N, ...]`` array
  per model, runs the shared parser (``appliance.inference.parsers``) once per
  model and batch, and attaches one ``NvDsObjectMeta`` per detection, taken from
  the batch's pool (``nvds_acquire_obj_meta_from_pool``; no pyds object is made
  with a constructor, whose memory Python would free under C's feet), so that
  ``nvtracker`` tracks them;
* :class:`TrackProbe`, after ``nvtracker``: reads the tracked objects back and
  emits one ``FrameResult`` per analyzed frame, with the tracker's ids as
  ``Track``\\ s, through the same result callback the portable backend calls.

Lists are walked by :func:`walk`, which always advances to the next node, whatever
the caller does with an item: NVIDIA's samples ``continue`` on a user meta of
another type *before* advancing and spin forever when one comes first.

Geometry: ``nvstreammux`` scales every frame to the muxer size; ``nvinfer``
letterboxes that into the network input (``maintain-aspect-ratio=1``,
``symmetric-padding=1``), which is what ``Letterbox`` computes. Parsed boxes are
in muxer pixels (what object metadata uses); results are in source pixels, like
the portable backend's.
"""

from __future__ import annotations

import ctypes
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.clock import Clock
from appliance.config.schema import ModelConfig
from appliance.inference.letterbox import Letterbox
from appliance.inference.parsers import Parser, parser_for
from appliance.metrics import ApplianceMetrics
from appliance.types import Detection, FrameResult, Track

log = logging.getLogger(__name__)

UNTRACKED_OBJECT_ID = 0xFFFFFFFFFFFFFFFF  # NvDsObjectMeta.object_id before a tracker assigns one
PENDING_LIMIT = 256  # frames between the two probes; more means frames were lost between them
BOX_COLORS = ((1.0, 0.2, 0.2, 1.0), (0.2, 1.0, 0.2, 1.0), (0.2, 0.6, 1.0, 1.0), (1.0, 1.0, 0.2, 1.0))

ResultSink = Callable[[FrameResult, Any], None]


def walk(node: Any, cast: Callable[[Any], Any]) -> Iterator[Any]:
    """Items of a pyds ``GList`` (``node.data`` cast with ``cast``), always advancing.

    Older pyds raise ``StopIteration`` from ``.next`` (or a cast) at the end of a
    list, newer ones return ``None``; both end the walk. The next node is taken
    before the item is handed out, so a caller's ``continue`` cannot stall it.
    """
    while node is not None:
        try:
            item = cast(node.data)
        except StopIteration:
            return
        try:
            node = node.next
        except StopIteration:
            node = None
        yield item


class LabelTable:
    """Class ids across the models of one pipeline: model ``k``'s label ``j`` is
    ``offset[k] + j`` in ``NvDsObjectMeta.class_id``."""

    def __init__(self, models: Sequence[ModelConfig]) -> None:
        self._ids: dict[tuple[str, str], int] = {}
        self._labels: list[tuple[str, str]] = []
        for model in models:
            for label in model.label_names():
                self._ids.setdefault((model.id, label), len(self._labels))
                self._labels.append((model.id, label))

    def class_id(self, model: str, label: str) -> int:
        return self._ids[(model, label)]

    def label(self, class_id: int) -> tuple[str, str] | None:
        return self._labels[class_id] if 0 <= class_id < len(self._labels) else None


@dataclass
class ModelOutputs:
    """One model of the pipeline: its nvinfer id, parser and reused batch arrays."""

    model: ModelConfig
    unique_id: int
    parser: Parser
    max_batch: int
    arrays: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def create(cls, model: ModelConfig, unique_id: int, max_batch: int) -> ModelOutputs:
        parser = parser_for(model)
        return cls(model, unique_id, parser, max_batch)

    def fill(self, row: int, layers: Sequence[np.ndarray]) -> None:
        """Copies one frame's output layers into row ``row`` of the batch arrays."""
        if len(self.arrays) != len(layers) or any(a.shape[1:] != layer.shape for a, layer in zip(self.arrays, layers)):
            self.arrays = [np.zeros((self.max_batch, *layer.shape), dtype=np.float32) for layer in layers]
        for array, layer in zip(self.arrays, layers, strict=True):
            np.copyto(array[row], layer, casting="unsafe")


@dataclass
class PendingFrame:
    """A frame between the two probes: its detections in muxer and in source pixels."""

    detections: list[Detection]


def layer_arrays(pyds: Any, tensor_meta: Any) -> list[np.ndarray]:
    """A frame's output layers as numpy views of nvinfer's host buffers, in the
    engine's output order (``bindingIndex``). Valid while the buffer is in the probe."""
    layers = [pyds.get_nvds_LayerInfo(tensor_meta, i) for i in range(tensor_meta.num_output_layers)]
    layers = sorted((layer for layer in layers if not layer.isInput), key=lambda layer: layer.bindingIndex)
    types = pyds.NvDsInferDataType
    ctypes_of = {types.FLOAT: ctypes.c_float, types.HALF: ctypes.c_uint16, types.INT32: ctypes.c_int32,
                 types.INT8: ctypes.c_int8}
    arrays = []
    for layer in layers:
        dims = tuple(int(d) for d in layer.inferDims.d[: layer.inferDims.numDims])
        kind = ctypes_of.get(layer.dataType)
        if kind is None:
            raise ValueError(f"output layer {layer.layerName!r}: unsupported data type {layer.dataType}")
        pointer = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(kind))
        array = np.ctypeslib.as_array(pointer, shape=dims)
        arrays.append(array.view(np.float16) if layer.dataType == types.HALF else array)
    return arrays


class DetectionProbe:
    """After the last ``nvinfer``: tensors -> shared parsers -> object metadata."""

    def __init__(
        self,
        pyds: Any,
        models: Sequence[ModelOutputs],
        labels: LabelTable,
        muxer_size: tuple[int, int],
        stream_ids: Sequence[str],
        pending: OrderedDict[tuple[int, int], PendingFrame],
        metrics: ApplianceMetrics,
    ) -> None:
        self._pyds = pyds
        self._models = {m.unique_id: m for m in models}
        self._component_of = {m.model.id: m.unique_id for m in models}
        self._labels = labels
        self._muxer = muxer_size
        self._stream_ids = list(stream_ids)
        self._pending = pending
        self._metrics = metrics
        self._letterboxes = {m.unique_id: Letterbox.compute(*muxer_size, m.model.input.width, m.model.input.height)
                             for m in models}

    def __call__(self, pad: Any, info: Any, *_: Any) -> Any:
        from appliance.pipeline.gst import Gst

        buffer = info.get_buffer()
        if buffer is not None:
            try:
                self.process(hash(buffer))
            except Exception:  # a bad batch must not stop the pipeline
                log.exception("detection probe failed on a batch")
        return Gst.PadProbeReturn.OK

    def process(self, buffer_address: int) -> None:
        pyds = self._pyds
        batch_meta = pyds.gst_buffer_get_nvds_batch_meta(buffer_address)
        if batch_meta is None:
            return
        frames = list(walk(batch_meta.frame_meta_list, pyds.NvDsFrameMeta.cast))
        tensors: dict[int, dict[int, Any]] = {uid: {} for uid in self._models}  # model -> frame index -> meta
        for index, frame in enumerate(frames):
            self._count_decoded(frame)
            for user in walk(frame.frame_user_meta_list, pyds.NvDsUserMeta.cast):
                if user.base_meta.meta_type != pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                    continue  # another kind of user meta: walk() has already moved on
                tensor_meta = pyds.NvDsInferTensorMeta.cast(user.user_meta_data)
                if tensor_meta.unique_id in tensors:
                    tensors[tensor_meta.unique_id][index] = tensor_meta
        analyzed = [i for i in range(len(frames)) if all(i in found for found in tensors.values())]
        found: dict[int, list[Detection]] = {i: [] for i in analyzed}
        for uid, model in self._models.items():
            for index, detections in zip(analyzed, self._parse(model, [tensors[uid][i] for i in analyzed]),
                                         strict=True):
                found[index].extend(detections)
        for index in analyzed:
            self._attach(batch_meta, frames[index], found[index])

    def _count_decoded(self, frame: Any) -> None:
        if 0 <= frame.pad_index < len(self._stream_ids):
            self._metrics.frames_decoded.labels(self._stream_ids[frame.pad_index]).inc()

    def _parse(self, model: ModelOutputs, metas: list[Any]) -> list[list[Detection]]:
        if not metas:
            return []
        found: list[list[Detection]] = []
        letterbox = self._letterboxes[model.unique_id]
        for start in range(0, len(metas), model.max_batch):
            chunk = metas[start:start + model.max_batch]
            for row, meta in enumerate(chunk):
                model.fill(row, layer_arrays(self._pyds, meta))
            outputs = [array[: len(chunk)] for array in model.arrays]
            found.extend(model.parser.parse(outputs, [letterbox] * len(chunk)))
            self._metrics.batch_size.labels(model.model.id).observe(len(chunk))
        return found

    def _attach(self, batch_meta: Any, frame: Any, detections: list[Detection]) -> None:
        """Object metadata from the batch's pool (muxer pixels), for nvtracker and the OSD."""
        pyds = self._pyds
        for det in detections:
            obj = pyds.nvds_acquire_obj_meta_from_pool(batch_meta)
            class_id = self._labels.class_id(det.model, det.label)
            obj.unique_component_id = self._component_of[det.model]
            obj.class_id = class_id
            obj.confidence = det.confidence
            obj.object_id = UNTRACKED_OBJECT_ID
            x1, y1, x2, y2 = det.box
            rect = obj.rect_params
            rect.left, rect.top, rect.width, rect.height = x1, y1, x2 - x1, y2 - y1
            rect.border_width = 2
            rect.border_color.set(*BOX_COLORS[class_id % len(BOX_COLORS)])
            pyds.nvds_add_obj_meta_to_frame(frame, obj, None)
        key = (frame.source_id, frame.frame_num)
        self._pending[key] = PendingFrame(detections)
        while len(self._pending) > PENDING_LIMIT:
            dropped, _ = self._pending.popitem(last=False)
            log.warning("frame %s of source %d never reached the tracker probe", dropped[1], dropped[0])


class TrackProbe:
    """After ``nvtracker``: tracked objects -> ``FrameResult`` -> the result callback."""

    def __init__(
        self,
        pyds: Any,
        labels: LabelTable,
        component_ids: Sequence[int],
        muxer_size: tuple[int, int],
        stream_ids: Sequence[str],
        pending: OrderedDict[tuple[int, int], PendingFrame],
        on_result: ResultSink,
        metrics: ApplianceMetrics,
        clock: Clock,
        on_frame: Callable[[str], None] | None = None,
    ) -> None:
        self._pyds = pyds
        self._labels = labels
        self._components = set(component_ids)
        self._muxer = muxer_size
        self._stream_ids = list(stream_ids)
        self._pending = pending
        self._on_result = on_result
        self._metrics = metrics
        self._clock = clock
        self._on_frame = on_frame

    def __call__(self, pad: Any, info: Any, *_: Any) -> Any:
        from appliance.pipeline.gst import Gst

        buffer = info.get_buffer()
        if buffer is not None:
            try:
                self.process(hash(buffer))
            except Exception:
                log.exception("track probe failed on a batch")
        return Gst.PadProbeReturn.OK

    def process(self, buffer_address: int) -> list[FrameResult]:
        pyds = self._pyds
        batch_meta = pyds.gst_buffer_get_nvds_batch_meta(buffer_address)
        if batch_meta is None:
            return []
        results = []
        for frame in walk(batch_meta.frame_meta_list, pyds.NvDsFrameMeta.cast):
            pending = self._pending.pop((frame.source_id, frame.frame_num), None)
            if pending is None or not 0 <= frame.pad_index < len(self._stream_ids):
                continue  # not analyzed (nvinfer interval) or not ours
            result = self._result(frame, pending)
            results.append(result)
            self._publish(result)
        return results

    def _result(self, frame: Any, pending: PendingFrame) -> FrameResult:
        width, height = int(frame.source_frame_width), int(frame.source_frame_height)
        sx, sy = width / self._muxer[0], height / self._muxer[1]
        tracks = []
        for obj in walk(frame.obj_meta_list, self._pyds.NvDsObjectMeta.cast):
            if obj.unique_component_id not in self._components or obj.object_id == UNTRACKED_OBJECT_ID:
                continue
            named = self._labels.label(obj.class_id)
            if named is None:
                continue
            r = obj.rect_params
            box = (r.left * sx, r.top * sy, (r.left + r.width) * sx, (r.top + r.height) * sy)
            confidence = obj.confidence if obj.confidence >= 0 else obj.tracker_confidence
            tracks.append(Track(int(obj.object_id), named[1], float(confidence), box))
        detections = [
            Detection(d.label, d.confidence, (d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy), d.model)
            for d in pending.detections
        ]
        return FrameResult(
            stream_id=self._stream_ids[frame.pad_index],
            frame_number=int(frame.frame_num),
            pts_ns=int(frame.buf_pts),
            wall_time=self._clock.wall(),
            width=width,
            height=height,
            detections=detections,
            tracks=tracks,
        )

    def _publish(self, result: FrameResult) -> None:
        self._metrics.frames_analyzed.labels(result.stream_id).inc()
        for det in result.detections:
            self._metrics.detections.labels(result.stream_id, det.label).inc()
        if self._on_frame is not None:
            self._on_frame(result.stream_id)
        self._on_result(result, None)
