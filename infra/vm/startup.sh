#!/usr/bin/env bash
# VM start-up script (Debian 12): install the project from its lock file and run the worker as the
# unprivileged user `fer`, through systemd where systemd runs (the VM), directly otherwise (a chroot).
# On GCP it reads its settings from instance metadata; every setting can also come from the environment,
# which is how tests/test_vm.py runs it for real inside a pristine Debian 12 root filesystem.
set -euo pipefail

meta() {  # instance metadata attribute, or empty off GCP
  curl -fs -m 2 -H "Metadata-Flavor: Google" \
    "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1" 2>/dev/null || true
}

FER_PREFIX="${FER_PREFIX:-/opt/fer}"
FER_STATE="${FER_STATE:-/var/lib/fer}"
FER_ETC="${FER_ETC:-/etc/fer}"
FER_SRC="${FER_SRC:-$(meta fer-src)}"                 # a git URL or a local folder with the project
FER_SOURCE="${FER_SOURCE:-$(meta fer-source)}"        # camera index, stream URL or file
FER_SOURCE="${FER_SOURCE:-0}"
FER_HTTP_BIND="${FER_HTTP_BIND:-$(meta fer-http-bind)}"
FER_HTTP_BIND="${FER_HTTP_BIND:-0.0.0.0:8000}"
FER_TRACKING_URI="${FER_TRACKING_URI:-$(meta fer-tracking-uri)}"
FER_HTTP_TOKEN="${FER_HTTP_TOKEN:-$(meta fer-http-token)}"
FER_MODEL="${FER_MODEL:-}"
FER_SYSTEMD="${FER_SYSTEMD:-auto}"  # 1: systemd unit; 0: start the worker directly; auto: 1 where systemd runs
[ "$FER_SYSTEMD" = auto ] && { [ -d /run/systemd/system ] && FER_SYSTEMD=1 || FER_SYSTEMD=0; }
PYTHON="${PYTHON:-python3}"

if [ -z "$FER_SRC" ]; then
  echo "startup: no project source (set FER_SRC or the fer-src metadata attribute)" >&2
  exit 1
fi

AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
if [ "$AS_ROOT" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-venv git ca-certificates libglib2.0-0 >/dev/null
  id fer >/dev/null 2>&1 || useradd --system --home-dir "$FER_STATE" --shell /usr/sbin/nologin fer
fi

mkdir -p "$FER_PREFIX" "$FER_STATE" "$FER_ETC"
if [ -d "$FER_SRC" ]; then
  rm -rf "$FER_PREFIX/src"
  mkdir -p "$FER_PREFIX/src"
  (cd "$FER_SRC" && tar --exclude=./.venv --exclude=./.git -cf - .) | (cd "$FER_PREFIX/src" && tar -xf -)
else
  rm -rf "$FER_PREFIX/src"
  git clone --depth 1 "$FER_SRC" "$FER_PREFIX/src"
fi
[ -x "$FER_PREFIX/venv/bin/python" ] || "$PYTHON" -m venv "$FER_PREFIX/venv"
# Exactly the locked versions, hashes checked, nothing resolved: the lock names every dependency. (Resolving
# is what breaks: pip before 23.3, Debian 12's included, looks up an extra such as prefect's httpx[http2] as
# the newest release, not the locked one, and refuses it unhashed: pypa/pip#12345.) pip check then confirms
# the set is whole. Then the project itself.
"$FER_PREFIX/venv/bin/pip" install -q --no-deps --require-hashes -r "$FER_PREFIX/src/requirements.lock"
"$FER_PREFIX/venv/bin/pip" check
"$FER_PREFIX/venv/bin/pip" install -q --no-deps "$FER_PREFIX/src"

umask 077
{
  echo "FER_HOME=$FER_STATE"
  echo "FER_SOURCE=$FER_SOURCE"
  echo "FER_HTTP_BIND=$FER_HTTP_BIND"
  [ -n "$FER_TRACKING_URI" ] && echo "FER_MLFLOW__TRACKING_URI=$FER_TRACKING_URI"
  [ -n "$FER_HTTP_TOKEN" ] && echo "FER_HTTP_TOKEN=$FER_HTTP_TOKEN"
} > "$FER_ETC/worker.env"

if [ "$AS_ROOT" = 1 ]; then
  chown -R fer:fer "$FER_STATE"
  chmod 640 "$FER_ETC/worker.env"
  chgrp fer "$FER_ETC/worker.env"
fi
if [ "$FER_SYSTEMD" = 1 ]; then
  install -m 644 "$FER_PREFIX/src/infra/systemd/fer-worker.service" /etc/systemd/system/fer-worker.service
  systemctl daemon-reload
  systemctl enable --now fer-worker.service
else
  set -a
  # shellcheck disable=SC1091
  . "$FER_ETC/worker.env"
  set +a
  model_args=()
  [ -n "$FER_MODEL" ] && model_args=(--model "$FER_MODEL")
  as_user=()
  [ "$AS_ROOT" = 1 ] && as_user=(setpriv --reuid=fer --regid=fer --init-groups -- env HOME="$FER_STATE")
  cd "$FER_STATE"
  nohup "${as_user[@]}" "$FER_PREFIX/venv/bin/fer" serve --source "$FER_SOURCE" --http "$FER_HTTP_BIND" "${model_args[@]}" \
    > "$FER_STATE/worker.log" 2>&1 &
  echo $! > "$FER_STATE/worker.pid"
fi
echo "startup: worker installed in $FER_PREFIX, serving on $FER_HTTP_BIND"
