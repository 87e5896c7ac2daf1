#!/usr/bin/env bash
# Issue 10, item 4: what does a texture-aware loss term give? Three short fine-tunes of the
# cartoon model on the shipped model's data and ratios (jobs/configs/train_quality.toml), the
# same steps, seed and schedule, differing only in the loss:
#   pixel  : L1 + mask BCE                      (loss.grad_weight = 0)
#   grad   : + gradient L1 0.5                  (the shipped model's loss)
#   energy : + gradient L1 0.5 + detail-energy matching 1.0 (loss.texture_weight)
# Each is scored on the renderer's held-out identities (beard PSNR, style accuracy and the
# beard-detail ratio output/target) and on the real set's eval split.
# Usage: bench/texture_terms/run.sh [STEPS]   (outputs under out/texture_terms/)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps="${1:-600}"
bn() { PYTHONPATH=. .venv/bin/python -m beardnet.cli "$@"; }
declare -A loss=(
  [pixel]="--set loss.grad_weight=0 --set loss.texture_weight=0"
  [grad]="--set loss.grad_weight=0.5 --set loss.texture_weight=0"
  [energy]="--set loss.grad_weight=0.5 --set loss.texture_weight=1.0"
)
for arm in pixel grad energy; do
  run="$HOME/beardnet-runs/texture-$arm-$steps"
  if [ ! -f "$run/model/model.json" ]; then
    # shellcheck disable=SC2086
    bn train --config jobs/configs/train_quality.toml --set run.name="texture-$arm-$steps" \
      --set train.max_steps="$steps" --set train.checkpoint_every="$steps" ${loss[$arm]}
  fi
  out="out/texture_terms/$arm-$steps"
  [ -f "$out/synth/metrics.json" ] || bn eval --model "$run/model" --data data/real-mix-crops \
    --max-identities 0 --out "$out/synth"
  [ -f "$out/real/real_metrics.json" ] || bn eval --real .realset --model "$run/model" \
    --out "$out/real"
done
