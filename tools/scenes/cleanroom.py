"""Clean room / chemical handling area: people with (or without) their PPE, fire, smoke.

A static camera looks at a back wall (wash basins on the left, a bench with bottles and a
waste bin in the middle, the clean-room door on the right) and a floor on which two zones
are painted: the wash station (``WASH_ZONE``) and the clean zone (``CLEAN_ZONE``). One to
four stylised, articulated people (head, torso, two arms, two legs with a walking cycle,
three-quarter view while walking, facing the camera while standing) walk between the
zones, stand, leave the frame and come back. They are 120–220 px tall (bigger nearer the
camera).

PPE, each worn or not and put on / taken off during the scene: ``helmet`` (a hard hat),
``mask`` (over nose and mouth; ``mask_improper`` while pulled under the nose), ``gloves``
(nitrile blue or purple; one box per hand), ``gown`` (a long white or light-blue coat with
sleeves, down to the knees) and ``goggles`` (splash goggles with a strap). Every item box
is at least 10 px in each dimension. Fire (a flickering flame that grows) and smoke (a
translucent plume that grows and drifts) start at a random time in some scenes.

The whole schedule (paths, PPE changes, flame flicker, smoke puffs) is simulated at
construction from ``np.random.default_rng(seed)``; ``frames()`` only draws it, so
``timeline()`` and ``truths()`` cost no rendering and the same seed gives byte-identical
frames.

Truth per frame: a ``person`` box per visible person (the whole drawn body, PPE included;
``{"zone": "wash" | "clean" | None, "in_sight": bool}``), a box per worn PPE item of a visible person
(``{"person_track_id": id}``) that its own body (the far hand) and the people in front leave at least
``ITEM_UNHIDDEN`` unhidden (no detector can be asked for goggles behind someone's head),
``fire`` and ``smoke`` while the people (all drawn over them) leave as much unhidden. Boxes are clipped to the frame; an
object more than half of whose box lies outside the frame is left out (and so are the
items of a person left out). Track ids: people ``0..n-1``, their items
``item_track_id(person, slot)`` (the mask keeps its id while its label switches between
``mask`` and ``mask_improper``), fire ``FIRE_TRACK_ID``, smoke ``SMOKE_TRACK_ID``.

A person stands in a zone when the ground point between the feet (the bottom centre of
the person's box, give or take a few pixels of arm swing) lies inside the polygon.

Timeline (intervals cover frames ``[f0, f1)``, reported as ``f0 / fps`` and ``f1 / fps``,
and only frames in which the person is in the truth):

- ``ppe.missing_item``: one event per person and maximal interval with the same non-empty
  set of missing required items; ``{"items": sorted list}``. A mask under the nose is
  worn, not missing.
- ``ppe.improper``: while the mask is under the nose; ``{"item": "mask"}``.
- ``hygiene.sequence_violation``: a person steps into the clean zone without a stay of at
  least ``WASH_DWELL_S`` in the wash zone since the start or since they last left the
  clean zone (``start_s == end_s``, the first frame inside). Starting inside is no entry.
- ``fire.detected`` / ``smoke.detected``: from the first frame with the box (the first in which it can
  be seen) to the end, hidden for a while or not.

A person who stands behind others is in the truth all the same; their box says
``{"in_sight": false}`` while the people drawn in front of them (nearer the camera) leave
less than ``IN_SIGHT`` of their body unhidden. No camera can report what happens behind
someone before it comes into sight, so the event evaluation dates a situation from there.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import cv2
import numpy as np

from tools.scenes.common import FrameTruth, TimelineEvent, TruthObject

WIDTH, HEIGHT, FPS = 640, 360, 15
PPE_LABELS = ("person", "helmet", "mask", "mask_improper", "gloves", "gown", "goggles", "fire", "smoke")
PPE_ITEMS = ("helmet", "mask", "gloves", "gown", "goggles")
DEFAULT_REQUIRED = frozenset(PPE_ITEMS)
# Floor zones as fractions of the frame's width and height (trapezoids in perspective).
WASH_ZONE = ((0.106, 0.63), (0.344, 0.63), (0.31, 0.95), (0.02, 0.95))
CLEAN_ZONE = ((0.63, 0.63), (0.895, 0.63), (0.98, 0.95), (0.66, 0.95))
WASH_DWELL_S = 3.0
IN_SIGHT = 0.5  # a person is in sight while the people in front of them leave at least this much unhidden
ITEM_UNHIDDEN = 0.4  # an item is in the truth while the body or the people in front leave this much unhidden
FIRE_TRACK_ID = 90
SMOKE_TRACK_ID = 91
# Item slots of a person; an item's track id is item_track_id(person, slot).
ITEM_SLOTS = {"helmet": 0, "mask": 1, "glove_far": 2, "glove_near": 3, "gown": 4, "goggles": 5}
_SLOT_LABELS = ("helmet", "mask", "gloves", "gloves", "gown", "goggles")

_DT = 1.0 / FPS
_SHIFT = 4
_SCALE = 1 << _SHIFT
_HORIZON = 148  # where the back wall meets the floor
_GROUND = (205.0, 350.0)  # the range of the people's ground points (y)
_TAG_BODY = 0  # shapes tagged 1 + slot belong to an item

_SKIN = ((160, 190, 228), (125, 162, 208), (92, 128, 172), (62, 92, 132), (140, 176, 218))
_HAIR = ((30, 30, 35), (40, 62, 92), (80, 135, 185), (150, 150, 152))
_SHIRT = ((112, 62, 30), (130, 120, 40), (70, 102, 52), (64, 44, 122), (92, 92, 92))
_TROUSERS = ((62, 46, 36), (52, 52, 58), (110, 64, 34), (88, 88, 94))
_SHOES = ((228, 228, 228), (38, 38, 38), (92, 92, 98))
_HELMETS = ((20, 205, 250), (236, 236, 236), (24, 128, 248), (48, 48, 206))
_MASKS = ((240, 206, 150), (246, 246, 246), (214, 232, 170))
_GLOVES = ((222, 132, 36), (196, 72, 146))
_GOWNS = (((242, 243, 245), (150, 140, 132)), ((246, 222, 184), (168, 128, 84)))
_GOGGLES = (((44, 44, 44), (32, 32, 32)), ((70, 126, 60), (40, 40, 40)), ((150, 90, 40), (30, 30, 30)))

# Point sets as fixed linear combinations of a shape's parameters (one matrix product each).
_ELLIPSE_BASIS = {}
for _n in (14, 22):
    _a = np.linspace(0.0, 2.0 * math.pi, _n, endpoint=False)
    _ELLIPSE_BASIS[_n] = np.column_stack((np.ones(_n), np.cos(_a), np.sin(_a)))
_a = np.linspace(math.pi, 2.0 * math.pi, 11)
_TOP_BASIS = np.column_stack((np.ones(11), np.cos(_a), np.sin(_a)))
_a = np.concatenate([np.linspace(-math.pi / 2, math.pi / 2, 7)] * 2)
_e = np.concatenate([np.ones(7), np.zeros(7)])  # 1: around the end point, 0: around the start
_CAPSULE_BASIS = np.column_stack((np.ones(14), _e, (1 - _e) * -np.cos(_a), (1 - _e) * -np.sin(_a),
                                  _e * np.cos(_a), _e * np.sin(_a)))
_a = np.concatenate([np.linspace(0.0, math.pi / 2, 4) + k * math.pi / 2 for k in range(4)])
_RRECT_BASIS = np.column_stack((np.ones(16), np.repeat([1.0, -1.0, -1.0, 1.0], 4), np.repeat([1.0, 1.0, -1.0, -1.0], 4),
                                np.cos(_a), np.sin(_a)))
del _n, _a, _e

Shape = tuple[int, tuple, np.ndarray, Any, int]  # tag, colour, points, outline colour, line thickness (0: fill)


def zone_polygon(norm: Iterable[tuple[float, float]], width: int = WIDTH, height: int = HEIGHT
                 ) -> tuple[tuple[int, int], ...]:
    """A zone's polygon in pixels."""
    return tuple((int(round(x * width)), int(round(y * height))) for x, y in norm)


def item_track_id(person: int, slot: int) -> int:
    """The track id of a person's item (``slot`` from ``ITEM_SLOTS``)."""
    return 10 * (person + 1) + slot


def person_height(ground_y: float) -> float:
    """How tall (px) a person standing at ``ground_y`` appears, before their own size factor."""
    t = (ground_y - _GROUND[0]) / (_GROUND[1] - _GROUND[0])
    return 120.0 + 100.0 * min(max(t, -0.1), 1.05)


# ---------------------------------------------------------------------- geometry helpers

def _ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 22) -> np.ndarray:
    return _ELLIPSE_BASIS[n] @ np.array([[cx, cy], [ax, 0.0], [0.0, ay]])


def _top_half(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return _TOP_BASIS @ np.array([[cx, cy], [ax, 0.0], [0.0, ay]])


def _capsule(x0: float, y0: float, x1: float, y1: float, r0: float, r1: float) -> np.ndarray:
    """A limb: two half circles (radius r0 around the start, r1 around the end) joined."""
    ang = math.atan2(y1 - y0, x1 - x0) if abs(x1 - x0) + abs(y1 - y0) > 1e-6 else 0.0
    ca, sa = math.cos(ang), math.sin(ang)
    return _CAPSULE_BASIS @ np.array([[x0, y0], [x1 - x0, y1 - y0], [r0 * ca, r0 * sa], [-r0 * sa, r0 * ca],
                                      [r1 * ca, r1 * sa], [-r1 * sa, r1 * ca]])


def _rrect(cx: float, cy: float, w: float, h: float, r: float) -> np.ndarray:
    r = min(r, w / 2, h / 2)
    return _RRECT_BASIS @ np.array([[cx, cy], [w / 2 - r, 0.0], [0.0, h / 2 - r], [r, 0.0], [0.0, r]])


def _chaikin(points: np.ndarray, iterations: int = 1) -> np.ndarray:
    for _ in range(iterations):
        following = np.roll(points, -1, axis=0)
        points = np.concatenate([0.75 * points + 0.25 * following, 0.25 * points + 0.75 * following],
                                axis=1).reshape(-1, 2)
    return points


@functools.lru_cache(maxsize=4096)
def _shade(colour: tuple, factor: float) -> tuple:
    return tuple(int(min(255, round(c * factor))) for c in colour)


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32)


def _box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def _clip(box: np.ndarray) -> np.ndarray:
    return np.array([min(max(box[0], 0.0), WIDTH), min(max(box[1], 0.0), HEIGHT),
                     min(max(box[2], 0.0), WIDTH), min(max(box[3], 0.0), HEIGHT)])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


class _Person:
    """Looks, plan and PPE schedule of one person."""

    def __init__(self, rng: np.random.Generator, index: int) -> None:
        self.index = index
        self.size = float(rng.uniform(0.94, 1.0))
        self.speed = float(rng.uniform(0.65, 1.0))  # metres per second, at 1.7 m per person height
        self.skin = _SKIN[int(rng.integers(len(_SKIN)))]
        self.hair = _HAIR[int(rng.integers(len(_HAIR)))]
        self.shirt = _SHIRT[int(rng.integers(len(_SHIRT)))]
        self.trousers = _TROUSERS[int(rng.integers(len(_TROUSERS)))]
        self.shoes = _SHOES[int(rng.integers(len(_SHOES)))]
        self.helmet = _HELMETS[int(rng.integers(len(_HELMETS)))]
        self.mask = _MASKS[int(rng.integers(len(_MASKS)))]
        self.gloves = _GLOVES[int(rng.integers(len(_GLOVES)))]
        self.gown = _GOWNS[int(rng.integers(len(_GOWNS)))]
        self.goggles = _GOGGLES[int(rng.integers(len(_GOGGLES)))]
        self.actions: list[tuple] = []
        self.x = 0.0
        self.gy = 0.0
        self.facing = 0.0


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _uncovered(own: list[np.ndarray], covering: list[np.ndarray]) -> float:
    """Which fraction of the area of the polygons ``own`` the polygons ``covering`` leave uncovered."""
    joined = np.concatenate(own)
    x0, y0 = np.floor(joined.min(axis=0)) - 1
    x1, y1 = np.ceil(joined.max(axis=0)) + 1
    mask = np.zeros((int(y1 - y0), int(x1 - x0)), np.uint8)
    origin = np.array([x0, y0])
    cv2.fillPoly(mask, [_fixed(pts - origin) for pts in own], 255, cv2.LINE_8, _SHIFT)
    total = cv2.countNonZero(mask)
    if total == 0:
        return 0.0
    if covering:
        fixed = _fixed(np.concatenate(covering) - origin)
        start = 0
        for pts in covering:
            cv2.fillPoly(mask, [fixed[start:start + len(pts)]], 0, cv2.LINE_8, _SHIFT)
            start += len(pts)
    return cv2.countNonZero(mask) / total


class CleanRoomScene:
    """A clean room / chemical area with ``people`` (1–4; the seed decides when ``None``)
    wearing or lacking PPE, optionally with ``fire`` and ``smoke``. ``required`` is the set
    of items whose absence is a ``ppe.missing_item`` event (default: all five)."""

    width = WIDTH
    height = HEIGHT
    fps = FPS
    labels = PPE_LABELS

    def __init__(
        self,
        seed: int,
        duration_s: float = 40.0,
        people: int | None = None,
        fire: bool | None = None,
        smoke: bool | None = None,
        required: Iterable[str] | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        # Every choice is drawn whether or not it is overridden, and each part of the scene
        # gets its own generator, so an override does not reshuffle the rest of the scene.
        drawn_people = int(rng.integers(1, 5))
        drawn_fire = bool(rng.random() < 0.45)
        drawn_smoke = bool(rng.random() < 0.45)
        people_seed, fire_seed, smoke_seed, background_seed, render_seed = (
            int(v) for v in rng.integers(0, 2**31, size=5))
        self.seed = seed
        self.name = "cleanroom"
        self.duration_s = float(duration_s)
        self.frame_count = int(round(self.duration_s * FPS))
        self.people_count = drawn_people if people is None else int(people)
        if not 1 <= self.people_count <= 4:
            raise ValueError("people must be between 1 and 4")
        self.fire = drawn_fire if fire is None else bool(fire)
        self.smoke = drawn_smoke if smoke is None else bool(smoke)
        self.required = frozenset(DEFAULT_REQUIRED if required is None else required)
        unknown = self.required - set(PPE_ITEMS)
        if unknown:
            raise ValueError(f"unknown PPE items: {sorted(unknown)}")
        self.zones: dict[str, tuple[tuple[int, int], ...]] = {
            "wash": zone_polygon(WASH_ZONE), "clean": zone_polygon(CLEAN_ZONE)}
        self._zone_arrays = {name: np.array(poly, np.float32) for name, poly in self.zones.items()}
        self._background_seed = background_seed
        self._render_seed = render_seed
        self._background: np.ndarray | None = None

        self._make_people(np.random.default_rng(people_seed))
        self._make_fire(np.random.default_rng(fire_seed))
        self._make_smoke(np.random.default_rng(smoke_seed))
        self._make_truth()
        self._events = self._make_timeline()

    # ------------------------------------------------------------------ public API

    def timeline(self) -> list[TimelineEvent]:
        return list(self._events)

    def truths(self) -> Iterator[FrameTruth]:
        """The per-frame truth without drawing anything (what ``frames()`` yields)."""
        for index in range(self.frame_count):
            yield self._truth(index)

    def worn(self, track_id: int) -> list[dict[str, str | None]]:
        """The scripted PPE of one person for every frame: item -> ``"worn"``,
        ``"improper"`` (the mask under the nose) or ``None``."""
        states = []
        for index in range(self.frame_count):
            row: dict[str, str | None] = {}
            for i, item in enumerate(PPE_ITEMS):
                row[item] = "worn" if self._worn[index, track_id, i] else None
            if self._mask[index, track_id] == 2:
                row["mask"] = "improper"
            states.append(row)
        return states

    def frames(self) -> Iterator[tuple[np.ndarray, FrameTruth]]:
        if self._background is None:
            self._background = self._make_background(np.random.default_rng(self._background_seed))
        rng = np.random.default_rng(self._render_seed)
        pad = 24
        noise = rng.integers(0, 2 * 4 + 1, size=(HEIGHT + pad, WIDTH + pad, 3), dtype=np.uint8)
        offset = np.full((HEIGHT, WIDTH, 3), 4, np.uint8)
        texture = cv2.resize(rng.uniform(0.7, 1.0, (24, 24)).astype(np.float32), (96, 96),
                             interpolation=cv2.INTER_CUBIC)
        texture = np.tile(texture, (6, 9))
        for index in range(self.frame_count):
            image = self._background.copy()
            self._draw_fire(image, index)
            self._draw_smoke(image, index, texture)
            for k in self._far_to_near(index, range(self.people_count)):
                if self._onscreen[index, k]:
                    self._draw_person(image, k, index)
            dy, dx = (int(v) for v in rng.integers(0, pad, size=2))
            image = cv2.subtract(cv2.add(image, noise[dy:dy + HEIGHT, dx:dx + WIDTH]), offset)
            yield image, self._truth(index)

    # ------------------------------------------------------------------ people: plans

    def _in_zone(self, name: str, x: float, y: float, margin: float = 0.0) -> bool:
        return cv2.pointPolygonTest(self._zone_arrays[name], (float(x), float(y)), True) >= margin

    def _zone_point(self, rng: np.random.Generator, name: str) -> tuple[float, float]:
        poly = self._zone_arrays[name]
        (x1, y1), (x2, y2) = poly.min(axis=0), poly.max(axis=0)
        for _ in range(200):
            x, y = float(rng.uniform(x1, x2)), float(rng.uniform(y1, y2))
            if self._in_zone(name, x, y, 16.0):
                return x, y
        return float(poly[:, 0].mean()), float(poly[:, 1].mean())

    def _floor_point(self, rng: np.random.Generator) -> tuple[float, float]:
        for _ in range(200):
            x, y = float(rng.uniform(50, WIDTH - 50)), float(rng.uniform(_GROUND[0] + 3, _GROUND[1] - 3))
            if not self._in_zone("wash", x, y, -14.0) and not self._in_zone("clean", x, y, -14.0):
                return x, y
        return WIDTH / 2, (_GROUND[0] + _GROUND[1]) / 2

    def _plan(self, rng: np.random.Generator, person: _Person) -> None:
        """Decides where a person starts and the list of things they do."""
        enters = rng.random() < 0.45
        side = -1.0 if rng.random() < 0.5 else 1.0
        if enters:
            gy = float(rng.uniform(_GROUND[0] + 3, _GROUND[1] - 3))
            x = -0.35 * person_height(gy) if side < 0 else WIDTH + 0.35 * person_height(gy)
            person.facing = -side
        else:
            where = rng.random()
            if where < 0.25:
                x, gy = self._zone_point(rng, "wash")
            elif where < 0.4:
                x, gy = self._zone_point(rng, "clean")
            else:
                x, gy = self._floor_point(rng)
            person.facing = float(rng.uniform(-0.3, 0.3))
        person.x, person.gy = x, gy
        actions: list[tuple] = []
        pos = [x, gy]
        clock = [0.0]
        px_per_s = person.speed * 100.0 * person.size

        def walk(target: tuple[float, float]) -> None:
            actions.append(("goto", target[0], target[1]))
            clock[0] += math.hypot(target[0] - pos[0], target[1] - pos[1]) / px_per_s
            pos[:] = target

        def stand(seconds: float) -> None:
            actions.append(("stand", max(1, int(round(seconds * FPS)))))
            clock[0] += seconds

        routines = ("compliant", "skip", "short", "wander", "exit")
        while clock[0] < self.duration_s + 4.0:
            routine = str(rng.choice(routines, p=[0.3, 0.2, 0.14, 0.24, 0.12]))
            if routine == "compliant":
                walk(self._zone_point(rng, "wash"))
                stand(rng.uniform(3.6, 6.5))
                walk(self._zone_point(rng, "clean"))
                stand(rng.uniform(1.5, 6.0))
            elif routine in ("skip", "short"):
                if self._in_zone("clean", pos[0], pos[1]):
                    walk(self._floor_point(rng))
                    stand(rng.uniform(0.3, 2.0))
                if routine == "short":
                    walk(self._zone_point(rng, "wash"))
                    stand(rng.uniform(0.1, 1.0))
                walk(self._zone_point(rng, "clean"))
                stand(rng.uniform(1.5, 5.0))
            elif routine == "wander":
                walk(self._floor_point(rng))
                stand(rng.uniform(0.5, 4.0))
            else:
                out_side = -1.0 if pos[0] < WIDTH / 2 else 1.0
                out_x = -0.4 * person_height(pos[1]) if out_side < 0 else WIDTH + 0.4 * person_height(pos[1])
                walk((out_x, pos[1]))
                away = float(rng.uniform(2.0, 7.0))
                back_side = -1.0 if rng.random() < 0.5 else 1.0
                back_y = float(rng.uniform(_GROUND[0] + 3, _GROUND[1] - 3))
                back_x = -0.4 * person_height(back_y) if back_side < 0 else WIDTH + 0.4 * person_height(back_y)
                actions.append(("away", max(1, int(round(away * FPS))), back_x, back_y))
                clock[0] += away
                pos[:] = [back_x, back_y]
        person.actions = actions

    def _make_people(self, rng: np.random.Generator) -> None:
        n, frames = self.people_count, self.frame_count
        self._people = [_Person(rng, k) for k in range(n)]
        for person in self._people:
            self._plan(rng, person)
        self._x = np.zeros((frames, n))
        self._gy = np.zeros((frames, n))
        self._size = np.zeros((frames, n))
        self._phase = np.zeros((frames, n))
        self._amp = np.zeros((frames, n))
        self._facing = np.zeros((frames, n))
        self._onscreen = np.zeros((frames, n), bool)
        for k, person in enumerate(self._people):
            self._simulate(rng, person, k)
        self._make_ppe(rng)

    def _simulate(self, rng: np.random.Generator, person: _Person, k: int) -> None:
        x, gy, facing = person.x, person.gy, person.facing
        phase, amp = float(rng.uniform(0, 2 * math.pi)), 0.0
        queue = list(reversed(person.actions))
        current: list | None = None
        away = False
        for index in range(self.frame_count):
            if current is None:
                current = list(queue.pop()) if queue else ["stand", 10**9]
            kind = current[0]
            away = kind == "away"
            h = person_height(gy) * person.size
            if kind == "goto":
                dx, dy = current[1] - x, current[2] - gy
                dist = math.hypot(dx, dy)
                step = min(person.speed * h / 1.7 * _DT, dist)
                if dist > 1e-9:
                    x += dx / dist * step
                    gy += dy / dist * step
                    target = max(-1.0, min(1.0, 1.25 * dx / dist))
                    facing += 0.3 * (target - facing)
                phase += 2.0 * math.pi * step / (0.78 * h)
                amp += 0.3 * (1.0 - amp)
                if step >= dist - 1e-9:
                    current = None
            else:
                amp *= 0.7
                if kind == "stand":
                    target = 0.3 * (1.0 if facing >= 0 else -1.0)
                    facing += 0.12 * (target - facing)
                current[1] -= 1
                if current[1] <= 0:
                    if kind == "away":
                        x, gy = current[2], current[3]
                        facing = 1.0 if x < 0 else -1.0
                    current = None
            self._x[index, k], self._gy[index, k], self._size[index, k] = x, gy, person_height(gy) * person.size
            self._phase[index, k], self._amp[index, k], self._facing[index, k] = phase, amp, facing
            half = 0.3 * self._size[index, k]
            self._onscreen[index, k] = (not away) and -half < x < WIDTH + half

    def _make_ppe(self, rng: np.random.Generator) -> None:
        """Which items each person wears in every frame, with put-on / take-off changes."""
        n, frames = self.people_count, self.frame_count
        duration = self.duration_s
        self._worn = np.zeros((frames, n, len(PPE_ITEMS)), bool)
        self._mask = np.zeros((frames, n), np.int8)  # 0 none, 1 worn, 2 under the nose
        probability = (0.75, 0.8, 0.75, 0.8, 0.7)

        def frame(seconds: float) -> int:
            return int(min(max(round(seconds * FPS), 0), frames))

        for k in range(n):
            worn = np.zeros((frames, len(PPE_ITEMS)), bool)
            initially = rng.random(len(PPE_ITEMS)) < np.array(probability)
            worn[:] = initially
            # Take an item off (and maybe put it back) / put a missing one on.
            draws = rng.random(4)
            off_item, on_item = int(rng.integers(len(PPE_ITEMS))), int(rng.integers(len(PPE_ITEMS)))
            off_t, back_after, on_t = rng.uniform(3.0, max(3.5, duration - 6.0)), rng.uniform(3.0, 10.0), \
                rng.uniform(2.0, max(2.5, duration - 4.0))
            if draws[0] < 0.35 and initially[off_item]:
                f0 = frame(off_t)
                f1 = frame(off_t + back_after) if draws[1] < 0.5 else frames
                worn[f0:f1, off_item] = False
            if draws[2] < 0.35 and not initially[on_item]:
                worn[frame(on_t):, on_item] = True
            mask = worn[:, 1].astype(np.int8)
            # Pull the mask under the nose for a while (once or twice), or start with it there.
            improper = rng.random(3)
            starts = rng.uniform(1.5, max(2.0, duration - 6.0), size=2)
            lengths = rng.uniform(3.0, 12.0, size=2)
            if improper[0] < 0.12:
                mask[: frame(float(rng.uniform(2.0, 10.0)))] *= 2
            if improper[1] < 0.6:
                mask[frame(starts[0]):frame(starts[0] + lengths[0])] *= 2
            if improper[2] < 0.25:
                mask[frame(starts[1]):frame(starts[1] + lengths[1])] *= 2
            mask = np.minimum(mask, 2)
            self._worn[:, k] = worn
            self._mask[:, k] = mask

    # ------------------------------------------------------------------ people: drawing geometry

    def _person_shapes(self, k: int, index: int) -> list[Shape]:
        """Every polygon of one person in one frame, in drawing order, tagged with what it
        belongs to (the body, or 1 + an item slot)."""
        p = self._people[k]
        x, gy, u = self._x[index, k], self._gy[index, k], self._size[index, k]
        phase, amp, fac = self._phase[index, k], self._amp[index, k], self._facing[index, k]
        worn = self._worn[index, k]
        mask_state = int(self._mask[index, k])
        g = abs(fac)
        sgn = 1.0 if fac >= 0 else -1.0
        shapes: list[Shape] = []

        def add(tag: int, colour: tuple, pts: np.ndarray, outline: Any = None, thickness: int = 0) -> None:
            shapes.append((tag, colour, pts, outline, thickness))

        gown = bool(worn[3])
        gown_fill, gown_line = p.gown
        glove_colour = p.gloves if worn[2] else None

        # Legs: thigh angle a (forward positive), knee bend b, in the walking plane; the
        # plane's forward direction shows as x scaled by the facing.
        l1, l2, foot_h = 0.245 * u, 0.235 * u, 0.03 * u
        legs = []
        for i in (0, 1):
            ph = phase + math.pi * i
            a = 0.42 * amp * math.sin(ph)
            b = 0.9 * amp * max(0.0, math.cos(ph)) ** 1.5
            legs.append((a, b, l1 * math.cos(a) + l2 * math.cos(a - b)))
        hip_y = gy - max(legs[0][2], legs[1][2]) - foot_h
        lean = 0.02 * u * amp * fac
        hip_l = 0.045 * u * (1.0 - 0.5 * g)
        sh_y = hip_y - 0.295 * u
        sw = 0.105 * u * (1.0 - 0.4 * g)
        hw = 0.078 * u * (1.0 - 0.3 * g)
        ry = max(0.09 * u, 11.5)  # a little big on the smallest people, to fit 10 px items
        rx = 0.78 * ry
        hx, hy = x + lean + 0.015 * u * fac, sh_y - 0.03 * u - 0.85 * ry

        def leg(i: int) -> None:
            a, b, _ = legs[i]
            side = -1.0 if i == 0 else 1.0
            dim = 0.82 if i == 0 else 1.0
            hx0, hy0 = x + side * hip_l, hip_y
            kx, ky = hx0 + l1 * math.sin(a) * fac, hy0 + l1 * math.cos(a)
            ax_, ay_ = kx + l2 * math.sin(a - b) * fac, ky + l2 * math.cos(a - b)
            trousers = _shade(p.trousers, dim)
            add(_TAG_BODY, trousers, _capsule(hx0, hy0, kx, ky, 0.046 * u, 0.04 * u))
            add(_TAG_BODY, trousers, _capsule(kx, ky, ax_, ay_, 0.04 * u, 0.034 * u))
            add(_TAG_BODY, _shade(p.shoes, dim),
                _ellipse(ax_ + 0.022 * u * fac, ay_ + 0.55 * foot_h, 0.03 * u + 0.024 * u * g, 0.6 * foot_h, 14),
                _shade(p.shoes, 0.6 * dim))

        def arm(i: int) -> None:
            ph = phase + math.pi * i
            side = -1.0 if i == 0 else 1.0
            dim = 0.82 if i == 0 else 1.0
            c = -0.38 * amp * math.sin(ph)
            e = 0.15 + 0.45 * amp * max(0.0, -math.sin(ph))
            lat = side * (1.0 - g) * 0.028 * u
            sx, sy = x + lean + side * sw * 0.85, sh_y + 0.03 * u
            ex, ey = sx + 0.16 * u * math.sin(c) * fac + 0.6 * lat, sy + 0.16 * u * math.cos(c)
            wx, wy = ex + 0.15 * u * math.sin(c + e) * fac + 0.4 * lat, ey + 0.15 * u * math.cos(c + e)
            fl = math.hypot(wx - ex, wy - ey) or 1.0
            dx, dy = (wx - ex) / fl, (wy - ey) / fl
            if gown:
                fill, line = _shade(gown_fill, dim), _shade(gown_line, dim)
                add(1 + ITEM_SLOTS["gown"], fill, _capsule(sx, sy, ex, ey, 0.036 * u, 0.032 * u), line)
                add(1 + ITEM_SLOTS["gown"], fill, _capsule(ex, ey, wx, wy, 0.032 * u, 0.028 * u), line)
            else:
                skin = _shade(p.skin, dim)
                add(_TAG_BODY, skin, _capsule(sx, sy, ex, ey, 0.029 * u, 0.026 * u))
                add(_TAG_BODY, skin, _capsule(ex, ey, wx, wy, 0.026 * u, 0.022 * u))
                mx, my = sx + 0.55 * (ex - sx), sy + 0.55 * (ey - sy)
                add(_TAG_BODY, _shade(p.shirt, dim), _capsule(sx, sy, mx, my, 0.036 * u, 0.034 * u))
            cx, cy = wx + 0.025 * u * dx, wy + 0.025 * u * dy
            if glove_colour is not None:
                gr = max(5.6, 0.036 * u)
                slot = ITEM_SLOTS["glove_far" if i == 0 else "glove_near"]
                colour = _shade(glove_colour, 0.85 if i == 0 else 1.0)
                add(1 + slot, colour, _capsule(cx - 0.9 * gr * dx, cy - 0.9 * gr * dy, cx - 0.2 * gr * dx,
                                               cy - 0.2 * gr * dy, 0.8 * gr, 0.8 * gr))
                add(1 + slot, colour, _ellipse(cx, cy, gr, gr, 14), _shade(glove_colour, 0.55))
            else:
                add(_TAG_BODY, _shade(p.skin, 0.92 * dim), _ellipse(cx, cy, 0.026 * u, 0.03 * u, 14))

        leg(0)
        arm(0)
        leg(1)
        # Pelvis and torso (shirt), then the gown over them.
        add(_TAG_BODY, p.trousers, _rrect(x, hip_y + 0.01 * u, 2 * hw, 0.08 * u, 0.02 * u))
        torso = np.concatenate([_top_half(x + lean, sh_y + 0.03 * u, sw, 0.04 * u),
                                [[x + hw, hip_y + 0.03 * u], [x - hw, hip_y + 0.03 * u]]])
        add(_TAG_BODY, p.shirt, torso, _shade(p.shirt, 0.7))
        add(_TAG_BODY, p.skin, _capsule(x + lean, sh_y + 0.02 * u, hx, hy, 0.026 * u, 0.026 * u))
        if gown:
            tag = 1 + ITEM_SLOTS["gown"]
            hem_y = gy - 0.29 * u
            hem_w = 0.112 * u * (1.0 - 0.25 * g) + 0.02 * u * amp
            sway = 0.018 * u * amp * math.sin(2.0 * phase) * fac
            coat = np.concatenate([_top_half(x + lean, sh_y + 0.03 * u, sw * 1.1, 0.048 * u),
                                   [[x + hw * 1.18, hip_y], [x + hem_w + sway, hem_y],
                                    [x - hem_w + sway, hem_y], [x - hw * 1.18, hip_y]]])
            add(tag, gown_fill, coat, gown_line)
            fx = 0.35 * sw * fac
            add(tag, gown_line, np.array([[x + lean + fx, sh_y + 0.03 * u], [x + 0.35 * hem_w * fac + sway, hem_y]]),
                None, 1)
            add(tag, _shade(gown_fill, 0.8), np.array([[x + lean + fx - 0.035 * u, sh_y - 0.005 * u],
                                                      [x + lean + fx + 0.035 * u, sh_y - 0.005 * u],
                                                      [x + lean + fx, sh_y + 0.06 * u]]), gown_line)
        # Head and face. Heights on the head, in units of ry below its centre: eyes -0.12,
        # nose 0.25, mouth 0.62, chin 1; goggles around the eyes, the hard hat's brim at
        # -0.5, a mask from 0.1 (over the nose) or from 0.5 (under it).
        add(_TAG_BODY, p.skin, _ellipse(hx, hy, rx, ry), _shade(p.skin, 0.75))
        if not worn[0]:
            add(_TAG_BODY, p.hair, np.concatenate([_top_half(hx, hy - 0.2 * ry, 1.05 * rx, 0.9 * ry),
                                                   [[hx - 1.0 * rx * sgn, hy + 0.25 * ry]]]))
        if g > 0.25:
            ear = _ellipse(hx - 0.45 * rx * sgn, hy + 0.05 * ry, 0.17 * rx, 0.26 * ry, 14)
            add(_TAG_BODY, _shade(p.skin, 0.8), ear)
        xf = hx + 0.4 * rx * fac
        eye_w = 0.36 * rx * (1.0 - 0.45 * g)
        for side in (-1.0, 1.0):
            add(_TAG_BODY, (40, 32, 30), _ellipse(xf + side * eye_w, hy - 0.12 * ry, max(1.1, 0.12 * rx),
                                                 max(1.1, 0.11 * ry), 14))
        add(_TAG_BODY, _shade(p.skin, 0.7), _ellipse(xf + 0.16 * rx * fac, hy + 0.25 * ry, 0.14 * rx + 0.12 * rx * g,
                                                    0.19 * ry, 14), _shade(p.skin, 0.45))
        add(_TAG_BODY, (60, 60, 150), _ellipse(xf + 0.06 * rx * fac, hy + 0.62 * ry, 0.28 * rx * (1.0 - 0.3 * g),
                                              max(0.9, 0.07 * ry), 14))
        if mask_state:
            tag = 1 + ITEM_SLOTS["mask"]
            mw = max(11.0, 1.5 * rx * (1.0 - 0.2 * g))
            mh = max(10.5, 1.0 * ry)
            top = hy + (0.1 if mask_state == 1 else 0.5) * ry
            mx = xf + 0.06 * rx * fac
            line = _shade(p.mask, 0.7)
            ear_x = hx - 0.45 * rx * sgn if g > 0.25 else None
            for side in (-1.0, 1.0):  # ear loops
                end_x = ear_x if ear_x is not None else hx + side * 0.98 * rx
                if ear_x is not None and side * sgn > 0:
                    continue
                add(_TAG_BODY, line, np.array([[mx + side * 0.45 * mw, top + 0.2 * mh],
                                               [end_x, hy + 0.02 * ry], [mx + side * 0.45 * mw, top + 0.8 * mh]]),
                    None, 1)
            add(tag, p.mask, _rrect(mx, top + mh / 2, mw, mh, 0.32 * min(mw, mh)), line)
            for frac in (0.36, 0.66):
                add(tag, line, np.array([[mx - 0.42 * mw, top + frac * mh], [mx + 0.42 * mw, top + frac * mh]]),
                    None, 1)
            if mask_state == 1:
                add(tag, (170, 170, 170), np.array([[mx - 0.25 * mw, top + 1.5], [mx + 0.25 * mw, top + 1.5]]),
                    None, 1)
        if worn[4]:
            tag = 1 + ITEM_SLOTS["goggles"]
            frame_c, strap_c = p.goggles
            gw = max(11.0, 1.75 * rx * (1.0 - 0.2 * g))
            gh = max(10.2, 0.6 * ry)
            gx, gcy = xf + 0.05 * rx * fac, hy - 0.16 * ry
            add(tag, strap_c, _rrect(hx, gcy, 2.0 * rx, 0.4 * gh, 0.1 * gh))
            add(tag, frame_c, _rrect(gx, gcy, gw, gh, 0.3 * gh), _shade(frame_c, 0.6))
            m = max(1.6, 0.14 * gh)
            lw = (gw - 3 * m) / 2
            for side in (-1.0, 1.0):
                lens = _rrect(gx + side * (m / 2 + lw / 2), gcy, lw, gh - 2 * m, 0.3 * (gh - 2 * m))
                add(tag, (226, 214, 190), lens)
            add(tag, (250, 250, 250), np.array([[gx - 0.4 * gw, gcy - 0.15 * gh], [gx - 0.2 * gw, gcy - 0.15 * gh]]),
                None, 1)
        if worn[0]:
            tag = 1 + ITEM_SLOTS["helmet"]
            line = _shade(p.helmet, 0.6)
            brim_y = hy - 0.5 * ry
            dome_h = max(8.5, 0.82 * ry)
            add(tag, p.helmet, _top_half(hx - 0.05 * rx * fac, brim_y, 1.1 * rx, dome_h), line)
            ridge = _top_half(hx + 0.2 * rx * fac, brim_y - 0.05 * ry, 0.28 * rx, 0.92 * dome_h)
            add(tag, _shade(p.helmet, 1.15), ridge)
            add(tag, p.helmet, _ellipse(hx + 0.18 * rx * fac, brim_y, 1.4 * rx, max(1.8, 0.16 * ry)), line)
        arm(1)
        return shapes

    @staticmethod
    def _shape_boxes(shapes: list[Shape]) -> dict[int, np.ndarray]:
        """The box of the whole body (every shape) and of each item (its shapes)."""
        def box(points: list[np.ndarray]) -> np.ndarray:
            joined = np.concatenate(points)
            return np.concatenate([joined.min(axis=0), joined.max(axis=0)])

        tagged: dict[int, list[np.ndarray]] = {}
        for tag, _colour, pts, _outline, _thickness in shapes:
            if tag != _TAG_BODY:
                tagged.setdefault(tag, []).append(pts)
        boxes = {tag: box(points) for tag, points in tagged.items()}
        boxes[_TAG_BODY] = box([shape[2] for shape in shapes])
        return boxes

    @staticmethod
    def _unhidden(shapes: list[Shape], tag: int) -> float:
        """Which fraction of the shapes tagged ``tag`` the shapes drawn after them leave visible."""
        first = next(i for i, shape in enumerate(shapes) if shape[0] == tag)
        return _uncovered([shape[2] for shape in shapes if shape[0] == tag],
                          [shape[2] for shape in shapes[first + 1:] if shape[0] != tag and not shape[4]])

    # ------------------------------------------------------------------ fire and smoke

    def _make_fire(self, rng: np.random.Generator) -> None:
        frames = self.frame_count
        spot = rng.random()
        if spot < 0.5:  # on the bench
            self._fire_base = (float(rng.uniform(262, 380)), 121.0)
        else:  # a spill at the foot of the wall
            self._fire_base = (float(rng.uniform(240, 410)), float(rng.uniform(160, 176)))
        latest = max(1.0, min(25.0, self.duration_s - 8.0))
        self._fire_start = int(round(float(rng.uniform(min(4.0, latest), latest)) * FPS))
        self._fire_size = (float(rng.uniform(16, 22)), float(rng.uniform(70, 105)), float(rng.uniform(5.0, 11.0)))
        tongues = int(rng.integers(4, 7))
        noise = rng.normal(0.0, 1.0, size=(frames + 20, 2 * tongues + 1))
        smooth = np.zeros_like(noise)
        for i in range(1, len(noise)):
            smooth[i] = 0.55 * smooth[i - 1] + 0.6 * noise[i]
        self._fire_flicker = smooth[20:]
        self._fire_tongues = tongues
        self._fire_profile = rng.uniform(0.8, 1.0, size=tongues)
        if not self.fire:
            self._fire_start = frames + 1

    def _fire_polys(self, index: int) -> list[np.ndarray] | None:
        if index < self._fire_start:
            return None
        tau = (index - self._fire_start) / FPS
        s0, s1, grow = self._fire_size
        s = s0 + (s1 - s0) * (1.0 - math.exp(-tau / grow))
        n = self._fire_tongues
        fl = self._fire_flicker[index]
        bx, by = self._fire_base
        h = s * (1.0 + 0.07 * fl[-1])
        w = 0.62 * s
        points = [[bx - w / 2, by], [bx - 0.47 * w, by - 0.18 * h]]
        for j in range(n):
            t = j / (n - 1)
            centre = 1.0 - 0.55 * abs(2 * t - 1) ** 1.3
            tip_h = h * centre * self._fire_profile[j] * (1.0 + 0.13 * fl[j])
            tip_x = bx + w * 0.86 * (t - 0.5) + 0.06 * s * fl[n + j]
            points.append([tip_x, by - tip_h])
            if j < n - 1:
                nxt = 1.0 - 0.55 * abs(2 * (j + 1) / (n - 1) - 1) ** 1.3
                points.append([bx + w * 0.86 * (t + 0.5 / (n - 1) - 0.5), by - 0.42 * h * min(centre, nxt)])
        points += [[bx + 0.47 * w, by - 0.18 * h], [bx + w / 2, by]]
        outer = np.array(points)
        bottom = np.column_stack((bx + 0.5 * w * np.cos(np.linspace(0, math.pi, 7)),
                                  by + 0.07 * s * np.sin(np.linspace(0, math.pi, 7))))
        outer = _chaikin(np.concatenate([outer, bottom[1:-1]]), 1)
        polys = [outer]
        for sx, sy in ((0.72, 0.74), (0.46, 0.5), (0.22, 0.26)):
            inner = outer.copy()
            inner[:, 0] = bx + (inner[:, 0] - bx) * sx
            inner[:, 1] = by + 0.03 * s + (inner[:, 1] - by - 0.03 * s) * sy
            polys.append(inner)
        return polys

    def _make_smoke(self, rng: np.random.Generator) -> None:
        frames = self.frame_count
        duration = self.duration_s
        latest = max(1.0, min(26.0, duration - 8.0))
        own_start = float(rng.uniform(min(4.0, latest), latest))
        own_source = (float(rng.uniform(250, 400)), float(rng.uniform(108, 150)))
        wind = float(rng.uniform(-14.0, 14.0))
        if self.fire:
            start = self._fire_start / FPS + float(rng.uniform(0.5, 4.0))
            s1 = self._fire_size[1]
            source = (self._fire_base[0], self._fire_base[1] - 0.6 * s1)
        else:
            start = own_start
            source = own_source
        self._smoke_source = source
        births, t = [], start
        while t < duration:
            births.append(t)
            ramp = min(1.0, (t - start) / 10.0)
            t += float(rng.uniform(0.6, 1.4)) / (2.5 + 4.0 * ramp)
        m = len(births)
        tb = np.array(births)
        ramp = np.minimum(1.0, (tb - start) / 10.0)
        self._smoke = {
            "tb": tb,
            "x0": source[0] + rng.normal(0.0, 1.0, m) * (3.0 + 10.0 * ramp),
            "vx": rng.normal(0.0, 3.0, m) + wind,
            "vy": rng.uniform(10.0, 22.0, m),
            "r0": rng.uniform(7.0, 12.0, m) * (1.0 + 0.5 * ramp),
            "gr": rng.uniform(3.5, 7.0, m),
            "life": rng.uniform(5.0, 8.5, m),
            "amax": rng.uniform(0.45, 0.75, m) * (0.7 + 0.3 * ramp),
        }
        self._smoke_start = int(math.ceil(start * FPS - 1e-9)) if self.smoke else frames + 1

    def _smoke_particles(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        if index < self._smoke_start:
            return None
        sm = self._smoke
        t = index / FPS
        age = t - sm["tb"]
        alive = (age > 0) & (age < sm["life"])
        if not alive.any():
            return None
        age = age[alive]
        x = sm["x0"][alive] + sm["vx"][alive] * age
        y = self._smoke_source[1] - sm["vy"][alive] * age - 1.2 * age ** 1.5
        r = sm["r0"][alive] + sm["gr"][alive] * age
        a = sm["amax"][alive] * np.minimum(1.0, age / 0.8) * np.maximum(0.0, 1.0 - age / sm["life"][alive]) ** 1.2
        return x, y, r, a

    def _smoke_box(self, index: int) -> np.ndarray | None:
        parts = self._smoke_particles(index)
        if parts is None:
            return None
        x, y, r, a = parts
        seen = a >= 0.1
        if not seen.any():
            return None
        x, y, r = x[seen], y[seen], 0.85 * r[seen]
        return np.array([(x - r).min(), (y - r).min(), (x + r).max(), (y + r).max()])

    # ------------------------------------------------------------------ truth and timeline

    def _make_truth(self) -> None:
        n, frames = self.people_count, self.frame_count
        self._visible = np.zeros((frames, n), bool)
        self._zone_of = np.full((frames, n), "", dtype=object)
        self._objects: list[list[TruthObject]] = []
        fire_seen = np.zeros(frames, bool)
        smoke_seen = np.zeros(frames, bool)
        for index in range(frames):
            objects: list[TruthObject] = []
            items: list[tuple[int, TruthObject]] = []  # (slot, item)
            drawn: dict[int, tuple[list[Shape], np.ndarray]] = {}
            for k in range(n):
                x, gy = self._x[index, k], self._gy[index, k]
                zone = None
                if self._onscreen[index, k]:
                    for name in ("wash", "clean"):
                        if self._in_zone(name, x, gy):
                            zone = name
                self._zone_of[index, k] = zone or ""
                if not self._onscreen[index, k]:
                    continue
                shapes = self._person_shapes(k, index)
                boxes = self._shape_boxes(shapes)
                body = boxes[_TAG_BODY]
                clipped = _clip(body)
                if _box_area(clipped) < 0.5 * _box_area(body):
                    continue
                self._visible[index, k] = True
                drawn[k] = (shapes, body)
                objects.append(TruthObject(k, "person", tuple(float(v) for v in clipped),  # type: ignore[arg-type]
                                           {"zone": zone}))
                for slot, label in enumerate(_SLOT_LABELS):
                    box = boxes.get(1 + slot)
                    if box is None:
                        continue
                    cb = _clip(box)
                    if _box_area(cb) < 0.5 * _box_area(box):
                        continue
                    if slot == ITEM_SLOTS["glove_far"] and self._unhidden(shapes, 1 + slot) < ITEM_UNHIDDEN:
                        continue  # the far hand behind the body
                    if slot == ITEM_SLOTS["mask"] and self._mask[index, k] == 2:
                        label = "mask_improper"
                    items.append((slot, TruthObject(item_track_id(k, slot), label,
                                                    tuple(float(v) for v in cb),  # type: ignore[arg-type]
                                                    {"person_track_id": k})))
            in_front = self._in_front(index, drawn)
            for obj in objects:  # the people, so far
                covering = in_front[obj.track_id]
                obj.attributes["in_sight"] = not covering or _uncovered(
                    [shape[2] for shape in drawn[obj.track_id][0] if not shape[4]], covering) >= IN_SIGHT
            for slot, item in items:  # what the people in front hide is no one's to see
                person = item.attributes["person_track_id"]
                covering = in_front[person]
                if not covering or _uncovered([shape[2] for shape in drawn[person][0]
                                               if shape[0] == 1 + slot and not shape[4]], covering) >= ITEM_UNHIDDEN:
                    objects.append(item)
            # fire and smoke lie beneath everyone: a flame behind someone is no one's to see
            everyone = [pts for shapes, _body in drawn.values() for _tag, _colour, pts, _outline, thickness in shapes
                        if not thickness]
            polys = self._fire_polys(index)
            if polys is not None:
                outer = polys[0]
                box = np.array([outer[:, 0].min(), outer[:, 1].min(), outer[:, 0].max(), outer[:, 1].max()])
                if self._in_view(box, [outer], everyone):
                    fire_seen[index] = True
                    objects.append(TruthObject(FIRE_TRACK_ID, "fire", tuple(float(v) for v in _clip(box))))  # type: ignore
            box = self._smoke_box(index)
            if box is not None:
                plume = box[[0, 1, 2, 1, 2, 3, 0, 3]].reshape(4, 2)
                if self._in_view(box, [plume], everyone):
                    smoke_seen[index] = True
                    objects.append(TruthObject(SMOKE_TRACK_ID, "smoke", tuple(float(v) for v in _clip(box))))  # type: ignore
            self._objects.append(objects)
        self._fire_seen = fire_seen
        self._smoke_seen = smoke_seen

    @staticmethod
    def _in_view(box: np.ndarray, own: list[np.ndarray], covering: list[np.ndarray]) -> bool:
        """Whether a thing drawn as the polygons ``own`` within ``box`` goes into the truth: at least half
        of its box inside the frame and ``ITEM_UNHIDDEN`` of it left unhidden by ``covering``."""
        return _box_area(_clip(box)) >= 0.5 * _box_area(box) and (
            not covering or _uncovered(own, covering) >= ITEM_UNHIDDEN)

    def _far_to_near(self, index: int, people: Iterable[int]) -> list[int]:
        """``people`` in the order they are drawn in frame ``index``: the farthest (feet highest) first."""
        return sorted(people, key=lambda k: (self._gy[index, k], k))

    def _in_front(self, index: int, drawn: dict[int, tuple[list[Shape], np.ndarray]]) -> dict[int, list[np.ndarray]]:
        """Per person drawn in frame ``index``: the filled shapes of the people drawn after them (nearer the
        camera) whose bodies overlap theirs, which hide what lies beneath."""
        order = self._far_to_near(index, drawn)
        return {k: [pts for j in order[position + 1:] if _overlap(drawn[k][1], drawn[j][1])
                    for _tag, _colour, pts, _outline, thickness in drawn[j][0] if not thickness]
                for position, k in enumerate(order)}

    def _truth(self, index: int) -> FrameTruth:
        return FrameTruth(index, index / FPS, list(self._objects[index]))

    def _make_timeline(self) -> list[TimelineEvent]:
        events: list[TimelineEvent] = []
        frames = self.frame_count
        required = [i for i, item in enumerate(PPE_ITEMS) if item in self.required]
        dwell_frames = int(math.ceil(WASH_DWELL_S * FPS - 1e-9))
        for k in range(self.people_count):
            visible = self._visible[:, k]
            code = np.zeros(frames, np.int32)
            for i in required:
                code |= (~self._worn[:, k, i]).astype(np.int32) << i
            code[~visible] = 0
            start = 0
            for index in range(1, frames + 1):
                if index == frames or code[index] != code[start]:
                    if code[start]:
                        items = sorted(PPE_ITEMS[i] for i in required if code[start] >> i & 1)
                        events.append(TimelineEvent("ppe.missing_item", k, start / FPS, index / FPS,
                                                    {"items": items}))
                    start = index
            for f0, f1 in _runs(visible & (self._mask[:, k] == 2)):
                events.append(TimelineEvent("ppe.improper", k, f0 / FPS, f1 / FPS, {"item": "mask"}))
            in_wash = self._zone_of[:, k] == "wash"
            in_clean = self._zone_of[:, k] == "clean"
            run, best = 0, 0
            for index in range(frames):
                run = run + 1 if in_wash[index] else 0
                best = max(best, run)
                if index > 0 and in_clean[index] and not in_clean[index - 1] and best < dwell_frames:
                    events.append(TimelineEvent("hygiene.sequence_violation", k, index / FPS, index / FPS,
                                                {"zone": "clean", "wash_dwell_s": round(best / FPS, 4)}))
                if index > 0 and in_clean[index - 1] and not in_clean[index]:
                    best = 0
        end = frames / FPS
        for seen, kind, track in ((self._fire_seen, "fire.detected", FIRE_TRACK_ID),
                                  (self._smoke_seen, "smoke.detected", SMOKE_TRACK_ID)):
            if seen.any():
                events.append(TimelineEvent(kind, track, int(np.argmax(seen)) / FPS, end, {}))
        events.sort(key=lambda e: (e.start_s, -1 if e.track_id is None else e.track_id, e.kind))
        return events

    # ------------------------------------------------------------------ drawing

    def _draw_person(self, image: np.ndarray, k: int, index: int) -> None:
        x, gy, u = self._x[index, k], self._gy[index, k], self._size[index, k]
        # A soft shadow on the floor.
        x0, x1 = max(int(x - 0.25 * u), 0), min(int(x + 0.25 * u) + 1, WIDTH)
        y0, y1 = max(int(gy - 0.06 * u), 0), min(int(gy + 0.06 * u) + 1, HEIGHT)
        if x1 - x0 > 2 and y1 - y0 > 2:
            roi = image[y0:y1, x0:x1]
            dark = roi.copy()
            cv2.ellipse(dark, (int((x - x0) * _SCALE), int((gy - y0) * _SCALE)),
                        (int(0.2 * u * _SCALE), int(0.035 * u * _SCALE)), 0, 0, 360, (70, 70, 70), -1, cv2.LINE_AA,
                        _SHIFT)
            cv2.addWeighted(roi, 0.55, dark, 0.45, 0, dst=roi)
        shapes = self._person_shapes(k, index)
        joined = _fixed(np.concatenate([shape[2] for shape in shapes]))
        ends = np.cumsum([len(shape[2]) for shape in shapes]).tolist()
        for (_tag, colour, _pts, outline, thickness), start, end in zip(shapes, [0] + ends[:-1], ends):
            fixed = joined[start:end]
            if thickness:
                cv2.polylines(image, [fixed], False, colour, thickness, cv2.LINE_AA, _SHIFT)
                continue
            cv2.fillPoly(image, [fixed], colour, cv2.LINE_AA, _SHIFT)
            if outline is not None:
                cv2.polylines(image, [fixed], True, outline, 1, cv2.LINE_AA, _SHIFT)

    def _draw_fire(self, image: np.ndarray, index: int) -> None:
        polys = self._fire_polys(index)
        if polys is None:
            return
        outer = polys[0]
        bx, by = self._fire_base
        s = float(outer[:, 1].max() - outer[:, 1].min())
        # An orange glow around the flame, drawn at a quarter of the resolution.
        x0, x1 = max(int(bx - 1.4 * s), 0), min(int(bx + 1.4 * s), WIDTH)
        y0, y1 = max(int(by - 1.6 * s), 0), min(int(by + 0.8 * s), HEIGHT)
        if x1 - x0 > 8 and y1 - y0 > 8:
            small = np.zeros(((y1 - y0) // 4 + 1, (x1 - x0) // 4 + 1), np.float32)
            flick = 0.85 + 0.15 * math.tanh(self._fire_flicker[index, -1])
            cv2.ellipse(small, (int((bx - x0) / 4), int((by - 0.4 * s - y0) / 4)), (max(1, int(0.55 * s / 4)),
                        max(1, int(0.45 * s / 4))), 0, 0, 360, flick, -1)
            small = cv2.GaussianBlur(small, (0, 0), max(1.0, s / 16))
            glow = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
            roi = image[y0:y1, x0:x1]
            add = (glow[..., None] * np.array([6.0, 45.0, 90.0], np.float32)).astype(np.uint8)
            cv2.add(roi, add, dst=roi)
        for poly, colour in zip(polys, ((16, 64, 222), (0, 140, 255), (60, 212, 255), (196, 246, 255))):
            cv2.fillPoly(image, [_fixed(poly)], colour, cv2.LINE_AA, _SHIFT)

    def _draw_smoke(self, image: np.ndarray, index: int, texture: np.ndarray) -> None:
        parts = self._smoke_particles(index)
        if parts is None:
            return
        x, y, r, a = parts
        pad = 12
        x0, x1 = max(int((x - r).min()) - pad, 0), min(int((x + r).max()) + pad, WIDTH)
        y0, y1 = max(int((y - r).min()) - pad, 0), min(int((y + r).max()) + pad, HEIGHT)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for i in np.argsort(a, kind="stable"):
            cv2.circle(mask, (int((x[i] - x0) * _SCALE), int((y[i] - y0) * _SCALE)), int(r[i] * _SCALE),
                       int(min(1.0, 1.5 * a[i]) * 255), -1, cv2.LINE_AA, _SHIFT)
        mask = cv2.GaussianBlur(mask, (0, 0), 5.0)
        shift = int(index * 0.7) % 96
        tex = texture[y0 + shift:y1 + shift, x0:x1]
        alpha = mask.astype(np.float32) * (1.0 / 255.0) * tex
        roi = image[y0:y1, x0:x1].astype(np.float32)
        colour = (78.0 + 60.0 * tex)[..., None] * np.array([1.0, 1.0, 1.03], np.float32)
        a3 = alpha[..., None]
        image[y0:y1, x0:x1] = np.clip(roi * (1.0 - a3) + colour * a3, 0, 255).astype(np.uint8)

    def _make_background(self, rng: np.random.Generator) -> np.ndarray:
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        # Back wall: pale green-grey panels with seams, lit from above.
        wall = np.array([196, 204, 192], np.float32)
        low = cv2.resize(rng.normal(0.0, 1.0, (6, 12)).astype(np.float32), (WIDTH, _HORIZON),
                         interpolation=cv2.INTER_CUBIC)
        rows = np.linspace(1.04, 0.92, _HORIZON, dtype=np.float32)[:, None]
        image[:_HORIZON] = np.clip(wall * (rows + 0.02 * low)[..., None], 0, 255).astype(np.uint8)
        for sx in range(0, WIDTH, 80):
            cv2.line(image, (sx, 0), (sx, _HORIZON), (168, 176, 166), 1, cv2.LINE_AA)
        cv2.rectangle(image, (0, _HORIZON - 8), (WIDTH, _HORIZON), (120, 128, 124), -1)
        # Floor: light epoxy with a perspective grid.
        vy = -300.0
        rows = np.linspace(0.9, 1.05, HEIGHT - _HORIZON, dtype=np.float32)[:, None]
        low = cv2.resize(rng.normal(0.0, 1.0, (5, 10)).astype(np.float32), (WIDTH, HEIGHT - _HORIZON),
                         interpolation=cv2.INTER_CUBIC)
        floor = np.array([184, 186, 178], np.float32)
        image[_HORIZON:] = np.clip(floor * (rows + 0.025 * low)[..., None], 0, 255).astype(np.uint8)
        grid = (166, 168, 160)
        for bx in range(-640, 1281, 64):
            top_x = 320 + (bx - 320) * (_HORIZON - vy) / (HEIGHT - vy)
            cv2.line(image, (int(top_x * _SCALE), _HORIZON * _SCALE), (bx * _SCALE, HEIGHT * _SCALE), grid, 1,
                     cv2.LINE_AA, _SHIFT)
        for step in range(1, 12):
            y = int(_HORIZON + (HEIGHT - _HORIZON) * (step / 11) ** 1.5)
            cv2.line(image, (0, y), (WIDTH, y), grid, 1, cv2.LINE_AA)
        # Painted zones.
        for name, fill, line, text in (("wash", (200, 150, 90), (170, 90, 20), "WASH"),
                                       ("clean", (120, 190, 110), (40, 140, 30), "CLEAN ZONE")):
            poly = np.array(self.zones[name], np.int32)
            tinted = image.copy()
            cv2.fillPoly(tinted, [poly], fill, cv2.LINE_AA)
            cv2.addWeighted(image, 0.7, tinted, 0.3, 0, dst=image)
            cv2.polylines(image, [poly], True, line, 3, cv2.LINE_AA)
            cx, cy = int(poly[:, 0].mean()), int(poly[:, 1].max() - 8)
            size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0]
            cv2.putText(image, text, (cx - size[0] // 2, cy), cv2.FONT_HERSHEY_SIMPLEX, 0.45, line, 1, cv2.LINE_AA)
        # Wash station: two basins with taps, soap dispensers and a sign.
        cv2.rectangle(image, (48, 96), (228, 112), (200, 200, 204), -1)
        cv2.rectangle(image, (48, 112), (228, 146), (170, 172, 176), -1)
        cv2.rectangle(image, (48, 96), (228, 146), (120, 122, 126), 1)
        for bx in (90, 180):
            cv2.ellipse(image, (bx, 101), (30, 5), 0, 0, 360, (150, 152, 156), -1, cv2.LINE_AA)
            cv2.line(image, (bx, 80), (bx, 94), (110, 110, 116), 3, cv2.LINE_AA)
            cv2.line(image, (bx, 80), (bx + 10, 80), (110, 110, 116), 3, cv2.LINE_AA)
            cv2.rectangle(image, (bx - 40, 60), (bx - 30, 80), (230, 230, 232), -1)
            cv2.rectangle(image, (bx - 40, 60), (bx - 30, 80), (120, 120, 120), 1)
        cv2.rectangle(image, (108, 20), (170, 40), (160, 90, 30), -1)
        cv2.putText(image, "WASH", (116, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        # Bench with bottles and a waste bin.
        cv2.rectangle(image, (250, 121), (410, 128), (190, 192, 196), -1)
        cv2.rectangle(image, (256, 128), (404, 146), (150, 152, 158), -1)
        cv2.rectangle(image, (250, 121), (410, 146), (110, 112, 118), 1)
        for i in range(int(rng.integers(3, 6))):
            bx = int(262 + i * 30 + rng.integers(-4, 5))
            colour = [(60, 120, 190), (180, 120, 60), (60, 160, 80), (200, 200, 210)][int(rng.integers(4))]
            cv2.rectangle(image, (bx, 100), (bx + 10, 121), colour, -1)
            cv2.rectangle(image, (bx + 3, 94), (bx + 7, 100), (60, 60, 60), -1)
        cv2.rectangle(image, (424, 112), (446, 148), (30, 190, 230), -1)
        cv2.rectangle(image, (422, 108), (448, 114), (20, 150, 190), -1)
        # The clean-room door.
        cv2.rectangle(image, (470, 26), (570, 146), (170, 178, 172), -1)
        cv2.rectangle(image, (482, 38), (558, 100), (210, 196, 170), -1)
        cv2.rectangle(image, (470, 26), (570, 146), (110, 118, 112), 2)
        cv2.rectangle(image, (478, 8), (562, 24), (60, 150, 50), -1)
        cv2.putText(image, "CLEAN", (494, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        # A soft overhead light.
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        light = 1.05 - 0.14 * (((xx - WIDTH * 0.5) / WIDTH) ** 2 + ((yy - HEIGHT * 0.35) / HEIGHT) ** 2) * 2.0
        return np.clip(image.astype(np.float32) * light[..., None], 0, 255).astype(np.uint8)
