"""Training of the demo detectors: assignment, loss and the loop (CPU, deterministic by seed).

Assignment: a simplified task-aligned assigner (TOOD / YOLOv8). An anchor point is a
candidate for a ground-truth box when it lies inside the box or within one stride of
its centre (so a 6-pixel stain still has candidates at stride 8); among the candidates
of each box the ``topk`` with the best alignment ``score ** 0.5 * iou ** 6`` are
positives; an anchor claimed by several boxes keeps the smallest box (by overlap, a
part would take every anchor of the chip or stain inside it, and the parser's one
class per anchor could never report the defect).

Loss: classification BCE against IoU-aware targets (the alignment normalised so that
each box's best anchor gets its best IoU: scores rank boxes by how well they fit) and
GIoU for the boxes, weighted by the same targets, both normalised by the target sum.

Loop: AdamW, linear warm-up then cosine decay, an EMA of the weights (the EMA is what
is exported), batches drawn with repeat-factor sampling (frames holding rare classes
come more often). All randomness comes from the seed; ``torch.use_deterministic_algorithms``
is on, so the same seed and data give the same weights. A time budget (``minutes``)
is respected: the cosine schedule runs on ``max(iteration fraction, time fraction)`` and
the loop stops when the time is up, so a slow machine gets a complete (shorter) schedule;
such a run depends on the machine's speed and says so (``budget_limited``).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tools.training.data import Augment, FrameSet, augment_batch
from tools.training.detector import Detector, DetectorConfig, anchor_points, decode_xyxy


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 3000
    batch: int = 16
    lr: float = 3e-3
    final_lr_fraction: float = 0.02
    weight_decay: float = 0.05
    warmup: int = 150
    seed: int = 0
    minutes: float | None = None  # wall-clock budget of the loop (rendering and export not included)
    box_weight: float = 5.0
    cls_weight: float = 1.0
    topk: int = 10
    centre_radius: float = 1.0  # in strides
    ema_decay: float = 0.999
    repeat_threshold: float = 0.3  # repeat-factor sampling: classes in fewer frames than this come more often
    band: bool = True  # train on the rows the frame covers (rounded out to 32 px), not the black borders
    crop: tuple[int, int] | None = None  # train on (height, width) crops (multiples of 32) instead
    object_crop: float = 0.8  # share of crops centred (with jitter) on a random object
    threads: int = 1  # on a shared 2-core machine, 2 threads thrash (measured ~5x slower than 1)
    device: str = "cpu"  # "cuda" trains the same recipe faster (not bit-identical to the CPU run)
    log_every: int = 50

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def set_determinism(seed: int, threads: int, device: str = "cpu") -> None:
    """Seeded and deterministic on the CPU; on CUDA some backward kernels (nearest upsampling)
    have no deterministic variant, so there they only warn."""
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=not device.startswith("cpu"))


# -- boxes ------------------------------------------------------------------------------

def pairwise_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``[..., G, 4]`` x ``[..., A, 4]`` x1y1x2y2 -> ``[..., G, A]`` IoU."""
    a_ = a.unsqueeze(-2)
    b_ = b.unsqueeze(-3)
    lt = torch.maximum(a_[..., :2], b_[..., :2])
    rb = torch.minimum(a_[..., 2:], b_[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a_[..., 2:] - a_[..., :2]).clamp(min=0).prod(-1)
    area_b = (b_[..., 2:] - b_[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


def giou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise GIoU of ``[K, 4]`` x1y1x2y2 boxes."""
    lt = torch.maximum(a[:, :2], b[:, :2])
    rb = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter + eps
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1) + eps
    iou = inter / union
    return iou - (hull - union) / hull


# -- assignment -------------------------------------------------------------------------

def pad_targets(targets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image ``[K, 5]`` -> boxes ``[B, G, 4]``, classes ``[B, G]`` (long), valid ``[B, G]``."""
    g = max(1, max((t.shape[0] for t in targets), default=0))
    boxes = torch.zeros(len(targets), g, 4)
    classes = torch.zeros(len(targets), g, dtype=torch.long)
    valid = torch.zeros(len(targets), g, dtype=torch.bool)
    for i, t in enumerate(targets):
        k = t.shape[0]
        if k:
            boxes[i, :k] = torch.from_numpy(t[:, 1:5])
            classes[i, :k] = torch.from_numpy(t[:, 0].astype(np.int64))
            valid[i, :k] = True
    return boxes, classes, valid


@torch.no_grad()
def assign(
    scores: torch.Tensor, pred_boxes: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
    gt_boxes: torch.Tensor, gt_classes: torch.Tensor, gt_valid: torch.Tensor, num_classes: int,
    topk: int = 10, centre_radius: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Task-aligned assignment. ``scores`` ``[B, A, C]`` (sigmoid), ``pred_boxes`` ``[B, A, 4]``.
    Returns target boxes ``[B, A, 4]``, target scores ``[B, A, C]`` and the foreground mask ``[B, A]``."""
    b, a, _ = scores.shape
    px, py = points[:, 0], points[:, 1]  # [A]
    x1, y1, x2, y2 = (gt_boxes[..., i:i + 1] for i in range(4))  # [B, G, 1]
    inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)
    cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    reach = strides * centre_radius
    near = ((px - cx).abs() < reach) & ((py - cy).abs() < reach)
    candidate = (inside | near) & gt_valid.unsqueeze(-1)  # [B, G, A]

    iou = pairwise_iou(gt_boxes, pred_boxes).clamp(min=0)  # [B, G, A]
    cls_score = scores.transpose(1, 2).gather(1, gt_classes.unsqueeze(-1).expand(-1, -1, a))  # [B, G, A]
    metric = cls_score.pow(0.5) * iou.pow(6.0) * candidate
    k = min(topk, a)
    # ties (all zero early on) resolve by index; a tiny IoU-based term keeps the order meaningful
    ranked = metric + 1e-12 * iou * candidate
    top = ranked.topk(k, dim=-1).indices
    chosen = torch.zeros_like(candidate).scatter_(-1, top, True) & candidate
    # an anchor claimed by several boxes keeps the smallest: a defect inside a part, a helmet on a
    # person (the larger box keeps its other anchors; by overlap the part would take them all)
    claims = chosen.sum(1)  # [B, A]
    area = ((gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])).unsqueeze(-1)  # [B, G, 1]
    best = torch.where(chosen, area.expand_as(iou), torch.full_like(iou, float("inf"))).argmin(1)  # [B, A]
    final = torch.zeros_like(chosen).scatter_(1, best.unsqueeze(1), True) & chosen & (claims > 0).unsqueeze(1)
    fg = final.any(1)  # [B, A]

    metric = metric * final
    iou_pos = iou * final
    norm = (metric * iou_pos.amax(-1, keepdim=True) / (metric.amax(-1, keepdim=True) + 1e-9)).amax(1)  # [B, A]
    target_boxes = gt_boxes.gather(1, best.unsqueeze(-1).expand(-1, -1, 4))  # [B, A, 4]
    target_classes = gt_classes.gather(1, best)  # [B, A]
    target_scores = F.one_hot(target_classes, num_classes).float() * (norm * fg).unsqueeze(-1)
    return target_boxes, target_scores, fg


class DetectionLoss:
    def __init__(self, num_classes: int, config: TrainConfig) -> None:
        self.num_classes = num_classes
        self.config = config
        self._anchors: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def anchors(self, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (height, width)
        if key not in self._anchors:
            self._anchors[key] = tuple(t.to(device) for t in anchor_points(height, width))  # type: ignore[assignment]
        return self._anchors[key]

    def __call__(self, ltrb: torch.Tensor, logits: torch.Tensor, targets: list[np.ndarray], height: int, width: int
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        points, strides = self.anchors(height, width, ltrb.device)
        pred_boxes = decode_xyxy(ltrb, points)
        gt_boxes, gt_classes, gt_valid = (t.to(ltrb.device) for t in pad_targets(targets))
        target_boxes, target_scores, fg = assign(
            logits.detach().sigmoid(), pred_boxes.detach(), points, strides, gt_boxes, gt_classes, gt_valid,
            self.num_classes, self.config.topk, self.config.centre_radius,
        )
        total = target_scores.sum().clamp(min=1.0)
        loss_cls = F.binary_cross_entropy_with_logits(logits, target_scores, reduction="sum") / total
        if fg.any():
            weight = target_scores.sum(-1)[fg]
            loss_box = ((1.0 - giou(pred_boxes[fg], target_boxes[fg])) * weight).sum() / total
        else:
            loss_box = pred_boxes.sum() * 0.0
        loss = self.config.cls_weight * loss_cls + self.config.box_weight * loss_box
        return loss, {"cls": float(loss_cls.detach()), "box": float(loss_box.detach())}


# -- the loop -----------------------------------------------------------------------------

class ModelEMA:
    """Exponential moving average of the weights (and a copy of the BN statistics)."""

    def __init__(self, model: nn.Module, decay: float, ramp: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.ramp, self.updates = decay, max(ramp, 1.0), 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1.0 - math.exp(-self.updates / self.ramp))
        source = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1.0 - d)
            else:
                value.copy_(source[name])


def band_rows(content: tuple[int, int, int, int], size: int, margin: int = 6) -> tuple[int, int]:
    """Rows ``[y0, y1)`` holding the frame (plus ``margin``), rounded out to multiples of 32."""
    y0 = max(0, (content[1] - margin) // 32 * 32)
    y1 = min(size, -(-(content[3] + margin) // 32) * 32)
    return y0, y1


def repeat_factors(frames: FrameSet, threshold: float) -> np.ndarray:
    """LVIS repeat-factor sampling weights: ``max(1, sqrt(t / f(c)))`` over the classes of a frame."""
    n = max(len(frames), 1)
    present = np.zeros((len(frames), len(frames.labels)), dtype=bool)
    for i, t in enumerate(frames.targets):
        present[i, t[:, 0].astype(np.int64)] = True
    freq = present.sum(0) / n
    per_class = np.where(freq > 0, np.maximum(1.0, np.sqrt(threshold / np.maximum(freq, 1e-9))), 1.0)
    factors = np.ones(len(frames))
    for i in range(len(frames)):
        if present[i].any():
            factors[i] = per_class[present[i]].max()
    return factors


def crop_batch(
    frames: FrameSet, index: np.ndarray, crop: tuple[int, int], object_crop: float, rng: np.random.Generator,
) -> tuple[np.ndarray, list[np.ndarray], list[tuple[int, int, int, int]]]:
    """``(height, width)`` crops of the frames ``index``: most centred (with jitter) on a random
    object, the rest anywhere on the frame's content; boxes less than 45 % inside are dropped."""
    ch, cw = crop
    size_h, size_w = frames.images.shape[1:3]
    fx0, fy0, fx1, fy1 = frames.content
    out = np.zeros((len(index), ch, cw, 3), dtype=np.uint8)
    targets: list[np.ndarray] = []
    contents: list[tuple[int, int, int, int]] = []
    for j, i in enumerate(index):
        t = frames.targets[i]
        if len(t) and rng.random() < object_crop:
            k = int(rng.integers(len(t)))
            cx = 0.5 * (t[k, 1] + t[k, 3]) + rng.uniform(-0.35, 0.35) * cw
            cy = 0.5 * (t[k, 2] + t[k, 4]) + rng.uniform(-0.35, 0.35) * ch
        else:
            cx, cy = rng.uniform(fx0, fx1), rng.uniform(fy0, fy1)
        x0 = int(np.clip(round(cx - cw / 2), max(0, fx0 - 16), max(0, min(size_w - cw, fx1 - cw + 16))))
        y0 = int(np.clip(round(cy - ch / 2), max(0, fy0 - 16), max(0, min(size_h - ch, fy1 - ch + 16))))
        out[j] = frames.images[i, y0:y0 + ch, x0:x0 + cw]
        b = t.copy()
        b[:, [1, 3]] = np.clip(b[:, [1, 3]] - x0, 0, cw)
        b[:, [2, 4]] = np.clip(b[:, [2, 4]] - y0, 0, ch)
        area = (t[:, 3] - t[:, 1]) * (t[:, 4] - t[:, 2])
        inside = (b[:, 3] - b[:, 1]) * (b[:, 4] - b[:, 2])
        keep = (inside >= 0.45 * area) & ((b[:, 3] - b[:, 1]) >= 1.5) & ((b[:, 4] - b[:, 2]) >= 1.5)
        targets.append(np.ascontiguousarray(b[keep]))
        contents.append((max(fx0 - x0, 0), max(fy0 - y0, 0), min(fx1 - x0, cw), min(fy1 - y0, ch)))
    return out, targets, contents


def lr_at(step: int, progress: float, config: TrainConfig) -> float:
    """Linear warm-up over ``config.warmup`` steps, then cosine decay over ``progress`` (0..1)."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    low = config.lr * config.final_lr_fraction
    return low + 0.5 * (config.lr - low) * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim > 1 and name.endswith("weight") else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainResult:
    model: Detector  # the EMA weights, in eval mode
    raw_model: Detector
    iterations: int
    planned_iterations: int
    seconds: float
    budget_limited: bool
    losses: list[float]


def train(
    frames: FrameSet,
    config: TrainConfig,
    model_config: DetectorConfig | None = None,
    augment: Augment | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a detector on ``frames``; returns the EMA model and what happened."""
    set_determinism(config.seed, config.threads, config.device)
    model_config = model_config or DetectorConfig(len(frames.labels))
    model = Detector(model_config).to(config.device, memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.999))
    total = config.iterations
    ema = ModelEMA(model, config.ema_decay, ramp=max(50.0, total / 15))
    loss_fn = DetectionLoss(len(frames.labels), config)
    rng = np.random.default_rng([config.seed, 1234])
    aug = augment or Augment()
    weights = repeat_factors(frames, config.repeat_threshold)
    weights = weights / weights.sum()
    size = frames.images.shape[1]
    y0, y1 = band_rows(frames.content, size) if config.band else (0, size)
    content = (frames.content[0], frames.content[1] - y0, frames.content[2], frames.content[3] - y0)
    planned = total
    progress = 0.0
    budget_s = None if config.minutes is None else config.minutes * 60.0
    limited = False
    losses: list[float] = []
    start = time.monotonic()
    step = 0
    while step < total:
        # progress through the schedule: by iterations, or by time where the budget runs out first
        # (so a run on a fast enough machine depends on the seed only)
        elapsed = time.monotonic() - start
        by_time = 0.0 if budget_s is None else elapsed / budget_s
        if by_time >= 1.0:
            limited = True
            if log:
                log(f"budget: stopped at iteration {step} of {total} ({elapsed:.0f} s)")
            break
        warm = config.warmup
        progress = max((step - warm) / max(1, total - warm), by_time) if step >= warm else 0.0
        limited = limited or by_time > (step - warm) / max(1, total - warm) > 0
        index = rng.choice(len(frames), size=config.batch, replace=True, p=weights)
        if config.crop is not None:
            images, targets, contents = crop_batch(frames, index, config.crop, config.object_crop, rng)
            batch, targets = augment_batch(images, targets, contents, rng, aug)
        else:
            images = frames.images[index, y0:y1]
            targets = []
            for i in index:
                t = frames.targets[i].copy()
                t[:, [2, 4]] -= y0
                targets.append(t)
            batch, targets = augment_batch(images, targets, content, rng, aug)
        x = torch.from_numpy(batch).to(config.device).contiguous(memory_format=torch.channels_last)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, progress, config)
        ltrb, logits = model(x)
        loss, parts = loss_fn(ltrb, logits, targets, x.shape[2], x.shape[3])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        ema.update(model)
        losses.append(float(loss.detach()))
        step += 1
        elapsed = time.monotonic() - start
        if log and (step % config.log_every == 0 or step == total):
            recent = float(np.mean(losses[-config.log_every:]))
            log(f"it {step}/{total} loss {recent:.4f} (cls {parts['cls']:.3f} box {parts['box']:.3f}) "
                f"lr {optimizer.param_groups[0]['lr']:.5f} {elapsed:.0f}s")
    seconds = time.monotonic() - start
    model.eval()
    final = ema.model.to(memory_format=torch.contiguous_format)
    final.eval()
    return TrainResult(final, model, step, planned, seconds, limited, losses)
