#!/usr/bin/env bash
# The GPU checks in one run: what the tool does on a CUDA machine and how fast.
#
#   benchmarks/gpu.sh OUTDIR      # nas-mnist importable (installed, or on PYTHONPATH)
#
# Each step has its own time limit and a failing step does not stop the next; everything
# goes to OUTDIR/gpu.log, the figures to OUTDIR/*.json and the search to OUTDIR/gpu.db:
#   1. the machine: GPU, driver, torch, bf16
#   2. nas-mnist bench on the GPU (trial52, trial81, ref8k: steps, evaluation, 15-epoch runs)
#   3. trial52 trained for 15 epochs on seed 0 (the real wall time and score)
#   4. trial52 on seeds 0-3, four processes sharing the GPU (throughput of --jobs 4; seed 0
#      again: does a seeded run repeat on the GPU?)
#   5. a cold search at 10,000 parameters starting trials for SEARCH_S seconds (default 90)
#      on the GPU, then finishing the running ones (3 minutes at most)
#   6. front-search: one default (warm) search per budget in FRONT_BUDGETS (default
#      "1999 3000 4000 20000"), side by side, FRONT_JOBS one-thread workers each (default 3),
#      starting trials for FRONT_S seconds (default 200); studies in OUTDIR/front-B.db, their
#      weights in a scratch folder (a machine that returns few files returns the logs)
#   7. front-confirm: the same studies resumed to train nothing new but their top 3 (within
#      0.1 points of the leader's mean) on 5 seeds, for FRONT_CONFIRM_S seconds (default 90)
# STEPS="bench search" runs only the steps named (gpu, cpu, torch, bench, train-seed0,
# train-4-jobs, search, front-search, front-confirm); the default is steps 1-5. DEVICE
# (default cuda) and EXTRA (more search flags) are for a dry run elsewhere.
set -u
out=${1:?usage: benchmarks/gpu.sh OUTDIR}
search_s=${SEARCH_S:-90}
front_budgets=${FRONT_BUDGETS:-1999 3000 4000 20000}
front_jobs=${FRONT_JOBS:-3}
front_s=${FRONT_S:-200}
front_confirm_s=${FRONT_CONFIRM_S:-90}
device=${DEVICE:-cuda}
mkdir -p "$out"
log="$out/gpu.log"
py=${PYTHON:-python3}
nm="$py -m nas_mnist"
weights=$(mktemp -d)  # per-trial weights of the front searches: not brought back

wanted() {  # wanted NAME: whether STEPS asks for it (steps 1-5 when STEPS is unset)
    if [[ -z "${STEPS:-}" ]]; then [[ $1 != front-* ]]; else [[ " $STEPS " == *" $1 "* ]]; fi
}

step() {  # step NAME LIMIT_S COMMAND...
    local name=$1 limit=$2 start rc
    shift 2
    wanted "$name" || return 0
    echo "== $name (limit ${limit} s, $(date -u +%H:%M:%S) UTC): $*" >>"$log"
    start=$(date +%s)
    timeout "$limit" "$@" >>"$log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(( $(date +%s) - start )) s" >>"$log"
}

front() {  # front NAME LIMIT_S SEARCH-FLAGS...: one search per budget, side by side
    local name=$1 limit=$2 b pids=()
    shift 2
    wanted "$name" || return 0
    echo "== $name (limit ${limit} s, $(date -u +%H:%M:%S) UTC): budgets $front_budgets" >>"$log"
    for b in $front_budgets; do
        timeout "$limit" $nm search --study "front-$b" --storage "sqlite:///$out/front-$b.db" \
            --budget "$b" --device "$device" --jobs "$front_jobs" --threads 1 \
            --artifacts "$weights/front-$b" ${EXTRA:-} "$@" >>"$out/$name-$b.log" 2>&1 &
        pids+=($!)
    done
    for b in $front_budgets; do
        wait "${pids[0]}"
        echo "== $name $b: exit $?, $(date -u +%H:%M:%S) UTC" >>"$log"
        pids=("${pids[@]:1}")
    done
}

step gpu 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
step cpu 30 bash -c 'lscpu | grep -E "^Model name|^CPU\(s\)"'
step torch 60 $py -c "import torch, sys; print('python', sys.version.split()[0], 'torch',
torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0),
'bf16', torch.cuda.is_bf16_supported())"
step bench 120 $nm bench --device cuda --json-out "$out/bench-gpu.json"
step train-seed0 110 $nm train trial52 --device cuda --json-out "$out/trial52-seed0-gpu.json"
step train-4-jobs 120 $nm train trial52 --device cuda --seeds 4 --jobs 4 \
    --json-out "$out/trial52-seeds4-jobs4-gpu.json"
step search $(( search_s + 180 )) $nm search --study gpu --storage "sqlite:///$out/gpu.db" \
    --budget 10000 --warm-start none --device cuda --trials 500 --timeout "$search_s"
front front-search $(( front_s + 150 )) --trials 1000 --timeout "$front_s"
front front-confirm $(( front_confirm_s + 120 )) --trials 1 --timeout "$front_confirm_s" \
    --confirm-top 3 --confirm-seeds 5
echo "== done $(date -u +%H:%M:%S) UTC" >>"$log"
