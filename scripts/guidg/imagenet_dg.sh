#!/bin/bash
# GuiDG on ImageNet-DG: sources ImageNet train, ImageNet-Sketch, ImageNet-V2;
# TARGET one of imagenet_a, imagenet_val, imagenet_r (the sources keep the
# target's classes, so each target has its own 3 experts).
# Usage: bash scripts/guidg/imagenet_dg.sh TARGET SEED [KEY VALUE ...]
# As the original scripts: 12 images per source domain in a step-2 batch;
# expert batch 8 for the 1,000-class imagenet_val task.
# PRESET=official: the *_official configs of both steps, test batch 3 x 12 = 36.
TRAINER=${TRAINER:-GuiDG}
CFG=${CFG:-vit_b16_clipood}
CFG_DIR=${CFG_DIR:-GuiDG}
SHOTS=${SHOTS:-16}
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
source "$ROOT_DIR/scripts/guidg/dg_common.sh"
need_args 2 "TARGET SEED [KEY VALUE ...]" "$@"
case $1 in
    imagenet_a|imagenet_val|imagenet_r) ;;
    *) die "TARGET must be imagenet_a, imagenet_val or imagenet_r (got $1)" ;;
esac
EXPERT_PER_TARGET=1
DOMAINS="imagenet_train imagenet_sketch imagenetv2 $1"
if [ "$1" = imagenet_val ] && [ -z "$EXPERT_OPTS" ]; then
    EXPERT_OPTS="DATALOADER.TRAIN_X.BATCH_SIZE 8"
fi
TARGET=$1
shift
# The script's batch is its default (SCRIPT_OPTS, part of the default run's
# options, not a variant); it is added only when neither OPTS nor the extra
# arguments set one.
SCRIPT_OPTS=()
case " $OPTS $* " in
    *BATCH_PER_DOMAIN*) ;;
    *) SCRIPT_OPTS+=(TRAINER."$(echo "$TRAINER" | tr '[:lower:]' '[:upper:]')".BATCH_PER_DOMAIN 12) ;;
esac
if [ "${PRESET:-ours}" = official ]; then
    case " $OPTS $* " in
        *DATALOADER.TEST.BATCH_SIZE*) ;;
        *) SCRIPT_OPTS+=(DATALOADER.TEST.BATCH_SIZE 36) ;;  # the official 3 x 12
    esac
fi
dg_run imagenet_dg "$TARGET" "$@"
"$PYTHON" scripts/results.py "$OUTPUT/dg/imagenet_dg" --setting dg
