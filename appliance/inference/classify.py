"""Image classifier outputs -> one label and its probability per crop, or each label's own
probability per crop.

A classifier is a second-stage model: the rules give it the crop of something a
detector found and it says *which kind* it is (the tool station's ``tool_states``
model says whether a tool is clean, dirty or damaged). The layout is the one
Ultralytics' ``-cls`` and torchvision exports share:

* one output ``[N, C]``, ``C`` = the number of labels, one row per crop; rows that
  are probabilities (non-negative, summing to 1) are used as they are, other rows
  are read as logits and normalised with a softmax.

An attribute model (``parser: attributes``) has the same layout, but each label is a
yes-or-no question of its own (the ``ppe_items`` model: does this person wear a
helmet, a mask, gloves …): values in 0..1 are probabilities, a row with any value
outside is read as logits, each through a sigmoid.

Configuration (the crops come from ``rules.defects.tool_check``)::

    models:
      - id: tool_states
        onnx: ../engines/tool_states.onnx
        labels: ../engines/tool_states.labels   # clean, dirty, damaged: the states
        input: {width: 96, height: 96}
        parser: classify
        confidence: 0.5                          # verdicts below this are not counted

``load_engine`` checks the model with ``ClassifierParser(labels, model.id)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.inference.engine import ModelMismatch, TensorSpec

PROBABILITY_TOLERANCE = 1e-3  # how far from 1 a row may sum and still be probabilities


@dataclass(frozen=True)
class Classification:
    """One crop's most probable label, its probability, and all probabilities in label order."""

    label: str
    confidence: float
    probabilities: tuple[float, ...]


def _shape_text(shape: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


class ClassifierParser:
    """Checks a model for the ``[N, C]`` layout and parses its output: one label per row."""

    def __init__(self, labels: Sequence[str], model_name: str) -> None:
        if not labels:
            raise ValueError(f"model {model_name!r}: a classifier needs labels")
        self.labels = tuple(labels)
        self.model_name = model_name

    def _mismatch(self, found: str) -> ModelMismatch:
        return ModelMismatch(f"model {self.model_name!r}: expected one output [N, {len(self.labels)}] "
                             f"(one score per label: {', '.join(self.labels)}), found {found}")

    def check(self, outputs: Sequence[TensorSpec]) -> None:
        """Refuse (``ModelMismatch``, expected versus found) a model whose first output does not fit."""
        if not outputs:
            raise self._mismatch("no outputs")
        first = outputs[0]
        fits = len(first.shape) == 2 and first.shape[1] in (None, len(self.labels))
        if not fits or not first.dtype.startswith("float"):
            raise self._mismatch(f"{first.name!r} {_shape_text(first.shape)} {first.dtype}")

    def scores(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """The first output as ``[N, C]`` float64, refused if it has another shape."""
        scores = np.asarray(outputs[0], dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != len(self.labels):
            raise self._mismatch(_shape_text(scores.shape))
        return scores

    def parse(self, outputs: Sequence[np.ndarray]) -> list[Classification]:
        """One classification per batch item of the first output."""
        return [self._one(row) for row in self.scores(outputs)]

    def _one(self, row: np.ndarray) -> Classification:
        if not (row.min() >= 0.0 and abs(row.sum() - 1.0) <= PROBABILITY_TOLERANCE):
            shifted = np.exp(row - row.max())
            row = shifted / shifted.sum()
        best = int(np.argmax(row))
        return Classification(self.labels[best], float(row[best]), tuple(float(v) for v in row))


class AttributeParser(ClassifierParser):
    """The ``[N, C]`` layout read as C independent probabilities per row (multi-label)."""

    def probabilities(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, C]`` each label's probability; a row with values outside 0..1 holds logits."""
        scores = self.scores(outputs)
        logits = ((scores < 0.0) | (scores > 1.0)).any(axis=1)
        if logits.any():
            scores[logits] = 1.0 / (1.0 + np.exp(-scores[logits]))
        return scores
