#!/usr/bin/env bash
# Set up a fresh machine: system packages the tests use (Debian), then a virtualenv with the project,
# installed from the lock file (hashes checked; refresh it with scripts/lock.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
      || echo "setup: could not install ${need[*]}; tests that need them will skip" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# The dev lock pins PyTorch's CPU build (the EfficientNet-Lite0 port is tested against it), which PyPI lacks:
# pip finds it in a local wheel folder its configuration names (find-links), else on PyTorch's CPU index.
extra=()
# (read whole, not piped into grep -q: with pipefail, pip's broken pipe would count as "not configured")
pip_config=$(.venv/bin/pip config list 2>/dev/null || true)
[[ $pip_config == *find-links* ]] || extra=(--extra-index-url https://download.pytorch.org/whl/cpu)
.venv/bin/pip install -q --require-hashes -r requirements-dev.lock "${extra[@]}"
.venv/bin/pip install -q --no-deps -e .
echo "setup: done. Try: .venv/bin/fer demo" >&2
