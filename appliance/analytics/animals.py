"""Laboratory animals seen from above: per-animal behaviour, abnormal events, activity summaries.

Every figure is scale-free: distances are in body lengths (the long side of the
animal's box, smoothed), speeds in body lengths per second, so the same settings
serve a close-up camera and a wide one.

Per analyzed frame the rules write each animal's box into a ring buffer (one numpy
array for all animals, ``history_frames`` per animal) and measure, vectorised over
the animals:

- ``speed``: displacement of the box centre over ``speed_window_s``;
- the speed along the path over ``hyperactive_window_s`` (long enough that a bout of
  running is not cut by the moments a wall or another animal slows it), and over
  ``speed_window_s`` (at least half the hyperactive speed: the bout ends when it stops);
- seizure-like motion over ``seizure_window_s``: direction reversals per second
  (consecutive steps more than 90° apart, both at least ``seizure_min_step_bl``),
  speed along the path, the net displacement and the spread of the centre around
  its mean (shaking goes back and forth in place: much path, little net displacement);
- grooming over ``grooming_window_s``: the box's jitter (RMS deviation of its edges
  from their mean, and the median step of its edges) while the animal stays;
- distance travelled: the centre, averaged over ``speed_window_s``, drags an anchor
  point once it is more than ``still_deadband_bl`` away from it, and each such move
  adds its length: jitter below the dead band is neither distance nor movement.

The behaviour of a frame is, by priority: ``rearing`` (the detector's label),
``seizure_like``, ``hyperactive``, ``grooming``, ``immobile`` (slow), else ``moving``.
An animal is immobile since the first of its recent positions (median-filtered over
three frames) within the dead band of where it is now, or since it last did something
else; ``animal.immobile`` starts once that lasted ``immobile_after_s`` and is dated
back to that moment. Episodes (``animal.immobile``, ``.hyperactive``, ``.seizure_like``
as warnings; ``.rearing``, ``.grooming`` as info) start, and end after
``episode_end_after_s`` without the condition (``immobile_end_after_s``: an immobile
animal that stirs for a moment and lies still again goes on being the same immobile
animal), through ``EpisodeTracker``; a run is
seen only once the window shows it, so ``hyperactive_after_s`` counts from the run's
onset (where that window began), not from when it was seen; so does ``seizure_after_s``
from the first reversal of the shaking.
``animal.missing`` counts the animals whose centre is in the cage zone;
``animal.activity_summary`` is a point finding (phase ``start`` with its end time)
every ``summary_interval_s``.

Trackers lose fast animals at low analysis rates (an animal that moves a body length
between analyzed frames no longer overlaps its predicted box and comes back under a
new track id). A new track that appears close to where an animal was lost less than
``stitch_gap_s`` ago continues that animal: its history, open episodes and activity
budget. Findings carry the animal's current track id.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from appliance.analytics.base import Finding, FrameView, TimingSettings
from appliance.analytics.geometry import Zone, ZoneTable
from appliance.analytics.lifecycle import TIME_SLACK, EpisodeTracker, Timing, Transition
from appliance.config.base import Strict
from appliance.types import Box, Track

STATES = ("moving", "immobile", "rearing", "grooming", "hyperactive", "seizure_like")
MOVING, IMMOBILE, REARING, GROOMING, HYPERACTIVE, SEIZURE = range(len(STATES))
_KINDS = tuple(f"animal.{state}" for state in STATES)  # the event kind of each state
# running and shaking show only over a window: their grace counts from the bout's onset
_WINDOWED = frozenset({"animal.hyperactive", "animal.seizure_like"})

# Per-animal values, one row per slot: body length (pixels), whether it was measured on a box
# the frame's edge did not cut, the anchor (x, y), immobile since, state, distance (pixels, body lengths).
_BODY, _MEASURED, _ANCHOR, _SINCE, _STATE, _DIST_PX, _DIST_BL = 0, 1, slice(2, 4), 4, 5, 6, 7
_NOWHERE = (np.nan, np.nan)
_NVALUES = 8
_NEVER = -1e18  # the stream time of ring entries not written yet (finite: it is multiplied by 0)
_NEW_VALUES = np.array([0.0, 0.0, np.nan, np.nan, 0.0, MOVING, 0.0, 0.0])
_SPEED, _RUN, _SHAKE, _GROOM = range(4)  # the windows measured over, in AnimalRules._windows

PositiveSeconds = Annotated[float, Field(gt=0.0, le=86_400.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class AnimalSettings(Strict):
    """Rules for rodents in cages, filmed from above (``sources[].rules.animals``).

    Distances are in body lengths (``_bl``), speeds in body lengths per second."""

    labels: Annotated[list[str], Field(min_length=1)] = ["rodent", "rearing"]
    rearing_label: str = "rearing"  # one of labels; a detector without it never reports rearing
    cage_zone: str | None = None  # animals count as in the cage while their box centre is in it
    expected_animals: Annotated[int, Field(ge=1, le=1000)] | None = None  # None: no animal.missing

    history_frames: Annotated[int, Field(ge=4, le=512)] = 48  # ring buffer per animal (≥ the longest window)
    speed_window_s: PositiveSeconds = 0.6  # speed and the smoothed centre are over this window
    still_deadband_bl: NonNegative = 0.1  # centre movement below this is jitter, not distance

    immobile_speed: NonNegative = 0.15  # below this a frame may be immobile
    immobile_after_s: PositiveSeconds = 10.0
    # An immobile animal that stirs for less than this and lies still again where it lay (a neighbour lying
    # down against it, a twitch) is the same immobile animal: one event, not an end and a new one later.
    immobile_end_after_s: NonNegative = 3.0

    hyperactive_speed: NonNegative = 2.2  # a mouse walks at about 0.5–2 body lengths per second
    hyperactive_window_s: PositiveSeconds = 1.6  # the speed along the path is averaged over this window
    hyperactive_end_after_s: NonNegative = 2.5  # a bout paused (cornered, turning) less than this goes on
    hyperactive_after_s: NonNegative = 2.5  # a bout this long, counted from its onset (where the window began)

    seizure_window_s: PositiveSeconds = 2.0
    seizure_min_reversals_per_s: NonNegative = 1.0
    seizure_min_step_bl: NonNegative = 0.04  # a reversal counts where both steps are at least this long
    # along the path: it shakes hard (a mouse turning on the spot swings its box's centre back and forth
    # too, at about 0.45 body lengths a second; shaking mice measure 0.67 and more at their onset)
    seizure_min_path_speed: NonNegative = 0.6
    seizure_max_net_bl: NonNegative = 0.6  # net displacement over the window: it stays ...
    seizure_max_spread_bl: NonNegative = 0.35  # ... and its centre stays close to where it is on average
    seizure_after_s: NonNegative = 2.5  # shaking this long, counted from its first reversal

    grooming_window_s: PositiveSeconds = 1.2
    grooming_min_jitter_bl: NonNegative = 0.02  # keep above the detector's box noise on a still animal
    grooming_max_jitter_bl: NonNegative = 0.08
    grooming_min_step_bl: NonNegative = 0.005  # the median step of the box's edges: it keeps moving
    grooming_max_net_bl: NonNegative = 0.15
    behaviour_min_s: NonNegative = 1.0  # rearing and grooming intervals shorter than this are not reported

    episode_end_after_s: NonNegative = 1.0  # hysteresis before a behaviour or abnormal episode ends
    missing_timing: TimingSettings = TimingSettings()

    stitch_gap_s: NonNegative = 1.0  # a new track continues an animal lost at most this long ago ...
    stitch_radius_bl: NonNegative = 2.5  # ... and at most this far away
    forget_after_s: PositiveSeconds = 10.0  # an animal unseen this long is forgotten

    summary_interval_s: PositiveSeconds = 3600.0

    @model_validator(mode="after")
    def _ordered(self) -> AnimalSettings:
        if self.hyperactive_speed <= self.immobile_speed:
            raise ValueError("hyperactive_speed must be above immobile_speed")
        if self.grooming_max_jitter_bl < self.grooming_min_jitter_bl:
            raise ValueError("grooming_max_jitter_bl must not be below grooming_min_jitter_bl")
        return self


@dataclass
class _Animal:
    """What the rules know of one animal besides its slot in the arrays."""

    serial: int  # the rules' own id: the episode key
    slot: int  # row in the per-animal arrays
    track_id: int
    label: str = ""
    box: Box = (0.0, 0.0, 0.0, 0.0)
    last_seen: float = -np.inf
    in_zone: bool = False
    last_in_zone: float | None = None
    onset: dict[str, float] = field(default_factory=dict)  # kind -> when the current bout began


@dataclass
class _Retired:
    """An animal forgotten during a summary interval, kept for that summary."""

    track_id: int
    last_seen: float
    seconds: np.ndarray
    distance_px: float
    distance_bl: float


class AnimalRules:
    """The ``animals`` use case for one stream (a ``Rules``)."""

    def __init__(self, settings: AnimalSettings, stream_id: str = "") -> None:
        self.settings = settings
        self.stream_id = stream_id
        s = settings
        self._labels = frozenset(s.labels)
        end = s.episode_end_after_s
        self._episodes: dict[str, tuple[EpisodeTracker, str]] = {
            "animal.immobile": (EpisodeTracker(Timing(0.0, s.immobile_end_after_s)), "warning"),
            "animal.hyperactive": (EpisodeTracker(Timing(s.hyperactive_after_s, s.hyperactive_end_after_s)), "warning"),
            "animal.seizure_like": (EpisodeTracker(Timing(s.seizure_after_s, end)), "warning"),
            "animal.rearing": (EpisodeTracker(Timing(s.behaviour_min_s, end)), "info"),
            "animal.grooming": (EpisodeTracker(Timing(s.behaviour_min_s, end)), "info"),
        }
        self._missing = EpisodeTracker(s.missing_timing.timing())
        self._windows = np.array([s.speed_window_s, s.hyperactive_window_s, s.seizure_window_s, s.grooming_window_s])
        self._longest = max(self._windows.tolist())
        self._zone_table: tuple[Zone, ZoneTable] | None = None  # the cage zone's, made once
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        self._slots = 0
        self._grow(8)
        self._free: list[int] = list(range(7, -1, -1))
        self._serials = itertools.count(1)
        self._animals: dict[int, _Animal] = {}  # by serial
        self._by_track: dict[int, int] = {}  # track id -> serial
        self._retired: list[_Retired] = []
        self._missing_track: int | None = None
        self._last_t: float | None = None
        self._frames: deque[float] = deque(maxlen=self.settings.history_frames)  # the stream's recent frame times
        self._interval_start: float | None = None
        for tracker, _ in self._episodes.values():
            tracker.close_all()
        self._missing.close_all()

    def _grow(self, extra: int) -> None:
        """Adds ``extra`` slots to the per-animal arrays (and makes them on reset)."""
        n, old = self.settings.history_frames, self._slots
        size = old + extra
        ring = np.zeros((5, size, n))  # per analyzed frame: stream time, box; planes of [slot, entry]
        ring[0] = _NEVER
        heads = np.zeros(size, dtype=np.int64)  # where the next frame goes
        values = np.zeros((size, _NVALUES))
        seconds = np.zeros((size, len(STATES)))  # in each state, this summary interval
        if old:
            ring[:, :old], heads[:old] = self._ring, self._heads
            values[:old], seconds[:old] = self._values, self._seconds
        self._ring, self._heads, self._values, self._seconds = ring, heads, values, seconds
        self._slots = size

    def _new_slot(self) -> int:
        if not self._free:
            old = self._slots
            self._grow(old)
            self._free = list(range(self._slots - 1, old - 1, -1))
        slot = self._free.pop()
        self._ring[0, slot] = _NEVER
        self._heads[slot] = 0
        self._values[slot] = _NEW_VALUES
        self._seconds[slot] = 0.0
        return slot

    # ------------------------------------------------------------------ Rules

    def observe(self, view: FrameView) -> list[Finding]:
        s = self.settings
        t = view.t
        dt = 0.0 if self._last_t is None else min(max(t - self._last_t, 0.0), 5.0)
        self._last_t = t
        if self._interval_start is None:
            self._interval_start = t

        tracks = [tr for tr in view.tracks if tr.label in self._labels]
        active: dict[str, dict[Hashable, dict[str, Any]]] = {kind: {} for kind in self._episodes}
        animals: list[_Animal] = []
        if tracks:
            measured = self._measured_boxes(view, tracks)
            animals = self._animals_for(tracks, measured, t)
            self._behave(animals, measured, view, t, dt, active)
            zone = view.zones.get(s.cage_zone) if s.cage_zone is not None else None
            self._update_zone(animals, measured, zone, t)

        findings: list[Finding] = []
        for kind, (tracker, severity) in self._episodes.items():
            conditions = active[kind]
            onset = {key: p["since"] for key, p in conditions.items()} if kind in _WINDOWED else None
            findings.extend(self._report(kind, severity, tracker.step(t, conditions, onset=onset)))
        findings.extend(self._missing_findings(animals, t))
        self._forget(t)
        if t - self._interval_start >= s.summary_interval_s:
            findings.append(self._summary(t))
        return findings

    def close(self) -> list[Finding]:
        findings: list[Finding] = []
        for kind, (tracker, severity) in self._episodes.items():
            findings.extend(self._report(kind, severity, tracker.close_all()))
        findings.extend(self._report_missing(self._missing.close_all()))
        if self._last_t is not None and self._interval_start is not None and self._last_t > self._interval_start:
            findings.append(self._summary(self._last_t, partial=True))
        self._reset()
        return findings

    # ------------------------------------------------------------------ per frame

    def _measured_boxes(self, view: FrameView, tracks: list[Track]) -> np.ndarray:
        """The detector's box for each track, else the track's Kalman-smoothed box: jitter and shaking
        are measured on what was seen. The detection the tracker matched where it says (the portable
        tracker does); else the nearest detection, centre within a quarter of the track box's long side."""
        if all(tr.detected is not None for tr in tracks):
            return np.array([tr.detected for tr in tracks], dtype=np.float64)
        boxes = np.array([tr.box for tr in tracks], dtype=np.float64)
        detections = [d.box for d in view.result.detections if d.label in self._labels]
        if detections:
            found = np.array(detections, dtype=np.float64)
            dx = (boxes[:, None, 0] + boxes[:, None, 2]) - (found[None, :, 0] + found[None, :, 2])
            dy = (boxes[:, None, 1] + boxes[:, None, 3]) - (found[None, :, 1] + found[None, :, 3])
            distance = dx * dx + dy * dy  # (2 x centre distance) squared
            best = distance.argmin(axis=1)
            reach = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2
            good = distance[np.arange(len(boxes)), best] <= reach * reach
            boxes[good] = found[best[good]]
        return boxes

    def _animals_for(self, tracks: list[Track], boxes: np.ndarray, t: float) -> list[_Animal]:
        """The animal of each track; a new track continues a recently lost animal nearby."""
        s = self.settings
        out: list[_Animal | None] = []
        claimed: set[int] = set()
        fresh: list[int] = []
        for i, track in enumerate(tracks):
            serial = self._by_track.get(track.track_id)
            if serial is not None and serial not in claimed:
                claimed.add(serial)
                out.append(self._animals[serial])
            else:
                fresh.append(i)
                out.append(None)
        if fresh:
            lost = [a for a in self._animals.values()
                    if a.serial not in claimed and a.last_seen < t and t - a.last_seen <= s.stitch_gap_s]
            pairs = []
            for i in fresh:
                centre = (boxes[i, :2] + boxes[i, 2:]) / 2
                for a in lost:
                    distance = float(np.hypot(*(centre - self._last_centre(a))))
                    if distance <= s.stitch_radius_bl * max(float(self._values[a.slot, _BODY]), 1.0):
                        pairs.append((distance, i, a))
            taken: set[int] = set()
            for _, i, a in sorted(pairs, key=lambda p: p[0]):
                if out[i] is None and a.serial not in taken:
                    taken.add(a.serial)
                    out[i] = a
            for i in fresh:
                if out[i] is None:
                    serial = next(self._serials)
                    out[i] = self._animals[serial] = _Animal(serial, self._new_slot(), tracks[i].track_id)
        animals: list[_Animal] = []
        for track, animal in zip(tracks, out):
            assert animal is not None
            if animal.track_id != track.track_id and self._by_track.get(animal.track_id) == animal.serial:
                del self._by_track[animal.track_id]
            animal.track_id = track.track_id
            animal.label = track.label
            animal.box = track.box
            self._by_track[track.track_id] = animal.serial
            animals.append(animal)
        return animals

    def _last_centre(self, a: _Animal) -> np.ndarray:
        """Where the animal was last seen (its newest box centre)."""
        box = self._ring[1:, a.slot, (self._heads[a.slot] - 1) % self.settings.history_frames]
        return (box[:2] + box[2:]) / 2

    def _behave(self, animals: list[_Animal], boxes: np.ndarray, view: FrameView, t: float, dt: float,
                active: dict[str, dict[Hashable, dict[str, Any]]]) -> None:
        """Measures every animal at once, decides its behaviour and collects the episodes' conditions.

        Arrays are planes of [entry, animal], entries oldest first: numpy's inner loops run along
        the animals, and slices over entries stay contiguous."""
        s = self.settings
        n = s.history_frames
        slots = np.array([a.slot for a in animals])
        k = len(slots)
        rows = np.arange(k)
        values = self._values[slots]

        # ring buffers; then each animal's newest entries, oldest first: as many as the stream
        # analyzed in the longest window (a dozen at usual rates)
        heads = self._heads[slots]
        self._ring[0, slots, heads] = t
        self._ring[1:, slots, heads] = boxes.T
        heads = (heads + 1) % n
        self._heads[slots] = heads
        self._frames.append(t)
        oldest = t - self._longest - 1e-6
        held = max(sum(1 for f in self._frames if f >= oldest), 3)
        # (take gives C-ordered planes, which later steps run through about three times faster
        # than the strided result of fancy indexing after a slice)
        planes = self._ring.reshape(5, -1).take((heads + np.arange(n - held, n)[:, None]) % n + slots * n, axis=1)
        times, edges = planes[0], planes[1:]  # [held, k], [4, held, k]
        centres = (edges[:2] + edges[2:]) / 2  # [2, held, k]
        now = centres[:, -1]
        steps = centres[:, 1:] - centres[:, :-1]
        step_lengths = np.hypot(steps[0], steps[1])  # [held - 1, k]

        # body length: the box's long side, smoothed; not while rearing or cut by the frame's edge
        long_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        body = values[:, _BODY]
        rearing = np.array([a.label == s.rearing_label for a in animals])
        width, height = view.result.width, view.result.height
        cut = (boxes[:, 0] <= 1) | (boxes[:, 1] <= 1) | (boxes[:, 2] >= width - 1) | (boxes[:, 3] >= height - 1)
        measured = values[:, _MEASURED] > 0  # from a box the frame's edge did not cut
        body = np.where((body <= 0) | (~measured & ~cut), long_side,
                        np.where(rearing | cut, body, body + 0.1 * (long_side - body)))
        values[:, _BODY] = body
        values[:, _MEASURED] = measured | ~cut
        bl = np.maximum(body, 1.0)

        # the four windows at once (speed, hyperactive, seizure, grooming): planes [window, entry, animal]
        # of the entries inside (1.0 or 0.0); per window and animal how many, the first of them, its age,
        # how far the centre is from it now and the path along the steps since
        inside = (times >= (t - self._windows - 1e-6)[:, None, None]).astype(np.float64)
        count = inside.sum(axis=1)  # the newest entry is always inside
        first = held - count.astype(np.int64)
        span = t - times[first, rows]
        away = now[:, None] - centres[:, first, rows]
        net_px = np.hypot(away[0], away[1])
        path_px = (inside[:, :-1] * step_lengths).sum(axis=1)

        # speed, and the centre averaged over the same window; fast animals turn often: how fast
        # they run is the speed along their path, over a longer window
        short = np.maximum(span[_SPEED], 1e-9)
        speed = net_px[_SPEED] / short / bl
        smooth = (centres * inside[_SPEED]).sum(axis=1) / count[_SPEED]  # [2, k]
        running_now = path_px[_SPEED] / short / bl
        path_speed = path_px[_RUN] / np.maximum(span[_RUN], 1e-9) / bl
        # ... while it still runs now (half that speed over the short window): the bout ends when it stops
        running = (path_speed >= s.hyperactive_speed) & (running_now >= 0.5 * s.hyperactive_speed)

        # seizure-like: much path but little net displacement (checked first: it rules out walkers),
        # many reversals with big steps, and the centre stays close to its mean
        shaking_span = np.maximum(span[_SHAKE], 1e-9)
        shaking = np.where(span[_SHAKE] >= 0.5 * s.seizure_window_s, path_px[_SHAKE] / shaking_span / bl, 0.0)
        net = net_px[_SHAKE] / bl
        seizure = (shaking >= s.seizure_min_path_speed) & (net <= s.seizure_max_net_bl) & ~cut
        per_s = spread = first_reversal = np.zeros(k)
        if seizure.any():
            w, n_w = inside[_SHAKE], count[_SHAKE]
            big = step_lengths * w[:-1] >= np.maximum(s.seizure_min_step_bl * bl, 1e-9)
            turned = steps[0, 1:] * steps[0, :-1] + steps[1, 1:] * steps[1, :-1] < 0
            reversed_ = turned & big[1:] & big[:-1]
            per_s = reversed_.sum(axis=0) / shaking_span
            mean = (centres * w).sum(axis=1) / n_w
            spread = np.sqrt((((centres - mean[:, None]) ** 2).sum(axis=0) * w).sum(axis=0) / n_w) / bl
            first_reversal = times[reversed_.argmax(axis=0), rows]  # the first step of the first reversal
            seizure &= (per_s >= s.seizure_min_reversals_per_s) & (spread <= s.seizure_max_spread_bl)

        # grooming: the box jitters, and keeps jittering (the median step of its edges, which one
        # settling movement does not raise), while the animal stays; only for animals that stay and do not rear
        grooming = jitter = np.zeros(k)
        candidates = ((speed < s.immobile_speed) & (span[_GROOM] >= 0.5 * s.grooming_window_s) & ~cut & ~rearing
                      & (net_px[_GROOM] <= s.grooming_max_net_bl * bl))
        if candidates.any():  # measured on the candidates only: most animals walk or rear
            c = candidates.nonzero()[0]
            e, w, n_c, bl_c = edges.take(c, axis=2), inside[_GROOM].take(c, axis=1), count[_GROOM, c], bl[c]
            mean = (e * w).sum(axis=1) / n_c  # [4, candidates]
            jitter_c = np.sqrt((((e - mean[:, None]) ** 2).sum(axis=0) * w).sum(axis=0) / (4 * n_c)) / bl_c
            edge_steps = np.where(w[:-1] > 0, np.abs(e[:, 1:] - e[:, :-1]), np.inf).reshape(-1, len(c))
            edge_steps.sort(axis=0)
            typical = edge_steps[np.maximum(4 * (n_c.astype(np.int64) - 1) - 1, 0) // 2, np.arange(len(c))] / bl_c
            jitter = np.zeros(k)
            jitter[c] = jitter_c
            grooming = np.zeros(k, dtype=bool)
            grooming[c] = ((jitter_c >= s.grooming_min_jitter_bl) & (jitter_c <= s.grooming_max_jitter_bl)
                           & (typical >= s.grooming_min_step_bl))

        # by priority; a box cut by the frame's edge grows and shrinks as the animal crosses it: no motion from it
        state = np.where(speed < s.immobile_speed, IMMOBILE, MOVING)
        state[grooming > 0] = GROOMING
        state[running & ~cut] = HYPERACTIVE
        state[seizure] = SEIZURE
        state[rearing] = REARING

        # distance travelled: the averaged centre drags an anchor along, jitter below the dead band does not
        deadband = s.still_deadband_bl * bl
        anchor = values[:, _ANCHOR]
        new = np.isnan(anchor[:, 0])
        smooth = smooth.T
        anchor[new] = smooth[new]
        moved = np.hypot(*(smooth - anchor).T)
        drag = moved > deadband
        anchor[drag] = smooth[drag]
        values[:, _DIST_PX] += np.where(drag, moved, 0.0)
        values[:, _DIST_BL] += np.where(drag, moved / bl, 0.0)

        # the immobility clock: the animal has stayed since the first of its newest positions that lie within
        # the dead band of where it is now (positions median-filtered over three frames: one wild box does not
        # restart the clock); doing something restarts it too
        older, middle, newer = centres[:, :-2], centres[:, 1:-1], centres[:, 2:]
        median = np.maximum(np.minimum(older, middle), np.minimum(np.maximum(older, middle), newer))  # [2, held - 2, k]
        far = (((median - median[:, -1:]) ** 2).sum(axis=0) > deadband ** 2) & (times[1:-1] > oldest)
        settled = times[held - 1 - far[::-1].argmax(axis=0), rows]  # the position after the last far one
        before = np.where(new, t, values[:, _SINCE])  # immobile since, before this frame
        busy = state >= REARING  # rearing, grooming, hyperactive, seizure-like ...
        bouts = (busy & (state <= GROOMING)).nonzero()[0].tolist()
        for i, code in zip(bouts, state[bouts].tolist()):
            # ... where rearing and grooming are confirmed bouts, not a flickering label or one wild box
            episode = self._episodes[_KINDS[code]][0].open.get(animals[i].serial)
            busy[i] = episode is not None and episode.started
        since = np.where(busy, t, np.where(far.any(axis=0), np.maximum(before, settled), before))
        values[:, _SINCE] = since
        previous = np.where(new, -1, values[:, _STATE])
        values[:, _STATE] = state
        self._values[slots] = values
        self._seconds[slots, state] += dt

        # the episodes' conditions: few animals are in an eventful state at a time
        for animal in animals:
            animal.last_seen = t
        immobile = state == IMMOBILE
        lying = self._episodes["animal.immobile"][0].open  # still for long enough: still again there goes on
        here = median[:, -1].T  # [k, 2]
        long_enough = t - since >= s.immobile_after_s - TIME_SLACK
        if lying:
            rest = np.array([lying[a.serial].payload["rest"] if a.serial in lying else _NOWHERE for a in animals])
            immobile &= long_enough | (((here - rest) ** 2).sum(axis=1) <= deadband ** 2)
        else:
            immobile &= long_enough
        eventful = ((state >= REARING) | immobile).nonzero()[0].tolist()
        if not eventful:
            return
        codes, prior, since_l, before_l = state.tolist(), previous.tolist(), since.tolist(), before.tolist()
        for i in eventful:
            a = animals[i]
            code = codes[i]
            if code == IMMOBILE:
                episode = lying.get(a.serial)
                still, rest = (since_l[i], here[i].tolist()) if episode is None else (
                    episode.payload["since"], episode.payload["rest"])
                active["animal.immobile"][a.serial] = {"track_id": a.track_id, "box": a.box, "since": still,
                                                       "rest": rest, "immobile_s": round(t - still, 2)}
                continue
            kind = _KINDS[code]
            if code != prior[i] and a.serial not in self._episodes[kind][0].open:
                # a new bout: grooming began when the animal settled, shaking with its first
                # reversal (no further back than the window that shows it)
                a.onset[kind] = {GROOMING: max(before_l[i], t - s.grooming_window_s),
                                 SEIZURE: max(float(first_reversal[i]), t - s.seizure_window_s),
                                 HYPERACTIVE: t - s.hyperactive_window_s}.get(code, t)
            payload: dict[str, Any] = {"track_id": a.track_id, "box": a.box, "since": min(a.onset.get(kind, t), t)}
            if code == HYPERACTIVE:
                payload["speed_bl_s"] = round(float(path_speed[i]), 2)
            elif code == SEIZURE:
                payload.update(reversals_per_s=round(float(per_s[i]), 2), path_speed_bl_s=round(float(shaking[i]), 2),
                               net_bl=round(float(net[i]), 2), spread_bl=round(float(spread[i]), 3))
            elif code == GROOMING:
                payload["jitter_bl"] = round(float(jitter[i]), 3)
            active[kind][a.serial] = payload

    def _update_zone(self, animals: list[_Animal], boxes: np.ndarray, zone: Zone | None, t: float) -> None:
        if zone is None:
            inside = [True] * len(animals)
        else:
            if self._zone_table is None or self._zone_table[0] is not zone:
                self._zone_table = (zone, ZoneTable({zone.id: zone}))
            inside = self._zone_table[1].contains((boxes[:, :2] + boxes[:, 2:]) / 2)[:, 0].tolist()
        for animal, flag in zip(animals, inside):
            animal.in_zone = flag
            if flag:
                animal.last_in_zone = t

    def _missing_findings(self, animals: list[_Animal], t: float) -> list[Finding]:
        expected = self.settings.expected_animals
        if expected is None:
            return []
        seen = sum(1 for a in animals if a.in_zone)
        active: dict[Hashable, dict[str, Any]] = {}
        if seen < expected:
            if "cage" not in self._missing.open:
                # the animal that left last: in the cage before, not now
                here = {a.serial for a in animals if a.in_zone}
                gone = [a for a in self._animals.values() if a.serial not in here and a.last_in_zone is not None]
                self._missing_track = max(gone, key=lambda a: a.last_in_zone or 0.0).track_id if gone else None
            active["cage"] = {"expected": expected, "seen": seen, "track_id": self._missing_track}
        return self._report_missing(self._missing.step(t, active))

    def _report_missing(self, transitions: Iterable[Transition]) -> list[Finding]:
        out = []
        for tr in transitions:
            p = tr.episode.payload
            out.append(Finding(
                "animal.missing", tr.phase, tr.episode.began, tr.at if tr.phase == "end" else None,
                track_id=p.get("track_id"), severity="warning", zone=self.settings.cage_zone,
                attributes={"expected": p["expected"], "seen": p["seen"]},
                episode=f"missing@{tr.episode.began:.3f}",
            ))
        return out

    def _report(self, kind: str, severity: str, transitions: Iterable[Transition]) -> list[Finding]:
        out = []
        for tr in transitions:
            p = tr.episode.payload
            began = p.get("since", tr.episode.began)
            attributes = {k: v for k, v in p.items() if k not in ("track_id", "box", "since", "rest")}
            if tr.phase == "end":
                attributes["duration_s"] = round(tr.at - began, 2)
                if kind == "animal.immobile":
                    attributes["immobile_s"] = attributes["duration_s"]
            animal = self._animals.get(tr.episode.key)  # type: ignore[arg-type]
            out.append(Finding(
                kind, tr.phase, began, tr.at if tr.phase == "end" else None,
                track_id=animal.track_id if animal is not None else p.get("track_id"),
                severity=severity, zone=self.settings.cage_zone, box=p.get("box"), attributes=attributes,
                episode=f"{tr.episode.key}@{began:.3f}",
            ))
        return out

    def _forget(self, t: float) -> None:
        s = self.settings
        for animal in [a for a in self._animals.values() if t - a.last_seen > s.forget_after_s]:
            del self._animals[animal.serial]
            if self._by_track.get(animal.track_id) == animal.serial:
                del self._by_track[animal.track_id]
            slot = animal.slot
            self._retired.append(_Retired(animal.track_id, animal.last_seen, self._seconds[slot].copy(),
                                          float(self._values[slot, _DIST_PX]), float(self._values[slot, _DIST_BL])))
            self._free.append(slot)

    def _summary(self, t: float, partial: bool = False) -> Finding:
        """Per animal: seconds in each behaviour and distance travelled since the last summary."""
        assert self._interval_start is not None
        began = self._interval_start
        interval = t - began
        rows = [(r.track_id, r.last_seen, r.seconds, r.distance_px, r.distance_bl) for r in self._retired]
        for a in sorted(self._animals.values(), key=lambda a: a.serial):
            slot = a.slot
            rows.append((a.track_id, a.last_seen, self._seconds[slot].copy(), float(self._values[slot, _DIST_PX]),
                         float(self._values[slot, _DIST_BL])))
            self._seconds[slot] = 0.0
            self._values[slot, _DIST_PX] = self._values[slot, _DIST_BL] = 0.0
        entries = []
        for track_id, last_seen, seconds, distance_px, distance_bl in rows:
            seen = float(seconds.sum())
            if seen <= 0 and last_seen < began:
                continue
            entries.append({
                "track_id": track_id,
                "seconds": {state: round(float(v), 3) for state, v in zip(STATES, seconds)},
                "unseen_s": round(max(interval - seen, 0.0), 3),
                "distance_px": round(distance_px, 1),
                "distance_bl": round(distance_bl, 2),
            })
        self._retired = []
        self._interval_start = t
        attributes: dict[str, Any] = {"interval_s": round(interval, 3), "animals": entries}
        if partial:
            attributes["partial"] = True
        return Finding("animal.activity_summary", "start", began, t, severity="info", zone=self.settings.cage_zone,
                       attributes=attributes)
