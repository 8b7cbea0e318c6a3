#!/usr/bin/env bash
# One prepared call for a lent GPU machine (issue 8): resume the CIFAR-10 trainings of the shipped table.
#   Trains protocol c754e2cff584 (bench skeleton, 2 epochs, batch 128, seed 0, on the 12k/2k subset) for the
#   cells of strata:200:sahd -- 20 from each decile of SAHD in the shipped score protocol -- that the table
#   lacks, then the nested strata:400:sahd, until SECONDS after the start (rows in hash order: a cut leaves
#   a uniform subset). Measured on an NVIDIA H200 (docs/results.md): 3.4 s per training with 6 workers
#   (the GPU time-slices between processes: 12 workers were slower); 133 rows of strata:200 were left.
#   With --timing it first times SAHD and van Rossum on the paper skeleton at batch 256 (~25 s) and runs the
#   CUDA tests beside the build.
#   With --packs (issue 30) it first measures trainings/h and images/s of the packed trainer against the
#   per-network trainer on this GPU, bench skeleton on the CIFAR-10 subset (16 cells, half backward, x 2 seeds,
#   1 epoch on 4,096 images): pack 1 (today's trainer) with 6 processes as the build ran it, and packs of 4, 8,
#   16 with 1 and 6 processes (packs.txt, ~3 min); the build then uses packs of $PACK (default 8).
# $OUT gets at most 7 files (a device call returns 8): gpu.txt, train.log, cifar10-train.h5 (folded),
# sahd_paper.txt, pytest_cuda.txt and packs.txt. Merge here with
#   snnbench merge --union NEW.h5 snnbench/tables/cifar10.h5 OUT/cifar10-train.h5
# Data to carry (git ignores .devdata; 43 MiB of the 64 a call may carry):
#   python benchmarks/make_subset.py ../shared/data/cifar10 .devdata/cifar10 --train 12000 --test 2000
#   git show HEAD:snnbench/tables/cifar10.h5 > .devdata/cifar10-base.h5
#
#   bash benchmarks/gpu_session.sh [--timing] [--packs] [SECONDS]      (from the repository root; needs no install)
set -u
TIMING=0; [ "${1:-}" = "--timing" ] && { TIMING=1; shift; }
PACKS=0; [ "${1:-}" = "--packs" ] && { PACKS=1; shift; }
PACK=${PACK:-8}
TOTAL=${1:-480}
OUT=${OUT:-out}
DATA=.devdata/cifar10
WORK=$(mktemp -d)
START=$(date +%s)
left() { echo $((START + TOTAL - $(date +%s))); }
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
SB=(python -c "import sys; sys.argv[0] = 'snnbench'; from snnbench.cli import main; main()")
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } > "$OUT/gpu.txt"

if [ "$TIMING" = 1 ]; then
  timeout -k 5 70 python benchmarks/bench_scores.py --device cuda --preset paper --dataset "$DATA/train.npz" \
    --batch-size 256 --repeats 2 --cells 3 --metrics sahd,vanrossum --timing-runs 2 > "$OUT/sahd_paper.txt" 2>&1
  timeout -k 5 150 python -m pytest -q -p no:cacheprovider tests/test_network.py -k cuda > "$OUT/pytest_cuda.txt" 2>&1 &
fi

if [ "$PACKS" = 1 ]; then
  (cd benchmarks && timeout -k 5 240 python bench_training.py --packs 4,8,16 --processes 6,1 --device cuda \
    --data "../$DATA/train.npz" --images 4096 --epochs 1 --cells 16 --seeds 2) > "$OUT/packs.txt" 2>&1
  echo "packs benchmark: rc $?, $(left) s left" >> "$OUT/gpu.txt"
fi

cp .devdata/cifar10-base.h5 "$WORK/cifar10-train.h5"
TRAIN=("${SB[@]}" build "$WORK/cifar10-train.h5" --dataset "$DATA/train.npz" --dataset-name cifar10-jpeg-12k
       --kind forward --preset bench --device cuda --scores none --train-epochs 2 --train batch_size=128 --seeds 0
       --workers 6 --pack "$PACK" --quiet)
for cells in strata:200:sahd strata:400:sahd; do
  [ "$(left)" -gt 60 ] || break
  timeout -k 15 $(($(left) - 20)) "${TRAIN[@]}" --train-cells "$cells" >> "$OUT/train.log" 2>&1
  echo "$cells: rc $?, $(left) s left" >> "$OUT/gpu.txt"
done
wait
python -c "from snnbench.table import TableWriter as W; W('$WORK/cifar10-train.h5').close()" >> "$OUT/gpu.txt" 2>&1
cp "$WORK/cifar10-train.h5" "$OUT/"
cat "$OUT/gpu.txt"
