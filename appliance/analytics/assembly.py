"""Builds each source's analytics (tracker, zones, lines, rules) from its config."""

from __future__ import annotations

from collections.abc import Mapping

from appliance.analytics.animals import AnimalRules
from appliance.analytics.base import Rules
from appliance.analytics.defects import DefectRules
from appliance.analytics.inspection import AnomalyInspector
from appliance.analytics.ppe import PpeRules
from appliance.analytics.stream import EventSink, StreamAnalytics
from appliance.config.schema import ApplianceConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore
from appliance.inference.anomaly import AnomalyParser
from appliance.inference.engine import Engine
from appliance.metrics import ApplianceMetrics
from appliance.tracking.tracker import Tracker, TrackerSettings


def tracker_for(source: SourceConfig) -> Tracker:
    t = source.rules.tracker
    return Tracker(TrackerSettings(
        high_confidence=t.high_confidence,
        low_confidence=t.low_confidence,
        new_track_confidence=t.new_track_confidence,
        match_iou=t.match_iou,
        low_match_iou=t.low_match_iou,
        max_lost_frames=max(1, round(t.max_lost_s * source.analyze_fps)),
        label_groups=tuple(tuple(g) for g in t.label_groups),
    ))


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
        check = configured.defects.anomaly
        inspector = None
        if check is not None:
            if config is None or second_stage is None or check.model not in second_stage:
                raise ValueError(f"source {source.id!r}: anomaly model {check.model!r} is not loaded")
            model = next(m for m in config.models if m.id == check.model)
            parser = AnomalyParser(model.confidence, model.id)
            inspector = AnomalyInspector(second_stage[check.model], parser, check.crop_margin)
        rules.append(DefectRules(configured.defects, source.id, metrics, inspector))
    if configured.ppe is not None:
        rules.append(PpeRules(configured.ppe, source.id))
    if configured.animals is not None:
        rules.append(AnimalRules(configured.animals, source.id))
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
