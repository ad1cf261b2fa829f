"""What a new config changes, and whether the running pipeline can take it without a restart.

Rules, zones and lines of a source only change what its analytics make of the
detections: the source's analytics are rebuilt between two of its frames (open
episodes end, as when a stream restarts). Sinks only change where the outbox's
events go: the delivery is restarted, the outbox and its pending events stay (its
own settings may change only while no sink was configured, that is, before it
was opened).
Anything that shapes decoding or inference — sources added or removed, a URI, a
frame rate, models, the backend, the metrics port — needs a pipeline restart, and
the plan says which keys are why.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config.schema import ApplianceConfig, SourceConfig

#: source keys that only the analytics read
ANALYTICS_KEYS = ("rules", "zones", "lines", "use_cases")
#: top-level keys a running pipeline takes as they are (fleet: the agent's own settings)
TAKEN_AS_IS = ("version", "fleet")


@dataclass(frozen=True)
class ReloadPlan:
    restart: tuple[str, ...]  # the changed keys that need a pipeline restart (empty: hot reload)
    analytics: tuple[str, ...]  # sources whose analytics are rebuilt
    sinks: bool  # the delivery restarts with the new sinks

    @property
    def hot(self) -> bool:
        return not self.restart

    def describe(self) -> str:
        if not self.hot:
            return "restart needed for " + ", ".join(self.restart)
        parts = [f"analytics of {', '.join(self.analytics)}"] if self.analytics else []
        if self.sinks:
            parts.append("sinks")
        return "hot reload of " + (" and ".join(parts) if parts else "nothing but the version")


def plan_reload(old: ApplianceConfig, new: ApplianceConfig) -> ReloadPlan:
    restart: list[str] = []
    for key in ApplianceConfig.model_fields:
        if key in TAKEN_AS_IS or key in ("sources", "events"):
            continue
        if getattr(old, key) != getattr(new, key):
            restart.append(key)
    # the sinks are hot; so is the outbox's setup where none is open yet (no sinks before)
    hot_events = {"sinks": []} if old.events.sinks else {"sinks": [], "outbox": new.events.outbox}
    if old.events.model_copy(update=hot_events) != new.events.model_copy(update=hot_events):
        restart.append("events")
    analytics: list[str] = []
    if [s.id for s in old.sources] != [s.id for s in new.sources]:
        restart.append("sources (added, removed or reordered)")
    else:
        for before, after in zip(old.sources, new.sources, strict=True):
            changed = _changed_keys(before, after)
            frame_keys = [k for k in changed if k not in ANALYTICS_KEYS]
            if frame_keys:
                restart.extend(f"sources.{before.id}.{k}" for k in frame_keys)
            elif changed:
                analytics.append(before.id)
    return ReloadPlan(tuple(restart), tuple(analytics), old.events.sinks != new.events.sinks)


def _changed_keys(before: SourceConfig, after: SourceConfig) -> list[str]:
    return [k for k in SourceConfig.model_fields if getattr(before, k) != getattr(after, k)]
