"""The seed's experiments, re-run on the real data with the same wall-clock budget each.

Each experiment is one `fer train` (dataset build or reuse, training, evaluation, an MLflow run; nothing
is registered) in its own process, so every run starts from the same state. The budget is minutes of
training on this machine (`train.max_minutes`), because equal epochs would give the heavy models many
times the compute of the compact one.

    python experiments/seed_experiments.py --minutes 10                 # all of them
    python experiments/seed_experiments.py --minutes 10 --only no_smote # one
    python experiments/seed_experiments.py --markdown                   # the table of what ran

Prints one JSON object per experiment as it finishes, then a JSON list of all; results are also
appended to <home>/experiments.jsonl. Figures are recorded in docs/EXPERIMENTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# name -> (what it shows, overrides on top of the defaults)
EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    "compact": ("the default: compact CNN, SMOTE, augmentation", []),
    "no_smote": ("as the default, without SMOTE", ["balance.smote=false"]),
    "no_augment": ("as the default, without augmentation", ["augment.enabled=false"]),
    "mobilenetv2": ("MobileNetV2 at 96 px, no pretrained weights, SMOTE and augmentation",
                    ["train.model=mobilenetv2", 'train.weights=""', "train.input_size=96"]),
    "vgg16": ("VGG16 at 96 px, no pretrained weights, SMOTE and augmentation",
              ["train.model=vgg16", 'train.weights=""', "train.input_size=96"]),
}


def run_one(name: str, minutes: float, home: Path, fer2013: str, expw: str, extra: list[str]) -> dict:
    _, overrides = EXPERIMENTS[name]
    sets = [f'home="{home}"', f'data.fer2013="{fer2013}"', f'data.expw="{expw}"', "mlflow.experiment=fer-seed",
            f"train.max_minutes={minutes}", "train.epochs=1000", "train.early_stopping_patience=1000",
            *overrides, *extra]
    cmd = [sys.executable, "-m", "fer_cli", "train", "--name", name]
    for s in sets:
        cmd += ["--set", s]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"experiment": name, "error": proc.stderr.strip().splitlines()[-1:], "command": cmd}
    out = json.loads(proc.stdout)
    return {"experiment": name, "what": EXPERIMENTS[name][0], "overrides": overrides + extra,
            "wall_seconds": round(time.time() - started, 1), **out}


def markdown(results: list[dict]) -> str:
    """The results as the table in docs/EXPERIMENTS.md."""
    def acc(r: dict, name: str) -> str:
        m = r.get("metrics", {}).get(name)
        return f"{m['accuracy']:.4f}" if m else "-"

    lines = ["| experiment | params | epochs run | images seen | train s | best val acc | test acc | "
             "FER2013 PublicTest acc | PublicTest macro-F1 | ExpW test acc |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['experiment']} | failed: {r['error']} |")
            continue
        pt = r["metrics"].get("fer2013_publictest", {})
        lines.append(f"| {r['experiment']} | {r['params']:,} | {r['epochs_run']} | {r['images_seen']:,} | "
                     f"{r['train_seconds']:.0f} | {r['best_val_accuracy']:.4f} | {acc(r, 'test')} | "
                     f"{acc(r, 'fer2013_publictest')} | {pt.get('macro_f1', float('nan')):.4f} | "
                     f"{acc(r, 'expw_test')} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per experiment")
    ap.add_argument("--only", nargs="*", choices=list(EXPERIMENTS), help="run these (default: all)")
    ap.add_argument("--home", type=Path, default=Path("/tmp/fer-experiments"), help="FER home for the runs")
    ap.add_argument("--fer2013", default=str(SHARED / "fer2013" / "fer2013.csv.gz"))
    ap.add_argument("--expw", default=str(SHARED / "expw"))
    ap.add_argument("--set", action="append", default=[], help="extra override for every experiment")
    ap.add_argument("--markdown", action="store_true", help="only print <home>/experiments.jsonl as a table")
    args = ap.parse_args()
    if args.markdown:
        lines = (args.home / "experiments.jsonl").read_text().splitlines()
        print(markdown([json.loads(line) for line in lines if line.strip()]))
        return 0
    args.home.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.only or list(EXPERIMENTS):
        result = run_one(name, args.minutes, args.home, args.fer2013, args.expw, args.set)
        results.append(result)
        line = json.dumps(result)
        print(line, flush=True)
        with open(args.home / "experiments.jsonl", "a") as f:
            f.write(line + "\n")
    print(json.dumps(results, indent=2))
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
