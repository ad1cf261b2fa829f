"""The anomaly model's training, export and scoring, on a small stand-in patch generator.

The stand-in (``standin_patches``) draws single parts on a light conveyor: vials
(body + cap), tablets, blisters and tools, with position, size and shade jitter;
defective ones get a dark crack, a chipped corner, a missing cap or a stain. It
has the signature of ``tools.scenes.production.sample_patches`` so the training
code cannot tell them apart, and it keeps these tests independent of the scene
generator and fast (a training of a few seconds on a tiny network).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from appliance.inference.anomaly import AnomalyParser
from tools.training import anomaly as training

PARTS = ("vial", "tablet", "blister", "tool")
DEFECTS = {"vial": ("crack", "missing_cap", "stain"), "tablet": ("chip", "crack", "stain"),
           "blister": ("crack", "stain"), "tool": ("damaged", "stain")}


def _part(rng: np.random.Generator, kind: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A good part on a light background (BGR uint8) and its foreground mask."""
    shade = rng.uniform(-12, 12)
    image = np.full((size, size, 3), 200 + shade, dtype=np.float32)
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)
    mask = np.zeros((size, size), np.uint8)
    c = size / 2 + rng.uniform(-3, 3, 2)
    s = size / 64 * rng.uniform(0.9, 1.1)
    cx, cy = int(c[0]), int(c[1])
    if kind == "vial":
        cv2.rectangle(mask, (int(cx - 10 * s), int(cy - 14 * s)), (int(cx + 10 * s), int(cy + 22 * s)), 1, -1)
        image[mask > 0] = (235, 225, 215)
        cap = np.zeros_like(mask)
        cv2.rectangle(cap, (int(cx - 8 * s), int(cy - 24 * s)), (int(cx + 8 * s), int(cy - 14 * s)), 1, -1)
        image[cap > 0] = (60, 60, 170)
        mask |= cap
    elif kind == "tablet":
        cv2.circle(mask, (cx, cy), int(16 * s), 1, -1)
        image[mask > 0] = (245, 245, 245)
    elif kind == "blister":
        cv2.rectangle(mask, (int(cx - 22 * s), int(cy - 16 * s)), (int(cx + 22 * s), int(cy + 16 * s)), 1, -1)
        image[mask > 0] = (180, 180, 185)
        for dx in (-11, 11):
            for dy in (-7, 7):
                cv2.circle(image, (int(cx + dx * s), int(cy + dy * s)), int(5 * s), (240, 240, 240), -1)
    else:
        cv2.rectangle(mask, (int(cx - 26 * s), int(cy - 4 * s)), (int(cx + 26 * s), int(cy + 4 * s)), 1, -1)
        image[mask > 0] = (150, 150, 150)
    return image, mask


def _defect(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, kind: str) -> None:
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())
    if kind in ("crack", "damaged"):
        angle = rng.uniform(0, math.pi)
        length = rng.uniform(10, 18)
        p0 = (int(cx - length * math.cos(angle)), int(cy - length * math.sin(angle)))
        p1 = (int(cx + length * math.cos(angle)), int(cy + length * math.sin(angle)))
        cv2.line(image, p0, p1, (40, 40, 40), 2)
    elif kind == "chip":
        x0 = int(xs.max())
        cv2.circle(image, (x0, cy), 7, (200, 200, 200), -1)
    elif kind == "missing_cap":
        image[: int(ys.min()) + 10] = np.median(image[0:3, 0:3], axis=(0, 1))
    else:  # stain
        cv2.ellipse(image, (cx + int(rng.integers(-5, 6)), cy), (6, 4), 0, 0, 360, (40, 90, 140), -1)


def standin_patches(
    seed: int, count: int, size: int = 64, defective_fraction: float = 0.5
) -> list[tuple[np.ndarray, bool, str]]:
    """Like ``tools.scenes.production.sample_patches``: BGR uint8 crops, (crop, defective, kind)."""
    rng = np.random.default_rng(seed)
    out: list[tuple[np.ndarray, bool, str]] = []
    for _ in range(count):
        part = PARTS[int(rng.integers(len(PARTS)))]
        image, mask = _part(rng, part, size)
        defective = bool(rng.random() < defective_fraction)
        kind = ""
        if defective:
            kind = DEFECTS[part][int(rng.integers(len(DEFECTS[part])))]
            _defect(rng, image, mask, kind)
        out.append((np.clip(image, 0, 255).astype(np.uint8), defective, kind))
    return out


def _scratched(images: np.ndarray, seed: int) -> np.ndarray:
    """The same crops with a dark scratch drawn across the middle."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    for item in out:
        angle = rng.uniform(0, math.pi)
        t = np.linspace(-12, 12, 60)
        xs = np.clip(np.rint(32 + t * math.cos(angle)).astype(int), 0, 63)
        ys = np.clip(np.rint(32 + t * math.sin(angle)).astype(int), 0, 63)
        for dy in (0, 1):
            item[:, np.clip(ys + dy, 0, 63), xs] = 0.1
    return out


SMOKE = training.TrainConfig(seed=3, steps=100, batch_size=16, width=8, learning_rate=3e-3, threads=1)


@pytest.fixture(scope="module")
def trained() -> training.TrainResult:
    """A short training on stand-in crops, calibrated on crops of another seed."""
    result = training.train(training.good_images(standin_patches, 1, 160), SMOKE)
    training.calibrate(result, training.good_images(standin_patches, 2, 64))
    return result


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    images = training.good_images(standin_patches, 1, 32)
    config = training.TrainConfig(seed=5, steps=6, batch_size=8, width=4, threads=1)
    first, second = training.train(images, config), training.train(images, config)
    other = training.train(images, training.TrainConfig(seed=6, steps=6, batch_size=8, width=4, threads=1))
    first_state, second_state = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(first_state[k], second_state[k]) for k in first_state)
    assert first.losses == second.losses and first.steps_done == 6 and not first.stopped_early
    assert other.losses != first.losses
    assert not torch.equal(first_state["segmenter.head.weight"], other.model.state_dict()["segmenter.head.weight"])


def test_training_leaves_the_process_torch_settings_alone() -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.random.get_rng_state()
    other_threads = threads % 2 + 1  # differs from the process's count
    config = training.TrainConfig(steps=2, batch_size=4, width=4, threads=other_threads)
    training.train(training.good_images(standin_patches, 1, 8), config)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    assert torch.equal(torch.random.get_rng_state(), state)


def test_time_cap_stops_early_and_says_so() -> None:
    images = training.good_images(standin_patches, 1, 16)
    result = training.train(images, training.TrainConfig(steps=50, batch_size=4, width=4, max_seconds=0.0, threads=1))
    assert result.stopped_early and result.steps_done == 1


def test_synthetic_anomalies_mark_the_pixels_they_change() -> None:
    images = training.good_images(standin_patches, 7, 64)
    out, target = training.synthesize(images, np.random.default_rng(0), 0.5)
    assert out.shape == images.shape and target.shape == (64, 1, 64, 64)
    assert out.dtype == np.float32 and target.dtype == np.float32
    changed = np.abs(out - images).mean(axis=1, keepdims=True) > training.CHANGED
    assert not (target.astype(bool) & ~changed).any()  # marked pixels did change
    touched = (out != images).any(axis=(1, 2, 3))
    marked = target.any(axis=(1, 2, 3))
    assert 16 <= touched.sum() <= 48 and marked.sum() >= 0.8 * touched.sum()
    np.testing.assert_array_equal(out[~touched], images[~touched])
    none, none_target = training.synthesize(images, np.random.default_rng(0), 0.0)
    np.testing.assert_array_equal(none, images)
    assert not none_target.any()


def test_export_names_shapes_and_parity(trained: training.TrainResult, tmp_path: Path) -> None:
    path = training.export_onnx(trained.model, tmp_path / "anomaly.onnx")
    assert path.stat().st_size < 5_000_000
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [("input", ["N", 3, 64, 64], "tensor(float)")]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        ("pred_score", ["N"]), ("anomaly_map", ["N", 1, 64, 64])
    ]
    for count in (1, 3):
        images = training.good_images(standin_patches, 5, count)
        score, amap = session.run(None, {"input": images})
        assert score.shape == (count,) and amap.shape == (count, 1, 64, 64)
        assert score.dtype == np.float32 and amap.dtype == np.float32
        np.testing.assert_array_equal(score, amap.max(axis=(1, 2, 3)))
        want_score, want_map = training.predict(trained.model, images)  # batch norm folded: same numbers
        np.testing.assert_allclose(amap, want_map, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(score, want_score, rtol=1e-4, atol=1e-5)


def test_calibration_puts_the_good_p99_at_one_half(trained: training.TrainResult) -> None:
    score, _ = training.predict(trained.model, training.good_images(standin_patches, 2, 64))
    assert np.percentile(score, 99) == pytest.approx(0.5, rel=1e-4)


def test_parser_scores_scratched_parts_above_good_ones(trained: training.TrainResult, tmp_path: Path) -> None:
    """After a short training on good stand-in crops, the exported model read by the
    appliance's parser scores the same crops higher once a dark scratch is drawn on them."""
    path = training.export_onnx(trained.model, tmp_path / "anomaly.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    good = training.good_images(standin_patches, 9000, 24)
    bad = _scratched(good, 9001)
    parser = AnomalyParser(threshold=0.5, model_name="anomaly")
    good_results = parser.parse(session.run(None, {"input": good}), names)
    bad_results = parser.parse(session.run(None, {"input": bad}), names)
    good_scores = np.array([r.score for r in good_results])
    bad_scores = np.array([r.score for r in bad_results])
    labels = np.r_[np.zeros(len(good_scores)), np.ones(len(bad_scores))]
    assert training.auroc(np.r_[good_scores, bad_scores], labels) >= 0.95
    assert np.mean(bad_scores > good_scores) >= 0.9  # pairwise: the same crop, scratched
    assert np.mean([parser.is_anomalous(r) for r in bad_results]) >= 0.75
    # the map points at the scratch: its peak lies within a few pixels of the drawn line
    hot = [np.unravel_index(np.argmax(r.anomaly_map), r.anomaly_map.shape) for r in bad_results]
    on_line = [(bad[i].min(axis=0)[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] <= 0.1).any()
               for i, (y, x) in enumerate(hot)]
    assert np.mean(on_line) >= 0.75


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], 1.0),
        ([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1], 0.0),
        ([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
        ([0.1, 0.3, 0.2, 0.3], [0, 1, 0, 0], 2.5 / 3),  # beats 0.1 and 0.2, ties 0.3: (1 + 1 + 0.5) / 3
        ([3.0, 1.0, 2.0, 0.0, 2.0], [1, 0, 1, 0, 0], 5.5 / 6),
    ],
)
def test_auroc_from_ranks(scores: list[float], labels: list[int], expected: float) -> None:
    assert training.auroc(np.array(scores), np.array(labels)) == pytest.approx(expected)


def test_auroc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        training.auroc(np.array([0.1, 0.2]), np.array([0, 0]))


def test_train_and_evaluate_commands_write_model_labels_and_card(tmp_path: Path) -> None:
    """The two commands end to end on the real scene generator, at toy size."""
    from tools import evaluate_anomaly_model, train_anomaly_model

    assert train_anomaly_model.main([
        "--seed", "1", "--steps", "3", "--batch-size", "4", "--width", "4", "--threads", "1",
        "--train-seeds", "2", "--calibration-seeds", "1", "--per-seed", "6", "--out", str(tmp_path),
    ]) == 0
    model = tmp_path / "anomaly.onnx"
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert meta["seed"] == "1" and meta["steps"] == "3" and meta["stopped_early"] == "false"
    assert meta["training_command"].startswith("python tools/train_anomaly_model.py --seed 1 ")
    assert (tmp_path / "anomaly.labels").read_text() == "anomaly\n"
    card = tmp_path / "card.md"
    assert evaluate_anomaly_model.main([
        "--model", str(model), "--seeds", "9000", "--count", "24", "--runs", "2", "--card", str(card),
    ]) == 0
    text = card.read_text()
    assert "**Image AUROC " in text and "| 1 | " in text and "| 4 | " in text
    assert meta["training_command"] in text
    with pytest.raises(SystemExit):
        evaluate_anomaly_model.main(["--model", str(model), "--seeds", "42"])  # not a held-out seed
