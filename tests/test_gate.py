"""Every rule of the promotion gate."""

import numpy as np
import pytest

from fer_core import evaluate, gate
from fer_core.config import GateSettings
from fer_core.labels import EMOTIONS


def result(acc: float, f1: float, recalls: dict[str, float] | None = None) -> dict:
    recalls = recalls or {}
    return {"n": 100, "accuracy": acc, "macro_f1": f1, "loss": 1.0,
            "per_class": {e: {"precision": 0.5, "recall": recalls.get(e, 0.5), "f1": 0.5, "support": 10}
                          for e in EMOTIONS}}


CFG = GateSettings(min_accuracy_gain=0.01, macro_f1_tolerance=0.0, min_class_recall=0.2, max_latency_ms=2.0)


def test_no_champion_needs_only_the_floors():
    d = gate.decide({"test": result(0.3, 0.2)}, None, 1.0, CFG)
    assert d.promote and any("no champion" in r for r in d.reasons)
    assert not gate.decide({"test": result(0.3, 0.2, {"disgust": 0.1})}, None, 1.0, CFG).promote
    assert not gate.decide({"test": result(0.3, 0.2)}, None, 1.0, GateSettings(min_accuracy=0.5)).promote


def test_accuracy_must_beat_champion_by_margin_on_every_set():
    champ = {"test": result(0.60, 0.5), "fer2013_publictest": result(0.60, 0.5)}
    better = {"test": result(0.62, 0.5), "fer2013_publictest": result(0.615, 0.5)}
    assert gate.decide(better, champ, 1.0, CFG, "3").promote
    within_margin = {"test": result(0.62, 0.5), "fer2013_publictest": result(0.605, 0.5)}
    d = gate.decide(within_margin, champ, 1.0, CFG, "3")
    assert not d.promote
    assert any(r.startswith("FAIL fer2013_publictest: accuracy 0.6050 vs champion 0.6000") for r in d.reasons)
    assert d.champion_version == "3" and d.verdict == "reject"


def test_macro_f1_may_not_drop():
    champ = {"test": result(0.60, 0.50)}
    d = gate.decide({"test": result(0.65, 0.49)}, champ, 1.0, CFG)
    assert not d.promote and any(r.startswith("FAIL test: macro-F1") for r in d.reasons)
    tolerant = GateSettings(min_accuracy_gain=0.01, macro_f1_tolerance=0.02, min_class_recall=0.2)
    assert gate.decide({"test": result(0.65, 0.49)}, champ, 1.0, tolerant).promote


def test_class_recall_floor_applies_with_a_champion_too():
    champ = {"test": result(0.60, 0.50)}
    d = gate.decide({"test": result(0.70, 0.60, {"fear": 0.19})}, champ, 1.0, CFG)
    assert not d.promote and "FAIL test: lowest class recall fear 0.190 vs floor 0.200" in d.reasons


def test_latency_budget():
    d = gate.decide({"test": result(0.7, 0.6)}, {"test": result(0.6, 0.5)}, 2.5, CFG)
    assert not d.promote and "FAIL single-face latency 2.500 ms vs budget 2.000 ms" in d.reasons


def test_throughput_floor_replaces_the_latency_budget_for_an_offline_model():
    """The analysis alias's budget (fer pipeline run --alias analysis): no single-face latency rule, a floor
    on batched faces/s; a candidate whose throughput was not measured does not pass it."""
    args = ({"test": result(0.7, 0.6)}, {"test": result(0.6, 0.5)}, 16.0, GateSettings(), "1")
    d = gate.decide(*args, candidate_faces_per_s=250.0, offline=True)
    assert d.promote and "PASS batched throughput 250 faces/s vs floor 200 faces/s" in d.reasons
    assert not any("latency" in r for r in d.reasons)
    assert "FAIL batched throughput 150 faces/s vs floor 200 faces/s" in gate.decide(
        *args, candidate_faces_per_s=150.0, offline=True).reasons
    assert not gate.decide(*args, offline=True).promote


def test_champion_missing_a_set_and_empty_candidate_fail():
    assert not gate.decide({"test": result(0.7, 0.6), "extra": result(0.7, 0.6)}, {"test": result(0.6, 0.5)},
                           1.0, CFG).promote
    assert not gate.decide({}, None, 1.0, CFG).promote


def test_every_decision_lists_its_reasons():
    d = gate.decide({"test": result(0.7, 0.6)}, {"test": result(0.6, 0.5)}, 1.0, CFG, "1")
    assert d.promote and len(d.reasons) == 5 and all(r.startswith(("PASS", "FAIL", "INFO")) for r in d.reasons)
    assert d.as_json()["verdict"] == "promote"
    assert evaluate.flat_metrics({"test": result(0.7, 0.6)}) == pytest.approx(
        {"test_accuracy": 0.7, "test_macro_f1": 0.6, "test_loss": 1.0})


def test_mcnemar_counts_only_the_faces_the_models_disagree_on():
    y = np.zeros(100, int)
    cand = y.copy()
    champ = y.copy()
    champ[:10] = 1  # ten faces only the candidate gets right
    t = gate.mcnemar(y, cand, champ)
    assert (t["n"], t["b"], t["c"]) == (100, 10, 0)
    assert t["p_better"] == pytest.approx(0.5**10) and t["p_worse"] == 1.0
    cand[50:55] = 2  # and five only the champion gets right
    t = gate.mcnemar(y, cand, champ)
    assert (t["b"], t["c"]) == (10, 5) and t["p_better"] == pytest.approx(0.1509, abs=1e-4)


def test_a_gain_within_the_noise_is_not_a_gain():
    """One accuracy point on 3,000 faces is 30 more faces: with 400 faces in dispute that is noise (p 0.07);
    the same point with 200 in dispute (130 vs 70) is not (p < 0.001)."""
    cfg = GateSettings(min_class_recall=0.2)
    champ = {"test": result(0.600, 0.5)}
    cand = {"test": result(0.610, 0.5)}
    noisy = {"test": {"n": 3000, "b": 215, "c": 185, "p_better": gate.mcnemar_counts(215, 185),
                      "p_worse": gate.mcnemar_counts(185, 215)}}
    d = gate.decide(cand, champ, 1.0, cfg, "1", paired=noisy)
    assert not d.promote and any(r.startswith("FAIL all sets: candidate better on 215 faces") for r in d.reasons)
    clear = {"test": {"n": 3000, "b": 130, "c": 70, "p_better": gate.mcnemar_counts(130, 70),
                      "p_worse": gate.mcnemar_counts(70, 130)}}
    assert gate.decide(cand, champ, 1.0, cfg, "1", paired=clear).promote
    worse_on_one = {**clear, "fer2013_publictest": {"n": 3000, "b": 10, "c": 40, "p_better": gate.mcnemar_counts(10, 40),
                                                    "p_worse": gate.mcnemar_counts(40, 10)}}
    both = {**cand, "fer2013_publictest": result(0.61, 0.5)}
    d = gate.decide(both, {**champ, "fer2013_publictest": result(0.60, 0.5)}, 1.0, cfg, "1", paired=worse_on_one)
    assert not d.promote and any(r.startswith("FAIL fer2013_publictest: paired") for r in d.reasons)


def test_a_recalibration_passes_only_with_better_probabilities():
    """A candidate that predicts what the champion predicts on every face (the champion with a temperature)
    cannot win a paired test: it passes when its log loss is lower on every set, and fails otherwise."""
    cfg = GateSettings(min_class_recall=0.2)
    y = np.zeros(500, int)
    pred = y.copy()
    pred[:200] = 3
    paired = {"test": gate.mcnemar(y, pred, pred.copy()), "fer2013_publictest": gate.mcnemar(y, pred, pred.copy())}
    assert paired["test"]["same"] == 500 and paired["test"]["b"] == paired["test"]["c"] == 0
    champ = {"test": result(0.6, 0.5), "fer2013_publictest": result(0.6, 0.5)}
    sharper = {name: {**r, "loss": 0.95} for name, r in champ.items()}
    d = gate.decide(sharper, champ, 1.0, cfg, "1", paired=paired)
    assert d.promote and any(r.startswith("PASS all sets: the champion's prediction on every one of 1000 faces")
                             for r in d.reasons)
    mixed = {**sharper, "fer2013_publictest": {**champ["fer2013_publictest"], "loss": 1.01}}
    d = gate.decide(mixed, champ, 1.0, cfg, "1", paired=paired)
    assert not d.promote and any(r.startswith("FAIL all sets: the champion's prediction") for r in d.reasons)
    pred2 = pred.copy()
    pred2[300] = 5  # one different answer: a new model, judged by the paired test (and not better)
    other = {"test": gate.mcnemar(y, pred2, pred), "fer2013_publictest": paired["fer2013_publictest"]}
    assert not gate.decide(sharper, champ, 1.0, cfg, "1", paired=other).promote
