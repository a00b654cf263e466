"""Fast emotion classification of 48x48 faces with the TFLite interpreter (XNNPACK).

On 2 CPU cores the runtime matters more than the model: the same network that does ~550 faces/s
through `model.predict` does ~3,000/s here. The Keras model stays the source of truth; the TFLite
form is derived from it (and cached beside it) so both always agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from fer_core.data.table import FACE
from fer_core.labels import EMOTIONS, NUM_CLASSES

log = logging.getLogger(__name__)
BUCKETS = (1, 2, 4, 8)  # fixed batch sizes; a batch runs in the smallest bucket that holds it, a longer one in
# chunks of 8. Larger batches ran slower: 16 network inputs fit the cache, and a flip-averaged model sends each
# face and its mirror, so 8 faces in are 16 through each network (docs/BENCHMARKS.md, "Flip averaging as one batch")


QUANTIZE = ("float", "float16", "dynamic", "int8")


def keras_to_tflite(model, quantize: str = "float", representative: np.ndarray | None = None) -> bytes:
    """The model as TFLite. `quantize`: float (as trained), float16 (half-size weights, widened again when the
    runtime has no half-precision arithmetic), dynamic (int8 weights) or int8 (weights and activations;
    `representative` training faces set the activations' ranges)."""
    import tensorflow as tf

    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    if quantize == "int8" and (representative is None or not len(representative)):
        raise ValueError("int8 quantization needs representative faces (uint8, N x 48 x 48)")
    # The converter prints a summary of every captured tensor (over a hundred lines) to stdout, which belongs
    # to our JSON output: it goes to the debug log instead.
    from fer_core import models

    model = models.with_batched_flip(model)  # a flip wrapper saved by earlier code: one pass, the same answers
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize != "float":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            converter.representative_dataset = lambda: ([face[None]] for face in representative)
        content = converter.convert()
    log.debug("TFLite export: %s", summary.getvalue())
    return content


def file_digest(path: str | Path) -> str:
    """A file's content hash (16 hex digits)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# Bumped whenever `keras_to_tflite` makes a different graph of the same model, so that forms cached by earlier
# code are converted again. 2: a flip wrapper runs the faces and their mirrors as one batch.
TFLITE_FORM = 2


def form_digest(path: str | Path) -> str:
    """What ties a TFLite form to its `.keras` file: the file's content hash and the conversion's version."""
    return f"{file_digest(path)}-form{TFLITE_FORM}"


def _write_pair(target: Path, content: bytes, digest: str) -> None:
    """A TFLite form and the `form_digest` of its `.keras` file: each whole or absent, the digest last, so a
    torn pair is converted again."""
    from fer_core import storage

    storage.write_bytes(str(target), content)
    storage.write_text(str(target.with_suffix(".sha")), digest)


def save_beside(keras_path: str | Path, content: bytes) -> Path:
    """Write a `.keras` file's TFLite form beside it (NAME.tflite and NAME.sha), where `tflite_form` finds
    it instead of converting (while the file and `TFLITE_FORM` are unchanged)."""
    keras_path = Path(keras_path)
    target = keras_path.with_suffix(".tflite")
    _write_pair(target, content, form_digest(keras_path))
    return target


def tflite_form(path: str | Path, cache_dir: str | Path | None = None) -> bytes:
    """A `.keras` file's TFLite form: from beside it or from the cache when its digest matches, else
    converted once (and cached by content hash when `cache_dir` is given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    digest = form_digest(path)
    cached = Path(cache_dir) / f"{digest}.tflite" if cache_dir else None
    for candidate in (cached, path.with_suffix(".tflite")):
        if candidate is not None and candidate.is_file() and candidate.with_suffix(".sha").is_file() \
                and candidate.with_suffix(".sha").read_text() == digest:
            return candidate.read_bytes()
    from fer_core import models

    content = keras_to_tflite(models.load(str(path)))
    if cached is not None:
        _write_pair(cached, content, digest)
    return content


def _interpreter(content: bytes, batch: int, threads: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf

        interp = tf.lite.Interpreter(model_content=content, num_threads=threads)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, FACE, FACE])
    interp.allocate_tensors()
    return interp, inp["index"], interp.get_output_details()[0]["index"]


class Classifier:
    """Classify uint8 (N, 48, 48) faces into (N, 7) probabilities. Thread-safe (one lock)."""

    def __init__(self, tflite: bytes, threads: int = 0, version: str = "", source: str = ""):
        self.tflite = tflite
        self.version = version
        self.source = source
        self.threads = threads or min(2, os.cpu_count() or 1)
        self._lock = threading.Lock()
        self._interps = {b: _interpreter(tflite, b, self.threads) for b in BUCKETS}
        self.predict(np.zeros((1, FACE, FACE), np.uint8))  # fail now, not on the first frame

    @classmethod
    def from_keras(cls, model, **kwargs) -> Classifier:
        return cls(keras_to_tflite(model), **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, cache_dir: str | Path | None = None, **kwargs) -> Classifier:
        """Load a `.keras` (through `tflite_form`) or a `.tflite` file."""
        path = Path(path)
        if path.suffix == ".tflite":
            return cls(path.read_bytes(), source=str(path), **kwargs)
        return cls(tflite_form(path, cache_dir), source=str(path), **kwargs)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.ndim == 2:
            faces = faces[None]
        if faces.shape[1:] != (FACE, FACE):
            raise ValueError(f"faces must be (N, {FACE}, {FACE}), got {faces.shape}")
        faces = faces.astype(np.uint8, copy=False)
        n = len(faces)
        out = np.empty((n, NUM_CLASSES), np.float32)
        largest = BUCKETS[-1]
        with self._lock:
            start = 0
            while start < n:
                rest = n - start
                bucket = largest if rest >= largest else next(b for b in BUCKETS if b >= rest)
                take = min(rest, bucket)
                interp, i_in, i_out = self._interps[bucket]
                batch = faces[start:start + take]
                if take < bucket:
                    batch = np.concatenate([batch, np.zeros((bucket - take, FACE, FACE), np.uint8)])
                interp.set_tensor(i_in, np.ascontiguousarray(batch))
                interp.invoke()
                out[start:start + take] = interp.get_tensor(i_out)[:take]
                start += take
        return out


def top_k(probs: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
    """The k most likely emotions of one face, best first."""
    order = np.argsort(-probs)[:k]
    return [(EMOTIONS[i], float(probs[i])) for i in order]
