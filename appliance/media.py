"""H.264 test clips made with GStreamer (x264), for tests, demos and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from appliance.pipeline.gst import Gst


class ClipError(RuntimeError):
    pass


def make_clip(
    path: Path,
    width: int = 640,
    height: int = 360,
    fps: int = 15,
    seconds: float = 10.0,
    pattern: str = "ball",
    bitrate_kbps: int = 1500,
    key_interval: int = 30,
    noise: float = 0.0,
) -> Path:
    """Encode ``seconds`` of ``videotestsrc pattern`` into an MP4 file (H.264, no B-frames).

    ``noise`` (0..1) blends sensor-like noise over the pattern, so the clip costs what
    a real camera stream costs to decode. Written to a temporary name and renamed, so
    a half-written clip is never mistaken for a finished one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frames = max(1, round(seconds * fps))
    caps = f"video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
    if noise > 0:
        head = (
            f"videotestsrc pattern={pattern} num-buffers={frames} ! {caps} ! mix.sink_0 "
            f"videotestsrc pattern=snow num-buffers={frames} ! {caps} ! mix.sink_1 "
            f"compositor name=mix sink_1::alpha={noise:.3f} ! {caps}"
        )
    else:
        head = f"videotestsrc pattern={pattern} num-buffers={frames} ! {caps}"
    description = (
        f"{head} ! "
        f"x264enc bitrate={bitrate_kbps} speed-preset=veryfast key-int-max={key_interval} bframes=0 ! "
        f"video/x-h264,profile=main ! h264parse ! mp4mux ! filesink location=\"{partial}\""
    )
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    _finish(pipeline, partial, path)
    return path


def _finish(pipeline: Gst.Pipeline, partial: Path, path: Path) -> None:
    """Waits for the end of an encoding pipeline, then renames its output into place."""
    message = pipeline.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR
    )
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        partial.unlink(missing_ok=True)
        raise ClipError(f"could not encode {path}: {message.parse_error()[0].message}")
    partial.rename(path)


def ensure_clip(path: Path, **kwargs: object) -> Path:
    """The clip at ``path``, made first if it is not there."""
    return path if path.is_file() else make_clip(path, **kwargs)  # type: ignore[arg-type]


def write_video(
    frames: Iterable[np.ndarray],
    path: Path,
    width: int,
    height: int,
    fps: int,
    bitrate_kbps: int = 1500,
    key_interval: int = 30,
) -> int:
    """Encode BGR uint8 frames (``height x width x 3``) to an H.264 MP4; returns the frame count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pipeline = Gst.parse_launch(
        f"appsrc name=src format=time is-live=false block=true "
        f"caps=video/x-raw,format=BGR,width={width},height={height},framerate={fps}/1 ! "
        f"videoconvert ! video/x-raw,format=I420 ! "
        f"x264enc bitrate={bitrate_kbps} speed-preset=medium key-int-max={key_interval} bframes=0 threads=1 ! "
        f"video/x-h264,profile=main ! h264parse ! mp4mux ! filesink location=\"{partial}\""
    )
    source = pipeline.get_by_name("src")
    pipeline.set_state(Gst.State.PLAYING)
    count = 0
    frame_ns = Gst.SECOND // fps
    for image in frames:
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            pipeline.set_state(Gst.State.NULL)
            raise ClipError(f"frame {count} is {image.shape} {image.dtype}, expected ({height}, {width}, 3) uint8")
        buffer = Gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
        buffer.pts = count * frame_ns
        buffer.duration = frame_ns
        if source.emit("push-buffer", buffer) != Gst.FlowReturn.OK:
            break
        count += 1
    source.emit("end-of-stream")
    _finish(pipeline, partial, path)
    return count
