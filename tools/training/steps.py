"""The step loop the crop models share (anomaly, tool states, PPE items): batches drawn
from a shuffled order that is reshuffled when it runs out, one optimiser and
learning-rate step per batch, a log line every 100 steps, and an optional wall-clock
cap that stops early and says so; the settings and result of the classifiers' training."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


class Batches:
    """Indices of ``count`` items, ``size`` at a time, in an order ``rng`` shuffles again each time
    it runs out (the first order is drawn here: the same rng state gives the same batches)."""

    def __init__(self, count: int, size: int, rng: np.random.Generator) -> None:
        self.count, self.size, self.rng = count, min(size, count), rng
        self.order, self.cursor = rng.permutation(count), 0

    def next(self) -> np.ndarray:
        if self.cursor + self.size > len(self.order):
            self.order, self.cursor = self.rng.permutation(self.count), 0
        picked = self.order[self.cursor:self.cursor + self.size]
        self.cursor += self.size
        return picked


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How a crop classifier (tool states, PPE items) is trained."""

    seed: int = 0
    steps: int = 2500
    batch_size: int = 64
    width: int = 16
    learning_rate: float = 4e-3
    weight_decay: float = 1e-4
    max_seconds: float | None = None  # a wall-clock cap: stops early (and says so) when hit
    threads: int = 2


@dataclass
class ClassifierTrainResult:
    model: nn.Module  # in eval mode
    config: ClassifierTrainConfig
    steps_done: int
    seconds: float
    stopped_early: bool
    losses: list[float] = field(default_factory=list)


@dataclass
class StepRun:
    steps_done: int
    seconds: float
    stopped_early: bool
    losses: list[float] = field(default_factory=list)


def run_steps(loss_of_next_batch: Callable[[], torch.Tensor], optimiser: torch.optim.Optimizer,
              schedule: torch.optim.lr_scheduler.LRScheduler, steps: int, max_seconds: float | None,
              log: Callable[[str], None] | None = None) -> StepRun:
    """``steps`` optimiser steps on ``loss_of_next_batch()`` (fewer when ``max_seconds`` runs out)."""
    losses: list[float] = []
    started = time.monotonic()
    stopped_early = False
    step = 0
    for step in range(1, steps + 1):
        loss = loss_of_next_batch()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if log is not None and (step % 100 == 0 or step == steps):
            log(f"step {step}/{steps} loss {float(np.mean(losses[-100:])):.5f} ({time.monotonic() - started:.0f} s)")
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            stopped_early = step < steps
            if stopped_early and log is not None:
                log(f"time cap of {max_seconds:.0f} s reached after {step} steps: stopping early")
            break
    return StepRun(step, time.monotonic() - started, stopped_early, losses)


@torch.no_grad()
def crop_outputs(model: nn.Module, images: np.ndarray, activation: Callable[[torch.Tensor], torch.Tensor],
                 classes: int, chunk: int = 256) -> np.ndarray:
    """``activation`` of ``model``'s outputs ``[N, classes]`` for uint8 ``[N, H, W, 3]`` crops (no augmentation)."""
    model.eval()
    out = []
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk].transpose(0, 3, 1, 2), dtype=np.float32) / 255.0)
        out.append(activation(model(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, classes))


def train_classifier(model: nn.Module, count: int, config: ClassifierTrainConfig, rng: np.random.Generator,
                     batch_loss: Callable[[np.ndarray], torch.Tensor],
                     log: Callable[[str], None] | None = None) -> ClassifierTrainResult:
    """``config.steps`` AdamW steps with a one-cycle learning rate on batches of the ``count`` training
    items (``batch_loss``: the loss of the items at some indices); the model comes back in eval mode."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=max(config.steps, 1), pct_start=0.1)
    batches = Batches(count, config.batch_size, rng)
    model.train()
    run = run_steps(lambda: batch_loss(batches.next()), optimiser, schedule, config.steps, config.max_seconds, log)
    model.eval()
    return ClassifierTrainResult(model, config, run.steps_done, run.seconds, run.stopped_early, run.losses)
