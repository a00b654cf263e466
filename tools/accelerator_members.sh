#!/bin/bash
# Train several compact networks at once on a lent GPU (tools/accelerator_train.py, Keras 3 on JAX), one seed
# each, and pack them for the trip back: members for an ensemble, screened and refreshed on the CPU afterwards.
#
#   bash tools/accelerator_members.sh DATA MINUTES SEED [SEED...]
#
# DATA: a dataset version's faces.npz, or the same as .npz.xz (tools/accelerator_train.py reads both). On a
# machine without keras or pydantic, their wheels travel in .whl/ (docs/EXPERIMENTS.md says which); they are
# installed first. FER_GIT_COMMIT (the commit the working tree is at) and DATASET (its version, ds-...) go
# into each run's record for scripts/ship_baseline.py. Writes runs/s<SEED>/{best.keras,history.json} and runs/s<SEED>.log, then $OUT/members.tar
# (or runs/members.tar) holding them.
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 DATA MINUTES SEED [SEED...]" >&2
  exit 2
fi
data=$1 minutes=$2
shift 2
out=${OUT:-runs}
mkdir -p runs "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false KERAS_BACKEND=${KERAS_BACKEND:-jax}
if [[ $data == *.xz ]]; then  # unpacked once, not once per run
  python3 -c "import lzma, sys; open('/tmp/faces.npz', 'wb').write(lzma.decompress(open(sys.argv[1], 'rb').read()))" "$data" || exit 1
  data=/tmp/faces.npz
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L
for seed in "$@"; do
  python3 tools/accelerator_train.py --data "$data" --out "runs/s$seed" --seed "$seed" --minutes "$minutes" \
    ${DATASET:+--dataset-version "$DATASET"} > "runs/s$seed.log" 2>&1 &
done
wait
tar -cf "$out/members.tar" runs/s*
for seed in "$@"; do tail -n 1 "runs/s$seed.log"; done
