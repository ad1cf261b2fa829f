"""Episodes: one real situation makes one event (start, optional updates, end).

A condition (a person without a mask, smoke in view) is reported only after it
held for ``start_after_s`` (grace, confirmation) and ends only after it was
absent for ``end_after_s`` (hysteresis): a detector that flickers for a frame
neither starts nor ends anything. While a condition is being confirmed it may go
unseen for ``confirm_gap_s`` at most (``end_after_s`` unless set). Times are stream
seconds, given by the caller, so rules are tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Stream times are frame timestamps in seconds, as floats: 2.8 - 0.8 comes out 1.9999999999999998, and a
# 2 s grace would wait one frame more. Durations are compared with this much slack, far below a frame.
TIME_SLACK = 1e-6


@dataclass(frozen=True)
class Timing:
    start_after_s: float = 0.0
    end_after_s: float = 1.0
    update_every_s: float | None = None
    # while a condition is being confirmed, it may go unseen this long at most (None: end_after_s): a
    # long end hysteresis (a fire hidden for a while by someone in front of it) must not let sparse
    # false sightings add up to a confirmation
    confirm_gap_s: float | None = None


@dataclass
class Episode:
    key: Hashable
    began: float  # when the condition was first seen (the event's start time)
    last_seen: float
    payload: dict[str, Any] = field(default_factory=dict)
    started: bool = False
    last_reported: float = 0.0
    peak_confidence: float = 0.0


@dataclass(frozen=True)
class Transition:
    phase: str  # start | update | end
    episode: Episode
    at: float  # stream time of the transition


class EpisodeTracker:
    def __init__(self, timing: Timing) -> None:
        self.timing = timing
        self._open: dict[Hashable, Episode] = {}

    @property
    def open(self) -> Mapping[Hashable, Episode]:
        return self._open

    def step(self, t: float, active: Mapping[Hashable, dict[str, Any]],
             confidence: Mapping[Hashable, float] | None = None,
             onset: Mapping[Hashable, float] | None = None,
             kept: Collection[Hashable] = ()) -> list[Transition]:
        """Feeds one frame: the conditions that hold now (key → payload). ``onset``: for conditions
        that show only over a window (a mouse running for 1.6 s), when a new one really began; the
        grace counts from there. ``kept``: open episodes that do not hold now but must not end yet
        (another situation may be replacing them); their last sighting stays where it was."""
        timing = self.timing
        out: list[Transition] = []
        for key, payload in active.items():
            episode = self._open.get(key)
            if episode is None:
                began = t if onset is None else min(onset.get(key, t), t)
                episode = self._open[key] = Episode(key, began, t)
            episode.last_seen = t
            episode.payload = payload
            if confidence is not None:
                episode.peak_confidence = max(episode.peak_confidence, confidence.get(key, 0.0))
            if not episode.started:
                if t - episode.began >= timing.start_after_s - TIME_SLACK:
                    episode.started = True
                    episode.last_reported = t
                    out.append(Transition("start", episode, t))
            elif timing.update_every_s is not None and t - episode.last_reported >= timing.update_every_s - TIME_SLACK:
                episode.last_reported = t
                out.append(Transition("update", episode, t))
        confirm_gap = timing.end_after_s if timing.confirm_gap_s is None else timing.confirm_gap_s
        for key in [k for k, e in self._open.items() if k not in active and k not in kept
                    and t - e.last_seen >= (timing.end_after_s if e.started else confirm_gap) - TIME_SLACK]:
            episode = self._open.pop(key)
            if episode.started:
                out.append(Transition("end", episode, episode.last_seen))
        return out

    def finish(self, key: Hashable, at: float) -> Transition | None:
        """Ends an open episode now, as of ``at`` (its last moment), whether it is still active or not
        (a situation that another replaced); the end transition if it had started."""
        episode = self._open.pop(key, None)
        if episode is None or not episode.started:
            return None
        episode.last_seen = max(episode.began, min(episode.last_seen, at))
        return Transition("end", episode, episode.last_seen)

    def close_all(self) -> list[Transition]:
        """Ends every open episode (the stream stopped or its time restarted)."""
        out = [Transition("end", e, e.last_seen) for e in self._open.values() if e.started]
        self._open.clear()
        return out
