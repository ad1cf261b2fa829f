"""The shipped demo detectors, run through the appliance's own engine and parser, find
the objects of held-out generated scenes (seeds the training never saw)."""

from __future__ import annotations

import itertools

import pytest

from appliance.config.schema import ModelConfig
from tests.support import REPO
from tools.training.data import held_out_frames
from tools.training.evaluate import evaluate, operating_class_confidence, operating_confidence

DETECTORS = ("defects", "ppe", "animals", "hazards")
FRAMES = 60
# (scenes, frames) where 60 frames of 2 scenes hold too few objects: fire and smoke are in some scenes only
SAMPLE = {"hazards": (4, 160)}
# The bar these tests hold the shipped models to (micro-averaged over classes, at the
# operating threshold of the model card): the pack's target (recall >= 0.9 at precision
# >= 0.9), or a little below what a model reaches on these frames today where that is
# higher (defects P 0.98 R 1.00, ppe P 0.98 R 0.96, animals P 0.91 R 1.00, hazards P 0.99 R 0.99), so that
# a worse retrained model fails.
MIN_PRECISION = {"defects": 0.95, "ppe": 0.94, "animals": 0.9, "hazards": 0.95}
MIN_RECALL = {"defects": 0.95, "ppe": 0.92, "animals": 0.9, "hazards": 0.95}
# Boxes that must fit (AP at IoU 0.75), not just overlap: the PPE rules give an item to a person by
# where it lies in their box. The shipped ppe reaches 0.97 for people on these frames; a retrained
# one whose person boxes left out the head kept its AP50 and fell to 0.21.
MIN_AP75 = {"ppe": {"person": 0.9}}


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detector_finds_held_out_objects(name: str) -> None:
    path = REPO / "engines" / f"{name}.onnx"
    labels = (REPO / "engines" / f"{name}.labels").read_text().split()
    scenes, count = SAMPLE.get(name, (2, FRAMES))
    frames = ((image, objects) for _, image, objects in itertools.islice(held_out_frames(name, scenes), count))
    report = evaluate(name, path, labels, frames, operating_confidence(name), latency_runs=0,
                      class_confidence=operating_class_confidence(name))
    truth = sum(c.truth for c in report.scores.classes)
    found = sum(c.detections_at_operating for c in report.scores.classes)
    hits = sum(c.recall * c.truth for c in report.scores.classes if c.truth)
    assert truth > 50, "the held-out frames hold too few objects to judge"
    precision, recall = hits / max(found, 1), hits / truth
    assert precision >= MIN_PRECISION[name], (name, precision, recall)
    assert recall >= MIN_RECALL[name], (name, precision, recall)
    fit = {c.label: c.ap75 for c in report.scores.classes}
    for label, floor in MIN_AP75.get(name, {}).items():
        assert fit[label] >= floor, (name, label, fit[label])


# fire and smoke as they start, in held-out scenes of their own (engines/hazards.md, "As they start"): the
# rules confirm a sighting over a second, so a model that finds a young plume late reports it late. The
# shipped hazards model finds every one of its card's 30 within 0.5 s; the ppe detector, 33 % of the smokes
# within 1 s.
MIN_FOUND_WITHIN_1S = {"fire": 1.0, "smoke": 0.9}


def test_shipped_hazards_detector_finds_fire_and_smoke_as_they_start() -> None:
    from tools.training.evaluate import held_out_onsets

    labels = (REPO / "engines" / "hazards.labels").read_text().split()
    onsets = held_out_onsets("hazards", REPO / "engines" / "hazards.onnx", labels, 8, operating_confidence("hazards"),
                             class_confidence=operating_class_confidence("hazards"))
    for label, floor in MIN_FOUND_WITHIN_1S.items():
        delays = [o.delay_s for o in onsets if o.label == label]
        assert len(delays) == (6 if label == "smoke" else 4)  # smoke alone, fire and smoke, smoke, fire alone
        within = sum(d is not None and d <= 1.0 for d in delays) / len(delays)
        assert within >= floor, (label, [o for o in onsets if o.label == label])


@pytest.mark.parametrize("name", DETECTORS)
def test_shipped_detector_fits_its_layout_and_size(name: str) -> None:
    """The model has its training plan's input size, the YOLOv8 layout for it, and the demo
    pipeline letterboxes to that size."""
    from appliance.config.loader import load_config
    from appliance.inference.onnx_engine import load_engine
    from tools.train_demo_models import PLANS
    from tools.training.detector import num_anchors

    path = REPO / "engines" / f"{name}.onnx"
    labels = (REPO / "engines" / f"{name}.labels").read_text().split()
    assert path.stat().st_size <= 5 * 2**20
    width, height = PLANS[name]["input"]  # type: ignore[misc]
    engine = load_engine(ModelConfig.model_validate({
        "id": name, "onnx": str(path), "labels": labels, "input": {"width": width, "height": height},
    }))
    assert engine.input.shape[1:] == (3, height, width)
    assert engine.outputs[0].shape[1:] == (4 + len(labels), num_anchors(height, width))
    demo = {m.id: m for m in load_config(REPO / "pipelines" / "demo.yaml").models}
    assert (demo[name].input.width, demo[name].input.height) == (width, height)
    assert demo[name].confidence == operating_confidence(name)
    assert demo[name].class_confidence == operating_class_confidence(name)
    card = (REPO / "engines" / f"{name}.md").read_text()
    assert "mAP50" in card and "tools/train_demo_models.py" in card
    assert f"[N, 3, {height}, {width}]" in card


# the shipped classifier reaches 0.9x on these tools (engines/tool_states.md has the figure
# on 600 tools); a worse retrained one fails
MIN_TOOL_STATE_ACCURACY = 0.9


def test_shipped_tool_state_classifier_names_held_out_tools() -> None:
    """Through the appliance's crop, engine and classify parser, on tools of held-out seeds."""
    from tools.train_tool_state_model import evaluate

    scores = evaluate(REPO / "engines" / "tool_states.onnx", range(9000, 9020), 6, latency_runs=0)
    assert scores["tools"] == 120
    per_state = scores["per_state"]
    assert scores["accuracy"] >= MIN_TOOL_STATE_ACCURACY, per_state
    assert all(v["recall"] >= 0.8 for v in per_state.values()), per_state


# the shipped anomaly model reaches AUROC 0.988, recall 0.92 and 1 % false alarms at its suggested
# threshold on these crops (engines/anomaly.md has the figures on 1600); a worse retrained one fails
MIN_ANOMALY_AUROC, MIN_ANOMALY_RECALL, MAX_ANOMALY_FALSE_ALARMS = 0.97, 0.85, 0.03


def test_shipped_anomaly_model_flags_held_out_defective_crops_it_was_never_shown() -> None:
    """Through ``load_engine`` and the anomaly parser, on crops of a held-out seed (half defective)."""
    import numpy as np

    from appliance.inference.anomaly import AnomalyParser
    from tools.evaluate_anomaly_model import DEFAULT_THRESHOLD, engine_for, score
    from tools.scenes.production import sample_patches
    from tools.training.anomaly import auroc, to_batch

    crops = sample_patches(9000, 400, 64, 0.5)
    defective = np.array([bad for _, bad, _ in crops])
    engine = engine_for(REPO / "engines" / "anomaly.onnx")
    try:
        scores = score(engine, AnomalyParser(DEFAULT_THRESHOLD, "anomaly"), to_batch([crop for crop, _, _ in crops]))
    finally:
        engine.close()
    assert auroc(scores, defective) >= MIN_ANOMALY_AUROC
    assert float((scores[defective] >= DEFAULT_THRESHOLD).mean()) >= MIN_ANOMALY_RECALL
    assert float((scores[~defective] >= DEFAULT_THRESHOLD).mean()) <= MAX_ANOMALY_FALSE_ALARMS


# the shipped item classifier misses 0.8 % of worn items at most and sees 1.4 % of those not worn at most,
# per item, on 5525 held-out people (engines/ppe_items.md); here, on 850, 0.6 % of its verdicts are wrong
# (an item that few people lack, like goggles, has few to be wrong about: 3 of 65). A worse retrained one fails.
MAX_ITEM_ERROR, MAX_ITEM_ERROR_OVERALL = 0.1, 0.02


def test_shipped_item_classifier_names_what_held_out_people_wear() -> None:
    """Through the appliance's crop, engine and attributes parser, on the people of held-out scenes."""
    from appliance.config.loader import load_config
    from tools.train_ppe_item_model import evaluate
    from tools.training import ppe_items

    scores = evaluate(REPO / "engines" / "ppe_items.onnx", range(9000, 9008), 15, latency_runs=0)
    errors = scores["errors"]
    assert scores["people"] > 500 and set(errors) == set(ppe_items.ITEMS)
    wrong = sum(e["missed"] * e["wearing"] + e["false"] * e["not_wearing"] for e in errors.values())
    judged = sum(e["wearing"] + e["not_wearing"] for e in errors.values())
    assert wrong / judged <= MAX_ITEM_ERROR_OVERALL, errors
    assert all(e["missed"] <= MAX_ITEM_ERROR and e["false"] <= MAX_ITEM_ERROR for e in errors.values()), errors
    demo = {m.id: m for m in load_config(REPO / "pipelines" / "demo.yaml").models}["ppe_items"]
    assert (demo.input.width, demo.input.height, demo.parser) == (ppe_items.WIDTH, ppe_items.HEIGHT, "attributes")
    assert (REPO / "engines" / "ppe_items.labels").read_text().split() == list(ppe_items.ITEMS)
