"""The classifier layout ``[N, C]``: checked against the labels, probabilities kept, logits normalised (one
label per row), or each label's own probability (attributes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.inference.classify import AttributeParser, ClassifierParser
from appliance.inference.engine import ModelMismatch, TensorSpec
from tests.inference.onnx_models import model_config, switch_model

STATES = ["clean", "dirty", "damaged"]


def test_probabilities_are_kept_and_logits_normalised() -> None:
    parser = ClassifierParser(STATES, "states")
    probs, logits = [0.1, 0.7, 0.2], [0.0, np.log(2.0), np.log(5.0)]
    first, second = parser.parse([np.array([probs, logits], dtype=np.float32)])
    assert first.label == "dirty" and first.confidence == pytest.approx(0.7)
    assert first.probabilities == pytest.approx(tuple(probs))
    assert second.label == "damaged" and second.probabilities == pytest.approx((1 / 8, 2 / 8, 5 / 8))


@pytest.mark.parametrize("spec, found", [
    (TensorSpec("output0", (None, 4), "float32"), "'output0' [?, 4] float32"),
    (TensorSpec("output0", (None, 3, 1), "float32"), "'output0' [?, 3, 1] float32"),
    (TensorSpec("output0", (None, 3), "int64"), "'output0' [?, 3] int64"),
])
def test_a_layout_that_does_not_fit_the_labels_is_refused(spec: TensorSpec, found: str) -> None:
    parser = ClassifierParser(STATES, "states")
    parser.check([TensorSpec("output0", (None, 3), "float32")])
    with pytest.raises(ModelMismatch, match=r"expected one output \[N, 3\] \(one score per label: clean, dirty, "
                                             r"damaged\), found " + found.replace("[", r"\[").replace("?", r"\?")):
        parser.check([spec])
    with pytest.raises(ModelMismatch, match=r"found \[2, 4\]"):
        parser.parse([np.zeros((2, 4), np.float32)])


def test_load_engine_checks_a_classifier_against_its_labels(tmp_path: Path) -> None:
    from appliance.inference.onnx_engine import load_engine

    path = switch_model(tmp_path / "states.onnx", np.array([0.5, 0.25, 0.25]), np.array([0.0, 0.0, 1.0]), size=96)
    engine = load_engine(model_config(path, STATES, 96, parser="classify"))
    try:
        white = np.ones((1, 3, 96, 96), np.float32)
        (verdict,) = ClassifierParser(STATES, "states").parse(engine.infer(white))
        assert verdict.label == "damaged" and verdict.confidence == pytest.approx(1.0)
    finally:
        engine.close()
    with pytest.raises(ModelMismatch, match=r"expected one output \[N, 2\]"):
        load_engine(model_config(path, ["clean", "dirty"], 96, parser="classify"))


def test_attributes_are_each_labels_own_probability_and_logits_go_through_a_sigmoid() -> None:
    parser = AttributeParser(["helmet", "mask", "gloves"], "items")
    rows = np.array([[0.9, 0.8, 0.1], [0.0, -2.0, 3.0]], dtype=np.float32)
    probabilities = parser.probabilities([rows])
    assert probabilities[0] == pytest.approx([0.9, 0.8, 0.1])  # not normalised: a person wears several
    assert probabilities[1] == pytest.approx([0.5, 1 / (1 + np.exp(2.0)), 1 / (1 + np.exp(-3.0))])
    with pytest.raises(ModelMismatch, match=r"found \[2, 2\]"):
        parser.probabilities([np.zeros((2, 2), np.float32)])


def test_load_engine_checks_an_attribute_model_against_its_labels(tmp_path: Path) -> None:
    from appliance.inference.onnx_engine import load_engine

    path = switch_model(tmp_path / "items.onnx", np.array([0.0, 0.25]), np.array([1.0, 0.75]), size=32)
    engine = load_engine(model_config(path, ["helmet", "gown"], 32, parser="attributes"))
    try:
        white = np.ones((1, 3, 32, 32), np.float32)
        assert AttributeParser(["helmet", "gown"], "items").probabilities(engine.infer(white))[0] == \
            pytest.approx([1.0, 0.75])
    finally:
        engine.close()
    with pytest.raises(ModelMismatch, match=r"expected one output \[N, 3\]"):
        load_engine(model_config(path, ["helmet", "gown", "mask"], 32, parser="attributes"))
