"""The config loader: every problem reads ``file:line: key.path: reason``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from appliance.config.loader import ConfigError, ConfigProblem, load_config, validate_files
from appliance.config.schema import ApplianceConfig

MODEL = """\
models:
  - id: detector
    onnx: model.onnx
    labels: labels.txt
    input: {width: 640, height: 640}
"""  # lines 1-5 of every config below that starts with it


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A config directory holding a dummy model, its labels and a clip."""
    (tmp_path / "model.onnx").write_bytes(b"not really onnx")
    (tmp_path / "labels.txt").write_text("part\ncrack\n", encoding="utf-8")
    (tmp_path / "clip.mp4").write_bytes(b"not really a video")
    return tmp_path


def write(directory: Path, text: str, name: str = "appliance.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def assert_only_problem(path: Path, line: int, key: str, phrase: str) -> ConfigProblem:
    """The file has exactly one problem, and it reads ``path:line: key: ...phrase...``."""
    problems = problems_of(path)
    assert [str(p) for p in problems] == [str(problems[0])], "expected exactly one problem"
    problem = problems[0]
    assert str(problem).startswith(f"{path}:{line}: {key}: "), str(problem)
    assert phrase in problem.reason, str(problem)
    assert str(problem) == f"{path}:{line}: {key}: {problem.reason}"
    return problem


# --- the file and its YAML --------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    problem = assert_only_problem(path, 1, "(file)", "file not found")
    assert problem.line is None


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_only_problem(tmp_path, 1, "(file)", "is a directory")


def test_empty_file(tmp_path: Path) -> None:
    assert_only_problem(write(tmp_path, ""), 1, "(file)", "file is empty")


def test_only_comments(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing configured yet\n\n# still nothing\n")
    assert_only_problem(path, 1, "(file)", "empty")


def test_yaml_syntax_error_reports_the_mark_line(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
    models: [detector
  - id: cam2
""",
    )
    problem = assert_only_problem(path, 10, "(file)", "YAML syntax error")
    assert "flow sequence started on line 9" in problem.reason


def test_unclosed_quote(site: Path) -> None:
    path = write(site, 'sources:\n  - id: cam1\n    uri: "test://smpte\n')
    problem = assert_only_problem(path, 4, "(file)", "YAML syntax error")
    assert "quoted scalar started on line 3" in problem.reason


def test_several_documents(site: Path) -> None:
    path = write(site, "backend: portable\n---\nbackend: auto\n")
    assert_only_problem(path, 2, "(file)", "expected a single document")


def test_python_tags_are_refused(site: Path) -> None:
    path = write(site, "backend: portable\ndevice: !!python/object:os.system {}\n")
    assert_only_problem(path, 2, "(file)", "unsupported YAML")


def test_control_character(tmp_path: Path) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_text("backend: portable\ndevice:\n  site: a\x01b\n", encoding="utf-8")
    assert_only_problem(path, 3, "(file)", "unacceptable character #x0001")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "appliance.yaml"
    path.write_bytes(b"backend: portable\ndevice:\n  site: Z\xfcrich\n")
    assert_only_problem(path, 3, "(file)", "not UTF-8")


def test_top_level_list(tmp_path: Path) -> None:
    path = write(tmp_path, "- id: cam1\n  uri: test://smpte\n")
    problem = assert_only_problem(path, 1, "(top)", "top level must be a mapping")
    assert "not a list" in problem.reason
    assert "sources" in problem.reason


def test_top_level_scalar(tmp_path: Path) -> None:
    path = write(tmp_path, "# a comment first\njust a string\n")
    assert_only_problem(path, 2, "(top)", "must be a mapping")


def test_duplicate_yaml_key(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
    analyze_fps: 5
    analyze_fps: 10
""",
    )
    problem = assert_only_problem(path, 10, "sources.0.analyze_fps", "duplicate key")
    assert "line 9" in problem.reason


def test_duplicate_top_level_key(site: Path) -> None:
    path = write(site, MODEL + "sources:\n  - {id: cam1, uri: test://}\nmodels: []\n")
    assert_only_problem(path, 8, "models", "duplicate key (first defined on line 1")


def test_anchors_and_merge_keys_are_not_duplicates(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - &camera
    id: cam1
    uri: test://smpte
    analyze_fps: 2
  - <<: *camera
    id: cam2
""",
    )
    config = load_config(path)
    assert [(s.id, s.analyze_fps) for s in config.sources] == [("cam1", 2.0), ("cam2", 2.0)]


# --- the schema, key by key -------------------------------------------------------------


def test_unknown_top_level_key(site: Path) -> None:
    path = write(site, MODEL + "sources:\n  - {id: cam1, uri: test://}\ncameras: []\n")
    problem = assert_only_problem(path, 8, "cameras", "unknown key (allowed: version, device,")
    assert "sources" in problem.reason


def test_unknown_key_in_a_source(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
  - id: cam2
    uri: test://ball
    fps: 5
""",
    )
    problem = assert_only_problem(path, 11, "sources.1.fps", "unknown key (allowed: id, uri,")
    assert "analyze_fps" in problem.reason


def test_unknown_key_deep_inside(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
    reconnect:
      initial_s: 1
      backoff: 2
""",
    )
    assert_only_problem(
        path, 11, "sources.0.reconnect.backoff", "allowed: initial_s, max_s, stall_timeout_s"
    )


def test_wrong_type(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
    analyze_fps: fast
""",
    )
    problem = assert_only_problem(path, 9, "sources.0.analyze_fps", "valid number")
    assert "(got 'fast')" in problem.reason


def test_mapping_expected(site: Path) -> None:
    path = write(site, MODEL + "sources:\n  - {id: cam1, uri: test://}\ndevice: line-3\n")
    assert_only_problem(path, 8, "device", "should be a mapping (keys: id, site)")


def test_source_without_uri(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
  - id: cam2
    analyze_fps: 2
""",
    )
    assert_only_problem(path, 9, "sources.1.uri", "required key missing")


def test_no_sources_at_all(site: Path) -> None:
    path = write(site, "# the plant's line 3\nbackend: portable\n" + MODEL)
    assert_only_problem(path, 2, "sources", "required key missing")


def test_empty_source_list(site: Path) -> None:
    path = write(site, MODEL + "sources: []\n")
    assert_only_problem(path, 6, "sources", "at least 1 item")


def test_missing_nested_key(site: Path) -> None:
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: model.onnx
    labels: labels.txt
    input:
      width: 640
sources:
  - {id: cam1, uri: test://}
""",
    )
    assert_only_problem(path, 5, "models.0.input.height", "required key missing")


def test_missing_model_file(site: Path) -> None:
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: models/yolov8n.onnx
    labels: labels.txt
    input: {width: 640, height: 640}
sources:
  - {id: cam1, uri: test://}
""",
    )
    problem = assert_only_problem(path, 3, "models.0.onnx", "model file not found")
    assert str(site / "models" / "yolov8n.onnx") in problem.reason


def test_missing_labels_file(site: Path) -> None:
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: model.onnx
    labels: coco.names
    input: {width: 640, height: 640}
sources:
  - {id: cam1, uri: test://}
""",
    )
    assert_only_problem(path, 4, "models.0.labels", "labels file not found")


def test_labels_of_the_wrong_type(site: Path) -> None:
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: model.onnx
    labels: 80
    input: {width: 640, height: 640}
sources:
  - {id: cam1, uri: test://}
""",
    )
    problem = assert_only_problem(path, 4, "models.0.labels", "valid path or")
    assert "valid list" in problem.reason


def test_duplicate_stream_id(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
  - id: cam2
    uri: test://ball
  - id: cam1
    uri: test://snow
""",
    )
    problem = assert_only_problem(path, 11, "sources.2.id", "duplicate source id 'cam1'")
    assert "already used by sources.0" in problem.reason


def test_duplicate_model_id(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
  - id: detector
    onnx: model.onnx
    labels: [part]
    input: {width: 320, height: 320}
sources:
  - {id: cam1, uri: test://}
""",
    )
    assert_only_problem(path, 6, "models.1.id", "duplicate model id 'detector'")


def test_unsupported_uri_scheme(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: ftp://nas.local/line3.mp4
""",
    )
    problem = assert_only_problem(path, 8, "sources.0.uri", "unsupported URI scheme 'ftp'")
    assert "rtsp://" in problem.reason


def test_rtsp_uri_without_host(site: Path) -> None:
    path = write(site, MODEL + "sources:\n  - id: cam1\n    uri: rtsp:///stream1\n")
    assert_only_problem(path, 8, "sources.0.uri", "rtsp URI needs a host")


def test_file_uri_to_missing_video(site: Path) -> None:
    path = write(site, MODEL + "sources:\n  - id: cam1\n    uri: file://clips/missing.mp4\n")
    problem = assert_only_problem(path, 8, "sources.0.uri", "video file not found")
    assert str(site / "clips" / "missing.mp4") in problem.reason


def test_unknown_model_reference(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
  - id: cam2
    uri: test://ball
    models:
      - detector
      - segmenter
""",
    )
    problem = assert_only_problem(path, 13, "sources.1.models.1", "unknown model 'segmenter'")
    assert "(defined: detector)" in problem.reason


def test_negative_port(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - {id: cam1, uri: test://}
metrics:
  enabled: true
  port: -9108
""",
    )
    problem = assert_only_problem(path, 10, "metrics.port", "greater than or equal to 0")
    assert "(got -9108)" in problem.reason


def test_model_level_check_inside_a_nested_mapping(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - id: cam1
    uri: test://smpte
    reconnect: {initial_s: 5, max_s: 1}
""",
    )
    assert_only_problem(path, 9, "sources.0.reconnect", "max_s must not be below initial_s")


# --- many problems, good configs --------------------------------------------------------


def test_all_problems_are_reported_in_line_order(site: Path) -> None:
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: missing.onnx
    labels: labels.txt
    input: {width: 640, height: 640}
sources:
  - id: cam1
    uri: ftp://x
    analyze_fps: fast
  - id: cam2
    uri: rtsp:///x
    colour: red
metrics:
  port: 70000
backend: gpu
""",
    )
    problems = problems_of(path)
    assert [(p.line, p.path) for p in problems] == [
        (3, "models.0.onnx"),
        (8, "sources.0.uri"),
        (9, "sources.0.analyze_fps"),
        (11, "sources.1.uri"),
        (12, "sources.1.colour"),
        (14, "metrics.port"),
        (15, "backend"),
    ]
    assert all(p.file == str(path) for p in problems)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).splitlines() == [str(p) for p in problems]


def test_duplicate_key_and_schema_problems_together(site: Path) -> None:
    path = write(
        site,
        MODEL
        + """\
sources:
  - {id: cam1, uri: test://}
metrics:
  port: 9108
  port: -1
""",
    )
    problems = problems_of(path)
    assert [(p.line, p.path) for p in problems] == [(10, "metrics.port"), (10, "metrics.port")]
    assert sorted(p.reason.split(" (")[0] for p in problems) == [
        "Input should be greater than or equal to 0",
        "duplicate key",
    ]


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "engines").mkdir(parents=True)
    (site / "clips").mkdir()
    (site / "engines" / "detector.onnx").write_bytes(b"onnx")
    (site / "engines" / "detector.txt").write_text("part\ncrack\n", encoding="utf-8")
    (site / "clips" / "line3.mp4").write_bytes(b"video")
    path = write(
        site,
        """\
models:
  - id: detector
    onnx: engines/detector.onnx
    labels: engines/detector.txt
    input: {width: 640, height: 640}
sources:
  - id: line3
    uri: file://clips/line3.mp4
    models: [detector]
results:
  jsonl: var/results.jsonl
events:
  jsonl: var/events.jsonl
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    config = load_config(path)

    assert isinstance(config, ApplianceConfig)
    model = config.models[0]
    assert model.onnx == site / "engines" / "detector.onnx"
    assert model.labels == site / "engines" / "detector.txt"
    assert model.label_names() == ["part", "crack"]
    assert config.sources[0].uri == "file://" + str((site / "clips" / "line3.mp4").resolve())
    assert config.results.jsonl == site / "var" / "results.jsonl"
    assert config.events.jsonl == site / "var" / "events.jsonl"
    assert config.models_for(config.sources[0]) == [model]


def test_a_relative_config_path_works_too(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(site, MODEL + "sources:\n  - id: cam1\n    uri: file://clip.mp4\n")
    monkeypatch.chdir(site.parent)
    config = load_config(Path(site.name) / "appliance.yaml")
    assert config.sources[0].uri == "file://" + str((site / "clip.mp4").resolve())


def test_validate_files_collects_problems_of_all_files(site: Path) -> None:
    good = write(site, MODEL + "sources:\n  - {id: cam1, uri: test://}\n", "good.yaml")
    bad = write(site, "sources:\n  - {id: cam1}\n", "bad.yaml")
    empty = write(site, "", "empty.yaml")
    problems = validate_files([good, str(bad), empty])
    assert [str(p) for p in problems] == [
        f"{bad}:2: sources.0.uri: required key missing",
        f"{empty}:1: (file): file is empty",
    ]
    assert validate_files([good]) == []


def test_problem_format() -> None:
    problem = ConfigProblem("pipelines/line3.yaml", 14, "sources.1.uri", "rtsp URI needs a host")
    assert str(problem) == "pipelines/line3.yaml:14: sources.1.uri: rtsp URI needs a host"
    assert str(ConfigProblem("x.yaml", None, "(file)", "file not found")) == (
        "x.yaml:1: (file): file not found"
    )
    error = ConfigError([problem, ConfigProblem("x.yaml", 2, "(top)", "bad")])
    assert str(error) == f"{problem}\nx.yaml:2: (top): bad"
    assert error.problems[0] is problem


ANOMALY_SOURCE = MODEL + """\
  - id: anomaly
    onnx: model.onnx
    labels: [anomaly]
    input: {width: 64, height: 64}
    parser: anomaly
sources:
  - id: line
    uri: test://ball
    lines: [{id: inspect, points: [[0.5, 0], [0.5, 1]]}]
    rules:
      defects:
        inspection_line: inspect
        anomaly: {model: anomaly}
"""  # lines 1-18


def test_an_anomaly_model_scores_crops_of_counted_parts_not_frames(site: Path) -> None:
    config = load_config(write(site, ANOMALY_SOURCE))
    assert [m.id for m in config.models_for(config.sources[0])] == ["detector"]  # 640 and 64 side by side
    path = write(site, ANOMALY_SOURCE + "    models: [detector, anomaly]\n")
    assert_only_problem(path, 19, "sources.0.models.1", "model 'anomaly' looks at crops, not frames")


def test_the_anomaly_check_names_an_anomaly_model(site: Path) -> None:
    path = write(site, ANOMALY_SOURCE.replace("anomaly: {model: anomaly}", "anomaly: {model: detector}"))
    problem = assert_only_problem(path, 18, "sources.0.rules.defects.anomaly.model",
                                  "'detector' is not a model with parser: anomaly")
    assert "(defined: anomaly)" in problem.reason
    path = write(site, ANOMALY_SOURCE.replace("        inspection_line: inspect\n", ""))
    assert_only_problem(path, 16, "sources.0.rules.defects", "anomaly needs an inspection_line")


TOOL_CHECK_SOURCE = MODEL + """\
  - id: tool_states
    onnx: model.onnx
    labels: [clean, dirty, damaged]
    input: {width: 96, height: 96}
    parser: classify
sources:
  - id: station
    uri: test://ball
    rules:
      defects:
        tool_check: {model: tool_states}
"""  # lines 1-16


def test_the_tool_check_names_a_classifier_whose_labels_are_states(site: Path) -> None:
    config = load_config(write(site, TOOL_CHECK_SOURCE))
    assert [m.id for m in config.models_for(config.sources[0])] == ["detector"]
    defects = config.sources[0].rules.defects
    assert defects is not None and defects.tool_check is not None and defects.tool_check.labels == ("tool",)
    path = write(site, TOOL_CHECK_SOURCE.replace("{model: tool_states}", "{model: detector}"))
    problem = assert_only_problem(path, 16, "sources.0.rules.defects.tool_check.model",
                                  "'detector' is not a model with parser: classify")
    assert "(defined: tool_states)" in problem.reason
    path = write(site, TOOL_CHECK_SOURCE + "        ok_states: [clean, shiny]\n")
    problem = assert_only_problem(path, 17, "sources.0.rules.defects.ok_states", "ok_states shiny is not a state")
    assert "clean, damaged, dirty" in problem.reason


ITEM_CHECK_SOURCE = MODEL + """\
  - id: ppe_items
    onnx: model.onnx
    labels: [helmet, mask, mask_improper, gloves, gown, goggles]
    input: {width: 64, height: 128}
    parser: attributes
sources:
  - id: cleanroom
    uri: test://ball
    rules:
      ppe:
        item_check: {model: ppe_items}
"""  # lines 1-16


def test_the_item_check_names_an_attribute_model_of_the_items(site: Path) -> None:
    config = load_config(write(site, ITEM_CHECK_SOURCE))
    assert [m.id for m in config.models_for(config.sources[0])] == ["detector"]  # the crops are the rules' business
    ppe = config.sources[0].rules.ppe
    assert ppe is not None and ppe.item_check is not None and ppe.item_check.crop_margin == 0.06
    path = write(site, ITEM_CHECK_SOURCE.replace("{model: ppe_items}", "{model: detector}"))
    problem = assert_only_problem(path, 16, "sources.0.rules.ppe.item_check.model",
                                  "'detector' is not a model with parser: attributes")
    assert "(defined: ppe_items)" in problem.reason
    path = write(site, ITEM_CHECK_SOURCE.replace("[helmet, mask, mask_improper, gloves, gown, goggles]",
                                                 "[hat, scarf]"))
    problem = assert_only_problem(path, 16, "sources.0.rules.ppe.item_check.model",
                                  "model 'ppe_items' names none of the items the ppe rules follow")
    assert "gloves, goggles, gown, helmet, mask, mask_improper" in problem.reason


def test_a_class_s_own_threshold_names_a_label_of_the_model(site: Path) -> None:
    text = MODEL + """\
    class_confidence: {crack: 0.1%s}
sources:
  - {id: cam1, uri: test://}
"""
    assert load_config(write(site, text % "")).models[0].class_confidence == {"crack": 0.1}
    problem = assert_only_problem(write(site, text % ", fire: 0.2"), 6, "models.0.class_confidence",
                                  "names 'fire', not among the model's labels")
    assert "(part, crack)" in problem.reason


FIRE_MODEL_SOURCE = MODEL + """\
  - id: hazards
    onnx: model.onnx
    labels: [fire, smoke]
    input: {width: 640, height: 640}
sources:
  - id: cleanroom
    uri: test://ball
    models: [detector, hazards]
    rules:
      ppe:
        fire_model: hazards
"""  # lines 1-16


def test_the_fire_model_is_one_the_source_runs_that_finds_fire(site: Path) -> None:
    ppe = load_config(write(site, FIRE_MODEL_SOURCE)).sources[0].rules.ppe
    assert ppe is not None and ppe.fire_model == "hazards"
    path = write(site, FIRE_MODEL_SOURCE.replace("models: [detector, hazards]", "models: [detector]"))
    assert_only_problem(path, 16, "sources.0.rules.ppe.fire_model",
                        "'hazards' is not one of the models this source runs (detector)")
    path = write(site, FIRE_MODEL_SOURCE.replace("fire_model: hazards", "fire_model: detector"))
    assert_only_problem(path, 16, "sources.0.rules.ppe.fire_model",
                        "model 'detector' finds none of the fire labels (fire, smoke)")
