#!/usr/bin/env bash
# Scores of the shipping round (docs/SELECTION_RULE.md, "Shipping round"), after
# `bash tools/selection_runs.sh ship R0` and `... ship R1` have written their checkpoints.
#   bash tools/ship_round.sh            (from the repository root; writes runs/eval/ship_*)
# Fidelity on the 8 held-out clips, group2 (the bundle's val split), car10, one bench.teacher
# run and the contact sheet on fidelity frames; every number of RESULTS.md's shipping round
# comes from these files.
set -euo pipefail
export PYTHONPATH=$PWD SKD_DATA_DIR=${SKD_DATA_DIR:-$PWD/../shared/data}
PY=${PY:-.venv/bin/python}
R=runs/tinyhd
M=$R/ship_R0_s0_4000.pt,$R/ship_R1_s0_4000.pt
D=$SKD_DATA_DIR/uav_gaze
E=runs/eval
mkdir -p "$E"
FRAMES="uav_unlabeled/wakeboard4.mp4:40;uav_unlabeled/DTB70_Surfing06.mp4:50"
FRAMES+=";uav_unlabeled/UAV123_10fps_group3_2.mp4:60;uav_unlabeled/UAVDT_S0310.mp4:60"
FRAMES+=";uav_unlabeled/truck2.mp4:100;uav_unlabeled/DTB70_BMX3.mp4:60"
FRAMES+=";uav_unlabeled/UAVTrack112_air_conditioning_box1.mp4:300"
step() { echo "$(date +%T) $*"; }
if [[ ${1:-} != --skip-fidelity ]]; then step fidelity
$PY -m training evaluate --fidelity --models "$M,default" --threads 1 --no-progress \
    --json $E/ship_fidelity.json --overwrite; fi
step group2
$PY -m training evaluate --data config/datasets/bundle.yaml --models "$M,default,center" --threads 1 --no-progress \
    --json $E/ship_group2.json --overwrite
step car10
$PY -m training evaluate --video $D/car10.mp4 --gaze $D/car10_gaze.npz \
    --models "$M,default,center" --threads 1 --no-progress --json $E/ship_car10.json --overwrite
step bench.teacher
$PY -m bench.teacher --models "$R/ship_R1_s0_4000.pt,$R/ship_R0_s0_4000.pt" \
    --json $E/ship_bench_teacher.json
step contact-sheet
$PY -m training contact-sheet --data-dir "$SKD_DATA_DIR" --frames "$FRAMES" --overwrite \
    --models "TinyHD-M=teacher:tinyhd-m,R0 l2=$R/ship_R0_s0_4000.pt,R1 kld=$R/ship_R1_s0_4000.pt,shipped default (saw 7 of 8)=default" \
    --out $E/ship_contact_sheet.png
step done
