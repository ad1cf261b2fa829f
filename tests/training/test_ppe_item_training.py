"""The PPE item classifier's training, at toy size: each person's crop through the appliance's own
crop with what the scene's script says they wear (an item hidden by someone in front counting
neither way), deterministic training, an ONNX export that the appliance's engine and ``attributes``
parser read with the same probabilities as torch, and the command that writes model, labels and card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tools.training import ppe_items as training


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return training.crops(range(1, 3), every=60, processes=1)


def test_labels_follow_the_script_and_hidden_items_count_neither_way() -> None:
    worn = {"helmet": "worn", "mask": "improper", "gloves": "worn", "gown": None, "goggles": None}
    target, known = training.labels_of(worn, {"helmet", "mask_improper"})
    assert dict(zip(training.ITEMS, target.tolist())) == {
        "helmet": 1, "mask": 0, "mask_improper": 1, "gloves": 1, "gown": 0, "goggles": 0}
    assert dict(zip(training.ITEMS, known.tolist())) == {  # the gloves are worn but hidden
        "helmet": 1, "mask": 1, "mask_improper": 1, "gloves": 0, "gown": 1, "goggles": 1}
    _, known = training.labels_of(worn, {"helmet", "gloves"})  # a mask, but how is unseen
    assert known[training.ITEMS.index("mask")] == known[training.ITEMS.index("mask_improper")] == 0


def test_crops_are_the_appliance_s_crops_of_each_person(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    from appliance.analytics.wearing import array_sample, person_crops
    from tools.scenes.cleanroom import CleanRoomScene

    images, targets, known = data
    assert images.shape[1:] == (training.HEIGHT, training.WIDTH, 3) and images.dtype == np.uint8
    assert len(images) == len(targets) == len(known) >= 10
    scene = CleanRoomScene(1, 40.0)
    frame, truth = next(iter(scene.frames()))
    first = next(o for o in truth.objects if o.label == "person" and o.attributes["in_sight"])
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    box = training.jitter(first.box, np.random.default_rng([1, 41]))
    expected = person_crops(array_sample(rgb), (scene.width, scene.height), np.array([box]),
                            training.WIDTH, training.HEIGHT, training.MARGIN)[0]
    assert np.abs(images[0].astype(np.float32) / 255 - expected.transpose(1, 2, 0)).max() <= 0.5 / 255 + 1e-6
    worn = scene.worn(first.track_id)[0]
    assert targets[0][training.ITEMS.index("helmet")] == (worn["helmet"] is not None)


def test_same_seed_same_weights_and_the_export_agrees(data: tuple[np.ndarray, np.ndarray, np.ndarray],
                                                      tmp_path: Path) -> None:
    from appliance.config.schema import ModelConfig
    from appliance.inference.classify import AttributeParser
    from appliance.inference.onnx_engine import load_engine

    images, targets, known = data
    config = training.TrainConfig(steps=4, batch_size=8, width=4, threads=1)
    first, second = training.train(images, targets, known, config), training.train(images, targets, known, config)
    assert first.steps_done == 4 and np.isfinite(first.losses).all()
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    path = training.export_onnx(first.model, tmp_path / "items.onnx", {"seed": "0"})
    engine = load_engine(ModelConfig(id="items", onnx=path, labels=list(training.ITEMS), parser="attributes",
                                     input={"width": training.WIDTH, "height": training.HEIGHT}))
    try:
        batch = np.ascontiguousarray(images[:5].transpose(0, 3, 1, 2), dtype=np.float32) / 255
        onnx_probs = AttributeParser(training.ITEMS, "items").probabilities(engine.infer(batch))
    finally:
        engine.close()
    assert np.allclose(onnx_probs, training.probabilities(first.model, images[:5]), atol=1e-5)


def test_item_errors_count_only_known_people() -> None:
    probabilities = np.array([[0.9] * 6, [0.1] * 6, [0.9] * 6])
    targets = np.array([[1.0] * 6, [1.0] * 6, [0.0] * 6])
    known = np.array([[1.0] * 6, [1.0] * 6, [0.0] * 5 + [1.0]])
    errors = training.item_errors(probabilities, targets, known)
    assert errors["helmet"] == {"wearing": 2, "not_wearing": 0, "missed": 0.5, "false": 0.0}
    assert errors["goggles"] == {"wearing": 2, "not_wearing": 1, "missed": 0.5, "false": 1.0}


def test_the_command_writes_model_labels_and_card(tmp_path: Path) -> None:
    from tools import train_ppe_item_model

    assert train_ppe_item_model.main([
        "--seed", "1", "--steps", "3", "--batch-size", "4", "--threads", "1", "--train-seeds", "2",
        "--every", "60", "--eval-seeds", "1", "--out", str(tmp_path),
    ]) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "ppe_items.onnx")).metadata_props}
    assert meta["steps"] == "3" and meta["training_command"].startswith("python tools/train_ppe_item_model.py")
    assert (tmp_path / "ppe_items.labels").read_text().split() == list(training.ITEMS)
    card = (tmp_path / "ppe_items.md").read_text()
    assert "| goggles |" in card and meta["training_command"] in card and "scenes 9000-9000" in card
    with pytest.raises(SystemExit):
        train_ppe_item_model.main(["--train-seeds", "9000"])  # would train on held-out scenes
