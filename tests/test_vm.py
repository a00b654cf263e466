"""The GCP VM's start-up script, run for real inside a pristine Debian 12 root filesystem.

The VM boots `debian-cloud/debian-12`; this test builds the same system with debootstrap (cached between
runs), runs `infra/vm/startup.sh` in it as root through chroot, in private mount and PID namespaces so
that nothing outlives the test: apt installs, the venv from requirements.lock, /etc/fer/worker.env, then
the worker as the unprivileged user `fer`, answering /healthz. Its camera stream is not reachable, as on
a VM whose camera is not up yet: the worker stays alive, retries with backoff and says it is not ready.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import helpers

ROOT = Path(__file__).resolve().parents[1]
MIRROR = "http://deb.debian.org/debian"

HARNESS = r"""
set -euo pipefail
rootfs=$1; port=$2; project=$3
mount -t proc proc "$rootfs/proc"
mount --rbind /dev "$rootfs/dev"
mkdir -p "$rootfs/srv/fer-src"
mount --bind "$project" "$rootfs/srv/fer-src"
mount -o remount,bind,ro "$rootfs/srv/fer-src"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
# A network that re-signs TLS (as this test's CI does) needs its CA inside the VM too, as on a real VM
# behind such a proxy; pip reads PIP_CERT from the environment.
pip_env=()
if [ -n "${PIP_CERT:-}" ]; then
  cp "$PIP_CERT" "$rootfs/etc/host-ca.crt"
  pip_env=(PIP_CERT=/etc/host-ca.crt)
fi
start=$(date +%s)
chroot "$rootfs" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 "${pip_env[@]}" FER_SRC=/srv/fer-src FER_SOURCE=http://127.0.0.1:9/camera.mjpg \
  FER_HTTP_BIND="127.0.0.1:$port" FER_HTTP_TOKEN=t0ken bash /srv/fer-src/infra/vm/startup.sh >&2
installed=$(date +%s)
pid=$(cat "$rootfs/var/lib/fer/worker.pid")
health=0
for _ in $(seq 1 240); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=2)" \
      2>/dev/null; then health=200; break; fi
  sleep 0.5
done
ready='{}'
for _ in $(seq 1 120); do  # the model loads after HTTP is up: wait for it
  ready=$(python3 -c "
import urllib.request, urllib.error
try:
    print(urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=5).read().decode())
except urllib.error.HTTPError as e:
    print(e.read().decode())
" 2>/dev/null || echo '{}')
  case "$ready" in *'"model_loaded": true'*) break ;; esac
  sleep 0.5
done
uid=$(awk '/^Uid:/ {print $2}' "$rootfs/proc/$pid/status" 2>/dev/null || echo -1)
python_version=$(chroot "$rootfs" /opt/fer/venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
fer_uid=$(chroot "$rootfs" id -u fer)
env_mode=$(stat -c %a "$rootfs/etc/fer/worker.env")
tail -n 20 "$rootfs/var/lib/fer/worker.log" >&2 || true
printf '{"health": %s, "ready": %s, "worker_uid": %s, "fer_uid": %s, "python": "%s", "env_mode": "%s", "install_s": %s}\n' \
  "$health" "$ready" "$uid" "$fer_uid" "$python_version" "$env_mode" "$((installed - start))"
"""


def _debian12_rootfs(dest: Path) -> None:
    """Unpack a minimal Debian 12 root filesystem into dest; debootstrap it once into the cache."""
    cache = Path(os.environ.get("FER_TEST_CACHE", Path.home() / ".cache" / "fer-tests"))
    tarball = cache / "debian12-minbase.tar"
    if not tarball.exists():
        build = cache / "debian12-build"
        shutil.rmtree(build, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(build), MIRROR], check=True,
                       capture_output=True, timeout=900)
        subprocess.run(["tar", "-C", str(build), "-cf", f"{tarball}.tmp", "."], check=True)
        os.replace(f"{tarball}.tmp", tarball)
        shutil.rmtree(build, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True)


@pytest.mark.slow
@pytest.mark.integration
def test_startup_script_on_pristine_debian12_runs_the_worker_as_fer(tmp_path):
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("debootstrap", "unshare", "chroot")):
        pytest.skip("needs root, debootstrap, unshare and chroot (scripts/setup.sh installs debootstrap)")
    rootfs = tmp_path / "rootfs"
    try:
        _debian12_rootfs(rootfs)
        assert (rootfs / "etc" / "debian_version").read_text().startswith("12.")
        assert not (rootfs / "usr" / "bin" / "python3").exists()  # pristine: startup.sh brings Python
        port = helpers.free_port()
        proc = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--kill-child", "bash", "-c", HARNESS, "harness",
                               str(rootfs), str(port), str(ROOT)], capture_output=True, text=True, timeout=1500)
        assert proc.returncode == 0, proc.stderr[-4000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(report))
        assert report["python"] == "3.11"
        assert report["health"] == 200, proc.stderr[-4000:]
        assert report["worker_uid"] == report["fer_uid"] != 0
        assert report["ready"] == {"ready": False, "model_loaded": True, "source_open": False}
        assert report["env_mode"] == "640"
        env = (rootfs / "etc" / "fer" / "worker.env").read_text()
        assert "FER_HOME=/var/lib/fer" in env and "FER_HTTP_TOKEN=t0ken" in env
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
