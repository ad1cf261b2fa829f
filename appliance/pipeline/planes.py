"""A raw video frame's pixels, read straight from its planes as RGB.

Describing what a handful of people look like needs a few thousand pixels of a
frame, not the whole frame converted to RGB (5 ms for 1080p); a model's input
needs the whole letterboxed frame. Any 8-bit YUV or RGB format in system memory
(I420, NV12, YUY2, Y444, BGRx, ...) is read by the component layout GStreamer
describes for it: each component's plane, subsampling, step between pixels and
offset. Y'CbCr goes to RGB by the exact formulas of the frame's colour matrix and
range: ``videoconvert``'s fixed-point conversion comes out a few levels darker
(GStreamer 1.22, BT.601: R -2.1, G -4.8, B -2.6 on a clean-room frame, by
``tools/check_model_input.py``), a colour cast the models never saw in training.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.pipeline.gst import Gst, GstVideo

_UNREADABLE = GstVideo.VideoFormatFlags.COMPLEX | GstVideo.VideoFormatFlags.PALETTE | GstVideo.VideoFormatFlags.TILED
_BT601 = (0.299, 0.114)  # Kr, Kb where the caps name no matrix


@dataclass(frozen=True)
class Layout:
    """Where a format keeps the three colour components of a pixel, and how they make RGB."""

    planes: tuple[int, int, int]
    row_shift: tuple[int, int, int]  # log2 of the vertical subsampling
    column_shift: tuple[int, int, int]
    pixel_stride: tuple[int, int, int]  # bytes from one (subsampled) pixel to the next
    pixel_offset: tuple[int, int, int]
    offsets: tuple[int, ...]  # of the planes, where the buffer has no video meta
    strides: tuple[int, ...]
    # [3 components, 256 values, 3] each Y', Cb and Cr value's part of R, G and B; None: RGB already
    components: np.ndarray | None
    chroma: np.ndarray | None  # [256 x 256, 3] each (Cb, Cr) pair's part


@functools.lru_cache(maxsize=128)
def layout_of(caps: str) -> Layout | None:
    """The layout of frames with these caps (as text); None where they cannot be read so (not 8-bit,
    tiled, palette, or in other memory than the system's)."""
    parsed = Gst.Caps.from_string(caps)
    features = parsed.get_features(0)
    if features is not None and not features.contains(Gst.CAPS_FEATURE_MEMORY_SYSTEM_MEMORY):
        return None
    info = GstVideo.VideoInfo.new_from_caps(parsed)
    if info is None:
        return None
    f = info.finfo
    if (f.bits != 8 or f.n_components < 3 or f.flags & _UNREADABLE
            or not f.flags & (GstVideo.VideoFormatFlags.YUV | GstVideo.VideoFormatFlags.RGB)):
        return None
    components = chroma = None
    if f.flags & GstVideo.VideoFormatFlags.YUV:
        known, kr, kb = GstVideo.video_color_matrix_get_Kr_Kb(info.colorimetry.matrix)
        kr, kb = (kr, kb) if known else _BT601
        offset, scale = GstVideo.video_color_range_offsets(info.colorimetry.range, f)
        kg = 1.0 - kr - kb
        # R = Y' + 2(1-Kr) Cr, B = Y' + 2(1-Kb) Cb, G = (Y' - Kr R - Kb B) / Kg, Y' in 0..1, Cb and Cr in ±0.5
        matrix = np.array([[1.0, 0.0, 2.0 * (1.0 - kr)],
                           [1.0, -2.0 * kb * (1.0 - kb) / kg, -2.0 * kr * (1.0 - kr) / kg],
                           [1.0, 2.0 * (1.0 - kb), 0.0]])
        # each component's part, by value: [3 components, 256 values, R G B]
        levels = (np.arange(256.0)[None, :] - np.array(offset[:3])[:, None]) / np.array(scale[:3])[:, None]
        components = (levels[:, :, None] * (255.0 * matrix.T)[:, None, :]).astype(np.float32)
        chroma = (components[1][:, None, :] + components[2][None, :, :]).reshape(256 * 256, 3)
    return Layout(tuple(f.plane[:3]), tuple(f.h_sub[:3]), tuple(f.w_sub[:3]), tuple(f.pixel_stride[:3]),
                  tuple(f.poffset[:3]), tuple(info.offset), tuple(info.stride), components, chroma)


def read_rgb(buffer: Gst.Buffer, layout: Layout, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """[..., 3] uint8 RGB of the pixels at rows ``ys`` and columns ``xs`` (index arrays that broadcast,
    within the frame) of a frame laid out as ``layout``."""
    with _mapped(buffer, layout) as (data, offsets, strides):
        channels = []
        within: dict[tuple[int, int, int, int], np.ndarray] = {}  # where the pixels are, from a component's start
        for c in range(3):
            plane = layout.planes[c]
            steps = (layout.row_shift[c], strides[plane], layout.column_shift[c], layout.pixel_stride[c])
            if steps not in within:  # Cb and Cr are laid out alike
                within[steps] = (ys >> steps[0]) * steps[1] + (xs >> steps[2]) * steps[3]
            channels.append(np.take(data[offsets[plane] + layout.pixel_offset[c]:], within[steps]))
    if layout.components is None or layout.chroma is None:
        return np.stack(channels, axis=-1)
    y, cb, cr = channels
    rgb = np.take(layout.components[0], y, axis=0)
    rgb += np.take(layout.chroma, (cb.astype(np.intp) << 8) | cr, axis=0)
    return np.rint(rgb, out=rgb).clip(0, 255, out=rgb).astype(np.uint8)


def read_frame(buffer: Gst.Buffer, layout: Layout, out: np.ndarray) -> None:
    """Writes the whole frame, laid out as ``layout`` and ``out``'s size, into ``out`` as ``[3, H, W]``
    float32 RGB in 0..1: the values an exact conversion to 8-bit RGB gives, divided by 255. Each
    channel is summed in place from the components' parts (the model input, every frame)."""
    _, height, width = out.shape
    with _mapped(buffer, layout) as (data, offsets, strides):
        components = [_component(data, offsets, strides, layout, c, height, width) for c in range(3)]
        for k in range(3):
            channel = out[k]
            if layout.components is None:  # R, G and B already
                np.multiply(components[k], np.float32(1.0 / 255.0), out=channel)
                continue
            np.take(layout.components[0, :, k], components[0], out=channel)
            for c in (1, 2):
                part = layout.components[c, :, k]
                if part.any():  # Cb has no part in R, nor Cr in B
                    channel += np.take(part, components[c])
            np.rint(channel, out=channel)
            np.clip(channel, 0.0, 255.0, out=channel)
            channel *= np.float32(1.0 / 255.0)


def _component(data: np.ndarray, offsets: Sequence[int], strides: Sequence[int], layout: Layout, c: int,
               height: int, width: int) -> np.ndarray:
    """Component ``c`` (R, G, B or Y', Cb, Cr) of a mapped frame as ``[height, width]`` uint8, a view of
    its plane where it is not subsampled (valid while mapped), else each value repeated over its block."""
    plane, rows, columns = layout.planes[c], layout.row_shift[c], layout.column_shift[c]
    shape = (-(-height >> rows), -(-width >> columns))
    start = offsets[plane] + layout.pixel_offset[c]
    component = np.lib.stride_tricks.as_strided(
        data[start:], shape=shape, strides=(strides[plane], layout.pixel_stride[c]), writeable=False)
    if rows or columns:
        component = component[(np.arange(height) >> rows)[:, None], np.arange(width) >> columns]
    return component


@contextlib.contextmanager
def _mapped(buffer: Gst.Buffer, layout: Layout) -> Iterator[tuple[np.ndarray, Sequence[int], Sequence[int]]]:
    """The frame's bytes while it is mapped, and its planes' offsets and strides (its video meta's, if any)."""
    meta = GstVideo.buffer_get_video_meta(buffer)
    offsets, strides = (meta.offset, meta.stride) if meta is not None else (layout.offsets, layout.strides)
    ok, mapped = buffer.map(Gst.MapFlags.READ)
    if not ok:
        raise RuntimeError("cannot map a frame")
    try:
        yield np.frombuffer(mapped.data, dtype=np.uint8, count=mapped.size), offsets, strides
    finally:
        buffer.unmap(mapped)
