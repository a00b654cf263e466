#!/bin/bash
# Final epochs on clean faces: each of the champion's networks trained a few more epochs at a low rate on
# un-augmented faces (mirrors kept: the served model averages each face with its mirror), then screened
# against the champion by the gate's rules. Asks whether networks trained on augmented faces gain from
# seeing the faces they will be served (docs/EXPERIMENTS.md, "Final epochs on clean faces").
#
# Usage: FER_HOME=<home> bash experiments/clean_finish.sh OUT_DIR [EPOCHS] [LEARNING_RATE]
#   FER2013 and ExpW from ../shared/data; OUT_DIR gets the champion's networks (champ_N.keras), one run
#   folder per network (clean_N/) and the screen (screen.jsonl).
set -euo pipefail
mkdir -p "${1:?usage: clean_finish.sh OUT_DIR [EPOCHS] [LEARNING_RATE]}"
out=$(cd "$1" && pwd)
epochs=${2:-3}
rate=${3:-0.0001}
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "$root/../shared/data" && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cd "$root"

# shellcheck source=experiments/champion_networks.sh
. "$root/experiments/champion_networks.sh"
save_champion_networks "$out"

shopt -s nullglob
networks=("$out"/champ_*.keras)
screen=()
for i in "${!networks[@]}"; do
  "$python" -m fer_cli.main train --run-dir "$out/clean_$i" \
    --set data.fer2013="$data/fer2013/fer2013.csv.gz" --set data.expw="$data/expw" \
    --set train.init_from="${networks[$i]}" \
    --set augment.rotation_deg=0 --set augment.shift=0 --set augment.zoom=0 --set 'augment.brightness=[1.0,1.0]' \
    --set train.batch_size=128 --set train.learning_rate="$rate" --set train.lr_schedule=cosine \
    --set train.early_stopping_patience=1000 --set train.epochs="$epochs" --set train.seed=7 > "$out/clean_$i.json"
  screen+=("c$i=${networks[$i]}" "k$i=$out/clean_$i/model.keras")
done

screen_against_champion "$out" "$out/clean_0.json" "${screen[@]}"
