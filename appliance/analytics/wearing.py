"""What each person wears, named by a classifier from the person's crop: the second stage
of the ppe rules (``rules.ppe.item_check``).

A full-frame detector sees a 20×10-pixel pair of goggles at its stride, and its items
must then be given to a person by where they lie: where people stand close together or
one behind the other, a neighbour's helmet fits as well as their own. A classifier that
looks at one person's crop says which items *that* person wears, each with its own
probability (a person wears a helmet and gloves, not one or the other), and needs no
association.

The crop is a window of a fixed aspect centred on the person's box: the box's height
plus ``margin`` of it above and below, as wide as the model's input is for that height
(a person's box is narrower; arms and gloves swing out of it). It is read on a grid of
the model's input size straight from the frame (nearest pixel, through
``FrameView.sample``), so a frame is never converted: 8192 pixels for a 64×128 input,
whatever the person's size. Outside the frame, the border's pixels repeat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from appliance.inference.classify import AttributeParser
from appliance.inference.engine import Engine

Sample = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (ys, xs) -> [..., 3] RGB


def array_sample(rgb: np.ndarray) -> Sample:
    """The ``Sample`` of an ``[H, W, 3]`` RGB array (training crops, tests)."""
    def sample(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return rgb[ys, xs]

    return sample


def crop_grid(boxes: np.ndarray, size: tuple[int, int], width: int, height: int,
              margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixels each person's crop reads: rows ``[N, height, 1]`` and columns ``[N, 1, width]`` of a
    frame of ``size`` (width, height), for ``[N, 4]`` boxes (x1, y1, x2, y2)."""
    frame_w, frame_h = size
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tall = (b[:, 3] - b[:, 1]) * (1.0 + 2.0 * margin)
    wide = tall * (width / height)
    left = (b[:, 0] + b[:, 2] - wide) / 2
    top = (b[:, 1] + b[:, 3] - tall) / 2
    ys = top[:, None] + tall[:, None] * ((np.arange(height) + 0.5) / height)[None, :]
    xs = left[:, None] + wide[:, None] * ((np.arange(width) + 0.5) / width)[None, :]
    ys = np.clip(np.floor(ys), 0, frame_h - 1).astype(np.intp)
    xs = np.clip(np.floor(xs), 0, frame_w - 1).astype(np.intp)
    return ys[:, :, None], xs[:, None, :]


def person_crops(sample: Sample, size: tuple[int, int], boxes: np.ndarray, width: int, height: int,
                 margin: float) -> np.ndarray:
    """float32 ``[N, 3, height, width]`` RGB 0..1: the crops of ``boxes`` (the models' input)."""
    ys, xs = crop_grid(boxes, size, width, height, margin)
    pixels = np.asarray(sample(ys, xs))  # [N, height, width, 3]
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


class WornItems:
    """Each person's probability of wearing each of the model's labels (the items), from their crops."""

    def __init__(self, engine: Engine, parser: AttributeParser, margin: float = 0.06, threshold: float = 0.5) -> None:
        self.engine = engine
        self.parser = parser
        self.margin = margin
        self.threshold = threshold  # an item at least this probable is worn
        self.labels = parser.labels
        _, _, height, width = engine.input.shape
        if height is None or width is None:
            raise ValueError(f"item model {engine.name!r} needs a fixed input height and width, has "
                             f"{engine.input.shape}")
        self.width, self.height = int(width), int(height)

    def probabilities(self, sample: Sample, size: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
        """``[N, labels]`` for the ``[N, 4]`` person boxes of a frame of ``size`` that ``sample`` reads."""
        if len(boxes) == 0:
            return np.zeros((0, len(self.labels)))
        batch = person_crops(sample, size, boxes, self.width, self.height, self.margin)
        step = max(self.engine.max_batch, 1)
        return np.concatenate([self.parser.probabilities(self.engine.infer(batch[i:i + step]))
                               for i in range(0, len(batch), step)])
