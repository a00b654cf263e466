"""Commands beyond `fer data`. Each `add_*` adds one subcommand; `ALL` lists them for the parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file (also env FER_CONFIG)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def _settings(args):
    from fer_core.config import load_settings

    return load_settings(args.config, args.set)


def _default_model(settings) -> str:
    return f"models:/{settings.registry.model_name}@{settings.registry.champion_alias}"


# --- fer evaluate -----------------------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    from fer_cli.main import emit
    from fer_core import evaluate, registry

    s = _settings(args)
    x, y, info = evaluate.load_eval_data(args.data, args.format, args.usage)
    if len(y) == 0:
        raise ValueError(f"no labelled faces in {args.data} ({info})")
    clf = registry.load_classifier(args.model or _default_model(s), s)
    probs = clf.predict(x)
    result = evaluate.metrics(y, probs)
    result["ece"] = round(evaluate.expected_calibration_error(y, probs), 6)
    result.update({"data": args.data, "format": info["format"], "model": clf.source, "model_version": clf.version,
                   "skipped": {k: v for k, v in info.items() if k not in ("format",)}})
    if not args.no_speed:
        result["speed"] = evaluate.speed(clf)
    emit(result)
    return 0


def add_evaluate(sub) -> None:
    from fer_core.evaluate import FORMATS

    p = sub.add_parser("evaluate", help="metrics of a model on a labelled data set, as JSON")
    _common(p)
    p.add_argument("--data", required=True, help="FER2013 CSV, ExpW folder, <emotion>/* folder or votes CSV")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--usage", help="FER2013 CSV: only rows with this Usage (e.g. PublicTest)")
    p.add_argument("--model", help="models:/NAME@ALIAS, models:/NAME/VERSION or a .keras file (default: champion)")
    p.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    p.set_defaults(func=cmd_evaluate)


# --- fer predict ------------------------------------------------------------------------------------

def cmd_predict(args) -> int:
    import cv2
    import numpy as np

    from fer_cli.main import emit
    from fer_core import detect, registry
    from fer_core.classify import top_k
    from fer_core.labels import EMOTIONS

    s = _settings(args)
    clf = registry.load_classifier(args.model or _default_model(s), s)
    detector = detect.HaarDetector(min_size=args.min_size)
    results, failed = [], 0
    for image in args.images:
        gray = cv2.imread(image, cv2.IMREAD_GRAYSCALE) if Path(image).is_file() else None
        if gray is None:
            failed += 1
            reason = "file not found" if not Path(image).exists() else "not an image (cannot decode)"
            print(f"fer: error: {image}: {reason}", file=sys.stderr)
            results.append({"image": image, "error": reason})
            continue
        h, w = gray.shape
        boxes = np.array([[0, 0, w, h]], np.int32) if args.no_detect else detector.detect(gray)
        probs = clf.predict(detect.crop_faces(gray, boxes)) if len(boxes) else np.zeros((0, 7))
        faces = [{"box": {"x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3])},
                  "emotion": top_k(p, 1)[0][0],
                  "probabilities": {e: round(float(v), 6) for e, v in zip(EMOTIONS, p, strict=True)}}
                 for b, p in zip(boxes, probs, strict=True)]
        results.append({"image": image, "width": w, "height": h, "faces": faces})
    emit({"model": clf.source, "model_version": clf.version, "results": results})
    return 2 if failed else 0


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="faces, boxes and emotion probabilities of images, as JSON")
    _common(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--model", help="model URI or .keras file (default: champion)")
    p.add_argument("--min-size", type=int, default=30, help="smallest face side in pixels")
    p.add_argument("--no-detect", action="store_true", help="treat each whole image as one face crop")
    p.set_defaults(func=cmd_predict)


ALL = [add_evaluate, add_predict]
