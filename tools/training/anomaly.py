"""The anomaly model: a small segmentation network trained on good crops only.

What it is
----------
A small U-Net looks at a 64x64 RGB crop of one part (vial, blister, tablet) or
tool and says, per pixel, how likely that pixel is *not* what a good part looks
like there. It never sees a defective crop: it learns from good crops into which
generic synthetic anomalies are pasted, with the pasted region as the target
(the discriminative half of DRAEM, Zavrtanik et al. 2021; CutPaste, Li et al.
2021). The synthetic anomalies are generic shapes, none of them the plant's
defect kinds, placed mostly on the part or on its outline (the pixels that differ
from the crop's border colour):

* *foreign material*: an irregular blob or a jagged stroke of a random colour;
* *misplaced material*: a random region copied from elsewhere in the crop or
  from another crop (CutPaste);
* *missing material*: a random region replaced by background taken from the
  crop's own border.

Only pixels that the paste really changed count as anomalous. The per-pixel
probability, smoothed with a Gaussian (7x7, sigma 1.5), is the **anomaly map**;
its maximum is the **score**.

Why not an autoencoder (rebuild the crop, score the rebuild error)? One was tried
first: after 400 steps it reached image AUROC 0.73 on held-out crops, and crops of
vials without their cap scored *lower* than good ones (the coloured cap is what
an autoencoder rebuilds worst). The segmentation network, at the same cost,
learns what matters: 0.97.

The exported ONNX speaks anomalib's output names (opset 17, built here with
``onnx.helper`` from the trained weights, batch norm folded into the
convolutions; no exporter involved):

* input ``input`` ``[N, 3, 64, 64]`` float32, RGB, 0..1 (dynamic ``N``);
* ``pred_score`` ``[N]`` float32: higher = more anomalous;
* ``anomaly_map`` ``[N, 1, 64, 64]`` float32, in model-input pixels.

Normalisation: the map is multiplied by ``1 / (2 * p99)``, where ``p99`` is the
99th percentile of the raw scores of *good calibration crops* (a seed not used
for training). So a good crop scores 0.5 or less about 99 % of the time, and
``pred_score == max(anomaly_map)`` exactly. Scores are not clipped (the ranking
stays intact above 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from tools.training.onnx_graph import GraphBuilder
from tools.training.steps import Batches, run_steps

INPUT_NAME = "input"
SCORE_NAME = "pred_score"
MAP_NAME = "anomaly_map"
SIZE = 64
BLUR_SIZE = 7
BLUR_SIGMA = 1.5
CALIBRATION_PERCENTILE = 99.0
CALIBRATION_TARGET = 0.5  # the calibration percentile of good scores maps to this
HELD_OUT_SEED = 9000  # seeds from here on are for evaluation only
CHANGED = 0.05  # a pasted pixel counts as anomalous when it moved this much (mean over RGB, 0..1)
FOREGROUND = 0.1  # a pixel this far from the border's median colour (mean over RGB) is part of the part

#: ``sample_patches(seed, count, size, defective_fraction)`` -> ``[(bgr uint8, defective, kind)]``
PatchSource = Callable[..., list[tuple[np.ndarray, bool, str]]]


# -- data ---------------------------------------------------------------------

def to_batch(patches: Sequence[np.ndarray]) -> np.ndarray:
    """BGR uint8 ``[H, W, 3]`` crops -> the model input: ``[N, 3, H, W]`` float32 RGB 0..1."""
    if not len(patches):
        return np.zeros((0, 3, SIZE, SIZE), dtype=np.float32)
    stack = np.stack([np.asarray(p) for p in patches])
    if stack.ndim != 4 or stack.shape[3] != 3 or stack.dtype != np.uint8:
        raise ValueError(f"expected BGR uint8 crops [H, W, 3], got {stack.dtype} {list(stack.shape[1:])}")
    rgb = stack[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(255.0)


def good_images(source: PatchSource, seed: int, count: int) -> np.ndarray:
    """``count`` good crops of ``seed`` as a model-input batch."""
    patches = source(seed, count, SIZE, 0.0)
    bad = [kind for _, defective, kind in patches if defective]
    if bad:
        raise ValueError(f"asked for good crops only, got {len(bad)} defective ones ({bad[0]})")
    return to_batch([p for p, _, _ in patches])


def good_images_of_seeds(source: PatchSource, seeds: Sequence[int], per_seed: int) -> np.ndarray:
    """``per_seed`` good crops of each seed. Many seeds rather than many crops of one:
    a seed fixes its scene's backgrounds (belt and mat textures and colours)."""
    return np.concatenate([good_images(source, seed, per_seed) for seed in seeds])


# -- synthetic anomalies ------------------------------------------------------

def _sub(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> cv2's fixed point with 3 fractional bits."""
    return np.round(np.asarray(points, dtype=np.float64) * 8).astype(np.int32)


def _blob(rng: np.random.Generator, height: int, width: int, cx: float, cy: float) -> np.ndarray:
    """An irregular blob (2-5 overlapping ellipses) around (cx, cy), soft-edged, 0..1."""
    mask = np.zeros((height, width), np.uint8)
    size = rng.uniform(5, 16)
    for _ in range(int(rng.integers(2, 6))):
        ox, oy = rng.uniform(-size / 4, size / 4, 2)
        ax, ay = rng.uniform(size / 6, size / 2.5, 2)
        cv2.ellipse(mask, tuple(_sub((cx + ox, cy + oy)).tolist()), tuple(_sub((ax, ay)).tolist()),
                    float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA, 3)
    return cv2.GaussianBlur(mask, (3, 3), 0).astype(np.float32) / 255.0


def _stroke(rng: np.random.Generator, height: int, width: int, cx: float, cy: float) -> np.ndarray:
    """A jagged polyline 8-40 px long, 1-2 px thick, through about (cx, cy), 0..1."""
    mask = np.zeros((height, width), np.uint8)
    count = int(rng.integers(2, 7))
    length = rng.uniform(8, 40)
    base = rng.uniform(0, 2 * math.pi)
    x, y = cx - length / 2 * math.cos(base), cy - length / 2 * math.sin(base)
    points = [(x, y)]
    for _ in range(count):
        angle = base + rng.uniform(-0.8, 0.8)
        x, y = x + length / count * math.cos(angle), y + length / count * math.sin(angle)
        points.append((x, y))
    cv2.polylines(mask, [_sub(points)], False, 255, int(rng.integers(1, 3)), cv2.LINE_AA, 3)
    return mask.astype(np.float32) / 255.0


def _region(rng: np.random.Generator, height: int, width: int, cx: float, cy: float) -> np.ndarray:
    """A random ellipse or convex polygon 5-24 px across around (cx, cy), hard-edged, 0/1."""
    mask = np.zeros((height, width), np.uint8)
    if rng.random() < 0.5:
        axes = tuple(_sub(rng.uniform(2.5, 12, 2)).tolist())
        cv2.ellipse(mask, tuple(_sub((cx, cy)).tolist()), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1,
                    cv2.LINE_AA, 3)
    else:
        count = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, count))
        radii = rng.uniform(3, 12, count)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [_sub(points)], 255, cv2.LINE_AA, 3)
    return (mask >= 128).astype(np.float32)


def _foreground(image: np.ndarray) -> np.ndarray:
    """Where the ``[3, H, W]`` crop differs from the median colour of its border: the part, roughly."""
    border = np.concatenate([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], axis=1)
    median = np.median(border, axis=1)
    return np.abs(image - median[:, None, None]).mean(axis=0) > FOREGROUND


def _centre(rng: np.random.Generator, where: np.ndarray) -> tuple[float, float]:
    """A random pixel centre of ``where`` (anywhere when it is empty or with probability 0.3)."""
    height, width = where.shape
    points = np.flatnonzero(where)
    if points.size == 0 or rng.random() < 0.3:
        return float(rng.uniform(0, width)), float(rng.uniform(0, height))
    y, x = divmod(int(points[int(rng.integers(points.size))]), width)
    return x + 0.5, y + 0.5


def synthesize(images: np.ndarray, rng: np.random.Generator, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(anomalous copy, target)``: about ``fraction`` of the ``[N, 3, H, W]`` items get
    one synthetic anomaly; ``target`` ``[N, 1, H, W]`` is 1 where it changed a pixel.

    Anomalies land mostly on the part (foreign material on its surface) or on its
    outline (misplaced or missing material), found as the pixels that differ from
    the crop's border colour."""
    out = images.copy()
    count, _, height, width = images.shape
    target = np.zeros((count, 1, height, width), np.float32)
    kernel = np.ones((3, 3), np.uint8)
    for index in np.flatnonzero(rng.random(count) < fraction):
        image = images[index]
        part = _foreground(image).astype(np.uint8)
        kind = int(rng.integers(4))
        if kind < 2:  # foreign material: a blob or a stroke of one colour (plus a little grain)
            cx, cy = _centre(rng, part > 0)
            mask = _blob(rng, height, width, cx, cy) if kind == 0 else _stroke(rng, height, width, cx, cy)
            pick = rng.random()
            if pick < 0.4:
                colour = rng.random(3)
            elif pick < 0.7:
                colour = rng.uniform(0.0, 0.35) * rng.uniform(0.6, 1.0, 3)
            else:  # a colour seen elsewhere in the batch
                colour = images[int(rng.integers(count)), :, int(rng.integers(height)), int(rng.integers(width))]
            paint = np.asarray(colour, np.float32)[:, None, None] + rng.normal(0, 0.02, (3, height, width))
            mask = mask * np.float32(rng.uniform(0.6, 1.0))
        else:
            outline = part - cv2.erode(part, kernel)
            mask = _region(rng, height, width, *_centre(rng, outline > 0))
            if kind == 2:  # misplaced material: from elsewhere here, or from another crop
                source = images[int(rng.integers(count))] if rng.random() < 0.5 else image
                shift = rng.integers(-height // 2, height // 2 + 1, 2)
            else:  # missing material: background from a border of this crop
                source = image
                ys, xs = np.nonzero(mask)
                if ys.size == 0:
                    continue
                border_y, border_x = (rng.uniform(0, 6, 2) + rng.integers(0, 2, 2) * (height - 6)).astype(int)
                shift = np.array([int(ys.mean()) - border_y, int(xs.mean()) - border_x])
            paint = np.roll(source, tuple(int(v) for v in shift), axis=(1, 2))
        blended = image * (1 - mask) + paint * mask
        changed = (np.abs(blended - image).mean(axis=0) > CHANGED) & (mask > 0.5)
        out[index] = np.clip(blended, 0.0, 1.0)
        target[index, 0] = changed
    return out, target


# -- the network ----------------------------------------------------------------

class _Block(nn.Sequential):
    """3x3 convolution (no bias), batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
        )


def _up(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")


class Segmenter(nn.Module):
    """U-Net: 64 -> 32 -> 16 -> 8 -> 4 and back up to 32 with skips; logits at 32x32,
    upsampled (nearest) to 64x64."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        c = width
        self.down1 = _Block(3, 2 * c, 2)       # 32
        self.down2 = _Block(2 * c, 4 * c, 2)   # 16
        self.down3 = _Block(4 * c, 4 * c, 2)   # 8
        self.down4 = _Block(4 * c, 4 * c, 2)   # 4
        self.up3 = _Block(8 * c, 4 * c)        # 8
        self.up2 = _Block(8 * c, 2 * c)        # 16
        self.up1 = _Block(4 * c, 2 * c)        # 32
        self.head = nn.Conv2d(2 * c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        d4 = self.down4(d3)
        u3 = self.up3(torch.cat([_up(d4), d3], dim=1))
        u2 = self.up2(torch.cat([_up(u3), d2], dim=1))
        u1 = self.up1(torch.cat([_up(u2), d1], dim=1))
        return _up(self.head(u1))


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """A normalised ``[size, size]`` Gaussian, float32."""
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(axis**2) / (2 * sigma**2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


class AnomalyModel(nn.Module):
    """Segmenter + scoring: ``forward(x) -> (pred_score [N], anomaly_map [N, 1, H, W])``."""

    def __init__(self, segmenter: Segmenter, scale: float = 1.0) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.register_buffer("blur", torch.from_numpy(gaussian_kernel())[None, None].clone())
        self.scale = float(scale)

    def raw_map(self, x: torch.Tensor) -> torch.Tensor:
        probability = torch.sigmoid(self.segmenter(x))
        pad = BLUR_SIZE // 2
        padded = nn.functional.pad(probability, (pad, pad, pad, pad), mode="replicate")
        return nn.functional.conv2d(padded, self.blur)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        anomaly_map = self.raw_map(x) * self.scale
        return anomaly_map.amax(dim=(1, 2, 3)), anomaly_map


# -- training -------------------------------------------------------------------

@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 1000
    batch_size: int = 32
    width: int = 16
    learning_rate: float = 3e-3
    anomaly_fraction: float = 0.5  # share of each batch that gets a synthetic anomaly
    focal_gamma: float = 2.0
    max_seconds: float | None = None  # a wall-clock cap: stops early (and says so) when hit
    threads: int = 2


@dataclass
class TrainResult:
    model: AnomalyModel
    config: TrainConfig
    steps_done: int
    seconds: float
    stopped_early: bool
    losses: list[float] = field(default_factory=list)
    calibration_p99: float | None = None


@contextmanager
def fixed_torch_state(threads: int, seed: int | None = None) -> Iterator[None]:
    """Deterministic kernels, a fixed thread count (results depend on it: reductions
    split differently) and, with ``seed``, a seeded generator; the process's own
    settings and random state come back afterwards."""
    was_deterministic, was_threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        try:
            if seed is not None:
                torch.manual_seed(seed)
            torch.use_deterministic_algorithms(True)
            torch.set_num_threads(max(int(threads), 1))
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.set_num_threads(was_threads)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-pixel binary focal loss (Lin et al. 2017), mean over pixels."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_true = p * target + (1 - p) * (1 - target)
    return ((1 - p_true) ** gamma * bce).mean()


def train(
    images: np.ndarray,
    config: TrainConfig = TrainConfig(),
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train on good ``[N, 3, 64, 64]`` crops; same data + config = same weights."""
    if images.ndim != 4 or images.shape[1:] != (3, SIZE, SIZE) or len(images) < 2:
        raise ValueError(f"expected at least 2 crops [N, 3, {SIZE}, {SIZE}], got {list(images.shape)}")
    with fixed_torch_state(config.threads, config.seed):
        rng = np.random.default_rng(config.seed)
        segmenter = Segmenter(config.width)
        model = AnomalyModel(segmenter)
        optimiser = torch.optim.Adam(segmenter.parameters(), lr=config.learning_rate)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimiser, max_lr=config.learning_rate, total_steps=max(config.steps, 1), pct_start=0.15
        )
        batches = Batches(len(images), config.batch_size, rng)

        def loss_of_next_batch() -> torch.Tensor:
            noisy, target = synthesize(images[batches.next()], rng, config.anomaly_fraction)
            return focal_loss(segmenter(torch.from_numpy(noisy)), torch.from_numpy(target), config.focal_gamma)

        segmenter.train()
        run = run_steps(loss_of_next_batch, optimiser, schedule, config.steps, config.max_seconds, log)
        segmenter.eval()
    return TrainResult(model, config, run.steps_done, run.seconds, run.stopped_early, run.losses)


@torch.no_grad()
def raw_scores(model: AnomalyModel, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Unnormalised scores (max of the blurred probability map), float64 ``[N]``."""
    model.eval()
    out = [
        model.raw_map(torch.from_numpy(np.ascontiguousarray(images[i:i + chunk]))).amax(dim=(1, 2, 3)).numpy()
        for i in range(0, len(images), chunk)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def calibrate(result: TrainResult, good: np.ndarray) -> float:
    """Scale the model so the 99th percentile of ``good``'s scores is 0.5; returns the raw percentile.
    Runs with the training's thread count, so the scale (and the file) is the same on any machine."""
    with fixed_torch_state(result.config.threads):
        p99 = float(np.percentile(raw_scores(result.model, good), CALIBRATION_PERCENTILE))
    if not p99 > 0:
        raise ValueError(f"calibration crops score {p99}: cannot normalise")
    result.model.scale = CALIBRATION_TARGET / p99
    result.calibration_p99 = p99
    return p99


@torch.no_grad()
def predict(model: AnomalyModel, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pred_score [N], anomaly_map [N, 1, H, W])`` in PyTorch, as the ONNX model gives them."""
    model.eval()
    score, amap = model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)))
    return score.numpy(), amap.numpy()


# -- metrics --------------------------------------------------------------------

def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counting half.
    ``labels`` true = anomalous (the positive class, expected to score higher)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positive = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.size} scores but {positive.size} labels")
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both classes")
    order = np.argsort(scores, kind="mergesort")
    ranked = scores[order]
    # every member of a run of equal scores gets the run's mean (1-based) rank
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    ends = np.r_[starts[1:], scores.size]
    ranks = np.empty(scores.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


# -- export ---------------------------------------------------------------------

def _folded(block: _Block) -> tuple[np.ndarray, np.ndarray]:
    """A conv + batch-norm block's weights with the (eval-mode) batch norm folded in."""
    conv, norm = block[0], block[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
    std = torch.sqrt(norm.running_var + norm.eps)
    gain = norm.weight / std
    weight = conv.weight * gain[:, None, None, None]
    bias = norm.bias - norm.running_mean * gain
    return weight.detach().numpy().astype(np.float32), bias.detach().numpy().astype(np.float32)


def export_onnx(model: AnomalyModel, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model`` as ONNX (opset 17): input ``input`` ``[N, 3, 64, 64]``, outputs
    ``pred_score`` ``[N]`` and ``anomaly_map`` ``[N, 1, 64, 64]``. Batch norm is folded
    into the convolutions and the normalisation scale into the blur kernel;
    ``metadata`` goes into the model's ``metadata_props``."""
    seg = model.segmenter
    g = GraphBuilder()
    g.const("x2", np.array([1, 1, 2, 2], np.float32))

    def block(x: str, name: str, stride: int = 1) -> str:
        weight, bias = _folded(getattr(seg, name))
        return g.node("Relu", [g.conv(x, f"{name}.conv", weight, bias, stride)], name)

    def up(x: str) -> str:
        return g.node("Resize", [x, "", "x2"], f"{x}.up", mode="nearest",
                      coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def cat(a: str, b: str, name: str) -> str:
        return g.node("Concat", [a, b], name, axis=1)

    d1 = block(INPUT_NAME, "down1", 2)
    d2 = block(d1, "down2", 2)
    d3 = block(d2, "down3", 2)
    d4 = block(d3, "down4", 2)
    u3 = block(cat(up(d4), d3, "cat3"), "up3")
    u2 = block(cat(up(u3), d2, "cat2"), "up2")
    u1 = block(cat(up(u2), d1, "cat1"), "up1")
    head = seg.head
    logits = up(g.conv(u1, "head", head.weight.detach().numpy().astype(np.float32),
                       head.bias.detach().numpy().astype(np.float32)))
    probability = g.node("Sigmoid", [logits], "probability")
    pad = BLUR_SIZE // 2
    padded = g.node("Pad", [probability, g.const("pads", np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64))],
                    "padded", mode="edge")
    kernel = (model.blur.numpy() * np.float32(model.scale)).astype(np.float32)
    g.node("Conv", [padded, g.const("blur", kernel)], MAP_NAME, kernel_shape=[BLUR_SIZE, BLUR_SIZE])
    g.node("ReduceMax", [MAP_NAME], SCORE_NAME, axes=[1, 2, 3], keepdims=0)
    return g.save(path, "anomaly_segmenter", "tools.training.anomaly", [(INPUT_NAME, ["N", 3, SIZE, SIZE])],
                  [(SCORE_NAME, ["N"]), (MAP_NAME, ["N", 1, SIZE, SIZE])], metadata)
