#!/usr/bin/env python3
"""Score the appliance's events against the scene generators' timelines.

    python tools/evaluate_events.py [--cases production,anomaly,tools,cleanroom,cage] [--seeds 9500,9600-9609]
                                    [--duration 40] [--out var/eval] [--json F] [--detections model|truth]
                                    [--engines DIR] [--items crops|detector] [--fire hazards|ppe]

Each scenario is rendered to H.264 from a held-out seed, run through the real
appliance (GStreamer decode, the demo models, tracking, rules) with the file read
as fast as possible, and its events are matched to the timeline: a match is the
same kind, the same object (the event's box against the truth boxes of that
frame) and overlapping time. Reported per kind: precision, recall and the 90th
percentile of the start latency (when the event was reported, minus when the
situation began in the truth), against a target of the kind's configured start
delay (grace, confirmation) plus one second. A situation that begins within that
target of the clip's end cannot be reported in time, one shorter than the start
delay must not be reported: neither is scored. ``--detections truth`` feeds the
truth boxes to tracking and rules instead (no video, no model); ``--engines DIR`` runs
the models in DIR (a retrained detector) in place of the shipped ones; ``--items
detector`` gives the clean room's people the detector's items by where they lie, in
place of the item classifier's verdicts on their crops; ``--fire ppe`` takes the clean
room's fire and smoke from the ppe detector in place of the hazards detector.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appliance.analytics.animals import AnimalSettings  # noqa: E402
from appliance.analytics.assembly import analytics_for  # noqa: E402
from appliance.analytics.defects import DefectSettings  # noqa: E402
from appliance.analytics.ppe import PpeSettings  # noqa: E402
from appliance.app import Appliance  # noqa: E402
from appliance.clock import ManualClock  # noqa: E402
from appliance.config.schema import ApplianceConfig  # noqa: E402
from appliance.events.factory import EventFactory  # noqa: E402
from appliance.metrics import ApplianceMetrics  # noqa: E402
from appliance.types import Detection, Event, FrameResult  # noqa: E402
from tools.make_demo_media import render  # noqa: E402
from tools.scenes.cage import CageScene  # noqa: E402
from tools.scenes.cleanroom import CleanRoomScene  # noqa: E402
from tools.scenes.common import FrameTruth, Scene, TimelineEvent  # noqa: E402
from tools.scenes.production import TOOL_ZONE, ProductionLineScene, ToolStationScene  # noqa: E402
from tools.training.evaluate import (  # noqa: E402
    onnx_input_size,
    operating_class_confidence,
    operating_confidence,
)

ANALYZE_FPS = 5.0
ANOMALY_THRESHOLD = 0.5  # engines/anomaly.md's suggestion
TIME_TOLERANCE_S = 1.0  # an event may begin or end this much outside its truth interval
SHARED_BOX_IOU = 0.6  # an event's box fits two people this well: either may be the one it is about


@dataclass(frozen=True)
class Case:
    name: str
    model: str
    make: Callable[[int, float], Scene]
    kinds: tuple[str, ...]  # the timeline kinds scored
    object_labels: tuple[str, ...]  # truth labels an event's box is matched against (empty: any object)
    same: Callable[[dict[str, Any], TimelineEvent], bool] = lambda event, truth: True
    truth_kinds: tuple[tuple[str, str], ...] = ()  # (event kind, the timeline kind it answers) where they differ

    def answers(self, timeline_kind: str) -> str | None:
        """The event kind scored against a timeline kind (None: not scored here)."""
        for kind, truth in self.truth_kinds:
            if truth == timeline_kind:
                return kind
        return timeline_kind if timeline_kind in self.kinds and timeline_kind not in dict(self.truth_kinds) else None


def _items(event: dict[str, Any], truth: TimelineEvent) -> bool:
    return sorted(event["attributes"].get("items", [])) == sorted(truth.attributes.get("items", []))


def _ppe(event: dict[str, Any], truth: TimelineEvent) -> bool:
    return event["kind"] != "ppe.missing_item" or _items(event, truth)


def _state(event: dict[str, Any], truth: TimelineEvent) -> bool:
    return event["attributes"].get("state") == truth.attributes.get("state")


def _defect(event: dict[str, Any], truth: TimelineEvent) -> bool:
    return event["attributes"].get("defect") == truth.attributes.get("defect")


CASES = {
    "production": Case("production", "defects", lambda s, d: ProductionLineScene(seed=s, duration_s=d),
                       ("defect.part",), ("vial", "blister", "tablet"), _defect),
    # the second stage: the anomaly model, trained on good parts only, on the same parts
    "anomaly": Case("anomaly", "defects", lambda s, d: ProductionLineScene(seed=s, duration_s=d),
                    ("defect.anomaly",), ("vial", "blister", "tablet"),
                    truth_kinds=(("defect.anomaly", "defect.part"),)),
    "tools": Case("tools", "defects", lambda s, d: ToolStationScene(seed=s, duration_s=d),
                  ("tool.verified",), ("tool_clean", "tool_dirty", "tool_damaged"), _state),
    "cleanroom": Case("cleanroom", "ppe", lambda s, d: CleanRoomScene(seed=s, duration_s=d),
                      ("ppe.missing_item", "ppe.improper", "hygiene.sequence_violation", "fire.detected",
                       "smoke.detected"), ("person", "fire", "smoke"), _ppe),
    "cage": Case("cage", "animals", lambda s, d: CageScene(seed=s, duration_s=d),
                 ("animal.immobile", "animal.hyperactive", "animal.seizure_like", "animal.missing"),
                 ("rodent", "rearing")),
}


def start_delays() -> dict[str, float]:
    """Each event kind's configured start delay (grace, confirmation, minimum duration) under the
    rules' defaults, which the scenarios use: the latency target is this plus one second."""
    defects, ppe, animals = DefectSettings(), PpeSettings(), AnimalSettings()
    return {
        "defect.part": 0.0, "defect.anomaly": 0.0, "tool.verified": defects.tool_settle_s,
        "ppe.missing_item": ppe.timing.start_after_s, "ppe.improper": ppe.improper_timing.start_after_s,
        "hygiene.sequence_violation": 0.0,
        "fire.detected": ppe.fire_timing_of("fire").start_after_s,
        "smoke.detected": ppe.fire_timing_of("smoke").start_after_s,
        "animal.immobile": animals.immobile_after_s, "animal.hyperactive": animals.hyperactive_after_s,
        "animal.seizure_like": animals.seizure_after_s, "animal.missing": animals.missing_timing.start_after_s,
    }


START_DELAYS = start_delays()


ENGINES = REPO / "engines"


def model_file(engines: Path, name: str) -> Path:
    """``engines/<name>.onnx``, which must be there with its ``.labels``."""
    onnx = engines / f"{name}.onnx"
    for path in (onnx, onnx.with_suffix(".labels")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the scenario needs the {name} model")
    return onnx


def pack_or_shipped(engines: Path, name: str) -> Path:
    """``<engines>/<name>.onnx``, or the shipped one where ``engines`` (a retrained detector) has none."""
    return model_file(engines if (engines / f"{name}.onnx").is_file() else ENGINES, name)


def second_stage_model(name: str, parser: str, confidence: float, engines: Path = ENGINES) -> dict[str, Any]:
    """The config of a crop model in ``engines``, or the shipped one (its input size from the ONNX file)."""
    onnx = pack_or_shipped(engines, name)
    width, height = onnx_input_size(onnx)
    return {"id": name, "onnx": str(onnx), "labels": str(onnx.with_suffix(".labels")),
            "input": {"width": width, "height": height}, "parser": parser, "confidence": confidence}


def detector_model(name: str, onnx: Path) -> dict[str, Any]:
    """The config of a full-frame detector at its card's operating thresholds."""
    width, height = onnx_input_size(onnx)
    return {"id": name, "onnx": str(onnx), "labels": str(onnx.with_suffix(".labels")),
            "input": {"width": width, "height": height}, "parser": "yolov8",
            "confidence": operating_confidence(name), "class_confidence": operating_class_confidence(name)}


@dataclass(frozen=True)
class CleanRoomModels:
    """What the clean room runs besides the ppe detector."""

    items: bool = True  # the item classifier names each person's items from their crop (else the detector's)
    hazards: bool = True  # the hazards detector finds fire and smoke (else the ppe detector)


def scenario_config(case: Case, scene: Scene, clip: Path | None, events: Path,
                    engines: Path = ENGINES, cleanroom: CleanRoomModels = CleanRoomModels()) -> ApplianceConfig:
    """The appliance's config for one scenario: its clip (None: a test pattern in its place, for a run that
    feeds the analytics itself), the models in ``engines`` (the shipped ones by default, and where a
    retrained pack lacks one), the zones and rules."""
    model = detector_model(case.model, model_file(engines, case.model))
    uri = f"file://{clip}" if clip is not None else f"test://?width={scene.width}&height={scene.height}"
    source: dict[str, Any] = {"id": case.name, "uri": uri, "realtime": False,
                              "analyze_fps": ANALYZE_FPS, "rules": {}}
    models = [model]
    if case.name in ("production", "anomaly"):
        x = scene.inspection_x / scene.width  # type: ignore[attr-defined]
        source["lines"] = [{"id": "inspection", "points": [[x, 0.0], [x, 1.0]]}]
        source["rules"]["defects"] = {"inspection_line": "inspection"}
        if case.name == "anomaly":
            source["rules"]["defects"]["anomaly"] = {"model": "anomaly"}
            models.append(second_stage_model("anomaly", "anomaly", ANOMALY_THRESHOLD, engines))
    elif case.name == "tools":
        x1, y1, x2, y2 = TOOL_ZONE
        source["zones"] = [{"id": "table", "polygon": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "normalized": False}]
        # the detector finds the tool, the tool_states classifier names its state from the crop
        source["rules"]["defects"] = {"tool_zone": "table", "tool_check": {"model": "tool_states"}}
        models.append(second_stage_model("tool_states", "classify", 0.5, engines))
    elif case.name == "cleanroom":
        source["zones"] = [{"id": name, "polygon": [list(p) for p in poly], "normalized": False}
                           for name, poly in scene.zones.items()]  # type: ignore[attr-defined]
        source["rules"]["ppe"] = {"wash_zone": "wash", "clean_zone": "clean"}
        if cleanroom.hazards:
            models.append(detector_model("hazards", pack_or_shipped(engines, "hazards")))
            source["models"] = [case.model, "hazards"]
            source["rules"]["ppe"]["fire_model"] = "hazards"
        if cleanroom.items:
            source["rules"]["ppe"]["item_check"] = {"model": "ppe_items"}
            models.append(second_stage_model("ppe_items", "attributes", 0.5, engines))
        source["rules"]["tracker"] = {"appearance_labels": ["person"]}
        # who stands in the clean zone, for how long (not scored here: the end-to-end test checks the stays)
        source["rules"]["presence"] = {"labels": ["person"], "zones": ["clean"]}
    elif case.name == "cage":
        source["zones"] = [{"id": "cage", "polygon": [list(p) for p in scene.zones["cage"]],  # type: ignore[attr-defined]
                            "normalized": False}]
        source["rules"]["animals"] = {"cage_zone": "cage", "expected_animals": scene.animal_count}  # type: ignore
        source["rules"]["tracker"] = {"label_groups": [["rodent", "rearing"]]}
    return ApplianceConfig.model_validate({
        "device": {"id": "eval"}, "backend": "portable", "models": models, "sources": [source],
        "inference": {"workers": 1}, "events": {"jsonl": str(events)}, "metrics": {"enabled": False},
    })


def truth_frames(scene: Scene) -> list[FrameTruth]:
    if hasattr(scene, "truths"):
        return list(scene.truths())
    return [scene.truth(i) for i in range(scene.n_frames)]  # type: ignore[attr-defined]


def _iou(a: list[float], b: tuple[float, float, float, float]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def objects_of(event: dict[str, Any], truths: list[FrameTruth], fps: int, labels: tuple[str, ...]) -> set[int] | None:
    """The truth track ids under an event's box, in the frame the box is from: where the event was
    reported (a start is reported after its grace, with the box of that frame, and dated back). The
    best fit, and where two people stand in one spot, anyone else the box fits as well as
    ``SHARED_BOX_IOU`` (the box cannot tell them apart, and its snapshot shows both). None: no box, or
    a box over no one."""
    attributes = event["attributes"]
    box = attributes.get("box")
    if box is None or not labels:
        return None
    at = attributes.get("stream_reported_s", attributes["stream_time_s"])
    index = min(len(truths) - 1, max(0, round(at * fps)))
    fits = {obj.track_id: _iou(box, obj.box) for obj in truths[index].objects if obj.label in labels}
    best = max(fits.values(), default=0.0)
    if best <= 0.1:
        return None  # over no one: the time alone decides
    return {track for track, iou in fits.items() if iou == best or iou >= SHARED_BOX_IOU}


@dataclass
class Tally:
    truth: int = 0
    emitted: int = 0
    matched_truth: int = 0
    matched_emitted: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.truth += other.truth
        self.emitted += other.emitted
        self.matched_truth += other.matched_truth
        self.matched_emitted += other.matched_emitted
        self.latencies.extend(other.latencies)

    @property
    def precision(self) -> float:
        return self.matched_emitted / self.emitted if self.emitted else 1.0

    @property
    def recall(self) -> float:
        return self.matched_truth / self.truth if self.truth else 1.0

    @property
    def latency_p90(self) -> float | None:
        return float(np.percentile(self.latencies, 90)) if self.latencies else None


def sight_of(truths: list[FrameTruth]) -> dict[int, np.ndarray]:
    """Per track whose truth says whether it is in sight (a person behind others may not be): [frames]
    whether it is in the frame and in sight."""
    sight: dict[int, np.ndarray] = {}
    for truth in truths:
        for obj in truth.objects:
            if "in_sight" in obj.attributes:
                sight.setdefault(obj.track_id, np.zeros(len(truths), bool))[truth.index] = obj.attributes["in_sight"]
    return sight


def in_sight_from(truth: TimelineEvent, sight: np.ndarray | None, fps: int, delay: float) -> float | None:
    """When a situation could first be confirmed by sight: the first moment within it (for a moment's
    event, such as a violation at the door, from then on) from which its object stays in sight for the
    kind's start delay (one frame at least); None if never. The start where the truth says nothing of
    sight. A person behind others is in the timeline all the same, and no camera sees what they lack."""
    if sight is None:
        return truth.start_s
    first = round(truth.start_s * fps)
    last = round(truth.end_s * fps) if truth.end_s > truth.start_s else len(sight)
    need = max(1, round(delay * fps))
    run = 0
    for index in range(first, min(last, len(sight))):
        run = run + 1 if sight[index] else 0
        if run == need:
            return (index - need + 1) / fps
    return None


def score(case: Case, scene: Scene, events: list[dict[str, Any]]) -> dict[str, Tally]:
    truths = truth_frames(scene)
    timeline = [t for t in scene.timeline() if case.answers(t.kind) is not None]
    # a situation that begins within its kind's latency target of the clip's end cannot be reported in
    # time, and one shorter than its kind's start delay must not be (a mask under the nose for a second,
    # against a 2 s grace): neither is counted, and an event one explains is not held against the appliance
    # (a situation is dated from when it could first be seen: see ``in_sight_from``)
    end_s = len(truths) / scene.fps
    delays = [START_DELAYS[case.answers(t.kind)] for t in timeline]
    sight = sight_of(truths)
    seen = [in_sight_from(t, sight.get(t.track_id), scene.fps, delay) for t, delay in zip(timeline, delays)]
    excused = {i for i, (t, delay, since) in enumerate(zip(timeline, delays, seen))
               if since is None or since > end_s - delay - 1.0 or delay > 0 and t.end_s - since < delay}
    starts = [e for e in events if e["kind"] in case.kinds and e["phase"] == "start"]
    ends = {e["attributes"].get("episode"): e for e in events if e["phase"] == "end"}
    tallies = {kind: Tally() for kind in case.kinds}
    for i, t in enumerate(timeline):
        if i not in excused:
            tallies[case.answers(t.kind)].truth += 1
    used: set[int] = set()
    for event in starts:
        tally = tallies[event["kind"]]
        tally.emitted += 1
        began = event["attributes"]["stream_time_s"]
        end = ends.get(event["id"])
        ended = end["attributes"].get("stream_end_s", began) if end else event["attributes"].get("stream_end_s", began)
        who = objects_of(event, truths, scene.fps, case.object_labels)
        for index, truth in enumerate(timeline):
            if index in used or case.answers(truth.kind) != event["kind"]:
                continue
            if who is not None and truth.track_id is not None and truth.track_id not in who:
                continue
            if began > truth.end_s + TIME_TOLERANCE_S or ended < truth.start_s - TIME_TOLERANCE_S:
                continue
            if not case.same(event, truth):
                continue
            used.add(index)
            if index in excused:
                tally.emitted -= 1
                break
            tally.matched_emitted += 1
            tally.matched_truth += 1
            tally.latencies.append(event["attributes"]["stream_reported_s"] - seen[index])
            break
    return tallies


def run_scenario(case: Case, seed: int, duration: float, out: Path, engines: Path = ENGINES,
                 cleanroom: CleanRoomModels = CleanRoomModels()) -> dict[str, Tally]:
    scene = case.make(seed, duration)
    name = f"{case.name}-{seed}"
    clip = render(name, scene, out)
    events_path = out / f"{name}.events.jsonl"
    events_path.unlink(missing_ok=True)
    app = Appliance(scenario_config(case, scene, clip, events_path, engines, cleanroom))
    app.start()
    try:
        app.run(duration=30 * duration)
    finally:
        app.stop()
    events = [json.loads(line) for line in events_path.read_text().splitlines()] if events_path.exists() else []
    return score(case, case.make(seed, duration), events)


#: the scenarios whose truth labels are their detector's (the tool states and anomalies are second stages)
TRUTH_CASES = ("production", "cleanroom", "cage")


def run_on_truth(case: Case, seed: int, duration: float) -> dict[str, Tally]:
    """The scenario with its truth boxes as the detections (no video, no model) at the analysis rate:
    what tracking and rules make of perfect detections. The truth leaves out the items hidden behind
    others but not the people, so this is an upper bound of what a better detector could give."""
    if case.name not in TRUTH_CASES:
        raise ValueError(f"{case.name}: its events come from a second-stage model; truth detections are "
                         f"for {', '.join(TRUTH_CASES)}")
    scene = case.make(seed, duration)
    # the truth's own items, fire and smoke
    config = scenario_config(case, scene, None, Path("truth.jsonl"), cleanroom=CleanRoomModels(False, False))
    source = config.sources[0]
    emitted: list[Event] = []
    analytics = analytics_for(config, source, EventFactory(config.device.id, "truth", ManualClock()),
                              emitted.append, ApplianceMetrics())
    for truth in truth_frames(scene)[::max(1, round(scene.fps / ANALYZE_FPS))]:
        detections = [Detection(obj.label, 1.0, obj.box, case.model) for obj in truth.objects]
        analytics.process(FrameResult(source.id, truth.index, round(truth.time_s * 1e9), truth.time_s,
                                      scene.width, scene.height, detections))
    analytics.close()
    return score(case, case.make(seed, duration), [event.to_json() for event in emitted])


def evaluate(cases: list[str], seeds: list[int], duration: float, out: Path,
             truth: bool = False, engines: Path = ENGINES, cleanroom: CleanRoomModels = CleanRoomModels()
             ) -> dict[str, dict[str, Tally]]:
    report: dict[str, dict[str, Tally]] = {}
    for name in cases:
        case = CASES[name]
        totals = {kind: Tally() for kind in case.kinds}
        for seed in seeds:
            scored = (run_on_truth(case, seed, duration) if truth
                      else run_scenario(case, seed, duration, out, engines, cleanroom))
            for kind, tally in scored.items():
                totals[kind].add(tally)
        report[name] = totals
    return report


def table(report: dict[str, dict[str, Tally]]) -> Iterator[str]:
    yield "| scenario | event kind | truth | emitted | precision | recall | start latency p90 | target |"
    yield "|---|---|---:|---:|---:|---:|---:|---:|"
    for name, tallies in report.items():
        for kind, t in tallies.items():
            grace = START_DELAYS[kind]
            p90 = "–" if t.latency_p90 is None else f"{t.latency_p90:.1f} s"
            yield (f"| {name} | `{kind}` | {t.truth} | {t.emitted} | {t.precision:.2f} | {t.recall:.2f} | {p90} "
                   f"| ≤ {grace + 1:g} s |")


def seed_list(text: str) -> list[int]:
    """``9500,9600-9609`` -> the seeds, ranges inclusive."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        first, _, last = part.partition("-")
        try:
            seeds.extend(range(int(first), int(last or first) + 1))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: a seed is a number, a range is FIRST-LAST") from None
    return seeds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seeds", type=seed_list, default="9500,9501,9502", help="e.g. 9500,9600-9609")
    parser.add_argument("--duration", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "eval")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--engines", type=Path, default=ENGINES,
                        help="the models to run (a retrained pack: its <model>.onnx and .labels)")
    parser.add_argument("--detections", choices=("model", "truth"), default="model",
                        help="truth: the truth boxes stand in for the video and the model (production, cleanroom, "
                             "cage), to see what tracking and rules make of perfect detections")
    parser.add_argument("--items", choices=("crops", "detector"), default="crops",
                        help="the clean room's items: named by the ppe_items classifier from each person's crop, "
                             "or the detector's, given to people by where they lie")
    parser.add_argument("--fire", choices=("hazards", "ppe"), default="hazards",
                        help="the clean room's fire and smoke: found by the hazards detector, or by the ppe detector")
    args = parser.parse_args()
    report = evaluate([c for c in args.cases.split(",") if c], args.seeds,
                      args.duration, args.out, truth=args.detections == "truth", engines=args.engines,
                      cleanroom=CleanRoomModels(items=args.items == "crops", hazards=args.fire == "hazards"))
    for line in table(report):
        print(line)
    if args.json:
        args.json.write_text(json.dumps({
            case: {kind: {"truth": t.truth, "emitted": t.emitted, "precision": t.precision, "recall": t.recall,
                          "latency_p90_s": t.latency_p90} for kind, t in tallies.items()}
            for case, tallies in report.items()
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
