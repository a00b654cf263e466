#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: every install (setup.sh, the images, the VM) reads them.
#   bash scripts/lock.sh            # then commit requirements.lock and requirements-dev.lock
set -euo pipefail
cd "$(dirname "$0")/.."
uv=(uv)
command -v uv >/dev/null 2>&1 || { python3 -m pip install -q --user "uv>=0.5"; uv=(python3 -m uv); }
common=(--universal --python-version 3.11 --generate-hashes --no-header --quiet)
# The dev lock pins PyTorch's CPU build (tests check the EfficientNet-Lite0 port against it), which PyPI lacks:
# from a local wheel folder when there is one (TORCH_WHEELS, default /opt/wheels), else PyTorch's CPU index.
if [ -d "${TORCH_WHEELS:-/opt/wheels}" ]; then
  torch=(--find-links "${TORCH_WHEELS:-/opt/wheels}")
else
  torch=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
"${uv[@]}" pip compile pyproject.toml --extra postgres "${common[@]}" -o requirements.lock
"${uv[@]}" pip compile pyproject.toml --extra dev --extra postgres "${common[@]}" "${torch[@]}" -o requirements-dev.lock
echo "lock: wrote requirements.lock and requirements-dev.lock" >&2
