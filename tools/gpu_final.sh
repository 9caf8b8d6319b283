#!/usr/bin/env bash
# The chosen configuration, alone on the GPU machine, returning its bundle (see docs/model-report.md).
set -uo pipefail
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-out}
RUN=/tmp/final
$PY -m diagnosis train --data .devdata/photos --out $RUN --arch tf_efficientnet_lite0 \
  --init-weights .devdata/lite0_imagenet.safetensors --epochs ${EPOCHS:-20} --patience 8 \
  --image-size 224 --augment standard \
  --lr ${LR:-5e-4} --batch-size 64 --workers 15 --device cuda --max-minutes ${MINUTES:-4.5} \
  --no-progress --no-resume --version "${VERSION:-lite0-224-v1}" > $OUT/train.log 2>&1
echo "exit $?"; grep -E "epoch|bundle|test" $OUT/train.log | tail -n 25 | cut -c1-220
mkdir -p $OUT/bundle
cp $RUN/model.safetensors $RUN/model_card.json $RUN/split.json $RUN/history.json $OUT/bundle/
