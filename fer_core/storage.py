"""Paths that are either local or `gs://bucket/prefix`, with atomic writes.

google-cloud-storage honours STORAGE_EMULATOR_HOST, so the same code runs against a local emulator.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path


class StorageError(OSError):
    """A path that cannot be read or written: missing, or a bucket that cannot be reached."""


class NotFoundError(StorageError):
    """The object or file definitely does not exist (as opposed to a read that failed)."""


# Local reads that fail with an I/O error (a network file system, a FUSE-mounted bucket) are retried with
# backoff before the read fails; a missing file is an answer, not a failure, and is never retried.
# GCS reads use google-cloud-storage's own retry policy (DEFAULT_RETRY: 429, 5xx, connection errors).
LOCAL_READ_ATTEMPTS = 4
GCS_RETRY_TIMEOUT_S = 120.0  # how long a GCS read keeps retrying (google-cloud-storage's default)
_NOT_TRANSIENT = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_transient(exc: BaseException) -> bool:
    """Whether another try of an I/O or server call might succeed: a read that failed, an unreachable
    server. Not a missing file, a bad config, bad data or a failed training run."""
    from fer_core.registry import UNREACHABLE_MARKERS, RegistryUnavailable

    if isinstance(exc, NotFoundError):
        return False
    if isinstance(exc, StorageError | RegistryUnavailable | ConnectionError | TimeoutError):
        return True
    if exc.__class__.__module__.startswith(("requests", "urllib3", "httpx", "google.api_core")):
        return True
    return any(marker in str(exc) for marker in UNREACHABLE_MARKERS)  # e.g. an MlflowException


def is_gcs(path: str | os.PathLike[str]) -> bool:
    return str(path).startswith("gs://")


def join(base: str, *parts: str) -> str:
    if is_gcs(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def _split_gcs(path: str) -> tuple[str, str]:
    rest = str(path)[len("gs://"):]
    bucket, _, blob = rest.partition("/")
    if not bucket:
        raise StorageError(f"no bucket in {path!r}")
    return bucket, blob


@lru_cache(maxsize=1)
def _client():  # pragma: no cover - trivial
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "local"),
                              credentials=AnonymousCredentials())
    return storage.Client()


def reset_client() -> None:
    """Forget the cached client (tests switch emulators)."""
    _client.cache_clear()


def _blob(path: str):
    bucket, name = _split_gcs(path)
    return _client().bucket(bucket).blob(name)


@contextlib.contextmanager
def _gcs_errors(path: str) -> Iterator[None]:
    from google.api_core import exceptions as gexc

    try:
        yield
    except gexc.NotFound as exc:
        raise NotFoundError(f"not found: {path}") from exc
    except (gexc.GoogleAPIError, OSError) as exc:
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot read {path} (after retries): {exc.__class__.__name__}: {exc}") from exc
    except Exception as exc:  # requests' ConnectionError and auth errors
        if exc.__class__.__module__.startswith(("requests", "urllib3", "google.auth")):
            raise StorageError(f"cannot reach {path}: {exc.__class__.__name__}: {exc}") from exc
        raise


def exists(path: str) -> bool:
    if is_gcs(path):
        with _gcs_errors(path):
            if _blob(path).exists():
                return True
            bucket, prefix = _split_gcs(path)
            return any(True for _ in _client().list_blobs(bucket, prefix=prefix.rstrip("/") + "/", max_results=1))
    return Path(path).exists()


def is_file(path: str) -> bool:
    """Whether `path` is one file or object (not a folder or prefix)."""
    if is_gcs(path):
        with _gcs_errors(path):
            return bool(_blob(path).exists())
    return Path(path).is_file()


def read_bytes(path: str) -> bytes:
    """The bytes of a file or object. NotFoundError when it does not exist; StorageError, naming it, when
    it could not be read after the retries."""
    if is_gcs(path):
        from google.cloud.storage.retry import DEFAULT_RETRY

        with _gcs_errors(path):
            return _blob(path).download_as_bytes(retry=DEFAULT_RETRY.with_timeout(GCS_RETRY_TIMEOUT_S))
    try:
        return _read_local(path)
    except FileNotFoundError as exc:
        raise NotFoundError(f"not found: {path}") from exc
    except OSError as exc:
        if isinstance(exc, _NOT_TRANSIENT):
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        raise StorageError(f"cannot read {path} after {LOCAL_READ_ATTEMPTS} attempts: {exc}") from exc


def _read_local(path: str) -> bytes:
    from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

    transient = retry_if_exception(lambda e: isinstance(e, OSError) and not isinstance(e, _NOT_TRANSIENT))
    reader = retry(retry=transient, stop=stop_after_attempt(LOCAL_READ_ATTEMPTS), reraise=True,
                   wait=wait_exponential(multiplier=0.1, max=2.0))(Path(path).read_bytes)
    return reader()


def write_bytes(path: str, data: bytes) -> None:
    """Write atomically: a temp file renamed into place (locally); a single upload on GCS."""
    if is_gcs(path):
        with _gcs_errors(path):
            _blob(path).upload_from_string(data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def upload_file(local: str | Path, path: str) -> None:
    """Copy a local file to `path` (local or gs://), atomically."""
    if is_gcs(path):
        with _gcs_errors(path):
            _blob(path).upload_from_filename(str(local))
        return
    write_bytes(path, Path(local).read_bytes())


def download_file(path: str, local: str | Path) -> Path:
    local = Path(local)
    local.parent.mkdir(parents=True, exist_ok=True)
    if is_gcs(path):
        with _gcs_errors(path):
            _blob(path).download_to_filename(str(local))
    else:
        write_bytes(str(local), read_bytes(path))
    return local


def list_files(prefix: str) -> list[tuple[str, int, str]]:
    """Files under `prefix` as (relative name, size, content fingerprint or mtime marker), sorted."""
    if is_gcs(prefix):
        bucket, name = _split_gcs(prefix)
        name = name.rstrip("/") + "/" if name else ""
        with _gcs_errors(prefix):
            out = [(b.name[len(name):], int(b.size or 0), str(b.md5_hash or b.crc32c or b.etag))
                   for b in _client().list_blobs(bucket, prefix=name)]
        return sorted(out)
    root = Path(prefix)
    if not root.is_dir():
        raise StorageError(f"not a folder: {prefix}")
    out = []
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            out.append((p.relative_to(root).as_posix(), st.st_size, f"{st.st_mtime_ns}"))
    return sorted(out)


def fingerprint_file(path: str) -> str:
    """Content hash of one file (sha256 locally; the stored md5 on GCS, which costs no download)."""
    if is_gcs(path):
        with _gcs_errors(path):
            blob = _blob(path)
            blob.reload()
            return f"md5:{blob.md5_hash or blob.crc32c}"
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError as exc:
        raise NotFoundError(f"not found: {path}") from exc
    return f"sha256:{h.hexdigest()}"


@contextlib.contextmanager
def local_copy(path: str, workdir: str | Path | None = None) -> Iterator[Path]:
    """A local path for `path`: itself when local, else a downloaded temporary copy."""
    if not is_gcs(path):
        if not Path(path).exists():
            raise NotFoundError(f"not found: {path}")
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        yield download_file(path, Path(tmp) / Path(_split_gcs(path)[1]).name)
