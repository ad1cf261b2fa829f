"""Builds each source's analytics (tracker, zones, lines, rules) from its config."""

from __future__ import annotations

from appliance.analytics.animals import AnimalRules
from appliance.analytics.base import Rules
from appliance.analytics.defects import DefectRules
from appliance.analytics.ppe import PpeRules
from appliance.analytics.stream import EventSink, StreamAnalytics
from appliance.config.schema import ApplianceConfig, SourceConfig
from appliance.events.factory import EventFactory
from appliance.events.snapshots import SnapshotStore
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


def rules_for(source: SourceConfig, metrics: ApplianceMetrics) -> list[Rules]:
    """The rule sets configured for a source (none: tracking only)."""
    rules: list[Rules] = []
    configured = source.rules
    if configured.defects is not None:
        rules.append(DefectRules(configured.defects, source.id, metrics))
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
) -> StreamAnalytics:
    models = config.models_for(source)
    return StreamAnalytics(
        source.id,
        tracker_for(source),
        rules_for(source, metrics),
        events,
        emit,
        zones=[(z.id, z.polygon, z.normalized) for z in source.zones],
        lines=[(line.id, line.points, line.normalized) for line in source.lines],
        model=",".join(m.id for m in models),
        snapshots=snapshots,
    )
