"""Output parsers: raw model outputs -> Detections in source pixels.

Shared by both backends (DeepStream hands its raw output tensors here too). Three
YOLO layouts, chosen by ``ModelConfig.parser``:

* ``yolov8``: Ultralytics YOLOv8/YOLO11 raw head ``[N, 4+nc, A]``: ``cx, cy, w, h``
  in input pixels, then ``nc`` class scores (already sigmoid-ed, no objectness).
* ``yolov5``: ``[N, A, 5+nc]``: ``cx, cy, w, h, objectness``, then ``nc`` class
  probabilities; score = objectness x class probability.
* ``yolo_end2end``: ``[N, K, 6]``: ``x1, y1, x2, y2, score, class``, NMS already
  done inside the model (YOLOv10, Ultralytics ``end2end`` exports).

A detection is kept when its score is at least ``confidence`` (or its class's own
threshold, ``class_confidence``). Boxes are mapped
through the frame's letterbox and clipped to the frame; a box that lies entirely
in the letterbox borders (nothing of the frame in it) is dropped before NMS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.letterbox import Letterbox
from appliance.inference.nms import batched_nms
from appliance.types import Detection

if TYPE_CHECKING:
    from appliance.config.schema import ModelConfig
    from appliance.inference.engine import Engine

PARSER_KINDS = ("yolov8", "yolov5", "yolo_end2end")
MAX_NMS_CANDIDATES = 30000  # as Ultralytics: the best ones go to NMS, the rest are dropped


class Parser(Protocol):
    """Turns one batch of raw outputs into one detection list per batch item."""

    def check(self, outputs: Sequence[TensorSpec]) -> None:
        """Refuse (``ModelMismatch``) a model whose declared outputs cannot fit this parser."""
        ...

    def parse(self, outputs: list[np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]: ...


def make_parser(
    kind: str,
    labels: Sequence[str],
    confidence: float,
    iou: float,
    max_detections: int,
    model_name: str,
    class_confidence: Mapping[str, float] | None = None,
) -> Parser:
    """The parser for ``kind`` (one of ``PARSER_KINDS``); ``class_confidence``: labels with their
    own threshold in place of ``confidence``."""
    if not labels:
        raise ValueError(f"model {model_name!r}: no labels")
    thresholds = np.array([(class_confidence or {}).get(label, confidence) for label in labels], dtype=np.float32)
    settings = _Settings(tuple(labels), float(thresholds.min()), thresholds, float(iou), int(max_detections),
                         model_name)
    if kind == "yolov8":
        return YoloV8Parser(settings)
    if kind == "yolov5":
        return YoloV5Parser(settings)
    if kind == "yolo_end2end":
        return YoloEnd2EndParser(settings)
    raise ValueError(f"unknown parser {kind!r} (use one of {', '.join(PARSER_KINDS)})")


def parser_for(model: ModelConfig) -> Parser:
    """The parser of a full-frame detector's config."""
    return make_parser(model.parser, model.label_names(), model.confidence, model.iou, model.max_detections,
                       model.id, model.class_confidence)


@dataclass(frozen=True, slots=True)
class _Settings:
    labels: tuple[str, ...]
    confidence: float  # the lowest of the thresholds: candidates below it are no detection of any class
    thresholds: np.ndarray  # [classes] each class's threshold
    iou: float
    max_detections: int
    model_name: str


def _shape_text(shape: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class _YoloParser(ABC):
    """Common checks and the per-item tail (NMS, letterbox, Detection objects)."""

    #: layout description for messages, e.g. ``[N, 4+nc, anchors]``
    layout = ""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.labels = settings.labels
        self.num_classes = len(settings.labels)

    # -- shape checks --------------------------------------------------------
    @abstractmethod
    def _expected(self) -> str:
        """The expected output shape, for messages."""

    @abstractmethod
    def _fits(self, shape: Sequence[int | None]) -> bool:
        """Whether an output of this shape has this parser's layout."""

    def _mismatch(self, shape: Sequence[object]) -> ModelMismatch:
        return ModelMismatch(
            f"model {self.settings.model_name!r}: output expected {self._expected()} "
            f"({self.layout}, {self.num_classes} labels), found {_shape_text(shape)}"
        )

    def check(self, outputs: Sequence[TensorSpec]) -> None:
        if not outputs:
            raise ModelMismatch(f"model {self.settings.model_name!r}: has no outputs")
        if not self._fits(outputs[0].shape):
            raise self._mismatch(outputs[0].shape)

    def _first_output(self, outputs: list[np.ndarray], letterboxes: Sequence[Letterbox]) -> np.ndarray:
        if not outputs:
            raise ModelMismatch(f"model {self.settings.model_name!r}: no outputs")
        out = np.asarray(outputs[0])
        if not self._fits(out.shape):
            raise self._mismatch(out.shape)
        if out.shape[0] != len(letterboxes):
            raise ValueError(
                f"model {self.settings.model_name!r}: output batch {out.shape[0]} "
                f"but {len(letterboxes)} frames"
            )
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _best_passing(self, class_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``[nc, A]`` scores -> (class, score, anchor index) of the anchors where a class reaches its
        own threshold, each with its best such class. The top class of an anchor may be below its
        threshold while another passes its own lower one (a young flame under a helmet's 0.23, fire's
        threshold 0.05): that anchor is the passing class, not nothing."""
        thresholds = self.settings.thresholds
        candidates = np.flatnonzero(class_scores.max(axis=0) >= self.settings.confidence)
        scores = class_scores[:, candidates]
        passing = np.where(scores >= thresholds[:, None], scores, -1.0)
        classes = passing.argmax(axis=0)
        best = np.take_along_axis(passing, classes[None, :], axis=0)[0]
        hit = best >= 0.0
        return classes[hit], best[hit].astype(np.float32, copy=False), candidates[hit]

    # -- per item ------------------------------------------------------------
    def _detections(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        letterbox: Letterbox,
        suppress: bool,
    ) -> list[Detection]:
        """x1y1x2y2 input-pixel candidates (already above threshold) -> Detections."""
        limit = self.settings.max_detections
        # boxes entirely in the letterbox borders show nothing of the frame: drop them
        # first, so they take no place among the max_detections
        visible = (
            (np.minimum(boxes[:, 2], letterbox.pad_x + letterbox.scaled_w) > np.maximum(boxes[:, 0], letterbox.pad_x))
            & (np.minimum(boxes[:, 3], letterbox.pad_y + letterbox.scaled_h) > np.maximum(boxes[:, 1], letterbox.pad_y))
        )
        if not visible.all():
            boxes, scores, classes = boxes[visible], scores[visible], classes[visible]
        if suppress:
            if scores.size > MAX_NMS_CANDIDATES:
                top = np.argpartition(-scores, MAX_NMS_CANDIDATES)[:MAX_NMS_CANDIDATES]
                boxes, scores, classes = boxes[top], scores[top], classes[top]
            keep = batched_nms(boxes, scores, classes, self.settings.iou, limit)
        else:
            keep = np.argsort(-scores, kind="stable")[:limit]
        mapped = letterbox.to_source(boxes[keep]).tolist()
        kept_scores, kept_classes = scores[keep].tolist(), classes[keep].tolist()
        labels, name = self.labels, self.settings.model_name
        return [
            Detection(labels[c], s, (x1, y1, x2, y2), name)
            for (x1, y1, x2, y2), s, c in zip(mapped, kept_scores, kept_classes, strict=True)
        ]


def _xywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    half_w, half_h = w * 0.5, h * 0.5
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


class YoloV8Parser(_YoloParser):
    layout = "cx, cy, w, h, then one score per class, per anchor"

    def _expected(self) -> str:
        return f"[N, {4 + self.num_classes}, anchors]"

    def _fits(self, shape: Sequence[int | None]) -> bool:
        return len(shape) == 3 and shape[1] in (None, 4 + self.num_classes)

    def parse(self, outputs: list[np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        out = self._first_output(outputs, letterboxes)
        found: list[list[Detection]] = []
        for pred, letterbox in zip(out, letterboxes, strict=True):
            classes, scores, hit = self._best_passing(pred[4:])
            boxes = _xywh_to_xyxy(pred[0, hit], pred[1, hit], pred[2, hit], pred[3, hit])
            found.append(self._detections(boxes, scores, classes, letterbox, suppress=True))
        return found


class YoloV5Parser(_YoloParser):
    layout = "per anchor: cx, cy, w, h, objectness, then one probability per class"

    def _expected(self) -> str:
        return f"[N, anchors, {5 + self.num_classes}]"

    def _fits(self, shape: Sequence[int | None]) -> bool:
        return len(shape) == 3 and shape[2] in (None, 5 + self.num_classes)

    def parse(self, outputs: list[np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        out = self._first_output(outputs, letterboxes)
        threshold = self.settings.confidence
        found: list[list[Detection]] = []
        for pred, letterbox in zip(out, letterboxes, strict=True):
            # obj * cls <= obj (probabilities), so anchors below threshold on obj alone go first.
            rows = pred[pred[:, 4] >= threshold]
            joint = rows[:, 5:] * rows[:, 4:5]
            classes, scores, hit = self._best_passing(joint.T)
            rows = rows[hit]
            boxes = _xywh_to_xyxy(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
            found.append(self._detections(boxes, scores, classes, letterbox, suppress=True))
        return found


class YoloEnd2EndParser(_YoloParser):
    layout = "per detection: x1, y1, x2, y2, score, class"

    def _expected(self) -> str:
        return "[N, detections, 6]"

    def _fits(self, shape: Sequence[int | None]) -> bool:
        return len(shape) == 3 and shape[2] in (None, 6)

    def parse(self, outputs: list[np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        out = self._first_output(outputs, letterboxes)
        found: list[list[Detection]] = []
        for pred, letterbox in zip(out, letterboxes, strict=True):
            rows = pred[pred[:, 4] >= self.settings.confidence]
            classes = np.rint(rows[:, 5]).astype(np.int64)
            bad = (classes < 0) | (classes >= self.num_classes)
            if bad.any():
                raise ModelMismatch(
                    f"model {self.settings.model_name!r}: detection of class {int(classes[bad][0])} "
                    f"but only {self.num_classes} labels (classes 0..{self.num_classes - 1})"
                )
            hit = rows[:, 4] >= self.settings.thresholds[classes]
            found.append(self._detections(rows[hit, :4], rows[hit, 4], classes[hit], letterbox, suppress=False))
        return found


def check_outputs(model: ModelConfig, engine: Engine, where: str) -> Engine:
    """``engine`` when its outputs fit ``model``'s parser; else it is closed and refused
    (``ModelMismatch``, expected and found, and ``where`` the file is)."""
    from appliance.inference.anomaly import AnomalyParser
    from appliance.inference.classify import AttributeParser, ClassifierParser

    parser: Parser | AnomalyParser | ClassifierParser
    if model.parser == "anomaly":
        parser = AnomalyParser(model.confidence, model.id)
    elif model.parser == "classify":
        parser = ClassifierParser(model.label_names(), model.id)
    elif model.parser == "attributes":
        parser = AttributeParser(model.label_names(), model.id)
    else:
        parser = parser_for(model)
    try:
        parser.check(engine.outputs)
    except ModelMismatch as exc:
        engine.close()
        raise ModelMismatch(f"{exc} ({where})") from None
    return engine
