"""The DeepStream pipelines, element by element, against documented properties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.inference.engine_builder import Platform, plan_engine
from appliance.pipeline.backend import BackendUnavailable
from appliance.pipeline.deepstream import (
    ElementSpec,
    PipelineBuildError,
    check_sources,
    describe_group,
    make_element,
    model_groups,
)
from appliance.pipeline.gst import Gst
from appliance.pipeline.nvconfig import InferUnit, write_group_configs
from tests.deepstream.site import site_config

DOCUMENTED = json.loads((Path(__file__).parent.parent / "data" / "deepstream-7.1-documented.json").read_text())
NVIDIA = DOCUMENTED["element_properties"]
ORIN = Platform("NVIDIA Jetson Orin Nano Developer Kit", "10.3.0")


def specs(tmp_path: Path, extra: str = ""):
    config = site_config(tmp_path, extra)
    out = {}
    for group in model_groups(config):
        units = [InferUnit(m, uid, plan_engine(config, m, ORIN)) for uid, m in enumerate(group.models, start=1)]
        files = write_group_configs(config.deepstream.config_dir, group.name, units, len(group.sources),
                                    config.deepstream)
        out[group.name] = (group, files, describe_group(group, config.deepstream, files))
    return config, out


def assert_documented(element: ElementSpec) -> None:
    if element.factory in NVIDIA:
        unknown = set(element.properties) - set(NVIDIA[element.factory]["properties"])
        assert not unknown, f"{element.factory}: properties not in NVIDIA's documentation: {unknown}"
        return
    assert element.factory in DOCUMENTED["gstreamer_elements"]["elements"], element.factory
    made = make_element(element)  # the installed GStreamer element has each property, with a valid value
    for key in element.properties:
        assert made.find_property(key) is not None


def test_one_pipeline_per_model_group_element_by_element(tmp_path):
    config, groups = specs(tmp_path)
    assert sorted(groups) == ["defects", "defects+ppe"]
    group, files, spec = groups["defects"]
    assert [e.factory for e in spec.elements()] == [
        "nvurisrcbin", "nvurisrcbin", "nvstreammux", "nvinfer", "nvtracker", "fakesink"]
    for element in spec.elements():
        assert_documented(element)
    first, second = spec.sources
    assert first.properties == {"uri": config.sources[0].uri, "gpu-id": 0, "file-loop": True}
    assert second.properties["file-loop"] is False
    mux = spec.chain[0].properties
    assert mux == {"batch-size": 2, "width": 1280, "height": 720, "batched-push-timeout": 40000,
                   "live-source": False}
    assert spec.chain[1].properties == {"config-file-path": str(files.nvinfer["defects"])}
    tracker = spec.chain[2].properties
    assert tracker["ll-config-file"] == str(files.tracker)
    assert tracker["ll-lib-file"].endswith("libnvds_nvmultiobjecttracker.so")
    assert (tracker["tracker-width"], tracker["tracker-height"]) == (640, 384)
    assert spec.chain[-1].properties == {"sync": False, "enable-last-sample": False, "qos": False}
    assert (spec.detection_probe_after, spec.track_probe_after) == ("infer-defects", "tracker")

    group, files, spec = groups["defects+ppe"]
    camera, = spec.sources
    assert camera.properties == {"uri": "rtsp://127.0.0.1:8554/cam", "gpu-id": 0, "rtsp-reconnect-interval": 10}
    assert spec.chain[0].properties["live-source"] is True and spec.chain[0].properties["batch-size"] == 1
    assert [e.name for e in spec.chain[1:3]] == ["infer-defects", "infer-ppe"]
    assert spec.detection_probe_after == "infer-ppe"  # after the last nvinfer: every tensor meta is there


def test_the_preview_branch_encodes_with_x264_where_there_is_no_hardware_encoder(tmp_path):
    _, groups = specs(tmp_path, "  preview: {enabled: true, file: out/preview.mkv, bitrate_kbps: 2000}\n")
    _, _, spec = groups["defects"]
    factories = [e.factory for e in spec.chain]
    assert factories[factories.index("nvtracker") + 1:] == [
        "nvmultistreamtiler", "nvvideoconvert", "nvdsosd", "nvvideoconvert", "capsfilter", "x264enc", "h264parse",
        "matroskamux", "filesink"]
    for element in spec.elements():
        assert_documented(element)
    by_name = {e.name: e for e in spec.chain}
    assert by_name["tiler"].properties == {"rows": 1, "columns": 2, "width": 1280, "height": 720}
    assert by_name["encode-caps"].properties["caps"] == "video/x-raw,format=I420"  # system memory for x264enc
    assert by_name["encoder"].properties["bitrate"] == 2000  # kbit/s for x264enc
    assert by_name["sink"].properties["location"] == str(tmp_path / "out" / "preview.defects.mkv")
    _, groups = specs(tmp_path, "  preview: {enabled: true, encoder: nvv4l2h264enc, bitrate_kbps: 2000}\n")
    by_name = {e.name: e for e in groups["defects"][2].chain}
    assert by_name["encoder"].properties == {"bitrate": 2_000_000}  # bit/s for nvv4l2h264enc
    assert by_name["encode-caps"].properties["caps"] == "video/x-raw(memory:NVMM),format=I420"
    for element in groups["defects"][2].elements():
        assert_documented(element)


def test_elements_and_properties_that_do_not_exist_are_refused_by_name():
    with pytest.raises(PipelineBuildError, match="element 'fakesink' .* has no property 'batch-size'"):
        make_element(ElementSpec("fakesink", "sink", {"batch-size": 4}))
    if Gst.ElementFactory.find("nvstreammux") is None:
        with pytest.raises(PipelineBuildError, match="'nvstreammux' is missing"):
            make_element(ElementSpec("nvstreammux", "mux", {"batch-size": 4}))
    caps = make_element(ElementSpec("capsfilter", "caps", {"caps": "video/x-raw,format=I420"}))
    assert caps.get_property("caps").to_string() == "video/x-raw, format=(string)I420"
    encoder = make_element(ElementSpec("x264enc", "enc", {"speed-preset": "ultrafast", "tune": "zerolatency"}))
    assert encoder.get_property("speed-preset").value_nick == "ultrafast"


def test_sources_nvurisrcbin_cannot_read_are_refused_with_the_way_out(tmp_path):
    config = site_config(tmp_path)
    assert check_sources(config) is None
    camera = config.sources[0].model_copy(update={"uri": "v4l2:///dev/video0"})
    config = config.model_copy(update={"sources": [camera, *config.sources[1:]]})
    with pytest.raises(BackendUnavailable, match=r"sources.0.uri: v4l2:// sources .* use backend: portable"):
        check_sources(config)
