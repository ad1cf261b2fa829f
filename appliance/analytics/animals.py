"""Laboratory animals seen from above: per-animal behaviour, abnormal events, activity summaries.

Every figure is scale-free: distances are in body lengths (the long side of the
animal's box, smoothed), speeds in body lengths per second, so the same settings
serve a close-up camera and a wide one.

Per analyzed frame the rules write each animal's box into a ring buffer (one numpy
array for all animals, ``history_frames`` per animal) and measure, vectorised over
the animals:

- ``speed``: displacement of the box centre over ``speed_window_s``;
- seizure-like motion over ``seizure_window_s``: direction reversals per second
  (consecutive steps more than 90° apart, both at least ``seizure_min_step_bl``),
  speed along the path, the net displacement and the spread of the centre around
  its mean (shaking goes back and forth in place: much path, little net displacement);
- grooming over ``grooming_window_s``: the box's jitter (RMS deviation of its edges
  from their mean) while the animal stays where it is;
- distance travelled: the centre, averaged over ``speed_window_s``, drags an anchor
  point once it is more than ``still_deadband_bl`` away from it, and each such move
  adds its length: jitter below the dead band is neither distance nor movement.

The behaviour of a frame is, by priority: ``rearing`` (the detector's label),
``seizure_like``, ``hyperactive``, ``grooming``, ``immobile`` (slow and nothing
else), else ``moving``. An animal is immobile since its anchor last moved or it last
did something else; ``animal.immobile`` starts once that lasted ``immobile_after_s``
and is dated back to that moment.

Trackers lose fast animals at low analysis rates (an animal that moves a body length
between analyzed frames no longer overlaps its predicted box and comes back under a
new track id). A new track that appears close to where an animal was lost less than
``stitch_gap_s`` ago continues that animal: its history, open episodes and activity
budget. Findings carry the animal's current track id.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from appliance.analytics.base import Finding, FrameView, TimingSettings
from appliance.analytics.geometry import Zone
from appliance.analytics.lifecycle import EpisodeTracker, Timing, Transition
from appliance.config.base import Strict
from appliance.tracking.tracker import iou_matrix
from appliance.types import Box, Track

STATES = ("moving", "immobile", "rearing", "grooming", "hyperactive", "seizure_like")
MOVING, IMMOBILE, REARING, GROOMING, HYPERACTIVE, SEIZURE = range(len(STATES))

PositiveSeconds = Annotated[float, Field(gt=0.0, le=86_400.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class AnimalSettings(Strict):
    """Rules for rodents in cages, filmed from above (``sources[].rules.animals``).

    Distances are in body lengths (``_bl``), speeds in body lengths per second."""

    labels: Annotated[list[str], Field(min_length=1)] = ["rodent", "rearing"]
    rearing_label: str = "rearing"
    cage_zone: str | None = None  # animals count as in the cage while their box centre is in it
    expected_animals: Annotated[int, Field(ge=1, le=1000)] | None = None  # None: no animal.missing

    history_frames: Annotated[int, Field(ge=4, le=512)] = 48  # ring buffer per animal (≥ the longest window)
    speed_window_s: PositiveSeconds = 0.6  # speed and the smoothed centre are over this window
    still_deadband_bl: NonNegative = 0.1  # centre movement below this is jitter, not distance

    immobile_speed: NonNegative = 0.15  # below this a frame may be immobile
    immobile_after_s: PositiveSeconds = 10.0

    hyperactive_speed: NonNegative = 2.5  # a mouse walks at about 0.5–2 body lengths per second
    hyperactive_after_s: NonNegative = 2.0

    seizure_window_s: PositiveSeconds = 2.0
    seizure_min_reversals_per_s: NonNegative = 1.0
    seizure_min_step_bl: NonNegative = 0.04  # a reversal counts where both steps are at least this long
    seizure_min_path_speed: NonNegative = 0.35  # along the path: it shakes hard
    seizure_max_net_bl: NonNegative = 0.6  # net displacement over the window: it stays ...
    seizure_max_spread_bl: NonNegative = 0.35  # ... and its centre stays close to where it is on average
    seizure_after_s: NonNegative = 1.0

    grooming_window_s: PositiveSeconds = 1.2
    grooming_min_jitter_bl: NonNegative = 0.012  # keep above the detector's box noise on a still animal
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
            "animal.immobile": (EpisodeTracker(Timing(0.0, end)), "warning"),
            "animal.hyperactive": (EpisodeTracker(Timing(s.hyperactive_after_s, end)), "warning"),
            "animal.seizure_like": (EpisodeTracker(Timing(s.seizure_after_s, end)), "warning"),
            "animal.rearing": (EpisodeTracker(Timing(s.behaviour_min_s, end)), "info"),
            "animal.grooming": (EpisodeTracker(Timing(s.behaviour_min_s, end)), "info"),
        }
        self._missing = EpisodeTracker(s.missing_timing.timing())
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
        self._interval_start: float | None = None
        for tracker, _ in self._episodes.values():
            tracker.close_all()
        self._missing.close_all()

    def _grow(self, extra: int) -> None:
        """Adds ``extra`` slots to every per-animal array (and creates them on reset)."""
        n, old = self.settings.history_frames, self._slots
        size = old + extra

        def grown(name: str, shape: tuple[int, ...], fill: float, dtype: type = np.float64) -> None:
            array = np.full((size, *shape), fill, dtype=dtype)
            if old:
                array[:old] = getattr(self, name)
            setattr(self, name, array)

        grown("_times", (n,), -np.inf)  # ring buffers: stream time and box of each analyzed frame
        grown("_boxes", (n, 4), 0.0)
        grown("_heads", (), 0, np.int64)  # where the next frame goes
        grown("_body", (), 0.0)  # body length, pixels
        grown("_body_measured", (), False, np.bool_)
        grown("_anchor", (2,), np.nan)
        grown("_since", (), 0.0)  # immobile since
        grown("_state", (), MOVING, np.int64)
        grown("_seconds", (len(STATES),), 0.0)  # this summary interval
        grown("_dist_px", (), 0.0)
        grown("_dist_bl", (), 0.0)
        self._slots = size

    def _new_slot(self) -> int:
        if not self._free:
            old = self._slots
            self._grow(old)
            self._free = list(range(self._slots - 1, old - 1, -1))
        slot = self._free.pop()
        self._times[slot] = -np.inf
        self._heads[slot] = 0
        self._body[slot] = 0.0
        self._body_measured[slot] = False
        self._anchor[slot] = np.nan
        self._state[slot] = MOVING
        self._seconds[slot] = 0.0
        self._dist_px[slot] = self._dist_bl[slot] = 0.0
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
            self._update_zone(animals, zone, t)

        findings: list[Finding] = []
        for kind, (tracker, severity) in self._episodes.items():
            findings.extend(self._report(kind, severity, tracker.step(t, active[kind])))
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
        """The detector's box for each track where one overlaps it well, else the track's
        (Kalman-smoothed) box: jitter and shaking are measured on what was seen."""
        boxes = np.array([tr.box for tr in tracks], dtype=np.float64)
        detections = [d.box for d in view.result.detections if d.label in self._labels]
        if detections:
            found = np.array(detections, dtype=np.float64)
            iou = iou_matrix(boxes, found)
            best = iou.argmax(axis=1)
            good = iou[np.arange(len(boxes)), best] >= 0.3
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
                    if distance <= s.stitch_radius_bl * max(float(self._body[a.slot]), 1.0):
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
        n = self.settings.history_frames
        box = self._boxes[a.slot, (self._heads[a.slot] - 1) % n]
        return (box[:2] + box[2:]) / 2

    def _behave(self, animals: list[_Animal], boxes: np.ndarray, view: FrameView, t: float, dt: float,
                active: dict[str, dict[Hashable, dict[str, Any]]]) -> None:
        """Measures every animal at once, decides its behaviour and collects the episodes' conditions."""
        s = self.settings
        n = s.history_frames
        slots = np.array([a.slot for a in animals])
        k = len(slots)
        rows = np.arange(k)

        # ring buffers, then each animal's history oldest first
        heads = self._heads[slots]
        self._times[slots, heads] = t
        self._boxes[slots, heads] = boxes
        heads = (heads + 1) % n
        self._heads[slots] = heads
        # only as much history as the longest window holds (a few entries at usual rates)
        longest = max(s.speed_window_s, s.seizure_window_s, s.grooming_window_s)
        held = int((self._times[slots] >= t - longest - 1e-6).sum(axis=1).max())
        flat = slots[:, None] * n + (heads[:, None] + np.arange(n - max(held, 3), n)[None, :]) % n
        times = self._times.reshape(-1)[flat]
        hist = self._boxes.reshape(-1, 4)[flat]
        centres = (hist[:, :, :2] + hist[:, :, 2:]) / 2
        now = centres[:, -1]

        # body length: the box's long side, smoothed; not while rearing or cut by the frame's edge
        long_side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        body = self._body[slots]
        rearing = np.array([a.label == s.rearing_label for a in animals])
        width, height = view.result.width, view.result.height
        cut = (boxes[:, 0] <= 1) | (boxes[:, 1] <= 1) | (boxes[:, 2] >= width - 1) | (boxes[:, 3] >= height - 1)
        measured = self._body_measured[slots]  # from a box the frame's edge did not cut
        body = np.where((body <= 0) | (~measured & ~cut), long_side,
                        np.where(rearing | cut, body, body + 0.1 * (long_side - body)))
        self._body[slots] = body
        self._body_measured[slots] = measured | ~cut
        bl = np.maximum(body, 1.0)

        def window(seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            inside = times >= t - seconds - 1e-6
            first = np.argmax(inside, axis=1)  # the newest entry is always inside
            return inside, first, t - times[rows, first]

        # speed, and the centre averaged over the same window (it stands for the window's middle)
        inside, first, span = window(s.speed_window_s)
        count = inside.sum(axis=1)
        speed = np.hypot(*(now - centres[rows, first]).T) / np.maximum(span, 1e-9) / bl
        smooth = (centres * inside[:, :, None]).sum(axis=1) / count[:, None]
        smooth_t = (np.where(inside, times, 0.0)).sum(axis=1) / count
        steps = np.diff(centres, axis=1)
        step_lengths = np.hypot(steps[..., 0], steps[..., 1])
        # fast animals turn often: how fast they go is the speed along their path
        path_speed = np.where(inside[:, :-1], step_lengths, 0.0).sum(axis=1) / np.maximum(span, 1e-9) / bl

        # seizure-like: many reversals with big steps, much path, little net displacement
        inside, first, span = window(s.seizure_window_s)
        lengths = np.where(inside[:, :-1], step_lengths, 0.0)
        big = lengths >= np.maximum(s.seizure_min_step_bl * bl, 1e-9)[:, None]
        reversed_ = ((steps[:, 1:] * steps[:, :-1]).sum(axis=2) < 0) & big[:, 1:] & big[:, :-1]
        long_enough = span >= 0.5 * s.seizure_window_s
        per_s = np.where(long_enough, reversed_.sum(axis=1) / np.maximum(span, 1e-9), 0.0)
        shaking = np.where(long_enough, lengths.sum(axis=1) / np.maximum(span, 1e-9), 0.0) / bl
        net = np.hypot(*(now - centres[rows, first]).T) / bl
        count = inside.sum(axis=1)
        mean = (centres * inside[:, :, None]).sum(axis=1) / count[:, None]
        spread = np.sqrt((((centres - mean[:, None, :]) ** 2).sum(axis=2) * inside).sum(axis=1) / count) / bl
        first_reversal = times[rows, np.argmax(reversed_, axis=1)]  # the first step of the first reversal
        seizure = ((per_s >= s.seizure_min_reversals_per_s) & (shaking >= s.seizure_min_path_speed)
                   & (net <= s.seizure_max_net_bl) & (spread <= s.seizure_max_spread_bl))

        # grooming: the box jitters, the animal stays
        inside, first, span = window(s.grooming_window_s)
        count = inside.sum(axis=1)
        mean_box = (hist * inside[:, :, None]).sum(axis=1) / count[:, None]
        jitter = np.sqrt((((hist - mean_box[:, None, :]) ** 2).sum(axis=2) * inside).sum(axis=1) / (4 * count)) / bl
        # ... and keeps jittering: the median step of its edges, which one settling movement does not raise
        edge_steps = np.where(inside[:, :-1, None], np.abs(np.diff(hist, axis=1)), np.inf).reshape(k, -1)
        edge_steps.sort(axis=1)
        typical = edge_steps[rows, np.maximum(4 * (count - 1) - 1, 0) // 2] / bl
        stays = np.hypot(*(now - centres[rows, first]).T) / bl <= s.grooming_max_net_bl
        grooming = ((span >= 0.5 * s.grooming_window_s) & stays & (speed < s.immobile_speed)
                    & (jitter >= s.grooming_min_jitter_bl) & (jitter <= s.grooming_max_jitter_bl)
                    & (typical >= s.grooming_min_step_bl))

        # a box cut by the frame's edge grows and shrinks as the animal crosses it: no motion from it
        state = np.where(speed < s.immobile_speed, IMMOBILE, MOVING)
        state[grooming & ~cut] = GROOMING
        state[(path_speed >= s.hyperactive_speed) & ~cut] = HYPERACTIVE
        state[seizure & ~cut] = SEIZURE
        state[rearing] = REARING

        # the anchor: distance travelled and the immobility clock
        anchor = self._anchor[slots]
        new = np.isnan(anchor[:, 0])
        anchor = np.where(new[:, None], smooth, anchor)
        moved = np.hypot(*(smooth - anchor).T)
        drag = moved > s.still_deadband_bl * bl
        self._anchor[slots] = np.where(drag[:, None], smooth, anchor)
        self._dist_px[slots] += np.where(drag, moved, 0.0)
        self._dist_bl[slots] += np.where(drag, moved / bl, 0.0)
        before = np.where(new, smooth_t, self._since[slots])  # immobile since, before this frame
        busy = state >= REARING  # rearing, grooming, hyperactive, seizure-like
        since = np.where(busy, t, np.where(drag, np.maximum(before, smooth_t), before))
        self._since[slots] = since
        previous = np.where(new, -1, self._state[slots])
        self._state[slots] = state
        self._seconds[slots, state] += dt

        # the episodes' conditions: few animals are in an eventful state at a time
        eventful = np.flatnonzero(busy | ((state == IMMOBILE) & (t - since >= s.immobile_after_s)))
        if not len(eventful):
            for animal in animals:
                animal.last_seen = t
            return
        codes, prior, since_l, before_l = state.tolist(), previous.tolist(), since.tolist(), before.tolist()
        for i in eventful.tolist():
            a = animals[i]
            code = codes[i]
            base: dict[str, Any] = {"track_id": a.track_id, "box": a.box}
            if code == IMMOBILE:
                active["animal.immobile"][a.serial] = {**base, "since": since_l[i],
                                                       "immobile_s": round(t - since_l[i], 2)}
                continue
            kind = f"animal.{STATES[code]}"
            if code != prior[i] and a.serial not in self._episodes[kind][0].open:
                # a new bout: grooming began when the animal settled, shaking with its first reversal
                # (no further back than the window that shows it)
                a.onset[kind] = {GROOMING: max(before_l[i], t - s.grooming_window_s),
                                 SEIZURE: float(first_reversal[i])}.get(code, t)
            payload = {**base, "since": min(a.onset.get(kind, t), t)}
            if code == HYPERACTIVE:
                payload["speed_bl_s"] = round(float(path_speed[i]), 2)
            elif code == SEIZURE:
                payload.update(reversals_per_s=round(float(per_s[i]), 2),
                               path_speed_bl_s=round(float(shaking[i]), 2),
                               net_bl=round(float(net[i]), 2), spread_bl=round(float(spread[i]), 3))
            elif code == GROOMING:
                payload["jitter_bl"] = round(float(jitter[i]), 3)
            active[kind][a.serial] = payload
        for animal in animals:
            animal.last_seen = t

    def _update_zone(self, animals: list[_Animal], zone: Zone | None, t: float) -> None:
        if zone is None:
            inside = [True] * len(animals)
        else:
            boxes = np.array([a.box for a in animals], dtype=np.float64)
            inside = zone.contains((boxes[:, :2] + boxes[:, 2:]) / 2).tolist()
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
            attributes = {k: v for k, v in p.items() if k not in ("track_id", "box", "since")}
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
                                          float(self._dist_px[slot]), float(self._dist_bl[slot])))
            self._free.append(slot)

    def _summary(self, t: float, partial: bool = False) -> Finding:
        """Per animal: seconds in each behaviour and distance travelled since the last summary."""
        assert self._interval_start is not None
        began = self._interval_start
        interval = t - began
        rows = [(r.track_id, r.last_seen, r.seconds, r.distance_px, r.distance_bl) for r in self._retired]
        for a in sorted(self._animals.values(), key=lambda a: a.serial):
            slot = a.slot
            rows.append((a.track_id, a.last_seen, self._seconds[slot].copy(), float(self._dist_px[slot]),
                         float(self._dist_bl[slot])))
            self._seconds[slot] = 0.0
            self._dist_px[slot] = self._dist_bl[slot] = 0.0
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
