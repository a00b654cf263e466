"""A live MJPEG-over-HTTP stream on loopback, looping the frames of a real video: the kind of source an IP
camera gives. Used by bench/soak.py and by the worker's fault tests, which pause it (a stalled stream),
stop it (a lost stream) and start it again on the same port.

    python bench/mjpeg_stream.py VIDEO --port 8090 --fps 25      # then: fer serve --source http://127.0.0.1:8090/
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from pathlib import Path

import cv2


def read_jpegs(video: str | Path, limit: int = 0, quality: int = 85) -> list[bytes]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while not limit or len(out) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    cap.release()
    if not out:
        raise ValueError(f"no frames in {video}")
    return out


class MjpegStream:
    """Serves `multipart/x-mixed-replace` JPEG frames at `fps` (0: as fast as the client reads)."""

    def __init__(self, jpegs: list[bytes], port: int = 0, fps: float = 25.0):
        self.jpegs, self.fps, self.port = jpegs, fps, port
        self.sent = 0
        self._paused = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def _handler(self):
        stream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i, next_at = 0, time.monotonic()
                try:
                    while stream._server is not None:
                        if stream._paused.is_set():
                            time.sleep(0.05)
                            continue
                        jpeg = stream.jpegs[i % len(stream.jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        stream.sent += 1
                        i += 1
                        if stream.fps > 0:
                            next_at += 1 / stream.fps
                            time.sleep(max(0.0, next_at - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError, OSError):
                    return

        return Handler

    def start(self) -> MjpegStream:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        server.daemon_threads = True
        server.allow_reuse_address = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the stream and its connections: the worker sees a lost stream."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def pause(self, paused: bool = True) -> None:
        """Keep connections open but send nothing: a stalled stream."""
        if paused:
            self._paused.set()
        else:
            self._paused.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--fps", type=float, default=25.0)
    a = ap.parse_args()
    s = MjpegStream(read_jpegs(a.video), a.port, a.fps).start()
    print(f"serving {a.video} at {s.url} ({a.fps or 'max'} fps); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        s.stop()


if __name__ == "__main__":
    main()
