"""The shipped demo detectors, run through the appliance's own engine and parser, find
the objects of held-out generated scenes (seeds the training never saw)."""

from __future__ import annotations

import itertools

import pytest

from appliance.config.schema import ModelConfig
from tests.support import REPO
from tools.training.data import held_out_frames
from tools.training.evaluate import evaluate

DETECTORS = ("defects", "ppe", "animals")
FRAMES = 60
# The bar these tests hold the shipped models to (micro-averaged over classes, at the
# operating threshold of the model card), a little below what they reach on these
# frames today (defects P 0.90 R 1.00, ppe P 0.89 R 0.95, animals P 0.89 R 0.97), so
# that a worse retrained model fails. The pack's target is 0.9 for both: the
# precision of each is just under it.
MIN_PRECISION = {"defects": 0.86, "ppe": 0.85, "animals": 0.86}
MIN_RECALL = {"defects": 0.95, "ppe": 0.9, "animals": 0.94}


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detector_finds_held_out_objects(name: str) -> None:
    path = REPO / "engines" / f"{name}.onnx"
    labels = (REPO / "engines" / f"{name}.labels").read_text().split()
    frames = ((image, objects) for _, image, objects in itertools.islice(held_out_frames(name, 2), FRAMES))
    report = evaluate(name, path, labels, frames, latency_runs=0)
    truth = sum(c.truth for c in report.scores.classes)
    found = sum(c.detections_at_operating for c in report.scores.classes)
    hits = sum(c.recall * c.truth for c in report.scores.classes if c.truth)
    assert truth > 50, "the held-out frames hold too few objects to judge"
    precision, recall = hits / max(found, 1), hits / truth
    assert precision >= MIN_PRECISION[name], (name, precision, recall)
    assert recall >= MIN_RECALL[name], (name, precision, recall)


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detector_fits_its_layout_and_size(name: str) -> None:
    from appliance.inference.onnx_engine import load_engine

    path = REPO / "engines" / f"{name}.onnx"
    labels = (REPO / "engines" / f"{name}.labels").read_text().split()
    assert path.stat().st_size <= 5 * 2**20
    engine = load_engine(ModelConfig.model_validate({
        "id": name, "onnx": str(path), "labels": labels, "input": {"width": 320, "height": 320},
    }))
    assert engine.input.shape[1:] == (3, 320, 320)
    assert engine.outputs[0].shape[1:] == (4 + len(labels), 2100)
    card = (REPO / "engines" / f"{name}.md").read_text()
    assert "mAP50" in card and "tools/train_demo_models.py" in card
