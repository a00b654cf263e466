"""The model card logged with every training run: data, training, hardware, speed, results, known limits."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from fer_core.config import Settings
from fer_core.data.dataset import Dataset
from fer_core.labels import EMOTIONS
from fer_core.train import TrainResult


def hardware() -> str:
    """What this process runs on, for the card and the benchmarks: CPU model and cores, any GPU TensorFlow sees.

    Cloud VMs often name the CPU only "Intel(R) Xeon(R) Processor", and two such machines with the same vector
    units ran the same worker 1.4x apart (docs/BENCHMARKS.md, 2026-12-05), so family, model and the last-level
    cache are given too: they tell such machines apart where the name does not."""
    cpu, vector = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n", 1)[0].splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        cpu = info.get("model name", cpu)
        if "cpu family" in info and "model" in info:
            cpu += f" (family {info['cpu family']}, model {info['model']})"
        flags = set(info.get("flags", "").split())
        # the widest vector unit decides TensorFlow's and TFLite's speed: the same model runs 2-3x apart
        vector = " with AVX-512" if "avx512f" in flags else " with AVX2" if "avx2" in flags else ""
        vector += " and AMX" if vector and "amx_tile" in flags else ""
    except (OSError, ValueError):
        pass
    cache = last_level_cache()
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return (f"{cpu}{vector}, {os.cpu_count()} cores{f', {cache} last-level cache' if cache else ''}"
            + (f", GPU {', '.join(gpus)}" if gpus else ", no GPU"))


def last_level_cache(caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> str:
    """The last-level CPU cache's size (e.g. "480 MiB"), from the kernel; empty where it does not say."""
    sizes = []
    for index in caches.glob("index*"):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
            kib = int(size[:-1]) if size.endswith("K") else int(size)
        except (OSError, ValueError):
            continue
        sizes.append((level, kib))
    if not sizes:
        return ""
    kib = max(sizes)[1]
    return f"{kib // 1024} MiB" if kib >= 1024 else f"{kib} KiB"


def calibration_line(c: dict[str, float]) -> str:
    groups = sorted(k[4:-4] for k in c if k.startswith("val_") and k.endswith("_ece") and k != "val_ece")
    per_source = "; ".join(f"{g} {c[f'val_{g}_ece_before_calibration']:.4f} -> {c[f'val_{g}_ece']:.4f}" for g in groups)
    return (f"- calibrated: probabilities re-scaled by temperature {c['temperature']:.3f}, fitted on the validation "
            f"split{' with each source weighing the same' if groups else ''} (calibration error there "
            f"{c['val_ece_before_calibration']:.4f} -> {c['val_ece']:.4f}" + (f"; {per_source}" if groups else "")
            + "); no prediction changes")


E2E_HEADING = "## End to end through the detector (as `fer predict` sees it)"


def end_to_end_section(e: dict[str, Any]) -> list[str]:
    """The card's end-to-end section, from `evaluate.through_detector`'s result (also what `fer evaluate
    --through-detector` prints, so a shipped card can be brought up to date: scripts/refresh_end_to_end.py)."""
    return [E2E_HEADING, "",
            f"Whole images of the test split's ExpW faces ({e['n']} faces in {e['images']} images), the "
            f"`{e.get('detector_name') or 'still'}` face detector, crops grown by {e['margin']:.2f}; a face is found "
            f"at IoU >= {e['min_iou']}, a missed face counts as wrong.", "",
            f"- detection recall {e['detection_recall']:.4f}; accuracy on found faces {e['accuracy_on_found']:.4f} "
            f"(the same faces from their labelled boxes: {e['accuracy_on_found_labelled_crop']:.4f}); "
            f"end to end **{e['accuracy']:.4f}** (95% interval {interval(e)})"]


def interval(result: dict[str, Any]) -> str:
    """An accuracy's 95% interval (`evaluate.accuracy_interval`) as the card prints it."""
    low, high = result["accuracy_ci95"]
    return f"{low:.3f}-{high:.3f}"


def bn_refresh_line(done: dict[str, Any]) -> str:
    mirrors = " and their mirror images" if done.get("mirrors") else ""
    return (f"- batch-norm statistics of its {done['layers']} layers re-estimated on {done['faces']:,} clean training "
            f"faces{mirrors} (training kept them on augmented batches; fer_core.batchnorm)")


def wild_recall_line(results: dict[str, dict[str, Any]]) -> list[str]:
    """The two emotions read worst on in-the-wild faces (the test split's ExpW faces), with the same emotions'
    recall on FER2013's PublicTest: what an analyst of real footage should weigh; empty without both sets."""
    if "expw_test" not in results or "fer2013_publictest" not in results:
        return []
    wild, lab = results["expw_test"]["per_class"], results["fer2013_publictest"]["per_class"]
    worst = sorted((pc["recall"], name) for name, pc in wild.items() if pc["support"])[:2]
    return ["- In-the-wild faces (the test split's ExpW faces): the lowest recall there is "
            + " and ".join(f"{name} {recall:.2f}" for recall, name in worst) + " (on PublicTest "
            + " and ".join(f"{lab[name]['recall']:.2f}" for _, name in worst) + "; per class above; "
            "`fer evaluate --misread DIR` shows the faces)"]


def model_card(settings: Settings, ds: Dataset, tr: TrainResult, results: dict[str, dict[str, Any]],
               speed: dict[str, float], commit: str, end_to_end: dict[str, Any] | None = None) -> str:
    t = settings.train
    lines = [
        f"# Model card: {t.model} emotion classifier", "",
        "Classifies a 48x48 grayscale face into 7 emotions: " + ", ".join(EMOTIONS) + ".", "",
        "## Data",
        f"- dataset version `{ds.version}` at `{ds.path}`",
        f"- raw inputs: {json.dumps(ds.stats.get('fingerprint', {}))}",
        f"- recipe: undersampling {json.dumps(settings.balance.undersample) if settings.balance.undersample else 'none'}, "
        f"SMOTE {'on' if settings.balance.smote else 'off'}; "
        f"{sum(ds.stats['counts']['smote'].values()):,} training faces",
        "", "## Training",
        f"- model `{t.model}`, {tr.params:,} parameters"
        + (f"; epochs run {tr.epochs_run} (budget {t.epochs}); batch {t.batch_size}; learning rate {t.learning_rate}"
           if t.model != "ensemble" else ""),
        (f"- trained for {tr.seconds / 60:.1f} min on {hardware()} ({tr.images_per_second:.0f} images/s)"
         if tr.epochs_run else f"- no epochs in this run (on {hardware()}): the weights are the warm start's"
         if t.model != "ensemble" else f"- assembled (not trained) from {len(t.members)} trained models, "
         "their probabilities averaged: " + ", ".join(f"`{m}`" for m in t.members)),
        *([f"- warm start from `{t.init_from}` (its own training is described with it)"] if t.init_from else []),
        *([f"- distilled from `{t.teacher}`: targets {t.distill_alpha} x label + {1 - t.distill_alpha:g} x its "
           "probabilities (fer_core.distill)"] if t.teacher else []),
        *([bn_refresh_line(tr.extra["bn_refresh"])] if tr.extra.get("bn_refresh") else []),
        *(["- saved with horizontal-flip averaging: each face is classified with its mirror image"]
          if t.flip_average else []),
        *([calibration_line(tr.extra["calibration"])] if tr.extra.get("calibration") else []),
        f"- augmentation: {json.dumps(settings.augment.model_dump(mode='json'))}",
        f"- git commit `{commit}`; config hash `{settings.section_hash('data', 'balance', 'split', 'augment', 'train')}`",
        "", f"## Speed (TFLite, on {hardware()})",
        f"- {speed['faces_per_s']:.0f} faces/s batched; {speed['single_face_ms']:.2f} ms for one face",
        "", "## Results", "",
        "| set | n | accuracy | 95% interval | macro-F1 | loss | calibration error (ECE) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['n']} | {r['accuracy']:.4f} | {interval(r)} | {r['macro_f1']:.4f} "
                     f"| {r['loss']:.4f} | {r.get('ece', float('nan')):.4f} |")
    if any("_at_" in name for name in results):
        lines += ["", "`<set>_at_<N>px`: the set's faces as a face N pixels wide in a frame reaches the classifier "
                  "(shrunk, enlarged back by the shared crop: `fer_core.crop.as_seen_at`), for faces far from the "
                  "camera and low-resolution streams; reported, not gated."]
    if end_to_end:
        lines += ["", *end_to_end_section(end_to_end)]
    for set_name in ("fer2013_publictest", "test", "expw_test"):
        if set_name not in results:
            continue
        lines += ["", f"Per class on {set_name}:", "", "| emotion | precision | recall | F1 | support |",
                  "| --- | --- | --- | --- | --- |"]
        for name, pc in results[set_name]["per_class"].items():
            lines.append(f"| {name} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | {pc['support']} |")
    if "test" in results:
        cm = np.asarray(results["test"]["confusion"])
        off = [(cm[i, j], EMOTIONS[i], EMOTIONS[j]) for i in range(7) for j in range(7) if i != j]
        worst = sorted(off, reverse=True)[:3]
        lines += ["", "## Known limits",
                  "- Most confused (true -> predicted, test split): "
                  + "; ".join(f"{a} -> {b} ({n})" for n, a, b in worst),
                  *wild_recall_line(results),
                  "- FER2013 and ExpW are web images: mostly frontal, adult, and skewed in age, ethnicity and "
                  "lighting; posed and exaggerated expressions are over-represented.",
                  "- Labels are single-annotator (FER2013) or crowd labels; 'disgust' is rare in the raw data.",
                  "- For aggregate audience analytics only: not for decisions about individuals."]
    return "\n".join(lines) + "\n"
