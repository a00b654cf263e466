"""Moving the champion alias: by the gate, by hand, or back (rollback). Every move is recorded as tags."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from fer_core import evaluate, gate, registry
from fer_core.config import Settings

log = logging.getLogger(__name__)

PREVIOUS = "promotion.previous_champion"
BY = "promotion.by"
AT = "promotion.at"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def benchmark_sets(settings: Settings, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                   ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The frozen sets the gate scores on: those named in gate.benchmarks that exist (+ extra_eval)."""
    sets = {name: splits[name] for name in settings.gate.benchmarks if name in splits and len(splits[name][1])}
    for name, path in settings.pipeline.extra_eval.items():
        if name in settings.gate.benchmarks:
            x, y, _ = evaluate.load_eval_data(path)
            sets[name] = (x, y)
    return sets


def score(clf, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {name: evaluate.metrics(y, clf.predict(x)) for name, (x, y) in sets.items()}


def run_gate(settings: Settings, candidate_results: dict[str, dict[str, Any]], candidate_latency_ms: float,
             sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> gate.Decision:
    """Score the current champion on the same sets and decide."""
    current = registry.champion(settings)
    champion_results = None
    if current is not None:
        clf = registry.load_classifier(f"models:/{settings.registry.model_name}/{current.version}", settings)
        champion_results = score(clf, sets)
    return gate.decide(candidate_results, champion_results, candidate_latency_ms, settings.gate,
                       current.version if current else None)


def move_champion(settings: Settings, version: str, by: str, note: str = "") -> dict[str, Any]:
    """Point the champion alias at `version`, recording who moved it and what it replaced."""
    r = settings.registry
    current = registry.champion(settings)
    previous = current.version if current else ""
    if previous == str(version):
        return {"champion": str(version), "previous": previous, "changed": False}
    registry.set_tags(settings, version, {PREVIOUS: previous, BY: by, AT: _now(), "promotion.note": note})
    registry.set_alias(settings, r.champion_alias, version)
    challenger = registry.alias_version(settings, r.challenger_alias)
    if challenger is not None and challenger.version == str(version):
        registry.delete_alias(settings, r.challenger_alias)
    log.info("champion: %s -> %s (%s)", previous or "none", version, by)
    return {"champion": str(version), "previous": previous, "changed": True, "by": by}


def apply_decision(settings: Settings, version: str, decision: gate.Decision) -> dict[str, Any]:
    """Promote a passing candidate; make a failing one the challenger."""
    if decision.promote:
        return move_champion(settings, version, "gate")
    registry.set_alias(settings, settings.registry.challenger_alias, version)
    return {"champion": decision.champion_version, "challenger": str(version), "changed": False}


def promote_manual(settings: Settings, version: str) -> dict[str, Any]:
    registry.get_version(settings, version)  # a clear error for a version that does not exist
    return move_champion(settings, version, "manual", "manual override of the gate")


def rollback(settings: Settings) -> dict[str, Any]:
    """Champion back to the version it replaced."""
    current = registry.champion(settings)
    if current is None:
        raise registry.RegistryError("no champion to roll back")
    previous = current.tags.get(PREVIOUS, "")
    if not previous:
        raise registry.RegistryError(f"champion version {current.version} replaced no earlier champion")
    registry.set_tags(settings, current.version, {"rollback.at": _now(), "rollback.to": previous})
    registry.set_tags(settings, previous, {BY: "rollback", AT: _now(), "rollback.from": current.version})
    registry.set_alias(settings, settings.registry.champion_alias, previous)
    log.info("rollback: champion %s -> %s", current.version, previous)
    return {"champion": previous, "previous": current.version, "changed": True, "by": "rollback"}


def decision_tags(decision: gate.Decision) -> dict[str, str]:
    return {registry.DECISION_TAG: decision.verdict, "gate.reasons": json.dumps(decision.reasons)[:5000],
            "gate.champion_version": decision.champion_version or ""}
