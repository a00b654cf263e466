# shellcheck shell=bash disable=SC2154
# Shared by the experiments that restart the champion's networks (clean_finish.sh, blur_restart.sh): source it
# after setting `root` (the repository) and `python` (the sourcing script sets both, hence SC2154 off).

# save_champion_networks OUT: each network of the shipped champion, without training state, as OUT/champ_N.keras.
save_champion_networks() {
  "$python" - "$root/fer_core/assets/baseline.keras" "$1" <<'PY'
import sys
from fer_core import models
for i, network in enumerate(models.ensemble_members(models.load(sys.argv[1]))):
    models.without_optimizer(network).save(f"{sys.argv[2]}/champ_{i}.keras")
PY
}

# screen_against_champion OUT RUN_JSON NAME=FILE...: experiments/ensemble_screen.py over the networks named, on
# the dataset version the `fer train` run of RUN_JSON used, against the average of c0, c1, ... (the champion's
# networks, so they must be among those named); one JSON line a model, also in OUT/screen.jsonl.
screen_against_champion() {
  local out=$1 run=$2 dataset against networks
  shift 2
  networks=("$out"/champ_*.keras)
  dataset=$("$python" -c "import json, sys
from fer_core.config import load_settings
from fer_core.data import dataset
print(dataset.resolve(json.load(open(sys.argv[1]))['dataset'], load_settings()))" "$run")
  against=$(printf 'c%s+' "${!networks[@]}")
  "$python" "$root/experiments/ensemble_screen.py" --dataset "$dataset" --against "${against%+}" "$@" \
    | tee "$out/screen.jsonl"
}
