#!/usr/bin/env bash
# PASCAL VOC 2012 for the paper's training (Sec. 4): train, val, trainval and train_aug
# (10,582 images, with SBD) as TFRecords in one directory, one manifest.json.
# Usage: datasets/build_voc2012.sh VOCDEVKIT SBD_BENCHMARK_RELEASE OUTPUT_DIR [more flags]
set -euo pipefail
voc=${1:?usage: $0 VOCDEVKIT SBD_BENCHMARK_RELEASE OUTPUT_DIR [flags]}
sbd=${2:?usage: $0 VOCDEVKIT SBD_BENCHMARK_RELEASE OUTPUT_DIR [flags]}
out=${3:?usage: $0 VOCDEVKIT SBD_BENCHMARK_RELEASE OUTPUT_DIR [flags]}
shift 3
deeplab-build-data voc2012 --root "$voc" --output_dir "$out" --splits train,val,trainval "$@"
deeplab-build-data sbd_trainaug --root "$sbd" --voc_root "$voc" --output_dir "$out" "$@"
