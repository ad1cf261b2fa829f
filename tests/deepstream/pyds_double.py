"""A test double of DeepStream's ``pyds`` (Python bindings 1.2.0, DeepStream 7.1),
reproducing the calls the probes make, as the bindings define them
(github.com/NVIDIA-AI-IOT/deepstream_python_apps, bindings/src):

* ``gst_buffer_get_nvds_batch_meta(hash(gst_buffer))`` -> ``NvDsBatchMeta``;
* ``GList`` nodes with ``.data`` and ``.next`` (``None`` at the end, or, as older
  bindings did, ``StopIteration`` raised by ``.next``: ``stop_iteration=True``);
* ``NvDsFrameMeta.cast``, ``NvDsUserMeta.cast``, ``NvDsObjectMeta.cast``,
  ``NvDsInferTensorMeta.cast``: a cast of data of another type raises here
  (real pyds would read garbage), so a wrong cast fails the tests;
* ``NvDsMetaType`` (``NVDSINFER_TENSOR_OUTPUT_META`` and other types),
  ``NvDsInferDataType`` (FLOAT, HALF, INT8, INT32): the names of the bindings; the
  numbers are the double's own (the probe only compares members of these enums);
* ``get_nvds_LayerInfo(tensor_meta, i)`` (sets ``layer.buffer`` from
  ``out_buf_ptrs_host[i]``), ``get_ptr(buffer)`` (the address as an int);
  ``NvDsInferLayerInfo`` has ``dataType``, ``inferDims`` (``numDims``, ``d``),
  ``layerName``, ``bindingIndex``, ``isInput``, ``buffer``;
* ``nvds_acquire_obj_meta_from_pool(batch_meta)`` and
  ``nvds_add_obj_meta_to_frame(frame_meta, obj_meta, parent)``.

Meta classes cannot be constructed by the code under test (``NvDsObjectMeta()``
raises): objects whose memory C keeps must come from the pools.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NVDSINFER_MAX_DIMS = 8


class NvDsMetaType(enum.IntEnum):
    NVDS_USER_META = 7
    NVDSINFER_TENSOR_OUTPUT_META = 12
    NVDSINFER_SEGMENTATION_META = 13
    NVDS_CROP_IMAGE_META = 14
    NVDS_TRACKER_PAST_FRAME_META = 15
    NVDS_START_USER_META = 4096


class NvDsInferDataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3


_NUMPY_TYPES = {NvDsInferDataType.FLOAT: np.float32, NvDsInferDataType.HALF: np.float16,
                NvDsInferDataType.INT8: np.int8, NvDsInferDataType.INT32: np.int32}

_registry: dict[int, Any] = {}  # "C addresses" handed out as GList data
_addresses = itertools.count(0x7F0000001000, 0x100)
_constructing = False


def _address_of(obj: Any) -> int:
    address = next(_addresses)
    _registry[address] = obj
    return address


class _Meta:
    """Base of the meta classes: built only by this module (the pools)."""

    def __init__(self) -> None:
        if not _constructing:
            raise RuntimeError(f"{type(self).__name__}() made by the caller: C would not own it; use a pool")

    @classmethod
    def _make(cls, **values: Any) -> Any:
        global _constructing
        _constructing = True
        try:
            obj = cls()
        finally:
            _constructing = False
        for key, value in values.items():
            setattr(obj, key, value)
        return obj

    @classmethod
    def cast(cls, data: Any) -> Any:
        if data is None:
            raise StopIteration  # what older bindings did for the data of an ended list
        obj = _registry.get(data) if isinstance(data, int) else None
        if not isinstance(obj, cls):
            raise TypeError(f"{cls.__name__}.cast of data that is a {type(obj).__name__}")
        return obj


class GList:
    """A ``GList`` node as pyds exposes it."""

    def __init__(self, data: int, following: GList | None, stop_iteration: bool) -> None:
        self.data = data
        self._next = following
        self._stop_iteration = stop_iteration

    @property
    def next(self) -> GList | None:
        if self._next is None and self._stop_iteration:
            raise StopIteration
        return self._next


def glist(items: list[Any], stop_iteration: bool = False) -> GList | None:
    head = None
    for item in reversed(items):
        head = GList(_address_of(item), head, stop_iteration)
    return head


@dataclass
class NvOSD_ColorParams:
    red: float = 0.0
    green: float = 0.0
    blue: float = 0.0
    alpha: float = 0.0

    def set(self, red: float, green: float, blue: float, alpha: float) -> None:
        self.red, self.green, self.blue, self.alpha = red, green, blue, alpha


@dataclass
class NvOSD_RectParams:
    left: float = 0.0
    top: float = 0.0
    width: float = 0.0
    height: float = 0.0
    border_width: int = 0
    border_color: NvOSD_ColorParams = field(default_factory=NvOSD_ColorParams)


@dataclass
class NvDsBaseMeta:
    meta_type: int


class NvDsUserMeta(_Meta):
    base_meta: NvDsBaseMeta
    user_meta_data: int


@dataclass
class NvDsInferDims:
    numDims: int
    numElements: int
    d: np.ndarray  # NVDSINFER_MAX_DIMS unsigned ints


@dataclass
class NvDsInferLayerInfo:
    dataType: int
    inferDims: NvDsInferDims
    bindingIndex: int
    layerName: str
    buffer: int | None
    isInput: int


@dataclass
class NvDsInferNetworkInfo:
    width: int
    height: int
    channels: int


class NvDsInferTensorMeta(_Meta):
    unique_id: int
    num_output_layers: int
    network_info: NvDsInferNetworkInfo
    out_buf_ptrs_host: list[int]
    _layers: list[NvDsInferLayerInfo]
    _arrays: list[np.ndarray]  # keeps the host buffers alive


class NvDsObjectMeta(_Meta):
    unique_component_id: int
    class_id: int
    object_id: int
    confidence: float
    tracker_confidence: float
    rect_params: NvOSD_RectParams


class NvDsFrameMeta(_Meta):
    pad_index: int
    batch_id: int
    frame_num: int
    buf_pts: int
    ntp_timestamp: int
    source_id: int
    source_frame_width: int
    source_frame_height: int
    num_obj_meta: int
    obj_meta_list: GList | None
    frame_user_meta_list: GList | None
    _objects: list[NvDsObjectMeta]
    _stop_iteration: bool


class NvDsBatchMeta(_Meta):
    num_frames_in_batch: int
    max_frames_in_batch: int
    frame_meta_list: GList | None
    _pool_taken: int


_batches: dict[int, NvDsBatchMeta] = {}


def gst_buffer_get_nvds_batch_meta(buffer_address: int) -> NvDsBatchMeta | None:
    return _batches.get(buffer_address)


def get_nvds_LayerInfo(tensor_meta: NvDsInferTensorMeta, index: int) -> NvDsInferLayerInfo:
    if not isinstance(tensor_meta, NvDsInferTensorMeta):
        raise TypeError("get_nvds_LayerInfo needs an NvDsInferTensorMeta")
    layer = tensor_meta._layers[index]
    layer.buffer = tensor_meta.out_buf_ptrs_host[index]
    return layer


def get_ptr(buffer: int) -> int:
    return int(buffer)


def nvds_acquire_obj_meta_from_pool(batch_meta: NvDsBatchMeta) -> NvDsObjectMeta:
    batch_meta._pool_taken += 1
    return NvDsObjectMeta._make(unique_component_id=-1, class_id=0, object_id=0xFFFFFFFFFFFFFFFF,
                                confidence=0.0, tracker_confidence=0.0, rect_params=NvOSD_RectParams())


def nvds_add_obj_meta_to_frame(frame_meta: NvDsFrameMeta, obj_meta: NvDsObjectMeta, parent: Any) -> None:
    if not isinstance(frame_meta, NvDsFrameMeta) or not isinstance(obj_meta, NvDsObjectMeta):
        raise TypeError("nvds_add_obj_meta_to_frame(frame_meta, obj_meta, parent)")
    frame_meta._objects.append(obj_meta)
    frame_meta.num_obj_meta = len(frame_meta._objects)
    frame_meta.obj_meta_list = glist(frame_meta._objects, frame_meta._stop_iteration)


# -- building batches, as nvstreammux + nvinfer would ------------------------------------


def tensor_meta(unique_id: int, outputs: list[np.ndarray], network: tuple[int, int],
                data_type: NvDsInferDataType = NvDsInferDataType.FLOAT, input_layer_first: bool = True,
                ) -> NvDsInferTensorMeta:
    """One frame's tensor meta: ``outputs`` without the batch dimension, as nvinfer
    gives them (engine order; an input layer may be listed too, it has no host buffer)."""
    arrays = [np.ascontiguousarray(o, dtype=_NUMPY_TYPES[data_type]) for o in outputs]
    layers = []
    pointers = []
    if input_layer_first:
        dims = np.zeros(NVDSINFER_MAX_DIMS, dtype=np.uint32)
        dims[:3] = (3, network[1], network[0])
        layers.append(NvDsInferLayerInfo(NvDsInferDataType.FLOAT, NvDsInferDims(3, int(dims[:3].prod()), dims),
                                         0, "images", None, 1))
        pointers.append(0)
    for index, array in enumerate(arrays):
        dims = np.zeros(NVDSINFER_MAX_DIMS, dtype=np.uint32)
        dims[: array.ndim] = array.shape
        layers.append(NvDsInferLayerInfo(int(data_type), NvDsInferDims(array.ndim, array.size, dims),
                                         index + 1, f"output{index}", None, 0))
        pointers.append(array.ctypes.data)
    # nvinfer lists the layers in binding order, but nothing promises it: reverse them
    order = list(reversed(range(len(layers))))
    return NvDsInferTensorMeta._make(
        unique_id=unique_id, num_output_layers=len(layers), network_info=NvDsInferNetworkInfo(*network, 3),
        out_buf_ptrs_host=[pointers[i] for i in order], _layers=[layers[i] for i in order], _arrays=arrays)


def user_meta(meta_type: int, data: Any) -> NvDsUserMeta:
    return NvDsUserMeta._make(base_meta=NvDsBaseMeta(int(meta_type)), user_meta_data=_address_of(data))


@dataclass
class FrameSpec:
    pad_index: int
    frame_num: int
    width: int
    height: int
    user_metas: list[NvDsUserMeta] = field(default_factory=list)
    pts_ns: int = 0


def batch(buffer_address: int, frames: list[FrameSpec], stop_iteration: bool = False) -> NvDsBatchMeta:
    """Registers the batch meta of the buffer at ``buffer_address`` (``hash(gst_buffer)``)."""
    metas = [
        NvDsFrameMeta._make(
            pad_index=f.pad_index, batch_id=i, frame_num=f.frame_num, buf_pts=f.pts_ns, ntp_timestamp=0,
            source_id=f.pad_index, source_frame_width=f.width, source_frame_height=f.height, num_obj_meta=0,
            obj_meta_list=None, frame_user_meta_list=glist(f.user_metas, stop_iteration), _objects=[],
            _stop_iteration=stop_iteration)
        for i, f in enumerate(frames)
    ]
    meta = NvDsBatchMeta._make(num_frames_in_batch=len(metas), max_frames_in_batch=len(metas),
                               frame_meta_list=glist(metas, stop_iteration), _pool_taken=0)
    _batches[buffer_address] = meta
    return meta


def frames_of(meta: NvDsBatchMeta) -> list[NvDsFrameMeta]:
    out = []
    node = meta.frame_meta_list
    while node is not None:
        out.append(_registry[node.data])
        node = node._next
    return out


def track(meta: NvDsBatchMeta, ids: dict[tuple[int, int], list[int]]) -> None:
    """What nvtracker does to the objects: assigns ``object_id``s, frame by frame
    (``ids[(pad_index, frame_num)]``, one per object in order)."""
    for frame in frames_of(meta):
        for obj, object_id in zip(frame._objects, ids.get((frame.pad_index, frame.frame_num), []), strict=False):
            obj.object_id = object_id
            obj.tracker_confidence = 0.9
