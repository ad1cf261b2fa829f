"""The tool-state classifier's training, at toy size: crops through the appliance's own crop,
deterministic training, an ONNX export that the appliance's engine and ``classify`` parser read
with the same verdicts as torch, and the command that writes model, labels and card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tools.training import tool_states as training


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return training.crops(range(1, 5), 6)


def test_crops_are_the_appliance_s_crops_of_the_tool(data: tuple[np.ndarray, np.ndarray]) -> None:
    from appliance.analytics.inspection import crop_input
    from tools.scenes.production import sample_tool_views

    images, states = data
    assert images.shape == (24, training.SIZE, training.SIZE, 3) and images.dtype == np.uint8
    assert set(states.tolist()) <= {0, 1, 2} and len(set(states.tolist())) >= 2
    frame, box, state = sample_tool_views(1, 6)[0]
    assert training.STATES.index(state) == states[0]
    rng = np.random.default_rng([1, 31])
    expected, _ = crop_input(np.ascontiguousarray(frame[:, :, ::-1]), training.jitter(box, rng), training.MARGIN,
                             training.SIZE)
    assert np.abs(images[0].astype(np.float32) / 255 - expected[0].transpose(1, 2, 0)).max() <= 0.5 / 255 + 1e-6


def test_jitter_moves_each_edge_by_at_most_its_share() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        x1, y1, x2, y2 = training.jitter((100.0, 50.0, 200.0, 90.0), rng)
        assert abs(x1 - 100) <= 6 and abs(x2 - 200) <= 6 and abs(y1 - 50) <= 2.4 and abs(y2 - 90) <= 2.4


def test_same_seed_same_weights_and_the_export_agrees(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    from appliance.inference.classify import ClassifierParser
    from appliance.inference.onnx_engine import load_engine
    from tests.inference.onnx_models import model_config

    images, states = data
    config = training.TrainConfig(steps=4, batch_size=8, width=4, threads=1)
    first, second = training.train(images, states, config), training.train(images, states, config)
    assert first.steps_done == 4 and np.isfinite(first.losses).all()
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())
    path = training.export_onnx(first.model, tmp_path / "states.onnx", {"seed": "0"})
    engine = load_engine(model_config(path, training.STATES, training.SIZE, parser="classify"))
    try:
        batch = np.ascontiguousarray(images[:5].transpose(0, 3, 1, 2), dtype=np.float32) / 255
        verdicts = ClassifierParser(training.STATES, "states").parse(engine.infer(batch))
    finally:
        engine.close()
    torch_probs = training.probabilities(first.model, images[:5])
    assert np.allclose([v.probabilities for v in verdicts], torch_probs, atol=1e-5)


def test_the_command_writes_model_labels_and_card(tmp_path: Path) -> None:
    from tools import train_tool_state_model

    assert train_tool_state_model.main([
        "--seed", "1", "--steps", "3", "--batch-size", "4", "--threads", "1", "--train-seeds", "2",
        "--per-seed", "3", "--views", "1", "--eval-seeds", "2", "--out", str(tmp_path),
    ]) == 0
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "tool_states.onnx")).metadata_props}
    assert meta["steps"] == "3" and meta["training_command"].startswith("python tools/train_tool_state_model.py")
    assert (tmp_path / "tool_states.labels").read_text().split() == list(training.STATES)
    card = (tmp_path / "tool_states.md").read_text()
    assert "**Accuracy " in card and meta["training_command"] in card and "6 tools of `sample_tool_views`" in card
    with pytest.raises(SystemExit):
        train_tool_state_model.main(["--train-seeds", "9000"])  # would train on held-out seeds
