"""The realtime worker on the real face video: outputs, metrics, health, token, sources, reload, SIGTERM."""

import csv
import json
import os
import signal
import subprocess
import threading
import time

import httpx
import mlflow
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.cut_video import write_cut_video
from fer_core import promotion, registry
from fer_core.config import load_settings
from fer_core.labels import EMOTIONS
from serving import sources
from serving.http import TokenRequired, WorkerHTTP
from serving.metrics import SourceStats
from serving.worker import Worker, WorkerOptions
from tests import helpers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def video():
    helpers.require_shared(helpers.VIDEO)
    return str(helpers.VIDEO)


def _rows(path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _settings(tmp_path, *extra):
    return load_settings(None, [f'home="{tmp_path / "home"}"', *extra], environ={})


def test_worker_over_real_video_with_local_model(video, tiny_model_path, tmp_path):
    port = helpers.free_port()
    opts = WorkerOptions(source=video, model_uri=str(tiny_model_path), http=f"127.0.0.1:{port}",
                         timeline=str(tmp_path / "t.csv"), record=str(tmp_path / "a.mp4"))
    worker = Worker(_settings(tmp_path), opts)
    scraped = {}

    def scrape():
        helpers.wait_for_port(port, timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        while worker.frames < 60 and not worker.stopped:
            time.sleep(0.01)
        scraped["ready"] = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        scraped["metrics"] = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        scraped["status"] = httpx.get(f"http://127.0.0.1:{port}/api/status").json()

    t = threading.Thread(target=scrape)
    t.start()
    worker.opt.max_frames = 0
    # slow the loop a little so the scraper sees it mid-run
    worker.results_hook = lambda r: time.sleep(0.01)
    summary = worker.run()
    t.join(30)
    assert summary["frames"] == 115 and summary["faces"] >= 100 and summary["corrupt_frames"] == 0
    assert scraped["ready"]["ready"] is True
    families = {f.name: f for f in text_string_to_metric_families(scraped["metrics"])}
    assert families["fer_frames"].samples[0].value >= 60
    stages = {s.labels["stage"] for s in families["fer_stage_latency_ms"].samples if "stage" in s.labels}
    assert stages == {"decode", "detect", "classify", "total"}
    assert sum(s.value for s in families["fer_emotions"].samples if s.name == "fer_emotions_total") > 0
    info = next(f for name, f in families.items() if name.startswith("fer_model") and "reload" not in name)
    assert info.samples[0].labels["version"] == "model.keras"
    assert scraped["status"]["model_version"] == "model.keras" and sum(scraped["status"]["last_minute"].values()) > 0
    rows = _rows(tmp_path / "t.csv")
    assert len(rows) == summary["faces"] and {r["emotion"] for r in rows} <= set(EMOTIONS)
    seconds = _rows(tmp_path / "t.seconds.csv")
    assert [int(r["second"]) for r in seconds] == [0, 1, 2, 3, 4]  # 115 frames at 24.7 fps
    assert sum(int(r["frames"]) for r in seconds) == 115
    assert (tmp_path / "a.mp4").stat().st_size > 10_000


class _Stub:  # the HTTP layer only reads these attributes
    metrics = __import__("serving.metrics", fromlist=["WorkerMetrics"]).WorkerMetrics()
    ready, source_open, stopped = False, False, False
    model = type("M", (), {"ready": False})()

    def status(self):
        return {"fps": 0.0}


def test_readyz_before_model_and_token_beyond_loopback(tmp_path):
    with pytest.raises(TokenRequired):
        WorkerHTTP("0.0.0.0:0", _Stub())
    port = helpers.free_port()
    http = WorkerHTTP(f"0.0.0.0:{port}", _Stub(), token="s3cret").start()
    try:
        base = f"http://127.0.0.1:{port}"
        helpers.wait_for_port(port)
        assert httpx.get(f"{base}/healthz").status_code == 200 and httpx.get(f"{base}/").status_code == 200
        assert httpx.get(f"{base}/metrics").status_code == 401  # per-emotion counts of people: not open
        assert httpx.get(f"{base}/readyz").status_code == 401
        assert httpx.get(f"{base}/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = httpx.get(f"{base}/readyz", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 503 and r.json() == {"ready": False, "model_loaded": False, "source_open": False}
        assert httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{base}/api/status?token=s3cret").status_code == 401  # no query token over plain HTTP
        assert r.headers["cache-control"] == "no-store"
    finally:
        http.stop()
    http = WorkerHTTP(f"0.0.0.0:{port}", _Stub(), token="s3cret", open_metrics=True).start()
    try:
        helpers.wait_for_port(port)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 200
    finally:
        http.stop()


def test_query_token_over_tls_and_a_connection_limit(tmp_path):
    openssl = __import__("shutil").which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = helpers.free_port()
    http = WorkerHTTP(f"0.0.0.0:{port}", _Stub(), token="s3cret", tls_cert=str(cert), tls_key=str(key)).start()
    try:
        helpers.wait_for_port(port)
        base = f"https://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/status?token=s3cret", verify=False).status_code == 200
        assert httpx.get(f"{base}/api/status?token=nope", verify=False).status_code == 401
    finally:
        http.stop()
    from serving.http import MAX_CONNECTIONS

    stub = _Stub()
    stub.preview = type("P", (), {"next_jpeg": lambda self, after, timeout: (after + 1, b"jpeg")})()
    port = helpers.free_port()
    http = WorkerHTTP(f"127.0.0.1:{port}", stub).start()
    try:
        helpers.wait_for_port(port)
        streams = [httpx.Client(timeout=5) for _ in range(MAX_CONNECTIONS - 1)]  # the limit counts the new one
        contexts = [c.stream("GET", f"http://127.0.0.1:{port}/stream.mjpg") for c in streams]
        opened = [ctx.__enter__() for ctx in contexts]  # kept referenced: each holds its connection open
        assert all(r.status_code == 200 for r in opened)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 503  # the limit holds
        for ctx, c in zip(contexts, streams, strict=True):
            ctx.__exit__(None, None, None)
            c.close()
        deadline = time.time() + 10
        while time.time() < deadline and httpx.get(f"http://127.0.0.1:{port}/healthz").status_code != 200:
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stub.stopped = True
        http.stop()


def test_sources_end_error_and_refuse(tmp_path):
    with pytest.raises(sources.SourceError):
        sources.open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(sources.SourceError):
        sources.open_source(str(tmp_path / "bad.mp4"))
    stats = SourceStats()
    live = sources.LiveSource(f"http://127.0.0.1:{helpers.free_port()}/none.mjpg", stats, backoff_s=0.05,
                              open_timeout_s=0.5)
    time.sleep(0.6)
    live.close()
    assert not live.opened and stats.reconnects >= 2  # refused: retried with backoff, no crash


def test_corrupt_frames_are_skipped_and_counted(video, tiny_model_path, tmp_path):
    clip = helpers.write_mjpeg_with_corrupt_frames(video, tmp_path / "clip.avi", 30, corrupt={5, 17})
    opts = WorkerOptions(source=str(clip), model_uri=str(tiny_model_path), timeline=str(tmp_path / "t.csv"))
    summary = Worker(_settings(tmp_path), opts).run()
    assert summary["frames"] == 28 and summary["corrupt_frames"] == 2
    seen = {int(r["frame"]) for r in _rows(tmp_path / "t.csv")}
    assert seen and not seen & {5, 17} and max(seen) >= 20  # skipped, and the run went on past them


def test_sigterm_flushes_the_timeline(video, tiny_model_path, tmp_path):
    out = tmp_path / "tl.csv"
    port = helpers.free_port()
    cmd = helpers.fer_cmd("serve", "--source", video, "--model", str(tiny_model_path), "--timeline", str(out),
                          "--http", f"127.0.0.1:{port}", "--set", f"home={tmp_path / 'home'}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    helpers.wait_for_port(port, proc, timeout=120)
    deadline = time.time() + 60
    while time.time() < deadline:  # stop it mid-run, once frames flow
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=1).json()["frames"] >= 5:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(30)
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)
    assert 5 <= summary["frames"] < 115  # stopped before the end of the video
    assert out.exists() and (tmp_path / "tl.seconds.csv").exists()
    assert len(_rows(out)) == summary["faces"]


def test_analyze_writes_every_output(video, tiny_model_path, tmp_path):
    """Every output, and the faces of its default detector, BlazeFace: the video shows one woman in every frame,
    which it finds in each; Haar on every frame also boxes out-of-focus street lights (136 boxes in 115 frames)."""
    out = tmp_path / "analysis"
    proc = subprocess.run(helpers.fer_cmd("analyze", video, "--out", str(out), "--model", str(tiny_model_path),
                                          "--set", f"home={tmp_path / 'home'}"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    for key in ("timeline", "per_second", "summary", "plot", "video"):
        assert os.path.getsize(summary["outputs"][key]) > 100, key
    assert summary["frames"] == 115 and summary["seconds"] == 5 and abs(summary["duration_s"] - 115 / 24.7) < 0.2
    assert summary["detector"] == "blazeface"
    rows = _rows(summary["outputs"]["timeline"])
    assert summary["faces"] == len(rows) == 115 and len({r["frame"] for r in rows}) == 115
    assert abs(sum(summary["mean_probability"].values()) - 1) < 1e-3
    # the woman is one face, followed from the first frame to the last, in the timeline and in the summary
    assert {r["face"] for r in rows} == {"0"} and summary["face_ids"] == 1
    (followed,) = summary["faces_followed"]
    assert followed["face"] == 0 and followed["frames"] == 115 and followed["first_s"] == 0.0
    assert abs(followed["last_s"] - 114 / 24.7) < 0.1 and followed["mean_probability"] == summary["mean_probability"]


def test_worker_counts_cuts_and_new_faces(video, tiny_model_path, tmp_path):
    """`fer_cuts_total` and `fer_new_faces_total`, in the worker's default `track` mode: none of the first on the
    real video, where the woman is one face from start to end; on the same video cut every 20 frames between two
    framings, five cuts, and her face new after each."""
    counted = {}
    cut_video = write_cut_video(video, tmp_path / "cuts.avi", every=20, shift=-220)["out"]
    for name, source in (("plain", video), ("cut", cut_video)):
        worker = Worker(_settings(tmp_path), WorkerOptions(source=source, model_uri=str(tiny_model_path),
                                                           detector="track"))
        summary = worker.run()
        assert summary["frames"] == 115
        counted[name] = {m: worker.metrics.registry.get_sample_value(f"fer_{m}_total") for m in ("cuts", "new_faces")}
    assert counted["plain"]["cuts"] == 0 and 1 <= counted["plain"]["new_faces"] <= 8  # her, and a few small Haar boxes
    assert counted["cut"]["cuts"] == 5 and counted["cut"]["new_faces"] >= 6


def test_analyze_gives_every_face_a_new_id_after_a_cut(tiny_model_path, tmp_path):
    """The real video reframed (moved 30 px) every 30 frames: the woman's box still overlaps its place of the shot
    before, but a cut is a new shot, so each shot's face is a new face (ids follow a face, never across a cut)."""
    helpers.require_shared(helpers.VIDEO)
    video = write_cut_video(helpers.VIDEO, tmp_path / "reframed.avi", every=30, shift=-30)
    out = tmp_path / "analysis"
    proc = subprocess.run(helpers.fer_cmd("analyze", video["out"], "--out", str(out), "--model", str(tiny_model_path),
                                          "--set", f"home={tmp_path / 'home'}"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["frames"] == 115 and summary["faces"] == 115 and summary["face_ids"] == 4
    shots = sorted(summary["faces_followed"], key=lambda f: f["first_s"])
    assert [f["frames"] for f in shots] == [30, 30, 30, 25]
    rows = _rows(summary["outputs"]["timeline"])
    faces = [r["face"] for r in rows]  # one row a frame
    assert [i for i in range(1, 115) if faces[i] != faces[i - 1]] == [30, 60, 90]


def test_analyze_reports_undecodable_frames_and_refuses_a_video_with_none(tiny_model_path, tmp_path):
    """A video damaged in the middle is analysed from every frame that decodes, before and after the damage,
    and says how many it skipped; `fer bench realtime` compares its reference on the same frames; a file
    FFmpeg opens but cannot decode a single frame of is a clear error, with no outputs."""
    from fer_cli.demo import write_clip

    clip = tmp_path / "clip.mp4"
    write_clip(clip, seconds=2.0)  # 48 frames of one face
    data = bytearray(clip.read_bytes())
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    assert 0 < mdat < moov  # frames first, their index at the end
    start, end = mdat + (moov - mdat) * 3 // 10, mdat + (moov - mdat) // 2
    data[start:end] = bytes(end - start)  # some frames' data zeroed, the index intact
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    common = ("--model", str(tiny_model_path), "--set", f"home={tmp_path / 'home'}")
    proc = subprocess.run(helpers.fer_cmd("analyze", str(damaged), "--out", str(tmp_path / "a"), *common),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    decoded, corrupt = summary["frames"], summary["corrupt_frames"]
    assert decoded > 0 and corrupt > 0 and decoded + corrupt == 48
    assert f"{corrupt} of 48 frames could not be decoded" in proc.stderr
    rows = _rows(summary["outputs"]["timeline"])
    assert len(rows) == summary["faces"] and int(rows[-1]["frame"]) == 47  # on past the damage, to the end
    proc = subprocess.run(helpers.fer_cmd("bench", "realtime", str(damaged), "--naive-frames", "0",
                                          "--detector", "full", *common), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bench = json.loads(proc.stdout)
    # the reference reads the frames the worker saw (it stopped at the damage before): one face each, and the
    # worker's full scan is the reference's, frame for frame
    assert bench["frames"] == decoded and bench["reference_faces"] >= 0.9 * decoded
    assert bench["kept"] == 1.0 and bench["extra"] == 0

    not_video = tmp_path / "notes.jpg"  # FFmpeg opens it (as a one-image sequence) and decodes nothing
    not_video.write_text("meeting notes, not a picture\n")
    proc = subprocess.run(helpers.fer_cmd("analyze", str(not_video), "--out", str(tmp_path / "b"), *common),
                          capture_output=True, text=True)
    assert proc.returncode == 1 and f"fer: error: no frame of {not_video} could be decoded" in proc.stderr, \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()
    assert not [p.name for p in (tmp_path / "b").iterdir() if p.stat().st_size > 0]
    proc = subprocess.run(helpers.fer_cmd("bench", "realtime", str(not_video), "--naive-frames", "0", *common),
                          capture_output=True, text=True)
    assert proc.returncode == 1 and f"fer: error: no frame of {not_video} could be decoded" in proc.stderr, \
        proc.stderr[-2000:]


def test_bench_realtime_reports_speed_and_faces_kept(video, tiny_model_path, tmp_path):
    """`fer bench realtime` (track mode, steady faces held): its JSON, the reference faces kept, and the boxes
    the reference lacks on a frame (held across its one-frame flickers) stay few."""
    proc = subprocess.run(helpers.fer_cmd("bench", "realtime", video, "--model", str(tiny_model_path),
                                          "--naive-frames", "3", "--set", f"home={tmp_path / 'home'}"),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["detector"] == "track" and out["hold"] is True and out["frames"] == 115
    assert out["scans"]["cut"] == 0 and out["scans"]["periodic"] >= 2  # the real video has no cut
    assert out["reference_faces"] > 100 and out["kept"] >= 0.95 and out["extra"] <= 0.05 * out["reference_faces"]
    assert out["fps"] > 0 and 0 < out["p50_ms"] <= out["p95_ms"] and out["naive_fps"] > 0
    assert f"{os.cpu_count()} cores" in out["hardware"]  # which machine the figures belong to
    stages = out["stage_mean_ms"]  # a part of each frame's time, so together under the frame's mean
    assert stages["detect"] > 0 and stages["classify"] > 0 and sum(stages.values()) < 1000 / out["fps"]
    width = out["face_width_px"]  # the video's faces are close-ups (131 pixels at the median, 2026-12-04)
    assert 30 <= width["min"] <= width["p10"] <= width["median"] <= width["p90"] <= 336 and width["median"] > 100


@pytest.mark.slow
def test_hot_reload_from_real_mlflow_server(video, tiny_model_path, mlflow_server, tmp_path):
    s = _settings(tmp_path, f'mlflow.tracking_uri="{mlflow_server["uri"]}"', 'registry.model_name="fer-reload"',
                  "serve.poll_s=0.2")
    uris = helpers.register_copies(s, tiny_model_path, 2)
    promotion.promote_manual(s, uris[0])
    worker = Worker(s, WorkerOptions(source=video, model_uri="models:/fer-reload@champion"))
    seen = []

    def hook(result):
        seen.append(worker.model.version)
        if len(seen) == 20:
            promotion.promote_manual(s, uris[1])  # the alias moves mid-run
        elif len(seen) == 21:  # hold the stream until the poller has swapped: on a busy CPU the new version's
            deadline = time.time() + 180  # download and TFLite conversion outlast the 95 frames left
            while worker.model.version != uris[1] and time.time() < deadline:
                time.sleep(0.05)

    worker.results_hook = hook
    summary = worker.run()
    assert summary["frames"] == 115 and seen[0] == uris[0] and seen[-1] == uris[1]
    # a broken new version keeps the old one serving
    with mlflow.start_run() as run:
        mlflow.log_text("not a model", "model/readme.txt")
    broken = registry.register(s, f"runs:/{run.info.run_id}/model", {}, run_id=run.info.run_id).version
    worker2 = Worker(s, WorkerOptions(source=video, model_uri="models:/fer-reload@champion"))
    versions = []

    def hook2(result):
        versions.append(worker2.model.version)
        time.sleep(0.03)
        if len(versions) == 10:
            registry.set_alias(s, "champion", broken)

    worker2.results_hook = hook2
    summary2 = worker2.run()
    assert summary2["frames"] == 115 and set(versions) == {uris[1]} and summary2["reload_failures"] >= 1


@pytest.mark.slow
@pytest.mark.integration
def test_worker_waits_for_a_champion_and_never_registers(tiny_model_path, mlflow_server, tmp_path):
    """`fer serve` on a shared registry without a champion: up, not ready, registers nothing; serves the
    champion as soon as one is promoted."""
    from fer_cli.demo import write_clip

    clip = write_clip(tmp_path / "clip.mp4", seconds=1.0)
    port = helpers.free_port()
    uri, name = mlflow_server["uri"], "fer-waiting"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FER_")}, "FER_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(helpers.fer_cmd("serve", "--source", str(clip), "--http", f"127.0.0.1:{port}",
                                            "--set", f"mlflow.tracking_uri={uri}", "--set", f"registry.model_name={name}",
                                            "--set", "serve.poll_s=0.5"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        helpers.wait_for_port(port, proc, timeout=120)
        time.sleep(3)  # several polls of an empty registry
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["model_loaded"] is False
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        client = helpers.mlflow_client(uri)
        assert not client.search_registered_models(f"name = '{name}'"), "the worker registered a model"
        s = _settings(tmp_path, f'mlflow.tracking_uri="{uri}"', f'registry.model_name="{name}"')
        (version,) = helpers.register_copies(s, tiny_model_path, 1)
        promotion.promote_manual(s, version)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["model_version"] == version and summary["frames"] == 24
    assert "not ready: no model loaded" in err
