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


BenchmarkSet = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # faces, labels, face names (None: unknown)


def benchmark_sets(settings: Settings, splits: dict[str, tuple[np.ndarray, np.ndarray]],
                   names: dict[str, np.ndarray] | None = None) -> dict[str, BenchmarkSet]:
    """The frozen sets the gate scores on: those named in gate.benchmarks that exist (+ extra_eval), with
    each face's name where the dataset knows it."""
    names = names or {}
    sets: dict[str, BenchmarkSet] = {}
    for name in settings.gate.benchmarks:
        if name in splits and len(splits[name][1]):
            x, y = splits[name]
            n = names.get(name)
            sets[name] = (x, y, n if n is not None and len(n) == len(y) else None)
    for name, path in settings.pipeline.extra_eval.items():
        if name in settings.gate.benchmarks:
            x, y, _ = evaluate.load_eval_data(path)
            sets[name] = (x, y, None)
    return sets


def fixed_test_sets(settings: Settings) -> set[str]:
    """The benchmark sets no dataset version ever trains on: FER2013's fixed test usages (split.fixed_test_usages)."""
    return {f"fer2013_{usage.lower()}" for usage in settings.split.fixed_test_usages}


def training_faces(settings: Settings, version: registry.VersionInfo) -> set[str] | None:
    """The faces a registered model trained or validated on, from its dataset version's manifest; None
    when that dataset cannot be found (then nothing can be excluded, and the gate says so)."""
    from fer_core.data import dataset

    name = version.tags.get("dataset.version", "")
    try:
        path = dataset.resolve(name, settings) if name else None
    except OSError:
        path = None
    if path is None:
        return None
    images = dataset.manifest_column(path, "image")
    return {str(n) for split in ("train", "val") for n in images.get(split, [])} if images else None


def run_gate(settings: Settings, candidate_clf, candidate_latency_ms: float,
             sets: dict[str, BenchmarkSet], candidate_faces_per_s: float | None = None) -> gate.Decision:
    """Score the candidate and the champion on the same faces, those neither trained or validated on, and
    decide; the candidate's own test faces are new to it by construction, the champion's are removed."""
    current = registry.champion(settings)
    notes: list[str] = []
    fallback = settings.gate.compare_first_with
    if current is None and fallback and fallback != settings.registry.champion_alias:
        current = registry.alias_version(settings, fallback)
        if current is not None:
            notes.append(f"INFO no version is {settings.registry.champion_alias} yet: compared with "
                         f"{fallback} version {current.version}, the model used without one")
    if current is not None:
        seen = training_faces(settings, current)
        fixed = {name: v for name, v in sets.items() if name in fixed_test_sets(settings)}
        if seen is None and fixed:
            notes.append(f"INFO champion {current.version}: its dataset "
                         f"{current.tags.get('dataset.version') or '(none)'} is not available here, so the faces "
                         f"it trained on are unknown: compared on {', '.join(sorted(fixed))} only (held out of "
                         f"every dataset version); left out: {', '.join(sorted(set(sets) - set(fixed))) or 'none'}")
            sets = fixed
        elif seen is None:
            notes.append(f"INFO champion {current.version}: its dataset "
                         f"{current.tags.get('dataset.version') or '(none)'} is not available here, so faces it "
                         "trained on cannot be excluded")
        elif seen:
            kept = {}
            for name, (x, y, names) in sets.items():
                if names is None:
                    kept[name] = (x, y, names)
                    continue
                fresh = ~np.isin(names, list(seen))
                kept[name] = (x[fresh], y[fresh], names[fresh])
                if (~fresh).any():
                    notes.append(f"INFO {name}: {int((~fresh).sum())} of {len(y)} faces left out, "
                                 f"champion {current.version} trained on them")
            sets = {name: v for name, v in kept.items() if len(v[1])}
    candidate_probs = {name: candidate_clf.predict(x) for name, (x, _y, _n) in sets.items()}
    candidate = {name: evaluate.metrics(sets[name][1], p) for name, p in candidate_probs.items()}
    champion_results, paired = None, None
    if current is not None:
        clf = registry.load_classifier(f"models:/{settings.registry.model_name}/{current.version}", settings)
        champion_probs = {name: clf.predict(x) for name, (x, _y, _n) in sets.items()}
        champion_results = {name: evaluate.metrics(sets[name][1], p) for name, p in champion_probs.items()}
        paired = {name: gate.mcnemar(sets[name][1], candidate_probs[name].argmax(1), champion_probs[name].argmax(1))
                  for name in sets}
    decision = gate.decide(candidate, champion_results, candidate_latency_ms, settings.gate,
                           current.version if current else None, paired=paired,
                           candidate_faces_per_s=candidate_faces_per_s,
                           offline=settings.registry.champion_alias == settings.registry.analysis_alias)
    decision.reasons.extend(notes)
    decision.paired = paired or {}
    return decision


def move_champion(settings: Settings, version: str, by: str, note: str = "") -> dict[str, Any]:
    """Point the champion alias (`registry.champion_alias`: `champion`, or `analysis` for an analysis run) at
    `version`, recording who moved it and what it replaced. `alias` in the answer names the alias moved."""
    r = settings.registry
    current = registry.champion(settings)
    previous = current.version if current else ""
    if previous == str(version):
        return {"champion": str(version), "alias": r.champion_alias, "previous": previous, "changed": False}
    registry.set_tags(settings, version, {PREVIOUS: previous, BY: by, AT: _now(), "promotion.note": note})
    registry.set_alias(settings, r.champion_alias, version)
    challenger = registry.alias_version(settings, r.challenger_alias)
    if challenger is not None and challenger.version == str(version):
        registry.delete_alias(settings, r.challenger_alias)
    log.info("%s: %s -> %s (%s)", r.champion_alias, previous or "none", version, by)
    return {"champion": str(version), "alias": r.champion_alias, "previous": previous, "changed": True, "by": by}


def apply_decision(settings: Settings, version: str, decision: gate.Decision) -> dict[str, Any]:
    """Promote a passing candidate; make a failing one the challenger."""
    if decision.promote:
        return move_champion(settings, version, "gate")
    registry.set_alias(settings, settings.registry.challenger_alias, version)
    return {"champion": decision.champion_version, "alias": settings.registry.champion_alias,
            "challenger": str(version), "changed": False}


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
    """The decision and its figures: verdict, reasons, the champion compared with, the paired counts and
    p-values per set, and both models' accuracy on the faces they were compared on."""
    figures = {name: {**t, "candidate_accuracy": decision.candidate.get(name, {}).get("accuracy"),
                      "champion_accuracy": decision.champion.get(name, {}).get("accuracy")}
               for name, t in decision.paired.items()}
    return {registry.DECISION_TAG: decision.verdict, "gate.reasons": json.dumps(decision.reasons)[:5000],
            "gate.champion_version": decision.champion_version or "", "gate.paired": json.dumps(figures)[:5000]}
