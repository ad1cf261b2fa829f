"""The second stages of the defects use case: an anomaly model looks at each counted part,
a classifier names the state of each tool at the check station.

The detector finds parts and the defects it was trained on; an anomaly model
(anomalib's outputs, trained on good parts only) catches what nobody labelled. A
part is looked at once, in the frame in which it is counted at the inspection line:
a square crop around its box (the side ``1 + 2 * margin`` times the box's longer
side, as the model was trained), averaged down to the model's input, scored.

The crop is cut from the full-resolution frame, converted to RGB only when a part
is counted (a few times a second on a busy line), never for every frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.inference.anomaly import AnomalyParser
from appliance.inference.classify import Classification, ClassifierParser
from appliance.inference.engine import Engine
from appliance.types import Box

GRID = 16  # the heat map in events: GRID x GRID cells over the crop


@dataclass(frozen=True)
class Inspection:
    score: float
    anomalous: bool
    crop: Box  # the square looked at, in source pixels
    heat: list[list[float]]  # GRID x GRID cell maxima of the anomaly map, rows top to bottom
    peak: tuple[float, float]  # source pixel of the map's maximum


def square_around(box: Box, width: int, height: int, margin: float, minimum: int) -> tuple[int, int, int]:
    """``(left, top, side)`` of the square crop centred on ``box``, kept inside the frame."""
    x1, y1, x2, y2 = box
    side = max(minimum, int(math.ceil(max(x2 - x1, y2 - y1) * (1 + 2 * margin))) + 4)
    side = max(1, min(side, width, height))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return left, top, side


def part_alone(crop: np.ndarray, box: Box, left: int, top: int, pad: int = 2) -> np.ndarray:
    """The crop with everything outside the part's box (``pad`` pixels wider) painted in
    the median colour of what lies outside: a neighbouring part or the belt's rail at the
    crop's edge is not this part's anomaly."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    keep = np.zeros(crop.shape[:2], dtype=bool)
    keep[max(y1 - top - pad, 0):max(y2 - top + pad + 1, 0), max(x1 - left - pad, 0):max(x2 - left + pad + 1, 0)] = True
    outside = crop[~keep]
    if outside.size == 0:
        return crop
    return np.where(keep[..., None], crop, np.median(outside, axis=0).astype(crop.dtype))


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """``[S, S, C]`` -> ``[size, size, C]`` float32, each output pixel the mean of the source
    pixels under it (fractional edges weighted), like OpenCV's INTER_AREA."""
    weights = _area_weights(image.shape[0], size)
    columns = weights if image.shape[1] == image.shape[0] else _area_weights(image.shape[1], size)
    data = image.astype(np.float32)
    return np.einsum("ys,sxc->yxc", weights, np.einsum("xs,ysc->yxc", columns, data))


def _area_weights(n: int, size: int) -> np.ndarray:
    """``[size, n]``: the share of each source pixel in each output pixel (rows sum to 1)."""
    edges = np.linspace(0.0, n, size + 1)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixel = np.arange(n, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(ends, pixel + 1) - np.maximum(starts, pixel), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def crop_input(rgb: np.ndarray, box: Box, margin: float, size: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The model input ``[1, 3, size, size]`` float32 RGB 0..1 for the thing in ``box`` of an RGB
    frame (its square crop, the rest painted out, averaged down), and the crop's ``(left, top, side)``."""
    height, width = rgb.shape[:2]
    left, top, side = square_around(box, width, height, margin, size)
    crop = part_alone(rgb[top:top + side, left:left + side], box, left, top)
    pixels = crop if side == size else area_resize(crop, size)
    batch = np.asarray(pixels, dtype=np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
    return np.ascontiguousarray(batch), (left, top, side)


def square_input_size(engine: Engine, kind: str, default: int) -> int:
    """The side of a second-stage model's square input (``default`` when dynamic)."""
    size = int(engine.input.shape[3] or default)
    if engine.input.shape[2] not in (None, size):
        raise ValueError(f"{kind} model {engine.name!r} needs a square input, has {engine.input.shape}")
    return size


class AnomalyInspector:
    """Scores one part's crop with an anomaly engine."""

    def __init__(self, engine: Engine, parser: AnomalyParser, margin: float = 0.1) -> None:
        self.engine = engine
        self.parser = parser
        self.margin = margin
        self.size = square_input_size(engine, "anomaly", 64)

    def inspect(self, rgb: np.ndarray, box: Box) -> Inspection:
        batch, (left, top, side) = crop_input(rgb, box, self.margin, self.size)
        outputs = self.engine.infer(batch)
        result = self.parser.parse(outputs, [o.name for o in self.engine.outputs])[0]
        amap = result.anomaly_map
        rows, cols = amap.shape
        heat = amap[: rows - rows % GRID or rows, : cols - cols % GRID or cols]
        if heat.shape[0] >= GRID and heat.shape[1] >= GRID:
            heat = heat.reshape(GRID, heat.shape[0] // GRID, GRID, heat.shape[1] // GRID).max(axis=(1, 3))
        py, px = np.unravel_index(int(np.argmax(amap)), amap.shape)
        return Inspection(
            score=result.score,
            anomalous=self.parser.is_anomalous(result),
            crop=(float(left), float(top), float(left + side), float(top + side)),
            heat=np.round(heat.astype(np.float64), 3).tolist(),
            peak=(float(left + (px + 0.5) * side / cols), float(top + (py + 0.5) * side / rows)),
        )


class CropClassifier:
    """Names the kind of one thing from its crop with a classifier engine (a tool's state)."""

    def __init__(self, engine: Engine, parser: ClassifierParser, margin: float = 0.1, threshold: float = 0.0) -> None:
        self.engine = engine
        self.parser = parser
        self.margin = margin
        self.threshold = threshold  # verdicts less probable than this are not to be trusted
        self.size = square_input_size(engine, "classifier", 96)

    def classify(self, rgb: np.ndarray, box: Box) -> Classification:
        batch, _ = crop_input(rgb, box, self.margin, self.size)
        return self.parser.parse(self.engine.infer(batch))[0]
