"""Ship a registered version as the package's baseline: fer_core/assets/{baseline.keras, its TFLite form
baseline.tflite and baseline.sha, baseline.json, MODEL_CARD.md}.

Everything written comes from the registry and MLflow, never typed by hand: the version's tags (dataset,
fingerprints, config hash, commit, gate decision and figures), its training run's parameters, metrics and
generated model card; and, when the run started from other models (`train.init_from`, or the members of an
ensemble), the MLflow run that trained each (`--init-run HOME:RUN_ID`, once per model, in order): its
parameters, epochs and metrics, so the card says how the weights were made and on what machine. When a run
is in a registry that is gone (another machine) but its network is one an earlier baseline shipped (a
recalibration, a re-assembly), `--init-run OLD/baseline.json#N` carries that baseline's N-th training record
over in its place, and `--training-from OLD/baseline.json` carries all of them (after the `--init-run` ones).
A network trained on a lent GPU by tools/accelerator_train.py has no MLflow run: `--init-run RUN/history.json`
reads the record that tool wrote beside it (its settings, epochs, time, backend and device).

Usage: python scripts/ship_baseline.py --home HOME --version N [--init-run HOME2:RUN_ID|OLD.json#N ... |
       --training-from baseline.json] [--command "..."]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fer_core import models, registry  # noqa: E402
from fer_core.classify import keras_to_tflite, save_beside  # noqa: E402
from fer_core.config import load_settings  # noqa: E402

ASSETS = ROOT / "fer_core" / "assets"
KEPT_PARAMS = ("balance.undersample", "balance.smote", "train.model", "train.width", "train.epochs",
               "train.batch_size", "train.learning_rate", "train.lr_schedule", "train.optimizer", "train.weight_decay",
               "train.label_smoothing", "train.flip_average", "train.init_from", "train.members", "train.seed",
               "split.seed", "data.margin", "augment.enabled")


def run_facts(home: str, run_id: str) -> dict[str, Any]:
    """Parameters (the ones that describe the recipe), metrics and tags of one MLflow run in `home`."""
    import mlflow

    settings = load_settings(None, [f'home="{home}"'], environ={})
    registry.configure(settings)
    run = mlflow.get_run(run_id)
    try:  # the run's own card says where it trained
        card = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_card.md")).read_text()
        trained = next((line[2:] for line in card.splitlines() if line.startswith("- trained for")), "")
    except Exception:  # noqa: BLE001 (a run without a card)
        trained = ""
    return {"trained": trained, "home_tracking_uri": settings.tracking_uri, "run_id": run_id, "run_name": run.info.run_name,
            "params": {k: run.data.params[k] for k in KEPT_PARAMS if k in run.data.params},
            "metrics": {k: round(v, 6) for k, v in sorted(run.data.metrics.items()) if math.isfinite(v)},
            "git_commit": run.data.tags.get("git_commit", ""), "dataset_version": run.data.tags.get("dataset.version", ""),
            "started_utc": run.info.start_time, "ended_utc": run.info.end_time}


def accelerator_facts(path: str) -> dict[str, Any]:
    """The training record of a tools/accelerator_train.py run, from the history.json it wrote."""
    h = json.loads(Path(path).read_text())
    args = h.get("args", {})
    # the tool trains the compact model with Adam, always; the rest is in its arguments
    params = {"train.model": "compact", "train.width": h.get("width"), "train.epochs": h.get("epochs"),
              "train.batch_size": args.get("batch"), "train.learning_rate": args.get("lr"),
              "train.lr_schedule": f"cosine over {args.get('minutes')} min after {args.get('warmup_epochs')} warm-up epochs",
              "train.optimizer": "adam", "train.label_smoothing": args.get("smoothing"), "train.seed": args.get("seed")}
    best = max(h.get("history", [{}]), key=lambda e: e.get("val_student_accuracy", -1.0))  # the epoch it kept
    return {"trained": f"on {h.get('device') or 'a lent GPU'} through Keras 3 on {h.get('backend', '?')} "
                       "(tools/accelerator_train.py)",
            "run_id": "", "run_name": Path(path).parent.name, "params": {k: str(v) for k, v in params.items()},
            "metrics": {"epochs_run": float(h.get("epochs", 0)), "train_seconds": float(h.get("seconds", 0)),
                        "train_images_per_s": float(h.get("images_per_s", 0)),
                        "best_epoch": float(best.get("epoch", 0)),
                        "val_accuracy_as_trained": round(float(best.get("val_student_accuracy", 0)), 4)},
            "git_commit": h.get("git_commit", ""), "dataset_version": h.get("dataset_version", "")}


def earlier_records(path: str) -> list[dict[str, Any]]:
    """The training records an earlier baseline.json shipped, in member order."""
    return json.loads(Path(path).read_text()).get("training", [])


def training_record(spec: str, command: str = "") -> dict[str, Any]:
    """How one network was trained: `HOME:RUN_ID` (read from that MLflow run), `OLD/baseline.json#N` (the
    N-th record an earlier baseline shipped, kept as it was, command included, unless `command` is given) or
    `RUN/history.json` (a tools/accelerator_train.py run)."""
    if spec.endswith("history.json"):
        return {"command": command, **accelerator_facts(spec)}
    path, _, index = spec.rpartition("#")
    if path.endswith(".json"):
        records = earlier_records(path)
        if not index.isdigit() or int(index) >= len(records):
            raise SystemExit(f"{spec}: {path} has {len(records)} training record(s); pick one of 0..{len(records) - 1}")
        record = dict(records[int(index)])
        return {**record, "command": command or record.get("command", "")}
    home, _, run_id = spec.rpartition(":")
    if not home or not run_id:
        raise SystemExit(f"{spec}: expected HOME:RUN_ID or OLD/baseline.json#N")
    return {"command": command, **run_facts(home, run_id)}


def training_line(init: dict[str, Any]) -> str:
    """The card's line on how one network was trained."""
    m = init["metrics"]
    where = f"MLflow run `{init['run_id']}`" if init["run_id"] else f"run `{init['run_name']}`"
    kept = (f", the epoch kept {int(m['best_epoch'])} (validation {m['val_accuracy_as_trained']:.4f} as trained)"
            if "best_epoch" in m else "")
    return (f"- weights trained by `{init['command'] or 'fer train'}` ({where}, commit `{init['git_commit'] or '?'}`, "
            f"dataset `{init['dataset_version'] or '?'}`): {int(m.get('epochs_run', 0))} epochs, "
            f"{m.get('train_seconds', 0) / 60:.0f} min at {m.get('train_images_per_s', 0):.0f} images/s "
            f"({init['trained'] or 'its card says no more'}){kept}; its settings: `{json.dumps(init['params'])}`")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True, help="the fer home whose registry holds the version")
    ap.add_argument("--version", required=True)
    ap.add_argument("--init-run", action="append", default=[],
                    help="HOME:RUN_ID of the run that trained the warm-start model or an ensemble member, or "
                         "OLD/baseline.json#N for a network an earlier baseline shipped (repeat, in member order)")
    ap.add_argument("--init-command", action="append", default=[],
                    help="the command line of each --init-run, in the same order")
    ap.add_argument("--training-from", default="",
                    help="an earlier baseline.json whose training record applies (the same networks, re-assembled)")
    ap.add_argument("--command", default="", help="the command line that registered the version")
    args = ap.parse_args()
    import mlflow

    settings = load_settings(None, [f'home="{args.home}"'], environ={})
    version = registry.get_version(settings, args.version)
    resolved = registry.resolve(f"models:/{settings.registry.model_name}/{args.version}", settings)
    run = run_facts(args.home, version.run_id)
    card = Path(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="model_card.md")).read_text()
    info: dict[str, Any] = {
        "version_in_training_registry": args.version, "run_id": version.run_id,
        "dataset_version": version.tags.get("dataset.version", ""),
        "fingerprint": json.loads(version.tags.get("dataset.fingerprint", "{}")),
        "config_hash": version.tags.get("config_hash", ""), "git_commit": version.tags.get("git_commit", ""),
        "train_key": version.tags.get("train_key", ""), "command": args.command, "params": run["params"],
        "metrics": {k: v for k, v in run["metrics"].items() if not k.startswith(("val_", "learning_rate"))
                    and k not in ("loss", "categorical_accuracy")},
        "gate_decision": version.tags.get(registry.DECISION_TAG, ""),
        "gate_reasons": json.loads(version.tags.get("gate.reasons", "[]")),
        "gate_paired": json.loads(version.tags.get("gate.paired", "{}")),
    }
    provenance = ["", "## Provenance", "",
                  f"- registered as version {args.version} by `{args.command or 'fer pipeline run'}` "
                  f"(MLflow run `{version.run_id}`); gate: **{info['gate_decision']}**"]
    provenance += [f"  - {reason}" for reason in info["gate_reasons"]]
    commands = args.init_command + [""] * (len(args.init_run) - len(args.init_command))
    training = [training_record(init_run, command) for init_run, command in zip(args.init_run, commands, strict=True)]
    if args.training_from:
        training += earlier_records(args.training_from)
    if training:
        info["training"] = training
    provenance += [training_line(init) for init in training]
    shutil.copyfile(resolved.path, ASSETS / "baseline.keras")
    tflite = resolved.tflite.read_bytes() if resolved.tflite else keras_to_tflite(models.load(str(resolved.path)))
    save_beside(ASSETS / "baseline.keras", tflite)
    (ASSETS / "baseline.json").write_text(json.dumps(info, indent=2) + "\n")
    (ASSETS / "MODEL_CARD.md").write_text(card.rstrip() + "\n" + "\n".join(provenance) + "\n")
    print(json.dumps({"shipped": args.version, "from": str(resolved.path), "assets": str(ASSETS)}))


if __name__ == "__main__":
    main()
