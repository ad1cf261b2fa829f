"""Frames for INT8 calibration, prepared exactly as the appliance feeds its models.

Calibration must see what the model will see: the plant's own cameras, letterboxed
the same way. Frames come either from a folder (images and clips, in name order)
or from the configured sources, decoded by the portable backend's own GStreamer
description (``describe_pipeline``: same rate limit, same ``videoscale
add-borders`` letterbox, same exact conversion to RGB 0..1 planar). No TensorRT is needed
here, so this part is tested on any machine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from appliance.config.schema import ApplianceConfig, ModelConfig, SourceConfig
from appliance.pipeline.gst import Gst
from appliance.pipeline.sources import InputSize, SamplePixels, describe_pipeline, letterbox_chain

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".ts", ".h264", ".webm")
PULL_TIMEOUT_NS = 5 * Gst.SECOND
#: frames per second sampled from a calibration clip (spread over the clip, not consecutive)
FOLDER_CLIP_FPS = 2.0


class CalibrationError(RuntimeError):
    """No usable calibration frames (an empty folder, a source that gives nothing)."""


def calibration_inputs(config: ApplianceConfig, model: ModelConfig) -> list[SourceConfig]:
    """What to read: the folder's images and clips, else the sources that use ``model``."""
    folder = config.engines.calibration.folder
    if folder is None:
        users = [s for s in config.sources if model in config.models_for(s)]
        if not users:
            raise CalibrationError(f"model {model.id!r}: no source uses it and no calibration folder is configured")
        return users
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if not files:
        raise CalibrationError(
            f"calibration folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)}) or clips "
            f"({', '.join(VIDEO_SUFFIXES)})"
        )
    return [
        SourceConfig(
            id=f"calibration-{index}", uri=f"file://{path.resolve()}", realtime=False,
            analyze_fps=FOLDER_CLIP_FPS,
        )
        for index, path in enumerate(files)
    ]


def _is_image(source: SourceConfig) -> bool:
    return source.scheme == "file" and Path(source.uri).suffix.lower() in IMAGE_SUFFIXES


def _image_description(source: SourceConfig, size: InputSize) -> str:
    """A still image: one frame, letterboxed like a camera frame (no videorate: no framerate)."""
    location = source.uri[len("file://"):]
    return (
        f'filesrc location="{location}" ! decodebin ! {letterbox_chain(size)}'
        " ! appsink name=sink max-buffers=1 drop=false sync=false"
    )


def read_frames(source: SourceConfig, size: InputSize, count: int) -> Iterator[np.ndarray]:
    """Up to ``count`` letterboxed ``[3, H, W]`` float32 frames (RGB, 0..1) of one source."""
    description = _image_description(source, size) if _is_image(source) else describe_pipeline(source, size)
    pipeline = Gst.parse_launch(description)
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    try:
        taken = 0
        while taken < count:
            sample = sink.emit("try-pull-sample", PULL_TIMEOUT_NS)
            if sample is None:
                error = bus.pop_filtered(Gst.MessageType.ERROR)
                if error is not None:
                    raise CalibrationError(f"{source.uri}: {error.parse_error()[0].message}")
                return  # end of file or nothing within the timeout
            out = np.empty((3, size.height, size.width), dtype=np.float32)
            SamplePixels(sample).copy_into(out)
            taken += 1
            yield out
    finally:
        pipeline.set_state(Gst.State.NULL)


def calibration_batches(
    inputs: Sequence[SourceConfig], model: ModelConfig, frames: int, batch_size: int
) -> Iterator[np.ndarray]:
    """``[batch_size, 3, H, W]`` float32 batches, ``frames`` in all, spread evenly over
    ``inputs``; a last partial batch is dropped (TensorRT calibrates on full batches).
    The same array is yielded each time, refilled: copy it to keep it."""
    size = InputSize(model.input.width, model.input.height)
    batch = np.empty((batch_size, 3, size.height, size.width), dtype=np.float32)
    filled = total = 0
    for index, source in enumerate(inputs):
        share = math.ceil((frames - total) / (len(inputs) - index))  # what one input lacks, the next ones give
        for frame in read_frames(source, size, share):
            batch[filled] = frame
            filled += 1
            total += 1
            if filled == batch_size:
                yield batch
                filled = 0
        if total >= frames:
            break
    if total < batch_size:
        raise CalibrationError(
            f"model {model.id!r}: only {total} calibration frames could be read, fewer than one batch of {batch_size}"
        )
    log.info("model %s: %d calibration frames from %d inputs", model.id, total - filled, len(inputs))
