"""Generated clean-room, production, tool-station and cage scenarios through the whole appliance
(H.264 decode in GStreamer, the shipped models and second stages, tracking, rules): the
timeline's events appear."""

from __future__ import annotations

import json

import pytest

from tools.evaluate_events import CASES, START_DELAYS, run_scenario


def test_cleanroom_scenario_reports_fire_hygiene_violations_and_stays_in_the_clean_zone(tmp_path):
    tallies = run_scenario(CASES["cleanroom"], seed=9500, duration=30.0, out=tmp_path)
    for kind in ("fire.detected", "hygiene.sequence_violation"):
        tally = tallies[kind]
        assert tally.truth >= 1, f"the scenario has no {kind} to find"
        assert tally.recall >= 0.5 and tally.precision >= 0.5, (kind, tally)
    assert tallies["fire.detected"].latency_p90 <= START_DELAYS["fire.detected"] + 2.0
    events = [json.loads(line) for line in (tmp_path / "cleanroom-9500.events.jsonl").read_text().splitlines()]
    # each stay of someone in the clean zone (by the truth's feet) is one zone.presence, and every one reported
    # is such a stay
    scene = CASES["cleanroom"].make(9500, 30.0)
    inside: dict[int, list[float]] = {}
    for truth in scene.truths():
        for o in truth.objects:
            if o.label == "person" and o.attributes.get("zone") == "clean":
                inside.setdefault(o.track_id, []).append(truth.index / scene.fps)
    stays = []
    for frames in inside.values():
        begin = frames[0]
        for before, now in zip(frames, frames[1:] + [None]):
            if now is None or now - before > 1.0:
                stays.append((begin, before))
                begin = now
    stays = [(a, b) for a, b in stays if b - a >= 1.0]
    ends = {e["attributes"]["episode"]: e for e in events if e["kind"] == "zone.presence" and e["phase"] == "end"}
    reported = [(e["attributes"]["stream_time_s"], ends[e["id"]]["attributes"]["stream_end_s"] if e["id"] in ends
                 else 30.0) for e in events if e["kind"] == "zone.presence" and e["phase"] == "start"]
    assert stays and all(e["zone"] == "clean" for e in events if e["kind"] == "zone.presence")

    def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] <= b[1] + 0.5 and b[0] <= a[1] + 0.5

    assert all(any(overlaps(stay, r) for r in reported) for stay in stays), (stays, reported)
    assert all(any(overlaps(stay, r) for stay in stays) for r in reported), (stays, reported)
    assert len(reported) == len(stays), (stays, reported)


def test_production_scenario_reports_defective_parts_at_the_line(tmp_path):
    tallies = run_scenario(CASES["production"], seed=9500, duration=20.0, out=tmp_path)
    tally = tallies["defect.part"]
    assert tally.truth >= 3
    assert tally.matched_emitted >= 1 and tally.precision >= 0.5, tally


def test_anomaly_model_flags_defective_parts_it_was_never_shown(tmp_path):
    tallies = run_scenario(CASES["anomaly"], seed=9500, duration=20.0, out=tmp_path)
    tally = tallies["defect.anomaly"]
    assert tally.truth >= 3
    assert tally.matched_emitted >= 2 and tally.precision >= 0.6, tally
    events = [json.loads(line) for line in (tmp_path / "anomaly-9500.events.jsonl").read_text().splitlines()]
    flagged = [e for e in events if e["kind"] == "defect.anomaly"]
    heat = flagged[0]["attributes"]["heat_map"]
    assert len(heat) == 16 and all(len(row) == 16 for row in heat)
    assert max(max(row) for row in heat) >= flagged[0]["attributes"]["threshold"]


def test_tool_station_audits_each_tool_with_the_classifier_s_state(tmp_path):
    tallies = run_scenario(CASES["tools"], seed=9500, duration=30.0, out=tmp_path)
    tally = tallies["tool.verified"]
    assert tally.truth >= 4
    assert tally.recall >= 0.6 and tally.precision >= 0.6, tally
    events = [json.loads(line) for line in (tmp_path / "tools-9500.events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e["kind"] == "tool.verified" and e["phase"] == "start"]
    assert all(e["attributes"]["state"] in ("clean", "dirty", "damaged") for e in starts)
    assert all(sum(e["attributes"]["votes"].values()) >= 3 for e in starts)  # one verdict per analyzed frame


def test_cage_scenario_reports_abnormal_behaviour_and_each_animal_s_time_budget(tmp_path):
    tallies = run_scenario(CASES["cage"], seed=9501, duration=20.0, out=tmp_path)
    for kind in ("animal.immobile", "animal.hyperactive", "animal.seizure_like"):
        tally = tallies[kind]
        assert tally.truth == 1, f"the scenario should hold one {kind}"
        assert tally.recall == 1.0 and tally.precision >= 0.5, (kind, tally)
        assert max(tally.latencies) <= START_DELAYS[kind] + 2.0, (kind, tally.latencies)
    events = [json.loads(line) for line in (tmp_path / "cage-9501.events.jsonl").read_text().splitlines()]
    summaries = [e["attributes"] for e in events if e["kind"] == "animal.activity_summary"]
    assert len(summaries) == 1 and summaries[0]["partial"]  # the clip is shorter than the hour
    summary = summaries[0]
    for animal in summary["animals"]:  # each animal's time adds up to the interval
        assert sum(animal["seconds"].values()) + animal["unseen_s"] == pytest.approx(summary["interval_s"], abs=0.5)
    assert max(a["seconds"]["hyperactive"] for a in summary["animals"]) >= 2.0
    assert max(a["distance_bl"] for a in summary["animals"]) >= 10.0  # the runner covers ground
