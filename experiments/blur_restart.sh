#!/bin/bash
# Blurred faces in training: each of the champion's networks restarted for a few epochs with
# `augment.low_res` (a share of the training faces shrunk and enlarged back), beside a control (its first
# network restarted the same way without it), all at once, then screened against the champion by the gate's
# rules. Asks whether ExpW's faces, about as sharp as FER2013's at 40 pixels, are read better by networks
# that have seen blurred faces (docs/EXPERIMENTS.md, "Blur").
#
# Usage: FER_HOME=<home> bash experiments/blur_restart.sh OUT_DIR [EPOCHS] [LEARNING_RATE] [LOW_RES] [SIZES]
#   SIZES: augment.low_res_sizes, e.g. [36,40,44] (default: the setting's). CONTROL=0 skips the control (one
#   from an earlier OUT_DIR can be screened by hand). FER2013 and ExpW from ../shared/data; OUT_DIR gets the
#   champion's networks (champ_N.keras), one run folder per restart (blur_N/, control_0/) and the screen
#   (screen.jsonl).
set -euo pipefail
mkdir -p "${1:?usage: blur_restart.sh OUT_DIR [EPOCHS] [LEARNING_RATE] [LOW_RES] [SIZES]}"
out=$(cd "$1" && pwd)
epochs=${2:-8}
rate=${3:-0.0005}
low_res=${4:-0.5}
sizes=${5:-}
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "$root/../shared/data" && pwd)
python=${PYTHON:-$root/.venv/bin/python}
cd "$root"

# shellcheck source=experiments/champion_networks.sh
. "$root/experiments/champion_networks.sh"
save_champion_networks "$out"

restart() {  # restart NAME NETWORK LOW_RES
  "$python" -m fer_cli.main -q train --run-dir "$out/$1" \
    --set data.fer2013="$data/fer2013/fer2013.csv.gz" --set data.expw="$data/expw" \
    --set train.init_from="$2" --set augment.low_res="$3" ${sizes:+--set augment.low_res_sizes="$sizes"} \
    --set train.batch_size=128 --set train.learning_rate="$rate" --set train.lr_schedule=cosine \
    --set train.early_stopping_patience=1000 --set train.epochs="$epochs" --set train.seed=7 \
    > "$out/$1.json" 2> "$out/$1.log"
}

shopt -s nullglob
networks=("$out"/champ_*.keras)
screen=("c0=${networks[0]}")
if [ "${CONTROL:-1}" = 1 ]; then
  restart control_0 "${networks[0]}" 0 &
  screen+=("r0=$out/control_0/model.keras")
fi
for i in "${!networks[@]}"; do
  restart "blur_$i" "${networks[$i]}" "$low_res" &
  [ "$i" = 0 ] || screen+=("c$i=${networks[$i]}")
  screen+=("b$i=$out/blur_$i/model.keras")
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
[ "$failed" = 0 ] || { echo "a restart failed: see $out/*.log" >&2; exit 1; }

screen_against_champion "$out" "$out/blur_0.json" "${screen[@]}"
