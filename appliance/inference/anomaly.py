"""Anomaly model outputs (anomalib's layout) -> one score and one anomaly map per item.

An anomaly model is trained on good parts only and says *how unusual* a crop
looks, not *what* it is. This parser reads the two outputs that anomalib's ONNX
exports name ``pred_score`` and ``anomaly_map``, by name (their order, and extra
outputs such as ``pred_label``/``pred_mask``, do not matter); a model without
them (older exports with a single ``output``, say) is refused with the expected
and the found outputs:

* ``pred_score`` ``[N]`` or ``[N, 1]``: higher = more anomalous;
* ``anomaly_map`` ``[N, 1, H, W]`` or ``[N, H, W]``: per-pixel anomaly, in
  model-input pixels (anomalib maps come at input resolution).

A result is anomalous when its score is at least ``threshold``. Scores are used
as the model emits them: anomalib's post-processor, when exported with the model,
normalises so that 0.5 is the learned threshold, and so does this project's
``engines/anomaly.onnx`` (0.5 = the 99th percentile of good calibration crops;
see its model card).

Configuration (a second-stage model: the defects rules give it each counted
part's crop, see ``appliance/analytics/inspection.py``)::

    models:
      - id: anomaly
        onnx: ../engines/anomaly.onnx
        labels: ../engines/anomaly.labels   # one line: anomaly
        input: {width: 64, height: 64}
        parser: anomaly
        confidence: 0.5                      # the threshold on pred_score

``load_engine`` checks the model with ``AnomalyParser(model.confidence, model.id)``.
Its ``parse`` differs from the detector parsers': it takes the output names
(``[o.name for o in engine.outputs]``; ``Engine.infer`` returns outputs in that
order) instead of letterboxes, and maps to source pixels only on demand
(:func:`map_to_source`), because most crops need the score alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from appliance.inference.engine import ModelMismatch, TensorSpec
from appliance.inference.letterbox import Letterbox

SCORE = "pred_score"
MAP = "anomaly_map"
EXPECTED = f"{SCORE!r} [N] or [N, 1] and {MAP!r} [N, 1, H, W] or [N, H, W]"


@dataclass(frozen=True)
class AnomalyResult:
    """One item's anomaly score and its ``[H, W]`` float32 map in model-input pixels."""

    score: float
    anomaly_map: np.ndarray


def _shape_text(shape: Sequence[object]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _score_fits(shape: Sequence[int | None]) -> bool:
    return len(shape) == 1 or (len(shape) == 2 and shape[1] in (None, 1))


def _map_fits(shape: Sequence[int | None]) -> bool:
    return len(shape) == 3 or (len(shape) == 4 and shape[1] in (None, 1))


class AnomalyParser:
    """Checks a model for the ``pred_score``/``anomaly_map`` pair and parses its outputs."""

    def __init__(self, threshold: float, model_name: str) -> None:
        threshold = float(threshold)
        if not np.isfinite(threshold):
            raise ValueError(f"model {model_name!r}: anomaly threshold must be finite, got {threshold}")
        self.threshold = threshold
        self.model_name = model_name

    def _mismatch(self, found: str) -> ModelMismatch:
        return ModelMismatch(f"model {self.model_name!r}: expected outputs {EXPECTED}, found {found}")

    def check(self, outputs: Sequence[TensorSpec]) -> None:
        """Refuse (``ModelMismatch``, expected versus found) a model without a fitting pair."""
        found = ", ".join(f"{o.name!r} {_shape_text(o.shape)} {o.dtype}" for o in outputs) or "no outputs"
        by_name = {o.name: o for o in outputs}
        score, amap = by_name.get(SCORE), by_name.get(MAP)
        if score is None or amap is None:
            raise self._mismatch(found)
        fits = (
            _score_fits(score.shape)
            and _map_fits(amap.shape)
            and score.dtype.startswith("float")
            and amap.dtype.startswith("float")
            and (score.shape[0] is None or amap.shape[0] is None or score.shape[0] == amap.shape[0])
        )
        if not fits:
            raise self._mismatch(found)

    def parse(
        self,
        outputs: Mapping[str, np.ndarray] | Sequence[np.ndarray],
        names: Sequence[str] | None = None,
    ) -> list[AnomalyResult]:
        """One result per batch item.

        ``outputs`` is either a mapping by output name, or the list ``Engine.infer``
        returns together with ``names``, the output names in the same order
        (``[o.name for o in engine.outputs]``).
        """
        if isinstance(outputs, Mapping):
            by_name = dict(outputs)
        else:
            if names is None:
                raise ValueError(f"model {self.model_name!r}: outputs given as a list need their names")
            if len(names) != len(outputs):
                raise ValueError(
                    f"model {self.model_name!r}: {len(outputs)} outputs but {len(names)} names ({list(names)})"
                )
            by_name = dict(zip(names, outputs, strict=True))
        if SCORE not in by_name or MAP not in by_name:
            raise self._mismatch(", ".join(repr(n) for n in by_name) or "no outputs")
        score = np.asarray(by_name[SCORE])
        amap = np.asarray(by_name[MAP])
        if not (_score_fits(score.shape) and _map_fits(amap.shape)) or score.shape[0] != amap.shape[0]:
            raise self._mismatch(f"{SCORE!r} {_shape_text(score.shape)}, {MAP!r} {_shape_text(amap.shape)}")
        scores = score.reshape(-1).astype(np.float32, copy=False).tolist()
        maps = amap[:, 0] if amap.ndim == 4 else amap
        if maps.dtype != np.float32:
            maps = maps.astype(np.float32)
        return [AnomalyResult(float(s), np.ascontiguousarray(m)) for s, m in zip(scores, maps, strict=True)]

    def is_anomalous(self, result: AnomalyResult) -> bool:
        """``score >= threshold``."""
        return result.score >= self.threshold


def map_to_source(anomaly_map: np.ndarray, letterbox: Letterbox) -> np.ndarray:
    """An ``[H, W]`` map in model-input pixels -> ``[src_h, src_w]`` float32 in source pixels.

    The letterbox borders are cropped and the image area is resized by nearest
    neighbour: each source pixel takes the map value under its centre. A map
    smaller than the model input (``H, W`` other than ``dst_h, dst_w``) is read
    as covering the whole input, scaled. numpy only, no loops over pixels.
    """
    amap = np.asarray(anomaly_map)
    if amap.ndim == 3 and amap.shape[0] == 1:
        amap = amap[0]
    if amap.ndim != 2 or amap.shape[0] == 0 or amap.shape[1] == 0:
        raise ValueError(f"anomaly map must be [H, W], got {_shape_text(amap.shape)}")
    height, width = amap.shape
    lb = letterbox
    # source pixel centre -> model-input coordinate -> map index
    x = lb.pad_x + (np.arange(lb.src_w, dtype=np.float64) + 0.5) * lb.scale_x
    y = lb.pad_y + (np.arange(lb.src_h, dtype=np.float64) + 0.5) * lb.scale_y
    cols = np.clip(np.floor(x * (width / lb.dst_w)).astype(np.intp), 0, width - 1)
    rows = np.clip(np.floor(y * (height / lb.dst_h)).astype(np.intp), 0, height - 1)
    return np.ascontiguousarray(amap[rows[:, None], cols[None, :]], dtype=np.float32)
