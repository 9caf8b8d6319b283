#!/usr/bin/env bash
# Model selection on a lent GPU machine, in one call (see docs/model-report.md).
# Needs .devdata/ from `python tools/pack_photos.py` carried along. SMOKE=1: a tiny CPU dry run.
set -uo pipefail
PY=${PYTHON:-python3}
DATA=.devdata/photos
INIT=.devdata/lite0_imagenet.safetensors
RUNS=${RUNS:-runs}
OUT=${OUT:-out}
mkdir -p "$RUNS" "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ "${SMOKE:-0}" = 1 ]; then
  COMMON="--limit-per-class 3 --image-size 64 --batch-size 8 --workers 0 --device cpu"
  E1=1; E2=1; W=0
else
  COMMON="--batch-size 64 --device cuda --max-minutes 3.0 --image-size 224 --augment standard"
  E1=${E1:-30}; E2=${E2:-40}; W=${W:-5}
fi
train() {  # name, timeout seconds, extra args...
  local name=$1 limit=$2; shift 2
  timeout "$limit" $PY -m diagnosis train --data $DATA --out "$RUNS/$name" --no-progress \
    --no-resume $COMMON "$@" > "$RUNS/$name.log" 2>&1
  echo "$name exit $? $(tail -n 2 "$RUNS/$name.log" | tr '\n' ' ')"
}
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"

# Phase A, in parallel: the transfer-learning candidate and two from-scratch ResNets.
train lite0_224 270 --arch tf_efficientnet_lite0 --init-weights $INIT --epochs $E1 --patience 10 --lr 2e-3 --workers $W &
train resnet50_scratch 270 --arch resnet50 --epochs $E1 --patience 10 --lr 2e-3 --workers $W &
train resnet18_scratch 270 --arch resnet18 --epochs $E1 --patience 10 --lr 2e-3 --workers $W &
wait
# Phase B: ResNet-50 (the reference architecture) distilled from the lite0 teacher, train split only.
if [ -f "$RUNS/lite0_224/model_card.json" ]; then
  train resnet50_distilled 270 --arch resnet50 --teacher "$RUNS/lite0_224" --epochs $E2 --patience 12 --lr 2e-3 --workers $((W * 2)) &
  train lite0_224_lr1e-3 270 --arch tf_efficientnet_lite0 --init-weights $INIT --epochs $E1 --patience 10 --lr 1e-3 --workers $W &
  train lite0_256 270 --arch tf_efficientnet_lite0 --init-weights $INIT --epochs $E1 --patience 10 --lr 2e-3 --image-size 256 --workers $W &
  wait
fi

$PY - "$RUNS" "$OUT" <<'PY'
import json, shutil, sys
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
table = {}
for card_path in sorted(runs.glob("*/model_card.json")):
    card = json.loads(card_path.read_text())
    weights = card_path.parent / "model.safetensors"
    table[card_path.parent.name] = {**card["metrics"], "bundle_mb": round(weights.stat().st_size / 1e6, 1),
                                    "best_epoch": card["training_data"]["best_epoch"],
                                    "temperature": card["temperature"]}
(out / "results.json").write_text(json.dumps(table, indent=1))
for name, row in table.items():
    print(f"{name:22s} val {row['val_macro_f1']:.3f} test F1 {row['macro_f1']:.3f} top3 {row['top3']:.3f} "
          f"mal {row['malignant_sensitivity']} ece {row['ece']:.3f} other {row['other_confident_rate']:.3f} {row['bundle_mb']} MB")
# Ship the small candidate with the best validation macro-F1 (bundles over 16 MB cannot come back).
small = {n: r for n, r in table.items() if r["bundle_mb"] <= 16}
if small:
    best = max(small, key=lambda n: small[n]["val_macro_f1"])
    target = out / "best"
    target.mkdir(exist_ok=True)
    for name in ("model.safetensors", "model_card.json", "split.json", "history.json"):
        shutil.copy(runs / best / name, target / name)
    print("best small bundle:", best)
PY
tail -n 3 "$RUNS"/*.log > "$OUT/logs.txt" 2>/dev/null
