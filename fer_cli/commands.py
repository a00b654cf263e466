"""Commands beyond `fer data`. Each `add_*` adds one subcommand; `ALL` lists them for the parser."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Face detectors of fer predict and fer evaluate --through-detector: detect.STILL_DETECTOR first, then the
# other names detect.preset knows, written here so that parsing the command line does not import OpenCV
# (tests/test_detect.py checks they agree). Not to be confused with --detector of fer serve/analyze/bench.
FACE_DETECTORS = ("still+blazeface_views", "still", "video", "blazeface", "blazeface_views", "still+blazeface",
                  "blazeface+still")
# The video face finder's modes (serving.pipeline.MODES, checked by tests/test_blazeface.py): Haar on every frame
# (full), Haar around known faces (track), or BlazeFace on every colour frame.
FRAME_DETECTORS = ("full", "track", "blazeface")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML settings file (also env FER_CONFIG)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a setting")


def _settings(args):
    from fer_core.config import load_settings

    return load_settings(args.config, args.set)


# --- fer data ---------------------------------------------------------------------------------------

def cmd_data_build(args) -> int:
    from fer_cli.output import emit
    from fer_core.data import dataset

    emit(dataset.build(_settings(args), force=args.force).summary())
    return 0


def cmd_data_stats(args) -> int:
    from fer_cli.output import emit
    from fer_core.data import dataset

    emit(dataset.load_stats(args.version, _settings(args)))
    return 0


def add_data(sub) -> None:
    data = sub.add_parser("data", help="build and inspect versioned datasets").add_subparsers(dest="data_cmd",
                                                                                               required=True)
    p = data.add_parser("build", help="ingest, merge, undersample, split, SMOTE; print a JSON summary")
    _common(p)
    p.add_argument("--force", action="store_true", help="rebuild even if this version exists")
    p.set_defaults(func=cmd_data_build)
    p = data.add_parser("stats", help="print the stats JSON of a built dataset version")
    _common(p)
    p.add_argument("version", help="a version name (under the datasets root) or a dataset folder")
    p.set_defaults(func=cmd_data_stats)


def _default_model(settings) -> str:
    return f"models:/{settings.registry.model_name}@{settings.registry.champion_alias}"


def _offline_model_uri(settings, model: str | None) -> str:
    """The model for fer predict and fer analyze: --model, else the analysis alias when it exists, else the
    champion (the worker, which must keep up with a live feed, always serves the champion)."""
    if not model:
        from fer_core import registry

        if registry.alias_version(settings, settings.registry.analysis_alias) is not None:
            return f"models:/{settings.registry.model_name}@{settings.registry.analysis_alias}"
    return _model_uri(settings, model)


def _model_uri(settings, model: str | None) -> str:
    """The model URI to serve. Only the embedded default registry (sqlite under home) is given the shipped
    baseline as champion when it has none; a worker never writes to a shared registry (it waits, not ready,
    until a champion appears there)."""
    uri = model or _default_model(settings)
    if uri == _default_model(settings):
        from fer_core import baseline

        baseline.ensure_champion(settings)
    return uri


# --- fer evaluate -----------------------------------------------------------------------------------

def cmd_evaluate(args) -> int:
    from fer_cli.output import emit
    from fer_core import crop, evaluate, registry

    s = _settings(args)
    if args.face_size and args.face_size not in crop.SEEN_SIDES:
        raise ValueError(f"--face-size is {crop.SEEN_SIDES.start}-{crop.SEEN_SIDES.stop - 1} pixels (48 is the "
                         f"faces as they are), got {args.face_size}")
    if args.through_detector:
        return _evaluate_through_detector(args, s)
    x, y, info = evaluate.load_eval_data(args.data, args.format, args.usage)
    if len(y) == 0:
        raise ValueError(f"no labelled faces in {args.data} ({info})")
    if args.face_size:
        x = crop.as_seen_at(x, args.face_size)
    clf = registry.load_classifier(_model_uri(s, args.model), s)
    probs = clf.predict(x)
    result = evaluate.metrics(y, probs)
    result.update({"data": args.data, "format": info["format"], **({"face_size": args.face_size} if args.face_size else {}),
                   "model": clf.source, "model_version": clf.version,
                   "skipped": {k: v for k, v in info.items() if k not in ("format",)}})
    if args.misread:
        result["misread"] = _write_misread(args.misread, x, y, probs)
    if not args.no_speed:
        result["speed"] = evaluate.speed(clf)
    emit(result)
    return 0


def _write_misread(folder: str, x, y, probs) -> dict:
    """`misread_<emotion>.png` for each true emotion the model misread, into `folder` (local or gs://)."""
    from fer_core import plots, storage

    files, counts = {}, {}
    for emotion, (png, n) in plots.misread(x, y, probs).items():
        files[emotion] = storage.join(folder, f"misread_{emotion}.png")
        storage.write_bytes(files[emotion], png)
        counts[emotion] = n
    return {"folder": folder, "files": files, "misread": counts}


def _evaluate_through_detector(args, s) -> int:
    from fer_cli.output import emit
    from fer_core import evaluate, registry

    if evaluate.detect_format(args.data) != "expw":
        raise ValueError(f"--through-detector needs ExpW-format data (label/label.lst + origin/): {args.data}")
    images = None
    if args.test_split_of:
        from fer_core.data import dataset

        images = dataset.expw_images(dataset.resolve(args.test_split_of, s))
        if not images:
            raise ValueError(f"dataset {args.test_split_of} has no ExpW faces in its test split")
    clf = registry.load_classifier(_model_uri(s, args.model), s)
    result = evaluate.through_detector(clf, args.data, detector=args.face_detector, images=images,
                                       margin=s.data.margin, labelled_margin=s.data.margin)
    emit({**result, "data": args.data, "test_split_of": args.test_split_of or "", "model": clf.source,
          "model_version": clf.version})
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
    p.add_argument("--misread", metavar="DIR", help="write a montage per emotion of the faces the model misreads "
                   "(up to 40 each, captioned with its answer) into DIR")
    p.add_argument("--face-size", type=int, default=0, metavar="N",
                   help="score the faces as a face N pixels wide (8-47) reaches the classifier: a far face, a "
                        "low-resolution stream (default: as they are)")
    p.add_argument("--through-detector", action="store_true",
                   help="ExpW data: whole images through the face detector, as fer predict sees them (a missed "
                        "face counts as wrong); reports detection recall, accuracy on found faces and end to end")
    p.add_argument("--test-split-of", metavar="VERSION", help="with --through-detector: only the images of this "
                   "dataset version's test split")
    p.add_argument("--face-detector", "--haar", dest="face_detector", default=FACE_DETECTORS[0],
                   choices=FACE_DETECTORS, help="with --through-detector: the face detector, as fer predict's")
    p.set_defaults(func=cmd_evaluate)


# --- fer predict ------------------------------------------------------------------------------------

def cmd_predict(args) -> int:
    import cv2
    import numpy as np

    from fer_cli.output import emit
    from fer_core import crop, detect, registry
    from fer_core.classify import top_k
    from fer_core.labels import EMOTIONS

    s = _settings(args)
    problems = {image: _image_problem(image) for image in args.images}
    for image, reason in problems.items():
        if reason:
            print(f"fer: error: {image}: {reason}", file=sys.stderr)
    if all(problems.values()):  # nothing to classify: say so without loading a model
        emit({"model": None, "model_version": None,
              "results": [{"image": image, "error": reason} for image, reason in problems.items()]})
        return 1
    clf = registry.load_classifier(_offline_model_uri(s, args.model), s)
    detector = detect.preset(args.face_detector)
    for part in getattr(detector, "detectors", (detector,)):  # Haar scans down to it; BlazeFace's are filtered
        if args.min_size and isinstance(part, detect.HaarDetector):
            part.min_size = args.min_size
    results, failed = [], 0
    for image in args.images:
        gray = None if problems[image] else cv2.imread(image, cv2.IMREAD_GRAYSCALE)
        if gray is None:
            failed += 1
            reason = problems[image] or "not an image (cannot decode)"
            if not problems[image]:
                print(f"fer: error: {image}: {reason}", file=sys.stderr)
            results.append({"image": image, "error": reason})
            continue
        h, w = gray.shape
        boxes = np.array([[0, 0, w, h]], np.int32) if args.no_detect else detector.detect(cv2.imread(image))
        boxes = boxes[np.minimum(boxes[:, 2], boxes[:, 3]) >= args.min_size]
        margin = 0.0 if args.no_detect else s.data.margin  # a whole image is a crop already
        probs = clf.predict(crop.crop_faces(gray, boxes, margin)) if len(boxes) else np.zeros((0, 7))
        faces = [{"box": {"x": int(b[0]), "y": int(b[1]), "w": int(b[2]), "h": int(b[3])},
                  "emotion": top_k(p, 1)[0][0],
                  "probabilities": {e: round(float(v), 6) for e, v in zip(EMOTIONS, p, strict=True)}}
                 for b, p in zip(boxes, probs, strict=True)]
        results.append({"image": image, "width": w, "height": h, "faces": faces})
    emit({"model": clf.source, "model_version": clf.version, "results": results})
    return 1 if failed else 0


def _image_problem(image: str) -> str:
    """Why an image cannot be read, from its path and header alone ("" when it looks readable)."""
    import cv2

    if not Path(image).exists():
        return "file not found"
    if not Path(image).is_file() or not cv2.haveImageReader(image):
        return "not an image (cannot decode)"
    return ""


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="faces, boxes and emotion probabilities of images, as JSON")
    _common(p)
    p.add_argument("images", nargs="+")
    p.add_argument("--model", help="model URI or .keras file (default: the analysis alias if set, else the champion)")
    p.add_argument("--face-detector", "--haar", dest="face_detector", default=FACE_DETECTORS[0],
                   choices=FACE_DETECTORS, help="still+blazeface_views (default: Haar's finer scan with profiles, "
                   "then MediaPipe's BlazeFace where Haar found nothing: on the whole image, on it framed by a "
                   "border, on 2 x 2 tiles), still, video (the worker's Haar), blazeface (whole image only), "
                   "blazeface_views, still+blazeface, blazeface+still")
    p.add_argument("--min-size", type=int, default=0, help="drop faces smaller than this many pixels a side")
    p.add_argument("--no-detect", action="store_true", help="treat each whole image as one face crop")
    p.set_defaults(func=cmd_predict)



# --- fer train ------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from fer_cli.output import emit
    from fer_core.data import dataset

    s = _settings(args)
    dataset.check_inputs(s)  # before TensorFlow is imported
    from fer_core import tracking

    ds = dataset.build(s)
    run = tracking.train_and_log(s, ds, args.run_dir, run_name=args.name)
    tr = run.train
    emit({"run_id": run.run_id, "run_name": run.extra["run_name"], "model_uri": run.model_uri,
          "dataset": ds.version, "model": s.train.model, "params": tr.params, "epochs_run": tr.epochs_run,
          "train_seconds": round(tr.seconds, 1), "images_seen": tr.extra.get("images_seen", 0),
          "budget_spent": tr.extra.get("budget_spent", False),
          "best_val_accuracy": max(tr.history.get("val_categorical_accuracy", []), default=None),
          "metrics": {n: {k: r[k] for k in ("n", "accuracy", "macro_f1", "loss")} for n, r in run.results.items()},
          "speed": run.speed})
    return 0


def add_train(sub) -> None:
    p = sub.add_parser("train", help="build the dataset, train and evaluate one model, log it to MLflow "
                                     "(an experiment: nothing is registered or promoted); JSON on stdout")
    _common(p)
    p.add_argument("--name", help="MLflow run name (default: model-dataset-time)")
    p.add_argument("--run-dir", help="checkpoint folder; a re-run with the same folder resumes")
    p.set_defaults(func=cmd_train)


# --- fer pipeline -----------------------------------------------------------------------------------

def _prefect_env(settings) -> None:
    """Embedded default: Prefect keeps its state under <home>/prefect unless the user chose otherwise."""
    import os

    os.environ.setdefault("PREFECT_HOME", str(settings.home_path / "prefect"))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def cmd_pipeline_run(args) -> int:
    from fer_cli.output import emit
    from fer_core.data import dataset

    s = _settings(args)
    dataset.check_inputs(s)  # a missing input is a clear error before Prefect starts
    _prefect_env(s)
    from fer_core.config import load_settings

    overrides = list(args.set or [])
    if args.alias:  # gate against, and promote to, this alias instead of the champion (--set may still say more)
        overrides = [f'registry.champion_alias="{args.alias}"', f'registry.challenger_alias="{args.alias}-challenger"',
                     f'gate.compare_first_with="{s.registry.champion_alias}"', *overrides]
        s = load_settings(args.config, overrides)
    with _prefect_api("flows.retrain"):
        from flows.retrain import retrain

        result = retrain.with_options(task_runner=_task_runner(s))(args.config, overrides)
    emit(pipeline_summary(result))
    return 0


def _prefect_api(flow_module: str):
    """The Prefect API for a flow run (flows.api): the flow's module (TensorFlow, MLflow and Prefect, some
    10 s of imports) loads while a temporary server starts."""
    from flows.api import prefect_api

    return prefect_api(warm=(flow_module, "mlflow"))


def _task_runner(settings):
    """Parallel tasks on the Dask cluster at dask.address (prefect-dask), else one at a time here."""
    if settings.dask.address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.dask.address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=1)


def cmd_pipeline_sweep(args) -> int:
    from fer_cli.output import emit

    s = _settings(args)
    _prefect_env(s)
    from flows.sweep import read_grid

    read_grid(args.grid)  # a bad grid is a clear error before any server starts
    with _prefect_api("flows.sweep"):
        from flows.sweep import sweep

        emit(sweep.with_options(task_runner=_task_runner(s))(args.grid, args.config, args.set))
    return 0


def pipeline_summary(result: dict) -> dict:
    """The flow result without the bulky per-class tables."""
    out = {"status": result["status"], "reason": result.get("reason", "")}
    if "dataset" in result:
        out.update({"dataset": result["dataset"]["version"], "dataset_reused": result["dataset"].get("reused", False),
                    "run_id": result["train"]["run_id"], "train_reused": result["train"]["reused"],
                    "version": result["version"]["version"], "version_reused": result["version"].get("reused", False),
                    "decision": result["decision"]["verdict"], "reasons": result["decision"]["reasons"],
                    "champion_before": result["decision"]["champion_version"],
                    "metrics": {n: {k: r[k] for k in ("n", "accuracy", "macro_f1", "loss")}
                                for n, r in result["decision"]["candidate"].items()},
                    "champion_metrics": {n: {k: r[k] for k in ("n", "accuracy", "macro_f1", "loss")}
                                         for n, r in result["decision"]["champion"].items()},
                    "through_detector": result["train"].get("through_detector", {}),
                    "aliases": result["aliases"]})
    return out


def cmd_pipeline_serve(args) -> int:
    s = _settings(args)
    _prefect_env(s)
    from flows.deployments import serve

    print(f"serving deployment {s.pipeline.deployment_name} on cron '{s.pipeline.cron}' ({s.pipeline.timezone}); "
          "Ctrl-C stops", file=sys.stderr)
    serve(args.config, args.set)
    return 0


def add_pipeline(sub) -> None:
    pipeline = sub.add_parser("pipeline", help="the retraining flow").add_subparsers(dest="pipeline_cmd",
                                                                                     required=True)
    sw = pipeline.add_parser("sweep", help="train a grid of configurations in parallel, gate each, promote the best")
    _common(sw)
    sw.add_argument("grid", help="TOML file with a [grid] table: \"section.key\" = [values]")
    sw.set_defaults(func=cmd_pipeline_sweep)
    p = pipeline.add_parser("run", help="run the retraining flow once; print its summary as JSON")
    _common(p)
    p.add_argument("--alias", help="gate against and promote to this alias instead of the champion, e.g. "
                                   "analysis: the model fer predict and fer analyze prefer")
    p.set_defaults(func=cmd_pipeline_run)
    p = pipeline.add_parser("serve", help="serve the scheduled retraining deployment (cron from config)")
    _common(p)
    p.set_defaults(func=cmd_pipeline_serve)


# --- fer models -------------------------------------------------------------------------------------

def cmd_models_list(args) -> int:
    from fer_cli.output import emit, say
    from fer_core import registry

    s = _settings(args)
    versions = registry.list_versions(s)
    if args.json:
        emit([v.as_json() for v in versions])
        return 0
    if not versions:
        say(f"no versions of {s.registry.model_name} at {s.tracking_uri}")
        return 0
    for line in version_table(versions):
        say(line)
    return 0


# `fer models list`'s figures: (heading, metric). Accuracy unless named; "-" where a version lacks one.
LISTED_METRICS = (("test", "test_accuracy"), ("PublicTest", "fer2013_publictest_accuracy"),
                  ("F1", "fer2013_publictest_macro_f1"), ("ExpW", "expw_test_accuracy"),
                  ("end-to-end", "expw_test_e2e_accuracy"), ("ms/face", "single_face_ms"))


def version_table(versions) -> list[str]:
    """One line per version: its aliases, the gate's decision, its headline figures and its dataset."""
    head = f"{'version':>7}  {'aliases':<20} {'decision':<9}" + "".join(f" {h:>10}" for h, _ in LISTED_METRICS)
    lines = [head + "  dataset"]
    for v in versions:
        figures = "".join(f" {v.metrics[k]:>10.4f}" if k in v.metrics else f" {'-':>10}" for _, k in LISTED_METRICS)
        lines.append(f"{v.version:>7}  {','.join(v.aliases) or '-':<20} {v.tags.get('gate.decision', '-'):<9}"
                     f"{figures}  {v.tags.get('dataset.version', '-')}")
    return lines


def cmd_models_promote(args) -> int:
    from fer_cli.output import emit
    from fer_core import promotion

    emit(promotion.promote_manual(_settings(args), args.version))
    return 0


def cmd_models_rollback(args) -> int:
    from fer_cli.output import emit
    from fer_core import promotion

    emit(promotion.rollback(_settings(args)))
    return 0


def add_models(sub) -> None:
    models = sub.add_parser("models", help="the model registry and its aliases").add_subparsers(dest="models_cmd",
                                                                                                required=True)
    p = models.add_parser("list", help="versions, aliases and key metrics")
    _common(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models_list)
    p = models.add_parser("promote", help="make VERSION the champion (manual override, recorded)")
    _common(p)
    p.add_argument("version")
    p.set_defaults(func=cmd_models_promote)
    p = models.add_parser("rollback", help="champion back to the previous champion (recorded)")
    _common(p)
    p.set_defaults(func=cmd_models_rollback)
    p = models.add_parser("bootstrap", help="register the shipped baseline as champion of an empty registry")
    _common(p)
    p.add_argument("--force", action="store_true", help="register it even when there is a champion")
    p.set_defaults(func=cmd_models_bootstrap)



# --- fer serve / analyze / bench --------------------------------------------------------------------

def cmd_serve(args) -> int:
    from fer_cli.output import emit
    from serving.worker import Worker, WorkerOptions

    s = _settings(args)
    http = args.http or s.serve.http
    _check_source(args.source)
    if http:
        from serving.http import check_bindable

        check_bindable(http)
    opts = WorkerOptions(source=args.source, model_uri=_model_uri(s, args.model), http=http,
                         display=args.display, record=args.record or "", timeline=args.timeline or "",
                         max_frames=args.max_frames, detector=args.detector, hold=not args.no_hold)
    emit(Worker(s, opts).run())
    return 0


def _check_source(source: str) -> None:
    """A video file that is missing or not a video is a clear error before any model is fetched (a live
    source is not: the worker waits for it and reconnects)."""
    from serving import sources

    if not sources.is_live(source):
        sources.FileSource(source).close()


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="the realtime worker")
    _common(p)
    p.add_argument("--source", required=True, help="camera index (0), video file, or rtsp:// / http:// URL")
    p.add_argument("--http", help="HOST:PORT for metrics, health and the preview page (default 127.0.0.1 only)")
    p.add_argument("--display", action="store_true", help="show an annotated window")
    p.add_argument("--record", help="write the annotated video to this file")
    p.add_argument("--timeline", help="write the emotion timeline CSV here (local or gs://)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames")
    p.add_argument("--model", help="model URI or .keras file (default: champion)")
    p.add_argument("--detector", default="track", choices=FRAME_DETECTORS,
                   help="track (default): Haar re-scans around known faces; full: Haar scans every frame; "
                        "blazeface: the learned detector on every frame (see README)")
    p.add_argument("--no-hold", action="store_true", help="track mode: scan and classify steady faces on every frame too")
    p.set_defaults(func=cmd_serve)


def cmd_analyze(args) -> int:
    """One video file: its outputs in --out, in this process. Several, a folder or a gs:// prefix: one task
    per video on a Dask cluster (dask.address) or local worker processes, outputs in --out/<stem>/."""
    from fer_cli.output import emit

    s = _settings(args)
    if len(args.videos) == 1 and not Path(args.videos[0]).is_dir() and not args.videos[0].startswith("gs://"):
        from serving.analyze import analyze

        _check_source(args.videos[0])
        emit(analyze(s, args.videos[0], args.out, _offline_model_uri(s, args.model), args.detector))
        return 0
    from serving.batch import analyze_many

    result = analyze_many(s, args.videos, args.out, _offline_model_uri(s, args.model), args.detector)
    emit(result)
    if result["failed"]:  # the others are done and in the index; the exit status says not all were
        from fer_cli.main import CommandError

        raise CommandError(f"{len(result['failed'])} of {result['videos']} videos failed; see {result['index']}")
    return 0


def add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="offline analysis of videos: timelines, summaries, plots, annotated videos")
    _common(p)
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, folders of videos, or gs:// prefixes")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", help="model URI or .keras file (default: the analysis alias if set, else the champion)")
    p.add_argument("--detector", default="blazeface", choices=FRAME_DETECTORS,
                   help="blazeface (default): the learned detector on every frame; full: Haar on every frame; "
                        "track: the worker's realtime Haar")
    p.set_defaults(func=cmd_analyze)


def cmd_bench_realtime(args) -> int:
    from fer_cli.output import emit

    s = _settings(args)
    _check_source(args.video)
    from serving.bench import realtime  # imports TensorFlow: after the check

    emit(realtime(s, args.video, _model_uri(s, args.model), args.detector, args.naive_frames,
                  scan_every=args.scan_every, hold=not args.no_hold))
    return 0


def add_bench(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_cmd", required=True)
    p = bench.add_parser("realtime", help="the worker on a video: fps, latency, recall vs full Haar, naive loop")
    _common(p)
    p.add_argument("video")
    p.add_argument("--model", help="model URI or .keras file (default: champion)")
    p.add_argument("--detector", default="track", choices=FRAME_DETECTORS)
    p.add_argument("--scan-every", type=int, default=48, help="track mode: a full Haar scan every N frames")
    p.add_argument("--no-hold", action="store_true", help="track mode: scan and classify steady faces on every frame too")
    p.add_argument("--naive-frames", type=int, default=40, help="frames for the seed's naive loop (0 skips it)")
    p.set_defaults(func=cmd_bench_realtime)



# --- fer demo / fer models bootstrap ----------------------------------------------------------------

def cmd_demo(args) -> int:
    from fer_cli.demo import run_demo
    from fer_cli.output import emit

    s = _settings(args)
    _prefect_env(s)
    with _prefect_api("flows.retrain"):
        emit(run_demo(s))
    return 0


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="zero-configuration end-to-end run on embedded defaults")
    _common(p)
    p.set_defaults(func=cmd_demo)


def cmd_models_bootstrap(args) -> int:
    from fer_cli.output import emit
    from fer_core import baseline

    emit(baseline.bootstrap(_settings(args), force=args.force))
    return 0


ALL = [add_data, add_evaluate, add_predict, add_train, add_pipeline, add_models, add_serve, add_analyze, add_bench, add_demo]
