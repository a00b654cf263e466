#!/bin/bash
# Train several compact networks at once on a lent GPU (tools/accelerator_train.py, Keras 3 on JAX), one seed
# each, and pack them for the trip back: members for an ensemble, screened and refreshed on the CPU afterwards.
#
#   bash tools/accelerator_members.sh DATA MINUTES SEED [SEED...]      (from the repository's root)
#
# DATA: a dataset version's faces.npz, or the same as .npz.xz (tools/accelerator_train.py reads both). Where
# keras or pydantic is missing, their wheels travel in .whl/ and are installed first; tools/accelerator_pack.py
# packs both (.gpu/faces.npz.xz and .whl/) and prints this command with its variables filled in. DATASET (the version, ds-...) and FER_GIT_COMMIT (the commit the
# tree is at) go into each run's record for scripts/ship_baseline.py. TRAIN_ARGS: more arguments for every
# run, split at spaces (e.g. "--width 64" for wider networks, "--teacher T.keras" to distil;
# tools/accelerator_train.py --help). Writes $RUNS/s<SEED>/{best.keras, history.json} and $RUNS/s<SEED>.log
# (RUNS defaults to runs), then $OUT/members.tar (OUT defaults to RUNS).
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 DATA MINUTES SEED [SEED...]" >&2
  exit 2
fi
data=$1 minutes=$2
shift 2
runs=${RUNS:-runs}
out=${OUT:-$runs}
mkdir -p "$runs" "$out"
if ! python3 -c "import keras, pydantic" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false KERAS_BACKEND=${KERAS_BACKEND:-jax}
if [[ $data == *.xz ]]; then  # unpacked once, not once per run
  unpacked=$(mktemp --suffix .npz)
  python3 -c "import lzma, sys; open(sys.argv[2], 'wb').write(lzma.decompress(open(sys.argv[1], 'rb').read()))" \
    "$data" "$unpacked" || exit 1
  data=$unpacked
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L
read -r -a extra <<< "${TRAIN_ARGS:-}"
for seed in "$@"; do
  python3 tools/accelerator_train.py --data "$data" --out "$runs/s$seed" --seed "$seed" --minutes "$minutes" \
    ${DATASET:+--dataset-version "$DATASET"} "${extra[@]}" > "$runs/s$seed.log" 2>&1 &
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
packed=()
for path in "$runs"/s*; do packed+=("${path##*/}"); done
tar -cf "$out/members.tar" -C "$runs" "${packed[@]}"
for seed in "$@"; do tail -n 1 "$runs/s$seed.log"; done
exit $failed
