"""The appliance configuration schema (pydantic v2; unknown keys are refused).

Relative paths in the file (model files, label files, ``file://`` sources, output
logs) resolve against the directory of the config file, passed in the validation
context as ``base_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from appliance.analytics.animals import AnimalSettings
from appliance.analytics.defects import DefectSettings
from appliance.analytics.ppe import PpeSettings
from appliance.analytics.presence import PresenceSettings
from appliance.config.base import Identifier, Strict
from appliance.config.delivery import MqttBrokerConfig, OutboxConfig, SinkConfig
from appliance.config.fleet import FleetConfig
from appliance.config.nvidia import DeepStreamConfig, EnginesConfig

UseCase = Literal["defects", "ppe", "animals"]
SOURCE_SCHEMES = ("rtsp", "rtsps", "file", "v4l2", "test")
TEST_PATTERNS = (
    "smpte", "snow", "black", "white", "red", "green", "blue", "checkers-1", "checkers-2",
    "checkers-4", "checkers-8", "circular", "blink", "smpte75", "zone-plate", "gamut",
    "chroma-zone-plate", "solid-color", "ball", "smpte100", "bar", "pinwheel", "spokes",
    "gradient", "colors",
)

#: Context key of a :class:`PydanticCustomError` raised by a validator that knows
#: more precisely than its own location where the problem is: a tuple of keys and
#: indexes *below* the validator's location (e.g. ``(1, "id")`` from the validator
#: of ``sources``). The loader appends it to the error's ``loc``.
LOC_SUFFIX = "loc_suffix"


def error_at(
    suffix: tuple[str | int, ...], error_type: str, template: str, **context: object
) -> PydanticCustomError:
    """A validation error that points at ``suffix`` below the raising validator."""
    return PydanticCustomError(error_type, template, {**context, LOC_SUFFIX: suffix})


def resolve_path(value: str | Path, info: ValidationInfo) -> Path:
    """Resolve ``value`` against the config file's directory (``~`` expands)."""
    path = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


class DeviceConfig(Strict):
    id: Identifier = "appliance-01"
    site: str = ""


class InputSize(Strict):
    width: Annotated[int, Field(ge=32, le=4096, multiple_of=4)]
    height: Annotated[int, Field(ge=32, le=4096)]


class ModelConfig(Strict):
    id: Identifier
    onnx: Path
    labels: Path | list[str]
    input: InputSize
    # yolo*: full-frame detectors; second stages that look at crops the rules choose: anomaly scores
    # parts (anomalib's outputs), classify names a crop's kind ([N, C], e.g. a tool's state), attributes
    # gives each label its own probability ([N, C], e.g. the items a person wears)
    parser: Literal["yolov8", "yolov5", "yolo_end2end", "anomaly", "classify", "attributes"] = "yolov8"
    input_name: str | None = None
    confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25
    # label -> its own threshold, in place of ``confidence`` (nvinfer's per-class pre-cluster-threshold):
    # lower for what must not be seen late (fire), higher for a class that the model over-reports
    class_confidence: dict[str, Annotated[float, Field(gt=0.0, le=1.0)]] = {}
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.45
    max_detections: Annotated[int, Field(ge=1, le=10000)] = 100

    @field_validator("onnx")
    @classmethod
    def _onnx_exists(cls, value: Path, info: ValidationInfo) -> Path:
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"model file not found: {path}")
        return path

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: Path | list[str], info: ValidationInfo) -> Path | list[str]:
        if isinstance(value, list):
            if not value:
                raise ValueError("labels list is empty")
            return value
        path = resolve_path(value, info)
        if not path.is_file():
            raise ValueError(f"labels file not found: {path}")
        return path

    @field_validator("class_confidence")
    @classmethod
    def _class_confidence_labels(cls, value: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        labels = info.data.get("labels")
        if value and labels is not None:
            names = labels if isinstance(labels, list) else _label_lines(labels)
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ValueError(f"names {', '.join(map(repr, unknown))}, not among the model's labels "
                                 f"({', '.join(names)})")
        return value

    @property
    def second_stage(self) -> bool:
        """Runs on crops the rules choose, not on whole frames."""
        return self.parser in ("anomaly", "classify", "attributes")

    def label_names(self) -> list[str]:
        if isinstance(self.labels, list):
            return list(self.labels)
        return _label_lines(self.labels)


def _label_lines(path: Path) -> list[str]:
    """A labels file's names, one per non-empty line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


class ZoneConfig(Strict):
    id: Identifier
    polygon: Annotated[list[tuple[float, float]], Field(min_length=3)]
    normalized: bool = True


class LineConfig(Strict):
    """A counting line; crossing it from its right to its left (looking from the
    first point to the second) is direction +1."""

    id: Identifier
    points: Annotated[list[tuple[float, float]], Field(min_length=2, max_length=2)]
    normalized: bool = True


class TrackerConfig(Strict):
    high_confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    low_confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    new_track_confidence: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.2
    low_match_iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    max_lost_s: Annotated[float, Field(gt=0.0, le=600.0)] = 2.0
    label_groups: list[list[str]] = []
    # The labels whose tracks also go by what the objects look like (the colours of their boxes' bands:
    # people in different clothes who cross), and how much that counts against position. Costs an RGB
    # copy of each frame where such a label is detected. The portable tracker's only: nvtracker ignores it.
    appearance_labels: list[str] = []
    appearance_weight: Annotated[float, Field(ge=0.0, le=10.0)] = 2.0


class RulesConfig(Strict):
    """The analytics of a source: its tracker, and the rules of each use case."""

    tracker: TrackerConfig = TrackerConfig()
    defects: DefectSettings | None = None
    ppe: PpeSettings | None = None
    animals: AnimalSettings | None = None
    presence: PresenceSettings | None = None  # stays in zones and crossings of lines, for any tracked label

    def use_cases(self) -> list[tuple[str, Strict]]:
        """The configured rule settings, by use case."""
        configured = (("defects", self.defects), ("ppe", self.ppe), ("animals", self.animals),
                      ("presence", self.presence))
        return [(name, value) for name, value in configured if value is not None]

    def zone_references(self) -> list[tuple[tuple[str, ...], str]]:
        """(key path below ``rules``, zone id) for every zone a rule names."""
        refs = []
        for name, use_case in self.use_cases():
            for key, value in use_case:
                if key.endswith("_zone") and value is not None:
                    refs.append(((name, key), value))
                elif key in ("zone_required", "max_dwell_s"):
                    refs.extend(((name, key, zone), zone) for zone in value)
                elif key == "zones" and value is not None:
                    refs.extend(((name, key, index), zone) for index, zone in enumerate(value))
        return refs

    def line_references(self) -> list[tuple[tuple[str, ...], str]]:
        refs = []
        for name, use_case in self.use_cases():
            for key, value in use_case:
                if key.endswith("_line") and value is not None:
                    refs.append(((name, key), value))
                elif key == "lines" and value is not None:
                    refs.extend(((name, key, index), line) for index, line in enumerate(value))
        return refs


class ReconnectConfig(Strict):
    """Backoff for a failed source: initial, doubling, capped; stall = no frame for that long."""

    initial_s: Annotated[float, Field(gt=0.0, le=60.0)] = 0.5
    max_s: Annotated[float, Field(gt=0.0, le=600.0)] = 10.0
    stall_timeout_s: Annotated[float, Field(gt=0.0, le=600.0)] = 3.0

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must not be below initial_s")
        return self


class SourceConfig(Strict):
    id: Identifier
    uri: str
    loop: bool = False
    realtime: bool = True
    analyze_fps: Annotated[float, Field(gt=0.0, le=120.0)] = 5.0
    models: list[Identifier] | None = None
    use_cases: list[UseCase] = []
    zones: list[ZoneConfig] = []
    lines: list[LineConfig] = []
    rules: RulesConfig = RulesConfig()
    reconnect: ReconnectConfig = ReconnectConfig()

    @field_validator("uri")
    @classmethod
    def _uri(cls, value: str, info: ValidationInfo) -> str:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme not in SOURCE_SCHEMES:
            raise ValueError(
                f"unsupported URI scheme {parts.scheme or '(none)'!r}; "
                f"use one of {', '.join(s + '://' for s in SOURCE_SCHEMES)}"
            )
        if scheme in ("rtsp", "rtsps") and not parts.hostname:
            raise ValueError("rtsp URI needs a host, e.g. rtsp://camera.local:554/stream")
        if scheme == "file":
            path = resolve_path(parts.netloc + parts.path, info)
            if not path.is_file():
                raise ValueError(f"video file not found: {path}")
            return "file://" + str(path.resolve())
        if scheme == "v4l2" and not parts.path.startswith("/dev/"):
            raise ValueError("v4l2 URI must name a device, e.g. v4l2:///dev/video0")
        if scheme == "test":
            pattern = parts.netloc or parts.path.strip("/") or "smpte"
            if pattern not in TEST_PATTERNS:
                raise ValueError(f"unknown test pattern {pattern!r}")
            for key, val in parse_qsl(parts.query):
                if key not in ("width", "height", "fps"):
                    raise ValueError(f"unknown test:// parameter {key!r} (width, height, fps)")
                if not val.isdigit() or int(val) <= 0:
                    raise ValueError(f"test:// parameter {key} must be a positive integer")
        return value

    @model_validator(mode="after")
    def _rule_references(self) -> SourceConfig:
        zones = {z.id for z in self.zones}
        lines = {line.id for line in self.lines}
        for kind, known, refs in (("zone", zones, self.rules.zone_references()),
                                  ("line", lines, self.rules.line_references())):
            for path, ident in refs:
                if ident not in known:
                    raise error_at(
                        ("rules", *path), f"unknown_{kind}",
                        "unknown {kind} '{ident}' (this source defines: {known})",
                        kind=kind, ident=ident, known=", ".join(sorted(known)) or "none",
                    )
        return self

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme.lower()

    @property
    def is_live(self) -> bool:
        """Live sources produce frames in real time whether or not we keep up."""
        return self.scheme in ("rtsp", "rtsps", "v4l2", "test")


class InferenceConfig(Strict):
    """Inference workers; each holds its own engine per model (one ORT thread each)."""

    workers: Annotated[int, Field(ge=1, le=64)] = 2
    threads_per_worker: Annotated[int, Field(ge=1, le=64)] = 1
    max_batch: Annotated[int, Field(ge=1, le=64)] = 8


class ResultsConfig(Strict):
    jsonl: Path | None = None

    @field_validator("jsonl")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)


class SnapshotConfig(Strict):
    """JPEG evidence for start events: the frame with the box drawn, and a crop."""

    directory: Path | None = None
    max_count: Annotated[int, Field(ge=1)] = 1000
    max_age_h: Annotated[float, Field(gt=0)] = 168.0

    @field_validator("directory")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)


class EventsConfig(Strict):
    jsonl: Path | None = None
    snapshots: SnapshotConfig = SnapshotConfig()
    outbox: OutboxConfig = OutboxConfig()  # used when there are sinks
    sinks: list[SinkConfig] = []

    @field_validator("sinks")
    @classmethod
    def _unique_sinks(cls, sinks: list[SinkConfig], info: ValidationInfo) -> list[SinkConfig]:
        _refuse_duplicates([s.id for s in sinks], "sink", info.field_name or "sinks")
        return sinks

    @field_validator("jsonl")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)


class MetricsConfig(Strict):
    enabled: bool = True
    address: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*$")] = "/metrics"


class ApplianceConfig(Strict):
    version: str = "1"
    device: DeviceConfig = DeviceConfig()
    backend: Literal["auto", "portable", "deepstream"] = "auto"
    models: list[ModelConfig] = []
    sources: Annotated[list[SourceConfig], Field(min_length=1)]
    inference: InferenceConfig = InferenceConfig()
    results: ResultsConfig = ResultsConfig()
    events: EventsConfig = EventsConfig()
    metrics: MetricsConfig = MetricsConfig()
    mqtt: MqttBrokerConfig | None = None  # the broker of events (mqtt sinks) and fleet config
    engines: EnginesConfig = EnginesConfig()  # TensorRT engine building (appliance/config/nvidia.py)
    deepstream: DeepStreamConfig = DeepStreamConfig()  # the DeepStream backend (appliance/config/nvidia.py)
    fleet: FleetConfig | None = None  # the fleet agent: pinned key, groups, health window (config/fleet.py)

    @model_validator(mode="after")
    def _sinks_have_broker(self) -> ApplianceConfig:
        for index, sink in enumerate(self.events.sinks):
            if sink.type == "mqtt" and self.mqtt is None:
                raise error_at(("events", "sinks", index, "type"), "no_broker",
                               "an mqtt sink needs the broker in the top-level 'mqtt:' section")
        return self

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelConfig], info: ValidationInfo) -> list[ModelConfig]:
        _refuse_duplicates([m.id for m in models], "model", info.field_name or "models")
        return models

    @field_validator("sources")
    @classmethod
    def _unique_sources(
        cls, sources: list[SourceConfig], info: ValidationInfo
    ) -> list[SourceConfig]:
        _refuse_duplicates([s.id for s in sources], "source", info.field_name or "sources")
        return sources

    @model_validator(mode="after")
    def _model_references(self) -> ApplianceConfig:
        known = {m.id for m in self.models}
        for index, source in enumerate(self.sources):
            for position, ref in enumerate(source.models or []):
                if ref not in known:
                    raise error_at(
                        ("sources", index, "models", position),
                        "unknown_model",
                        "unknown model '{ref}' (defined: {known})",
                        ref=ref,
                        known=", ".join(sorted(known)) or "none",
                    )
        by_id = {m.id: m for m in self.models}
        for index, source in enumerate(self.sources):
            for position, ref in enumerate(source.models or []):
                if by_id[ref].second_stage:
                    raise error_at(
                        ("sources", index, "models", position),
                        "second_stage_model",
                        "model '{ref}' looks at crops, not frames: name it in rules.defects.anomaly.model "
                        "(anomaly), rules.defects.tool_check.model (classify) or rules.ppe.item_check.model "
                        "(attributes)",
                        ref=ref,
                    )
            defects, ppe = source.rules.defects, source.rules.ppe
            if defects is not None and defects.anomaly is not None:
                self._second_stage_ref(index, ("defects", "anomaly"), defects.anomaly.model, "anomaly")
            if ppe is not None and ppe.item_check is not None:
                items = self._second_stage_ref(index, ("ppe", "item_check"), ppe.item_check.model, "attributes")
                if not set(items.label_names()) & ppe.item_labels():
                    raise error_at(
                        ("sources", index, "rules", "ppe", "item_check", "model"),
                        "no_ppe_items",
                        "model '{ref}' names none of the items the ppe rules follow ({items})",
                        ref=items.id, items=", ".join(sorted(ppe.item_labels())),
                    )
            if ppe is not None and ppe.fire_model is not None:
                self._fire_model_ref(index, source, ppe)
            if defects is not None and defects.tool_check is not None:
                classifier = self._second_stage_ref(index, ("defects", "tool_check"), defects.tool_check.model,
                                                    "classify")
                states = set(defects.tool_labels.values()) | set(classifier.label_names())
                unknown = sorted(set(defects.ok_states) - states)
                if unknown:
                    raise error_at(
                        ("sources", index, "rules", "defects", "ok_states"),
                        "unknown_tool_state",
                        "ok_states {unknown} is not a state of tool_labels or of model '{ref}' ({states})",
                        unknown=", ".join(unknown), ref=classifier.id, states=", ".join(sorted(states)),
                    )
        for index, source in enumerate(self.sources):
            sizes = sorted({(m.input.width, m.input.height) for m in self.models_for(source)})
            if len(sizes) > 1:
                raise error_at(
                    ("sources", index, "models"),
                    "input_sizes_differ",
                    "the models of one source must share an input size (found {sizes}): "
                    "each source is letterboxed once",
                    sizes=", ".join(f"{w}x{h}" for w, h in sizes),
                )
        return self

    def _second_stage_ref(self, index: int, where: tuple[str, str], ref: str, parser: str) -> ModelConfig:
        """The model ``rules.<rules>.<key>.model`` of source ``index`` names (``where``: rules, key),
        which must have ``parser``."""
        by_id = {m.id: m for m in self.models}
        if ref not in by_id or by_id[ref].parser != parser:
            raise error_at(
                ("sources", index, "rules", *where, "model"),
                f"unknown_{parser}_model",
                "'{ref}' is not a model with parser: {parser} (defined: {known})",
                ref=ref, parser=parser,
                known=", ".join(sorted(m.id for m in self.models if m.parser == parser)) or "none",
            )
        return by_id[ref]

    def _fire_model_ref(self, index: int, source: SourceConfig, ppe: PpeSettings) -> None:
        """``rules.ppe.fire_model`` of source ``index`` must be one of the models the source runs, and
        find at least one of the fire labels."""
        analyzed = {m.id: m for m in self.models_for(source)}
        where = ("sources", index, "rules", "ppe", "fire_model")
        model = analyzed.get(ppe.fire_model or "")
        if model is None:
            raise error_at(where, "unknown_fire_model",
                           "'{ref}' is not one of the models this source runs ({known})",
                           ref=ppe.fire_model, known=", ".join(sorted(analyzed)) or "none")
        if not set(model.label_names()) & set(ppe.fire_labels):
            raise error_at(where, "no_fire_labels", "model '{ref}' finds none of the fire labels ({labels})",
                           ref=model.id, labels=", ".join(ppe.fire_labels))

    def models_for(self, source: SourceConfig) -> list[ModelConfig]:
        """The full-frame models a source is analyzed with (all of them when it names none)."""
        if source.models is None:
            return [m for m in self.models if not m.second_stage]
        wanted = set(source.models)
        return [m for m in self.models if m.id in wanted and not m.second_stage]


def find_duplicate_ids(ids: list[object]) -> list[tuple[int, object, int]]:
    """``(position, id, first position)`` of every id used again."""
    first: dict[object, int] = {}
    found = []
    for position, ident in enumerate(ids):
        if ident in first:
            found.append((position, ident, first[ident]))
        else:
            first[ident] = position
    return found


def duplicate_id_reason(what: str, ident: object, field: str, first: int) -> str:
    return f"duplicate {what} id '{ident}' (already used by {field}.{first})"


def _refuse_duplicates(ids: list[str], what: str, field: str) -> None:
    """Refuse the first id used twice; the error points at ``<position>.id``."""
    for position, ident, first in find_duplicate_ids(list(ids))[:1]:
        raise error_at((position, "id"), "duplicate_id", duplicate_id_reason(what, ident, field, first))
