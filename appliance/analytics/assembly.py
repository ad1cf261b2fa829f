"""Builds each source's analytics (tracker, zones, lines, rules) from its config."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.analytics.animals import AnimalRules
from appliance.analytics.base import Rules
from appliance.analytics.defects import DefectRules
from appliance.analytics.inspection import AnomalyInspector, CropClassifier
from appliance.analytics.ppe import PpeRules
from appliance.analytics.presence import PresenceRules
from appliance.analytics.stream import EventSink, StreamAnalytics
from appliance.analytics.wearing import WornItems
from appliance.config.schema import ApplianceConfig, ModelConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore
from appliance.inference.anomaly import AnomalyParser
from appliance.inference.classify import AttributeParser, ClassifierParser
from appliance.inference.engine import Engine
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import Tracker, TrackerSettings

MOTION_REFERENCE_FPS = 30.0  # the frame rate the tracker's motion noise is given for


def tracker_for(source: SourceConfig) -> Tracker:
    t = source.rules.tracker
    return Tracker(TrackerSettings(
        high_confidence=t.high_confidence,
        low_confidence=t.low_confidence,
        new_track_confidence=t.new_track_confidence,
        match_iou=t.match_iou,
        low_match_iou=t.low_match_iou,
        max_lost_frames=max(1, round(t.max_lost_s * source.analyze_fps)),
        frame_steps=max(1.0, MOTION_REFERENCE_FPS / source.analyze_fps),
        label_groups=tuple(tuple(g) for g in t.label_groups),
        appearance_labels=tuple(t.appearance_labels),
        appearance_weight=t.appearance_weight,
    ))


def _second_stage(source: SourceConfig, model_id: str, config: ApplianceConfig | None,
                  engines: Mapping[str, Engine] | None) -> tuple[ModelConfig, Engine]:
    if config is None or engines is None or model_id not in engines:
        raise ValueError(f"source {source.id!r}: second-stage model {model_id!r} is not loaded")
    return next(m for m in config.models if m.id == model_id), engines[model_id]


def rules_for(
    source: SourceConfig,
    metrics: ApplianceMetrics,
    config: ApplianceConfig | None = None,
    second_stage: Mapping[str, Engine] | None = None,
) -> list[Rules]:
    """The rule sets configured for a source (none: tracking only). ``second_stage``:
    the engines of the crop-scoring models, by model id."""
    rules: list[Rules] = []
    configured = source.rules
    if configured.defects is not None:
        check, tool_check = configured.defects.anomaly, configured.defects.tool_check
        inspector = classifier = None
        if check is not None:
            model, engine = _second_stage(source, check.model, config, second_stage)
            inspector = AnomalyInspector(engine, AnomalyParser(model.confidence, model.id), check.crop_margin)
        if tool_check is not None:
            model, engine = _second_stage(source, tool_check.model, config, second_stage)
            classifier = CropClassifier(engine, ClassifierParser(model.label_names(), model.id),
                                        tool_check.crop_margin, model.confidence)
        rules.append(DefectRules(configured.defects, source.id, metrics, inspector, classifier))
    if configured.ppe is not None:
        worn_items = None
        if configured.ppe.item_check is not None:
            model, engine = _second_stage(source, configured.ppe.item_check.model, config, second_stage)
            worn_items = WornItems(engine, AttributeParser(model.label_names(), model.id),
                                   configured.ppe.item_check.crop_margin, model.confidence)
        rules.append(PpeRules(configured.ppe, source.id, worn_items))
    if configured.animals is not None:
        rules.append(AnimalRules(configured.animals, source.id))
    if configured.presence is not None:
        rules.append(PresenceRules(configured.presence, source.id, metrics))
    return rules


def analytics_for(
    config: ApplianceConfig,
    source: SourceConfig,
    events: EventFactory,
    emit: EventSink,
    metrics: ApplianceMetrics,
    snapshots: SnapshotStore | None = None,
    second_stage: Mapping[str, Engine] | None = None,
    backend_tracks: bool = False,
) -> StreamAnalytics:
    models = config.models_for(source)
    return StreamAnalytics(
        source.id,
        None if backend_tracks else tracker_for(source),
        rules_for(source, metrics, config, second_stage),
        events,
        emit,
        zones=[(z.id, z.polygon, z.normalized) for z in source.zones],
        lines=[(line.id, line.points, line.normalized) for line in source.lines],
        model=",".join(m.id for m in models),
        snapshots=snapshots,
    )
