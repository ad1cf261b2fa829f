"""Generated nvinfer and nvtracker configs, key by key, against NVIDIA's documented keys."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
import yaml

from appliance.inference.engine_builder import Platform, plan_engine
from appliance.pipeline.deepstream import model_groups
from appliance.pipeline.nvconfig import InferUnit, nvinfer_properties, tracks_by_looks, write_group_configs
from tests.deepstream.site import site_config

DOCUMENTED = json.loads((Path(__file__).parent.parent / "data" / "deepstream-7.1-documented.json").read_text())
ORIN = Platform("NVIDIA Jetson Orin Nano Developer Kit", "10.3.0")


def read_key_file(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # keys are case-sensitive, as GKeyFile reads them
    parser.read_string(path.read_text())
    return parser


def read_tracker_yaml(path: Path) -> dict:
    text = path.read_text()
    first, rest = text.split("\n", 1)
    assert first == "%YAML:1.0"  # the directive NVIDIA's tracker configs start with
    return yaml.safe_load(rest)


def group_files(tmp_path: Path, precision: str = "fp16", cleanroom_looks: bool = False):
    config = site_config(tmp_path, streams_on_line=2)
    if precision != "fp16":
        config = config.model_copy(update={"engines": config.engines.model_copy(update={"precision": precision})})
    if cleanroom_looks:
        config = with_looks(config, "cleanroom", ["person"])
    written = []
    for group in model_groups(config):
        units = [InferUnit(m, uid, plan_engine(config, m, ORIN)) for uid, m in enumerate(group.models, start=1)]
        files = write_group_configs(config.deepstream.config_dir, group.name, units, len(group.sources),
                                    config.deepstream, visual=tracks_by_looks(group.sources))
        written.append((group, units, files))
    return config, written


def with_looks(config, source_id: str, labels: list[str]):
    """``config`` with ``rules.tracker.appearance_labels`` set on one source."""
    sources = []
    for source in config.sources:
        if source.id == source_id:
            tracker = source.rules.tracker.model_copy(update={"appearance_labels": labels})
            source = source.model_copy(update={"rules": source.rules.model_copy(update={"tracker": tracker})})
        sources.append(source)
    return config.model_copy(update={"sources": sources})


def assert_documented(tracker: dict) -> None:
    """Every section, key and listed value of a generated tracker config is one NVIDIA documents."""
    sections = DOCUMENTED["nvtracker_ll_config"]["sections"]
    values = DOCUMENTED["nvtracker_ll_config"]["values"]
    assert set(tracker) <= set(sections), set(tracker) - set(sections)
    for section, keys in tracker.items():
        assert set(keys) <= set(sections[section]), (section, set(keys) - set(sections[section]))
        for key, value in keys.items():
            if f"{section}.{key}" in values:
                assert str(value) in values[f"{section}.{key}"], (section, key, value)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_every_nvinfer_key_is_documented_and_says_what_the_probe_needs(tmp_path, precision):
    config, written = group_files(tmp_path, precision)
    documented = set(DOCUMENTED["nvinfer_property_group"]["keys"])
    modes = DOCUMENTED["nvinfer_property_group"]["values"]["network-mode"]
    assert len(written) == 2
    for group, units, files in written:
        for unit in units:
            parser = read_key_file(files.nvinfer[unit.model.id])
            assert parser.sections() == [DOCUMENTED["nvinfer_property_group"]["group"]]
            props = dict(parser["property"])
            undocumented = set(props) - documented
            assert not undocumented, f"keys not in NVIDIA's documentation: {undocumented}"
            assert props["network-type"] == "100" and props["output-tensor-meta"] == "1"
            assert props["process-mode"] == "1"
            assert modes[props["network-mode"]] == precision.upper()
            assert props["gie-unique-id"] == str(unit.unique_id)
            assert props["batch-size"] == str(len(group.sources))
            assert Path(props["onnx-file"]) == Path(unit.model.onnx).resolve()
            assert props["model-engine-file"] == str(unit.plan.engine)
            assert props["maintain-aspect-ratio"] == "1" and props["symmetric-padding"] == "1"
            assert float(props["net-scale-factor"]) == pytest.approx(1 / 255)
            assert props["model-color-format"] == "0"  # RGB, as the portable backend feeds the models
            assert ("int8-calib-file" in props) == (precision == "int8")
    ids = {g.name: [u.unique_id for u in units] for g, units, _ in written}
    assert ids == {"defects": [1], "defects+ppe": [1, 2]}  # models in config order


def test_without_appearance_labels_the_tracker_matches_by_iou_alone(tmp_path):
    config, written = group_files(tmp_path)
    assert len(written) == 2
    for _, _, files in written:
        tracker = read_tracker_yaml(files.tracker)
        assert_documented(tracker)
        assert tracker["VisualTracker"] == {"visualTrackerType": 0}  # no visual features on an Orin Nano
        assert tracker["StateEstimator"] == {"stateEstimatorType": 1}
        associator = tracker["DataAssociator"]
        assert not {k for k in associator if "VisualSimilarity" in k}
        assert associator["matchingScoreWeight4Iou"] == 1.0
        assert associator["minMatchingScore4Iou"] == config.deepstream.tracker.min_iou
        assert tracker["TargetManagement"]["maxTargetsPerStream"] == config.deepstream.tracker.max_targets_per_stream
        assert "minTrackerConfidence" not in tracker["TargetManagement"]


def test_a_group_with_a_source_that_tracks_by_looks_gets_nvdcf_on_colours(tmp_path):
    config, written = group_files(tmp_path, cleanroom_looks=True)
    trackers = {group.name: read_tracker_yaml(files.tracker) for group, _, files in written}
    # the clean-room camera shares its group with no other source; the production line keeps IoU alone
    assert trackers["defects"]["VisualTracker"] == {"visualTrackerType": 0}
    looks = trackers["defects+ppe"]
    assert_documented(looks)
    visual = looks["VisualTracker"]
    assert visual["visualTrackerType"] == 1  # NvDCF
    assert visual["useColorNames"] == 1 and visual["useHog"] == 0
    assert visual["featureImgSizeLevel"] <= 2  # a small feature image: light on an Orin
    associator = looks["DataAssociator"]
    assert associator["matchingScoreWeight4VisualSimilarity"] > 0
    assert 0 < associator["minMatchingScore4VisualSimilarity"] <= 1
    assert associator["matchingScoreWeight4Iou"] > 0
    assert associator["minMatchingScore4Iou"] == config.deepstream.tracker.min_iou  # the setting still gates
    estimator = looks["StateEstimator"]
    assert estimator["measurementNoiseVar4Tracker"] > estimator["measurementNoiseVar4Detector"]
    assert 0 < looks["TargetManagement"]["minTrackerConfidence"] < 1
    assert looks["TargetManagement"]["maxTargetsPerStream"] == config.deepstream.tracker.max_targets_per_stream


def test_one_source_with_appearance_labels_turns_looks_on_for_its_whole_group(tmp_path):
    config = with_looks(site_config(tmp_path, streams_on_line=2), "line-1", ["vial"])
    by_group = {group.name: tracks_by_looks(group.sources) for group in model_groups(config)}
    assert by_group == {"defects": True, "defects+ppe": False}
    assert not tracks_by_looks(with_looks(config, "line-1", []).sources)


def test_more_streams_than_the_engine_takes_is_refused_with_the_fix(tmp_path):
    config = site_config(tmp_path, streams_on_line=5)
    group = next(g for g in model_groups(config) if g.name == "defects")
    unit = InferUnit(group.models[0], 1, plan_engine(config, group.models[0], ORIN))
    reason = r"5 streams share its pipeline .* at most 4 frames \(raise engines.max_batch\)"
    with pytest.raises(ValueError, match=reason):
        nvinfer_properties(unit, len(group.sources), config.deepstream)
