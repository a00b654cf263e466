"""The promotion gate: a candidate replaces the champion only when it is better on the same frozen sets.

Rules (all must hold; every rule's outcome is a reason in the decision):
- accuracy >= champion's + margin on every benchmark set;
- macro-F1 not lower than the champion's (minus a tolerance) on every benchmark set;
- no class recall under the floor on any benchmark set;
- speed: single-face latency within the budget; for an offline (analysis) model, the analysis budget and
  batched throughput above its floor (each when set);
- paired on the same faces (McNemar's exact test, when predictions of both models are given): not
  significantly worse on any set, and significantly better over all sets together (one-sided, `alpha`):
  on 3,000 faces one accuracy point is about one standard error, so a point is noise, not a gain;
- a candidate that predicts what the champion predicts on every face (a recalibration) is better only if
  its log loss is lower on every benchmark set;
- with no champion: only the floors (recall, absolute accuracy, latency).

The caller scores both models on faces neither trained on (fer_core.promotion).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fer_core.config import GateSettings


def mcnemar(y: np.ndarray, candidate: np.ndarray, champion: np.ndarray) -> dict[str, float]:
    """McNemar's exact test on paired predictions: b faces only the candidate gets right, c only the
    champion; one-sided p-values that the candidate is better (p_better) or worse (p_worse); `same`: faces
    on which both predict the same emotion."""
    cand_right, champ_right = candidate == y, champion == y
    b = int((cand_right & ~champ_right).sum())
    c = int((~cand_right & champ_right).sum())
    return {"n": int(len(y)), "b": b, "c": c, "p_better": mcnemar_counts(b, c), "p_worse": mcnemar_counts(c, b),
            "same": int((candidate == champion).sum())}


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    candidate: dict[str, Any] = field(default_factory=dict)
    champion: dict[str, Any] = field(default_factory=dict)
    champion_version: str | None = None
    paired: dict[str, dict[str, float]] = field(default_factory=dict)  # set -> mcnemar() figures

    @property
    def verdict(self) -> str:
        return "promote" if self.promote else "reject"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Decision:
        return cls(**{k: v for k, v in data.items() if k != "verdict"})


def decide(candidate: dict[str, dict[str, Any]], champion: dict[str, dict[str, Any]] | None,
           candidate_latency_ms: float, cfg: GateSettings, champion_version: str | None = None,
           paired: dict[str, dict[str, float]] | None = None, candidate_faces_per_s: float | None = None,
           offline: bool = False) -> Decision:
    """`candidate` / `champion`: benchmark set name -> metrics JSON (as `evaluate.metrics` returns);
    `paired`: set name -> `mcnemar(...)` of both models on that set's faces; `offline`: the candidate is for the
    analysis alias, so `cfg.analysis_*` set its speed budget, which needs `candidate_faces_per_s` (batched)."""
    ok, reasons = True, []

    def rule(passed: bool, text: str) -> None:
        nonlocal ok
        ok = ok and passed
        reasons.append(("PASS " if passed else "FAIL ") + text)

    if not candidate:
        rule(False, "no benchmark set to score the candidate on")
    for name, c in candidate.items():
        worst = min(c["per_class"].items(), key=lambda kv: kv[1]["recall"] if kv[1]["support"] else 1.0)
        rule(worst[1]["recall"] >= cfg.min_class_recall or worst[1]["support"] == 0,
             f"{name}: lowest class recall {worst[0]} {worst[1]['recall']:.3f} vs floor {cfg.min_class_recall:.3f}")
        rule(c["accuracy"] >= cfg.min_accuracy,
             f"{name}: accuracy {c['accuracy']:.4f} vs absolute floor {cfg.min_accuracy:.4f}")
        if champion is None:
            continue
        ch = champion.get(name)
        if ch is None:
            rule(False, f"{name}: champion has no score on this set")
            continue
        rule(c["accuracy"] >= ch["accuracy"] + cfg.min_accuracy_gain,
             f"{name}: accuracy {c['accuracy']:.4f} vs champion {ch['accuracy']:.4f} + margin {cfg.min_accuracy_gain:.4f}")
        rule(c["macro_f1"] >= ch["macro_f1"] - cfg.macro_f1_tolerance,
             f"{name}: macro-F1 {c['macro_f1']:.4f} vs champion {ch['macro_f1']:.4f}"
             + (f" - tolerance {cfg.macro_f1_tolerance:.4f}" if cfg.macro_f1_tolerance else ""))
    if champion is not None and paired:
        for name, t in paired.items():
            rule(t["p_worse"] >= cfg.alpha, f"{name}: paired on {t['n']} faces, only the candidate right on "
                 f"{t['b']}, only the champion on {t['c']}: p(worse) {t['p_worse']:.4f} vs alpha {cfg.alpha}")
        b, c = sum(t["b"] for t in paired.values()), sum(t["c"] for t in paired.values())
        same = all(t.get("same", 0) == t["n"] for t in paired.values())
        if same:  # a recalibration: the same answers, so it must give them better probabilities
            losses = {name: (candidate[name]["loss"], champion[name]["loss"]) for name in paired if name in champion}
            rule(bool(losses) and all(a < b for a, b in losses.values()),
                 f"all sets: the champion's prediction on every one of {sum(t['n'] for t in paired.values())} faces "
                 "(a recalibration), so its probabilities must be better: log loss "
                 + ", ".join(f"{name} {a:.4f} vs {b:.4f}" for name, (a, b) in losses.items()))
        else:
            pooled = mcnemar_counts(b, c)
            rule(pooled < cfg.alpha, f"all sets: candidate better on {b} faces, champion on {c}: p(better) "
                 f"{pooled:.4f} vs alpha {cfg.alpha} (McNemar, exact)")
    max_ms, min_rate = (cfg.analysis_max_latency_ms, cfg.analysis_min_faces_per_s) if offline else (cfg.max_latency_ms, 0)
    if max_ms > 0:
        rule(candidate_latency_ms <= max_ms, f"single-face latency {candidate_latency_ms:.3f} ms vs budget {max_ms:.3f} ms")
    if min_rate > 0:
        rule(candidate_faces_per_s is not None and candidate_faces_per_s >= min_rate,
             f"batched throughput {candidate_faces_per_s or 0:.0f} faces/s vs floor {min_rate:.0f} faces/s"
             + ("" if candidate_faces_per_s is not None else " (not measured)"))
    if champion is None:
        reasons.append("INFO no champion yet: only the floors apply")
    return Decision(ok, reasons, candidate, champion or {}, champion_version)


def mcnemar_counts(b: int, c: int) -> float:
    """One-sided exact p-value that b discordant wins against c come from a better model."""
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative="greater").pvalue) if b + c else 1.0
