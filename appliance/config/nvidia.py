"""Config of the NVIDIA parts: TensorRT engine building (``engines:``) and the
DeepStream backend (``deepstream:``).

Both sections are optional; their defaults suit a Jetson Orin with DeepStream 7.1.
Relative paths resolve against the config file's directory, like every other path.

.. code-block:: yaml

    engines:
      runtime: tensorrt               # the portable backend's engine: onnxruntime (default) | tensorrt
      precision: int8                 # fp16 | int8
      max_batch: 8                    # the dynamic batch profile: min 1, opt = streams using the model
      workspace_mib: 1024
      cache_dir: /var/lib/appliance/engines
      calibration: {folder: calib/, frames: 256, batch_size: 8}   # no folder: frames of the sources
    deepstream:
      muxer: {width: 1280, height: 720, batched_push_timeout_us: 40000}
      rtsp_reconnect_interval_s: 10
      tracker: {width: 640, height: 384}
      preview: {enabled: true, file: preview.mkv, encoder: x264enc}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator

from appliance.config.base import Strict

DEEPSTREAM_LIB = Path("/opt/nvidia/deepstream/deepstream/lib")


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """As ``schema.resolve_path`` (which cannot be imported here: the schema imports
    this module): ``~`` expands, relative paths join the config file's directory."""
    if value is None:
        return None
    path = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base_dir")
    return Path(base) / path if not path.is_absolute() and base is not None else path


class CalibrationConfig(Strict):
    """INT8 calibration frames: images (``.jpg``/``.png``) or clips of a folder, or,
    without a folder, frames sampled from the configured sources."""

    folder: Path | None = None
    frames: Annotated[int, Field(ge=8, le=100_000)] = 256
    batch_size: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("folder")
    @classmethod
    def _folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(value, info)
        if path is not None and not path.is_dir():
            raise ValueError(f"calibration folder not found: {path}")
        return path


class EnginesConfig(Strict):
    #: what the portable backend infers with: ONNX Runtime on the CPU, or the built TensorRT engines
    #: (a Jetson or dGPU machine without DeepStream); the DeepStream backend always uses TensorRT
    runtime: Literal["onnxruntime", "tensorrt"] = "onnxruntime"
    precision: Literal["fp16", "int8"] = "fp16"
    max_batch: Annotated[int, Field(ge=1, le=64)] = 8
    workspace_mib: Annotated[int, Field(ge=16, le=262_144)] = 1024
    cache_dir: Annotated[Path, Field(validate_default=True)] = Path("~/.cache/appliance/engines")
    calibration: CalibrationConfig = CalibrationConfig()

    @field_validator("cache_dir")
    @classmethod
    def _cache_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) or value


class MuxerConfig(Strict):
    """``nvstreammux``: every frame is scaled to this size before inference."""

    width: Annotated[int, Field(ge=32, le=8192, multiple_of=2)] = 1280
    height: Annotated[int, Field(ge=32, le=8192, multiple_of=2)] = 720
    batched_push_timeout_us: Annotated[int, Field(ge=1000, le=10_000_000)] = 40_000


class NvTrackerConfig(Strict):
    """``nvtracker`` with NVIDIA's multi-object tracker library: IOU-style association
    without visual features (cheap enough for an Orin Nano), or NvDCF on ColorNames
    features for a group whose sources name ``rules.tracker.appearance_labels``."""

    width: Annotated[int, Field(ge=32, le=4096, multiple_of=32)] = 640
    height: Annotated[int, Field(ge=32, le=4096, multiple_of=32)] = 384
    ll_lib_file: Path = DEEPSTREAM_LIB / "libnvds_nvmultiobjecttracker.so"
    max_targets_per_stream: Annotated[int, Field(ge=1, le=2048)] = 150
    probation_age: Annotated[int, Field(ge=0, le=1000)] = 3
    max_shadow_tracking_age: Annotated[int, Field(ge=0, le=10_000)] = 30
    min_iou: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class PreviewConfig(Strict):
    """A tiled preview with boxes, encoded to a file (Matroska, H.264)."""

    enabled: bool = False
    file: Annotated[Path, Field(validate_default=True)] = Path("preview.mkv")
    width: Annotated[int, Field(ge=64, le=7680, multiple_of=2)] = 1280
    height: Annotated[int, Field(ge=64, le=4320, multiple_of=2)] = 720
    bitrate_kbps: Annotated[int, Field(ge=100, le=100_000)] = 4000
    #: x264enc on the CPU (the Orin Nano has no hardware encoder), nvv4l2h264enc elsewhere
    encoder: Literal["x264enc", "nvv4l2h264enc"] = "x264enc"

    @field_validator("file")
    @classmethod
    def _file(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) or value


class DeepStreamConfig(Strict):
    gpu_id: Annotated[int, Field(ge=0, le=16)] = 0
    muxer: MuxerConfig = MuxerConfig()
    rtsp_reconnect_interval_s: Annotated[int, Field(ge=1, le=3600)] = 10
    #: frames skipped between inferences (nvinfer ``interval``); skipped frames give no result
    infer_interval: Annotated[int, Field(ge=0, le=1000)] = 0
    tracker: NvTrackerConfig = NvTrackerConfig()
    preview: PreviewConfig = PreviewConfig()
    #: where the generated nvinfer/nvtracker config files are written
    config_dir: Annotated[Path, Field(validate_default=True)] = Path("~/.cache/appliance/deepstream")

    @field_validator("config_dir")
    @classmethod
    def _config_dir(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve(value, info) or value
