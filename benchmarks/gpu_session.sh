#!/usr/bin/env bash
# One prepared call for a lent GPU machine (issue 8). Everything it makes goes to $OUT; it stops itself
# SECONDS after it starts and leaves every build's rows folded in its table or journalled next to it.
#   (a) SAHD and van Rossum seconds per cell on the paper skeleton at batch 256 (supplementary: 6.12 s, 44.52 s),
#       and the on-device scorer against the release-style one;
#   (b) a calibration: 12 concurrent one-cell trainings (2 epochs) give the GPU's training throughput, from
#       which the script picks the largest epoch budget (2 to 8) that trains 200 cells in ~70% of the time left;
#   (c) CIFAR-10 training (bench skeleton, that budget, seed 0) of strata:200:sahd -- 20 cells from each decile
#       of SAHD in the shipped table's score protocol -- built into a copy of that table, then the nested
#       strata:400:sahd until the time is up (rows in hash order: a cut leaves a uniform subset of it).
#       The CUDA tests of tests/test_network.py run beside (c).
# Data: an .npz pair small enough to carry (the 12k/2k subset of ../shared/data/cifar10, decoded from JPEG
# copies; named cifar10-jpeg-12k in the table) and the committed table to select from:
#   python benchmarks/make_subset.py ../shared/data/cifar10 .devdata/cifar10 --train 12000 --test 2000
#   git show HEAD:snnbench/tables/cifar10.h5 > .devdata/cifar10-base.h5
# carry .devdata (git ignores it). Fold a left journal here with
#   python -c "from snnbench.table import TableWriter as W; W('T.h5').close()"
# then `snnbench merge` into the shipped table.
#
#   bash benchmarks/gpu_session.sh [DATA_DIR] [SECONDS]      (run from the repository root)
set -u
DATA=${1:-.devdata/cifar10}
TOTAL=${2:-500}
OUT=${OUT:-out}
START=$(date +%s)
left() { echo $((START + TOTAL - $(date +%s))); }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
SB=(python -c "import sys; sys.argv[0] = 'snnbench'; from snnbench.cli import main; main()")  # no install needed
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } | tee "$OUT/gpu.txt"

# (a)
timeout -k 5 70 python benchmarks/bench_scores.py --device cuda --preset paper --dataset "$DATA/train.npz" \
  --batch-size 256 --repeats 2 --cells 3 --metrics sahd,vanrossum --timing-runs 2 > "$OUT/sahd_paper.txt" 2>&1
echo "(a) done, $(left) s left" | tee -a "$OUT/gpu.txt"

# (b)
CELL="0302 0030 3003 0000"
for i in $(seq 12); do
  timeout -k 5 90 "${SB[@]}" train $CELL --dataset "$DATA/train.npz" --epochs 2 --batch-size 128 --device cuda \
    --seed "$i" > "$OUT/calib_$i.txt" 2>/dev/null &
done
wait
EPOCH_S=$(grep -h "^epoch   2" "$OUT"/calib_*.txt | awk '{print $NF}' | tr -d s | sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}')
EPOCHS=$(python -c "
t, left = float('$EPOCH_S' or 0), $(left) - 45
print(max(2, min(8, int(0.7 * left * 12 / (1.15 * t * 200)))) if t > 0 else 3)")
echo "(b) median epoch under 12-way sharing: ${EPOCH_S}s -> budget $EPOCHS epochs, $(left) s left" | tee -a "$OUT/gpu.txt"

# (c)
timeout -k 5 150 python -m pytest -q -p no:cacheprovider tests/test_network.py -k cuda > "$OUT/pytest_cuda.txt" 2>&1 &
cp .devdata/cifar10-base.h5 "$OUT/cifar10-train.h5"
TRAIN=("${SB[@]}" build "$OUT/cifar10-train.h5" --dataset "$DATA/train.npz" --dataset-name cifar10-jpeg-12k --kind forward
       --preset bench --device cuda --scores none --train-epochs "$EPOCHS" --train batch_size=128 --seeds 0 --workers 12 --quiet)
timeout -k 20 $(($(left) - 25)) "${TRAIN[@]}" --train-cells strata:200:sahd > "$OUT/train200.log" 2>&1
echo "(c) strata:200 ended (rc $?), $(left) s left" | tee -a "$OUT/gpu.txt"
if [ "$(left)" -gt 60 ]; then
  timeout -k 20 $(($(left) - 25)) "${TRAIN[@]}" --train-cells strata:400:sahd > "$OUT/train400.log" 2>&1
  echo "(c) strata:400 ended (rc $?), $(left) s left" | tee -a "$OUT/gpu.txt"
fi
wait
ls -la "$OUT"
