"""The event scoring of ``tools/evaluate_events.py`` on a hand-made timeline."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tools.evaluate_events import CASES, ENGINES, run_on_truth, scenario_config, score, seed_list
from tools.scenes.common import FrameTruth, TimelineEvent, TruthObject

FPS = 5
PERSON = (100.0, 100.0, 180.0, 300.0)


@dataclass
class Timeline:
    """One person in view for 40 s, and the situations the appliance should report."""

    events: list[TimelineEvent]
    fps: int = FPS
    hidden: tuple[float, float] | None = None  # while the person stands behind someone (not in sight)

    def timeline(self) -> list[TimelineEvent]:
        return self.events

    def truths(self) -> Iterator[FrameTruth]:
        for i in range(40 * FPS):
            attributes = {} if self.hidden is None else {"in_sight": not self.hidden[0] <= i / FPS < self.hidden[1]}
            yield FrameTruth(i, i / FPS, [TruthObject(1, "person", PERSON, attributes)])


def improper(began: float, reported: float, ended: float, n: int) -> list[dict[str, Any]]:
    attributes = {"stream_time_s": began, "stream_reported_s": reported, "box": list(PERSON)}
    return [{"id": f"e{n}", "kind": "ppe.improper", "phase": "start", "attributes": attributes},
            {"id": f"x{n}", "kind": "ppe.improper", "phase": "end",
             "attributes": {"episode": f"e{n}", "stream_end_s": ended}}]


def test_a_situation_shorter_than_the_grace_is_neither_counted_nor_held_against_the_appliance():
    # a mask under the nose for 1 s (the grace is 2 s: the rules must let it pass), then for 5 s
    scene = Timeline([TimelineEvent("ppe.improper", 1, 5.0, 6.0, {"item": "mask"}),
                      TimelineEvent("ppe.improper", 1, 10.0, 15.0, {"item": "mask"})])
    case = CASES["cleanroom"]

    silent = score(case, scene, [])["ppe.improper"]
    assert (silent.truth, silent.emitted, silent.recall) == (1, 0, 0.0)

    right = score(case, scene, improper(10.0, 12.0, 15.0, 1))["ppe.improper"]
    assert (right.truth, right.emitted, right.matched_emitted, right.latencies) == (1, 1, 1, [2.0])

    # the brief one reported too (a detector that flickered on for longer): not a false event
    both = score(case, scene, improper(5.0, 7.0, 7.0, 2) + improper(10.0, 12.0, 15.0, 1))["ppe.improper"]
    assert (both.truth, both.emitted, both.matched_emitted, both.precision) == (1, 1, 1, 1.0)

    # an event where nothing happened is held against it
    wrong = score(case, scene, improper(25.0, 27.0, 30.0, 3) + improper(10.0, 12.0, 15.0, 1))["ppe.improper"]
    assert (wrong.truth, wrong.emitted, wrong.matched_emitted, wrong.precision) == (1, 2, 1, 0.5)


def test_a_situation_is_dated_from_when_it_could_first_be_seen():
    # a mask under the nose from 10 s, but the person stands behind someone until 13 s
    case = CASES["cleanroom"]
    scene = Timeline([TimelineEvent("ppe.improper", 1, 10.0, 20.0, {"item": "mask"})], hidden=(8.0, 13.0))
    seen = score(case, scene, improper(13.0, 15.0, 20.0, 1))["ppe.improper"]
    assert (seen.truth, seen.matched_truth, seen.latencies) == (1, 1, [2.0])  # 15 s - 13 s, not 15 s - 10 s
    # in sight again for less than the 2 s grace before it ends: it cannot be confirmed, and is not counted
    brief = Timeline([TimelineEvent("ppe.improper", 1, 10.0, 14.0, {"item": "mask"})], hidden=(8.0, 12.5))
    assert score(case, brief, [])["ppe.improper"].truth == 0
    # a truth that says nothing of sight: from the start
    plain = score(case, Timeline(scene.events), improper(13.0, 15.0, 20.0, 1))["ppe.improper"]
    assert plain.latencies == [5.0]


@dataclass
class TwoAtTheDoor:
    """Two people: person 2 stands just behind person 1 (boxes of IoU 0.71) for 40 s."""

    events: list[TimelineEvent]
    fps: int = FPS

    def timeline(self) -> list[TimelineEvent]:
        return self.events

    def truths(self) -> Iterator[FrameTruth]:
        for i in range(40 * FPS):
            yield FrameTruth(i, i / FPS, [TruthObject(1, "person", PERSON),
                                          TruthObject(2, "person", (110.0, 90.0, 190.0, 290.0))])


def violation(box: tuple[float, ...]) -> list[dict[str, Any]]:
    return [{"id": "v", "kind": "hygiene.sequence_violation", "phase": "start",
             "attributes": {"stream_time_s": 10.0, "stream_reported_s": 10.0, "stream_end_s": 10.0, "box": list(box)}}]


def test_a_box_over_two_people_in_one_spot_may_be_about_either():
    case = CASES["cleanroom"]
    scene = TwoAtTheDoor([TimelineEvent("hygiene.sequence_violation", 2, 10.0, 10.0, {"zone": "clean"})])
    # the box fits person 1 best (IoU 1.0) and person 2 well (0.71): the violation is person 2's
    shared = score(case, scene, violation(PERSON))["hygiene.sequence_violation"]
    assert (shared.truth, shared.matched_truth, shared.matched_emitted) == (1, 1, 1)
    # a box that fits person 1 best (0.42) and person 2 less (0.29) is about person 1: a false event
    beside = score(case, scene, violation((70.0, 110.0, 150.0, 310.0)))["hygiene.sequence_violation"]
    assert (beside.truth, beside.matched_truth, beside.emitted, beside.matched_emitted) == (1, 0, 1, 0)


def test_truth_detections_through_tracking_and_rules_give_the_timeline():
    # three people for 20 s: four missing-item situations, two masks under the nose, a violation, a fire
    tallies = run_on_truth(CASES["cleanroom"], 9501, 20.0)
    found = {kind: (t.truth, t.emitted, t.matched_truth) for kind, t in tallies.items() if t.truth}
    assert found == {"ppe.missing_item": (4, 4, 4), "ppe.improper": (2, 2, 2),
                     "hygiene.sequence_violation": (1, 1, 1), "fire.detected": (1, 1, 1)}
    with pytest.raises(ValueError, match="second-stage"):
        run_on_truth(CASES["tools"], 9501, 20.0)


def test_seeds_are_listed_and_ranged() -> None:
    assert seed_list("9500, 9600-9602,9700") == [9500, 9600, 9601, 9602, 9700]
    with pytest.raises(argparse.ArgumentTypeError, match="'96x'"):
        seed_list("9500,96x")


def test_another_model_pack_can_stand_in_for_the_shipped_one(tmp_path) -> None:
    case = CASES["cleanroom"]
    scene = case.make(9500, 1.0)
    assert scenario_config(case, scene, None, tmp_path / "e.jsonl").models[0].onnx == ENGINES / "ppe.onnx"
    for name in ("ppe.onnx", "ppe.labels"):
        (tmp_path / name).write_bytes((ENGINES / name).read_bytes())
    config = scenario_config(case, scene, None, tmp_path / "e.jsonl", engines=tmp_path)
    # the models the pack lacks, the second stage and the fire and smoke detector: the shipped ones
    assert {m.id: m.onnx for m in config.models} == {
        "ppe": tmp_path / "ppe.onnx", "hazards": ENGINES / "hazards.onnx", "ppe_items": ENGINES / "ppe_items.onnx"}
    assert config.sources[0].models == ["ppe", "hazards"]
    ppe = config.sources[0].rules.ppe
    assert ppe is not None and ppe.fire_model == "hazards"
    with pytest.raises(FileNotFoundError, match="animals.onnx: the scenario needs the animals model"):
        scenario_config(CASES["cage"], CASES["cage"].make(9500, 1.0), None, tmp_path / "e.jsonl", engines=tmp_path)
