"""PPE and safety rules: missing or wrongly worn protective equipment, the hygiene
sequence (wash station before the clean zone), fire and smoke.

Each analyzed frame, either a classifier names the items each person wears from
their crop (``item_check``: ``appliance.analytics.wearing``), or the item detections
(helmet, mask, gloves …) are given to the person tracks they fit best, vectorised
over items × people: head items must lie in the top of the person's box, a gown must
cover the torso band, other items (gloves) lie in the box widened a little; an item
that fits several people goes to the one whose expected spot for it is nearest (in
units of each person's box).

An item that fits two people about as well (side by side, one's glove lies in the
other's box at the same height) is given to one of them but is *contested*: it keeps
an item worn that its person wore already, and does not make a missing item worn (it
is likely the neighbour's).

Per person, each item's evidence is a moving average of whether it was seen
(``item_memory_s``), with hysteresis between worn and missing: a glove the detector
misses for a moment, or a neighbour's that fits for a moment, changes nothing. The
missing set (required items, by the zone the person's feet stand in, minus those
worn) is a *situation*, with grace and hysteresis, so one real situation makes one
event. A situation is followed by the person who showed it, or else by place and
item set (in a crowd the tracker's ids change hands; the missing items stay with the
person; where two people's ids swap, a reported situation nobody shows any more is continued by
someone near who lacks the same items, rather than their starting a new one). A situation whose grace
ends while its person is hidden behind someone starts when they are seen again, with their box then.
When the evidence turns, the new situation is dated back to the first frame
without the item (or with it, for one put on) and the old one ends at the frame
before, so the averaging does not shift the reported times.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator
from scipy.optimize import linear_sum_assignment

from appliance.analytics.base import Finding, FrameView, TimingSettings
from appliance.analytics.geometry import ZoneTable, anchor_points
from appliance.analytics.lifecycle import TIME_SLACK, Episode, EpisodeTracker, Transition
from appliance.analytics.wearing import WornItems
from appliance.config.base import Identifier, Strict
from appliance.types import Box, Detection, Track

log = logging.getLogger(__name__)

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]

_HEAD, _TORSO, _HAND, _OTHER = 0, 1, 2, 3
# Where in a person's box each kind of item is expected: on the box's vertical centre line, at this fraction
# of the box's height from its top. Offsets count in units of the box's height (a person's width changes
# with pose and swinging arms, the height much less); a sideways offset counts less for hands, which may be
# anywhere across the body: for them, the height in the box is what tells a near and a far person apart.
_EXPECTED_Y = np.array([0.12, 0.4, 0.55, 0.5])
_X_WEIGHT = np.array([1.0, 1.0, 0.1, 1.0])
_OUTSIDE_COST = 0.2  # added per share of the item's box outside the person's box
_EPS = 1e-6
_WORN_ABOVE, _MISSING_BELOW = 0.6, 0.3  # an item's evidence: hysteresis between worn and missing
# Where each kind of item shows on a person: x0, y0, x1, y1 as fractions of the box's width and height from
# its top left (the head's bottom is ``head_fraction``; hands swing a little outside the box). While people
# nearer the camera cover most of that place, the item can be neither seen nor missed.
_PLACES = np.array([[0.2, 0.0, 0.8, 0.3], [0.15, 0.15, 0.85, 0.6], [-0.05, 0.4, 1.05, 0.75], [0.0, 0.0, 1.0, 1.0]])
_HIDDEN_SHARE = 0.6
_NO_FIT = 1e9
_CONTESTED = 0.05  # an item fits another person this close to as well as its own: whose is it?
_EDGE = 0.01  # a box this close to the frame's border (fraction of its size) touches it


class ItemCheckSettings(Strict):
    """Each person's items named by a classifier from their crop, in place of the detector's items given to
    people by where they lie (``appliance.analytics.wearing``)."""

    model: Identifier  # a model with parser: attributes; its labels are items (and the improper label)
    crop_margin: Annotated[float, Field(ge=0.0, le=1.0)] = 0.06  # above and below the box, of its height (as trained)


class PpeSettings(Strict):
    """``sources[].rules.ppe``: what each person must wear, the hygiene sequence, fire and smoke."""

    person_label: str = "person"
    required: list[str] = ["helmet", "mask", "gloves", "gown", "goggles"]
    item_check: ItemCheckSettings | None = None
    # zone id -> the items required while a person's feet are in it (replaces ``required``; a person
    # standing in several such zones needs the items of all of them)
    zone_required: dict[str, list[str]] = {}
    # Missing items: reported after the grace time; over once everything is worn for 4 s. A person
    # half hidden behind another, or given a neighbour's glove for a moment, still lacks what they lacked:
    # one situation, not an end and a new start a few seconds later.
    timing: TimingSettings = TimingSettings(start_after_s=2.0, end_after_s=4.0)
    improper_timing: TimingSettings = TimingSettings(start_after_s=2.0, end_after_s=1.0)  # a mask under the nose
    # Each item's evidence on a person is a moving average of whether it was seen, with this time constant:
    # an item becomes worn when seen in most recent frames, missing when missed in most (a glove the
    # detector misses for a moment, or a neighbour's glove that fits for a moment, changes nothing).
    item_memory_s: Annotated[float, Field(ge=0.0)] = 1.0
    improper_label: str | None = "mask_improper"  # the detector's label for a wrongly worn item
    improper_item: str = "mask"  # the item that label stands for (worn, so not missing, but reported)
    wash_zone: str | None = None
    clean_zone: str | None = None
    min_wash_s: Annotated[float, Field(ge=0.0)] = 3.0  # least continuous stay at the wash station before the clean zone
    # One who steps out of the clean zone has left it (and needs a new wash to come back) once out this
    # long: the feet of one walking along its edge cross it for a moment as the box's bottom moves with
    # the legs (up to 0.6 s in the clean room's scenes), and that is one entry, not several.
    clean_left_after_s: Annotated[float, Field(ge=0.0)] = 0.7
    # A person first seen inside the clean zone with the box at the frame's edge walked in from outside the
    # view: an entry (except in the stream's first frame). A person first seen inside away from the edges is not.
    entry_from_edge: bool = True
    # Someone first seen (after the first frame) with this share of their box inside where another person
    # was last seen emerged from behind them, unseen till then, most often at the basin: they share that
    # person's wash. None: someone first seen has washed for no time.
    emerged_overlap: Annotated[float, Field(gt=0.0, le=1.0)] | None = 0.15
    fire_labels: list[str] = ["fire", "smoke"]  # each makes ``<label>.detected`` events
    # the model whose fire and smoke count (one of the source's models: a fire and smoke detector of its
    # own, which sees a young plume sooner than the ppe detector does); None: any model's
    fire_model: Identifier | None = None
    # a fire or smoke is over only when unseen for 10 s: one hidden for a while by someone who stands in
    # front of it is the same fire, not a new alarm; it is confirmed by a second's sightings with gaps of 3 s
    # at most
    fire_timing: TimingSettings = TimingSettings(start_after_s=1.0, end_after_s=10.0, confirm_gap_s=3.0)
    # per fire label, in place of ``fire_timing``: smoke gathers under the ceiling, above the people, and
    # is seen in nearly every frame while it is confirmed (gaps of two frames at most at 5 fps), where a
    # bright wall near the ceiling fools the detector in a frame here and there
    label_timing: dict[str, TimingSettings] = {
        "smoke": TimingSettings(start_after_s=1.0, end_after_s=10.0, confirm_gap_s=0.6)}
    # Geometry of association, as fractions of the person's box.
    head_items: list[str] = ["helmet", "mask", "mask_improper", "goggles"]
    head_fraction: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3  # head items' centres lie in this top part
    torso_items: list[str] = ["gown"]
    torso_band: tuple[Fraction, Fraction] = (0.15, 0.6)  # the torso, from the box's top
    torso_overlap: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3  # least share of the item's box on the torso band
    hand_items: list[str] = ["gloves"]  # anywhere across the box, at hand height; two per person
    margin: Fraction = 0.15  # how far outside the box an item's centre may lie (gloves on swinging hands)
    forget_after_s: Annotated[float, Field(gt=0.0)] = 30.0  # drop a person's state when unseen this long
    # A person out of sight this long at most keeps their open episodes, and a new track close to where
    # they were lost is that person (the tracker lost them behind someone, or missed a few frames).
    stitch_gap_s: Annotated[float, Field(ge=0.0)] = 2.0
    stitch_radius: Annotated[float, Field(ge=0.0)] = 0.75  # centre distance, in the person's box heights
    # A missing-item situation is continued by a person lacking the same items this close to where it was
    # last seen (centre distance, in box heights), plus this much per second since (people walk on).
    situation_radius: Annotated[float, Field(ge=0.0)] = 0.5
    situation_speed: Annotated[float, Field(ge=0.0)] = 0.75
    # Someone who seems to lack nothing just as another person stands against them (less than
    # ``stitch_gap_s`` before) was most likely given that person's items, or those of someone hidden
    # behind them: their reported situation ends only after this long (a lasting change does end it).
    # Someone who vanishes inside the view is hidden behind someone: their reported situation is kept
    # this long too, for them to be seen again.
    crowd_end_after_s: Annotated[float, Field(ge=0.0)] = 7.0

    @model_validator(mode="after")
    def _consistent(self) -> PpeSettings:
        if (self.wash_zone is None) != (self.clean_zone is None):
            raise ValueError("wash_zone and clean_zone go together (the hygiene sequence needs both)")
        if self.torso_band[0] >= self.torso_band[1]:
            raise ValueError("torso_band must be (top, bottom) with top < bottom")
        if self.person_label in self.fire_labels:
            raise ValueError(f"{self.person_label!r} cannot be both the person label and a fire label")
        unknown = sorted(set(self.label_timing) - set(self.fire_labels))
        if unknown and "label_timing" in self.model_fields_set:  # the default's smoke may go unused
            raise ValueError(f"label_timing names labels that are not fire labels: {unknown}")
        return self

    def fire_timing_of(self, label: str) -> TimingSettings:
        """The grace, confirmation and end hysteresis of ``<label>.detected``."""
        return self.label_timing.get(label, self.fire_timing)

    def items(self) -> list[str]:
        """The items followed on each person, sorted: every one required anywhere, and the wrongly-wearable one."""
        return sorted({*self.required, *(i for zone in self.zone_required.values() for i in zone), self.improper_item})

    def item_labels(self) -> set[str]:
        """The labels that stand for an item the rules follow (an item classifier must name one)."""
        return set(self.items()) | ({self.improper_label} if self.improper_label is not None else set())


@dataclass
class _Person:
    """What the rules remember of one person track."""

    row: int  # the person's row in the item table
    last_t: float
    box: tuple[float, float, float, float] | None = None  # where the person was last seen
    held: np.ndarray | None = None  # [items] worn in the person's previous frame
    required: np.ndarray | None = None  # [items] required in the previous frame
    wash_run: float = 0.0  # the current continuous stay in the wash zone
    wash_best: float = 0.0  # the longest stay since the start or since leaving the clean zone
    in_clean: bool | None = None  # None: not seen yet
    out_of_clean: float | None = None  # when the feet of one counted in the clean zone stepped out of it
    wash_kept: float = 0.0  # their wash before they stepped out (theirs again if they are back in time)
    entered: tuple[float, float] | None = None  # when the person last walked into the clean zone, and their wash
    situation: Hashable | None = None  # the missing-item situation the person showed in their previous frame
    kept: Hashable | None = None  # a reported situation kept open while something else is missing for now
    paused: Hashable | None = None  # the situation the person showed before they seemed to lack nothing
    paused_in_crowd: bool = False  # that began as someone else stood against them
    touched: float = -math.inf  # when another person's box last overlapped theirs
    improper: Hashable | None = None  # the improper-wearing situation the person showed last
    renewed: float = -math.inf  # when the person was first seen, or their track id passed to them

    def last_situation(self) -> Hashable | None:
        """The missing-item situation the person went on with last: a reported one kept open while
        something else seemed missing, else the one shown, else the one paused while nothing seemed missing."""
        return next((s for s in (self.kept, self.situation, self.paused) if s is not None), None)


@dataclass
class _Lacking:
    """What one person in view lacks in this frame."""

    row: int  # the person's row in this frame's tracks
    person: _Person
    person_id: int
    names: tuple[str, ...]  # the missing items, sorted
    missing: np.ndarray  # [items] the same, as flags
    began: float  # when this missing set really began, if it is new
    required: np.ndarray
    zone: str | None


_SEEN, _GONE, _SINCE, _BEFORE = range(4)  # the item table's times


class _ItemTable:
    """Every person's item evidence, one row per person, updated for all the people of a frame at once.

    Per item: when it was last seen on the person, the first frame without it after that, the first
    frame of its current run of sightings and the person's frame before that run; a moving average of
    being seen (1) or not (0); whether it counts as worn (with hysteresis on that average); and whether
    its place on the person has been seen at all (``known``: until then it is not missing)."""

    def __init__(self, items: int) -> None:
        self._items = items
        self.times = np.full((0, 4, items), -math.inf)
        self.evidence = np.zeros((0, items))
        self.worn = np.zeros((0, items), dtype=bool)
        self.known = np.zeros((0, items), dtype=bool)  # its place was seen, with or without it
        self.odd = np.zeros(0, dtype=bool)  # in the row's previous frame, items appeared as others vanished
        self.fresh = np.zeros(0, dtype=bool)  # no frame yet
        self.passed = np.zeros(0, dtype=bool)  # [P] in the last update: whose id passed to someone else
        self._free: list[int] = []

    def take(self) -> int:
        if not self._free:
            size = len(self.fresh)
            grow = max(size, 8)
            self.times = np.concatenate([self.times, np.full((grow, 4, self._items), -math.inf)])
            self.evidence = np.concatenate([self.evidence, np.zeros((grow, self._items))])
            self.worn = np.concatenate([self.worn, np.zeros((grow, self._items), dtype=bool)])
            self.known = np.concatenate([self.known, np.zeros((grow, self._items), dtype=bool)])
            self.odd = np.concatenate([self.odd, np.zeros(grow, dtype=bool)])
            self.fresh = np.concatenate([self.fresh, np.zeros(grow, dtype=bool)])
            self._free = list(range(size + grow - 1, size - 1, -1))
        row = self._free.pop()
        self.times[row] = -math.inf
        self.evidence[row], self.worn[row], self.odd[row], self.fresh[row] = 0.0, False, False, True
        self.known[row] = False
        return row

    def give_back(self, row: int) -> None:
        self._free.append(row)

    def update(self, rows: np.ndarray, present: np.ndarray, contested: np.ndarray, hidden: np.ndarray, t: float,
               last: np.ndarray, memory: float) -> np.ndarray:
        """[P, items] what the people in ``rows`` wear now, given what this frame shows on them (an item
        that fits a neighbour too counts as seen only if the person wore it already: else it is likely
        the neighbour's); ``hidden``: where people in front cover the item's place, an item not seen is
        no evidence, and one whose place was never seen is not known to be missing; ``last``: each
        one's previous frame."""
        worn = self.worn[rows]
        now = present & ~(contested & ~worn)
        unseen = hidden & ~now  # neither seen nor missed
        times = self.times[rows]
        seen, gone = times[:, _SEEN], times[:, _GONE]
        run = now & (seen < last[:, None])  # not seen in the person's previous frame
        times[:, _SINCE] = np.where(run, t, times[:, _SINCE])
        times[:, _BEFORE] = np.where(run, last[:, None], times[:, _BEFORE])
        seen = times[:, _SEEN] = np.where(now, t, seen)
        times[:, _GONE] = np.where(~now & ~unseen & (gone < seen), t, gone)
        self.times[rows] = times
        # items appear as others vanish, two frames running: nobody changes like that, but the tracker's
        # id has likely passed to someone else (people crossing); what it knew is not this person's
        odd = (now & ~worn).any(axis=1) & (~now & worn).any(axis=1)
        self.passed = odd & self.odd[rows]
        afresh = (self.fresh[rows] | self.passed)[:, None]
        self.odd[rows], self.fresh[rows] = odd, False
        weight = 1.0 - np.exp(-np.maximum(t - last, 0.0) / memory) if memory > 0 else np.ones(len(rows))
        evidence = self.evidence[rows]
        evidence = np.where(afresh, now, np.where(unseen, evidence, evidence + weight[:, None] * (now - evidence)))
        worn = np.where(afresh, now, np.where(unseen, worn, np.where(worn, evidence > _MISSING_BELOW,
                                                                   evidence >= _WORN_ABOVE)))
        self.evidence[rows], self.worn[rows] = evidence, worn
        self.known[rows] = np.where(afresh, ~unseen, self.known[rows] | ~unseen)
        return worn


class PpeRules:
    """The ``Rules`` of the ppe / safety use case for one stream."""

    def __init__(self, settings: PpeSettings, stream_id: str, worn_items: WornItems | None = None) -> None:
        if (settings.item_check is None) != (worn_items is None):
            raise ValueError("item_check and an item classifier go together")
        self.settings = s = settings
        self.stream_id = stream_id
        self.worn_items = worn_items
        self._items = items = s.items()  # sorted, so that missing and required lists come sorted
        index = {item: k for k, item in enumerate(items)}
        self._default_required = np.isin(items, s.required)
        self._zone_required = {zone: np.isin(items, need) for zone, need in s.zone_required.items()}
        # label -> (item index, kind of region, is the improper label)
        head, torso, hand = set(s.head_items), set(s.torso_items), set(s.hand_items)

        def kind(label: str) -> int:
            return _HEAD if label in head else _TORSO if label in torso else _HAND if label in hand else _OTHER

        self._labels: dict[str, tuple[int, int, bool]] = {item: (k, kind(item), False) for item, k in index.items()}
        if s.improper_label is not None:
            self._labels[s.improper_label] = (index[s.improper_item], kind(s.improper_label), True)
        self._capacity = np.array([2 if kind(item) == _HAND else 1 for item in items])  # how many one person wears
        places = _PLACES.copy()
        places[_HEAD, 3] = s.head_fraction
        self._places = places[[kind(item) for item in items]]  # [items, 4] where each item shows
        # Per kind of item: the heights (box heights from the top) its centre may lie between.
        self._low = np.full(4, -s.margin)
        self._high = np.array([s.head_fraction, 1.0 + s.margin, 1.0 + s.margin, 1.0 + s.margin])
        self._expected_y, self._x_weight = _EXPECTED_Y, _X_WEIGHT
        self._fire_labels = list(s.fire_labels)
        self._fire_model = s.fire_model
        self._missing = EpisodeTracker(s.timing.timing())
        self._improper = EpisodeTracker(s.improper_timing.timing())
        self._fires = {label: EpisodeTracker(s.fire_timing_of(label).timing()) for label in s.fire_labels}
        self._people: dict[int, _Person] = {}  # by person id (the first track id of the person)
        self._situation_ids = itertools.count(1)
        self._name_sets: dict[bytes, tuple[str, ...]] = {}
        self._jumped: set[int] = set()  # person ids that jumped in this frame (passed to someone else)
        self._table = _ItemTable(len(items))
        self._identity: dict[int, int] = {}  # track id -> person id
        self._spare_ids = itertools.count(-1, -1)  # person ids no track id can be
        self._last_t: float | None = None
        self._previous_t: float | None = None  # the stream's previous analyzed frame
        self._first_frame = True
        self._frame_s = 0.0  # the interval between analyzed frames, as last seen
        self._frame_size = (0, 0)  # the stream's frames' width and height, as last seen
        self._warned_zones = False
        self._warned_pixels = False
        self._zone_table: ZoneTable | None = None
        self._required_columns: list[tuple[int, np.ndarray]] = []
        self._wash_column: int | None = None
        self._clean_column: int | None = None

    # ------------------------------------------------------------------ the Rules protocol

    def observe(self, view: FrameView) -> list[Finding]:
        t = view.t
        if self._last_t is not None and t > self._last_t:
            self._frame_s = t - self._last_t
        self._first_frame = self._last_t is None
        self._frame_size = (view.result.width, view.result.height)
        self._previous_t = self._last_t
        self._last_t = t
        if not self._warned_zones:
            self._warned_zones = True
            wanted = set(self.settings.zone_required) | {self.settings.wash_zone, self.settings.clean_zone}
            unknown = sorted(z for z in wanted if z is not None and z not in view.zones)
            if unknown:
                log.warning("stream %s: ppe rules name zones the source does not have: %s", self.stream_id, unknown)

        persons = [track for track in view.tracks if track.label == self.settings.person_label]
        items, fires = self._split(view.result.detections)
        boxes = np.array([p.box for p in persons], dtype=np.float64).reshape(-1, 4)
        if self.worn_items is not None and view.image is not None:
            present, contested, improper = self._classified(view, persons)
        else:
            if self.worn_items is not None and not self._warned_pixels:
                self._warned_pixels = True
                log.warning("stream %s: the backend keeps no frames to crop; the ppe rules give the detector's "
                            "items to people instead of asking %s", self.stream_id, self.worn_items.engine.name)
            present, contested, improper = self._associate(boxes, items)
        people = self._identities(persons, boxes, t)
        findings = self._observe_people(view, t, persons, people, boxes, present, contested, improper)
        findings += self._observe_fire(view, t, fires)
        forgotten = {k for k, p in self._people.items() if t - p.last_t > self.settings.forget_after_s}
        if forgotten:
            for person_id in forgotten:
                self._table.give_back(self._people.pop(person_id).row)
            self._identity = {k: v for k, v in self._identity.items() if v not in forgotten}
        return findings

    def close(self) -> list[Finding]:
        findings = [self._missing_finding(tr) for tr in self._missing.close_all()]
        findings += [self._improper_finding(tr) for tr in self._improper.close_all()]
        findings += [self._fire_finding(tr) for fire in self._fires.values() for tr in fire.close_all()]
        self._people.clear()
        self._table = _ItemTable(len(self._items))
        self._identity.clear()
        self._last_t = None
        return findings

    # ------------------------------------------------------------------ association

    def _classified(self, view: FrameView, persons: list[Track]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``_associate``, from the item classifier's verdicts on each person's crop (cut around the
        box the detector saw): nobody's item is contested, each crop is one person's."""
        assert self.worn_items is not None and view.image is not None
        count = len(persons)
        present = np.zeros((count, len(self._items)), dtype=bool)
        improper = np.zeros(count, dtype=bool)
        if count:
            boxes = np.array([p.detected or p.box for p in persons], dtype=np.float64)
            said = self.worn_items.probabilities(view.sample, view.image.size, boxes) >= self.worn_items.threshold
            for column, label in enumerate(self.worn_items.labels):
                spec = self._labels.get(label)
                if spec is not None:
                    present[:, spec[0]] |= said[:, column]
                    if spec[2]:
                        improper |= said[:, column]
        return present, np.zeros_like(present), improper

    def _split(self, detections: list[Detection]) -> tuple[list[tuple[Detection, int, int, bool]],
                                                           dict[str, list[Detection]]]:
        items = []
        fires: dict[str, list[Detection]] = {}
        labels, fire_labels, fire_model = self._labels, self._fire_labels, self._fire_model
        for d in detections:
            spec = labels.get(d.label)
            if spec is not None:
                items.append((d, *spec))
            elif d.label in fire_labels and (fire_model is None or d.model == fire_model):
                fires.setdefault(d.label, []).append(d)
        return items, fires

    def _associate(self, persons: np.ndarray, items: list[tuple[Detection, int, int, bool]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """[P, items] which items each person wears in this frame, [P, items] which of those fit someone
        else about as well (people side by side: whose glove is it?); [P] which wear one wrongly."""
        count = len(persons)
        present = np.zeros((count, len(self._items)), dtype=bool)
        contested = np.zeros((count, len(self._items)), dtype=bool)
        improper = np.zeros(count, dtype=bool)
        if count == 0 or not items:
            return present, contested, improper
        ib = np.array([i[0].box for i in items], dtype=np.float64)
        spec = np.array([i[1:] for i in items], dtype=np.int64)
        item_index, kind, wrong = spec[:, 0], spec[:, 1], spec[:, 2].astype(bool)
        # Item centres in each person's frame: (u, v) from the top centre of the box, in box heights.
        x1, y1, x2, y2 = (persons[:, k][None, :] for k in range(4))
        h = np.maximum(y2 - y1, 1.0)
        u = ((ib[:, 0:1] + ib[:, 2:3]) / 2 - (x1 + x2) / 2) / h
        v = ((ib[:, 1:2] + ib[:, 3:4]) / 2 - y1) / h
        # Fits: the centre lies in the widened box, at the height its kind belongs to; a torso item covers
        # enough of the torso band.
        fits = (np.abs(u) <= (0.5 + self.settings.margin) * (x2 - x1) / h) & (v >= self._low[kind][:, None]) & (
            v <= self._high[kind][:, None])
        area = np.maximum((ib[:, 2] - ib[:, 0]) * (ib[:, 3] - ib[:, 1]), _EPS)[:, None]
        inter_w = np.maximum(np.minimum(ib[:, 2:3], x2) - np.maximum(ib[:, 0:1], x1), 0.0)
        torso = kind == _TORSO
        if torso.any():
            top, bottom = y1 + self.settings.torso_band[0] * h, y1 + self.settings.torso_band[1] * h
            band_h = np.maximum(np.minimum(ib[:, 3:4], bottom) - np.maximum(ib[:, 1:2], top), 0.0)
            fits &= ~torso[:, None] | (inter_w * band_h >= self.settings.torso_overlap * area)
        # Among the people it fits, an item goes to the one whose spot for it is nearest.
        inside_h = np.maximum(np.minimum(ib[:, 3:4], y2) - np.maximum(ib[:, 1:2], y1), 0.0)
        score = (self._x_weight[kind][:, None] * u ** 2 + (v - self._expected_y[kind][:, None]) ** 2
                 + _OUTSIDE_COST * (1.0 - inter_w * inside_h / area))
        score[~fits] = np.inf
        best = score.argmin(axis=1)
        fitted = np.isfinite(score[np.arange(len(items)), best])
        # One person wears one helmet (two gloves): where someone got more, share those items out optimally.
        slots = best * len(self._items) + item_index
        given = np.bincount(slots[fitted], minlength=count * len(self._items))
        crowded = fitted & (given[slots] > self._capacity[item_index])
        if crowded.any():
            for item in np.unique(item_index[crowded]):
                rows = (fitted & (item_index == item)).nonzero()[0]
                per_person = int(self._capacity[item])
                cost = np.repeat(np.where(np.isfinite(score[rows]), score[rows], _NO_FIT), per_person, axis=1)
                r, c = linear_sum_assignment(cost)
                kept = cost[r, c] < _NO_FIT
                fitted[rows] = False
                fitted[rows[r[kept]]] = True
                best[rows[r[kept]]] = c[kept] // per_person
        present[best[fitted], item_index[fitted]] = True
        if count > 1 and fitted.any():
            # contested: the item fits someone else nearly as well, who has room for it (a person
            # who wears their own helmet cannot be the owner of a second one)
            rows = fitted.nonzero()[0]
            own = score[rows, best[rows]]
            others = score[rows].copy()
            others[np.arange(len(rows)), best[rows]] = np.inf
            rival = others.argmin(axis=1)
            worn = np.bincount(best[rows] * len(self._items) + item_index[rows], minlength=count * len(self._items))
            room = worn[rival * len(self._items) + item_index[rows]] < self._capacity[item_index[rows]]
            shared = rows[(others[np.arange(len(rows)), rival] - own < _CONTESTED) & room]
            contested[best[shared], item_index[shared]] = True
        improper[best[fitted & wrong]] = True
        return present, contested, improper

    # ------------------------------------------------------------------ people

    def _identities(self, persons: list[Track], boxes: np.ndarray, t: float) -> list[int]:
        """Each person track's person id: the track id that person was first seen with; a new track
        continues the nearest person lost less than ``stitch_gap_s`` ago within ``stitch_radius``."""
        s = self.settings
        ids: list[int | None] = [self._identity.get(track.track_id) for track in persons]
        self._split_shared(persons, ids)
        taken = {i for i in ids if i is not None}
        self._jumped.clear()
        for p, person_id in enumerate(ids):
            person = self._people.get(person_id) if person_id is not None else None
            if person is not None and person.box is not None and self._walked(person.box, persons[p].box,
                                                                               t - person.last_t) > 1.0:
                # farther than anyone walks: the tracker's id passed to someone else
                self._table.give_back(self._people.pop(person_id).row)
                self._jumped.add(person_id)
        for p, track in enumerate(persons):
            if ids[p] is not None:
                continue
            x1, y1, x2, y2 = boxes[p]
            reach = s.stitch_radius * max(y2 - y1, 1.0)
            # the track's own id, unless someone it was split from holds it already
            best = track.track_id if track.track_id not in self._people and track.track_id not in taken \
                else next(self._spare_ids)
            best_d = reach
            for person_id, person in self._people.items():
                if person_id in taken or person.box is None or not 0 < t - person.last_t <= s.stitch_gap_s:
                    continue
                bx1, by1, bx2, by2 = person.box
                d = math.hypot((x1 + x2 - bx1 - bx2) / 2, (y1 + y2 - by1 - by2) / 2)
                if d <= best_d:
                    best, best_d = person_id, d
            ids[p] = self._identity[track.track_id] = best
            taken.add(best)
        return ids  # type: ignore[return-value]

    def _split_shared(self, persons: list[Track], ids: list[int | None]) -> None:
        """Two tracks in one frame that continue one person (a track stitched to someone whose own track
        came back): the person stays with the track nearest where they were last seen; the other is
        someone else, identified afresh."""
        claims: dict[int, list[int]] = {}
        for p, person_id in enumerate(ids):
            if person_id is not None:
                claims.setdefault(person_id, []).append(p)
        for person_id, rows in claims.items():
            if len(rows) < 2:
                continue
            person = self._people.get(person_id)
            last = person.box if person is not None and person.box is not None else persons[rows[0]].box
            keep = min(rows, key=lambda p: self._walked(last, persons[p].box, 0.0))
            for p in rows:
                if p != keep:
                    ids[p] = None
                    del self._identity[persons[p].track_id]

    def _walked(self, before: Box, box: Box, dt: float) -> float:
        """How far a person would have walked from ``before`` to ``box`` in ``dt`` seconds, as a share of
        how far one may (``situation_radius`` plus ``situation_speed`` per second, in box heights)."""
        s = self.settings
        x1, y1, x2, y2 = before
        h = max(box[3] - box[1], 1.0)
        d = math.hypot((box[0] + box[2] - x1 - x2) / 2, (box[1] + box[3] - y1 - y2) / 2) / h
        return d / max(s.situation_radius + s.situation_speed * max(dt, 0.0), _EPS)

    def _zones_of(self, view: FrameView, boxes: np.ndarray) -> list[list[bool]]:
        """Per person, whether the feet stand in each of the view's zones (in ``view.zones`` order)."""
        if self._zone_table is None or self._zone_table.zones is not view.zones:
            self._zone_table = ZoneTable(view.zones)
            table = self._zone_table
            column = {zone_id: k for k, zone_id in enumerate(table.ids)}
            self._required_columns = [(column[z], need) for z, need in self._zone_required.items() if z in column]
            self._wash_column = column.get(self.settings.wash_zone or "")
            self._clean_column = column.get(self.settings.clean_zone or "")
        return self._zone_table.contains(anchor_points(boxes, "bottom")).tolist()

    def _observe_people(self, view: FrameView, t: float, persons: list[Track], people: list[int],
                        boxes: np.ndarray, present: np.ndarray, contested: np.ndarray,
                        improper: np.ndarray) -> list[Finding]:
        s = self.settings
        inside = self._zones_of(view, boxes) if persons else []
        zone_ids = self._zone_table.ids if self._zone_table is not None else []
        wash, clean = self._wash_column, self._clean_column
        findings: list[Finding] = []
        lacking: list[_Lacking] = []
        wrong: list[tuple[int, str | None]] = []  # the people wearing an item wrongly, and their zones
        them: list[_Person] = []
        for tid in people:
            person = self._people.get(tid)
            if person is None:
                person = self._people[tid] = _Person(self._table.take(), t, renewed=t)
            elif person.last_t != self._previous_t:
                person.held = person.required = None  # back after a gap: nothing to date changes from
            them.append(person)
        worn = self._table.update(np.array([person.row for person in them], dtype=np.int64), present, contested,
                                  self._hidden(boxes), t, np.array([person.last_t for person in them]),
                                  s.item_memory_s)
        if not self._first_frame:
            self._emerged(them, boxes, t)
        touching = self._touching(boxes)
        for p, track in enumerate(persons):
            tid, person, held = people[p], them[p], worn[p]
            # Requirements by the zones the feet stand in.
            flags = inside[p]
            zone = None
            required = None
            for column, need in self._required_columns:
                if flags[column]:
                    required = need if required is None else required | need
                    zone = zone if zone is not None else zone_ids[column]
            if required is None:
                required = self._default_required
            if zone is None and True in flags:
                zone = zone_ids[flags.index(True)]
            missing = required & ~held & self._table.known[person.row]
            names = self._names(missing)
            lacking.append(_Lacking(p, person, tid, names, missing, self._turned(person, held, required, t),
                                    required, zone))
            person.held, person.required = held, required
            if improper[p]:
                wrong.append((p, zone))
            findings += self._hygiene(person, track, t, wash is not None and flags[wash],
                                      clean is not None and flags[clean])
            person.last_t, person.box = t, track.box
            if touching[p]:
                person.touched = t
        findings += self._observe_missing(t, persons, lacking, set(people))
        findings += self._observe_improper(t, persons, them, people, wrong)
        return findings

    @staticmethod
    def _touching(boxes: np.ndarray) -> np.ndarray:
        """[P] whose box overlaps someone else's."""
        x1, y1, x2, y2 = boxes.T
        overlap = ((x1[:, None] < x2[None, :]) & (x1[None, :] < x2[:, None])
                   & (y1[:, None] < y2[None, :]) & (y1[None, :] < y2[:, None]))
        np.fill_diagonal(overlap, False)
        return overlap.any(axis=1)

    def _emerged(self, them: list[_Person], boxes: np.ndarray, t: float) -> None:
        """Someone seen for the first time with ``emerged_overlap`` of their box inside where another
        person was last seen stood behind or beside them, unseen (a group at the basin that splits up):
        they come with that person's wash and side of the clean zone's door; if that person walked into
        the clean zone less than ``stitch_gap_s`` ago, they walked in with them."""
        share = self.settings.emerged_overlap
        if share is None:
            return
        for p, person in enumerate(them):
            if person.in_clean is not None:
                continue
            x1, y1, x2, y2 = boxes[p]
            area = max((x2 - x1) * (y2 - y1), 1.0)
            best, host = share, None
            for other in them:
                if other.in_clean is None or other.box is None:
                    continue
                bx1, by1, bx2, by2 = other.box
                cover = max(min(x2, bx2) - max(x1, bx1), 0.0) * max(min(y2, by2) - max(y1, by1), 0.0) / area
                if cover >= best:
                    best, host = cover, other
            if host is not None:
                person.wash_run, person.wash_best, person.in_clean = host.wash_run, host.wash_best, host.in_clean
                if host.in_clean and host.entered is not None and t - host.entered[0] <= self.settings.stitch_gap_s:
                    person.in_clean, person.wash_best = False, host.entered[1]

    def _hidden(self, boxes: np.ndarray) -> np.ndarray:
        """[P, items] whose place on each person the people nearer the camera (their feet lower in the
        image) cover for the most part (``_HIDDEN_SHARE`` of it)."""
        hidden = np.zeros((len(boxes), len(self._items)), dtype=bool)
        # [P, P]: j stands in front of i, their boxes overlapping
        front = ((boxes[None, :, 3] > boxes[:, None, 3]) & (boxes[None, :, 0] < boxes[:, None, 2])
                 & (boxes[:, None, 0] < boxes[None, :, 2]) & (boxes[None, :, 1] < boxes[:, None, 3]))
        behind = front.any(axis=1).nonzero()[0]
        if not len(behind):
            return hidden
        mine = boxes[behind]
        origin, size = mine[:, None, :2], mine[:, None, 2:] - mine[:, None, :2]  # [B, 1, 2]
        low, high = origin + size * self._places[None, :, :2], origin + size * self._places[None, :, 2:]
        # [B, items, P, 2]: the overlap of each item's place on i with the box of each j
        overlap = np.clip(np.minimum(high[:, :, None], boxes[None, None, :, 2:])
                          - np.maximum(low[:, :, None], boxes[None, None, :, :2]), 0, None)
        covered = (overlap[..., 0] * overlap[..., 1] * front[behind][:, None, :]).sum(axis=2)
        hidden[behind] = covered >= _HIDDEN_SHARE * np.maximum((high - low).prod(axis=2), _EPS)
        return hidden

    def _observe_improper(self, t: float, persons: list[Track], them: list[_Person], people: list[int],
                          wrong: list[tuple[int, str | None]]) -> list[Finding]:
        """Items worn wrongly (a mask under the nose), one situation per person, followed by the person who
        showed it. Where tracker ids change hands, someone whose id just passed to them (or a new track)
        continues the nearest situation, within walking distance, of someone out of sight or whose id
        passed on as well."""
        passed = self._table.passed.tolist()
        for person, flag in zip(them, passed):
            if flag:
                person.renewed = t
        in_view = set(people) - self._jumped
        episodes = self._improper.open

        def orphan(episode: Episode) -> bool:  # its person is out of sight, or their id passed on since
            holder = self._people.get(episode.payload["track_id"])
            return episode.payload["track_id"] not in in_view or holder is None or holder.renewed >= episode.last_seen

        active: dict[Hashable, dict[str, Any]] = {}
        confidence: dict[Hashable, float] = {}
        for p, zone in sorted(wrong, key=lambda w: them[w[0]].improper not in episodes):  # own ones first
            person, track = them[p], persons[p]
            own = episodes.get(person.improper) if person.improper not in active else None
            key = person.improper if own is not None and (own.started or person.renewed < t) else None
            if key is None and t - person.renewed <= self.settings.stitch_gap_s:
                orphans = [(self._walked(e.payload["box"], track.box, t - e.last_seen), k)
                           for k, e in episodes.items() if k not in active and k != person.improper and orphan(e)]
                distance, near = min(orphans, default=(math.inf, None), key=lambda o: o[0])
                key = near if distance <= 1.0 else (person.improper if own is not None else None)
            if key is None:
                key = ("improper", next(self._situation_ids))
            person.improper = key
            active[key] = {"track_id": people[p], "zone": zone, "box": track.box,
                           "episode": f"{key[-1]}:{self.settings.improper_item}",  # type: ignore[index]
                           "attributes": {"items": [self.settings.improper_item]}}
            confidence[key] = track.confidence
        self._carry_unseen(episodes, t, set(people), active, pending=False)
        return [self._improper_finding(tr) for tr in self._improper.step(t, active, confidence)]

    def _observe_missing(self, t: float, persons: list[Track], lacking: list[_Lacking],
                         seen: set[int]) -> list[Finding]:
        """Missing-item situations. A situation is a set of missing items on someone, followed from frame
        to frame by the person who showed it last, or else by place: someone near where it was last seen
        who lacks the same items continues it, whatever their track id (in a crowd the tracker's ids change
        hands; the missing items stay with the person). A person who lacks something else for a while (a
        neighbour's glove fits them, the detector misses an item) keeps their reported situation open; if
        that lasts the grace time, it is a new situation, and the one before ends where the new one began."""
        episodes = self._missing.open
        claims: list[tuple[float, int, Hashable]] = []
        by_items: dict[tuple[str, ...], list[tuple[Hashable, Episode]]] = {}
        for key, episode in episodes.items():
            by_items.setdefault(episode.payload["names"], []).append((key, episode))
        for k, lack in enumerate(lacking):
            if not lack.names:
                continue
            own = lack.person.situation
            if own is not None and own in episodes and episodes[own].payload["names"] == lack.names:
                claims.append((-1.0, k, own))  # the usual case: the person goes on showing their own
                continue
            for key, episode in by_items.get(lack.names, ()):
                if key == lack.person.kept or key == lack.person.paused:
                    claims.append((-1.0, k, key))
                elif (d := self._walked(episode.payload["box"], persons[lack.row].box, t - episode.last_seen)) <= 1.0:
                    claims.append((d, k, key))
        claims.sort(key=lambda c: c[0])
        shows: dict[int, Hashable] = {}
        claimed: set[Hashable] = set()
        for _, k, key in claims:
            if k not in shows and key not in claimed:
                shows[k] = key
                claimed.add(key)
        self._take_over(t, persons, lacking, shows, claimed)
        active: dict[Hashable, dict[str, Any]] = {}
        confidence: dict[Hashable, float] = {}
        created: dict[Hashable, float] = {}
        replaces: dict[Hashable, _Lacking] = {}  # a new situation -> whose kept one it ends once it starts
        waiting: list[Hashable] = []  # open situations not shown now that neither start nor lapse
        for k, lack in enumerate(lacking):
            person = lack.person
            if not lack.names:
                # a neighbour's glove that fits for a while: lacking the same again, while their situation
                # is still open, continues it, wherever they walked meanwhile
                if person.paused is None:
                    person.paused_in_crowd = t - person.touched <= self.settings.stitch_gap_s
                person.paused = person.last_situation()
                person.situation = person.kept = None
                if person.paused_in_crowd and person.paused in episodes and episodes[person.paused].started \
                        and t - episodes[person.paused].last_seen < self.settings.crowd_end_after_s:
                    waiting.append(person.paused)
                continue
            kept = person.last_situation()
            person.paused = None
            key = shows.get(k)
            if key is None:
                key = ("situation", next(self._situation_ids))
                created[key] = lack.began
            track = persons[lack.row]
            active[key] = {
                "track_id": lack.person_id, "person": lack.person_id, "names": lack.names, "zone": lack.zone,
                "box": track.box, "episode": f"{key[1]}:{'+'.join(lack.names)}",  # type: ignore[index]
                "attributes": {"items": list(lack.names),
                               "required": list(self._names(lack.required))},
            }
            confidence[key] = track.confidence
            if key in episodes and not episodes[key].started and (
                    self._table.times[person.row, _SEEN, lack.missing] == t).any():
                # one of the items is on the person right now (not yet for long enough to count):
                # a new situation neither starts nor lapses while so
                del active[key]
                waiting.append(key)
            if kept is not None and kept != key and kept not in claimed and kept in episodes \
                    and episodes[kept].started:
                claimed.add(kept)
                person.kept = kept
                replaces[key] = lack
            else:
                person.kept = None
            person.situation = key
        waiting += self._carry_unseen(episodes, t, seen, active, pending=True)
        for key in [k for k, e in episodes.items() if not e.started and k not in active and k not in waiting]:
            self._missing.finish(key, t)  # not shown in this frame: a new situation must hold without a break
        keeping = [lack.person.kept for lack in replaces.values()] + waiting
        transitions = self._missing.step(t, active, confidence, kept=keeping)
        for key, began in created.items():
            episode = episodes.get(key)
            if episode is not None and not episode.started and began < episode.began:
                episode.began = began
        findings = []
        for tr in transitions:
            lack = replaces.get(tr.episode.key)
            if tr.phase == "start" and lack is not None and lack.person.kept is not None:
                ended = self._missing.finish(lack.person.kept, tr.episode.began)
                lack.person.kept = None
                if ended is not None:
                    findings.append(self._missing_finding(ended))
            findings.append(self._missing_finding(tr))
        return findings

    def _take_over(self, t: float, persons: list[Track], lacking: list[_Lacking], shows: dict[int, Hashable],
                   claimed: set[Hashable]) -> None:
        """Two people whose tracker ids swapped (crossing, one behind the other) show each other's
        situations: one continues the other's reported situation, the other would start a new one with
        the same items. Someone who lacks the items of a reported situation that nobody shows now, whose
        own person went on to show another reported one (or seems to lack nothing, or is out of sight),
        near where it was last seen, continues it (rather than a situation not reported yet). Someone
        seen beside its person before they went out of sight is not that person come back."""
        episodes = self._missing.open
        shown_by = {lacking[k].person_id: key for k, key in shows.items()}
        in_view = {lack.person_id for lack in lacking}
        for k, lack in enumerate(lacking):
            if not lack.names:
                continue
            mine = episodes.get(shows.get(k))
            if mine is not None and mine.started:
                continue
            best, best_d = None, 1.0
            for key, episode in episodes.items():
                if key in claimed or not episode.started or episode.payload["names"] != lack.names:
                    continue
                owner = episode.payload["person"]
                other = episodes.get(shown_by.get(owner))
                if owner in shown_by and (other is None or not other.started):
                    continue
                gone = self._people.get(owner)
                if owner not in in_view and lack.person.renewed < (gone.last_t if gone else episode.last_seen):
                    continue  # seen beside its person, who walked out of sight: someone else
                d = self._walked(episode.payload["box"], persons[lack.row].box, t - episode.last_seen)
                if d <= best_d:
                    best, best_d = key, d
            if best is not None:
                if k in shows:
                    claimed.discard(shows[k])
                shows[k] = best
                claimed.add(best)

    def _names(self, flags: np.ndarray) -> tuple[str, ...]:
        """The items flagged in an [items] bool array (remembered: people lack the same few sets)."""
        code = flags.tobytes()
        names = self._name_sets.get(code)
        if names is None:
            names = self._name_sets[code] = tuple(item for item, flag in zip(self._items, flags.tolist()) if flag)
        return names

    def _carry_unseen(self, episodes: Mapping[Hashable, Any], t: float, seen: set[int],
                      active: dict[Hashable, dict[str, Any]], pending: bool) -> list[Hashable]:
        """A person out of sight for up to ``stitch_gap_s`` (behind someone, missed by the detector)
        still lacks what they lacked: their reported episodes go on (and end at most that much late).
        Episodes still in their grace go on only where ``pending`` (an absence: the person behind
        someone still lacks their gloves) and the person was seen in more than one frame (a box the
        detector saw once confirms nothing while it is gone); a thing worn wrongly must be seen
        through its whole grace. Returned: those of people hidden in the view, which neither start nor
        lapse till the person is seen again (an event's box and snapshot show the person, not the spot
        where they were last seen); someone last seen at the frame's border walked out of view, and
        their last box is all there will be. A reported absence that someone showed as they vanished
        inside the view (behind someone) neither ends nor goes on for up to ``crowd_end_after_s``: seen
        again near there, lacking the same, they continue it."""
        held: list[Hashable] = []
        for key, episode in episodes.items():
            person_id = episode.payload["track_id"]
            person = self._people.get(person_id)
            if person_id in seen or key in active or person is None:
                continue
            away = t - person.last_t
            if away <= self.settings.stitch_gap_s and (episode.started or pending and person.last_t > person.renewed):
                if episode.started or person.box is not None and self._at_edge(person.box):
                    active[key] = episode.payload
                else:
                    held.append(key)
            elif pending and episode.started and key in (person.situation, person.kept) \
                    and away < self.settings.crowd_end_after_s and person.box is not None \
                    and not self._at_edge(person.box):
                held.append(key)  # hidden for longer (no box of their own behind someone): still lacking it
        return held

    def _at_edge(self, box: Box) -> bool:
        """Whether a box touches the border of the stream's frames."""
        width, height = self._frame_size
        x1, y1, x2, y2 = box
        return x1 <= _EDGE * width or y1 <= _EDGE * height or x2 >= (1 - _EDGE) * width or y2 >= (1 - _EDGE) * height

    def _turned(self, person: _Person, held: np.ndarray, required: np.ndarray, t: float) -> float:
        """When the person's missing set, if it changed in this frame, really began (now, if nothing
        turned or the requirements changed). The evidence takes a few frames to turn: an item taken off
        went missing at the first frame without it, one put on was worn from the first frame of the
        sightings that made it worn; the situation before ended at the last frame before the turn."""
        before, needed = person.held, person.required
        if before is None or needed is None or not (required is needed or np.array_equal(required, needed)):
            return t
        changed = held ^ before
        if not changed.any():
            return t
        changed &= required
        if not changed.any():
            return t
        lost, put_on = changed & before, changed & held
        times = self._table.times[person.row]
        episode = self._missing.open.get(person.situation)
        if episode is not None:  # the situation before: as of the last frame before the turn
            last = min(times[_SEEN, lost].min(initial=math.inf), times[_BEFORE, put_on].min(initial=math.inf))
            episode.last_seen = max(episode.began, min(episode.last_seen, float(last)))
        return float(max(times[_GONE, lost].max(initial=-math.inf), times[_SINCE, put_on].max(initial=-math.inf)))

    def _hygiene(self, person: _Person, track: Track, t: float, in_wash: bool, in_clean: bool) -> list[Finding]:
        s = self.settings
        if s.wash_zone is None or s.clean_zone is None:
            return []
        if person.in_clean is None and in_clean and s.entry_from_edge and not self._first_frame:
            if self._at_edge(track.box):
                person.in_clean = False  # came in from outside the view
        if in_wash:
            # unseen for a moment at the basin (behind someone): the stay went on meanwhile
            gap = t - person.last_t
            person.wash_run += gap if person.wash_run > 0.0 and 0.0 < gap <= s.stitch_gap_s else self._frame_s
            person.wash_best = max(person.wash_best, person.wash_run)
        else:
            person.wash_run = 0.0
        in_clean = self._in_clean(person, t, in_clean)
        findings = []
        if in_clean and person.in_clean is False:
            person.entered = (t, person.wash_best)
        if in_clean and person.in_clean is False and person.wash_best < s.min_wash_s - TIME_SLACK:
            findings.append(Finding(
                "hygiene.sequence_violation", "start", t, ended=t, track_id=track.track_id, severity="warning",
                confidence=track.confidence, zone=s.clean_zone, box=track.box,
                attributes={"wash_dwell_s": round(person.wash_best, 3), "required_s": s.min_wash_s},
            ))
        person.in_clean = in_clean
        return findings

    def _in_clean(self, person: _Person, t: float, inside: bool) -> bool:
        """Whether the person counts as in the clean zone, their feet ``inside`` it or not: one who steps
        out has left it once out for ``clean_left_after_s``, seen out all along or not. The wash for the
        next entry counts from when they stepped out; back sooner, they never left."""
        limit = self.settings.clean_left_after_s - TIME_SLACK
        if person.in_clean and not inside:
            if person.out_of_clean is None:
                person.out_of_clean, person.wash_kept = t, person.wash_best
                person.wash_best = person.wash_run
            return t - person.out_of_clean < limit
        if inside and person.out_of_clean is not None:
            out_for, person.out_of_clean = t - person.out_of_clean, None
            if out_for < limit:
                person.wash_best = max(person.wash_best, person.wash_kept)
                return True
            person.in_clean = False  # left (unseen for some of it), and now back: an entry
        return inside

    # ------------------------------------------------------------------ fire and smoke

    def _observe_fire(self, view: FrameView, t: float, fires: dict[str, list[Detection]]) -> list[Finding]:
        findings: list[Finding] = []
        frame_area = max(view.result.width * view.result.height, 1)
        for label, episodes in self._fires.items():
            found = fires.get(label)
            if not found and not episodes.open:
                continue
            active: dict[Hashable, dict[str, Any]] = {}
            confidence: dict[Hashable, float] = {}
            if found:
                areas = [(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) for d in found]
                largest = int(np.argmax(areas))
                active[label] = {"track_id": None, "zone": None, "box": found[largest].box, "episode": label,
                                 "attributes": {"area_ratio": round(areas[largest] / frame_area, 5),
                                                "count": len(found)}}
                confidence[label] = max(d.confidence for d in found)
            findings += [self._fire_finding(tr) for tr in episodes.step(t, active, confidence)]
        return findings

    # ------------------------------------------------------------------ findings

    @staticmethod
    def _finding(kind: str, tr: Transition, severity: str) -> Finding:
        episode = tr.episode
        payload = episode.payload
        return Finding(
            kind, tr.phase, episode.began, ended=tr.at if tr.phase == "end" else None,
            track_id=payload["track_id"], severity=severity, confidence=episode.peak_confidence or None,
            zone=payload["zone"], box=payload["box"], attributes=dict(payload["attributes"]),
            episode=payload["episode"],
        )

    def _missing_finding(self, tr: Transition) -> Finding:
        return self._finding("ppe.missing_item", tr, "warning")

    def _improper_finding(self, tr: Transition) -> Finding:
        return self._finding("ppe.improper", tr, "warning")

    def _fire_finding(self, tr: Transition) -> Finding:
        return self._finding(f"{tr.episode.key}.detected", tr, "critical")
