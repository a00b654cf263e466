"""`fer demo`: the zero-configuration tour on embedded defaults.

1. bootstrap the champion from the shipped baseline model (empty registry only);
2. write a small dataset in the real FER2013 (CSV) and ExpW (label.lst + origin/) formats;
3. run the retraining flow on it (Prefect without a server, MLflow on sqlite) and show the gate's decision;
4. run the worker with the champion over a short clip of a real face and write the timeline and plot;
5. print where everything is.

The demo's faces come from the portrait that ships with matplotlib (Grace Hopper), varied by flips,
rotations, crops and brightness. Their labels are assigned in turn, not real: the demo shows the
machinery, and the gate is expected to keep the real champion.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fer_core.config import Settings

DEMO_OVERRIDES = ["train.epochs=1", "train.width=16", "train.batch_size=32", "data.max_reject_ratio=0.2"]


def portrait() -> np.ndarray:
    import matplotlib.cbook

    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def _variant(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = face.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-15, 15), rng.uniform(0.9, 1.1))
    out = cv2.warpAffine(face, m, (w, h), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out.astype(np.float32) * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)


def write_demo_data(root: Path, per_class: int = 12, seed: int = 0) -> dict[str, Path]:
    """A FER2013 CSV (Training + PublicTest rows) and an ExpW folder built from the portrait."""
    rng = np.random.default_rng(seed)
    img = portrait()
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    x, y, w, h = 155, 105, 222, 222  # Haar's box of the portrait's face
    face = gray[y:y + h, x:x + w]
    lines = ["emotion,pixels,Usage"]
    for usage, n in (("Training", per_class), ("PublicTest", max(2, per_class // 4))):
        for label in range(7):
            for _ in range(n):
                small = cv2.resize(_variant(face, rng), (48, 48), interpolation=cv2.INTER_AREA)
                lines.append(f"{label}," + " ".join(map(str, small.ravel())) + f",{usage}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "fer2013.csv").write_text("\n".join(lines) + "\n")
    expw = root / "expw"
    (expw / "origin").mkdir(parents=True, exist_ok=True)
    (expw / "label").mkdir(parents=True, exist_ok=True)
    label_lines = []
    for i in range(7 * per_class // 2):
        variant = np.clip(img.astype(np.float32) * rng.uniform(0.7, 1.3), 0, 255).astype(np.uint8)
        name = f"demo_{i:03d}.jpg"
        cv2.imwrite(str(expw / "origin" / name), variant)
        label_lines.append(f"{name} 0 {y} {x} {x + w} {y + h} {rng.uniform(30, 90):.4f} {i % 7}")
    (expw / "label" / "label.lst").write_text("\n".join(label_lines) + "\n")
    return {"fer2013": root / "fer2013.csv", "expw": expw}


def write_clip(path: Path, seconds: float = 4.0, fps: float = 24.0, size: tuple[int, int] = (640, 360)) -> Path:
    """The portrait moving and zooming across a plain background."""
    img = portrait()
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    n = int(seconds * fps)
    for i in range(n):
        t = i / max(n - 1, 1)
        scale = 0.45 + 0.2 * np.sin(np.pi * t)
        sprite = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), 40, np.uint8)
        sh, sw = sprite.shape[:2]
        x0 = int((width - sw) * t)
        y0 = max(0, (height - sh) // 2)
        frame[y0:y0 + min(sh, height), x0:x0 + sw] = sprite[: min(sh, height)]
        writer.write(frame)
    writer.release()
    return path


def run_demo(settings: Settings, out=sys.stderr) -> dict[str, Any]:
    from fer_core import baseline, registry
    from flows.retrain import retrain
    from serving.analyze import analyze

    t0 = time.time()
    home = settings.home_path
    demo = home / "demo"
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    say(f"[1/4] registry at {settings.tracking_uri}")
    boot = baseline.bootstrap(settings)
    say(f"      champion: version {boot['champion']}"
        + (" (bootstrapped from the shipped baseline)" if boot["bootstrapped"] else " (already there)"))
    say(f"[2/4] writing a small dataset in the FER2013 and ExpW formats under {demo / 'data'}")
    data = write_demo_data(demo / "data")
    overrides = [f'home="{home}"', f'data.fer2013="{data["fer2013"]}"', f'data.expw="{data["expw"]}"',
                 f'mlflow.tracking_uri="{settings.tracking_uri}"', *DEMO_OVERRIDES]
    say("[3/4] running the retraining flow (Prefect, its API server started for this command only)")
    result = retrain(None, overrides)
    decision = result.get("decision", {})
    say(f"      status: {result['status']}" + (f" ({result.get('reason')})" if result.get("reason") else ""))
    for reason in decision.get("reasons", []):
        say(f"        {reason}")
    say("[4/4] running the worker with the champion over a short clip")
    clip = write_clip(demo / "clip.mp4")
    uri = f"models:/{settings.registry.model_name}@{settings.registry.champion_alias}"
    summary = analyze(settings, str(clip), str(demo / "analysis"), uri, detector="full")  # the worker's Haar
    champion = registry.champion(settings)
    where = {
        "home": str(home), "mlflow": settings.tracking_uri, "datasets": settings.datasets_root,
        "clip": str(clip), **{f"analysis_{k}": v for k, v in summary["outputs"].items()},
        "mlflow_ui": f"mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000  # then http://127.0.0.1:5000",
        "preview": f"fer serve --source {clip} --http 127.0.0.1:8000  # then http://127.0.0.1:8000/",
    }
    say(f"done in {time.time() - t0:.0f}s. Where everything is:")
    for key, value in where.items():
        say(f"  {key:<18} {value}")
    return {"seconds": round(time.time() - t0, 1), "champion": champion.version if champion else None,
            "bootstrap": boot, "pipeline": {"status": result["status"], "reason": result.get("reason", ""),
                                             "decision": decision.get("verdict"), "reasons": decision.get("reasons", []),
                                             "version": result.get("version", {}).get("version")},
            "analysis": {k: summary[k] for k in ("frames", "faces", "dominant", "mean_probability")}, "where": where}
