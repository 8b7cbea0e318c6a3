#!/usr/bin/env bash
# One prepared call for a lent GPU machine (docs/results.md, "Not yet done"). Everything it makes goes to $OUT:
#   (a) SAHD and van Rossum seconds per cell on the paper skeleton at batch 256 (supplementary: 6.12 s, 44.52 s),
#       and the on-device scorer against the release-style one;
#   (c) digits training throughput on the GPU (12-epoch bench protocol, 8 workers sharing it), to plan whether
#       GPU sessions can finish the digits table's ~14,000 trainings;
#   (b) CIFAR-10 training (bench skeleton, short budget) of a stratified sample: 200 cells spread evenly over
#       the deciles of SAHD in the shipped snnbench/tables/cifar10.h5 (scored here on the CPU, full train set),
#       built into a copy of that table so the selection sees its scores; rows run in hash order, so a run cut
#       short holds a uniform subset of the sample.
# Builds stopped by `timeout` keep a journal next to their table; fold it here with
#   python -c "from snnbench.table import TableWriter as W; W('T.h5').close()"
# then `snnbench merge` into the shipped table. Data: an .npz pair small enough to carry (the 12k/2k subset of
# ../shared/data/cifar10, decoded from JPEG copies, named cifar10-jpeg-12k in the table): make it with
#   python benchmarks/make_subset.py ../shared/data/cifar10 .devdata/cifar10 --train 12000 --test 2000
# and carry .devdata (git ignores it).
#
#   bash benchmarks/gpu_session.sh [DATA_DIR] [SECONDS]      (run from the repository root)
set -u
DATA=${1:-.devdata/cifar10}
TOTAL=${2:-480}
OUT=${OUT:-out}
mkdir -p "$OUT"
pip install -q --no-deps -e . >/dev/null 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
COMMON=(--dataset "$DATA/train.npz" --dataset-name cifar10-jpeg-12k --kind forward --preset bench --device cuda --quiet)

timeout $((TOTAL / 6)) python benchmarks/bench_scores.py --device cuda --preset paper --dataset "$DATA/train.npz" \
  --batch-size 256 --repeats 2 --cells 3 --metrics sahd,vanrossum --timing-runs 2 > "$OUT/sahd_paper.txt" 2>&1

timeout $((TOTAL / 8)) snnbench build "$OUT/digits-gpu.h5" --dataset digits --kind forward --preset bench --device cuda \
  --scores none --train-epochs 12 --train 'test_epochs=[4,8]' --seeds 0,1 --train-cells sample:200:0 --workers 8 --quiet \
  > "$OUT/digits.log" 2>&1

cp snnbench/tables/cifar10.h5 "$OUT/cifar10-train.h5"
timeout $((TOTAL * 2 / 3)) snnbench build "$OUT/cifar10-train.h5" "${COMMON[@]}" --scores none --train-epochs 10 \
  --train batch_size=128 --seeds 0,1 --train-cells strata:200:sahd --workers 4 > "$OUT/train.log" 2>&1
ls -la "$OUT"
