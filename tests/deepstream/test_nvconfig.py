"""Generated nvinfer and nvtracker configs, key by key, against NVIDIA's documented keys."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import pytest
import yaml

from appliance.inference.engine_builder import Platform, plan_engine
from appliance.pipeline.deepstream import model_groups
from appliance.pipeline.nvconfig import InferUnit, nvinfer_properties, write_group_configs
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


def group_files(tmp_path: Path, precision: str = "fp16"):
    config = site_config(tmp_path, streams_on_line=2)
    if precision != "fp16":
        config = config.model_copy(update={"engines": config.engines.model_copy(update={"precision": precision})})
    written = []
    for group in model_groups(config):
        units = [InferUnit(m, uid, plan_engine(config, m, ORIN)) for uid, m in enumerate(group.models, start=1)]
        files = write_group_configs(config.deepstream.config_dir, group.name, units, len(group.sources),
                                    config.deepstream)
        written.append((group, units, files))
    return config, written


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


def test_the_tracker_config_uses_documented_sections_and_keys(tmp_path):
    config, written = group_files(tmp_path)
    sections = DOCUMENTED["nvtracker_ll_config"]["sections"]
    for _, _, files in written:
        tracker = read_tracker_yaml(files.tracker)
        assert set(tracker) <= set(sections), set(tracker) - set(sections)
        for section, values in tracker.items():
            assert set(values) <= set(sections[section]), (section, set(values) - set(sections[section]))
        assert tracker["VisualTracker"]["visualTrackerType"] == 0  # no visual features on an Orin Nano
        assert tracker["DataAssociator"]["minMatchingScore4Iou"] == config.deepstream.tracker.min_iou
        assert tracker["TargetManagement"]["maxTargetsPerStream"] == config.deepstream.tracker.max_targets_per_stream


def test_more_streams_than_the_engine_takes_is_refused_with_the_fix(tmp_path):
    config = site_config(tmp_path, streams_on_line=5)
    group = next(g for g in model_groups(config) if g.name == "defects")
    unit = InferUnit(group.models[0], 1, plan_engine(config, group.models[0], ORIN))
    reason = r"5 streams share its pipeline .* at most 4 frames \(raise engines.max_batch\)"
    with pytest.raises(ValueError, match=reason):
        nvinfer_properties(unit, len(group.sources), config.deepstream)
