#!/usr/bin/env bash
# DeepLabv3 on a Cloud TPU VM, driven from your workstation with gcloud.
#   deploy/tpu/tpu_vm.sh single   # one host (v3-8, v4-8, v5litepod-8, ...): --tpu=local
#   deploy/tpu/tpu_vm.sh pod      # a pod slice (v4-32, ...): one TF client on worker 0
# Run from the repository's root (it ships `git archive HEAD`). Docs: docs/cluster/tpu.md
# Not run by our CI (no TPU, no gcloud): tests/deploy checks its deeplab-* command lines.
set -euo pipefail
MODE=${1:-single}
TPU_NAME=${TPU_NAME:-deeplab}
ZONE=${ZONE:-us-central2-b}
BUCKET=${BUCKET:-gs://my-bucket}
MODEL_DIR=${MODEL_DIR:-$BUCKET/runs/voc_os16}
RECORDS=${RECORDS:-$BUCKET/data/voc2012/train_aug-*.tfrecord}
TF_TPU=${TF_TPU:-2.20.0}

if [ "$MODE" = pod ]; then
  ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-32}
  # A TensorFlow pod runtime (`gcloud compute tpus versions list`, *-pod-pjrt): every host
  # runs the TPU server that the one TensorFlow client on worker 0 drives.
  VERSION=${VERSION:?set VERSION to a TensorFlow pod runtime, e.g. tpu-vm-tf-2.x.y-pod-pjrt}
  # Keep the image's TensorFlow: no TensorFlow requirement (setup.py, DEEPLAB_TENSORFLOW).
  INSTALL="DEEPLAB_TENSORFLOW=none pip install ./deeplab_tf"
else
  ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
  VERSION=${VERSION:-tpu-ubuntu2204-base}
  # TensorFlow's TPU build, then this package: setup.py sees tensorflow-tpu installed and
  # requires it instead of `tensorflow` (which pip would install over it).
  INSTALL="pip install tensorflow-tpu==$TF_TPU \
    -f https://storage.googleapis.com/libtpu-tf-releases/index.html && pip install ./deeplab_tf"
fi

gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" \
  --accelerator-type="$ACCELERATOR_TYPE" --version="$VERSION"

# The same code on every host of the slice (--worker=all).
git archive --format=tar.gz -o /tmp/deeplab_tf.tar.gz HEAD
gcloud compute tpus tpu-vm scp /tmp/deeplab_tf.tar.gz "$TPU_NAME": --zone="$ZONE" --worker=all
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="\
  mkdir -p deeplab_tf && tar -xzf deeplab_tf.tar.gz -C deeplab_tf && $INSTALL"

# Training in the background (it outlives the ssh session); log in ~/deeplab-train.log.
# Exit status 75 (maintenance event, SIGTERM): a checkpoint was saved, run it again.
if [ "$MODE" = pod ]; then
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=0 --command="\
    export PATH=\$HOME/.local/bin:\$PATH TPU_LOAD_LIBRARY=0 && nohup deeplab-train \
    --experiment=voc_r101_os16_aspp --model_dir=$MODEL_DIR --strategy=tpu --tpu=$TPU_NAME \
    --mixed_precision=mixed_bfloat16 --params_override='data.train_records=$RECORDS' \
    > deeplab-train.log 2>&1 &"
else
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" --worker=all --command="\
    export PATH=\$HOME/.local/bin:\$PATH && nohup deeplab-train \
    --experiment=voc_r101_os16_aspp --model_dir=$MODEL_DIR --strategy=tpu --tpu=local \
    --mixed_precision=mixed_bfloat16 --params_override='data.train_records=$RECORDS' \
    > deeplab-train.log 2>&1 &"
fi
