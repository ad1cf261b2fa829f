"""Exponential backoff, capped, for rebuilding failed sources."""

from __future__ import annotations


class Backoff:
    def __init__(self, initial: float, maximum: float, factor: float = 2.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.maximum, self.initial * self.factor ** self.attempts)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
