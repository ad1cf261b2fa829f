"""The step loop the crop models share (anomaly, tool states): batches drawn from a
shuffled order that is reshuffled when it runs out, one optimiser and learning-rate
step per batch, a log line every 100 steps, and an optional wall-clock cap that stops
early and says so."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


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
