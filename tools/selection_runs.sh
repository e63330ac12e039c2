#!/usr/bin/env bash
# The runs of docs/SELECTION_RULE.md, in two lanes of one thread each (a 2-core machine).
#   bash tools/selection_runs.sh lane1|lane2|finalists ID...|length   (from the repository root)
#   bash tools/selection_runs.sh screen1|screen2|fidelity-final ID       (issue 18's round)
#   bash tools/selection_runs.sh ship R0|R1                              (the shipping round)
# Each run is skipped when its checkpoint exists and resumed when its resume state exists,
# so the script can be started again after an interruption. Logs: runs/tinyhd/<run>.log.
set -euo pipefail
export PYTHONPATH=$PWD SKD_DATA_DIR=${SKD_DATA_DIR:-$PWD/../shared/data}
PY=${PY:-.venv/bin/python}
OUT=runs/tinyhd
mkdir -p "$OUT"
COMMON=(--spatial-teacher tinyhd-m --temporal-teacher tinyhd-m -R 64 --steps 4000
        --lr-schedule cosine --threads 1 --val-every 1000 --checkpoint-every 250 --no-progress)

train() {  # train STEP OUTPUT ARGS...
  local step=$1 out=$2; shift 2
  if [[ -f $out ]]; then echo "have $out"; return; fi
  local resume=()
  [[ -f ${out%.pt}.resume.pt ]] && resume=(--resume)
  echo "$(date +%T) start $out"
  $PY -m training "$step" "${COMMON[@]}" "$@" -o "$out" "${resume[@]}" \
      >> "${out%.pt}.log" 2>&1
  echo "$(date +%T) done $out: $(tail -1 "${out%.pt}.log")"
}

candidate() {  # candidate ID SEED
  local id=$1 seed=$2 o=$OUT/$1_s$2.pt
  case $id in
    A) train transfer "$o" --from-scratch --arch skd-paper-prior --lambda 1.0 --seed "$seed" ;;
    B) train transfer "$o" --from-scratch --arch skd-paper-prior --lambda 0.5 --seed "$seed" ;;
    C) train transfer "$o" --from-scratch --arch skd-fast --lambda 1.0 --seed "$seed" ;;
    D) train transfer "$o" --from-scratch --arch skd-paper --lambda 1.0 --seed "$seed" ;;
    D8k) train transfer "$o" --from-scratch --arch skd-paper --lambda 1.0 --seed "$seed" \
           --steps 8000 ;;  # the length follow-up: D at twice the steps
    E) train transfer "$o" --from-scratch --arch skd-fast-noprior --lambda 1.0 --seed "$seed" ;;
    F) train transfer "$o" --from-scratch --arch skd-fast --lambda 0.5 --seed "$seed" ;;
    G) train distill "$OUT/G_spatial_s$seed.pt" --student spatial --arch skd-fast \
           --lambda 1.0 --seed "$seed"
       train distill "$OUT/G_temporal_s$seed.pt" --student temporal --arch skd-fast \
           --lambda 1.0 --seed "$seed"
       train transfer "$o" --spatial "$OUT/G_spatial_s$seed.pt" \
           --temporal "$OUT/G_temporal_s$seed.pt" --arch skd-fast --lambda 1.0 --seed "$seed" ;;
    *) echo "unknown candidate $id" >&2; exit 2 ;;
  esac
}

# The fidelity round (docs/SELECTION_RULE.md, "Fidelity round"): bf16 autocast, TinyHD-M.
FID=(transfer --from-scratch --spatial-teacher tinyhd-m --temporal-teacher tinyhd-m -R 64
     --lambda 1.0 --lr-schedule cosine --threads 1 --val-every 500 --checkpoint-every 250
     --no-progress)
fidelity_run() {  # fidelity_run ID SEED STEPS
  local id=$1 seed=$2 steps=$3 o=$OUT/fid_$1_s$2_$3.pt
  local cc=(--loss kld --cc-weight 1.0)
  case $id in
    S1) fid "$o" --arch skd-paper --loss l2 ;;
    S2) fid "$o" --arch skd-paper --loss kld ;;
    S2f) fid "$o" --arch skd-paper --loss kld --autocast none ;;
    S3) fid "$o" --arch skd-paper "${cc[@]}" ;;
    S4) fid "$o" --arch skd-paper-subpix "${cc[@]}" ;;
    S5) fid "$o" --arch skd-paper-upconv "${cc[@]}" ;;
    S6) fid "$o" --arch skd-fast "${cc[@]}" ;;
    *) echo "unknown candidate $id" >&2; exit 2 ;;
  esac
}
fid() {  # fid OUTPUT ARGS...: one run of the fidelity round (bf16 unless AUTOCAST says)
  local out=$1; shift
  if [[ -f $out ]]; then echo "have $out"; return; fi
  local resume=()
  [[ -f ${out%.pt}.resume.pt ]] && resume=(--resume)
  echo "$(date +%T) start $out"
  $PY -m training "${FID[@]}" --autocast "${AUTOCAST:-bf16}" --seed "$seed" --steps "$steps" "$@" \
      -o "$out" "${resume[@]}" >> "${out%.pt}.log" 2>&1
  echo "$(date +%T) done $out: $(tail -1 "${out%.pt}.log")"
}

# The shipping round (docs/SELECTION_RULE.md, "Shipping round"): float32, 4,000 steps, seed 0.
ship_run() {  # ship_run R0|R1
  local seed=0 steps=4000 o=$OUT/ship_$1_s0_4000.pt
  case $1 in
    R0) fid32 "$o" --arch skd-paper --loss l2 ;;
    R1) fid32 "$o" --arch skd-paper --loss kld ;;
    *) echo "unknown shipping run $1" >&2; exit 2 ;;
  esac
}
fid32() {  # fid32 OUTPUT ARGS...: fid without autocast (float32)
  AUTOCAST=none fid "$@"
}

case ${1:-} in
  screen1) for id in S1 S3 S5; do fidelity_run "$id" 0 1000; done ;;
  screen2) for id in S2 S4 S6; do fidelity_run "$id" 0 1000; done ;;
  fidelity-final) fidelity_run "$2" "$3" 2000 ;;  # the budget amendment: 2,000 steps
  bf16-check) fidelity_run S2f 0 1000 ;;
  ship) ship_run "$2" ;;  # the shipping round: R0 (l2) or R1 (kld), float32, 4,000 steps
  lane1) for id in A D B; do candidate "$id" 0; done ;;
  lane2) for id in C E F G; do candidate "$id" 0; done ;;
  finalists) shift; for id in "$@"; do for seed in 1 2; do candidate "$id" "$seed"; done; done ;;
  one) candidate "$2" "$3" ;;
  length) candidate D8k 0 & candidate D8k 1 & wait ;;
  *) echo "usage: $0 lane1|lane2|finalists ID...|one ID SEED|length" >&2; exit 2 ;;
esac
